package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minicf/minicf/internal/trace"
)

// ProxyConfig holds the proxy's knobs; zero values take gorouter's defaults.
type ProxyConfig struct {
	MaxAttempts            int           // backends.max_attempts (3)
	RetryAfterFailure      time.Duration // how long a failed endpoint is skipped (stale threshold / 4)
	EndpointTimeout        time.Duration // wait for a backend's response headers (900 s)
	DialTimeout            time.Duration // connect and TLS handshake (5 s)
	IdleTimeout            time.Duration // idle backend connections are closed after this (30 s)
	MaxIdleConnsPerBackend int           // (100)
	MaxResponseHeaderBytes int64         // a backend header bomb gets a 502 (1 MiB)
	StickyCookies          []string      // cookies that make a session sticky (JSESSIONID)
}

func (c *ProxyConfig) defaults() {
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.RetryAfterFailure <= 0 {
		c.RetryAfterFailure = 30 * time.Second
	}
	if c.EndpointTimeout <= 0 {
		c.EndpointTimeout = 900 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.MaxIdleConnsPerBackend <= 0 {
		c.MaxIdleConnsPerBackend = 100
	}
	if c.MaxResponseHeaderBytes <= 0 {
		c.MaxResponseHeaderBytes = 1 << 20
	}
	if len(c.StickyCookies) == 0 {
		c.StickyCookies = []string{"JSESSIONID"}
	}
}

// Proxy is the request path: lookup, pick, dial, forward, retry.
type Proxy struct {
	reg     *Registry
	tr      *transport
	cfg     ProxyConfig
	metrics *Metrics
	access  *AccessLog
	log     *slog.Logger
	now     func() time.Time
	trace   trace.Emitter
}

// maxBufferedBody is the largest request body kept in memory so that a retry
// can send it again; larger bodies stream and are never replayed.
const maxBufferedBody = 64 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Router error codes sent in X-Cf-Routererror, as gorouter names them.
const (
	errUnknownRoute        = "unknown_route"
	errNoEndpoints         = "no_endpoints"
	errEmptyHost           = "empty_host"
	errInvalidAppInstance  = "invalid_cf_app_instance_header"
	errEndpointFailure     = "endpoint_failure"
	headerRouterError      = "X-Cf-Routererror"
	headerRequestID        = "X-Vcap-Request-Id"
	headerAppInstance      = "X-Cf-App-Instance"
	headerTraceparent      = "Traceparent"
	headerForwardedFor     = "X-Forwarded-For"
	headerForwardedProto   = "X-Forwarded-Proto"
	headerRequestStart     = "X-Request-Start"
	headerAppID            = "X-Cf-Applicationid"
	headerInstanceID       = "X-Cf-Instanceid"
	headerInstanceIndex    = "X-Cf-Instanceindex"
	vcapIDCookie           = "__VCAP_ID__"
	defaultErrorBodyFormat = "%d %s: %s\n"
)

// reqState is what one request accumulates for its access-log line.
type reqState struct {
	start       time.Time
	host        string
	status      int
	bytesIn     int64
	bytesOut    int64
	backendAddr string
	requestID   string
	appID       string
	appIndex    string
	instanceID  string
	routerError string
	backendTime time.Duration
	attempts    int

	// vals backs the one-value header slices the router sets, so that a
	// request does not pay an allocation per header.
	vals  [12]string
	nvals int
}

// one returns a one-element header value for v, from st.vals while it lasts.
// The slice's capacity is one, so an append by anyone else copies it.
func (st *reqState) one(v string) []string {
	if st.nvals == len(st.vals) {
		return []string{v}
	}
	i := st.nvals
	st.nvals++
	st.vals[i] = v
	return st.vals[i : i+1 : i+1]
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := reqState{start: p.now()}
	defer p.finish(r, &st)

	st.requestID = requestID(r.Header)
	r.Header[headerRequestID] = st.one(st.requestID)

	if !(r.ProtoMajor == 1 && r.ProtoMinor <= 1 || r.ProtoMajor == 2 && r.ProtoMinor == 0) {
		// As gorouter's protocol check: only HTTP/1.0, 1.1 and 2 are proxied.
		p.fail(w, &st, http.StatusBadRequest, "", "Unsupported protocol "+r.Proto)
		return
	}
	host := hostOnly(r.Host)
	st.host = host
	if host == "" || host == hostOnly(r.RemoteAddr) {
		p.fail(w, &st, http.StatusBadRequest, errEmptyHost, "Request had empty Host header")
		return
	}
	pool := p.reg.Lookup(host, r.URL.EscapedPath())
	if pool == nil {
		p.fail(w, &st, http.StatusNotFound, errUnknownRoute, fmt.Sprintf("Requested route ('%s') does not exist.", host))
		return
	}

	// X-Cf-App-Instance pins the request to one instance: no other may answer.
	var pinned *Endpoint
	if v := r.Header.Get(headerAppInstance); v != "" {
		app, idx, ok := strings.Cut(v, ":")
		if !ok || app == "" || idx == "" || strings.ContainsAny(idx, ": ") {
			p.fail(w, &st, http.StatusBadRequest, errInvalidAppInstance, "Invalid X-CF-App-Instance Header")
			return
		}
		if pinned = pool.byAppIndex(app, idx); pinned == nil {
			p.fail(w, &st, http.StatusBadRequest, errUnknownRoute, "Requested instance ('"+idx+"') with guid ('"+app+"') does not exist for route ('"+host+"')")
			return
		}
		delete(r.Header, headerAppInstance)
	}
	sticky := p.stickyInstance(r)
	upgrade := upgradeOf(r.Header)
	prepareRequestHeaders(r, &st)
	body, err := p.readReplayableBody(r, &st)
	if err != nil {
		p.fail(w, &st, http.StatusBadRequest, "", "Could not read the request body")
		return
	}

	var triedBuf [4]*Endpoint // no allocation up to four attempts
	tried := triedBuf[:0]
	var lastErr error
	var lastEp *Endpoint
	for attempt := 0; attempt < p.cfg.MaxAttempts; attempt++ {
		if r.Context().Err() != nil {
			break
		}
		var e *Endpoint
		switch {
		case pinned != nil:
			if attempt > 0 {
				break
			}
			e = pinned
		case attempt == 0 && sticky != "":
			e = pool.byInstance(sticky)
			if e == nil {
				e = pool.pick(nil, st.start, p.cfg.RetryAfterFailure)
			}
		default:
			e = pool.pick(tried, p.now(), p.cfg.RetryAfterFailure)
		}
		if e == nil {
			break
		}
		tried = append(tried, e)
		st.attempts++
		res := p.forward(w, r, e, body, upgrade, sticky, pool, &st)
		if res.err == nil {
			return
		}
		lastErr, lastEp = res.err, e
		p.endpointFailed(pool, e, res.err, r)
		if !res.retriable {
			break
		}
	}
	if lastErr == nil {
		if r.Context().Err() != nil {
			st.status = 499
			return
		}
		p.fail(w, &st, http.StatusServiceUnavailable, errNoEndpoints, fmt.Sprintf("Requested route ('%s') has no available endpoints.", host))
		return
	}
	p.failEndpoint(w, r, &st, lastEp, lastErr)
}

// forwardResult says how an attempt ended. err nil means a response (of any
// status) went to the client; otherwise nothing did.
type forwardResult struct {
	err       error
	retriable bool
}

// forward sends the request to one endpoint and streams the response back.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, e *Endpoint, body []byte, upgrade, sticky string, pool *Pool, st *reqState) forwardResult {
	e.inflight.Add(1)
	defer e.inflight.Add(-1)
	setEndpointHeaders(r, e, st)
	st.backendAddr, st.appID, st.appIndex, st.instanceID = e.Addr, e.AppID, e.PrivateInstanceIdx, e.PrivateInstanceID

	backendStart := time.Now()
	defer func() { st.backendTime += time.Since(backendStart) }()

	replayable := body != nil || !hasBody(r)
	c, reused, err := p.tr.get(r.Context(), e)
	if err != nil {
		return forwardResult{err: err, retriable: true}
	}
	// A client that leaves, while the backend thinks or mid-response, must
	// not keep the backend working for nobody: closing the connection ends
	// the round trip or the copy below at once, and the backend sees its
	// connection close, as it would behind gorouter. One watch covers both.
	unwatch := watchConn(r.Context(), c)
	resp, err := p.roundTrip(c, r, body, upgrade)
	if err != nil && reused && replayable && isNoResponse(err) && (isWriteError(err) || isIdempotent(r)) && r.Context().Err() == nil {
		// The backend closed an idle connection as we picked it up. A request
		// that could not be written, or one that is safe to repeat, goes once
		// more on a fresh connection; any other may have reached the app.
		unwatch()
		c.Close()
		c, err = p.tr.dial(r.Context(), e)
		if err != nil {
			return forwardResult{err: err, retriable: true}
		}
		unwatch = watchConn(r.Context(), c)
		resp, err = p.roundTrip(c, r, body, upgrade)
	}
	if err != nil {
		unwatch()
		c.Close()
		var nr *noResponseError
		retriable := errors.As(err, &nr) && replayable && (nr.writing || isIdempotent(r))
		return forwardResult{err: err, retriable: retriable}
	}

	if resp.StatusCode == http.StatusSwitchingProtocols && upgrade != "" {
		if !unwatch() {
			c.Close()
			return forwardResult{}
		}
		p.upgrade(w, r, c, resp, st)
		return forwardResult{}
	}

	h := w.Header()
	removeHopHeaders(resp.Header)
	for k, vv := range resp.Header {
		h[k] = vv
	}
	if _, ok := h[headerRequestID]; !ok {
		h[headerRequestID] = st.one(st.requestID)
	}
	p.stickyResponse(h, e, sticky, pool)
	st.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	p.traceFirst(pool, e, r, st)

	bufp := copyBufs.Get().(*[]byte)
	n, readErr, writeErr := copyBody(w, resp.Body, *bufp, resp.ContentLength < 0)
	copyBufs.Put(bufp)
	st.bytesOut = n
	if !unwatch() || readErr != nil || writeErr != nil || resp.Close {
		c.Close()
		if readErr != nil {
			p.log.Warn("backend-response-truncated", "endpoint", e.Addr, "error", readErr, "request_id", st.requestID)
		}
		return forwardResult{}
	}
	p.tr.put(e, c)
	return forwardResult{}
}

