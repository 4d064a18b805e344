package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

// Limits of the HTTP client.
const (
	// MaxResponseBytes bounds every response body the CLI reads.
	MaxResponseBytes = 16 << 20
	// maxPages bounds how many pages of one list the CLI follows.
	maxPages = 1000
	// requestTimeout bounds one ordinary API request.
	requestTimeout = 60 * time.Second
	// uploadTimeout bounds one bits upload.
	uploadTimeout = 15 * time.Minute
)

// Client talks to a Cloud Controller's v3 API (and its log-cache read
// endpoint) as the cf CLI does: bearer token, JSON bodies, X-Cf-Warnings,
// CC error bodies decoded into ccapi.Errors.
type Client struct {
	base     *url.URL
	logCache *url.URL
	token    string
	http     *http.Client
	home     string
	// Warn receives each warning of X-Cf-Warnings and of jobs.
	Warn func(string)
	// PollInterval is how often jobs, packages, builds and stats are polled.
	PollInterval time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// NewClient returns a client for cfg's API. hc nil means a client with
// connect and header timeouts; home only appears in error messages.
func NewClient(cfg *Config, hc *http.Client, home string) (*Client, error) {
	base, err := parseBaseURL(cfg.API)
	if err != nil {
		return nil, fmt.Errorf("config.json: api %q: %w", cfg.API, err)
	}
	lc := base
	if cfg.LogCache != "" {
		if lc, err = parseBaseURL(cfg.LogCache); err != nil {
			return nil, fmt.Errorf("config.json: log_cache %q: %w", cfg.LogCache, err)
		}
	}
	if hc == nil {
		hc = defaultHTTPClient()
	}
	return &Client{
		base:         base,
		logCache:     lc,
		token:        cfg.AccessToken,
		http:         hc,
		home:         home,
		Warn:         func(string) {},
		PollInterval: 250 * time.Millisecond,
		UserAgent:    "minicf-cli",
	}, nil
}

func parseBaseURL(s string) (*url.URL, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "/")
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme must be http or https")
	}
	if u.Host == "" {
		return nil, fmt.Errorf("no host")
	}
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 5 * time.Minute // uploads answer after the body
	return &http.Client{Transport: t}
}

// API is the Cloud Controller's base URL.
func (c *Client) API() string { return c.base.String() }

// APIError is a non-2xx answer of the Cloud Controller.
type APIError struct {
	StatusCode int
	Method     string
	URL        string
	Errors     []ccapi.APIError // decoded {"errors": [...]}
	Body       string           // the start of a body that was not CC JSON
}

func (e *APIError) Error() string {
	if len(e.Errors) == 0 {
		body := strings.TrimSpace(e.Body)
		if body == "" {
			body = "(empty body)"
		}
		return fmt.Sprintf("Unexpected Response\nResponse code: %d\nRequest: %s %s\nRaw response: %s", e.StatusCode, e.Method, e.URL, body)
	}
	if e.StatusCode == http.StatusNotFound && len(e.Errors) == 1 && e.Errors[0].Detail == "Unknown request" {
		return fmt.Sprintf("API endpoint not found at '%s'", e.URL)
	}
	var details []string
	for _, ae := range e.Errors {
		d := ae.Detail
		if d == "" {
			d = ae.Title
		}
		details = append(details, d)
	}
	return strings.Join(details, "\n")
}

// Is404 reports a 404 whose detail is detail ("" = any).
func (e *APIError) Is404(detail string) bool {
	return e.StatusCode == http.StatusNotFound && e.hasDetail(detail)
}

func (e *APIError) hasDetail(sub string) bool {
	if sub == "" {
		return true
	}
	for _, ae := range e.Errors {
		if strings.Contains(ae.Detail, sub) {
			return true
		}
	}
	return false
}

// AuthError is a 401: the token is missing, invalid or expired.
type AuthError struct {
	API, Home, Detail string
}

