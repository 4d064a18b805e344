// Package rep is minicf's rep and executor: the cell agent.
//
// As Diego's rep, it announces the cell to the BBS (a heartbeat standing in
// for Locket presence), serves the auctioneer its state (GET /state) and
// takes work (POST /work), and stops instances when the BBS asks (POST
// /v1/lrps/{process_guid}/instances/{instance_guid}/stop). As Diego's
// executor, it runs each instance it accepted:
//
//  1. a fresh instance guid (a UUIDv4 cut to 28 characters), which is also
//     the container handle and the identity certificate's CN;
//  2. ClaimActualLRP, then the DesiredLRP from the BBS;
//  3. a Garden container with a NetIn per app port and per TLS proxy port
//     (61001 upward, Diego's ProxyPorts);
//  4. the instance identity certificate in <dir>/etc/cf-instance-credentials,
//     renewed at identity.RenewAt;
//  5. the envoy sidecar (`minicf envoy`) and the app, with Diego's
//     environment (PORT, CF_INSTANCE_*, VCAP_APPLICATION, ...);
//  6. the start checks (the DesiredLRP's check definition, and a TCP check of
//     every proxy port), then StartActualLRP with the net info;
//  7. the monitor: an exit is CrashActualLRP and the container is destroyed;
//     a stop invalidates the sidecar's credentials, waits ProxyReloadWait,
//     SIGTERMs everything (SIGKILL after GracePeriod), destroys the
//     container and removes the ActualLRP.
//
// Every 30 seconds (and at start) it reconciles its containers with the
// BBS: a container with no ActualLRP is destroyed, an ActualLRP with no
// container is crashed, and the containers of an earlier run that the BBS
// still knows are adopted. Stop leaves instances running, as Diego's rep
// does, so that a restarted rep adopts them; StopAll stops them.
//
// It runs Tasks too (task.go): the auctioneer's work carries them beside the
// LRPs, the cell starts each at the BBS, runs it in a container of its own
// (no ports, no sidecar), reads its result file, uploads what it must and
// completes it; the BBS cancels them (POST /v1/tasks/{task_guid}/cancel).
// Actions under /tmp/lifecycle/ (the builder that stages, the launcher that
// runs a droplet) are minicf's own verbs (lifecycle.go).
package rep

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/trace"
)

// BBSClient is what the rep needs from the BBS.
type BBSClient interface {
	DesiredLRPByProcessGUID(ctx context.Context, processGUID string) (*bbs.DesiredLRP, error)
	ActualLRPs(ctx context.Context, f bbs.ActualLRPsRequest) ([]*bbs.ActualLRP, error)
	ClaimActualLRP(ctx context.Context, key bbs.ActualLRPKey, ik bbs.ActualLRPInstanceKey) error
	TaskByGUID(ctx context.Context, taskGUID string) (*bbs.Task, error)
	Tasks(ctx context.Context, f bbs.TasksRequest) ([]*bbs.Task, error)
	StartTask(ctx context.Context, taskGUID, cellID string) (bool, error)
	CompleteTask(ctx context.Context, taskGUID, cellID string, failed bool, reason, result string) error
	StartActualLRP(ctx context.Context, key bbs.ActualLRPKey, ik bbs.ActualLRPInstanceKey, net bbs.ActualLRPNetInfo, routable bool) error
	CrashActualLRP(ctx context.Context, key bbs.ActualLRPKey, ik bbs.ActualLRPInstanceKey, reason string) error
	RemoveActualLRP(ctx context.Context, key bbs.ActualLRPKey, ik *bbs.ActualLRPInstanceKey) error
	CellHeartbeat(ctx context.Context, p *bbs.CellPresence) error
}

var _ BBSClient = (*bbs.Client)(nil)

// Containerizer is what the rep needs from Garden.
type Containerizer interface {
	Create(ctx context.Context, spec garden.ContainerSpec) (garden.ContainerInfo, error)
	Run(ctx context.Context, handle string, ps garden.ProcessSpec) (garden.Process, error)
	Info(handle string) (garden.ContainerInfo, error)
	Containers() ([]garden.ContainerInfo, error)
	Adopt(handle string) ([]garden.Process, error)
	Destroy(ctx context.Context, handle string, grace time.Duration) error
	ExternalIP() string
}

