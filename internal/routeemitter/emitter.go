package routeemitter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/trace"
)

// BBSClient is what the emitter needs from the BBS; *bbs.Client has it.
type BBSClient interface {
	DesiredLRPRoutingInfos(ctx context.Context, f bbs.DesiredLRPsRequest) ([]*bbs.DesiredLRP, error)
	ActualLRPs(ctx context.Context, f bbs.ActualLRPsRequest) ([]*bbs.ActualLRP, error)
	WatchInstanceEvents(ctx context.Context, cellID string, w bbs.Watcher) error
}

// DomainLister is the optional part of a BBSClient that lists the fresh
// domains (*bbs.Client has it). When the BBS offers it, a sync keeps the
// routes of a DesiredLRP it no longer finds if that LRP's domain is not
// fresh: the Cloud Controller has not confirmed its desired state lately,
// and an empty answer is more likely lost data than a deleted app.
type DomainLister interface {
	Domains(ctx context.Context) ([]string, error)
}

// Bus is what the emitter needs from NATS; *mbus.Client has it.
type Bus interface {
	Publish(subject string, data []byte) error
	Subscribe(subject string, h func(mbus.Msg)) (mbus.Subscription, error)
	Request(ctx context.Context, subject string, data []byte) (mbus.Msg, error)
	Reconnected() <-chan struct{}
}

// Defaults, Cloud Foundry's where it has one.
const (
	DefaultRegisterInterval  = 20 * time.Second // until a router announces its own
	DefaultSyncInterval      = 60 * time.Second
	DefaultUnregisterResends = 3
	DefaultJitter            = 500 * time.Millisecond
	DefaultGreetInterval     = time.Second
	DefaultBBSTimeout        = 30 * time.Second
)

// Config configures an Emitter. Zero values take the defaults above; a
// negative UnregisterResends or Jitter turns that feature off.
type Config struct {
	// CellID selects local mode: only this cell's ActualLRPs are watched
	// and listed, as a cell-local Diego route-emitter does. Empty is global
	// mode: every cell.
	CellID string
	Bus    Bus
	BBS    BBSClient
	// RegisterInterval is the heartbeat until a router announces
	// minimumRegisterIntervalInSeconds in its greeting or router.start.
	RegisterInterval time.Duration
	// SyncInterval is how often the table is rebuilt from the BBS.
	SyncInterval time.Duration
	// UnregisterResends is how many times an unregistration is sent again,
	// one resend per heartbeat (so RegisterInterval apart), unless a later
	// registration of the same URI and address cancels it. NATS delivers at
	// most once, and a router never prunes a TLS route by age.
	UnregisterResends int
	// Jitter bounds the random wait before re-emitting everything after a
	// router.start, so that emitters do not all answer at once.
	Jitter time.Duration
	// GreetInterval spaces router.greet attempts (and bounds each wait).
	GreetInterval time.Duration
	// BBSTimeout bounds each list request of a sync.
	BBSTimeout time.Duration
	Logger     *slog.Logger
	Clock      Clock
	// Metrics is where the emitter registers its series; nil makes its own
	// registry (see Emitter.Metrics).
	Metrics *prometheus.Registry
	// Trace records flow 1's route-registered steps; nil records nothing.
	Trace trace.Emitter
}

// Emitter is the route-emitter: it keeps the routing table equal to the
// BBS (events plus periodic syncs) and tells routers about it on NATS.
// Construct with New, then Start and Stop.
type Emitter struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	reg   *prometheus.Registry
	m     *metrics

	// mu guards the table, the sync's event cache and the unregistration
	// cache. Messages are published while it is held, so they leave in the
	// order the table changed.
	mu      sync.Mutex
	table   *Table
	syncing bool
	pending []change // events applied during a sync, to replay onto its result
	unregs  map[regKey]*resend

	syncMu     sync.Mutex // one sync at a time
	syncs      int        // completed syncs, under syncMu
	synced     chan struct{}
	syncedOnce sync.Once
	lastErr    atomic.Pointer[error] // the last sync or stream error, for Start's

	updates  chan scheduleUpdate
	interval atomic.Int64 // current heartbeat, for RegisterInterval
	greeted  atomic.Bool

	started  bool
	ctx      context.Context
	cancel   context.CancelFunc
	sub      mbus.Subscription
	wg       sync.WaitGroup
	stopOnce sync.Once
}

