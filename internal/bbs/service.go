package bbs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/minicf/minicf/internal/trace"
)

// Config holds the BBS's timers; zero values take Diego's defaults.
type Config struct {
	ConvergeInterval       time.Duration // 30 s
	StaleUnclaimedDuration time.Duration // 30 s: an UNCLAIMED instance older than this is auctioned again
	CellTTL                time.Duration // 15 s: a cell that has not heartbeaten for this long is gone
	MaxRestartAttempts     int32         // 200

	// Task convergence, with Diego's defaults.
	KickTaskDuration            time.Duration // 30 s: a PENDING Task is auctioned again, a RESOLVING one goes back to COMPLETED
	ExpireCompletedTaskDuration time.Duration // 2 min: a COMPLETED Task without a callback is deleted
	ExpirePendingTaskDuration   time.Duration // 30 min: a PENDING Task fails "not started within time limit"
	// ExpireUnresolvedTaskDuration is how long a COMPLETED Task whose
	// callback keeps failing is retried before it is deleted (30 min).
	ExpireUnresolvedTaskDuration time.Duration
	// TaskCallbackTLS is the client TLS config of completion callbacks
	// (mutual TLS to the Cloud Controller's internal API). nil: the
	// system's roots and no client certificate.
	TaskCallbackTLS *tls.Config
	// TaskCallbackTimeout bounds one callback request (10 s).
	TaskCallbackTimeout time.Duration

	// Trace records flow 1's steps (lrp-desired, lrp-updated,
	// actual-lrp-running); nil records nothing.
	Trace trace.Emitter

	Logger *slog.Logger
	Now    func() time.Time
}

func (c *Config) defaults() {
	if c.ConvergeInterval <= 0 {
		c.ConvergeInterval = 30 * time.Second
	}
	if c.StaleUnclaimedDuration <= 0 {
		c.StaleUnclaimedDuration = 30 * time.Second
	}
	if c.CellTTL <= 0 {
		c.CellTTL = 15 * time.Second
	}
	if c.MaxRestartAttempts <= 0 {
		c.MaxRestartAttempts = 200
	}
	if c.KickTaskDuration <= 0 {
		c.KickTaskDuration = 30 * time.Second
	}
	if c.ExpireCompletedTaskDuration <= 0 {
		c.ExpireCompletedTaskDuration = 2 * time.Minute
	}
	if c.ExpirePendingTaskDuration <= 0 {
		c.ExpirePendingTaskDuration = 30 * time.Minute
	}
	if c.ExpireUnresolvedTaskDuration <= 0 {
		c.ExpireUnresolvedTaskDuration = 30 * time.Minute
	}
	if c.TaskCallbackTimeout <= 0 {
		c.TaskCallbackTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Service is the BBS's logic over its Store: the state machine, the events,
// the requests to the auctioneer and the reps, the cells and convergence.
// Writes are serialised by one lock, as Diego runs one active BBS, so the
// order of events is the order of commits.
type Service struct {
	cfg        Config
	store      Store
	auctioneer Auctioneer
	reps       RepClient
	log        *slog.Logger
	hub        *hub

	mu sync.Mutex // held around every write transaction and its events

	cellsMu sync.Mutex
	cells   map[string]cellEntry

	// Task completion callbacks: the HTTP client, a bound on callbacks in
	// flight, and each failing Task's retries (for the backoff).
	callbacks   *http.Client
	callbackSem chan struct{}
	// spawned counts the requests in flight (stops, callbacks), so tests
	// can wait for them instead of sleeping.
	spawned sync.WaitGroup
	retryMu sync.Mutex
	retries map[string]callbackRetry

	// started is when this BBS began: until a cell TTL has passed, a cell
	// it has not heard from may simply not have heartbeaten yet.
	started time.Time

	kick chan struct{}
	stop chan struct{}
	// stopCtx ends with Stop: callbacks and requests to cells in flight.
	stopCtx    context.Context
	stopCancel context.CancelFunc
	spawnMu    sync.Mutex
	stopped    bool // no more goroutines are spawned
	wg         sync.WaitGroup
	once       sync.Once
}

type cellEntry struct {
	presence CellPresence
	expires  time.Time
}

// NewService builds the BBS logic; Start runs its loops.
func NewService(cfg Config, store Store, auctioneer Auctioneer, reps RepClient) *Service {
	cfg.defaults()
	stopCtx, stopCancel := context.WithCancel(context.Background())
	return &Service{
		cfg: cfg, store: store, auctioneer: auctioneer, reps: reps, log: cfg.Logger,
		hub: newHub(), cells: map[string]cellEntry{},
		callbacks:   newCallbackClient(cfg.TaskCallbackTLS, cfg.TaskCallbackTimeout),
		callbackSem: make(chan struct{}, maxCallbacksInFlight),
		retries:     map[string]callbackRetry{},
		kick:        make(chan struct{}, 1), stop: make(chan struct{}),
		stopCtx: stopCtx, stopCancel: stopCancel,
		started: cfg.Now(),
	}
}

// cellGone reports whether a cell this BBS does not know is lost. Cell
// presences live in memory, so right after a restart every cell is unknown
// until its next heartbeat: only once a cell TTL has passed since the start
// does an unknown cell mean a lost one (otherwise a BBS restart would
// re-place every instance on every cell but the first to heartbeat).
func (s *Service) cellGone(id string) bool {
	if _, ok := s.cell(id); ok {
		return false
	}
	return s.cfg.Now().Sub(s.started) >= s.cfg.CellTTL
}

// Start runs convergence and the cell janitor until Stop.
func (s *Service) Start() {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.loop() }()
}

// Stop ends the loops, abandons callbacks and requests to cells in flight
// and closes every event stream.
func (s *Service) Stop() {
	s.once.Do(func() {
		s.spawnMu.Lock()
		s.stopped = true
		s.spawnMu.Unlock()
		close(s.stop)
		s.stopCancel()
		s.wg.Wait()
		s.hub.close()
		s.callbacks.CloseIdleConnections()
	})
}

// spawn runs f in a goroutine that Stop waits for; after Stop it does not
// run f at all.
func (s *Service) spawn(f func()) {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.stopped {
		return
	}
	s.wg.Add(1)
	s.spawned.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.spawned.Done()
		f()
	}()
}

