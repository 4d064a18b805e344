package router

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/testutil"
)

// fakeBus delivers messages synchronously to the router's handlers.
type fakeBus struct {
	mu        sync.Mutex
	handlers  map[string]func(mbus.Msg)
	published []mbus.Msg
	connected atomic.Bool
	reconn    chan struct{}
}

func newFakeBus() *fakeBus {
	b := &fakeBus{handlers: map[string]func(mbus.Msg){}, reconn: make(chan struct{}, 1)}
	b.connected.Store(true)
	return b
}

type fakeSub struct{}

func (fakeSub) Unsubscribe() error { return nil }

func (b *fakeBus) Subscribe(subject string, h func(mbus.Msg)) (mbus.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.handlers[subject] = h
	return fakeSub{}, nil
}

func (b *fakeBus) Publish(subject string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published = append(b.published, mbus.Msg{Subject: subject, Data: append([]byte(nil), data...)})
	return nil
}

func (b *fakeBus) Connected() bool              { return b.connected.Load() }
func (b *fakeBus) Reconnected() <-chan struct{} { return b.reconn }

func (b *fakeBus) deliver(subject string, v any) {
	data, ok := v.([]byte)
	if !ok {
		data, _ = json.Marshal(v)
	}
	b.mu.Lock()
	h := b.handlers[subject]
	b.mu.Unlock()
	h(mbus.Msg{Subject: subject, Data: data})
}

func (b *fakeBus) publishedOn(subject string) []mbus.Msg {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []mbus.Msg
	for _, m := range b.published {
		if m.Subject == subject {
			out = append(out, m)
		}
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t      *testing.T
	r      *Router
	bus    *fakeBus
	logs   *syncBuffer
	access *syncBuffer
	client *http.Client
}

func newHarness(t *testing.T, mutate func(*FileConfig, *Options)) *harness {
	t.Helper()
	cfg := DefaultFileConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Status.Listen = "127.0.0.1:0"
	cfg.StartResponseDelay = 0
	logs, access := &syncBuffer{}, &syncBuffer{}
	o := Options{
		Logger:    slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AccessLog: access,
	}
	if mutate != nil {
		mutate(&cfg, &o)
	}
	o.Config = cfg
	bus := newFakeBus()
	r, err := New(bus, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop(context.Background())
		if t.Failed() {
			t.Logf("router log:\n%s", logs.String())
		}
	})
	return &harness{t: t, r: r, bus: bus, logs: logs, access: access,
		client: &http.Client{Transport: &http.Transport{DisableCompression: true}}}
}

func (h *harness) register(m mbus.RegistryMessage) {
	h.bus.deliver(mbus.SubjectRegister, m)
}

func (h *harness) do(method, host, path string, body io.Reader, hdr ...string) *http.Response {
	h.t.Helper()
	req, _ := http.NewRequest(method, "http://"+h.r.Addr()+path, body)
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// backend is an app instance that answers with its name and counts requests.
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
	last atomic.Pointer[http.Request]
	body atomic.Pointer[[]byte]
}

func newBackend(t *testing.T, name string, h http.HandlerFunc) *backend {
	b := &backend{name: name}
	b.srv = httptest.NewServer(b.handler(h))
	t.Cleanup(b.srv.Close)
	return b
}

func newTLSBackend(t *testing.T, name string, cert tls.Certificate) *backend {
	b := &backend{name: name}
	b.srv = httptest.NewUnstartedServer(b.handler(nil))
	b.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	b.srv.StartTLS()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) handler(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.last.Store(r)
		body, _ := io.ReadAll(r.Body)
		b.body.Store(&body)
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprint(w, b.name)
	}
}

func (b *backend) hostPort() (string, uint16) {
	host, port, _ := net.SplitHostPort(b.srv.Listener.Addr().String())
	var p uint16
	fmt.Sscan(port, &p)
	return host, p
}

func (b *backend) msg(uri, instance, index string) mbus.RegistryMessage {
	host, port := b.hostPort()
	return mbus.RegistryMessage{Host: host, Port: port, URIs: []string{uri}, App: "app-guid",
		PrivateInstanceID: instance, PrivateInstanceIndex: index}
}