// watchConn closes c when ctx ends, until the returned stop is called. c is
// a parameter so that the callback never reads a variable the caller reuses.
func watchConn(ctx context.Context, c *backendConn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.Close() })
}

// noResponseError is a failure before any byte of a response arrived. writing
// says the request itself could not be written in full.
type noResponseError struct {
	err     error
	writing bool
}

func (e *noResponseError) Error() string { return e.err.Error() }
func (e *noResponseError) Unwrap() error { return e.err }

func isWriteError(err error) bool {
	var nr *noResponseError
	return errors.As(err, &nr) && nr.writing
}

func isNoResponse(err error) bool {
	var nr *noResponseError
	return errors.As(err, &nr)
}

// roundTrip writes the request on c and reads the response headers.
// The caller closes c if the client leaves meanwhile.
func (p *Proxy) roundTrip(c *backendConn, r *http.Request, body []byte, upgrade string) (*http.Response, error) {
	if err := writeRequest(c.bw, r, body, upgrade); err != nil {
		return nil, &noResponseError{err: err, writing: true}
	}
	c.lim.limit = p.cfg.MaxResponseHeaderBytes
	c.conn.SetReadDeadline(time.Now().Add(p.cfg.EndpointTimeout))
	if _, err := c.br.Peek(1); err != nil {
		return nil, &noResponseError{err: err}
	}
	var resp *http.Response
	var err error
	for {
		resp, err = http.ReadResponse(c.br, r)
		if err != nil {
			if errors.Is(err, errResponseHeadersTooLarge) {
				return nil, errResponseHeadersTooLarge
			}
			return nil, err
		}
		// Interim responses (103 Early Hints) are dropped; 100 Continue never
		// comes because Expect is not forwarded (the router answered it).
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	c.lim.limit = -1
	c.conn.SetReadDeadline(time.Time{})
	return resp, nil
}

// writeRequest writes an HTTP/1.1 request head and body. Headers were already
// cleaned of hop-by-hop fields by prepareRequestHeaders.
func writeRequest(bw *bufio.Writer, r *http.Request, body []byte, upgrade string) error {
	uri := r.RequestURI
	if uri == "" || uri[0] != '/' {
		uri = r.URL.RequestURI()
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	for k, vv := range r.Header {
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if upgrade != "" {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.WriteString(upgrade)
		bw.WriteString("\r\n")
	}
	switch {
	case body != nil:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.Itoa(len(body)))
		bw.WriteString("\r\n\r\n")
		bw.Write(body)
	case !hasBody(r):
		if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
			bw.WriteString("Content-Length: 0\r\n")
		}
		bw.WriteString("\r\n")
	case r.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(r.ContentLength, 10))
		bw.WriteString("\r\n\r\n")
		if _, err := io.CopyN(bw, r.Body, r.ContentLength); err != nil {
			return err
		}
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(bw)
		if _, err := io.Copy(cw, r.Body); err != nil {
			return err
		}
		cw.Close()
		bw.WriteString("\r\n")
	}
	return bw.Flush()
}