// outbox collects what a write transaction must do once it has committed.
type outbox struct {
	events []Event
	starts []LRPStartRequest
	stops  []stopRequest
	// Tasks: placements to ask for, cancels to send to cells, and
	// completed Tasks whose callback is due.
	taskStarts  []TaskStartRequest
	taskCancels []taskCancel
	resolves    []string
	traces      []trace.Event // flow 1's steps, emitted after the commit
}

type stopRequest struct {
	key ActualLRPKey
	ik  ActualLRPInstanceKey
}

func (o *outbox) event(typ string, payload any) { o.events = append(o.events, newEvent(typ, payload)) }

// write runs f in a write transaction and then delivers its outbox.
func (s *Service) write(ctx context.Context, f func(tx StoreTx, o *outbox) error) error {
	s.mu.Lock()
	var o outbox
	err := s.store.Write(ctx, func(tx StoreTx) error {
		o = outbox{}
		return f(tx, &o)
	})
	if err == nil {
		// Trace events are stamped before the BBS events go out: a watcher
		// (the route emitter) reacting to an event must not record its own
		// step earlier than the step that caused it.
		s.emitTraces(&o)
		s.hub.publish(o.events...)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.deliver(o)
	return nil
}

// deliver sends auction requests and stop requests. They go out after the
// commit and outside the lock: a slow cell must not hold up the BBS, and a
// lost request is repaired by convergence.
func (s *Service) deliver(o outbox) {
	if len(o.starts) > 0 && s.auctioneer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.auctioneer.RequestLRPStarts(ctx, o.starts); err != nil {
			s.log.Warn("auction-request-failed", "error", err.Error(), "lrps", len(o.starts))
		}
		cancel()
	}
	if len(o.taskStarts) > 0 && s.auctioneer != nil {
		ctx, cancel := context.WithTimeout(s.stopCtx, 10*time.Second)
		if err := s.auctioneer.RequestTaskAuctions(ctx, o.taskStarts); err != nil {
			s.log.Warn("task-auction-request-failed", "error", err.Error(), "tasks", len(o.taskStarts))
		}
		cancel()
	}
	s.deliverTasks(o)
	for _, st := range o.stops {
		cell, ok := s.cell(st.ik.CellID)
		if !ok || s.reps == nil {
			continue
		}
		s.spawn(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := s.reps.StopLRPInstance(ctx, &cell, st.key, st.ik)
			switch {
			case errors.Is(err, ErrInstanceNotOnCell):
				// Nothing runs there to remove it later: remove it now.
				if rerr := s.RemoveActualLRP(ctx, st.key.ProcessGUID, st.key.Index, &st.ik); rerr != nil && !errors.Is(rerr, ErrResourceNotFound) {
					s.log.Warn("stop-request-remove-failed", "process_guid", st.key.ProcessGUID, "index", st.key.Index, "error", rerr.Error())
				}
			case err != nil:
				s.log.Warn("stop-request-failed", "process_guid", st.key.ProcessGUID, "index", st.key.Index,
					"cell_id", st.ik.CellID, "error", err.Error())
			}
		})
	}
}

