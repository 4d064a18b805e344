package routeemitter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/testutil"
)

// --- fake clock ------------------------------------------------------------

// fakeClock moves only when a test calls Advance. Timers and tickers fire
// on Advance, without blocking, like the real ones.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	tickers int // ever created
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1767225600, 0)} }

type fakeTimer struct {
	c       *fakeClock
	ch      chan time.Time
	at      time.Time
	period  time.Duration // > 0 for a ticker
	stopped bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d, period time.Duration) *fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1), at: c.now.Add(d), period: period}
	c.timers = append(c.timers, t)
	return t
}

func (c *fakeClock) NewTimer(d time.Duration) Timer { return c.add(d, 0) }
func (c *fakeClock) NewTicker(d time.Duration) Ticker {
	t := c.add(d, d)
	c.mu.Lock()
	c.tickers++
	c.mu.Unlock()
	return fakeTicker{t}
}

func (c *fakeClock) tickerCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tickers
}

// fakeTicker is a fakeTimer with a ticker's Stop.
type fakeTicker struct{ *fakeTimer }

func (t fakeTicker) Stop() { t.fakeTimer.Stop() }

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

func (t *fakeTimer) Reset(d time.Duration) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.stopped = false
	t.at = t.c.now.Add(d)
	if t.period > 0 {
		t.period = d
	}
	if !slices.Contains(t.c.timers, t) {
		t.c.timers = append(t.c.timers, t)
	}
}

// Advance moves the clock and fires what is due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	live := c.timers[:0]
	for _, t := range c.timers {
		if t.stopped {
			continue
		}
		if !t.at.After(c.now) {
			select {
			case t.ch <- c.now:
			default:
			}
			if t.period > 0 {
				for !t.at.After(c.now) {
					t.at = t.at.Add(t.period)
				}
			} else {
				t.stopped = true
				continue
			}
		}
		live = append(live, t)
	}
	c.timers = live
}

// waiting counts live timers and tickers that fire within d from now.
func (c *fakeClock) waiting(d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now.Add(d)) {
			n++
		}
	}
	return n
}

// --- fake bus --------------------------------------------------------------

type sent struct {
	subject string
	msg     mbus.RegistryMessage
	raw     string
}

// fakeBus records what is published and plays the routers' side of
// router.greet through reply.
type fakeBus struct {
	mu          sync.Mutex
	sent        []sent
	subs        map[string]func(mbus.Msg)
	greets      int
	reply       func(attempt int) (mbus.Msg, error)
	reconnected chan struct{}
	publishErr  error
}

func newFakeBus() *fakeBus {
	return &fakeBus{subs: map[string]func(mbus.Msg){}, reconnected: make(chan struct{}, 1),
		reply: func(int) (mbus.Msg, error) { return routerStartMsg(20), nil }}
}

func routerStartMsg(interval int) mbus.Msg {
	b, _ := json.Marshal(mbus.RouterStart{ID: "0-router", Hosts: []string{"127.0.0.1"},
		MinimumRegisterIntervalInSeconds: interval, PruneThresholdInSeconds: 120})
	return mbus.Msg{Subject: mbus.SubjectStart, Data: b}
}

func (b *fakeBus) Publish(subject string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.publishErr != nil {
		return b.publishErr
	}
	s := sent{subject: subject, raw: string(data)}
	if err := json.Unmarshal(data, &s.msg); err != nil {
		panic(err)
	}
	b.sent = append(b.sent, s)
	return nil
}

type fakeSub struct {
	b       *fakeBus
	subject string
}

func (s fakeSub) Unsubscribe() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	delete(s.b.subs, s.subject)
	return nil
}

func (b *fakeBus) Subscribe(subject string, h func(mbus.Msg)) (mbus.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs[subject] = h
	return fakeSub{b, subject}, nil
}

func (b *fakeBus) Request(ctx context.Context, subject string, data []byte) (mbus.Msg, error) {
	b.mu.Lock()
	b.greets++
	n, reply := b.greets, b.reply
	b.mu.Unlock()
	return reply(n)
}

func (b *fakeBus) Reconnected() <-chan struct{} { return b.reconnected }

// deliver hands a message to the subscriber of its subject.
func (b *fakeBus) deliver(t *testing.T, m mbus.Msg) {
	t.Helper()
	b.mu.Lock()
	h := b.subs[m.Subject]
	b.mu.Unlock()
	if h == nil {
		t.Fatalf("nobody subscribed to %s", m.Subject)
	}
	h(m)
}

func (b *fakeBus) greetCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.greets
}

