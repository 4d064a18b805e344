package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
	"github.com/minicf/minicf/internal/testutil"
)

var (
	uuidRE        = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)
)

// Case 1: a registration over NATS is routed, with gorouter's request headers.
func TestRouter_RegisterRoutesWithGorouterHeaders(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	app := newBackend(t, "backend-a")
	reg := app.reg("app.example.com")
	reg.App, reg.PrivateInstanceID, reg.PrivateInstanceIndex = "app-guid-1", "instance-guid-1", "3"
	r.Bus.Register(reg)

	resp := r.WaitForStatus(t, "app.example.com", http.StatusOK, 2*time.Second)
	if resp.Body != "backend-a" {
		t.Fatalf("body %q, want backend-a", resp.Body)
	}
	seen := app.Last()
	h := seen.Header
	for name, want := range map[string]string{
		"X-Forwarded-For":    "127.0.0.1",
		"X-Forwarded-Proto":  "http",
		"X-Cf-Applicationid": "app-guid-1",
		"X-Cf-Instanceid":    "instance-guid-1",
		"X-Cf-Instanceindex": "3",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("backend saw %s %q, want %q", name, got, want)
		}
	}
	if seen.Host != "app.example.com" {
		t.Errorf("backend saw Host %q, want app.example.com", seen.Host)
	}
	reqID := h.Get("X-Vcap-Request-Id")
	if !uuidRE.MatchString(reqID) {
		t.Errorf("backend saw X-Vcap-Request-Id %q, want a UUID", reqID)
	}
	if got := resp.Header.Get("X-Vcap-Request-Id"); got != reqID {
		t.Errorf("response X-Vcap-Request-Id %q, want the one the backend saw (%q)", got, reqID)
	}
	if tp := h.Get("Traceparent"); !traceparentRE.MatchString(tp) {
		t.Errorf("backend saw traceparent %q, want 00-<32 hex>-<16 hex>-01", tp)
	}
	if rs := h.Get("X-Request-Start"); !regexp.MustCompile(`^\d{13}$`).MatchString(rs) {
		t.Errorf("backend saw X-Request-Start %q, want unix milliseconds", rs)
	}

	// A client's valid request id and W3C trace are kept; the router adds
	// itself to X-Forwarded-For.
	const clientID = "5f0c2d1e-8a4b-4c3d-9e2f-0123456789ab"
	const clientTrace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	resp = r.Get(t, "app.example.com", "/", "X-Vcap-Request-Id", clientID, "Traceparent", clientTrace,
		"X-Forwarded-For", "10.0.0.7")
	if resp.Status != http.StatusOK {
		t.Fatalf("second request: %d %q", resp.Status, resp.Body)
	}
	h = app.Last().Header
	if got := h.Get("X-Vcap-Request-Id"); got != clientID {
		t.Errorf("backend saw X-Vcap-Request-Id %q, want the client's %q", got, clientID)
	}
	if got := resp.Header.Get("X-Vcap-Request-Id"); got != clientID {
		t.Errorf("response X-Vcap-Request-Id %q, want the client's %q", got, clientID)
	}
	if got := h.Get("X-Forwarded-For"); got != "10.0.0.7, 127.0.0.1" {
		t.Errorf("backend saw X-Forwarded-For %q, want %q", got, "10.0.0.7, 127.0.0.1")
	}
	if m := traceparentRE.FindStringSubmatch(h.Get("Traceparent")); m == nil {
		t.Errorf("backend saw traceparent %q, want 00-<32 hex>-<16 hex>-01", h.Get("Traceparent"))
	} else if m[1] != "0af7651916cd43dd8448eb211c80319c" || m[2] == "b7ad6b7169203331" {
		t.Errorf("backend saw traceparent %q: want the client's trace id and a new span id", h.Get("Traceparent"))
	}

	// A request id that is not a UUID is replaced.
	r.Get(t, "app.example.com", "/", "X-Vcap-Request-Id", "not-a-uuid")
	if got := app.Last().Header.Get("X-Vcap-Request-Id"); !uuidRE.MatchString(got) {
		t.Errorf("backend saw X-Vcap-Request-Id %q for a client's non-UUID id, want a fresh UUID", got)
	}
	r.WaitForMsg(t, "endpoint-registered", 1, time.Second)
	if r.CountMsg("endpoint-registered") != 1 {
		t.Errorf("want one endpoint-registered log line, got %d", r.CountMsg("endpoint-registered"))
	}
}