func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

func isIdempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := r.Header["Idempotency-Key"]
	_, b := r.Header["X-Idempotency-Key"]
	return a || b
}

// readReplayableBody reads small bodies of known length into memory, so a
// retry after a failed connection can send them again.
func (p *Proxy) readReplayableBody(r *http.Request, st *reqState) ([]byte, error) {
	if !hasBody(r) || r.ContentLength < 0 || r.ContentLength > maxBufferedBody {
		if hasBody(r) {
			r.Body = &countingReader{r: r.Body, n: &st.bytesIn}
		}
		return nil, nil
	}
	body := make([]byte, r.ContentLength)
	n, err := io.ReadFull(r.Body, body)
	st.bytesIn = int64(n)
	if err != nil {
		return nil, err
	}
	return body, nil
}

type countingReader struct {
	r io.ReadCloser
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}
func (c *countingReader) Close() error { return c.r.Close() }

// copyBody streams a response body to the client. Bodies of unknown length
// (server-sent events, chunked streams) are flushed as they arrive.
func copyBody(w http.ResponseWriter, body io.Reader, buf []byte, flush bool) (n int64, readErr, writeErr error) {
	fl, _ := w.(http.Flusher)
	for {
		nr, err := body.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, nil, werr
			}
			if flush && fl != nil {
				fl.Flush()
			}
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// hopHeaders are meaningful for one connection only and never forwarded.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Expect", // the router answers 100-continue itself when it reads the body
}

