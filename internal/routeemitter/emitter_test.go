package routeemitter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/testutil"
)

// syncBuffer is a log destination the emitter writes while the test reads.
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
	e     *Emitter
	bus   *fakeBus
	bbs   *fakeBBS
	clock *fakeClock
	logs  *syncBuffer
}

// start runs an emitter against the fakes. Unless the test says otherwise,
// routers answer the greeting with a one-hour interval, so heartbeats only
// happen when a test asks for them.
func start(t *testing.T, cfg Config, bus *fakeBus, b BBSClient, fb *fakeBBS) *harness {
	t.Helper()
	h := &harness{bus: bus, bbs: fb, clock: newFakeClock(), logs: &syncBuffer{}}
	cfg.Bus, cfg.BBS, cfg.Clock = bus, b, h.clock
	cfg.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h.e = e
	t.Cleanup(func() {
		if err := e.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("emitter log:\n%s", h.logs.String())
		}
	})
	return h
}

func newWorld() (*fakeBus, *fakeBBS) {
	bus := newFakeBus()
	bus.reply = func(int) (mbus.Msg, error) { return routerStartMsg(3600), nil }
	return bus, newFakeBBS()
}

func (h *harness) waitInterval(t *testing.T, d time.Duration) {
	t.Helper()
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if got := h.e.RegisterInterval(); got != d {
			return fmt.Errorf("register interval %v, want %v", got, d)
		}
		return nil
	})
}

// ready waits until the heartbeat and resync loops have their tickers and
// the heartbeat is the routers' interval, so that advancing the clock
// fires exactly what the test means.
func (h *harness) ready(t *testing.T, interval time.Duration) {
	t.Helper()
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if n := h.clock.tickerCount(); n < 2 {
			return fmt.Errorf("%d tickers, want the heartbeat's and the resync's", n)
		}
		return nil
	})
	h.waitInterval(t, interval)
}

func (h *harness) syncs() int {
	h.e.syncMu.Lock()
	defer h.e.syncMu.Unlock()
	return h.e.syncs
}

func (h *harness) waitSyncs(t *testing.T, n int) {
	t.Helper()
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if got := h.syncs(); got < n {
			return fmt.Errorf("%d syncs done, want %d", got, n)
		}
		return nil
	})
}

// waitTimer waits until a timer or ticker of the emitter is due within d.
func (h *harness) waitTimer(t *testing.T, d time.Duration, n int) {
	t.Helper()
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if got := h.clock.waiting(d); got < n {
			return fmt.Errorf("%d timers due within %v, want %d", got, d, n)
		}
		return nil
	})
}

func (h *harness) endpoints(pg string) []string {
	h.e.mu.Lock()
	defer h.e.mu.Unlock()
	var out []string
	for _, ep := range h.e.table.Endpoints(pg) {
		out = append(out, ep.InstanceGUID)
	}
	return out
}

// metric reads one series from a registry: name plus label pairs.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func expectSent(t *testing.T, got []sent, want ...string) {
	t.Helper()
	if g := sentShort(got); !slices.Equal(g, want) {
		t.Fatalf("published:\n got %q\nwant %q", g, want)
	}
}

const (
	web0 = "web.example.com 10.0.0.1:61001 ig-0"
	web1 = "web.example.com 10.0.0.1:61002 ig-1"
	web2 = "web.example.com 10.0.0.1:61003 ig-2"
)