func (s *Service) now() int64 { return s.cfg.Now().UnixNano() }

func newTag() ModificationTag { return ModificationTag{Epoch: uuid.NewString(), Index: 0} }

func (s *Service) newUnclaimed(d *DesiredLRP, index int32) *ActualLRP {
	return &ActualLRP{
		ActualLRPKey:    ActualLRPKey{ProcessGUID: d.ProcessGUID, Index: index, Domain: d.Domain},
		State:           StateUnclaimed,
		Since:           s.now(),
		ModificationTag: newTag(),
		Presence:        PresenceOrdinary,
	}
}

// changeActual stores after and records the event(s) for the change: a
// changed event when the instance key stays, otherwise removed and created,
// so that a cell-filtered stream sees its instance go and the next one come.
func changeActual(tx StoreTx, o *outbox, before *ActualLRP, after *ActualLRP) error {
	after.ModificationTag = before.ModificationTag.Increment()
	if err := tx.UpdateActualLRP(after); err != nil {
		return err
	}
	if before.ActualLRPInstanceKey == after.ActualLRPInstanceKey {
		o.event(EventActualLRPInstanceChanged, ActualLRPInstanceChangedEvent{
			ActualLRPKey: after.ActualLRPKey, ActualLRPInstanceKey: after.ActualLRPInstanceKey,
			Before: before.Info(), After: after.Info(),
		})
		return nil
	}
	o.event(EventActualLRPInstanceRemoved, ActualLRPInstanceRemovedEvent{ActualLRP: before})
	o.event(EventActualLRPInstanceCreated, ActualLRPInstanceCreatedEvent{ActualLRP: after})
	return nil
}

// unclaim puts an instance back to UNCLAIMED and asks for a new placement.
func (s *Service) unclaim(tx StoreTx, o *outbox, a *ActualLRP, d *DesiredLRP) error {
	after := *a
	after.ActualLRPInstanceKey = ActualLRPInstanceKey{}
	after.ActualLRPNetInfo = ActualLRPNetInfo{}
	after.State = StateUnclaimed
	after.Routable = nil
	after.PlacementError = ""
	after.Since = s.now()
	if err := changeActual(tx, o, a, &after); err != nil {
		return err
	}
	if d != nil {
		o.starts = append(o.starts, NewLRPStartRequest(d, a.Index))
	}
	return nil
}

func copyDesired(d *DesiredLRP) *DesiredLRP {
	c := *d
	return &c
}

// DesireLRP stores d and creates its instances, each UNCLAIMED until placed.
func (s *Service) DesireLRP(ctx context.Context, d *DesiredLRP) error {
	if d == nil {
		return NewError(ErrTypeInvalidRequest, "desired_lrp is missing")
	}
	if err := d.Validate(); err != nil {
		return NewError(ErrTypeInvalidRecord, "%v", err)
	}
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		d := copyDesired(d)
		d.ModificationTag = newTag()
		if err := tx.CreateDesiredLRP(d); err != nil {
			return err
		}
		o.event(EventDesiredLRPCreated, DesiredLRPCreatedEvent{DesiredLRP: d})
		o.traceDesired(s, d)
		var indices []int32
		for i := int32(0); i < d.Instances; i++ {
			a := s.newUnclaimed(d, i)
			if err := tx.CreateActualLRP(a); err != nil {
				return err
			}
			o.event(EventActualLRPInstanceCreated, ActualLRPInstanceCreatedEvent{ActualLRP: a})
			indices = append(indices, i)
		}
		if len(indices) > 0 {
			o.starts = append(o.starts, NewLRPStartRequest(d, indices...))
		}
		s.log.Info("desired-lrp-created", "process_guid", d.ProcessGUID, "instances", d.Instances)
		return nil
	})
}