// Case 2: router.unregister removes the route at once.
func TestRouter_UnregisterRemovesRoute(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	app := newBackend(t, "backend-u")
	reg := app.reg("gone.example.com")
	r.Bus.Register(reg)
	r.WaitForStatus(t, "gone.example.com", http.StatusOK, 2*time.Second)
	if eps := r.Routes(t)["gone.example.com"]; len(eps) != 1 || eps[0].Address != app.Addr() {
		t.Fatalf("/routes shows %+v for gone.example.com, want one endpoint at %s", eps, app.Addr())
	}

	r.Bus.Unregister(reg)
	resp := r.WaitForStatus(t, "gone.example.com", http.StatusNotFound, time.Second)
	if resp.RouterError() != "unknown_route" {
		t.Errorf("X-Cf-Routererror %q, want unknown_route", resp.RouterError())
	}
	testutil.CheckFor(t, time.Second, 10*time.Millisecond, func() error {
		if eps, ok := r.Routes(t)["gone.example.com"]; ok {
			return fmt.Errorf("/routes still lists gone.example.com: %+v", eps)
		}
		return nil
	})
}

// Case 3: a route registered once is pruned after the stale threshold, while
// a heartbeated route is never interrupted.
func TestRouter_StaleRoutesArePrunedHeartbeatedRoutesStay(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	zombie := newBackend(t, "zombie")
	alive := newBackend(t, "alive")

	r.Bus.Register(alive.reg("alive.example.com"))
	r.Bus.Heartbeat(alive.reg("alive.example.com"), 200*time.Millisecond)
	r.WaitForStatus(t, "alive.example.com", http.StatusOK, 2*time.Second)

	registered := time.Now()
	r.Bus.Register(zombie.reg("zombie.example.com"))
	r.WaitForStatus(t, "zombie.example.com", http.StatusOK, time.Second)

	var aliveTotal, aliveBad int
	checkAlive := func() {
		resp, err := r.TryGet("alive.example.com", "/")
		aliveTotal++
		if err != nil || resp.Status != http.StatusOK || resp.Body != "alive" {
			aliveBad++
			t.Errorf("heartbeated route answered %d %q (err %v) at %v", resp.Status, resp.Body, err,
				time.Since(registered).Round(time.Millisecond))
		}
	}

	// threshold + prune interval, plus slack for a loaded two-core machine.
	limit := staleThreshold + pruneInterval + 500*time.Millisecond
	var pruned time.Duration
	for pruned == 0 {
		checkAlive()
		resp, err := r.TryGet("zombie.example.com", "/")
		if err != nil {
			t.Fatal(err)
		}
		switch resp.Status {
		case http.StatusOK:
		case http.StatusNotFound:
			if resp.RouterError() != "unknown_route" {
				t.Fatalf("pruned route: X-Cf-Routererror %q, want unknown_route", resp.RouterError())
			}
			pruned = time.Since(registered)
		default:
			t.Fatalf("zombie route answered %d %q", resp.Status, resp.Body)
		}
		if time.Since(registered) > limit+time.Second {
			t.Fatalf("zombie route still served %v after its only registration", time.Since(registered))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pruned < staleThreshold {
		t.Errorf("zombie route pruned after %v, before the %v stale threshold", pruned, staleThreshold)
	}
	if pruned > limit {
		t.Errorf("zombie route pruned after %v, want at most threshold+interval+slack = %v", pruned, limit)
	}
	t.Logf("zombie route pruned %v after its only registration", pruned.Round(time.Millisecond))

	// Another threshold of traffic: the heartbeated route never misses.
	end := time.Now().Add(staleThreshold + 2*pruneInterval)
	for time.Now().Before(end) {
		checkAlive()
		if resp := r.Get(t, "zombie.example.com", "/"); resp.Status != http.StatusNotFound {
			t.Errorf("zombie route came back: %d %q", resp.Status, resp.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if aliveTotal < 30 || aliveBad > 0 {
		t.Errorf("heartbeated route: %d of %d requests were not 200", aliveBad, aliveTotal)
	}
	if zombie.Hits.Load() == 0 {
		t.Error("zombie backend never got a request")
	}
}

// Case 4: TLS endpoints prove their identity on every connection, so they
// are not pruned by age.
func TestRouter_TLSEndpointsAreNotPrunedByAge(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "instance-ca")
	caFile := ca.WriteCAFile(t, t.TempDir())
	r := suite.StartRouter(t, harness.RouterSpec{BackendCA: caFile})
	app := newTLSBackend(t, "tls-app", ca.Issue(t, "instance-guid", net.ParseIP("127.0.0.1")))
	r.Bus.Register(app.tlsReg("tls.example.com", "instance-guid"))
	r.WaitForStatus(t, "tls.example.com", http.StatusOK, 2*time.Second)

	start := time.Now()
	n := 0
	for time.Since(start) < 3*staleThreshold {
		resp := r.Get(t, "tls.example.com", "/")
		n++
		if resp.Status != http.StatusOK || resp.Body != "tls-app" {
			t.Fatalf("TLS route answered %d %q (X-Cf-Routererror %q) %v after its only registration",
				resp.Status, resp.Body, resp.RouterError(), time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	eps := r.Routes(t)["tls.example.com"]
	if len(eps) != 1 || !eps[0].TLS {
		t.Errorf("/routes shows %+v, want one TLS endpoint", eps)
	}
	if r.CountMsg("endpoint-pruned") != 0 {
		t.Errorf("router logged endpoint-pruned: %v", r.LinesWithMsg("endpoint-pruned"))
	}
	t.Logf("%d requests over %v, all 200", n, 3*staleThreshold)
}

// Case 5: with suspend_pruning_if_nats_unavailable, a NATS outage loses no
// route, and the router announces itself again when the bus comes back.
func TestRouter_NATSRestartKeepsRoutes(t *testing.T) {
	t.Parallel()
	natsPort := harness.FreePort(t)
	natsProc := suite.StartNATS(t, natsPort)
	r := suite.StartRouter(t, harness.RouterSpec{NATSURL: "nats://nats:nats@127.0.0.1:" + natsPort})
	app := newBackend(t, "survivor")
	r.Bus.Register(app.reg("survivor.example.com"))
	r.WaitForStatus(t, "survivor.example.com", http.StatusOK, 2*time.Second)
	if n := r.CountMsg("router-start-published"); n != 1 {
		t.Fatalf("want 1 router-start-published line at start-up, got %d", n)
	}

	natsProc.Kill(t)
	r.WaitForMsg(t, "nats-connection-disconnected", 1, 5*time.Second)
	down := time.Now()
	n := 0
	for time.Since(down) < 3*staleThreshold {
		resp, err := r.TryGet("survivor.example.com", "/")
		n++
		if err != nil || resp.Status != http.StatusOK {
			t.Fatalf("with NATS down for %v: %d %q %q (err %v)", time.Since(down).Round(time.Millisecond),
				resp.Status, resp.Body, resp.RouterError(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.CountMsg("prune-suspended") == 0 {
		t.Error("router never logged prune-suspended while NATS was down")
	}
	t.Logf("%d requests over %v with NATS down, all 200", n, 3*staleThreshold)

	suite.StartNATS(t, natsPort)
	r.WaitForMsg(t, "nats-connection-reconnected", 1, 10*time.Second)
	r.WaitForMsg(t, "router-start-published", 2, 5*time.Second)
	// The table survives the first prune cycle after the reconnect.
	r.WaitForMsg(t, "prune-resumed", 1, 2*time.Second)
	if resp := r.Get(t, "survivor.example.com", "/"); resp.Status != http.StatusOK {
		t.Fatalf("after NATS came back: %d %q %q", resp.Status, resp.Body, resp.RouterError())
	}

	// The bus works again: the test's own client is back, a new route
	// registers, and a router.greet is answered.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !r.Bus.Conn.IsConnected() {
			return fmt.Errorf("test client is %v", r.Bus.Conn.Status())
		}
		return nil
	})
	fresh := newBackend(t, "newcomer")
	r.Bus.Register(fresh.reg("newcomer.example.com"))
	if resp := r.WaitForStatus(t, "newcomer.example.com", http.StatusOK, 2*time.Second); resp.Body != "newcomer" {
		t.Errorf("new route answered %q", resp.Body)
	}
	if _, err := r.Bus.Conn.Request("router.greet", nil, time.Second); err != nil {
		t.Errorf("router.greet after the restart: %v", err)
	}

	// Freshening is not forever: nobody re-registers the survivor, so it is
	// pruned one threshold after the bus came back, as gorouter's zombie is.
	r.WaitForStatus(t, "survivor.example.com", http.StatusNotFound, 3*staleThreshold)
}

// Case 6a: route integrity. A backend presenting another instance's
// certificate never gets the request, and leaves the table.
func TestRouter_RouteIntegrityRejectsWrongInstance(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "instance-ca")
	r := suite.StartRouter(t, harness.RouterSpec{BackendCA: ca.WriteCAFile(t, t.TempDir())})
	wrong := newTLSBackend(t, "wrong", ca.Issue(t, "other-instance", net.ParseIP("127.0.0.1")))
	r.Bus.Register(wrong.tlsReg("integrity.example.com", "my-instance"))
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if _, ok := r.Routes(t)["integrity.example.com"]; !ok {
			return fmt.Errorf("integrity.example.com is not registered yet")
		}
		return nil
	})

	resp := r.Get(t, "integrity.example.com", "/")
	if resp.Status != http.StatusServiceUnavailable {
		t.Errorf("SAN mismatch answered %d %q, want 503", resp.Status, resp.Body)
	}
	if !strings.HasPrefix(resp.RouterError(), "endpoint_failure") {
		t.Errorf("X-Cf-Routererror %q, want endpoint_failure (...)", resp.RouterError())
	}
	if n := wrong.Hits.Load(); n != 0 {
		t.Errorf("the wrong instance's handler ran %d times", n)
	}
	if eps, ok := r.Routes(t)["integrity.example.com"]; ok {
		t.Errorf("the endpoint that failed its identity check is still in /routes: %+v", eps)
	}

	// A route with the wrong instance and a correct one: every request
	// reaches the correct one.
	right := newTLSBackend(t, "right", ca.Issue(t, "right-instance", net.ParseIP("127.0.0.1")))
	r.Bus.Register(wrong.tlsReg("mixed.example.com", "my-instance"))
	r.Bus.Register(right.tlsReg("mixed.example.com", "right-instance"))
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if eps := r.Routes(t)["mixed.example.com"]; len(eps) != 2 {
			return fmt.Errorf("mixed.example.com has %d endpoints, want 2", len(eps))
		}
		return nil
	})
	for i := 0; i < 20; i++ {
		resp := r.Get(t, "mixed.example.com", "/")
		if resp.Status != http.StatusOK || resp.Body != "right" {
			t.Errorf("request %d: %d %q (X-Cf-Routererror %q), want 200 from right", i, resp.Status, resp.Body, resp.RouterError())
		}
	}
	if n := wrong.Hits.Load(); n != 0 {
		t.Errorf("the wrong instance's handler ran %d times", n)
	}
	if eps := r.Routes(t)["mixed.example.com"]; len(eps) != 1 || eps[0].Address != right.Addr() {
		t.Errorf("/routes shows %+v for mixed.example.com, want only %s", eps, right.Addr())
	}
	r.WaitForMsg(t, "endpoint-pruned-after-failure", 2, time.Second)
}

// Case 6b: a certificate from another CA is 526; plaintext on a TLS port is 525.
func TestRouter_BackendTLSFailures(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "instance-ca")
	r := suite.StartRouter(t, harness.RouterSpec{BackendCA: ca.WriteCAFile(t, t.TempDir())})

	rogueCA := testutil.NewCA(t, "rogue-ca")
	untrusted := newTLSBackend(t, "untrusted", rogueCA.Issue(t, "untrusted-instance", net.ParseIP("127.0.0.1")))
	plain := newBackend(t, "plaintext")
	r.Bus.Register(untrusted.tlsReg("untrusted.example.com", "untrusted-instance"))
	plainReg := plain.reg("plain-on-tls.example.com")
	plainReg.Port, plainReg.TLSPort, plainReg.ServerCertDomainSAN = 0, plain.Port(), "plain-instance"
	r.Bus.Register(plainReg)
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		routes := r.Routes(t)
		if len(routes["untrusted.example.com"]) != 1 || len(routes["plain-on-tls.example.com"]) != 1 {
			return fmt.Errorf("routes not registered yet: %v", routes)
		}
		return nil
	})

	for _, c := range []struct {
		host string
		want int
		b    *backend
	}{
		{"untrusted.example.com", 526, untrusted},
		{"plain-on-tls.example.com", 525, plain},
	} {
		resp := r.Get(t, c.host, "/")
		if resp.Status != c.want {
			t.Errorf("%s answered %d %q, want %d", c.host, resp.Status, resp.Body, c.want)
		}
		if !strings.HasPrefix(resp.RouterError(), "endpoint_failure") {
			t.Errorf("%s: X-Cf-Routererror %q, want endpoint_failure (...)", c.host, resp.RouterError())
		}
		if n := c.b.Hits.Load(); n != 0 {
			t.Errorf("%s: the backend's handler ran %d times", c.host, n)
		}
		if eps, ok := r.Routes(t)[c.host]; ok {
			t.Errorf("%s: the failing TLS endpoint is still in /routes: %+v", c.host, eps)
		}
	}
}