type resend struct {
	msg  *mbus.RegistryMessage
	left int
}

// scheduleUpdate tells the heartbeat loop about a router: its interval (0
// keeps the current one) and whether to re-emit everything after a jitter.
type scheduleUpdate struct {
	interval time.Duration
	reemit   bool
}

// New checks cfg and builds an emitter; nothing runs until Start.
func New(cfg Config) (*Emitter, error) {
	if cfg.Bus == nil {
		return nil, errors.New("route emitter: no NATS bus")
	}
	if cfg.BBS == nil {
		return nil, errors.New("route emitter: no BBS client")
	}
	if cfg.RegisterInterval <= 0 {
		cfg.RegisterInterval = DefaultRegisterInterval
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	switch {
	case cfg.UnregisterResends == 0:
		cfg.UnregisterResends = DefaultUnregisterResends
	case cfg.UnregisterResends < 0:
		cfg.UnregisterResends = 0
	}
	switch {
	case cfg.Jitter == 0:
		cfg.Jitter = DefaultJitter
	case cfg.Jitter < 0:
		cfg.Jitter = 0
	}
	if cfg.GreetInterval <= 0 {
		cfg.GreetInterval = DefaultGreetInterval
	}
	if cfg.BBSTimeout <= 0 {
		cfg.BBSTimeout = DefaultBBSTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("route emitter metrics: %w", err)
	}
	e := &Emitter{
		cfg: cfg, log: cfg.Logger, clock: cfg.Clock, reg: cfg.Metrics, m: m,
		table: NewTable(), unregs: map[regKey]*resend{},
		synced: make(chan struct{}), updates: make(chan scheduleUpdate, 8),
	}
	e.interval.Store(int64(cfg.RegisterInterval))
	return e, nil
}

// Metrics is the registry holding the emitter's series.
func (e *Emitter) Metrics() *prometheus.Registry { return e.reg }

// RegisterInterval is the current heartbeat.
func (e *Emitter) RegisterInterval() time.Duration { return time.Duration(e.interval.Load()) }

// RouteCount is the number of (route × endpoint) registrations in the table.
func (e *Emitter) RouteCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.table.RouteCount()
}

func (e *Emitter) mode() string {
	if e.cfg.CellID != "" {
		return "local"
	}
	return "global"
}

// Start subscribes to router.start, greets the routers (in the background,
// every GreetInterval until one answers), subscribes to the BBS's events and
// syncs, then emits the whole table and starts the heartbeat and resync
// loops. It returns once the first sync is done, or with an error when ctx
// ends first. ctx bounds only the start; Stop ends the loops.
func (e *Emitter) Start(ctx context.Context) error {
	if e.started {
		return errors.New("route emitter already started")
	}
	e.started = true
	e.ctx, e.cancel = context.WithCancel(context.Background())
	sub, err := e.cfg.Bus.Subscribe(mbus.SubjectStart, e.onRouterStart)
	if err != nil {
		e.cancel()
		return fmt.Errorf("route emitter: %w", err)
	}
	e.sub = sub
	e.wg.Add(4)
	go func() { defer e.wg.Done(); e.greet() }()
	go func() { defer e.wg.Done(); e.schedule() }()
	go func() { defer e.wg.Done(); e.syncLoop() }()
	go func() { defer e.wg.Done(); e.watch() }()
	select {
	case <-e.synced:
	case <-ctx.Done():
		e.Stop(context.Background())
		if p := e.lastErr.Load(); p != nil {
			return fmt.Errorf("route emitter: no sync with the BBS before start-up ended (%v): %w", ctx.Err(), *p)
		}
		return fmt.Errorf("route emitter: no sync with the BBS before start-up ended: %w", ctx.Err())
	}
	e.log.Info("route-emitter-started", "mode", e.mode(), "cell_id", e.cfg.CellID, "routes", e.RouteCount(),
		"register_interval", e.RegisterInterval().String(), "sync_interval", e.cfg.SyncInterval.String())
	return nil
}