func (b *backend) tlsMsg(uri, san string) mbus.RegistryMessage {
	host, port := b.hostPort()
	return mbus.RegistryMessage{Host: host, TLSPort: port, URIs: []string{uri}, App: "app-guid",
		PrivateInstanceID: san, ServerCertDomainSAN: san, PrivateInstanceIndex: "0"}
}

// deadAddr is a loopback port with nothing listening.
func deadAddr(t *testing.T) (string, uint16) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	return "127.0.0.1", uint16(addr.Port)
}

func TestProxyHeadersAndAccessLog(t *testing.T) {
	h := newHarness(t, nil)
	b := newBackend(t, "one", nil)
	h.register(b.msg("app.localhost", "inst-1", "0"))

	resp := h.do("GET", "App.Localhost:8081", "/hello?x=1", nil, "X-Forwarded-For", "1.2.3.4")
	if got := readBody(t, resp); resp.StatusCode != 200 || got != "one" {
		t.Fatalf("status %d body %q", resp.StatusCode, got)
	}
	rid := resp.Header.Get("X-Vcap-Request-Id")
	if !isUUID(rid) {
		t.Fatalf("response X-Vcap-Request-Id %q is not a UUID", rid)
	}
	req := b.last.Load()
	want := map[string]string{
		"X-Forwarded-For":    "1.2.3.4, 127.0.0.1",
		"X-Forwarded-Proto":  "http",
		"X-Vcap-Request-Id":  rid,
		"X-Cf-Applicationid": "app-guid",
		"X-Cf-Instanceid":    "inst-1",
		"X-Cf-Instanceindex": "0",
	}
	for k, v := range want {
		if got := req.Header.Get(k); got != v {
			t.Errorf("backend saw %s = %q, want %q", k, got, v)
		}
	}
	if tp := req.Header.Get("Traceparent"); !validTraceparent(tp) || tp[3:35] != strings.ReplaceAll(rid, "-", "") {
		t.Errorf("traceparent %q does not carry the request id %s", tp, rid)
	}
	if req.Header.Get("X-Request-Start") == "" {
		t.Error("no X-Request-Start")
	}
	if req.URL.RequestURI() != "/hello?x=1" {
		t.Errorf("backend saw %q", req.URL.RequestURI())
	}

	// A client's valid request id and trace are kept.
	const keep = "0af7651916cd43dd8448eb211c80319c"
	resp = h.do("GET", "app.localhost", "/", nil,
		"X-Vcap-Request-Id", "11111111-2222-3333-4444-555555555555",
		"Traceparent", "00-"+keep+"-b7ad6b7169203331-01")
	readBody(t, resp)
	req = b.last.Load()
	if got := req.Header.Get("X-Vcap-Request-Id"); got != "11111111-2222-3333-4444-555555555555" {
		t.Errorf("client request id replaced by %q", got)
	}
	if tp := req.Header.Get("Traceparent"); tp[3:35] != keep || tp[36:52] == "b7ad6b7169203331" {
		t.Errorf("traceparent %q should keep the trace id and add the router's span", tp)
	}
	// An invalid one is replaced.
	resp = h.do("GET", "app.localhost", "/", nil, "X-Vcap-Request-Id", "not-a-uuid")
	readBody(t, resp)
	if got := b.last.Load().Header.Get("X-Vcap-Request-Id"); !isUUID(got) {
		t.Errorf("invalid request id kept: %q", got)
	}

	testutil.CheckFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(h.access.String(), `"GET /hello?x=1 HTTP/1.1" 200 0 3 "-" "Go-http-client/1.1"`) {
			return fmt.Errorf("access log so far:\n%s", h.access.String())
		}
		return nil
	})
	line := strings.SplitN(h.access.String(), "\n", 2)[0]
	for _, part := range []string{"App.Localhost:8081 - [", `x_forwarded_for:"1.2.3.4, 127.0.0.1"`, `x_forwarded_proto:"http"`,
		`vcap_request_id:"` + rid + `"`, "response_time:", "gorouter_time:", `app_id:"app-guid"`, `app_index:"0"`,
		`instance_id:"inst-1"`, `x_cf_routererror:"-"`, `"` + b.srv.Listener.Addr().String() + `"`} {
		if !strings.Contains(line, part) {
			t.Errorf("access log line lacks %q:\n%s", part, line)
		}
	}
}