func (e *AuthError) Error() string {
	where := "config.json"
	if e.Home != "" {
		where = e.Home + "/" + ConfigFile
	}
	msg := fmt.Sprintf("Authentication error: the Cloud Controller at %s rejected the access token in %s as invalid or expired", e.API, where)
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg + ".\nGet a new token by running `minicf up` again, which rewrites " + where + "."
}

// ConnError is a Cloud Controller that cannot be reached.
type ConnError struct {
	API string
	Err error
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("Cannot reach the Cloud Controller at %s: %v\nIs the foundation running? Start it with `minicf up`.", e.API, e.Err)
}

func (e *ConnError) Unwrap() error { return e.Err }

// request is one API call.
type request struct {
	method string
	target string // path+query on the API, or an absolute URL from Location/next
	body   io.Reader
	ctype  string
	length int64
	// timeout for this call; 0 means requestTimeout.
	timeout time.Duration
	// logCache sends the request to log-cache's base instead.
	logCache bool
}

// resolve turns a path or an absolute URL into a URL on base. An absolute
// URL on another host keeps only its path and query, so the token never
// travels to a host the user did not configure.
func resolve(base *url.URL, target string) (*url.URL, error) {
	ref, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q: %w", target, err)
	}
	u := *base
	if ref.IsAbs() && ref.Host == base.Host && ref.Scheme == base.Scheme {
		return ref, nil
	}
	u.Path = strings.TrimRight(base.Path, "/") + ref.Path
	u.RawPath = ""
	if ref.RawPath != "" {
		u.RawPath = strings.TrimRight(base.EscapedPath(), "/") + ref.RawPath
	}
	u.RawQuery = ref.RawQuery
	return &u, nil
}

// do sends r and returns the response headers and body of a 2xx answer.
func (c *Client) do(ctx context.Context, r request) (http.Header, []byte, error) {
	base := c.base
	if r.logCache {
		base = c.logCache
	}
	u, err := resolve(base, r.target)
	if err != nil {
		return nil, nil, err
	}
	timeout := r.timeout
	if timeout == 0 {
		timeout = requestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), r.body)
	if err != nil {
		return nil, nil, err
	}
	if r.length > 0 {
		req.ContentLength = r.length
	}
	req.Header.Set("Accept", "application/json")
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "bearer "+c.token)
	}
	req.Header.Set("User-Agent", c.UserAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, nil, fmt.Errorf("%s %s: no answer within %s", r.method, u, timeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) && !errors.Is(err, context.Canceled) {
			return nil, nil, &ConnError{API: base.String(), Err: ue.Err}
		}
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: reading the response: %w", r.method, u, err)
	}
	if len(body) > MaxResponseBytes {
		return nil, nil, fmt.Errorf("%s %s: the response is larger than %d bytes", r.method, u, MaxResponseBytes)
	}
	c.warnings(resp.Header)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.Header, body, nil
	}
	var errs ccapi.Errors
	if json.Unmarshal(body, &errs) != nil {
		errs.Errors = nil
	}
	if resp.StatusCode == http.StatusUnauthorized {
		detail := ""
		if len(errs.Errors) > 0 {
			detail = errs.Errors[0].Title
			if errs.Errors[0].Detail != "" {
				detail += ": " + errs.Errors[0].Detail
			}
		}
		return nil, nil, &AuthError{API: c.base.String(), Home: c.home, Detail: detail}
	}
	ae := &APIError{StatusCode: resp.StatusCode, Method: r.method, URL: u.String(), Errors: errs.Errors}
	if len(errs.Errors) == 0 {
		ae.Body = string(body[:min(len(body), 512)])
	}
	return nil, nil, ae
}

// warnings hands each X-Cf-Warnings entry (comma-separated, URL-encoded)
// to Warn.
func (c *Client) warnings(h http.Header) {
	for _, v := range h.Values("X-Cf-Warnings") {
		for _, w := range strings.Split(v, ",") {
			if s, err := url.QueryUnescape(strings.TrimSpace(w)); err == nil && s != "" {
				c.Warn(s)
			}
		}
	}
}

