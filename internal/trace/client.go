package trace

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client reads a trace API.
type Client struct {
	// URL is the API's base, e.g. http://127.0.0.1:8083.
	URL string
	// HTTP makes the requests (nil: one with a 10 s timeout; streams use
	// its transport without the timeout).
	HTTP *http.Client
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

func (c *Client) url(path string, q Query) string {
	v := url.Values{}
	for k, s := range map[string]string{"route": q.Route, "app": q.AppGUID, "process": q.ProcessGUID, "instance": q.InstanceGUID} {
		if s != "" {
			v.Set(k, s)
		}
	}
	u := strings.TrimRight(c.URL, "/") + path
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	return u
}

// Events is GET /api/events.
func (c *Client) Events(ctx context.Context, q Query) ([]Event, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.url("/api/events", q), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("trace API at %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("trace API at %s: %w", c.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("trace API at %s: GET /api/events: %s: %s", c.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	var out []Event
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("trace API at %s: GET /api/events: %w", c.URL, err)
	}
	return out, nil
}

// Stream is GET /api/stream: it calls fn with each event until ctx ends,
// the stream ends or fn returns an error.
func (c *Client) Stream(ctx context.Context, q Query, fn func(Event) error) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.url("/api/stream", q), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	hc := &http.Client{Transport: c.http().Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("trace API at %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("trace API at %s: GET /api/stream: %s: %s", c.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), MaxMessageBytes+1024)
	var event string
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "trace" && data.Len() > 0 {
				var e Event
				if err := json.Unmarshal([]byte(data.String()), &e); err == nil {
					if err := fn(e); err != nil {
						return err
					}
				}
			}
			event = ""
			data.Reset()
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}

// TraceOptions configure Trace.
type TraceOptions struct {
	Route string
	// API is the trace API's URL; Router the router's address (host:port
	// or URL). No Router: no request.
	API, Router string
	// HTTP makes the request through the router and reads the API (nil:
	// a client with a 10 s timeout).
	HTTP *http.Client
	// FirstRequestWait bounds the wait for the router's first-request
	// event after the request (default 2 s), when the route has none yet.
	FirstRequestWait time.Duration
}

// Trace is `minicf trace ROUTE`: it sends a request for the route through
// the router, reads the route's journey from the trace API and draws the
// request's path back.
func Trace(ctx context.Context, o TraceOptions) (*Timeline, error) {
	route := NormalizeRoute(o.Route)
	if route == "" {
		return nil, errors.New("no route given")
	}
	if o.FirstRequestWait <= 0 {
		o.FirstRequestWait = 2 * time.Second
	}
	c := &Client{URL: o.API, HTTP: o.HTTP}
	before, err := c.Events(ctx, Query{Route: route})
	if err != nil {
		return nil, err
	}
	if o.Router == "" {
		return NewTimeline(route, before), nil
	}
	req, answer := doRequest(ctx, c.http(), o.Router, route)
	events := before
	hadFirst := false
	for _, e := range before {
		hadFirst = hadFirst || e.Step == StepFirstRequest
	}
	if req.Error == "" && req.Status != 0 && !hadFirst {
		deadline := time.Now().Add(o.FirstRequestWait)
		for {
			if events, err = c.Events(ctx, Query{Route: route}); err != nil {
				return nil, err
			}
			if hasFirstRequest(events, req.RequestID) || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	} else if events, err = c.Events(ctx, Query{Route: route}); err != nil {
		return nil, err
	}
	t := NewTimeline(route, events)
	t.Request = req
	t.Locate(req, answer)
	if inst := req.InstanceGUID; inst != "" && t.last(StepActualLRPRunning, inst) == nil {
		// The instance ran before this journey began (a route mapped to a
		// running app): its own events draw the path.
		if more, err := c.Events(ctx, Query{InstanceGUID: inst}); err == nil {
			req.Hops = NewTimeline(route, append(append([]Event(nil), events...), more...)).path(req)
		}
	}
	return t, nil
}

func hasFirstRequest(events []Event, requestID string) bool {
	for _, e := range events {
		var fr FirstRequest
		if e.Step == StepFirstRequest && json.Unmarshal(e.Artifact, &fr) == nil && fr.RequestID == requestID {
			return true
		}
	}
	return false
}

// doRequest sends GET for route through the router.
func doRequest(ctx context.Context, hc *http.Client, router, route string) (*Request, []byte) {
	base := router
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	host, path, _ := strings.Cut(route, "/")
	r := &Request{Method: "GET", URL: strings.TrimRight(base, "/") + "/" + path, Host: host}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, nil)
	if err != nil {
		r.Error = err.Error()
		return r, nil
	}
	req.Host = host
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		r.Error = err.Error()
		return r, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	r.DurationMs = ms(time.Since(start).Nanoseconds())
	r.Status = resp.StatusCode
	r.RequestID = resp.Header.Get("X-Vcap-Request-Id")
	return r, body
}