func TestProxyRouterErrors(t *testing.T) {
	h := newHarness(t, nil)
	resp := h.do("GET", "missing.localhost", "/", nil)
	body := readBody(t, resp)
	if resp.StatusCode != 404 || resp.Header.Get("X-Cf-Routererror") != "unknown_route" || !strings.Contains(body, "missing.localhost") {
		t.Fatalf("unknown route: %d %q %q", resp.StatusCode, resp.Header.Get("X-Cf-Routererror"), body)
	}
	testutil.CheckFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(h.access.String(), `x_cf_routererror:"unknown_route"`) {
			return fmt.Errorf("no unknown_route in the access log")
		}
		return nil
	})

	b := newBackend(t, "one", nil)
	h.register(b.msg("pinned.localhost", "inst-0", "0"))
	resp = h.do("GET", "pinned.localhost", "/", nil, "X-Cf-App-Instance", "garbage")
	readBody(t, resp)
	if resp.StatusCode != 400 || resp.Header.Get("X-Cf-Routererror") != "invalid_cf_app_instance_header" {
		t.Fatalf("bad instance header: %d %q", resp.StatusCode, resp.Header.Get("X-Cf-Routererror"))
	}
	resp = h.do("GET", "pinned.localhost", "/", nil, "X-Cf-App-Instance", "app-guid:7")
	readBody(t, resp)
	if resp.StatusCode != 400 || resp.Header.Get("X-Cf-Routererror") != "unknown_route" {
		t.Fatalf("unknown instance: %d %q", resp.StatusCode, resp.Header.Get("X-Cf-Routererror"))
	}
}

func TestProxyAppInstanceHeaderTargetsOneInstance(t *testing.T) {
	h := newHarness(t, nil)
	b0, b1 := newBackend(t, "zero", nil), newBackend(t, "one", nil)
	h.register(b0.msg("two.localhost", "i0", "0"))
	h.register(b1.msg("two.localhost", "i1", "1"))
	for i := 0; i < 6; i++ {
		resp := h.do("GET", "two.localhost", "/", nil, "X-Cf-App-Instance", "app-guid:1")
		if got := readBody(t, resp); got != "one" {
			t.Fatalf("request %d went to %q", i, got)
		}
	}
	if b1.last.Load().Header.Get("X-Cf-App-Instance") != "" {
		t.Error("X-Cf-App-Instance was forwarded to the app")
	}
}

func TestProxyRetriesDeadEndpointsAndKeepsTheBody(t *testing.T) {
	h := newHarness(t, nil)
	live := newBackend(t, "live", nil)
	host, port := deadAddr(t)
	h.register(mbus.RegistryMessage{Host: host, Port: port, URIs: []string{"r.localhost"}})
	h.register(live.msg("r.localhost", "live", "0"))

	payload := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB
	for i := 0; i < 10; i++ {
		resp := h.do("POST", "r.localhost", "/", bytes.NewReader(payload))
		if got := readBody(t, resp); resp.StatusCode != 200 || got != "live" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
		if got := *live.body.Load(); !bytes.Equal(got, payload) {
			t.Fatalf("backend received %d bytes, want the 1 KiB body intact", len(got))
		}
	}

	h.register(mbus.RegistryMessage{Host: host, Port: port, URIs: []string{"dead.localhost"}})
	resp := h.do("GET", "dead.localhost", "/", nil)
	readBody(t, resp)
	if resp.StatusCode != 502 || !strings.HasPrefix(resp.Header.Get("X-Cf-Routererror"), "endpoint_failure (") {
		t.Fatalf("dead-only route: %d %q", resp.StatusCode, resp.Header.Get("X-Cf-Routererror"))
	}
}