var _ Containerizer = (*garden.Garden)(nil)

// namespaced says whether the containerizer gives each container a network
// of its own (garden's namespace mode), told by an optional Mode method.
func (r *Rep) namespaced() bool {
	m, ok := r.garden.(interface{ Mode() string })
	return ok && m.Mode() == garden.ModeNamespace
}

// Defaults, Diego's where Diego has one.
const (
	DefaultListen              = "127.0.0.1:1801"
	DefaultHeartbeatInterval   = 5 * time.Second
	DefaultPollInterval        = 30 * time.Second // diego.rep.polling_interval_in_seconds
	DefaultGracePeriod         = 10 * time.Second // containers.graceful_shutdown_interval_in_seconds
	DefaultProxyReloadWait     = 5 * time.Second  // containers.proxy.configuration_reload_duration
	DefaultStartTimeout        = 60 * time.Second
	DefaultHealthCheckInterval = 100 * time.Millisecond
	DefaultProxyMemoryMB       = 32
	// InstanceGUIDLength is Diego's: a UUIDv4 string cut to 28 characters.
	InstanceGUIDLength = 28
	// CredentialsDir is where the instance identity goes, inside the
	// container directory (Diego: /etc/cf-instance-credentials).
	CredentialsDir = "etc/cf-instance-credentials"
)

// Config configures a Rep.
type Config struct {
	CellID string
	Zone   string
	// Listen is the rep API's address (default 127.0.0.1:1801; port 0
	// picks one). An unspecified host is advertised as the cell's address.
	Listen   string
	Capacity bbs.CellCapacity
	// HeartbeatInterval is how often the cell presence is renewed (5s).
	HeartbeatInterval time.Duration
	// PollInterval is how often the rep reconciles its containers with the
	// BBS (30s, Diego's bulk sync).
	PollInterval time.Duration
	// GracePeriod is how long processes get between SIGTERM and SIGKILL
	// (10s, Diego's graceful_shutdown_interval).
	GracePeriod time.Duration
	// ProxyReloadWait is how long a stop waits, after invalidating the
	// sidecar's credentials, before signalling the processes, so that
	// routers move away first (5s; negative: no wait).
	ProxyReloadWait time.Duration
	// SidecarCommand runs the envoy sidecar; the rep adds --listen, --cert,
	// --key, --admin and --client-ca (default: [this executable, "envoy"]).
	SidecarCommand []string
	// LifecycleBinary is the minicf binary whose builder and launcher verbs
	// run the actions /tmp/lifecycle/builder and /tmp/lifecycle/launcher
	// (default: SidecarCommand[0], else this executable).
	LifecycleBinary string
	// ClientTLS is the client TLS config of Task uploads (mutual TLS to the
	// Cloud Controller's internal API); nil: the system's roots, no client
	// certificate.
	ClientTLS *tls.Config
	// RouteIntegrity runs the sidecar and maps its TLS ports (nil: true,
	// as cf-deployment's containers.proxy.enabled).
	RouteIntegrity *bool
	// ProxyClientCAFile, when set, makes the sidecar require client
	// certificates signed by it (containers.proxy.require_and_verify_client_certificates).
	ProxyClientCAFile string
	// ProxyMemoryMB is added to each instance's memory when route integrity
	// is on, for the envoy beside it (32, Diego's
	// containers.proxy.additional_memory_allocation_mb; negative: 0). The
	// auctioneer adds the same when it matches.
	ProxyMemoryMB int32
	// InstanceCertValidity is the instance identity's lifetime (24h).
	InstanceCertValidity time.Duration
	// DefaultStartTimeout applies when the DesiredLRP has no start_timeout_ms (60s).
	DefaultStartTimeout time.Duration
	// HealthCheckInterval is how often the start checks run (100ms).
	HealthCheckInterval time.Duration
	// AppLogs, when set, receives the app's output line by line and the
	// cell's messages about the instance (source CELL), as Loggregator
	// would. It must not block for long.
	AppLogs func(mbus.AppLog)
	// Trace records flow 1's envoy-listening steps; nil records nothing.
	Trace  trace.Emitter
	Logger *slog.Logger
}