// call sends a JSON request (in may be nil) and decodes a JSON answer into
// out (nil: ignore). It returns the response headers.
func (c *Client) call(ctx context.Context, method, target string, in, out any) (http.Header, error) {
	r := request{method: method, target: target}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		r.body, r.ctype, r.length = bytes.NewReader(b), "application/json", int64(len(b))
	}
	h, body, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	return h, decode(method, target, body, out)
}

func decode(method, target string, body []byte, out any) error {
	if out == nil || len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: the Cloud Controller's answer is not the JSON expected: %w", method, target, err)
	}
	return nil
}

func (c *Client) get(ctx context.Context, target string, out any) error {
	_, err := c.call(ctx, http.MethodGet, target, nil, out)
	return err
}

// getAll GETs a paginated list and follows pagination.next.
func getAll[T any](ctx context.Context, c *Client, target string) ([]T, error) {
	var all []T
	seen := map[string]bool{}
	for pages := 0; target != ""; pages++ {
		if pages >= maxPages || seen[target] {
			return nil, fmt.Errorf("GET %s: pagination does not end", target)
		}
		seen[target] = true
		var page ccapi.List[T]
		if err := c.get(ctx, target, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Resources...)
		target = ""
		if page.Pagination.Next != nil {
			target = page.Pagination.Next.Href
		}
	}
	return all, nil
}

// getFirst GETs a list and returns its first element, or nil.
func getFirst[T any](ctx context.Context, c *Client, target string) (*T, error) {
	var page ccapi.List[T]
	if err := c.get(ctx, target, &page); err != nil {
		return nil, err
	}
	if len(page.Resources) == 0 {
		return nil, nil
	}
	return &page.Resources[0], nil
}

// query builds a query string from key, value pairs, in order, keeping the
// commas that join filter values (names=a,b) as the cf CLI sends them. An
// empty value is kept: paths= matches the empty path.
func query(path string, kv ...string) string {
	var b strings.Builder
	b.WriteString(path)
	for i := 0; i+1 < len(kv); i += 2 {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]))
		b.WriteByte('=')
		b.WriteString(strings.ReplaceAll(url.QueryEscape(kv[i+1]), "%2C", ","))
	}
	return b.String()
}

// JobError is a job that ended FAILED.
type JobError struct {
	Errors []ccapi.APIError
}

func (e *JobError) Error() string {
	var d []string
	for _, ae := range e.Errors {
		if ae.Detail != "" {
			d = append(d, ae.Detail)
		} else {
			d = append(d, ae.Title)
		}
	}
	if len(d) == 0 {
		return "Job failed"
	}
	return strings.Join(d, "\n")
}

// maxJobWait bounds how long a job is polled.
const maxJobWait = 15 * time.Minute

// pollJob polls the job at location (from a 202's Location header; "" =
// nothing to wait for) until COMPLETE or FAILED: the first GET at once,
// then every PollInterval.
func (c *Client) pollJob(ctx context.Context, location string) error {
	if location == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, maxJobWait)
	defer cancel()
	for {
		var job ccapi.Job
		if err := c.get(ctx, location, &job); err != nil {
			return err
		}
		switch job.State {
		case ccapi.JobComplete:
			for _, w := range job.Warnings {
				c.Warn(w.Detail)
			}
			return nil
		case ccapi.JobFailed:
			for _, w := range job.Warnings {
				c.Warn(w.Detail)
			}
			return &JobError{Errors: job.Errors}
		}
		if err := sleep(ctx, c.PollInterval); err != nil {
			return fmt.Errorf("job %s did not finish: %w", location, err)
		}
	}
}

// async sends a request answered with 202 + Location and polls the job.
func (c *Client) async(ctx context.Context, method, target string, in any) error {
	h, err := c.call(ctx, method, target, in, nil)
	if err != nil {
		return err
	}
	return c.pollJob(ctx, h.Get("Location"))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// tokenUser names the user of a JWT access token (user_name, else
// client_id) without verifying it; "" if the token is not a JWT.
func tokenUser(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var claims struct {
		UserName string `json:"user_name"`
		ClientID string `json:"client_id"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	if claims.UserName != "" {
		return claims.UserName
	}
	return claims.ClientID
}