// Case 7: a dead endpoint costs a retry, never a failed request.
func TestRouter_RetriesDeadEndpoint(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	live := newBackend(t, "live")
	dead := harness.ClosedPort(t)
	r.Bus.Register(harness.RegistryMessage{Host: "127.0.0.1", Port: dead, URIs: []string{"retry.example.com"}})
	r.Bus.Register(live.reg("retry.example.com"))
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if eps := r.Routes(t)["retry.example.com"]; len(eps) != 2 {
			return fmt.Errorf("retry.example.com has %d endpoints, want 2", len(eps))
		}
		return nil
	})
	for i := 0; i < 20; i++ {
		if resp := r.Get(t, "retry.example.com", "/"); resp.Status != http.StatusOK || resp.Body != "live" {
			t.Errorf("request %d: %d %q (X-Cf-Routererror %q)", i, resp.Status, resp.Body, resp.RouterError())
		}
	}

	// POST bodies survive a retry after a dial error. Each route has a fresh
	// dead endpoint and round-robin starts at random, so with 12 routes the
	// dead endpoint comes first for at least one POST (all but 1 in 4096 runs).
	const posts = 12
	before := live.Hits.Load()
	for i := 0; i < posts; i++ {
		host := fmt.Sprintf("post-%d.example.com", i)
		r.Bus.Register(harness.RegistryMessage{Host: "127.0.0.1", Port: harness.ClosedPort(t), URIs: []string{host}})
		r.Bus.Register(live.reg(host))
	}
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		routes := r.Routes(t)
		for i := 0; i < posts; i++ {
			if n := len(routes[fmt.Sprintf("post-%d.example.com", i)]); n != 2 {
				return fmt.Errorf("post-%d.example.com has %d endpoints", i, n)
			}
		}
		return nil
	})
	failedBefore := r.CountMsg("backend-endpoint-failed")
	for i := 0; i < posts; i++ {
		body := make([]byte, 1024)
		rand.Read(body)
		req, _ := http.NewRequest(http.MethodPost, "http://x/upload", bytes.NewReader(body))
		resp, err := r.Request(fmt.Sprintf("post-%d.example.com", i), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusOK {
			t.Errorf("POST %d: %d %q (X-Cf-Routererror %q)", i, resp.Status, resp.Body, resp.RouterError())
			continue
		}
		if got := live.Last(); got.Method != http.MethodPost || !bytes.Equal(got.Body, body) {
			t.Errorf("POST %d: the backend got %s with %d bytes, not the 1 KiB body sent", i, got.Method, len(got.Body))
		}
	}
	if n := live.Hits.Load() - before; n != posts {
		t.Errorf("the live backend saw %d requests for %d POSTs", n, posts)
	}
	// The log reaches the test through a pipe, maybe after the responses.
	testutil.CheckFor(t, time.Second, 10*time.Millisecond, func() error {
		if r.CountMsg("backend-endpoint-failed") == failedBefore {
			return fmt.Errorf("no POST met a dead endpoint first; the retry path was not exercised")
		}
		return nil
	})
	t.Logf("%d of %d POSTs were retried after a dial error", r.CountMsg("backend-endpoint-failed")-failedBefore, posts)

	// A route with only a dead endpoint is a 502.
	r.Bus.Register(harness.RegistryMessage{Host: "127.0.0.1", Port: harness.ClosedPort(t), URIs: []string{"dead.example.com"}})
	resp := r.WaitForStatus(t, "dead.example.com", http.StatusBadGateway, 2*time.Second)
	if !strings.HasPrefix(resp.RouterError(), "endpoint_failure") {
		t.Errorf("X-Cf-Routererror %q, want endpoint_failure (...)", resp.RouterError())
	}
}