func TestProxyAttemptsAreCapped(t *testing.T) {
	h := newHarness(t, nil)
	for i := 0; i < 5; i++ {
		host, port := deadAddr(t)
		h.register(mbus.RegistryMessage{Host: host, Port: port, URIs: []string{"cap.localhost"}})
	}
	resp := h.do("GET", "cap.localhost", "/", nil)
	readBody(t, resp)
	if resp.StatusCode != 502 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	testutil.CheckFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		if n := strings.Count(h.logs.String(), "backend-endpoint-failed"); n != 3 {
			return fmt.Errorf("%d failed attempts logged, want max_attempts = 3", n)
		}
		return nil
	})
}

// TestProxyNeverReplaysARequestTheAppMayHaveSeen is the payment case: a POST
// whose backend read it and then dropped the connection must not be sent to
// another instance.
func TestProxyNeverReplaysARequestTheAppMayHaveSeen(t *testing.T) {
	h := newHarness(t, nil)
	var hits atomic.Int64
	dropper := newBackend(t, "dropper", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	})
	other := newBackend(t, "other", nil)
	h.register(dropper.msg("pay.localhost", "a", "0"))
	h.register(other.msg("pay.localhost", "b", "1"))
	for i := 0; i < 4; i++ {
		resp := h.do("POST", "pay.localhost", "/", strings.NewReader("charge=10"))
		readBody(t, resp)
	}
	if other.hits.Load() == 4 {
		t.Fatal("round-robin never reached the dropping backend; the test proves nothing")
	}
	if got := hits.Load() + other.hits.Load(); got != 4 {
		t.Fatalf("4 POSTs reached backends %d times: a POST was replayed", got)
	}

	// A GET is idempotent: the same failure is retried on the other instance.
	for i := 0; i < 4; i++ {
		resp := h.do("GET", "pay.localhost", "/", nil)
		if got := readBody(t, resp); resp.StatusCode != 200 || got != "other" {
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode, got)
		}
	}
}

func TestProxyRouteIntegrity(t *testing.T) {
	ca := testutil.NewCA(t, "instance identity CA")
	rogueCA := testutil.NewCA(t, "rogue CA")
	h := newHarness(t, func(c *FileConfig, o *Options) {
		o.BackendTLS = &tls.Config{RootCAs: ca.Pool}
	})
	good := newTLSBackend(t, "good", ca.Issue(t, "instance-a", net.ParseIP("127.0.0.1")))
	imposter := newTLSBackend(t, "imposter", ca.Issue(t, "instance-b", net.ParseIP("127.0.0.1")))
	untrusted := newTLSBackend(t, "untrusted", rogueCA.Issue(t, "instance-c"))
	plain := newBackend(t, "plain", nil)

	// The imposter holds a stale registration for instance-a's route.
	h.register(good.tlsMsg("secure.localhost", "instance-a"))
	h.register(imposter.tlsMsg("secure.localhost", "instance-a"))
	for i := 0; i < 20; i++ {
		resp := h.do("GET", "secure.localhost", "/", nil)
		if got := readBody(t, resp); resp.StatusCode != 200 || got != "good" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
	}
	if n := imposter.hits.Load(); n != 0 {
		t.Fatalf("the imposter served %d requests", n)
	}
	if eps := h.r.Registry().Lookup("secure.localhost", "/").Endpoints(); len(eps) != 1 {
		t.Fatalf("the imposter's endpoint was not removed: %v", eps)
	}

	cases := []struct {
		name   string
		msg    mbus.RegistryMessage
		status int
	}{
		{"hostname mismatch", imposter.tlsMsg("mismatch.localhost", "instance-a"), 503},
		{"untrusted certificate", untrusted.tlsMsg("untrusted.localhost", "instance-c"), 526},
		{"plaintext on the TLS port", plain.tlsMsg("plain.localhost", "instance-d"), 525},
	}
	for _, c := range cases {
		h.register(c.msg)
		resp := h.do("GET", c.msg.URIs[0], "/", nil)
		readBody(t, resp)
		if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("X-Cf-Routererror"), "endpoint_failure") {
			t.Errorf("%s: %d %q, want %d endpoint_failure", c.name, resp.StatusCode, resp.Header.Get("X-Cf-Routererror"), c.status)
		}
		if h.r.Registry().Lookup(c.msg.URIs[0], "/") != nil {
			t.Errorf("%s: endpoint still routable", c.name)
		}
	}
	if imposter.hits.Load()+untrusted.hits.Load()+plain.hits.Load() != 0 {
		t.Fatal("a request reached a backend that failed the identity check")
	}
}