// Stop ends every loop and waits for them until ctx ends. Routes stay
// registered: a router keeps them until they go stale, and an emitter that
// starts again registers them anew.
func (e *Emitter) Stop(ctx context.Context) error {
	if !e.started {
		return nil
	}
	var err error
	e.stopOnce.Do(func() {
		e.cancel()
		if e.sub != nil {
			e.sub.Unsubscribe()
		}
		done := make(chan struct{})
		go func() { e.wg.Wait(); close(done) }()
		select {
		case <-done:
			e.log.Info("route-emitter-stopped")
		case <-ctx.Done():
			err = fmt.Errorf("route emitter did not stop in time: %w", ctx.Err())
		}
	})
	return err
}

// --- BBS side --------------------------------------------------------------

func (e *Emitter) watch() {
	w := bbs.Watcher{
		Resync: e.resync,
		Event:  e.onEvent,
		Lost: func(err error) {
			if e.ctx.Err() == nil {
				if err != nil {
					e.lastErr.Store(&err)
				}
				e.log.Warn("bbs-event-stream-lost", "error", errString(err))
			}
		},
	}
	e.cfg.BBS.WatchInstanceEvents(e.ctx, e.cfg.CellID, w)
}

// resync runs after every (re)subscription to the event stream and before
// any event of it: the events that arrive meanwhile wait in the stream and
// are applied after the sync, ordered by modification tag.
func (e *Emitter) resync(ctx context.Context) error {
	reason := "subscribed"
	select {
	case <-e.synced:
		reason = "resubscribed"
	default:
	}
	if err := e.sync(ctx, reason); err != nil {
		e.lastErr.Store(&err)
		e.log.Warn("sync-failed", "reason", reason, "error", err.Error())
		return err
	}
	e.syncedOnce.Do(func() { close(e.synced) })
	return nil
}

func (e *Emitter) syncLoop() {
	t := e.clock.NewTicker(e.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C():
			if err := e.sync(e.ctx, "periodic"); err != nil && e.ctx.Err() == nil {
				e.lastErr.Store(&err)
				e.log.Error("sync-failed", "reason", "periodic", "error", err.Error())
			}
		}
	}
}