func (c *Config) routeIntegrity() bool { return c.RouteIntegrity == nil || *c.RouteIntegrity }

func (c *Config) setDefaults() error {
	if c.CellID == "" {
		return errors.New("rep: CellID is empty")
	}
	if c.Capacity.MemoryMB <= 0 || c.Capacity.Containers <= 0 {
		return fmt.Errorf("rep: cell %s: Capacity must offer memory and containers", c.CellID)
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.GracePeriod <= 0 {
		c.GracePeriod = DefaultGracePeriod
	}
	if c.ProxyReloadWait == 0 {
		c.ProxyReloadWait = DefaultProxyReloadWait
	} else if c.ProxyReloadWait < 0 {
		c.ProxyReloadWait = 0
	}
	if len(c.SidecarCommand) == 0 && c.routeIntegrity() {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("rep: cell %s: no SidecarCommand and this executable cannot be found: %w", c.CellID, err)
		}
		c.SidecarCommand = []string{exe, "envoy"}
	}
	if c.LifecycleBinary == "" {
		if len(c.SidecarCommand) > 0 {
			c.LifecycleBinary = c.SidecarCommand[0]
		} else {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("rep: cell %s: no LifecycleBinary and this executable cannot be found: %w", c.CellID, err)
			}
			c.LifecycleBinary = exe
		}
	}
	switch {
	case !c.routeIntegrity() || c.ProxyMemoryMB < 0:
		c.ProxyMemoryMB = 0
	case c.ProxyMemoryMB == 0:
		c.ProxyMemoryMB = DefaultProxyMemoryMB
	}
	if c.InstanceCertValidity <= 0 {
		c.InstanceCertValidity = identity.DefaultInstanceValidity
	}
	if c.DefaultStartTimeout <= 0 {
		c.DefaultStartTimeout = DefaultStartTimeout
	}
	if c.HealthCheckInterval <= 0 {
		c.HealthCheckInterval = DefaultHealthCheckInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Rep is a cell's agent.
type Rep struct {
	cfg    Config
	bbs    BBSClient
	garden Containerizer
	ca     *identity.CA
	tls    *tls.Config
	log    *slog.Logger

	uploads *http.Client // Task uploads

	mu           sync.Mutex
	instances    map[string]*instance // by instance guid
	finished     map[string]time.Time // instance guids that ended recently, for reconcile
	tasks        map[string]*taskRun  // by task guid
	taskFinished map[string]time.Time // task guids that ended recently, for reconcile
	closing      bool                 // Stop or StopAll began: no new work
	fastStop     atomic.Bool          // Shutdown: no sidecar reload wait
	started      bool

	ln     net.Listener
	srv    *http.Server
	addr   string
	ctx    context.Context // ends with Stop: loops and instance goroutines
	cancel context.CancelFunc
	loops  sync.WaitGroup
	insts  sync.WaitGroup
	served chan struct{}
}

// New makes a rep. serverTLS (mutual TLS, identity.CA.ServerTLS) secures
// its API; nil serves plain HTTP, for tests and a single trusted host.
func New(cfg Config, bbsClient BBSClient, containers Containerizer, ca *identity.CA, serverTLS *tls.Config) (*Rep, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if bbsClient == nil || containers == nil {
		return nil, fmt.Errorf("rep: cell %s: a BBS client and a containerizer are required", cfg.CellID)
	}
	if ca == nil && cfg.routeIntegrity() {
		return nil, fmt.Errorf("rep: cell %s: route integrity needs the instance identity CA", cfg.CellID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Rep{
		cfg: cfg, bbs: bbsClient, garden: containers, ca: ca, tls: serverTLS, log: cfg.Logger.With("cell_id", cfg.CellID),
		instances: map[string]*instance{}, finished: map[string]time.Time{},
		tasks: map[string]*taskRun{}, taskFinished: map[string]time.Time{}, uploads: newUploadClient(cfg),
		ctx: ctx, cancel: cancel, served: make(chan struct{}),
	}, nil
}

// Start listens, reconciles with the BBS (adopting the containers of an
// earlier run), announces the cell and starts the heartbeat and reconcile
// loops. It returns once the cell is announced.
func (r *Rep) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return fmt.Errorf("rep: cell %s is already started", r.cfg.CellID)
	}
	r.started = true
	r.mu.Unlock()
	ln, err := net.Listen("tcp", r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("rep: cell %s cannot listen on %s: %w", r.cfg.CellID, r.cfg.Listen, err)
	}
	r.ln = ln
	// An unspecified listen host is advertised as the cell's address; in
	// namespace mode the rep runs in the root namespace, where the cell's
	// address is not its own, so as loopback.
	host := r.garden.ExternalIP()
	if r.namespaced() {
		host = garden.LoopbackIP
	}
	r.addr = advertised(ln.Addr().String(), host)
	// Reconcile before the cell is announced: the capacity it announces
	// then counts the adopted instances.
	if err := r.reconcile(ctx); err != nil {
		ln.Close()
		return fmt.Errorf("rep: cell %s: first reconcile with the BBS: %w", r.cfg.CellID, err)
	}
	r.srv = &http.Server{
		Handler:           r.handler(),
		TLSConfig:         r.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(r.served)
		var err error
		if r.tls != nil {
			err = r.srv.ServeTLS(ln, "", "")
		} else {
			err = r.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("rep-serve-failed", "error", err.Error())
		}
	}()
	if err := r.heartbeat(ctx); err != nil {
		r.srv.Close()
		<-r.served
		r.stopInstances()
		return fmt.Errorf("rep: cell %s: first heartbeat: %w", r.cfg.CellID, err)
	}
	r.loops.Add(2)
	go r.heartbeatLoop()
	go r.reconcileLoop()
	r.log.Info("rep-started", "address", r.addr, "url", r.URL(), "zone", r.cfg.Zone,
		"memory_mb", r.cfg.Capacity.MemoryMB, "disk_mb", r.cfg.Capacity.DiskMB, "containers", r.cfg.Capacity.Containers,
		"route_integrity", r.cfg.routeIntegrity())
	return nil
}

// advertised replaces an unspecified listen host with the cell's address.
func advertised(addr, cellIP string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return net.JoinHostPort(cellIP, port)
	}
	return addr
}