// Case 8: SIGUSR1 drains: /health fails at once, requests keep working
// during drain_wait, in-flight requests finish, then the process exits 0.
func TestRouter_DrainOnSIGUSR1(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	inHandler := make(chan struct{}, 1)
	slow := newBackendWith(t, "slow", harness.BackendOptions{Handler: func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/slow" {
			inHandler <- struct{}{}
			time.Sleep(time.Second)
		}
		io.WriteString(w, "slow-done")
	}})
	r.Bus.Register(slow.reg("drain.example.com"))
	r.WaitForStatus(t, "drain.example.com", http.StatusOK, 2*time.Second)
	if code, _ := r.StatusGet(t, "/health"); code != http.StatusOK {
		t.Fatalf("/health is %d before the drain", code)
	}

	type result struct {
		resp harness.Response
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := r.TryGet("drain.example.com", "/slow")
		inflight <- result{resp, err}
	}()
	select {
	case <-inHandler:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request never reached the backend")
	}
	signalled := time.Now()
	r.Signal(t, syscall.SIGUSR1)

	testutil.CheckFor(t, 300*time.Millisecond, 5*time.Millisecond, func() error {
		if code, _ := r.StatusGet(t, "/health"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/health is %d", code)
		}
		return nil
	})
	t.Logf("/health failed %v after SIGUSR1", time.Since(signalled).Round(time.Millisecond))
	// Still inside drain_wait (500ms): new requests are served.
	resp, err := r.TryGet("drain.example.com", "/")
	if err != nil || resp.Status != http.StatusOK {
		t.Errorf("request %v into the drain: %d %q (err %v)", time.Since(signalled).Round(time.Millisecond), resp.Status, resp.Body, err)
	}

	select {
	case res := <-inflight:
		if res.err != nil || res.resp.Status != http.StatusOK || res.resp.Body != "slow-done" {
			t.Errorf("in-flight request: %d %q (err %v), want 200 slow-done", res.resp.Status, res.resp.Body, res.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the in-flight request never completed")
	}
	if !r.WaitExit(5 * time.Second) {
		t.Fatal("router still running 5s after SIGUSR1 (drain_wait 500ms, drain_timeout 2s)")
	}
	took := time.Since(signalled)
	if code := r.ExitCode(); code != 0 {
		t.Errorf("router exited with %d after the drain, want 0", code)
	}
	if took < 500*time.Millisecond {
		t.Errorf("router exited %v after SIGUSR1, before drain_wait", took)
	}
	t.Logf("router exited %v after SIGUSR1", took.Round(time.Millisecond))
	if c, err := net.DialTimeout("tcp", r.Addr, time.Second); err == nil {
		c.Close()
		t.Errorf("the proxy port %s still accepts connections after the drain", r.Addr)
	}
}

// Case 9a: an empty Host is 400 empty_host.
func TestRouter_EmptyHostIsRejected(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	resp := rawRequest(t, r.Addr, "GET / HTTP/1.1\r\nHost: \r\n\r\n")
	if resp.Status != http.StatusBadRequest || resp.RouterError() != "empty_host" {
		t.Errorf("empty Host: %d, X-Cf-Routererror %q, want 400 empty_host", resp.Status, resp.RouterError())
	}
}

// Case 9b: more than max_header_bytes of headers is 431; less is proxied.
func TestRouter_OversizedHeadersAre431(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	app := newBackend(t, "headers")
	r.Bus.Register(app.reg("headers.example.com"))
	r.WaitForStatus(t, "headers.example.com", http.StatusOK, 2*time.Second)

	big := strings.Repeat("a", 100<<10)
	if resp := r.Get(t, "headers.example.com", "/", "X-Big", big); resp.Status != http.StatusOK {
		t.Errorf("100 KiB of headers: %d, want 200", resp.Status)
	} else if got := app.Last().Header.Get("X-Big"); got != big {
		t.Errorf("the backend got a %d-byte X-Big, want %d bytes", len(got), len(big))
	}

	hits := app.Hits.Load()
	var sb strings.Builder
	sb.WriteString("GET / HTTP/1.1\r\nHost: headers.example.com\r\n")
	for i := 0; sb.Len() < 1<<20+64<<10; i++ {
		fmt.Fprintf(&sb, "X-Filler-%d: %s\r\n", i, strings.Repeat("b", 4000))
	}
	sb.WriteString("\r\n")
	resp := rawRequest(t, r.Addr, sb.String())
	if resp.Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("1 MiB+ of headers: %d, want 431", resp.Status)
	}
	if app.Hits.Load() != hits {
		t.Error("the oversized request reached the backend")
	}
}