func TestProxyClientCancelDoesNotPruneTLSEndpoint(t *testing.T) {
	ca := testutil.NewCA(t, "ca")
	h := newHarness(t, func(c *FileConfig, o *Options) { o.BackendTLS = &tls.Config{RootCAs: ca.Pool} })
	release := make(chan struct{})
	var backendSawCancel atomic.Int64
	b := &backend{name: "slow"}
	b.srv = httptest.NewUnstartedServer(b.handler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			backendSawCancel.Add(1)
		}
	}))
	b.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "slow-1", net.ParseIP("127.0.0.1"))}}
	b.srv.StartTLS()
	t.Cleanup(b.srv.Close)
	h.register(b.tlsMsg("slow.localhost", "slow-1"))

	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+h.r.Addr()+"/", nil)
		req.Host = "slow.localhost"
		done := make(chan struct{})
		go func() { defer close(done); h.client.Do(req) }()
		testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
			if b.hits.Load() <= int64(i) {
				return fmt.Errorf("request %d not at the backend yet", i)
			}
			return nil
		})
		cancel()
		<-done
	}
	// The router closes the backend connection when its client leaves, so
	// the app stops working for nobody.
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if n := backendSawCancel.Load(); n != 5 {
			return fmt.Errorf("the backend saw %d of 5 cancellations", n)
		}
		return nil
	})
	close(release)
	if h.r.Registry().Lookup("slow.localhost", "/") == nil {
		t.Fatal("clients that went away got a healthy TLS endpoint pruned")
	}
	resp := h.do("GET", "slow.localhost", "/", nil)
	if readBody(t, resp); resp.StatusCode != 200 {
		t.Fatalf("status %d after cancelled clients", resp.StatusCode)
	}
}

func TestProxyStickySessions(t *testing.T) {
	h := newHarness(t, nil)
	session := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/login" {
				http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: "s-" + name, Secure: true})
			}
			fmt.Fprint(w, name)
		}
	}
	b1, b2 := newBackend(t, "i1", session("i1")), newBackend(t, "i2", session("i2"))
	h.register(b1.msg("sticky.localhost", "i1", "0"))
	h.register(b2.msg("sticky.localhost", "i2", "1"))

	resp := h.do("GET", "sticky.localhost", "/login", nil)
	who := readBody(t, resp)
	var vcap *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "__VCAP_ID__" {
			vcap = c
		}
	}
	if vcap == nil || vcap.Value != who || !vcap.HttpOnly || !vcap.Secure || vcap.Path != "/" {
		t.Fatalf("__VCAP_ID__ cookie = %+v, want HttpOnly, Secure, Path=/ and value %s", vcap, who)
	}
	cookie := "JSESSIONID=s-" + who + "; __VCAP_ID__=" + who
	for i := 0; i < 8; i++ {
		resp := h.do("GET", "sticky.localhost", "/", nil, "Cookie", cookie)
		if got := readBody(t, resp); got != who {
			t.Fatalf("sticky request %d went to %s, not %s", i, got, who)
		}
	}
	// Without the session cookie, __VCAP_ID__ alone does not pin.
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		seen[readBody(t, h.do("GET", "sticky.localhost", "/", nil, "Cookie", "__VCAP_ID__="+who))] = true
	}
	if len(seen) != 2 {
		t.Fatalf("__VCAP_ID__ without JSESSIONID pinned requests: %v", seen)
	}
}

func TestProxyBackendHeaderBombIs502(t *testing.T) {
	h := newHarness(t, func(c *FileConfig, _ *Options) { c.Backends.MaxResponseHeaderBytes = 8 << 10 })
	b := newBackend(t, "bomb", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 100; i++ {
			w.Header().Set(fmt.Sprintf("X-Bomb-%d", i), strings.Repeat("x", 200))
		}
		io.WriteString(w, "boom")
	})
	h.register(b.msg("bomb.localhost", "b", "0"))
	resp := h.do("GET", "bomb.localhost", "/", nil)
	readBody(t, resp)
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502 for 20 KB of response headers", resp.StatusCode)
	}
}