// Addr is the rep API's address, host:port.
func (r *Rep) Addr() string { return r.addr }

// URL is the rep API's URL.
func (r *Rep) URL() string {
	if r.tls == nil {
		return "http://" + r.addr
	}
	return "https://" + r.addr
}

func (r *Rep) presence() *bbs.CellPresence {
	return &bbs.CellPresence{CellID: r.cfg.CellID, RepAddress: r.addr, RepURL: r.URL(), Zone: r.cfg.Zone,
		Capacity: r.cfg.Capacity, Address: r.garden.ExternalIP()}
}

func (r *Rep) heartbeat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.HeartbeatInterval, 5*time.Second))
	defer cancel()
	return r.bbs.CellHeartbeat(ctx, r.presence())
}

func (r *Rep) heartbeatLoop() {
	defer r.loops.Done()
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			if err := r.heartbeat(r.ctx); err != nil {
				if r.ctx.Err() != nil {
					return
				}
				if !failing {
					r.log.Warn("heartbeat-failed", "error", err.Error())
				}
				failing = true
			} else if failing {
				r.log.Info("heartbeat-restored")
				failing = false
			}
		}
	}
}

func (r *Rep) reconcileLoop() {
	defer r.loops.Done()
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			if err := r.reconcile(r.ctx); err != nil && r.ctx.Err() == nil {
				r.log.Warn("reconcile-failed", "error", err.Error())
			}
		}
	}
}