// Case 9c: a client that stalls in its headers is cut off after
// read_header_timeout without a response.
func TestRouter_HeaderStallIsDisconnected(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: stall.example.com\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("the stalled connection was not closed by the router: %v after %v", err, took)
	}
	if len(got) != 0 {
		t.Errorf("the router answered a stalled request: %q", got)
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("stalled connection closed after %v, want about read_header_timeout (300ms)", took)
	}
}

// Case 9d: X-Cf-App-Instance pins a request to one instance.
func TestRouter_AppInstanceHeader(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	idx0 := newBackend(t, "idx-0")
	idx1 := newBackend(t, "idx-1")
	for i, b := range []*backend{idx0, idx1} {
		m := b.reg("pinned.example.com")
		m.App, m.PrivateInstanceIndex = "app-guid", fmt.Sprint(i)
		r.Bus.Register(m)
	}
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if eps := r.Routes(t)["pinned.example.com"]; len(eps) != 2 {
			return fmt.Errorf("pinned.example.com has %d endpoints, want 2", len(eps))
		}
		return nil
	})
	for i := 0; i < 10; i++ {
		resp := r.Get(t, "pinned.example.com", "/", "X-Cf-App-Instance", "app-guid:1")
		if resp.Status != http.StatusOK || resp.Body != "idx-1" {
			t.Errorf("request %d pinned to index 1: %d %q", i, resp.Status, resp.Body)
		}
	}
	if n := idx0.Hits.Load(); n != 0 {
		t.Errorf("index 0 got %d requests pinned to index 1", n)
	}
	if h := idx1.Last().Header; h.Get("X-Cf-App-Instance") != "" {
		t.Errorf("the backend saw X-Cf-App-Instance %q; the router must remove it", h.Get("X-Cf-App-Instance"))
	}
	for _, bad := range []string{"garbage-without-colon", "app-guid:", ":1", "app-guid:1:2"} {
		resp := r.Get(t, "pinned.example.com", "/", "X-Cf-App-Instance", bad)
		if resp.Status != http.StatusBadRequest || resp.RouterError() != "invalid_cf_app_instance_header" {
			t.Errorf("X-Cf-App-Instance %q: %d %q, want 400 invalid_cf_app_instance_header", bad, resp.Status, resp.RouterError())
		}
	}
	resp := r.Get(t, "pinned.example.com", "/", "X-Cf-App-Instance", "app-guid:7")
	if resp.Status != http.StatusBadRequest || resp.RouterError() != "unknown_route" {
		t.Errorf("unknown instance index: %d %q, want 400 unknown_route", resp.Status, resp.RouterError())
	}
	if n := idx0.Hits.Load(); n != 0 {
		t.Errorf("index 0 got %d requests", n)
	}
}