// take returns what was published since the last take.
func (b *fakeBus) take() []sent {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.sent
	b.sent = nil
	return out
}

// --- fake BBS --------------------------------------------------------------

// fakeBBS holds desired and actual LRPs and streams the events a test
// pushes. Each subscription resyncs first, as bbs.Client.WatchInstanceEvents
// does; drop ends the current subscription.
type fakeBBS struct {
	mu        sync.Mutex
	desired   map[string]*bbs.DesiredLRP
	actuals   []*bbs.ActualLRP
	events    chan bbs.Event
	drop      chan struct{}
	watchCell string
	desiredQ  []bbs.DesiredLRPsRequest
	actualQ   []bbs.ActualLRPsRequest
	// duringList, when set, runs inside ActualLRPs after the answer has been
	// read, so a test can change the world while a sync is in flight.
	duringList func()
	listErr    error
}

func newFakeBBS() *fakeBBS {
	return &fakeBBS{desired: map[string]*bbs.DesiredLRP{}, events: make(chan bbs.Event, 64), drop: make(chan struct{}, 1)}
}

func (f *fakeBBS) setDesired(ds ...*bbs.DesiredLRP) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range ds {
		f.desired[d.ProcessGUID] = d
	}
}

func (f *fakeBBS) removeDesired(pg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.desired, pg)
}

func (f *fakeBBS) setActuals(as ...*bbs.ActualLRP) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actuals = as
}

func (f *fakeBBS) DesiredLRPRoutingInfos(ctx context.Context, r bbs.DesiredLRPsRequest) ([]*bbs.DesiredLRP, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.desiredQ = append(f.desiredQ, r)
	var out []*bbs.DesiredLRP
	for _, d := range f.desired {
		if len(r.ProcessGUIDs) == 0 || slices.Contains(r.ProcessGUIDs, d.ProcessGUID) {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *fakeBBS) ActualLRPs(ctx context.Context, r bbs.ActualLRPsRequest) ([]*bbs.ActualLRP, error) {
	f.mu.Lock()
	f.actualQ = append(f.actualQ, r)
	var out []*bbs.ActualLRP
	for _, a := range f.actuals {
		if r.CellID == "" || a.CellID == r.CellID {
			out = append(out, a)
		}
	}
	hook, err := f.duringList, f.listErr
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return out, err
}

func (f *fakeBBS) WatchInstanceEvents(ctx context.Context, cellID string, w bbs.Watcher) error {
	f.mu.Lock()
	f.watchCell = cellID
	f.mu.Unlock()
	for {
		if err := w.Resync(ctx); err != nil {
			if w.Lost != nil {
				w.Lost(err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
				continue
			}
		}
	stream:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-f.drop:
				if w.Lost != nil {
					w.Lost(bbs.ErrEventStreamClosed)
				}
				break stream
			case e := <-f.events:
				if cellID != "" && e.IsActualLRPEvent() && e.CellID() != cellID {
					continue
				}
				w.Event(e)
			}
		}
	}
}

func (f *fakeBBS) push(e bbs.Event) { f.events <- e }

func (f *fakeBBS) requests() ([]bbs.DesiredLRPsRequest, []bbs.ActualLRPsRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.desiredQ), slices.Clone(f.actualQ)
}

// domainBBS is a fakeBBS that also lists fresh domains.
type domainBBS struct {
	*fakeBBS
	dmu   sync.Mutex
	fresh []string
}

func (d *domainBBS) Domains(context.Context) ([]string, error) {
	d.dmu.Lock()
	defer d.dmu.Unlock()
	return slices.Clone(d.fresh), nil
}

// --- fixtures --------------------------------------------------------------

func tag(epoch string, index uint32) bbs.ModificationTag {
	return bbs.ModificationTag{Epoch: epoch, Index: index}
}

// routes builds cf-router routes: each argument is one route mapping,
// "hostname" on port 8080.
func routes(hostnames ...string) bbs.Routes {
	var rs []bbs.CFRoute
	for _, h := range hostnames {
		rs = append(rs, bbs.CFRoute{Hostnames: []string{h}, Port: 8080})
	}
	return bbs.Routes{}.SetCFRoutes(rs)
}

func desired(pg string, instances int32, tagIndex uint32, hostnames ...string) *bbs.DesiredLRP {
	return &bbs.DesiredLRP{ProcessGUID: pg, Domain: bbs.DomainCFApps, Instances: instances, LogGUID: "app-" + pg,
		Routes: routes(hostnames...), ModificationTag: tag("d-"+pg, tagIndex)}
}