func TestProxyStreamsAndUpgrades(t *testing.T) {
	h := newHarness(t, nil)
	next := make(chan struct{})
	stream := newBackend(t, "stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-next
		io.WriteString(w, "second\n")
	})
	h.register(stream.msg("stream.localhost", "s", "0"))
	resp := h.do("GET", "stream.localhost", "/", nil)
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk %q, %v", line, err)
	}
	close(next)
	if line, _ = br.ReadString('\n'); line != "second\n" {
		t.Fatalf("second chunk %q", line)
	}
	resp.Body.Close()

	ws := newBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "no upgrade header reached the app", 400)
			return
		}
		conn, brw, _ := w.(http.Hijacker).Hijack()
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 5)
		io.ReadFull(brw, buf)
		conn.Write(bytes.ToUpper(buf))
	})
	h.register(ws.msg("ws.localhost", "w", "0"))
	conn, err := net.Dial("tcp", h.r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /chat HTTP/1.1\r\nHost: ws.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	cr := bufio.NewReader(conn)
	up, err := http.ReadResponse(cr, nil)
	if err != nil || up.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", up, err)
	}
	conn.Write([]byte("hello"))
	got := make([]byte, 5)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(cr, got); err != nil || string(got) != "HELLO" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

func TestRouterStartAndGreet(t *testing.T) {
	h := newHarness(t, func(c *FileConfig, _ *Options) {
		c.MinimumRegisterInterval = 7 * time.Second
		c.DropletStaleThreshold = 90 * time.Second
	})
	starts := h.bus.publishedOn(mbus.SubjectStart)
	if len(starts) != 1 {
		t.Fatalf("%d router.start messages at start, want 1", len(starts))
	}
	var rs mbus.RouterStart
	if err := json.Unmarshal(starts[0].Data, &rs); err != nil {
		t.Fatal(err)
	}
	if rs.MinimumRegisterIntervalInSeconds != 7 || rs.PruneThresholdInSeconds != 90 || !strings.HasPrefix(rs.ID, "0-") || len(rs.Hosts) != 1 {
		t.Fatalf("router.start = %+v", rs)
	}
	h.bus.mu.Lock()
	greet := h.bus.handlers[mbus.SubjectGreet]
	h.bus.mu.Unlock()
	greet(mbus.Msg{Subject: mbus.SubjectGreet, Reply: "_INBOX.x"})
	if replies := h.bus.publishedOn("_INBOX.x"); len(replies) != 1 || !bytes.Equal(replies[0].Data, starts[0].Data) {
		t.Fatalf("greet replies %v", replies)
	}
	h.bus.reconn <- struct{}{}
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if n := len(h.bus.publishedOn(mbus.SubjectStart)); n != 2 {
			return fmt.Errorf("%d router.start after a reconnect, want 2", n)
		}
		return nil
	})
}

func TestRouterSuspendsPruningWhileTheBusIsDown(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Unix(1000, 0).UnixNano())
	h := newHarness(t, func(c *FileConfig, o *Options) {
		c.DropletStaleThreshold = 10 * time.Second
		c.PruneStaleDropletsInterval = 5 * time.Millisecond
		o.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	b := newBackend(t, "b", nil)
	h.register(b.msg("p.localhost", "p", "0"))
	h.bus.connected.Store(false)
	clock.Add(int64(time.Minute))
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if !strings.Contains(h.logs.String(), "prune-suspended") {
			return fmt.Errorf("no prune-suspended")
		}
		return nil
	})
	if h.r.Registry().Lookup("p.localhost", "/") == nil {
		t.Fatal("pruned while the bus was down")
	}
	h.bus.connected.Store(true)
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if !strings.Contains(h.logs.String(), "prune-resumed") {
			return fmt.Errorf("no prune-resumed")
		}
		return nil
	})
	if h.r.Registry().Lookup("p.localhost", "/") == nil {
		t.Fatal("pruned on the first cycle after the bus came back: it should have been freshened")
	}
	// With no heartbeat after the bus returned, the route goes after its threshold.
	clock.Add(int64(11 * time.Second))
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if h.r.Registry().Lookup("p.localhost", "/") != nil {
			return fmt.Errorf("stale route still there")
		}
		return nil
	})
}