// UpdateDesiredLRP changes instances, routes, annotation and metric tags.
// Scaling up creates and places instances; scaling down stops the highest.
func (s *Service) UpdateDesiredLRP(ctx context.Context, processGUID string, u *DesiredLRPUpdate) error {
	if u == nil {
		return NewError(ErrTypeInvalidRequest, "update is missing")
	}
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		before, err := tx.DesiredLRP(processGUID)
		if err != nil {
			return err
		}
		after := copyDesired(before)
		if u.Instances != nil {
			after.Instances = *u.Instances
		}
		if u.Routes != nil {
			after.Routes = *u.Routes
		}
		if u.Annotation != nil {
			after.Annotation = *u.Annotation
		}
		if u.MetricTags != nil {
			after.MetricTags = u.MetricTags
		}
		if err := after.Validate(); err != nil {
			return NewError(ErrTypeInvalidRecord, "%v", err)
		}
		after.ModificationTag = before.ModificationTag.Increment()
		if err := tx.UpdateDesiredLRP(after); err != nil {
			return err
		}
		o.event(EventDesiredLRPChanged, DesiredLRPChangedEvent{Before: before, After: after})
		o.traceUpdated(s, before, after)
		if after.Instances != before.Instances {
			actuals, err := tx.ActualLRPs(ActualLRPsRequest{ProcessGUID: processGUID})
			if err != nil {
				return err
			}
			have := map[int32]*ActualLRP{}
			for _, a := range actuals {
				have[a.Index] = a
			}
			var indices []int32
			for i := int32(0); i < after.Instances; i++ {
				if have[i] == nil {
					a := s.newUnclaimed(after, i)
					if err := tx.CreateActualLRP(a); err != nil {
						return err
					}
					o.event(EventActualLRPInstanceCreated, ActualLRPInstanceCreatedEvent{ActualLRP: a})
					indices = append(indices, i)
				}
			}
			if len(indices) > 0 {
				o.starts = append(o.starts, NewLRPStartRequest(after, indices...))
			}
			for _, a := range actuals {
				if a.Index >= after.Instances {
					if err := s.retire(tx, o, a); err != nil {
						return err
					}
				}
			}
		}
		s.log.Info("desired-lrp-updated", "process_guid", processGUID, "instances", after.Instances)
		return nil
	})
}

// retire ends an instance that is no longer wanted: one that runs nowhere
// is deleted at once; one on a cell is stopped by its rep, which removes it.
func (s *Service) retire(tx StoreTx, o *outbox, a *ActualLRP) error {
	switch a.State {
	case StateClaimed, StateRunning:
		if _, ok := s.cell(a.CellID); ok {
			o.stops = append(o.stops, stopRequest{key: a.ActualLRPKey, ik: a.ActualLRPInstanceKey})
			return nil
		}
	}
	if err := tx.DeleteActualLRP(a.ProcessGUID, a.Index); err != nil {
		return err
	}
	o.event(EventActualLRPInstanceRemoved, ActualLRPInstanceRemovedEvent{ActualLRP: a})
	return nil
}

// RemoveDesiredLRP deletes a DesiredLRP and retires its instances.
func (s *Service) RemoveDesiredLRP(ctx context.Context, processGUID string) error {
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		d, err := tx.DesiredLRP(processGUID)
		if err != nil {
			return err
		}
		if err := tx.DeleteDesiredLRP(processGUID); err != nil {
			return err
		}
		o.event(EventDesiredLRPRemoved, DesiredLRPRemovedEvent{DesiredLRP: d})
		actuals, err := tx.ActualLRPs(ActualLRPsRequest{ProcessGUID: processGUID})
		if err != nil {
			return err
		}
		for _, a := range actuals {
			if err := s.retire(tx, o, a); err != nil {
				return err
			}
		}
		s.log.Info("desired-lrp-removed", "process_guid", processGUID)
		return nil
	})
}

