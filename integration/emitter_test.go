package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/testutil"
)

// propagationBudget is how long a change may take from the BBS to a router:
// a BBS event, one emitter step, one NATS message.
const propagationBudget = time.Second

// emitterWorld is the whole route-propagation path as separate processes:
// BBS, auctioneer and one cell (process mode), NATS, a router and a route
// emitter.
type emitterWorld struct {
	d       *diego
	natsURL string // with credentials, as components take it
	router  *harness.Router
	emitter *harness.Proc
}

func startEmitterWorld(t *testing.T) *emitterWorld {
	t.Helper()
	requireRouteEmitterVerb(t)
	d := startDiego(t, "cell-1")
	port := harness.FreePort(t)
	suite.StartNATS(t, port)
	w := &emitterWorld{d: d, natsURL: "nats://nats:nats@127.0.0.1:" + port}
	w.router = suite.StartRouter(t, harness.RouterSpec{NATSURL: w.natsURL, BackendCA: d.CACertFile()})
	w.emitter = startRouteEmitter(t, d, w.natsURL)
	return w
}

// requireRouteEmitterVerb fails with the fix when the binary has no
// route-emitter verb.
func requireRouteEmitterVerb(t testing.TB) {
	t.Helper()
	out, err := exec.Command(suite.Bin, "route-emitter", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "minicf route-emitter") {
		t.Fatalf("minicf has no route-emitter verb (register routeEmitterCommand() in cmd/minicf/main.go): %v\n%s", err, out)
	}
}

// startRouteEmitter runs `minicf route-emitter` and waits until its first
// sync is done and published.
func startRouteEmitter(t testing.TB, d *diego, natsURL string, extra ...string) *harness.Proc {
	t.Helper()
	args := append([]string{"route-emitter", "--bbs", d.BBSURL, "--nats", natsURL, "--home", d.Home,
		"--log-level", "debug", "--metrics", "127.0.0.1:0"}, extra...)
	p := suite.StartProc(t, "route-emitter", args...)
	p.WaitForMsg(t, "route-emitter-started", 1, 30*time.Second)
	return p
}

// routeSet is /routes for the given hosts: host → sorted "address instance".
func routeSet(t testing.TB, r *harness.Router, hosts ...string) map[string][]string {
	t.Helper()
	all := r.Routes(t)
	out := map[string][]string{}
	for _, h := range hosts {
		for _, e := range all[h] {
			out[h] = append(out[h], e.Address+" "+e.PrivateInstanceID)
		}
		sort.Strings(out[h])
	}
	return out
}

