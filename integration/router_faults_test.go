package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
	"github.com/minicf/minicf/internal/testutil"
)

// More of the fault tests in code-and-reliability-anchors.md B5, beyond the
// twelve cases of router_test.go. Each comment names its B5 item.

// hangUp closes the client connection of a handler at once, with a reset:
// a backend that crashed after reading the request.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// B5 #22: a POST that reached the backend is never sent again, even when the
// router had picked up a kept-alive connection for it.
func TestRouter_POSTIsNotReplayedAfterTheBackendReadIt(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	var posts atomic.Int64
	app := newBackendWith(t, "crasher", harness.BackendOptions{Handler: func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPost {
			posts.Add(1) // the body was read before this handler ran
			hangUp(w)
			return
		}
		io.WriteString(w, "crasher")
	}})
	r.Bus.Register(app.reg("crash.example.com"))
	r.WaitForStatus(t, "crash.example.com", http.StatusOK, 2*time.Second)

	for _, c := range []struct {
		name string
		warm bool // a GET first leaves an idle router→backend connection for the POST
	}{
		// The wait for the route left an idle connection: the POST reuses it.
		{"kept-alive connection", true},
		// The failure above closed every connection: this POST dials.
		{"fresh connection", false},
	} {
		if c.warm {
			if resp := r.Get(t, "crash.example.com", "/"); resp.Status != http.StatusOK {
				t.Fatalf("warm-up GET: %d", resp.Status)
			}
		}
		before := posts.Load()
		body := make([]byte, 1024)
		rand.Read(body)
		req, _ := http.NewRequest(http.MethodPost, "http://x/order", bytes.NewReader(body))
		resp, err := r.Request("crash.example.com", req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusBadGateway {
			t.Errorf("%s: POST answered %d %q, want 502", c.name, resp.Status, resp.Body)
		}
		if n := posts.Load() - before; n != 1 {
			t.Errorf("%s: the backend received the POST %d times, want exactly once", c.name, n)
		}
	}
}

// B5 #23: a GET whose backend closed the connection after reading it is
// retried on another endpoint.
func TestRouter_IdempotentRequestRetriedAfterEOF(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	closer := newBackendWith(t, "closer", harness.BackendOptions{Handler: func(w http.ResponseWriter, _ *http.Request) { hangUp(w) }})
	good := newBackend(t, "good")
	// One route per GET: round-robin starts at random, so the closer comes
	// first for some of them (for none only once in 4096 runs).
	const routes = 12
	for i := 0; i < routes; i++ {
		host := fmt.Sprintf("eof-%d.example.com", i)
		r.Bus.Register(closer.reg(host))
		r.Bus.Register(good.reg(host))
	}
	for i := 0; i < routes; i++ {
		r.WaitForEndpoints(t, fmt.Sprintf("eof-%d.example.com", i), 2)
	}
	for i := 0; i < routes; i++ {
		resp := r.Get(t, fmt.Sprintf("eof-%d.example.com", i), "/")
		if resp.Status != http.StatusOK || resp.Body != "good" {
			t.Errorf("GET %d: %d %q (X-Cf-Routererror %q), want 200 from good", i, resp.Status, resp.Body, resp.RouterError())
		}
	}
	if closer.Hits.Load() == 0 {
		t.Error("no GET met the closing backend first; the retry path was not exercised")
	}
	t.Logf("%d of %d GETs met the closing backend first", closer.Hits.Load(), routes)
}

var endpointAttrRE = regexp.MustCompile(`"endpoint":"([^"]+)"`)