func TestRouterDropsInvalidMessages(t *testing.T) {
	h := newHarness(t, nil)
	h.bus.deliver(mbus.SubjectRegister, []byte(`{not json`))
	h.bus.deliver(mbus.SubjectRegister, []byte(`{"port":80,"uris":["a.localhost"]}`))
	h.bus.deliver(mbus.SubjectUnregister, bytes.Repeat([]byte("x"), mbus.MaxMessageBytes+1))
	if n := strings.Count(h.logs.String(), "validation-error"); n != 3 {
		t.Fatalf("%d validation-error lines, want 3", n)
	}
	if routes, _ := h.r.Registry().Counts(); routes != 0 {
		t.Fatalf("an invalid message created %d routes", routes)
	}
}

func TestStatusServer(t *testing.T) {
	h := newHarness(t, func(c *FileConfig, _ *Options) {
		c.StartResponseDelay = time.Hour
		c.Status.User, c.Status.Password = "admin", "secret"
	})
	get := func(path, user, pass string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", "http://"+h.r.StatusAddr()+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, readBody(t, resp)
	}
	if resp, _ := get("/health", "", ""); resp.StatusCode != 503 {
		t.Fatalf("/health = %d before start_response_delay", resp.StatusCode)
	}
	b := newBackend(t, "b", nil)
	m := b.msg("s.localhost/api", "inst", "0")
	m.Tags = map[string]string{"component": "route-emitter"}
	h.register(m)
	if resp, _ := get("/routes", "", ""); resp.StatusCode != 401 {
		t.Fatalf("/routes without credentials = %d", resp.StatusCode)
	}
	resp, body := get("/routes", "admin", "secret")
	var routes map[string][]RouteEndpoint
	if err := json.Unmarshal([]byte(body), &routes); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/routes: %d %v %s", resp.StatusCode, err, body)
	}
	eps := routes["s.localhost/api"]
	if len(eps) != 1 || eps[0].Address != b.srv.Listener.Addr().String() || eps[0].TTL != 120 ||
		eps[0].PrivateInstanceID != "inst" || eps[0].Tags["component"] != "route-emitter" || eps[0].TLS {
		t.Fatalf("/routes = %s", body)
	}
	readBody(t, h.do("GET", "s.localhost", "/api/x", nil))
	_, metrics := get("/metrics", "", "")
	for _, want := range []string{`minicf_router_requests_total{status_class="2xx"} 1`, "minicf_router_total_routes 1",
		"minicf_router_total_endpoints 1", `minicf_router_registrations_total{result="added"} 1`, "minicf_router_request_duration_seconds_bucket"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestDrainKeepsServingThenFinishesInFlight(t *testing.T) {
	h := newHarness(t, nil)
	started := make(chan struct{})
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond) // the in-flight request the drain must wait for
		io.WriteString(w, "done")
	})
	h.register(slow.msg("slow.localhost", "s", "0"))
	result := make(chan string, 1)
	go func() {
		resp := h.do("GET", "slow.localhost", "/", nil)
		result <- fmt.Sprint(resp.StatusCode, " ", readBody(t, resp))
	}()
	<-started
	drained := make(chan error, 1)
	go func() { drained <- h.r.Drain(context.Background(), 200*time.Millisecond) }()
	testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		if h.r.Healthy() {
			return fmt.Errorf("still healthy while draining")
		}
		return nil
	})
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
	if got := <-result; got != "200 done" {
		t.Fatalf("in-flight request ended with %q", got)
	}
	if _, err := net.DialTimeout("tcp", h.r.Addr(), time.Second); err == nil {
		t.Fatal("the listener still accepts after the drain")
	}
}