// ClaimActualLRP records that a cell's container holds an instance slot.
func (s *Service) ClaimActualLRP(ctx context.Context, processGUID string, index int32, ik ActualLRPInstanceKey) error {
	if ik.InstanceGUID == "" || ik.CellID == "" {
		return NewError(ErrTypeInvalidRequest, "actual_lrp_instance_key needs instance_guid and cell_id")
	}
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		a, err := tx.ActualLRP(processGUID, index)
		if err != nil {
			return err
		}
		if a.State == StateClaimed && a.ActualLRPInstanceKey == ik {
			return nil
		}
		if !a.AllowsTransitionTo(ik, StateClaimed) {
			return NewError(ErrTypeActualLRPCannotBeClaimed, "instance %d of %s is %s on cell %q and cannot be claimed by %s on %s",
				index, processGUID, a.State, a.CellID, ik.InstanceGUID, ik.CellID)
		}
		after := *a
		after.ActualLRPInstanceKey = ik
		after.State = StateClaimed
		after.PlacementError = ""
		after.Since = s.now()
		return changeActual(tx, o, a, &after)
	})
}

// StartActualLRP records that an instance runs and where it can be reached.
func (s *Service) StartActualLRP(ctx context.Context, key ActualLRPKey, ik ActualLRPInstanceKey, net ActualLRPNetInfo, routable *bool) error {
	if ik.InstanceGUID == "" || ik.CellID == "" {
		return NewError(ErrTypeInvalidRequest, "actual_lrp_instance_key needs instance_guid and cell_id")
	}
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		a, err := tx.ActualLRP(key.ProcessGUID, key.Index)
		if err != nil {
			return err
		}
		if !a.AllowsTransitionTo(ik, StateRunning) {
			return NewError(ErrTypeActualLRPCannotBeStarted, "instance %d of %s is %s on cell %q and cannot be started by %s on %s",
				key.Index, key.ProcessGUID, a.State, a.CellID, ik.InstanceGUID, ik.CellID)
		}
		after := *a
		after.ActualLRPInstanceKey = ik
		after.ActualLRPNetInfo = net
		after.State = StateRunning
		after.Routable = routable
		after.PlacementError = ""
		if a.State == StateRunning && a.ActualLRPInstanceKey == ik && equalNetInfo(a.ActualLRPNetInfo, net) && a.IsRoutable() == after.IsRoutable() {
			return nil
		}
		after.Since = s.now()
		s.log.Info("actual-lrp-running", "process_guid", key.ProcessGUID, "index", key.Index, "instance_guid", ik.InstanceGUID, "cell_id", ik.CellID, "address", net.Address)
		if err := changeActual(tx, o, a, &after); err != nil {
			return err
		}
		o.traceRunning(s, &after)
		return nil
	})
}

func equalNetInfo(a, b ActualLRPNetInfo) bool {
	if a.Address != b.Address || a.InstanceAddress != b.InstanceAddress || a.PreferredAddress != b.PreferredAddress || len(a.Ports) != len(b.Ports) {
		return false
	}
	for i := range a.Ports {
		if a.Ports[i] != b.Ports[i] {
			return false
		}
	}
	return true
}

// restartDelay is Diego's restart calculator: the first three crashes
// restart at once, then 30 s doubling up to 16 minutes.
func restartDelay(crashCount int32) time.Duration {
	if crashCount <= 3 {
		return 0
	}
	d := 30 * time.Second
	for i := int32(4); i < crashCount && d < 16*time.Minute; i++ {
		d *= 2
	}
	if d > 16*time.Minute {
		d = 16 * time.Minute
	}
	return d
}