// B5 #24: attempts ≤ min(max_attempts, endpoints), and no endpoint is tried
// twice by one request.
func TestRouter_AttemptsAreCapped(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		maxAttempts int
		dead        map[string]int // route → dead endpoints
	}{
		{3, map[string]int{"five-dead.example.com": 5, "two-dead.example.com": 2}},
		// More attempts allowed than endpoints, and more than four of them.
		{7, map[string]int{"six-dead.example.com": 6}},
	} {
		r := suite.StartRouter(t, harness.RouterSpec{Config: map[string]any{"backends": map[string]any{"max_attempts": c.maxAttempts}}})
		for host, dead := range c.dead {
			for i := 0; i < dead; i++ {
				r.Bus.Register(harness.RegistryMessage{Host: "127.0.0.1", Port: harness.ClosedPort(t), URIs: []string{host}})
			}
			r.WaitForEndpoints(t, host, dead)
		}
		for host, dead := range c.dead {
			want := min(c.maxAttempts, dead)
			resp := r.Get(t, host, "/")
			if resp.Status != http.StatusBadGateway {
				t.Errorf("%s: %d, want 502", host, resp.Status)
			}
			attempts := func() map[string]int {
				per := map[string]int{}
				for _, l := range r.LinesWithMsg("backend-endpoint-failed") {
					if strings.Contains(l, `"route":"`+host+`"`) {
						per[endpointAttrRE.FindStringSubmatch(l)[1]]++
					}
				}
				return per
			}
			total := func(per map[string]int) (n int) {
				for _, v := range per {
					n += v
				}
				return n
			}
			r.LogBarrier(t)
			per := attempts()
			if n := total(per); n != want {
				t.Errorf("max_attempts %d, %s with %d dead endpoints: %d attempts logged, want %d (per endpoint: %v)",
					c.maxAttempts, host, dead, n, want, per)
			}
			for ep, n := range per {
				if n > 1 {
					t.Errorf("max_attempts %d, %s: one request tried %s %d times", c.maxAttempts, host, ep, n)
				}
			}
		}
	}
}

// B5 #20: dead endpoints at the head of a pool cost at most the first
// requests; failed endpoints then sit out for stale_threshold/4.
func TestRouter_DeadEndpointsAtPoolHeadAreSkipped(t *testing.T) {
	t.Parallel()
	// A 20s threshold makes the sit-out 5s, longer than the test.
	r := suite.StartRouter(t, harness.RouterSpec{Config: map[string]any{"droplet_stale_threshold": "20s"}})
	for i := 0; i < 3; i++ {
		r.Bus.Register(harness.RegistryMessage{Host: "127.0.0.1", Port: harness.ClosedPort(t), URIs: []string{"head.example.com"}})
	}
	var live []*backend
	for i := 0; i < 3; i++ {
		b := newBackend(t, fmt.Sprintf("live-%d", i))
		live = append(live, b)
		r.Bus.Register(b.reg("head.example.com"))
	}
	r.WaitForEndpoints(t, "head.example.com", 6)
	failed := 0
	for i := 0; i < 103; i++ {
		resp := r.Get(t, "head.example.com", "/")
		if resp.Status == http.StatusOK {
			continue
		}
		failed++
		// Round-robin starts at a random endpoint, so the dead block is met
		// somewhere in the first round of six; after that it sits out.
		if i >= 6 {
			t.Errorf("request %d failed (%d %q) after the dead endpoints had been found", i, resp.Status, resp.RouterError())
		}
	}
	if failed > 3 {
		t.Errorf("%d of 103 requests failed, want at most 3", failed)
	}
	for _, b := range live {
		if b.Hits.Load() == 0 {
			t.Errorf("%s got no requests; round-robin should spread them", b.Name)
		}
	}
}

// B5 #17: when one of two TLS instances dies, requests keep succeeding and
// the dead one leaves the table after its first failed dial.
func TestRouter_DeadTLSEndpointIsRemoved(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "instance-ca")
	r := suite.StartRouter(t, harness.RouterSpec{BackendCA: ca.WriteCAFile(t, t.TempDir())})
	a := newTLSBackend(t, "inst-a", ca.Issue(t, "inst-a", net.ParseIP("127.0.0.1")))
	b := newTLSBackend(t, "inst-b", ca.Issue(t, "inst-b", net.ParseIP("127.0.0.1")))
	r.Bus.Register(a.tlsReg("tlsdead.example.com", "inst-a"))
	r.Bus.Register(b.tlsReg("tlsdead.example.com", "inst-b"))
	r.WaitForEndpoints(t, "tlsdead.example.com", 2)
	b.Srv.Close()
	for i := 0; i < 20; i++ {
		if resp := r.Get(t, "tlsdead.example.com", "/"); resp.Status != http.StatusOK || resp.Body != "inst-a" {
			t.Errorf("request %d: %d %q (X-Cf-Routererror %q)", i, resp.Status, resp.Body, resp.RouterError())
		}
	}
	if eps := r.Routes(t)["tlsdead.example.com"]; len(eps) != 1 || eps[0].Address != a.Addr() {
		t.Errorf("/routes shows %+v, want only %s", eps, a.Addr())
	}
}