// Case 9e: bad NATS messages are dropped and logged; the router carries on.
func TestRouter_InvalidBusMessagesAreDropped(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	app := newBackend(t, "steady")
	r.Bus.Register(app.reg("steady.example.com"))
	r.WaitForStatus(t, "steady.example.com", http.StatusOK, 2*time.Second)

	before := r.CountMsg("validation-error")
	r.Bus.MustPublish("router.register", []byte(`{"host": "127.0.0.1", "port": 80, "uris": [`))
	r.Bus.MustPublish("router.register", []byte(`{"port": 8080, "uris": ["nohost.example.com"]}`))
	r.Bus.MustPublish("router.unregister", []byte(`not json at all`))
	oversized := harness.MustJSON(t, harness.RegistryMessage{Host: "127.0.0.1", Port: app.Port(), URIs: []string{"big.example.com"},
		Tags: map[string]string{"padding": strings.Repeat("x", 70<<10)}})
	if len(oversized) <= 64<<10 {
		t.Fatalf("the oversized message is only %d bytes", len(oversized))
	}
	r.Bus.MustPublish("router.register", oversized)
	r.WaitForMsg(t, "validation-error", before+4, 2*time.Second)
	lines := r.LinesWithMsg("validation-error")
	if last := lines[len(lines)-1]; !strings.Contains(last, "bytes") {
		t.Errorf("the oversized message's validation-error does not mention its size: %s", last)
	}

	if r.Exited() {
		t.Fatalf("router exited after bad messages: %s", r.State())
	}
	for _, host := range []string{"nohost.example.com", "big.example.com"} {
		if resp := r.Get(t, host, "/"); resp.Status != http.StatusNotFound {
			t.Errorf("%s from a dropped message answered %d %q", host, resp.Status, resp.Body)
		}
	}
	if resp := r.Get(t, "steady.example.com", "/"); resp.Status != http.StatusOK {
		t.Errorf("an existing route answered %d after bad messages", resp.Status)
	}
	// A good message right after the bad ones still works.
	r.Bus.Register(app.reg("after.example.com"))
	r.WaitForStatus(t, "after.example.com", http.StatusOK, 2*time.Second)
}