// Stop ends the loops and the API and lets go of the instances, which keep
// running (Diego's rep does the same: a restarted rep adopts them). An
// instance being stopped finishes stopping, unless ctx ends first.
func (r *Rep) Stop(ctx context.Context) error {
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	r.cancel()
	var err error
	if r.srv != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if e := r.srv.Shutdown(sctx); e != nil {
			r.srv.Close()
		}
		cancel()
		<-r.served
	}
	done := make(chan struct{})
	go func() {
		r.loops.Wait()
		r.insts.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("rep: cell %s: instances still stopping: %w", r.cfg.CellID, ctx.Err())
	}
	r.log.Info("rep-stopped")
	return err
}

// StopAll stops every instance (as a BBS stop would: SIGTERM, SIGKILL after
// GracePeriod, RemoveActualLRP), destroys any other container, then stops
// the rep. For tests and `minicf down`.
func (r *Rep) StopAll(ctx context.Context) error { return r.stopAll(ctx, true) }

// Shutdown stops every instance and task on the cell without telling the
// BBS, and without the sidecar's reload wait: the whole foundation is
// going down (Ctrl-C on `minicf up`), so nothing should be re-placed, and
// the next rep of this cell reconciles the ActualLRPs with what it finds.
func (r *Rep) Shutdown(ctx context.Context) error {
	r.fastStop.Store(true)
	return r.stopAll(ctx, false)
}