// B5 #19: clients that give up mid-request say nothing about the backend: a
// TLS endpoint (pruned on failures) stays, and later requests succeed.
func TestRouter_ClientCancelIsNotABackendFailure(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "instance-ca")
	r := suite.StartRouter(t, harness.RouterSpec{BackendCA: ca.WriteCAFile(t, t.TempDir())})
	app := newBackendWith(t, "patient", harness.BackendOptions{
		Cert: ptr(ca.Issue(t, "patient", net.ParseIP("127.0.0.1"))),
		Handler: func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == "/slow" {
				select {
				case <-req.Context().Done():
					return
				case <-time.After(time.Second):
				}
			}
			io.WriteString(w, "patient")
		},
	})
	r.Bus.Register(app.tlsReg("cancel.example.com", "patient"))
	r.WaitForStatus(t, "cancel.example.com", http.StatusOK, 2*time.Second)

	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://x/slow", nil)
			if _, err := r.Request("cancel.example.com", req); err == nil {
				t.Error("a request meant to be cancelled completed")
			}
		})
	}
	wg.Wait()
	if eps := r.Routes(t)["cancel.example.com"]; len(eps) != 1 {
		t.Fatalf("after cancelled requests /routes shows %+v, want the endpoint still there", eps)
	}
	for i := 0; i < 20; i++ {
		if resp := r.Get(t, "cancel.example.com", "/"); resp.Status != http.StatusOK {
			t.Errorf("request %d after the cancellations: %d %q", i, resp.Status, resp.RouterError())
		}
	}
}

// A client that gives up cancels the backend request, as gorouter's
// httputil.ReverseProxy does: the backend must not keep working (and the
// router keep a connection and a goroutine) for nobody until
// endpoint_timeout.
func TestRouter_ClientCancelReachesTheBackend(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	cancelled := make(chan struct{}, 1)
	app := newBackendWith(t, "long-poll", harness.BackendOptions{Handler: func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/poll" {
			select {
			case <-req.Context().Done():
				cancelled <- struct{}{}
				return
			case <-time.After(5 * time.Second):
			}
		}
		io.WriteString(w, "long-poll")
	}})
	r.Bus.Register(app.reg("poll.example.com"))
	r.WaitForStatus(t, "poll.example.com", http.StatusOK, 2*time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://x/poll", nil)
	if _, err := r.Request("poll.example.com", req); err == nil {
		t.Fatal("the long poll completed although the client gave up")
	}
	gaveUp := time.Now()
	select {
	case <-cancelled:
		t.Logf("the backend saw the cancellation %v after the client gave up", time.Since(gaveUp).Round(time.Millisecond))
	case <-time.After(2 * time.Second):
		t.Error("2s after the client gave up, the backend request is still open (the router does not cancel it)")
	}
}

func ptr[T any](v T) *T { return &v }

// B5 #4: registrations and unregistrations older than the stored endpoint
// (by endpoint_updated_at_ns) change nothing.
func TestRouter_OutOfOrderUpdatesAreIgnored(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	app := newBackend(t, "ordered")
	now := time.Now().UnixNano()
	current := app.reg("order.example.com")
	current.PrivateInstanceID, current.EndpointUpdatedAtNs = "instance-new", now
	r.Bus.Register(current)
	r.WaitForStatus(t, "order.example.com", http.StatusOK, 2*time.Second)

	older := current
	older.PrivateInstanceID, older.EndpointUpdatedAtNs = "instance-old", now-int64(time.Second)
	r.Bus.Register(older)
	r.WaitForMsg(t, "endpoint-update-ignored-older", 1, 2*time.Second)
	r.Get(t, "order.example.com", "/")
	if got := app.Last().Header.Get("X-Cf-Instanceid"); got != "instance-new" {
		t.Errorf("after an older registration the backend saw X-Cf-Instanceid %q, want instance-new", got)
	}

	// An older unregister leaves the endpoint. A sentinel unregistered after
	// it on the same subject shows when the router has handled it.
	sentinel := newBackend(t, "sentinel")
	r.Bus.Register(sentinel.reg("sentinel.example.com"))
	r.WaitForStatus(t, "sentinel.example.com", http.StatusOK, 2*time.Second)
	r.Bus.Unregister(older)
	r.Bus.Unregister(sentinel.reg("sentinel.example.com"))
	r.WaitForStatus(t, "sentinel.example.com", http.StatusNotFound, 2*time.Second)
	if resp := r.Get(t, "order.example.com", "/"); resp.Status != http.StatusOK {
		t.Errorf("an unregister older than the registration removed the route: %d %q", resp.Status, resp.RouterError())
	}

	newer := current
	newer.EndpointUpdatedAtNs = now + int64(time.Second)
	r.Bus.Unregister(newer)
	r.WaitForStatus(t, "order.example.com", http.StatusNotFound, 2*time.Second)
}