// checkWithin polls f until it passes, failing when budget has passed
// since from (a moment in the past, such as an ActualLRP's since).
func checkWithin(t *testing.T, from time.Time, budget time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	total := time.Until(from.Add(budget))
	if total < 10*time.Millisecond {
		total = 10 * time.Millisecond
	}
	testutil.CheckFor(t, total, 2*time.Millisecond, func() error {
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
	took := time.Since(from)
	t.Logf("%s: %v", what, took.Round(time.Microsecond))
	return took
}

func updateRoutes(t *testing.T, d *diego, guid string, hosts ...string) {
	t.Helper()
	var rs []bbs.CFRoute
	for _, h := range hosts {
		rs = append(rs, bbs.CFRoute{Hostnames: []string{h}, Port: 8080})
	}
	routes := bbs.Routes{}.SetCFRoutes(rs)
	if err := d.Client.UpdateDesiredLRP(context.Background(), guid, &bbs.DesiredLRPUpdate{Routes: &routes}); err != nil {
		t.Fatal(err)
	}
}

// TestEmitter_RoutePropagation drives the whole path with real processes:
// an LRP with a route becomes reachable through the router within a second
// of running; a second route, a scale-down and a removal reach the router
// within a second; and an emitter killed and restarted (in local mode) puts
// back exactly the same routes within one heartbeat, while requests never
// fail and nothing is unregistered.
func TestEmitter_RoutePropagation(t *testing.T) {
	w := startEmitterWorld(t)
	ctx := context.Background()
	const guid = "em-web"
	host1, host2 := guid+".apps.localhost", "em-api.apps.localhost"

	// 1. Desire two instances with one route; the first 200 through the
	// router comes within a second of the answering instance's since.
	if err := w.d.Client.DesireLRP(ctx, suite.DiegoApp(guid, 2)); err != nil {
		t.Fatal(err)
	}
	var first harness.Response
	var firstAt time.Time
	testutil.CheckFor(t, 60*time.Second, 2*time.Millisecond, func() error {
		resp, err := w.router.TryGet(host1, "/")
		if err != nil {
			return err
		}
		if resp.Status != http.StatusOK {
			return fmt.Errorf("%s answered %d (%s)", host1, resp.Status, resp.RouterError())
		}
		first, firstAt = resp, time.Now()
		return nil
	})
	var answered *bbs.ActualLRP
	for _, a := range w.d.actuals(t, guid) {
		if strings.Contains(first.Body, "instance "+a.InstanceGUID+" ") {
			answered = a
		}
	}
	if answered == nil || answered.State != bbs.StateRunning {
		t.Fatalf("the router's answer %q is from no running instance: %+v", first.Body, w.d.actuals(t, guid))
	}
	if lat := firstAt.Sub(time.Unix(0, answered.Since)); lat > propagationBudget {
		t.Fatalf("first 200 came %v after the instance ran (budget %v)", lat, propagationBudget)
	} else {
		t.Logf("RUNNING → first 200 through the router: %v", lat.Round(time.Microsecond))
	}

	// Both instances: each reaches /routes within a second of its since.
	running := w.d.waitRunning(t, guid, 2, 60*time.Second)
	var all []string
	latest := time.Time{}
	for _, a := range running {
		all = append(all, a.InstanceGUID)
		if s := time.Unix(0, a.Since); s.After(latest) {
			latest = s
		}
	}
	sort.Strings(all)
	checkWithin(t, latest, propagationBudget, "both instances in /routes", func() error {
		if got := w.router.InstanceIDs(t, host1); !slices.Equal(got, all) {
			return fmt.Errorf("/routes has %v for %s, want %v", got, host1, all)
		}
		return nil
	})

	// 2. Map a second route.
	updateRoutes(t, w.d, guid, host1, host2)
	checkWithin(t, time.Now(), propagationBudget, "second route answers", func() error {
		resp, err := w.router.TryGet(host2, "/")
		if err != nil {
			return err
		}
		if resp.Status != http.StatusOK || !strings.Contains(resp.Body, "instance ") {
			return fmt.Errorf("%s answered %d %q", host2, resp.Status, resp.Body)
		}
		return nil
	})
	testutil.CheckFor(t, propagationBudget, 5*time.Millisecond, func() error {
		if got := w.router.InstanceIDs(t, host2); !slices.Equal(got, all) {
			return fmt.Errorf("/routes has %v for %s, want %v", got, host2, all)
		}
		return nil
	})

	// 3. Kill the emitter while requests flow, start it again in local mode:
	// the same routes come back within one heartbeat (1 s), nothing is
	// unregistered and no request fails (TLS routes are not pruned by age).
	before := routeSet(t, w.router, host1, host2)
	rec := harness.RecordBus(t, w.router.Bus)
	var okCount, failCount atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			host := host1
			if i%2 == 1 {
				host = host2
			}
			resp, err := w.router.TryGet(host, "/")
			switch {
			case err != nil:
				failCount.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
			case resp.Status != http.StatusOK:
				failCount.Add(1)
				firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s: %d %s", host, resp.Status, resp.RouterError()))
			default:
				okCount.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-loopDone
	})
	killedAt := time.Now()
	w.emitter.Kill(t)
	// Requests keep succeeding while no emitter runs.
	n := okCount.Load()
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if okCount.Load() < n+20 {
			return fmt.Errorf("%d requests since the kill", okCount.Load()-n)
		}
		return nil
	})
	restartAt := time.Now()
	w.emitter = startRouteEmitter(t, w.d, w.natsURL, "--cell-id", "cell-1")
	startedAt := time.Now()
	t.Logf("emitter restarted in local mode %v after the kill, up %v later",
		restartAt.Sub(killedAt).Round(time.Millisecond), startedAt.Sub(restartAt).Round(time.Millisecond))
	checkWithin(t, startedAt, 1100*time.Millisecond, "every route registered again", func() error {
		seen := map[string]bool{}
		for _, m := range rec.Since(restartAt, "router.register") {
			if len(m.URIs) == 1 && m.Tags["component"] == "route-emitter" {
				seen[m.URIs[0]+" "+m.Host+":"+strconv.Itoa(int(m.TLSPort))+" "+m.PrivateInstanceID] = true
			}
		}
		for h, eps := range before {
			for _, ep := range eps {
				if !seen[h+" "+ep] {
					return fmt.Errorf("no registration of %s %s since the restart", h, ep)
				}
			}
		}
		return nil
	})
	// The emitter's own count: 2 instances × 2 routes.
	if got := emitterMetric(t, w.emitter, "minicf_route_emitter_routes_total"); got != 4 {
		t.Errorf("minicf_route_emitter_routes_total = %v, want 4", got)
	}
	if after := routeSet(t, w.router, host1, host2); !mapsEqual(after, before) {
		t.Fatalf("/routes after the restart:\n%v\nbefore:\n%v", after, before)
	}
	n = okCount.Load()
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if okCount.Load() < n+20 {
			return fmt.Errorf("%d requests since the restart", okCount.Load()-n)
		}
		return nil
	})
	close(stop)
	<-loopDone
	if f := failCount.Load(); f > 0 {
		t.Fatalf("%d of %d requests failed across the emitter restart; first: %v", f, f+okCount.Load(), firstFailure.Load())
	}
	if un := rec.Since(killedAt, "router.unregister"); len(un) > 0 {
		t.Fatalf("the restart unregistered running instances: %+v", un)
	}
	t.Logf("%d requests across the emitter restart, none failed", okCount.Load())

	// 4. Scale 2 → 1: the removed instance leaves /routes within a second.
	var keep string
	for _, a := range running {
		if a.Index == 0 {
			keep = a.InstanceGUID
		}
	}
	one := int32(1)
	if err := w.d.Client.UpdateDesiredLRP(ctx, guid, &bbs.DesiredLRPUpdate{Instances: &one}); err != nil {
		t.Fatal(err)
	}
	checkWithin(t, time.Now(), propagationBudget, "scaled-down instance out of /routes", func() error {
		for _, h := range []string{host1, host2} {
			if got := w.router.InstanceIDs(t, h); !slices.Equal(got, []string{keep}) {
				return fmt.Errorf("/routes has %v for %s, want only %s", got, h, keep)
			}
		}
		return nil
	})

	// 5. Remove the LRP: both routes answer 404 unknown_route.
	if err := w.d.Client.RemoveDesiredLRP(ctx, guid); err != nil {
		t.Fatal(err)
	}
	checkWithin(t, time.Now(), propagationBudget, "removed LRP's routes unknown", func() error {
		for _, h := range []string{host1, host2} {
			resp, err := w.router.TryGet(h, "/")
			if err != nil {
				return err
			}
			if resp.Status != http.StatusNotFound || resp.RouterError() != "unknown_route" {
				return fmt.Errorf("%s answered %d %q", h, resp.Status, resp.RouterError())
			}
		}
		return nil
	})
	// The cell stops the instances and the BBS forgets them. (Ending the
	// test earlier would SIGTERM the cell while it stops them.)
	checkWithin(t, time.Now(), 30*time.Second, "instances stopped and removed", func() error {
		if left := w.d.actuals(t, guid); len(left) > 0 {
			return fmt.Errorf("%d instances left", len(left))
		}
		return nil
	})
	for _, msg := range []string{"router-greeted", "routes-synced", "route-registered", "route-unregistered"} {
		if w.emitter.CountMsg(msg) == 0 {
			t.Errorf("the emitter never logged %s", msg)
		}
	}
}

