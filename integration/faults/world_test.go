package faults

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/rep"
	"github.com/minicf/minicf/internal/testutil"
)

// Timers of the Diego world, shortened as issue 8 asks.
const (
	convergeInterval  = time.Second
	cellTTL           = 3 * time.Second
	cellHeartbeat     = 500 * time.Millisecond
	repPollInterval   = 2 * time.Second
	gracePeriod       = 2 * time.Second
	proxyReloadWait   = 500 * time.Millisecond
	emitterSyncPeriod = 2 * time.Second
)

// The apps of the Diego world: web is the app under test, other is the
// app whose answers would show a misroute.
const (
	webApp   = "web"
	otherApp = "other"
)

func appHost(guid string) string { return guid + ".apps.localhost" }

// world is route propagation end to end, each part its own minicf process:
// BBS, auctioneer and two cells (namespace mode as root, process mode
// otherwise), NATS, a router and a global route emitter. Any part can be
// killed and started again alone.
type world struct {
	*harness.Diego
	t        *testing.T
	mode     string
	nw       *garden.Network // namespace mode
	natsPort string
	natsURL  string // with credentials, as components take it
	nats     *harness.Proc
	emitter  *harness.Proc
	router   *harness.Router
	guids    *guidTracker
}

func startWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, mode: garden.ModeProcess}
	home := t.TempDir()
	// Registered first, so it runs last: after every process of the world
	// has stopped (and, in namespace mode, after Down), nothing of its
	// containers may run. A case that failed half-way may leave some; they
	// are killed either way.
	t.Cleanup(func() {
		if left := harness.ProcessesUnder(home); len(left) > 0 {
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			if !t.Failed() {
				t.Errorf("processes of the world's containers still ran after it stopped: %v", left)
			}
		}
	})
	if garden.Preflight() == "" {
		w.mode = garden.ModeNamespace
		w.nw = harness.ClaimNetns(t, "mcf")
	} else {
		t.Logf("process mode: %s", garden.Preflight())
	}
	w.Diego = suite.StartDiego(t, harness.DiegoSpec{
		Home:    home,
		Cells:   []string{"cell-1", "cell-2"},
		BBSArgs: []string{"--converge-interval", convergeInterval.String(), "--cell-ttl", cellTTL.String()},
		CellArgs: func(i int, _ string) []string {
			args := []string{"--heartbeat-interval", cellHeartbeat.String(), "--poll-interval", repPollInterval.String(),
				"--grace-period", gracePeriod.String(), "--proxy-reload-wait", proxyReloadWait.String(), "--stop-instances"}
			if w.mode == garden.ModeNamespace {
				return append(args, "--mode", "namespace", "--prefix", w.nw.Prefix, "--network-range", w.nw.Range.String(),
					"--index", strconv.Itoa(i+1))
			}
			return append(args, "--port-range-start", strconv.Itoa(47000+(i+1)*500))
		},
	})
	w.natsPort = harness.FreePort(t)
	w.nats = suite.StartNATS(t, w.natsPort)
	w.natsURL = "nats://nats:nats@127.0.0.1:" + w.natsPort
	w.router = suite.StartRouter(t, harness.RouterSpec{NATSURL: w.natsURL, BackendCA: w.CACertFile()})
	w.emitter = w.startEmitter(t)
	w.guids = trackGuids(t, w.Client)

	ctx := context.Background()
	for guid, n := range map[string]int32{webApp: 2, otherApp: 1} {
		if err := w.Client.DesireLRP(ctx, suite.DiegoApp(guid, n)); err != nil {
			t.Fatal(err)
		}
	}
	for guid, n := range map[string]int{webApp: 2, otherApp: 1} {
		w.waitSteady(t, guid, n, 60*time.Second)
	}
	return w
}

func (w *world) startEmitter(t testing.TB) *harness.Proc {
	t.Helper()
	p := suite.StartProc(t, "route-emitter", "route-emitter", "--bbs", w.BBSURL, "--nats", w.natsURL, "--home", w.Home,
		"--log-level", "debug", "--sync-interval", emitterSyncPeriod.String())
	p.WaitForMsg(t, "route-emitter-started", 1, 30*time.Second)
	return p
}

// actuals lists guid's ActualLRPs (nil and the error while the BBS is down).
func (w *world) actuals(guid string) ([]*bbs.ActualLRP, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return w.Client.ActualLRPs(ctx, bbs.ActualLRPsRequest{ProcessGUID: guid})
}