// B5 #10: NATS stopping and starting again and again never hurts the router:
// one disconnected and one reconnected line per flap, router.start after
// each reconnect, routes still served.
func TestRouter_NATSFlapsAreSurvived(t *testing.T) {
	t.Parallel()
	natsPort := harness.FreePort(t)
	natsProc := suite.StartNATS(t, natsPort)
	r := suite.StartRouter(t, harness.RouterSpec{NATSURL: "nats://nats:nats@127.0.0.1:" + natsPort})
	app := newBackend(t, "flapper")
	reg := app.reg("flap.example.com")
	r.Bus.Register(reg)
	// Heartbeat like an emitter: the test is about the bus, not about aging.
	r.Bus.Heartbeat(reg, 200*time.Millisecond)
	r.WaitForStatus(t, "flap.example.com", http.StatusOK, 2*time.Second)

	const flaps = 3
	for i := 1; i <= flaps; i++ {
		natsProc.Kill(t)
		r.WaitForMsg(t, "nats-connection-disconnected", i, 5*time.Second)
		natsProc = suite.StartNATS(t, natsPort)
		r.WaitForMsg(t, "nats-connection-reconnected", i, 10*time.Second)
		r.WaitForMsg(t, "router-start-published", i+1, 5*time.Second)
		if resp, err := r.TryGet("flap.example.com", "/"); err != nil || resp.Status != http.StatusOK {
			t.Errorf("after flap %d: %d %q (err %v)", i, resp.Status, resp.RouterError(), err)
		}
	}
	if r.Exited() {
		t.Fatalf("router died during the flaps: %s", r.State())
	}
	for msg, want := range map[string]int{
		"nats-connection-disconnected": flaps,
		"nats-connection-reconnected":  flaps,
		"router-start-published":       flaps + 1,
	} {
		if got := r.CountMsg(msg); got != want {
			t.Errorf("%d %s log lines after %d flaps, want %d", got, msg, flaps, want)
		}
	}
}

// B5 #35: a backend whose response headers exceed the limit gets a 502.
func TestRouter_BackendHeaderBombIs502(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{Config: map[string]any{
		"backends": map[string]any{"max_response_header_bytes": 16 << 10},
	}})
	app := newBackendWith(t, "bomber", harness.BackendOptions{Handler: func(w http.ResponseWriter, req *http.Request) {
		size := 2 << 10
		if req.URL.Path == "/bomb" {
			size = 64 << 10
		}
		w.Header().Set("X-Payload", strings.Repeat("p", size))
		io.WriteString(w, "bomber")
	}})
	r.Bus.Register(app.reg("bomb.example.com"))
	r.WaitForStatus(t, "bomb.example.com", http.StatusOK, 2*time.Second)
	if resp := r.Get(t, "bomb.example.com", "/small"); resp.Status != http.StatusOK || len(resp.Header.Get("X-Payload")) != 2<<10 {
		t.Errorf("2 KiB of response headers: %d with a %d-byte X-Payload", resp.Status, len(resp.Header.Get("X-Payload")))
	}
	resp := r.Get(t, "bomb.example.com", "/bomb")
	if resp.Status != http.StatusBadGateway || !strings.HasPrefix(resp.RouterError(), "endpoint_failure") {
		t.Errorf("64 KiB of response headers: %d %q, want 502 endpoint_failure", resp.Status, resp.RouterError())
	}
}

// B5 #34 / gorouter handlers/protocolcheck.go: a request line with an HTTP
// version other than 1.0, 1.1 (or 2 over TLS) gets 400.
func TestRouter_UnsupportedHTTPVersionIs400(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	app := newBackend(t, "proto")
	r.Bus.Register(app.reg("proto.example.com"))
	r.WaitForStatus(t, "proto.example.com", http.StatusOK, 2*time.Second)
	hits := app.Hits.Load()
	resp := rawRequest(t, r.Addr, "GET / HTTP/1.2\r\nHost: proto.example.com\r\n\r\n")
	if resp.Status != http.StatusBadRequest {
		t.Errorf("HTTP/1.2 request: %d %q, want 400", resp.Status, resp.Body)
	}
	if app.Hits.Load() != hits {
		t.Error("the HTTP/1.2 request reached the backend")
	}
}