func TestEmitterStartSyncsAndRegistersEverything(t *testing.T) {
	bus, fb := newWorld()
	fb.setDesired(desired("pg", 3, 1, "web.example.com"))
	fb.setActuals(running("pg", 0, "ig-0", 61001, 1), running("pg", 1, "ig-1", 61002, 1),
		unclaimed(running("pg", 2, "", 0, 0), 0))
	h := start(t, Config{}, bus, fb, fb)

	got := bus.take()
	expectSent(t, got, "register "+web0, "register "+web1)
	if got[0].msg.EndpointUpdatedAtNs != 1000 || got[0].msg.Tags["component"] != Component {
		t.Fatalf("first registration %s", got[0].raw)
	}
	if fb.watchCell != "" {
		t.Fatalf("global mode subscribed to cell %q", fb.watchCell)
	}
	if v := metric(t, h.e.Metrics(), "minicf_route_emitter_registrations_sent_total", "reason", "sync"); v != 2 {
		t.Fatalf("registrations_sent_total{reason=sync} = %v", v)
	}
	if v := metric(t, h.e.Metrics(), "minicf_route_emitter_routes_total"); v != 2 {
		t.Fatalf("routes_total = %v", v)
	}
	if v := metric(t, h.e.Metrics(), "minicf_route_emitter_sync_duration_seconds"); v != 1 {
		t.Fatalf("sync_duration_seconds has %v samples", v)
	}
	for _, msg := range []string{`"msg":"route-emitter-started"`, `"msg":"routes-synced"`, `"msg":"route-registered"`} {
		if !strings.Contains(h.logs.String(), msg) {
			t.Errorf("no %s log line", msg)
		}
	}
	if h.e.RouteCount() != 2 {
		t.Fatalf("RouteCount %d", h.e.RouteCount())
	}
}

func TestEmitterGreetsEverySecondUntilARouterAnswers(t *testing.T) {
	bus, fb := newWorld()
	bus.reply = func(n int) (mbus.Msg, error) {
		if n < 3 {
			return mbus.Msg{}, errNoResponders
		}
		return routerStartMsg(5), nil
	}
	fb.setDesired(desired("pg", 1, 1, "web.example.com"))
	fb.setActuals(running("pg", 0, "ig-0", 61001, 1))
	h := start(t, Config{}, bus, fb, fb)
	bus.take()

	for n := 1; n <= 2; n++ {
		h.waitTimer(t, time.Second, 1) // the pause before the next greeting
		if got := bus.greetCount(); got != n {
			t.Fatalf("%d greetings before the pause, want %d", got, n)
		}
		if h.e.RegisterInterval() != DefaultRegisterInterval {
			t.Fatalf("interval %v before any router answered", h.e.RegisterInterval())
		}
		h.clock.Advance(time.Second)
	}
	h.waitInterval(t, 5*time.Second)
	if got := bus.greetCount(); got != 3 {
		t.Fatalf("%d greetings, want 3", got)
	}
	if !strings.Contains(h.logs.String(), `"msg":"router-greeted"`) {
		t.Fatal("no router-greeted log line")
	}
	// The answer is the heartbeat: 5 s later the table goes out again.
	h.clock.Advance(5 * time.Second)
	expectSent(t, waitSent(t, bus, atLeast(1)), "register "+web0)
	if bus.greetCount() != 3 {
		t.Fatalf("greeting went on after an answer: %d", bus.greetCount())
	}
}

func TestEmitterHeartbeatPublishesWholeTable(t *testing.T) {
	bus, fb := newWorld()
	bus.reply = func(int) (mbus.Msg, error) { return routerStartMsg(1), nil }
	fb.setDesired(desired("pg", 3, 1, "web.example.com"), desired("other", 1, 1, "other.example.com"))
	fb.setActuals(running("pg", 0, "ig-0", 61001, 1), running("pg", 1, "ig-1", 61002, 1),
		running("pg", 2, "ig-2", 61003, 1), running("other", 0, "ig-o", 61004, 1))
	h := start(t, Config{}, bus, fb, fb)
	h.ready(t, time.Second)
	bus.take()

	for round := 1; round <= 2; round++ {
		h.clock.Advance(time.Second)
		got := waitSent(t, bus, atLeast(4))
		expectSent(t, got, "register other.example.com 10.0.0.1:61004 ig-o", "register "+web0, "register "+web1, "register "+web2)
		for _, s := range got {
			if s.msg.EndpointUpdatedAtNs != 0 {
				t.Fatalf("a heartbeat carries endpoint_updated_at_ns: %s", s.raw)
			}
		}
	}
	if v := metric(t, h.e.Metrics(), "minicf_route_emitter_registrations_sent_total", "reason", "heartbeat"); v != 8 {
		t.Fatalf("registrations_sent_total{reason=heartbeat} = %v, want 8", v)
	}
}