func (w *world) mustActuals(t testing.TB, guid string) []*bbs.ActualLRP {
	t.Helper()
	list, err := w.actuals(guid)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func describe(list []*bbs.ActualLRP) string {
	var s []string
	for _, a := range list {
		s = append(s, fmt.Sprintf("%d:%s:%s@%s", a.Index, a.State, a.InstanceGUID, a.CellID))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// runningGuids are the sorted instance guids of guid's RUNNING instances.
func runningGuids(list []*bbs.ActualLRP) []string {
	var out []string
	for _, a := range list {
		if a.State == bbs.StateRunning {
			out = append(out, a.InstanceGUID)
		}
	}
	sort.Strings(out)
	return out
}

// waitSteady waits until guid has exactly n instances, all RUNNING, and the
// router's table for its host names exactly those; it returns them by index.
func (w *world) waitSteady(t testing.TB, guid string, n int, within time.Duration) []*bbs.ActualLRP {
	t.Helper()
	var list []*bbs.ActualLRP
	testutil.CheckFor(t, within, 20*time.Millisecond, func() error {
		var err error
		if list, err = w.actuals(guid); err != nil {
			return err
		}
		run := runningGuids(list)
		if len(run) != n || len(list) != n {
			return fmt.Errorf("%s: want %d RUNNING and nothing else, have %s", guid, n, describe(list))
		}
		if got := w.router.InstanceIDs(t, appHost(guid)); !slices.Equal(got, run) {
			return fmt.Errorf("%s: the router has %v, the BBS runs %v", guid, got, run)
		}
		return nil
	})
	sort.Slice(list, func(i, j int) bool { return list[i].Index < list[j].Index })
	return list
}

// baseline puts the world back in its steady state before a case: web with
// two instances, other with one, every route in the router.
func (w *world) baseline(t *testing.T) (web []*bbs.ActualLRP) {
	t.Helper()
	d, err := w.Client.DesiredLRPByProcessGUID(context.Background(), webApp)
	if err != nil {
		t.Fatal(err)
	}
	if d.Instances != 2 {
		two := int32(2)
		if err := w.Client.UpdateDesiredLRP(context.Background(), webApp, &bbs.DesiredLRPUpdate{Instances: &two}); err != nil {
			t.Fatal(err)
		}
	}
	w.waitSteady(t, otherApp, 1, 60*time.Second)
	return w.waitSteady(t, webApp, 2, 60*time.Second)
}

var answerRE = regexp.MustCompile(`^instance (\S+) index (\d+)\n$`)

// webLoad is the steady load on the web app: two clients, each a request
// every 5 ms. An answer is ok when an instance of web gave it; answers
// from any other instance (the other app's) are misrouted, which is only
// sure once the case is over (settle in finishWeb).
func (w *world) webLoad(t testing.TB, name string) *load {
	host := appHost(webApp)
	return startLoad(t, name, 2, 5*time.Millisecond, func(c *http.Client) shot {
		resp, err := w.router.GetWith(c, host, "/")
		switch {
		case err != nil:
			return shot{v: vFailed, desc: err.Error()}
		case resp.Status != http.StatusOK:
			return shot{v: vFailed, desc: fmt.Sprintf("%d %q X-Cf-Routererror %q", resp.Status, strings.TrimSpace(resp.Body), resp.RouterError())}
		}
		m := answerRE.FindStringSubmatch(resp.Body)
		if m == nil {
			return shot{v: vMisrouted, desc: fmt.Sprintf("200 %q is no diegoapp answer", resp.Body)}
		}
		return shot{v: vOK, key: m[1]}
	})
}

// finishWeb settles who answered and asserts a clean run.
func (w *world) finishWeb(t testing.TB, l *load) {
	t.Helper()
	l.stop()
	w.guids.poll() // the last instances
	l.settle(func(key string) bool { return w.guids.owner(key) == webApp })
	l.expectClean(t)
}

// guidTracker remembers which process every instance guid the BBS ever
// showed belongs to.
type guidTracker struct {
	client *bbs.Client
	mu     sync.Mutex
	owners map[string]string
}

func trackGuids(t testing.TB, c *bbs.Client) *guidTracker {
	g := &guidTracker{client: c, owners: map[string]string{}}
	ctx := t.Context()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			g.poll()
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { <-done })
	return g
}

func (g *guidTracker) poll() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	list, err := g.client.ActualLRPs(ctx, bbs.ActualLRPsRequest{})
	if err != nil {
		return // the BBS is down in some cases
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range list {
		if a.InstanceGUID != "" {
			g.owners[a.InstanceGUID] = a.ProcessGUID
		}
	}
}

func (g *guidTracker) owner(instanceGUID string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.owners[instanceGUID]
}

// cell is the presence of cell id.
func (w *world) cell(t testing.TB, id string) *bbs.CellPresence {
	t.Helper()
	cells, err := w.Client.Cells(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cells {
		if c.CellID == id {
			return c
		}
	}
	t.Fatalf("cell %s is not present", id)
	return nil
}

// retire stops one instance as the BBS does when it retires it (Diego's
// RetireActualLRP, cfdot retire-actual-lrp): it asks the instance's rep to
// stop it. minicf's BBS has no retire endpoint, so the test calls the
// rep's stop endpoint itself, with a certificate of the foundation CA.
func (w *world) retire(t testing.TB, a *bbs.ActualLRP) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rep.NewClient(w.ClientTLS).StopLRPInstance(ctx, w.cell(t, a.CellID), a.ActualLRPKey, a.ActualLRPInstanceKey); err != nil {
		t.Fatalf("stopping instance %d (%s) on %s: %v", a.Index, a.InstanceGUID, a.CellID, err)
	}
}

// scale sets guid's instances.
func (w *world) scale(t testing.TB, guid string, n int32) {
	t.Helper()
	if err := w.Client.UpdateDesiredLRP(context.Background(), guid, &bbs.DesiredLRPUpdate{Instances: &n}); err != nil {
		t.Fatal(err)
	}
}

// instancePids finds an instance's processes: the app (its environment
// names the instance guid) and the envoy (its certificate lives in the
// container's directory, named by the guid).
func instancePids(guid string) (app, envoy []int) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if env, err := os.ReadFile("/proc/" + e.Name() + "/environ"); err == nil {
			if slices.Contains(strings.Split(string(env), "\x00"), "CF_INSTANCE_GUID="+guid) {
				app = append(app, pid)
				continue
			}
		}
		if cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil {
			c := string(cmd)
			if strings.Contains(c, "envoy") && strings.Contains(c, "/containers/"+guid+"/") {
				envoy = append(envoy, pid)
			}
		}
	}
	return app, envoy
}

func sigkill(t testing.TB, what string, pids []int) {
	t.Helper()
	if len(pids) == 0 {
		t.Fatalf("no process of %s found", what)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("SIGKILL %s (pid %d): %v", what, pid, err)
		}
	}
}