// emitterMetric reads an unlabelled series from the emitter's /metrics,
// whose address it logged as metrics-listening.
func emitterMetric(t testing.TB, p *harness.Proc, name string) float64 {
	t.Helper()
	lines := p.LinesWithMsg("metrics-listening")
	if len(lines) == 0 {
		t.Fatal("the emitter did not log metrics-listening")
	}
	var l struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &l); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + l.Address + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no %s in the emitter's /metrics:\n%s", name, body)
	return 0
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// BenchmarkRunningToRoutable measures route propagation end to end: from
// the moment the BBS marks an instance RUNNING (its since, set by the
// StartActualLRP call) to the first 200 through the router. It desires N
// one-instance LRPs one after another, each with its own route, polls the
// router every 500 µs, and reports p50, p90, p99 and max. It builds a
// binary without the race detector (MINICF_BENCH_RACE=1 keeps the race
// build). Run it on demand (it is not part of the normal suite):
//
//	go test -run '^$' -bench RunningToRoutable -benchtime 1x ./integration/
//	MINICF_BENCH_INSTANCES=100 go test -run '^$' -bench RunningToRoutable -benchtime 1x ./integration/
//
// or bench/propagation.sh, which does the same.
func BenchmarkRunningToRoutable(b *testing.B) {
	n := 30
	if s := os.Getenv("MINICF_BENCH_INSTANCES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("MINICF_BENCH_INSTANCES=%q is not a positive number", s)
		}
		n = v
	}
	if os.Getenv("MINICF_BENCH_RACE") != "1" {
		useNonRaceBinary(b)
	}
	requireRouteEmitterVerb(b)
	d := startDiegoTB(b)
	port := harness.FreePort(b)
	suite.StartNATS(b, port)
	natsURL := "nats://nats:nats@127.0.0.1:" + port
	r := suite.StartRouter(b, harness.RouterSpec{NATSURL: natsURL, BackendCA: d.CACertFile(),
		Config: map[string]any{"logging": map[string]any{"level": "warn"}}})
	em := startRouteEmitter(b, d, natsURL, "--log-level", "info")
	rec := harness.RecordBus(b, r.Bus)
	ctx := context.Background()

	// lat is since → first 200; toBus is since → the router.register seen
	// by a NATS subscriber (BBS event, emitter, NATS), the rest is the router,
	// its first TLS connection to the sidecar and the app.
	lat := make([]time.Duration, 0, n)
	toBus := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := 0; i < n; i++ {
		guid := fmt.Sprintf("bench-%d", i)
		host := guid + ".apps.localhost"
		if err := d.Client.DesireLRP(ctx, suite.DiegoApp(guid, 1)); err != nil {
			b.Fatal(err)
		}
		var okAt time.Time
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := r.TryGet(host, "/")
			if err == nil && resp.Status == http.StatusOK {
				okAt = time.Now()
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s never answered 200 (last: %+v %v)", host, resp, err)
			}
			time.Sleep(500 * time.Microsecond)
		}
		list, err := d.Client.ActualLRPs(ctx, bbs.ActualLRPsRequest{ProcessGUID: guid})
		if err != nil || len(list) != 1 || list[0].State != bbs.StateRunning {
			b.Fatalf("actuals of %s: %+v %v", guid, list, err)
		}
		since := time.Unix(0, list[0].Since)
		lat = append(lat, okAt.Sub(since))
		if at, ok := rec.FirstRegister(host); ok {
			toBus = append(toBus, at.Sub(since))
		}
		if err := d.Client.RemoveDesiredLRP(ctx, guid); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// Let the cell finish stopping the instances before the teardown.
	testutil.CheckFor(b, 60*time.Second, 50*time.Millisecond, func() error {
		list, err := d.Client.ActualLRPs(ctx, bbs.ActualLRPsRequest{})
		if err != nil {
			return err
		}
		if len(list) > 0 {
			return fmt.Errorf("%d instances still stopping", len(list))
		}
		return nil
	})
	slices.Sort(lat)
	slices.Sort(toBus)
	pctOf := func(l []time.Duration, p float64) time.Duration {
		if len(l) == 0 {
			return 0
		}
		return l[min(len(l)-1, int(p*float64(len(l)-1)+0.5))]
	}
	pct := func(p float64) time.Duration { return pctOf(lat, p) }
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(pct(0.50)), "p50-ms")
	b.ReportMetric(ms(pct(0.90)), "p90-ms")
	b.ReportMetric(ms(pct(0.99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.Logf("RUNNING → first 200 through the router over %d instances: p50 %v, p90 %v, p99 %v, max %v (min %v)",
		len(lat), pct(0.5), pct(0.9), pct(0.99), lat[len(lat)-1], lat[0])
	b.Logf("RUNNING → router.register on NATS (BBS event + emitter + NATS) over %d: p50 %v, p90 %v, p99 %v, max %v",
		len(toBus), pctOf(toBus, 0.5), pctOf(toBus, 0.9), pctOf(toBus, 0.99), pctOf(toBus, 1))
	b.Logf("emitter: %d event-stream losses, %d syncs; load average %s", em.CountMsg("bbs-event-stream-lost"),
		em.CountMsg("routes-synced"), loadAverage())
	// The router's own view of the first part: since → endpoint in its table.
	if sum, count := routerRegistrationLatency(b, r); count > 0 {
		b.Logf("RUNNING → endpoint in the router's table (router metric, mean over %d): %v",
			int(count), time.Duration(sum/count*float64(time.Second)).Round(time.Microsecond))
	}
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// routerRegistrationLatency reads the sum and count of the router's
// minicf_router_route_registration_latency_seconds histogram.
func routerRegistrationLatency(tb testing.TB, r *harness.Router) (sum, count float64) {
	_, body := r.StatusGet(tb, "/metrics")
	for _, l := range strings.Split(body, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "minicf_router_route_registration_latency_seconds_sum":
			sum = v
		case "minicf_router_route_registration_latency_seconds_count":
			count = v
		}
	}
	return sum, count
}

// useNonRaceBinary builds minicf without the race detector for the rest of
// the benchmark: the race runtime slows every hop several times over.
func useNonRaceBinary(b *testing.B) {
	b.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "minicf")
	build := exec.Command(testutil.GoTool(), "build", "-o", bin, "github.com/minicf/minicf/cmd/minicf")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building minicf: %v\n%s", err, out)
	}
	prev := suite.Bin
	suite.Bin = bin
	b.Cleanup(func() { suite.Bin = prev })
}

// startDiegoTB is startDiego for benchmarks: a BBS, an auctioneer and one
// cell, with the BBS's and the rep's own timers.
func startDiegoTB(tb testing.TB) *diego {
	tb.Helper()
	return &diego{suite.StartDiego(tb, harness.DiegoSpec{
		Cells:    []string{"cell-1"},
		Identity: "integration-bench",
		CellArgs: func(int, string) []string {
			return []string{"--port-range-start", "45000", "--heartbeat-interval", "500ms", "--grace-period", "2s",
				"--proxy-reload-wait", "0s", "--stop-instances"}
		},
	})}
}