// CrashActualLRP records that an instance's process died. The first three
// crashes restart at once; later ones wait in CRASHED for convergence.
func (s *Service) CrashActualLRP(ctx context.Context, key ActualLRPKey, ik ActualLRPInstanceKey, reason string) error {
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		a, err := tx.ActualLRP(key.ProcessGUID, key.Index)
		if err != nil {
			return err
		}
		if !a.AllowsTransitionTo(ik, StateCrashed) {
			return NewError(ErrTypeActualLRPCannotBeCrashed, "instance %d of %s is %s on cell %q, not held by %s on %s",
				key.Index, key.ProcessGUID, a.State, a.CellID, ik.InstanceGUID, ik.CellID)
		}
		crashes := a.CrashCount + 1
		o.event(EventActualLRPCrashed, ActualLRPCrashedEvent{ActualLRPKey: a.ActualLRPKey, ActualLRPInstanceKey: a.ActualLRPInstanceKey,
			CrashCount: crashes, CrashReason: reason, Since: s.now()})
		s.log.Info("actual-lrp-crashed", "process_guid", key.ProcessGUID, "index", key.Index, "instance_guid", ik.InstanceGUID,
			"crash_count", crashes, "reason", reason)
		d, derr := tx.DesiredLRP(key.ProcessGUID)
		if derr != nil && !errors.Is(derr, ErrResourceNotFound) {
			return derr
		}
		if d == nil || key.Index >= d.Instances {
			if err := tx.DeleteActualLRP(a.ProcessGUID, a.Index); err != nil {
				return err
			}
			o.event(EventActualLRPInstanceRemoved, ActualLRPInstanceRemovedEvent{ActualLRP: a})
			return nil
		}
		if restartDelay(crashes) == 0 {
			withCount := *a
			withCount.CrashCount, withCount.CrashReason = crashes, reason
			return s.unclaimCrashed(tx, o, a, &withCount, d)
		}
		after := *a
		after.State = StateCrashed
		after.CrashCount = crashes
		after.CrashReason = reason
		after.ActualLRPInstanceKey = ActualLRPInstanceKey{}
		after.ActualLRPNetInfo = ActualLRPNetInfo{}
		after.Routable = nil
		after.Since = s.now()
		return changeActual(tx, o, a, &after)
	})
}

// unclaimCrashed restarts a crashed instance, keeping its crash count.
func (s *Service) unclaimCrashed(tx StoreTx, o *outbox, before, withCount *ActualLRP, d *DesiredLRP) error {
	after := *withCount
	after.ActualLRPInstanceKey = ActualLRPInstanceKey{}
	after.ActualLRPNetInfo = ActualLRPNetInfo{}
	after.State = StateUnclaimed
	after.Routable = nil
	after.Since = s.now()
	if err := changeActual(tx, o, before, &after); err != nil {
		return err
	}
	o.starts = append(o.starts, NewLRPStartRequest(d, before.Index))
	return nil
}

// RemoveActualLRP deletes an instance a cell has stopped. If the slot is
// still wanted, a new UNCLAIMED instance takes its place at once.
func (s *Service) RemoveActualLRP(ctx context.Context, processGUID string, index int32, ik *ActualLRPInstanceKey) error {
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		a, err := tx.ActualLRP(processGUID, index)
		if err != nil {
			return err
		}
		if ik != nil && a.ActualLRPInstanceKey != *ik {
			return NewError(ErrTypeResourceConflict, "instance %d of %s is held by %s on %q, not by %s on %q",
				index, processGUID, a.InstanceGUID, a.CellID, ik.InstanceGUID, ik.CellID)
		}
		if err := tx.DeleteActualLRP(processGUID, index); err != nil {
			return err
		}
		o.event(EventActualLRPInstanceRemoved, ActualLRPInstanceRemovedEvent{ActualLRP: a})
		d, derr := tx.DesiredLRP(processGUID)
		if derr == nil && index < d.Instances {
			n := s.newUnclaimed(d, index)
			if err := tx.CreateActualLRP(n); err != nil {
				return err
			}
			o.event(EventActualLRPInstanceCreated, ActualLRPInstanceCreatedEvent{ActualLRP: n})
			o.starts = append(o.starts, NewLRPStartRequest(d, index))
		} else if derr != nil && !errors.Is(derr, ErrResourceNotFound) {
			return derr
		}
		return nil
	})
}

// FailActualLRP records why an UNCLAIMED instance could not be placed.
func (s *Service) FailActualLRP(ctx context.Context, key ActualLRPKey, reason string) error {
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		a, err := tx.ActualLRP(key.ProcessGUID, key.Index)
		if err != nil {
			return err
		}
		if a.State != StateUnclaimed {
			return NewError(ErrTypeActualLRPCannotBeClaimed, "instance %d of %s is %s; only an UNCLAIMED instance can fail placement", key.Index, key.ProcessGUID, a.State)
		}
		after := *a
		after.PlacementError = reason
		s.log.Warn("actual-lrp-placement-failed", "process_guid", key.ProcessGUID, "index", key.Index, "reason", reason)
		return changeActual(tx, o, a, &after)
	})
}