// onEvent applies one BBS event to the table and publishes what changed.
// A RUNNING instance of an LRP whose routes the table does not know (local
// mode sees only its own LRPs at sync time; or the desired event was lost)
// first fetches that LRP's routing info, as Diego's watcher does.
func (e *Emitter) onEvent(ev bbs.Event) {
	c, err := decodeEvent(ev)
	if err != nil {
		e.log.Warn("bbs-event-invalid", "event", ev.Type, "error", err.Error())
		return
	}
	var fetched []*bbs.DesiredLRP
	if a := c.runningActual(); a != nil {
		e.mu.Lock()
		known := e.table.HasDesired(a.ProcessGUID)
		e.mu.Unlock()
		if !known {
			ctx, cancel := context.WithTimeout(e.ctx, e.cfg.BBSTimeout)
			fetched, err = e.cfg.BBS.DesiredLRPRoutingInfos(ctx, bbs.DesiredLRPsRequest{ProcessGUIDs: []string{a.ProcessGUID}})
			cancel()
			if err != nil {
				e.log.Warn("routing-info-fetch-failed", "process_guid", a.ProcessGUID, "error", err.Error())
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range fetched {
		if d != nil && d.ProcessGUID == c.setActual.ProcessGUID {
			e.applyLocked(change{setDesired: d})
		}
	}
	e.applyLocked(c)
}

func (e *Emitter) applyLocked(c change) {
	ch := e.table.apply(c)
	if e.syncing {
		e.pending = append(e.pending, c)
	}
	e.publishLocked(ch, reasonEvent)
}

// sync rebuilds the table from the BBS and publishes the difference. Events
// that arrive during it are applied to the current table at once (so they
// are not delayed) and replayed onto the new one before the swap (so they
// are not lost when the lists were read before them).
func (e *Emitter) sync(ctx context.Context, reason string) error {
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	start := e.clock.Now()
	e.mu.Lock()
	e.syncing, e.pending = true, nil
	e.mu.Unlock()

	next, fresh, nDesired, nActual, err := e.fetch(ctx)

	e.mu.Lock()
	defer e.mu.Unlock()
	pending := e.pending
	e.syncing, e.pending = false, nil
	if err != nil {
		return err
	}
	if fresh != nil {
		for pg, d := range e.table.desired {
			if !next.HasDesired(pg) && !fresh[d.lrp.Domain] && len(next.actuals[pg]) > 0 {
				next.SetDesired(d.lrp)
			}
		}
	}
	for _, c := range pending {
		next.apply(c)
	}
	ch := e.table.Diff(next)
	ch.Collisions = newCollisions(e.table.Collisions(), next.Collisions())
	e.table = next
	e.publishLocked(ch, reasonSync)
	e.syncs++
	d := e.clock.Now().Sub(start)
	e.m.syncDuration.Observe(d.Seconds())
	e.log.Info("routes-synced", "reason", reason, "desired_lrps", nDesired, "actual_lrps", nActual,
		"events_during_sync", len(pending), "routes", next.RouteCount(), "registered", len(ch.Registrations),
		"unregistered", len(ch.Unregistrations), "duration_ms", float64(d.Microseconds())/1000)
	return nil
}

// fetch lists what a sync needs. Global mode asks for everything at once;
// local mode lists its cell's instances first and then the routing info of
// their LRPs only. fresh is nil when the BBS cannot list domains.
func (e *Emitter) fetch(ctx context.Context) (t *Table, fresh map[string]bool, nDesired, nActual int, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.BBSTimeout)
	defer cancel()
	var (
		wg                    sync.WaitGroup
		actuals               []*bbs.ActualLRP
		desired               []*bbs.DesiredLRP
		domains               []string
		aErr, dErr, domainErr error
	)
	lister, canList := e.cfg.BBS.(DomainLister)
	if canList {
		wg.Add(1)
		go func() { defer wg.Done(); domains, domainErr = lister.Domains(ctx) }()
	}
	if e.cfg.CellID == "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			desired, dErr = e.cfg.BBS.DesiredLRPRoutingInfos(ctx, bbs.DesiredLRPsRequest{})
		}()
		actuals, aErr = e.cfg.BBS.ActualLRPs(ctx, bbs.ActualLRPsRequest{})
	} else {
		actuals, aErr = e.cfg.BBS.ActualLRPs(ctx, bbs.ActualLRPsRequest{CellID: e.cfg.CellID})
		if aErr == nil {
			// An empty filter would mean every LRP: ask only when there is one.
			if pgs := processGUIDs(actuals); len(pgs) > 0 {
				desired, dErr = e.cfg.BBS.DesiredLRPRoutingInfos(ctx, bbs.DesiredLRPsRequest{ProcessGUIDs: pgs})
			}
		}
	}
	wg.Wait()
	switch {
	case aErr != nil:
		return nil, nil, 0, 0, fmt.Errorf("listing actual LRPs: %w", aErr)
	case dErr != nil:
		return nil, nil, 0, 0, fmt.Errorf("listing desired LRP routing info: %w", dErr)
	case domainErr != nil:
		return nil, nil, 0, 0, fmt.Errorf("listing fresh domains: %w", domainErr)
	}
	t = NewTable()
	for _, d := range desired {
		t.SetDesired(d)
	}
	for _, a := range actuals {
		if e.cfg.CellID != "" && a.CellID != e.cfg.CellID {
			continue
		}
		t.SetActual(a)
	}
	if canList {
		fresh = map[string]bool{}
		for _, d := range domains {
			fresh[d] = true
		}
	}
	return t, fresh, len(desired), len(actuals), nil
}