// running is instance index of pg, RUNNING on cell-1 at 10.0.0.1 with the
// sidecar's port mapped to tlsPort.
func running(pg string, index int32, ig string, tlsPort uint32, tagIndex uint32) *bbs.ActualLRP {
	return &bbs.ActualLRP{
		ActualLRPKey:         bbs.ActualLRPKey{ProcessGUID: pg, Index: index, Domain: bbs.DomainCFApps},
		ActualLRPInstanceKey: bbs.ActualLRPInstanceKey{InstanceGUID: ig, CellID: "cell-1"},
		ActualLRPNetInfo: bbs.ActualLRPNetInfo{Address: "10.0.0.1", InstanceAddress: "10.244.1.2", PreferredAddress: "HOST",
			Ports: []bbs.PortMapping{{ContainerPort: 8080, HostPort: 0, ContainerTLSProxyPort: 61001, HostTLSProxyPort: tlsPort}}},
		State: bbs.StateRunning, Since: 1000 + int64(index), ModificationTag: tag(fmt.Sprintf("a-%s-%d", pg, index), tagIndex),
		Presence: bbs.PresenceOrdinary,
	}
}

func withState(a *bbs.ActualLRP, state string, tagIndex uint32) *bbs.ActualLRP {
	c := *a
	c.State = state
	c.ModificationTag.Index = tagIndex
	if state != bbs.StateRunning {
		c.ActualLRPNetInfo = bbs.ActualLRPNetInfo{}
	}
	if state == bbs.StateUnclaimed || state == bbs.StateCrashed {
		c.ActualLRPInstanceKey = bbs.ActualLRPInstanceKey{}
	}
	return &c
}

func event(typ string, payload any) bbs.Event {
	b, err := json.Marshal(payload)
	if err != nil {
		panic(err)
	}
	return bbs.Event{Type: typ, Data: b}
}

func desiredCreated(d *bbs.DesiredLRP) bbs.Event {
	return event(bbs.EventDesiredLRPCreated, bbs.DesiredLRPCreatedEvent{DesiredLRP: d})
}

func desiredChanged(before, after *bbs.DesiredLRP) bbs.Event {
	return event(bbs.EventDesiredLRPChanged, bbs.DesiredLRPChangedEvent{Before: before, After: after})
}

func desiredRemoved(d *bbs.DesiredLRP) bbs.Event {
	return event(bbs.EventDesiredLRPRemoved, bbs.DesiredLRPRemovedEvent{DesiredLRP: d})
}

func actualCreated(a *bbs.ActualLRP) bbs.Event {
	return event(bbs.EventActualLRPInstanceCreated, bbs.ActualLRPInstanceCreatedEvent{ActualLRP: a})
}

func actualChanged(before, after *bbs.ActualLRP) bbs.Event {
	return event(bbs.EventActualLRPInstanceChanged, bbs.ActualLRPInstanceChangedEvent{
		ActualLRPKey: after.ActualLRPKey, ActualLRPInstanceKey: after.ActualLRPInstanceKey,
		Before: before.Info(), After: after.Info()})
}

func actualRemoved(a *bbs.ActualLRP) bbs.Event {
	return event(bbs.EventActualLRPInstanceRemoved, bbs.ActualLRPInstanceRemovedEvent{ActualLRP: a})
}

// short renders a message as "uri host:port instance", enough to tell
// registrations apart in a table test.
func short(m *mbus.RegistryMessage) string {
	return fmt.Sprintf("%s %s %s", firstURI(m), m.Address(), m.PrivateInstanceID)
}

func shorts(ms []*mbus.RegistryMessage) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, short(m))
	}
	return out
}

// sentShort renders what the fake bus saw: "register uri host:port instance".
func sentShort(ss []sent) []string {
	out := []string{}
	for _, s := range ss {
		verb := "register"
		if s.subject == mbus.SubjectUnregister {
			verb = "unregister"
		}
		out = append(out, verb+" "+short(&s.msg))
	}
	return out
}

// waitSent polls the bus until f accepts everything published so far (which
// it then consumes), failing after a second.
func waitSent(t *testing.T, b *fakeBus, f func([]sent) error) []sent {
	t.Helper()
	var got []sent
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		got = append(got, b.take()...)
		return f(got)
	})
	return got
}

// wantCount is a waitSent condition: exactly n messages on subject with
// the given reason-independent shape.
func atLeast(n int) func([]sent) error {
	return func(s []sent) error {
		if len(s) < n {
			return fmt.Errorf("%d messages published, want %d: %v", len(s), n, sentShort(s))
		}
		return nil
	}
}

var errNoResponders = errors.New("nats: no responders available for request")