// DesiredLRP returns one DesiredLRP.
func (s *Service) DesiredLRP(ctx context.Context, processGUID string) (*DesiredLRP, error) {
	var d *DesiredLRP
	err := s.store.Read(ctx, func(tx StoreTx) error {
		var err error
		d, err = tx.DesiredLRP(processGUID)
		return err
	})
	return d, err
}

// DesiredLRPs lists DesiredLRPs.
func (s *Service) DesiredLRPs(ctx context.Context, f DesiredLRPsRequest) ([]*DesiredLRP, error) {
	var out []*DesiredLRP
	err := s.store.Read(ctx, func(tx StoreTx) error {
		var err error
		out, err = tx.DesiredLRPs(f)
		return err
	})
	return out, err
}

// RoutingInfos lists DesiredLRPs with only what the route emitter reads.
func (s *Service) RoutingInfos(ctx context.Context, f DesiredLRPsRequest) ([]*DesiredLRP, error) {
	all, err := s.DesiredLRPs(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]*DesiredLRP, len(all))
	for i, d := range all {
		out[i] = &DesiredLRP{ProcessGUID: d.ProcessGUID, Domain: d.Domain, LogGUID: d.LogGUID, Instances: d.Instances,
			Routes: d.Routes, ModificationTag: d.ModificationTag, MetricTags: d.MetricTags}
	}
	return out, nil
}

// ActualLRPs lists ActualLRPs.
func (s *Service) ActualLRPs(ctx context.Context, f ActualLRPsRequest) ([]*ActualLRP, error) {
	var out []*ActualLRP
	err := s.store.Read(ctx, func(tx StoreTx) error {
		var err error
		out, err = tx.ActualLRPs(f)
		return err
	})
	return out, err
}

// UpsertDomain marks a domain fresh for ttl.
func (s *Service) UpsertDomain(ctx context.Context, domain string, ttl time.Duration) error {
	if domain == "" {
		return NewError(ErrTypeInvalidRequest, "domain is empty")
	}
	return s.write(ctx, func(tx StoreTx, _ *outbox) error {
		return tx.UpsertDomain(domain, s.cfg.Now().Add(ttl))
	})
}

// Domains lists the fresh domains.
func (s *Service) Domains(ctx context.Context) ([]string, error) {
	var out []string
	err := s.store.Read(ctx, func(tx StoreTx) error {
		var err error
		out, err = tx.FreshDomains(s.cfg.Now())
		return err
	})
	return out, err
}

// CellHeartbeat records a cell's presence for CellTTL.
func (s *Service) CellHeartbeat(p *CellPresence) error {
	if p == nil {
		return NewError(ErrTypeInvalidRequest, "cell is missing")
	}
	if err := p.Validate(); err != nil {
		return NewError(ErrTypeInvalidRecord, "%v", err)
	}
	s.cellsMu.Lock()
	_, known := s.cells[p.CellID]
	s.cells[p.CellID] = cellEntry{presence: *p, expires: s.cfg.Now().Add(s.cfg.CellTTL)}
	s.cellsMu.Unlock()
	if !known {
		s.log.Info("cell-appeared", "cell_id", p.CellID, "rep_url", p.RepURL)
		s.Converge() // instances waiting for a cell may now fit
	}
	return nil
}

// Cells lists the cells whose presence is current, by id.
func (s *Service) Cells() []*CellPresence {
	now := s.cfg.Now()
	s.cellsMu.Lock()
	defer s.cellsMu.Unlock()
	out := make([]*CellPresence, 0, len(s.cells))
	for _, c := range s.cells {
		if c.expires.After(now) {
			p := c.presence
			out = append(out, &p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CellID < out[j].CellID })
	return out
}

func (s *Service) cell(id string) (CellPresence, bool) {
	s.cellsMu.Lock()
	defer s.cellsMu.Unlock()
	c, ok := s.cells[id]
	if !ok || !c.expires.After(s.cfg.Now()) {
		return CellPresence{}, false
	}
	return c.presence, true
}

// expireCells forgets cells whose heartbeat stopped and reports whether any went.
func (s *Service) expireCells() bool {
	now := s.cfg.Now()
	s.cellsMu.Lock()
	var gone []string
	for id, c := range s.cells {
		if !c.expires.After(now) {
			gone = append(gone, id)
			delete(s.cells, id)
		}
	}
	s.cellsMu.Unlock()
	for _, id := range gone {
		s.log.Warn("cell-disappeared", "cell_id", id)
	}
	return len(gone) > 0
}

// Converge asks for a convergence run soon (coalesced with any pending one).
func (s *Service) Converge() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Service) loop() {
	converge := time.NewTicker(s.cfg.ConvergeInterval)
	defer converge.Stop()
	janitor := time.NewTicker(s.cfg.CellTTL / 3)
	defer janitor.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-converge.C:
		case <-s.kick:
		case <-janitor.C:
			if !s.expireCells() {
				continue
			}
		}
		if err := s.ConvergeNow(context.Background()); err != nil {
			s.log.Error("convergence-failed", "error", err.Error())
		}
	}
}