func processGUIDs(actuals []*bbs.ActualLRP) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range actuals {
		if a.State == bbs.StateRunning && !seen[a.ProcessGUID] {
			seen[a.ProcessGUID] = true
			out = append(out, a.ProcessGUID)
		}
	}
	return out
}

func newCollisions(before, after []Collision) []Collision {
	seen := map[[3]string]bool{}
	for _, c := range before {
		seen[[3]string{c.Address, c.InstanceGUID, c.OtherInstanceGUID}] = true
	}
	var out []Collision
	for _, c := range after {
		if !seen[[3]string{c.Address, c.InstanceGUID, c.OtherInstanceGUID}] {
			out = append(out, c)
		}
	}
	return out
}

// --- NATS side -------------------------------------------------------------

// publishLocked sends unregistrations, then registrations, and logs the
// collisions. Unregistrations enter the resend cache; a registration of the
// same URI and address takes its entry out.
func (e *Emitter) publishLocked(ch Changes, reason string) {
	for _, m := range ch.Unregistrations {
		e.send(mbus.SubjectUnregister, m, reason)
		if e.cfg.UnregisterResends > 0 {
			e.unregs[keyOf(m)] = &resend{msg: m, left: e.cfg.UnregisterResends}
		}
	}
	for _, m := range ch.Registrations {
		e.send(mbus.SubjectRegister, m, reason)
		delete(e.unregs, keyOf(m))
	}
	for _, c := range ch.Collisions {
		e.m.collisions.Inc()
		e.log.Warn("address-collision", "address", c.Address, "instance_guid", c.InstanceGUID, "process_guid", c.ProcessGUID,
			"other_instance_guid", c.OtherInstanceGUID, "other_process_guid", c.OtherProcessGUID)
	}
	e.m.routes.Set(float64(e.table.RouteCount()))
}

func keyOf(m *mbus.RegistryMessage) regKey { return regKey{uri: firstURI(m), addr: m.Address()} }

func (e *Emitter) send(subject string, m *mbus.RegistryMessage, reason string) {
	data, err := json.Marshal(m)
	// Stamped before publishing: the router may add the route before this
	// goroutine runs again, and its step must not come first.
	published := time.Now()
	if err == nil {
		err = e.cfg.Bus.Publish(subject, data)
	}
	if err != nil {
		e.m.publishErrors.Inc()
		e.log.Warn("publish-failed", "subject", subject, "uri", firstURI(m), "address", m.Address(), "error", err.Error())
		return
	}
	register := subject == mbus.SubjectRegister
	if register {
		e.m.registrations.WithLabelValues(reason).Inc()
		e.traceRegistered(m, data, reason, published)
	} else {
		e.m.unregistrations.WithLabelValues(reason).Inc()
	}
	if reason == reasonHeartbeat || reason == reasonRouterStart || !e.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	msg := "route-unregistered"
	if register {
		msg = "route-registered"
	}
	e.log.Debug(msg, "reason", reason, "uri", firstURI(m), "address", m.Address(), "tls", m.TLS(),
		"app", m.App, "instance_guid", m.PrivateInstanceID, "index", m.PrivateInstanceIndex,
		"endpoint_updated_at_ns", m.EndpointUpdatedAtNs)
}

// emitAll publishes every registration of the table. On a heartbeat it
// first re-sends the cached unregistrations, each at most UnregisterResends
// times.
func (e *Emitter) emitAll(reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if reason == reasonHeartbeat {
		for k, r := range e.unregs {
			e.send(mbus.SubjectUnregister, r.msg, reasonResend)
			if r.left--; r.left <= 0 {
				delete(e.unregs, k)
			}
		}
	}
	for _, m := range e.table.Messages() {
		e.send(mbus.SubjectRegister, m, reason)
		delete(e.unregs, keyOf(m))
	}
	e.m.routes.Set(float64(e.table.RouteCount()))
}