func TestEmitterRouterStartReemitsAfterJitter(t *testing.T) {
	bus, fb := newWorld()
	fb.setDesired(desired("pg", 2, 1, "web.example.com"))
	fb.setActuals(running("pg", 0, "ig-0", 61001, 1), running("pg", 1, "ig-1", 61002, 1))
	h := start(t, Config{Jitter: 300 * time.Millisecond}, bus, fb, fb)
	h.ready(t, time.Hour)
	bus.take()

	bus.deliver(t, routerStartMsg(7))
	h.waitInterval(t, 7*time.Second)
	h.waitTimer(t, 300*time.Millisecond, 1)
	if got := bus.take(); len(got) != 0 {
		t.Fatalf("re-emitted before the jitter: %v", sentShort(got))
	}
	h.clock.Advance(300 * time.Millisecond)
	expectSent(t, waitSent(t, bus, atLeast(2)), "register "+web0, "register "+web1)
	if v := metric(t, h.e.Metrics(), "minicf_route_emitter_registrations_sent_total", "reason", "router_start"); v != 2 {
		t.Fatalf("registrations_sent_total{reason=router_start} = %v", v)
	}
	// The heartbeat restarts from the re-emit, at the announced interval.
	h.clock.Advance(7 * time.Second)
	expectSent(t, waitSent(t, bus, atLeast(2)), "register "+web0, "register "+web1)

	// A NATS reconnect re-emits the same way: routers may have missed messages.
	bus.reconnected <- struct{}{}
	h.waitTimer(t, 300*time.Millisecond, 1)
	h.clock.Advance(300 * time.Millisecond)
	expectSent(t, waitSent(t, bus, atLeast(2)), "register "+web0, "register "+web1)
}

func TestEmitterResyncKeepsEventsThatArriveDuringIt(t *testing.T) {
	bus, fb := newWorld()
	d := desired("pg", 3, 1, "web.example.com")
	a0, a1 := running("pg", 0, "ig-0", 61001, 1), running("pg", 1, "ig-1", 61002, 1)
	fb.setDesired(d)
	fb.setActuals(a0)
	h := start(t, Config{SyncInterval: time.Minute}, bus, fb, fb)
	h.ready(t, time.Hour)
	bus.take()

	// While the periodic sync is in flight (the list it got is already
	// stale), instance 1 starts and instance 0 goes away.
	var during []sent
	fb.mu.Lock()
	fb.duringList = func() {
		fb.mu.Lock()
		fb.duringList = nil
		fb.mu.Unlock()
		fb.push(actualCreated(a1))
		fb.push(actualRemoved(a0))
		during = waitSent(t, bus, atLeast(2))
	}
	fb.mu.Unlock()
	h.clock.Advance(time.Minute)
	h.waitSyncs(t, 2)
	expectSent(t, during, "register "+web1, "unregister "+web0)
	if got := bus.take(); len(got) != 0 {
		t.Fatalf("the sync undid the events that arrived during it: %v", sentShort(got))
	}
	if got := h.endpoints("pg"); !slices.Equal(got, []string{"ig-1"}) {
		t.Fatalf("table endpoints after the sync: %v", got)
	}
}

func TestEmitterResyncEmitsTheDifference(t *testing.T) {
	bus, fb := newWorld()
	fb.setDesired(desired("pg", 3, 1, "web.example.com"))
	fb.setActuals(running("pg", 0, "ig-0", 61001, 1), running("pg", 1, "ig-1", 61002, 1))
	h := start(t, Config{SyncInterval: time.Minute}, bus, fb, fb)
	h.ready(t, time.Hour)
	bus.take()

	// Events were lost: the BBS moved on without the emitter hearing of it.
	fb.setActuals(running("pg", 0, "ig-0", 61001, 1), running("pg", 2, "ig-2", 61003, 1))
	h.clock.Advance(time.Minute)
	h.waitSyncs(t, 2)
	expectSent(t, bus.take(), "unregister "+web1, "register "+web2)
	if v := metric(t, h.e.Metrics(), "minicf_route_emitter_unregistrations_sent_total", "reason", "sync"); v != 1 {
		t.Fatalf("unregistrations_sent_total{reason=sync} = %v", v)
	}
}