func TestConfigValidation(t *testing.T) {
	bad := map[string]func(*FileConfig){
		"balancing_algorithm": func(c *FileConfig) { c.BalancingAlgorithm = "random" },
		"max_attempts":        func(c *FileConfig) { c.Backends.MaxAttempts = 0 },
		"listen":              func(c *FileConfig) { c.Listen = "8081" },
		"droplet_stale":       func(c *FileConfig) { c.DropletStaleThreshold = 0 },
		"cert_file":           func(c *FileConfig) { c.Backends.CertFile = "x.pem" },
	}
	for name, mutate := range bad {
		c := DefaultFileConfig()
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), strings.Split(name, "_stale")[0]) {
			t.Errorf("%s: error %v does not name the setting", name, err)
		}
	}
	dir := t.TempDir()
	path := dir + "/router.yml"
	writeFile(t, path, "droplet_stale_treshold: 10s\n")
	if _, err := LoadFileConfig(path); err == nil || !strings.Contains(err.Error(), "droplet_stale_treshold") {
		t.Fatalf("a misspelt key was accepted: %v", err)
	}
	writeFile(t, path, "droplet_stale_threshold: 10s\nbackends:\n  max_attempts: 5\n")
	c, err := LoadFileConfig(path)
	if err != nil || c.DropletStaleThreshold != 10*time.Second || c.Backends.MaxAttempts != 5 || c.PruneStaleDropletsInterval != 30*time.Second {
		t.Fatalf("LoadFileConfig = %+v, %v", c, err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAccessLinesArePublishedPerApp(t *testing.T) {
	var mu sync.Mutex
	batches := map[string][]string{}
	h := newHarness(t, func(_ *FileConfig, o *Options) {
		o.AppLogs = func(app string, batch []byte) {
			mu.Lock()
			defer mu.Unlock()
			for _, l := range strings.Split(strings.TrimSuffix(string(batch), "\n"), "\n") {
				batches[app] = append(batches[app], l)
			}
		}
	})
	b := newBackend(t, "b", nil)
	h.register(b.msg("logs.localhost", "inst", "3"))
	for i := 0; i < 5; i++ {
		readBody(t, h.do("GET", "logs.localhost", fmt.Sprintf("/path-%d", i), nil))
	}
	readBody(t, h.do("GET", "unknown.localhost", "/", nil))
	testutil.CheckFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(batches["app-guid"]) != 5 {
			return fmt.Errorf("%d RTR lines for app-guid, want 5: %v", len(batches["app-guid"]), batches)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 1 {
		t.Fatalf("lines published for %d apps, want only app-guid: %v", len(batches), batches)
	}
	var l mbus.AppLog
	if err := json.Unmarshal([]byte(batches["app-guid"][4]), &l); err != nil {
		t.Fatal(err)
	}
	if l.SourceType != "RTR" || l.InstanceIndex != "3" || l.AppID != "app-guid" || !strings.Contains(l.Message, `"GET /path-4 HTTP/1.1" 200`) || l.TimestampNs == 0 {
		t.Fatalf("app log = %+v", l)
	}
}

// TestProxyDoesNotLoseAPOSTToAConnectionTheAppClosed: an app that closes
// idle keep-alive connections (as Java's 60 s timeout does) must not turn
// the next POST into a 502. The router probes idle connections before reuse.
func TestProxyDoesNotLoseAPOSTToAConnectionTheAppClosed(t *testing.T) {
	h := newHarness(t, func(c *FileConfig, _ *Options) { c.Backends.IdleProbeAfter = 0 })
	var closed atomic.Int64
	b := &backend{name: "idle-closer"}
	b.srv = httptest.NewUnstartedServer(b.handler(nil))
	b.srv.Config.IdleTimeout = 50 * time.Millisecond
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	h.register(b.msg("idle.localhost", "i", "0"))
	for i := 0; i < 3; i++ {
		resp := h.do("POST", "idle.localhost", "/", strings.NewReader("order=1"))
		if got := readBody(t, resp); resp.StatusCode != 200 || got != "idle-closer" {
			t.Fatalf("POST %d: %d %q", i, resp.StatusCode, got)
		}
		want := int64(i + 1)
		testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
			if closed.Load() < want {
				return fmt.Errorf("the app has not closed the idle connection yet")
			}
			return nil
		})
	}
	if n := b.hits.Load(); n != 3 {
		t.Fatalf("the app saw %d POSTs, want 3", n)
	}
}