// greet asks the routers for their register interval (router.greet) until
// one answers or a router.start arrives; a router that starts later sends
// router.start by itself.
func (e *Emitter) greet() {
	for attempt := 1; !e.greeted.Load(); attempt++ {
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.GreetInterval)
		msg, err := e.cfg.Bus.Request(ctx, mbus.SubjectGreet, nil)
		cancel()
		if e.ctx.Err() != nil {
			return
		}
		if err == nil {
			var rs mbus.RouterStart
			if err = json.Unmarshal(msg.Data, &rs); err == nil {
				e.greeted.Store(true)
				e.log.Info("router-greeted", "router_id", rs.ID, "attempt", attempt,
					"minimum_register_interval_s", rs.MinimumRegisterIntervalInSeconds,
					"prune_threshold_s", rs.PruneThresholdInSeconds)
				e.update(scheduleUpdate{interval: seconds(rs.MinimumRegisterIntervalInSeconds)})
				return
			}
			err = fmt.Errorf("the greeting reply is not a router.start message: %w", err)
		}
		level := slog.LevelDebug
		if attempt == 1 || attempt%30 == 0 {
			level = slog.LevelInfo
		}
		e.log.Log(e.ctx, level, "router-greet-failed", "attempt", attempt, "error", err.Error())
		t := e.clock.NewTimer(e.cfg.GreetInterval)
		select {
		case <-e.ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

func (e *Emitter) onRouterStart(msg mbus.Msg) {
	var rs mbus.RouterStart
	if err := json.Unmarshal(msg.Data, &rs); err != nil {
		e.log.Warn("router-start-invalid", "error", err.Error())
		return
	}
	e.greeted.Store(true)
	e.log.Info("router-start-received", "router_id", rs.ID,
		"minimum_register_interval_s", rs.MinimumRegisterIntervalInSeconds)
	e.update(scheduleUpdate{interval: seconds(rs.MinimumRegisterIntervalInSeconds), reemit: true})
}

func (e *Emitter) update(u scheduleUpdate) {
	select {
	case e.updates <- u:
	case <-e.ctx.Done():
	}
}

func seconds(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// schedule runs the heartbeat, and the re-emit after a random jitter that a
// router.start (or a NATS reconnect: routers may have missed messages)
// calls for.
func (e *Emitter) schedule() {
	interval := e.cfg.RegisterInterval
	tick := e.clock.NewTicker(interval)
	defer tick.Stop()
	var jitter Timer
	var jitterC <-chan time.Time
	defer func() {
		if jitter != nil {
			jitter.Stop()
		}
	}()
	reemit := func() {
		if jitterC != nil {
			return // one re-emit is already on its way
		}
		var d time.Duration
		if e.cfg.Jitter > 0 {
			d = time.Duration(rand.Int64N(int64(e.cfg.Jitter)))
		}
		if d <= 0 {
			e.emitAll(reasonRouterStart)
			tick.Reset(interval)
			return
		}
		jitter = e.clock.NewTimer(d)
		jitterC = jitter.C()
	}
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C():
			e.emitAll(reasonHeartbeat)
		case u := <-e.updates:
			if u.interval > 0 && u.interval != interval {
				e.log.Info("register-interval-changed", "from", interval.String(), "to", u.interval.String())
				interval = u.interval
				tick.Reset(interval)
				e.interval.Store(int64(interval))
			}
			if u.reemit {
				reemit()
			}
		case <-jitterC:
			jitter, jitterC = nil, nil
			e.emitAll(reasonRouterStart)
			tick.Reset(interval)
		case <-e.cfg.Bus.Reconnected():
			e.log.Info("nats-reconnected-reemitting")
			reemit()
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