// ConvergeNow makes the actual state match the desired state once: missing
// instances are created and placed, stale UNCLAIMED ones placed again,
// crashed ones restarted when their backoff is over, instances on cells that
// are gone replaced, and instances nobody wants any more retired. Then the
// Tasks converge (ConvergeTasks), as Diego runs both together.
func (s *Service) ConvergeNow(ctx context.Context) error {
	return errors.Join(s.convergeLRPs(ctx), s.ConvergeTasks(ctx))
}

func (s *Service) convergeLRPs(ctx context.Context) error {
	start := s.cfg.Now()
	var created, restarted, replaced, retired, reauctioned int
	err := s.write(ctx, func(tx StoreTx, o *outbox) error {
		created, restarted, replaced, retired, reauctioned = 0, 0, 0, 0, 0
		desired, err := tx.DesiredLRPs(DesiredLRPsRequest{})
		if err != nil {
			return err
		}
		actuals, err := tx.ActualLRPs(ActualLRPsRequest{})
		if err != nil {
			return err
		}
		byKey := map[ActualLRPKey]*ActualLRP{}
		for _, a := range actuals {
			byKey[ActualLRPKey{ProcessGUID: a.ProcessGUID, Index: a.Index}] = a
		}
		wanted := map[string]*DesiredLRP{}
		now := s.cfg.Now()
		for _, d := range desired {
			wanted[d.ProcessGUID] = d
			var starts []int32
			for i := int32(0); i < d.Instances; i++ {
				a := byKey[ActualLRPKey{ProcessGUID: d.ProcessGUID, Index: i}]
				switch {
				case a == nil:
					n := s.newUnclaimed(d, i)
					if err := tx.CreateActualLRP(n); err != nil {
						return err
					}
					o.event(EventActualLRPInstanceCreated, ActualLRPInstanceCreatedEvent{ActualLRP: n})
					starts = append(starts, i)
					created++
				case a.State == StateUnclaimed && now.Sub(time.Unix(0, a.Since)) >= s.cfg.StaleUnclaimedDuration:
					starts = append(starts, i)
					reauctioned++
				case a.State == StateClaimed || a.State == StateRunning:
					if s.cellGone(a.CellID) {
						if err := s.unclaim(tx, o, a, nil); err != nil {
							return err
						}
						starts = append(starts, i)
						replaced++
					}
				case a.State == StateCrashed:
					if a.CrashCount < s.cfg.MaxRestartAttempts && now.Sub(time.Unix(0, a.Since)) >= restartDelay(a.CrashCount) {
						if err := s.unclaimCrashed(tx, o, a, a, d); err != nil {
							return err
						}
						restarted++
					}
				}
			}
			if len(starts) > 0 {
				o.starts = append(o.starts, NewLRPStartRequest(d, starts...))
			}
		}
		for _, a := range actuals {
			d := wanted[a.ProcessGUID]
			if d != nil && a.Index < d.Instances {
				continue
			}
			if err := s.retire(tx, o, a); err != nil {
				return err
			}
			retired++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if created+restarted+replaced+retired+reauctioned > 0 {
		s.log.Info("convergence-changed-lrps", "created", created, "restarted", restarted, "replaced_lost_cell", replaced,
			"retired", retired, "reauctioned_stale", reauctioned, "duration_ms", s.cfg.Now().Sub(start).Milliseconds())
	}
	return nil
}

// String helps logs and tests name an instance.
func (k ActualLRPKey) String() string { return fmt.Sprintf("%s/%d", k.ProcessGUID, k.Index) }