func TestEmitterResendsUnregistrationsUntilARegistrationCancelsThem(t *testing.T) {
	bus, fb := newWorld()
	bus.reply = func(int) (mbus.Msg, error) { return routerStartMsg(1), nil }
	a0, a1 := running("pg", 0, "ig-0", 61001, 1), running("pg", 1, "ig-1", 61002, 1)
	fb.setDesired(desired("pg", 2, 1, "web.example.com"))
	fb.setActuals(a0, a1)
	h := start(t, Config{UnregisterResends: 2}, bus, fb, fb)
	h.ready(t, time.Second)
	bus.take()

	fb.push(actualRemoved(a1))
	expectSent(t, waitSent(t, bus, atLeast(1)), "unregister "+web1)
	for i := 0; i < 2; i++ {
		h.clock.Advance(time.Second)
		expectSent(t, waitSent(t, bus, atLeast(2)), "unregister "+web1, "register "+web0)
	}
	h.clock.Advance(time.Second)
	expectSent(t, waitSent(t, bus, atLeast(1)), "register "+web0)

	// Unroutable, then routable again: the registration cancels the resends.
	notReady, ready := routable(a0, false, 2), routable(a0, true, 3)
	fb.push(actualChanged(a0, notReady))
	fb.push(actualChanged(notReady, ready))
	expectSent(t, waitSent(t, bus, atLeast(2)), "unregister "+web0, "register "+web0)
	h.clock.Advance(time.Second)
	expectSent(t, waitSent(t, bus, atLeast(1)), "register "+web0)

	if v := metric(t, h.e.Metrics(), "minicf_route_emitter_unregistrations_sent_total", "reason", "resend"); v != 2 {
		t.Fatalf("unregistrations_sent_total{reason=resend} = %v, want 2", v)
	}
	if v := metric(t, h.e.Metrics(), "minicf_route_emitter_unregistrations_sent_total", "reason", "event"); v != 2 {
		t.Fatalf("unregistrations_sent_total{reason=event} = %v, want 2", v)
	}
}

func TestEmitterLocalModeWatchesItsCellAndFetchesRoutesOnDemand(t *testing.T) {
	bus, fb := newWorld()
	fb.setDesired(desired("pg", 2, 1, "web.example.com"), desired("elsewhere", 1, 1, "elsewhere.example.com"))
	other := running("elsewhere", 0, "ig-e", 61005, 1)
	other.CellID = "cell-2"
	fb.setActuals(running("pg", 0, "ig-0", 61001, 1), other)
	h := start(t, Config{CellID: "cell-1"}, bus, fb, fb)

	expectSent(t, bus.take(), "register "+web0)
	if fb.watchCell != "cell-1" {
		t.Fatalf("subscribed to cell %q", fb.watchCell)
	}
	dq, aq := fb.requests()
	if len(aq) != 1 || aq[0].CellID != "cell-1" || len(dq) != 1 || !slices.Equal(dq[0].ProcessGUIDs, []string{"pg"}) {
		t.Fatalf("local sync asked for actuals %+v and routing info %+v", aq, dq)
	}

	// An LRP the emitter never heard of starts on this cell: its routes are
	// fetched by process guid, and it is registered at once.
	fb.setDesired(desired("late", 1, 1, "late.example.com"))
	fb.push(actualCreated(running("late", 0, "ig-l", 61006, 1)))
	expectSent(t, waitSent(t, bus, atLeast(1)), "register late.example.com 10.0.0.1:61006 ig-l")
	dq, _ = fb.requests()
	if last := dq[len(dq)-1]; !slices.Equal(last.ProcessGUIDs, []string{"late"}) {
		t.Fatalf("routing info fetched with %+v", last)
	}
	_ = h
}