// Case 10: /health waits for start_response_delay; /metrics is Prometheus.
func TestRouter_HealthWaitsForStartDelayAndMetrics(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{Config: map[string]any{"start_response_delay": "1s"}})
	code, _ := r.StatusGet(t, "/health")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/health right after start-up is %d, want 503 (start_response_delay 1s)", code)
	}
	testutil.CheckFor(t, 3*time.Second, 10*time.Millisecond, func() error {
		if code, body := r.StatusGet(t, "/health"); code != http.StatusOK {
			return fmt.Errorf("/health is %d %q", code, body)
		}
		return nil
	})
	if d := time.Since(r.Started); d < time.Second {
		t.Errorf("/health turned 200 %v after the process started, before start_response_delay", d)
	}

	app := newBackend(t, "metered")
	r.Bus.Register(app.reg("metrics.example.com"))
	r.WaitForStatus(t, "metrics.example.com", http.StatusOK, 2*time.Second)
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		_, body := r.StatusGet(t, "/metrics")
		for _, want := range []string{
			`minicf_router_requests_total{status_class="2xx"}`,
			"minicf_router_total_routes 1",
		} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("/metrics has no %q", want)
			}
		}
		return nil
	})
}

// Case 11: router.greet is answered with the router's timers.
func TestRouter_GreetReply(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{Config: map[string]any{
		"minimum_register_interval": "3s",
		"droplet_stale_threshold":   "7s",
	}})
	msg, err := r.Bus.Conn.Request("router.greet", nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var greet struct {
		ID                               string   `json:"id"`
		Hosts                            []string `json:"hosts"`
		MinimumRegisterIntervalInSeconds *int     `json:"minimumRegisterIntervalInSeconds"`
		PruneThresholdInSeconds          *int     `json:"pruneThresholdInSeconds"`
	}
	if err := json.Unmarshal(msg.Data, &greet); err != nil {
		t.Fatalf("greet reply is not JSON: %v: %s", err, msg.Data)
	}
	if greet.MinimumRegisterIntervalInSeconds == nil || *greet.MinimumRegisterIntervalInSeconds != 3 {
		t.Errorf("minimumRegisterIntervalInSeconds in %s, want 3", msg.Data)
	}
	if greet.PruneThresholdInSeconds == nil || *greet.PruneThresholdInSeconds != 7 {
		t.Errorf("pruneThresholdInSeconds in %s, want 7", msg.Data)
	}
	if greet.ID == "" || len(greet.Hosts) == 0 {
		t.Errorf("greet reply %s lacks id or hosts", msg.Data)
	}
}