func removeHopHeaders(h http.Header) {
	if c, ok := h["Connection"]; ok {
		for _, v := range c {
			for _, f := range strings.Split(v, ",") {
				if f = strings.TrimSpace(f); f != "" {
					h.Del(f)
				}
			}
		}
	}
	for _, k := range hopHeaders {
		if _, ok := h[k]; ok {
			delete(h, k)
		}
	}
}

// upgradeOf returns the protocol a client asks to switch to (WebSocket), or "".
func upgradeOf(h http.Header) string {
	up := h.Get("Upgrade")
	if up == "" || !headerHasToken(h["Connection"], "upgrade") {
		return ""
	}
	return up
}

func headerHasToken(vals []string, token string) bool {
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// prepareRequestHeaders sets gorouter's request headers once per request.
func prepareRequestHeaders(r *http.Request, st *reqState) {
	h := r.Header
	removeHopHeaders(h)
	if ip := hostOnly(r.RemoteAddr); ip != "" {
		if prior, ok := h[headerForwardedFor]; ok && len(prior) > 0 {
			h[headerForwardedFor] = st.one(strings.Join(prior, ", ") + ", " + ip)
		} else {
			h[headerForwardedFor] = st.one(ip)
		}
	}
	if _, ok := h[headerForwardedProto]; !ok {
		proto := "http"
		if r.TLS != nil {
			proto = "https"
		}
		h[headerForwardedProto] = st.one(proto)
	}
	if _, ok := h[headerRequestStart]; !ok {
		h[headerRequestStart] = st.one(strconv.FormatInt(time.Now().UnixMilli(), 10))
	}
	h[headerTraceparent] = st.one(traceparent(h.Get(headerTraceparent), st.requestID))
}

func setEndpointHeaders(r *http.Request, e *Endpoint, st *reqState) {
	h := r.Header
	if e.AppID != "" {
		h[headerAppID] = st.one(e.AppID)
	} else {
		delete(h, headerAppID)
	}
	h[headerInstanceID] = st.one(e.InstanceHeader())
	if e.PrivateInstanceIdx != "" {
		h[headerInstanceIndex] = st.one(e.PrivateInstanceIdx)
	} else {
		delete(h, headerInstanceIndex)
	}
}

// hostOnly strips a port and lower-cases, allocating only when it must.
func hostOnly(hostport string) string {
	h := hostport
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		if strings.IndexByte(h, ':') == i || strings.HasPrefix(h, "[") {
			h = h[:i]
		}
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// upgrade hands a WebSocket (or any Upgrade) connection over to a byte pipe.
func (p *Proxy) upgrade(w http.ResponseWriter, r *http.Request, c *backendConn, resp *http.Response, st *reqState) {
	st.status = resp.StatusCode
	hj, ok := w.(http.Hijacker)
	if !ok {
		c.Close()
		p.fail(w, st, http.StatusInternalServerError, "", "Protocol upgrade is not supported on this connection")
		return
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		c.Close()
		return
	}
	defer client.Close()
	defer c.Close()
	if _, ok := resp.Header[headerRequestID]; !ok {
		resp.Header[headerRequestID] = []string{st.requestID}
	}
	if err := resp.Write(client); err != nil {
		return
	}
	// Bytes already buffered on either side belong to the new protocol.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := c.conn.Write(b); err != nil {
			return
		}
	}
	done := make(chan struct{}, 2)
	go func() {
		n, _ := io.Copy(client, c.br)
		st.bytesOut += n
		closeWrite(client)
		done <- struct{}{}
	}()
	go func() {
		n, _ := io.Copy(c.conn, client)
		st.bytesIn += n
		closeWrite(c.conn)
		done <- struct{}{}
	}()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// fail writes a response made by the router itself.
func (p *Proxy) fail(w http.ResponseWriter, st *reqState, status int, code, msg string) {
	st.status = status
	st.routerError = code
	h := w.Header()
	if code != "" {
		h[headerRouterError] = []string{code}
	}
	h[headerRequestID] = []string{st.requestID}
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["Cache-Control"] = []string{"no-cache, no-store"}
	w.WriteHeader(status)
	n, _ := fmt.Fprintf(w, defaultErrorBodyFormat, status, http.StatusText(status), msg)
	st.bytesOut = int64(n)
}

// failEndpoint answers after every attempt failed, with gorouter's codes.
func (p *Proxy) failEndpoint(w http.ResponseWriter, r *http.Request, st *reqState, e *Endpoint, err error) {
	if r.Context().Err() != nil {
		// The client is gone; the status is for the access log only.
		st.status = 499
		st.routerError = errEndpointFailure + " (client closed the request)"
		return
	}
	code := errEndpointFailure + " (" + strings.ReplaceAll(err.Error(), "\n", " ") + ")"
	switch classifyTLS(err) {
	case tlsHostnameMismatch:
		p.fail(w, st, http.StatusServiceUnavailable, code, "The backend presented another instance's certificate: possible route integrity failure.")
	case tlsUntrusted:
		p.fail(w, st, 526, code, "The backend's certificate is not signed by the foundation's CA.")
	case tlsNotTLS, tlsHandshake:
		p.fail(w, st, 525, code, "The TLS handshake with the backend failed.")
	default:
		p.fail(w, st, http.StatusBadGateway, code, "Registered endpoint failed to handle the request.")
	}
}

// endpointFailed records an attempt's failure: TLS endpoints that fail to
// connect or prove their identity leave the table at once (they are never
// pruned by age, so this is how they go); others sit out for a while.
func (p *Proxy) endpointFailed(pool *Pool, e *Endpoint, err error, r *http.Request) {
	if r.Context().Err() != nil {
		// A client that went away says nothing about the backend.
		return
	}
	kind := classifyTLS(err)
	var de *dialError
	isDial := errors.As(err, &de)
	if kind != tlsOK {
		p.metrics.backendTLSFailures.WithLabelValues(kind.String()).Inc()
	}
	p.log.Info("backend-endpoint-failed", "endpoint", e.Addr, "route", pool.key.String(),
		"instance_id", e.PrivateInstanceID, "error", err.Error(), "tls_failure", kind.String())
	if e.TLS && (kind != tlsOK || isDial) {
		if p.reg.RemoveEndpoint(pool, e) {
			closeIdle(e)
			p.metrics.pruned.Inc()
			p.log.Info("endpoint-pruned-after-failure", "endpoint", e.Addr, "route", pool.key.String(), "instance_id", e.PrivateInstanceID)
		}
		return
	}
	e.failedAt.Store(p.now().UnixNano())
}

// stickyInstance returns the instance named by __VCAP_ID__ when the request
// also carries a session cookie, as gorouter requires.
func (p *Proxy) stickyInstance(r *http.Request) string {
	cookies := r.Header["Cookie"]
	if len(cookies) == 0 {
		return ""
	}
	var vcap string
	session := false
	for _, c := range r.Cookies() {
		if c.Name == vcapIDCookie {
			vcap = c.Value
			continue
		}
		for _, n := range p.cfg.StickyCookies {
			if c.Name == n {
				session = true
			}
		}
	}
	if !session {
		return ""
	}
	return vcap
}

// stickyResponse adds __VCAP_ID__ when the app starts a session, or when a
// sticky request landed on another instance because its own was gone.
func (p *Proxy) stickyResponse(h http.Header, e *Endpoint, sticky string, pool *Pool) {
	var session *http.Cookie
	for _, sc := range h["Set-Cookie"] {
		c, err := http.ParseSetCookie(sc)
		if err != nil {
			continue
		}
		for _, n := range p.cfg.StickyCookies {
			if c.Name == n {
				session = c
			}
		}
	}
	if session == nil && (sticky == "" || sticky == e.PrivateInstanceID) {
		return
	}
	path := pool.key.Path
	if path == "" {
		path = "/"
	}
	vc := &http.Cookie{Name: vcapIDCookie, Value: e.PrivateInstanceID, Path: path, HttpOnly: true}
	if session != nil {
		vc.Secure, vc.SameSite, vc.Expires, vc.MaxAge = session.Secure, session.SameSite, session.Expires, session.MaxAge
	}
	h.Add("Set-Cookie", vc.String())
}

// finish records the request in metrics and the access log.
func (p *Proxy) finish(r *http.Request, st *reqState) {
	if st.status == 0 {
		st.status = 499
	}
	total := p.now().Sub(st.start)
	p.metrics.observeRequest(st.status, total)
	if p.access != nil {
		p.access.Log(r, st, total)
	}
}