func TestEmitterKeepsRoutesOfAStaleDomain(t *testing.T) {
	bus, fb := newWorld()
	db := &domainBBS{fakeBBS: fb}
	fb.setDesired(desired("pg", 1, 1, "web.example.com"))
	fb.setActuals(running("pg", 0, "ig-0", 61001, 1))
	h := start(t, Config{SyncInterval: time.Minute}, bus, db, fb)
	h.ready(t, time.Hour)
	expectSent(t, bus.take(), "register "+web0)

	// The BBS lost the DesiredLRP, and the Cloud Controller has not
	// confirmed cf-apps lately: the routes stay.
	fb.removeDesired("pg")
	h.clock.Advance(time.Minute)
	h.waitSyncs(t, 2)
	if got := bus.take(); len(got) != 0 {
		t.Fatalf("a sync with a stale domain sent %v", sentShort(got))
	}
	// Once the domain is fresh, the BBS is believed.
	db.dmu.Lock()
	db.fresh = []string{bbs.DomainCFApps}
	db.dmu.Unlock()
	h.clock.Advance(time.Minute)
	h.waitSyncs(t, 3)
	expectSent(t, bus.take(), "unregister "+web0)
}

func TestEmitterConvergesAfterTheEventStreamDrops(t *testing.T) {
	bus, fb := newWorld()
	fb.setDesired(desired("pg", 2, 1, "web.example.com"))
	fb.setActuals(running("pg", 0, "ig-0", 61001, 1))
	h := start(t, Config{}, bus, fb, fb)
	bus.take()

	fb.setActuals(running("pg", 1, "ig-1", 61002, 1))
	fb.drop <- struct{}{}
	expectSent(t, waitSent(t, bus, atLeast(2)), "unregister "+web0, "register "+web1)
	h.waitSyncs(t, 2)
	if !strings.Contains(h.logs.String(), `"msg":"bbs-event-stream-lost"`) || !strings.Contains(h.logs.String(), `"reason":"resubscribed"`) {
		t.Fatalf("the drop and the resync are not in the log:\n%s", h.logs.String())
	}
}

func TestEmitterCountsAndLogsAddressCollisions(t *testing.T) {
	bus, fb := newWorld()
	fb.setDesired(desired("pg", 1, 1, "web.example.com"), desired("stale", 1, 1, "stale.example.com"))
	fb.setActuals(running("pg", 0, "ig-0", 61001, 1))
	h := start(t, Config{}, bus, fb, fb)
	bus.take()

	fb.push(actualCreated(running("stale", 0, "ig-stale", 61001, 1)))
	waitSent(t, bus, atLeast(1))
	if v := metric(t, h.e.Metrics(), "minicf_route_emitter_address_collisions_total"); v != 1 {
		t.Fatalf("address_collisions_total = %v", v)
	}
	var line string
	for _, l := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(l, `"msg":"address-collision"`) {
			line = l
		}
	}
	if !strings.Contains(line, `"instance_guid":"ig-stale"`) || !strings.Contains(line, `"other_instance_guid":"ig-0"`) ||
		!strings.Contains(line, `"address":"10.0.0.1:61001"`) {
		t.Fatalf("collision log line %q", line)
	}
}

func TestEmitterStartFailsWhenTheBBSNeverAnswers(t *testing.T) {
	bus, fb := newWorld()
	fb.listErr = errors.New("connection refused")
	e, err := New(Config{Bus: bus, BBS: fb, Clock: newFakeClock(), Logger: slog.New(slog.NewTextHandler(&syncBuffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = e.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Start = %v, want the BBS's error", err)
	}
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestNewRefusesMissingSeams(t *testing.T) {
	if _, err := New(Config{BBS: newFakeBBS()}); err == nil {
		t.Fatal("New without a bus")
	}
	if _, err := New(Config{Bus: newFakeBus()}); err == nil {
		t.Fatal("New without a BBS")
	}
}

// The real clients satisfy the seams.
var (
	_ BBSClient    = (*bbs.Client)(nil)
	_ DomainLister = (*bbs.Client)(nil)
	_ Bus          = (*mbus.Client)(nil)
)