// Case 12a: WebSocket upgrades pass through both ways.
func TestRouter_WebSocketUpgradePassesThrough(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	ws := newBackendWith(t, "ws", harness.BackendOptions{Handler: func(w http.ResponseWriter, req *http.Request) {
		if !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
			io.WriteString(w, "ws")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(conn, brw) // echo until the client closes
	}})
	r.Bus.Register(ws.reg("ws.example.com"))
	r.WaitForStatus(t, "ws.example.com", http.StatusOK, 2*time.Second)

	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /socket HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d, want 101", resp.StatusCode)
	}
	for _, msg := range []string{"hello over the upgraded connection", "and again"} {
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("reading the echo: %v", err)
		}
		if string(got) != msg {
			t.Errorf("echo %q, want %q", got, msg)
		}
	}
	if h := ws.Requests()[len(ws.Requests())-1].Header; !strings.EqualFold(h.Get("Upgrade"), "websocket") ||
		h.Get("Sec-Websocket-Key") != "dGhlIHNhbXBsZSBub25jZQ==" {
		t.Errorf("the backend saw Upgrade %q, Sec-WebSocket-Key %q", h.Get("Upgrade"), h.Get("Sec-Websocket-Key"))
	}
}

// Case 12b: a streamed response reaches the client piece by piece.
func TestRouter_StreamingResponseIsFlushed(t *testing.T) {
	t.Parallel()
	r := suite.StartRouter(t, harness.RouterSpec{})
	next := make(chan struct{})
	var secondWritten atomic.Bool
	stream := newBackendWith(t, "stream", harness.BackendOptions{Handler: func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/stream" {
			io.WriteString(w, "stream")
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "first-chunk\n")
		http.NewResponseController(w).Flush()
		select {
		case <-next:
		case <-req.Context().Done():
			return
		case <-time.After(5 * time.Second):
		}
		secondWritten.Store(true)
		io.WriteString(w, "second-chunk\n")
	}})
	r.Bus.Register(stream.reg("stream.example.com"))
	r.WaitForStatus(t, "stream.example.com", http.StatusOK, 2*time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addr+"/stream", nil)
	req.Host = "stream.example.com"
	resp, err := r.Client.Do(req)
	if err != nil {
		t.Fatalf("the response headers never came: %v", err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first-chunk\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("the first chunk never arrived on its own (the router buffered it?): %v", err)
	}
	if string(first) != "first-chunk\n" {
		t.Errorf("first chunk %q", first)
	}
	if secondWritten.Load() {
		t.Error("the backend wrote the second chunk before the first was read")
	}
	close(next)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the rest: %v", err)
	}
	if string(rest) != "second-chunk\n" {
		t.Errorf("rest %q, want second-chunk", rest)
	}
}

// rawRequest writes raw on a new connection to addr and reads one response.
// The write runs on its own goroutine: a router refusing a huge request may
// answer and close before reading all of it.
func rawRequest(t testing.TB, addr, raw string) harness.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(c, raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response to a raw request: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return harness.Response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}