func (r *Rep) stopAll(ctx context.Context, remove bool) error {
	r.mu.Lock()
	r.closing = true
	insts := make([]*instance, 0, len(r.instances))
	for _, in := range r.instances {
		insts = append(insts, in)
	}
	tasks := make([]*taskRun, 0, len(r.tasks))
	for _, t := range r.tasks {
		tasks = append(tasks, t)
	}
	r.mu.Unlock()
	for _, in := range insts {
		in.requestStop(remove)
	}
	for _, t := range tasks {
		t.requestStop(ReasonTaskCellStopped)
	}
	for _, in := range insts {
		select {
		case <-in.done:
		case <-ctx.Done():
		}
	}
	for _, t := range tasks {
		select {
		case <-t.done:
		case <-ctx.Done():
		}
	}
	var errs []error
	if infos, err := r.garden.Containers(); err != nil {
		errs = append(errs, err)
	} else {
		for _, info := range infos {
			if err := r.garden.Destroy(ctx, info.Handle, r.cfg.GracePeriod); err != nil {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, r.Stop(ctx))
	return errors.Join(errs...)
}

// stopInstances lets go of the instance goroutines (after a failed Start).
func (r *Rep) stopInstances() {
	r.cancel()
	r.insts.Wait()
}

func newInstanceGUID() string { return uuid.NewString()[:InstanceGUIDLength] }

// used is the capacity the instances and Tasks take.
func (r *Rep) usedLocked() bbs.CellCapacity {
	var u bbs.CellCapacity
	for _, in := range r.instances {
		u.MemoryMB += in.resource.MemoryMB
		u.DiskMB += in.resource.DiskMB
		u.Containers++
	}
	for _, t := range r.tasks {
		u.MemoryMB += t.resource.MemoryMB
		u.DiskMB += t.resource.DiskMB
		u.Containers++
	}
	return u
}

// State is what GET /state serves.
func (r *Rep) State() CellState {
	r.mu.Lock()
	defer r.mu.Unlock()
	used := r.usedLocked()
	st := CellState{
		CellID:         r.cfg.CellID,
		Zone:           r.cfg.Zone,
		TotalResources: r.cfg.Capacity,
		AvailableResources: bbs.CellCapacity{
			MemoryMB:   max(r.cfg.Capacity.MemoryMB-used.MemoryMB, 0),
			DiskMB:     max(r.cfg.Capacity.DiskMB-used.DiskMB, 0),
			Containers: max(r.cfg.Capacity.Containers-used.Containers, 0),
		},
		LRPs:       []InstanceSummary{},
		Tasks:      []TaskSummary{},
		Evacuating: false,
	}
	for _, t := range r.tasks {
		state := t.getState()
		st.Tasks = append(st.Tasks, TaskSummary{TaskGUID: t.guid, Domain: t.domain, State: state, Resource: t.resource})
		if state == TaskStateReserved {
			st.StartingContainers++
		}
	}
	sort.Slice(st.Tasks, func(i, j int) bool { return st.Tasks[i].TaskGUID < st.Tasks[j].TaskGUID })
	for _, in := range r.instances {
		state := in.getState()
		st.LRPs = append(st.LRPs, InstanceSummary{ProcessGUID: in.key.ProcessGUID, Index: in.key.Index,
			InstanceGUID: in.ik.InstanceGUID, State: state, Resource: in.resource})
		if state == StateReserved || state == StateStarting {
			st.StartingContainers++
		}
	}
	sortSummaries(st.LRPs)
	return st
}

// Perform accepts the LRPs and Tasks that fit and returns the others.
func (r *Rep) Perform(w Work) WorkResponse {
	resp := WorkResponse{Failed: []LRP{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		resp.Failed = append(resp.Failed, w.LRPs...)
		resp.FailedTasks = append(resp.FailedTasks, w.Tasks...)
		return resp
	}
	used := r.usedLocked()
	for _, l := range w.LRPs {
		need := l.Resource
		need.MemoryMB += r.cfg.ProxyMemoryMB
		fits := l.ProcessGUID != "" && l.Resource.MemoryMB >= 0 && l.Resource.DiskMB >= 0 &&
			used.MemoryMB+need.MemoryMB <= r.cfg.Capacity.MemoryMB &&
			(r.cfg.Capacity.DiskMB == 0 || used.DiskMB+need.DiskMB <= r.cfg.Capacity.DiskMB) &&
			used.Containers+1 <= r.cfg.Capacity.Containers
		if !fits {
			resp.Failed = append(resp.Failed, l)
			continue
		}
		used.MemoryMB += need.MemoryMB
		used.DiskMB += need.DiskMB
		used.Containers++
		in := newInstance(bbs.ActualLRPKey{ProcessGUID: l.ProcessGUID, Index: l.Index, Domain: l.Domain},
			bbs.ActualLRPInstanceKey{InstanceGUID: newInstanceGUID(), CellID: r.cfg.CellID}, need)
		r.instances[in.ik.InstanceGUID] = in
		r.insts.Add(1)
		go r.runNew(in)
	}
	for _, t := range w.Tasks {
		if !r.acceptTaskLocked(t, &used) {
			resp.FailedTasks = append(resp.FailedTasks, t)
		}
	}
	if len(w.LRPs) > 0 {
		r.log.Info("work-performed", "accepted", len(w.LRPs)-len(resp.Failed), "failed", len(resp.Failed))
	}
	if len(w.Tasks) > 0 {
		r.log.Info("task-work-performed", "accepted", len(w.Tasks)-len(resp.FailedTasks), "failed", len(resp.FailedTasks))
	}
	return resp
}

// StopLRPInstance asks an instance to stop; false if the cell has no such
// instance.
func (r *Rep) StopLRPInstance(processGUID, instanceGUID string) bool {
	r.mu.Lock()
	in := r.instances[instanceGUID]
	r.mu.Unlock()
	if in == nil || in.key.ProcessGUID != processGUID {
		return false
	}
	in.requestStop(true)
	return true
}

// finish forgets an instance whose goroutine ends.
func (r *Rep) finish(in *instance) {
	r.mu.Lock()
	delete(r.instances, in.ik.InstanceGUID)
	now := time.Now()
	r.finished[in.ik.InstanceGUID] = now
	for g, t := range r.finished {
		if now.Sub(t) > 2*r.cfg.PollInterval+time.Minute {
			delete(r.finished, g)
		}
	}
	r.mu.Unlock()
	close(in.done)
}

// lineWriter splits output into lines for AppLogs.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(line string)
}

const maxLogLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) >= maxLogLine {
				w.emit(string(w.buf))
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.emit(string(bytes.TrimSuffix(w.buf[:i], []byte("\r"))))
		w.buf = w.buf[i+1:]
	}
}

var _ io.Writer = (*lineWriter)(nil)
