// Package auctioneer is minicf's Diego auctioneer: places LRP instances and
// Tasks on cells.
//
// The BBS sends it start requests (POST /v1/lrps and POST /v1/tasks, mutual
// TLS); it collects
// them for a short batch window, then runs an auction: it lists the cells
// from the BBS, reads each cell's state from its rep, scores every cell
// that has room for each instance with Diego's scoring (lowest wins) and
// sends each winning cell its work in one call. Instances a cell refuses
// are auctioned again among the other cells; instances that fit nowhere
// are failed in the BBS with Diego's placement error, where they stay
// UNCLAIMED until convergence asks for them again. Tasks go the same way,
// after the LRPs of a batch, scored without the same-process penalty and
// matched without the proxy's memory (a Task has no envoy); a Task that
// fits nowhere is failed in the BBS (FailTask) with the same placement
// error, and completes failed.
package auctioneer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/rep"
	"github.com/minicf/minicf/internal/trace"
)

// BBSClient is what the auctioneer needs from the BBS.
type BBSClient interface {
	Cells(ctx context.Context) ([]*bbs.CellPresence, error)
	FailActualLRP(ctx context.Context, key bbs.ActualLRPKey, reason string) error
	FailTask(ctx context.Context, taskGUID, reason string) error
}

var _ BBSClient = (*bbs.Client)(nil)

// RepClient is what the auctioneer needs from the cells' reps.
type RepClient interface {
	State(ctx context.Context, cell *bbs.CellPresence) (*rep.CellState, error)
	Perform(ctx context.Context, cell *bbs.CellPresence, w rep.Work) (*rep.WorkResponse, error)
}

// Defaults.
const (
	DefaultListen                  = "127.0.0.1:9016" // Diego listens on 0.0.0.0:9016
	DefaultBatchWindow             = 100 * time.Millisecond
	DefaultMaxRetries              = 3
	DefaultStartingContainerWeight = 0.25 // Diego's starting_container_weight
	DefaultProxyMemoryMB           = 32   // Diego's containers.proxy.additional_memory_allocation_mb
	DefaultCellStateTimeout        = time.Second
	DefaultRequestTimeout          = 10 * time.Second
)

// Config configures an Auctioneer. Zero values take the defaults.
type Config struct {
	// Listen is the API's host:port (port 0 picks a free port).
	Listen string
	// BatchWindow is how long requests are collected before an auction.
	BatchWindow time.Duration
	// MaxRetries is how many more rounds an instance gets after a cell
	// refused it (each round offers it only to cells that have not
	// refused it). Negative means none.
	MaxRetries int
	// StartingContainerWeight is what each container still starting on a
	// cell adds to its score. Negative means 0.
	StartingContainerWeight float64
	// ProxyMemoryMB is added to every instance's memory when matching and
	// scoring, for the envoy proxy beside it. Negative means 0.
	ProxyMemoryMB int32
	// CellStateTimeout bounds each GET /state; a cell that does not answer
	// in time is left out of the round.
	CellStateTimeout time.Duration
	// RequestTimeout bounds each call to the BBS and each work submission.
	RequestTimeout time.Duration
	// Trace records flow 1's instance-placed steps; nil records nothing.
	Trace  trace.Emitter
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.BatchWindow <= 0 {
		c.BatchWindow = DefaultBatchWindow
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	switch {
	case c.StartingContainerWeight == 0:
		c.StartingContainerWeight = DefaultStartingContainerWeight
	case c.StartingContainerWeight < 0:
		c.StartingContainerWeight = 0
	}
	switch {
	case c.ProxyMemoryMB == 0:
		c.ProxyMemoryMB = DefaultProxyMemoryMB
	case c.ProxyMemoryMB < 0:
		c.ProxyMemoryMB = 0
	}
	if c.CellStateTimeout <= 0 {
		c.CellStateTimeout = DefaultCellStateTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Auctioneer serves the auction API and runs the auctions.
type Auctioneer struct {
	cfg  Config
	bbs  BBSClient
	reps RepClient
	tls  *tls.Config
	log  *slog.Logger

	mu      sync.Mutex
	pending map[instanceKey]*instance
	order   []instanceKey // arrival order of pending
	first   time.Time     // when the oldest pending request arrived
	wake    chan struct{} // a batch became non-empty

	listener net.Listener
	server   *http.Server
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// New makes an auctioneer. serverTLS must require and verify client
// certificates: the API is mutual TLS only.
func New(cfg Config, bbsClient BBSClient, reps RepClient, serverTLS *tls.Config) (*Auctioneer, error) {
	if bbsClient == nil || reps == nil {
		return nil, errors.New("the auctioneer needs a BBS client and a rep client")
	}
	if serverTLS == nil || (len(serverTLS.Certificates) == 0 && serverTLS.GetCertificate == nil && serverTLS.GetConfigForClient == nil) {
		return nil, errors.New("the auctioneer needs a server TLS config with a certificate")
	}
	if serverTLS.ClientAuth != tls.RequireAndVerifyClientCert && serverTLS.GetConfigForClient == nil {
		return nil, errors.New("the auctioneer's TLS config must require and verify client certificates (mutual TLS)")
	}
	cfg.defaults()
	return &Auctioneer{
		cfg:     cfg,
		bbs:     bbsClient,
		reps:    reps,
		tls:     serverTLS.Clone(),
		log:     cfg.Logger,
		pending: map[instanceKey]*instance{},
		wake:    make(chan struct{}, 1),
	}, nil
}

// Start binds the listener and starts serving and auctioning. It returns
// once requests can be accepted. ctx only bounds the start; Stop ends the
// auctioneer.
func (a *Auctioneer) Start(ctx context.Context) error {
	if a.listener != nil {
		return errors.New("the auctioneer is already started")
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("auctioneer cannot listen on %s: %w", a.cfg.Listen, err)
	}
	a.listener = ln
	a.server = &http.Server{
		Handler:           a.handler(),
		TLSConfig:         a.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		if err := a.server.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("auctioneer-serve-failed", "error", err)
		}
	}()
	go func() {
		defer a.wg.Done()
		a.loop(loopCtx)
	}()
	a.log.Info("auctioneer-started", "listen", ln.Addr().String(),
		"batch_window", a.cfg.BatchWindow.String(), "max_retries", a.cfg.MaxRetries)
	return nil
}

// Addr is the API's bound address (host:port).
func (a *Auctioneer) Addr() string {
	if a.listener == nil {
		return ""
	}
	return a.listener.Addr().String()
}

// Stop stops accepting requests, lets requests in flight finish until ctx
// ends, abandons the auction in progress and any requests not yet
// auctioned (the BBS asks again for instances that stay UNCLAIMED), and
// waits for every goroutine it started. Safe to call twice.
func (a *Auctioneer) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() {
		if a.server == nil {
			return
		}
		a.cancel()
		if err := a.server.Shutdown(ctx); err != nil {
			a.stopErr = err
			a.server.Close()
		}
		a.wg.Wait()
		a.mu.Lock()
		dropped := len(a.order)
		a.pending, a.order = map[instanceKey]*instance{}, nil
		a.mu.Unlock()
		a.log.Info("auctioneer-stopped", "dropped_instances", dropped)
	})
	return a.stopErr
}

// enqueue adds start requests to the next batch, once per (process guid,
// index).
func (a *Auctioneer) enqueue(reqs []bbs.LRPStartRequest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	wasEmpty := len(a.order) == 0
	for _, r := range reqs {
		for _, idx := range r.Indices {
			k := instanceKey{processGUID: r.ProcessGUID, index: idx}
			if _, ok := a.pending[k]; ok {
				continue
			}
			a.pending[k] = &instance{lrp: rep.LRP{
				ProcessGUID:   r.ProcessGUID,
				Index:         idx,
				Domain:        r.Domain,
				Resource:      r.Resource,
				PlacementTags: append([]string(nil), r.PlacementTags...),
			}}
			a.order = append(a.order, k)
		}
	}
	a.wakeLocked(wasEmpty)
}

// enqueueTasks adds Task start requests to the next batch, once per task guid.
func (a *Auctioneer) enqueueTasks(reqs []bbs.TaskStartRequest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	wasEmpty := len(a.order) == 0
	for _, r := range reqs {
		k := instanceKey{taskGUID: r.TaskGUID}
		if _, ok := a.pending[k]; ok {
			continue
		}
		a.pending[k] = &instance{task: &rep.Task{TaskGUID: r.TaskGUID, Domain: r.Domain, Resource: r.Resource,
			PlacementTags: append([]string(nil), r.PlacementTags...)}}
		a.order = append(a.order, k)
	}
	a.wakeLocked(wasEmpty)
}

// wakeLocked starts the batch window when the batch just became non-empty.
func (a *Auctioneer) wakeLocked(wasEmpty bool) {
	if wasEmpty && len(a.order) > 0 {
		a.first = time.Now()
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// takeBatch empties the pending batch.
func (a *Auctioneer) takeBatch() []*instance {
	a.mu.Lock()
	defer a.mu.Unlock()
	batch := make([]*instance, 0, len(a.order))
	for _, k := range a.order {
		batch = append(batch, a.pending[k])
	}
	a.pending, a.order = map[instanceKey]*instance{}, nil
	return batch
}

// loop waits for a batch, lets it fill for the batch window, and auctions
// it; requests arriving during an auction make the next batch.
func (a *Auctioneer) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		}
		a.mu.Lock()
		wait := a.cfg.BatchWindow - time.Since(a.first)
		a.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if batch := a.takeBatch(); len(batch) > 0 {
			a.auction(ctx, batch)
		}
	}
}

// auction places batch in rounds: each round reads the cells afresh,
// schedules, fails what fits nowhere and sends the work; what cells refuse
// goes to the next round.
func (a *Auctioneer) auction(ctx context.Context, batch []*instance) {
	pending := batch
	for round := 1; len(pending) > 0; round++ {
		if ctx.Err() != nil {
			a.log.Warn("auction-abandoned", "instances", len(pending))
			return
		}
		a.log.Info("auction-started", "round", round, "instances", len(pending))
		cells, noCells, err := a.cellViews(ctx)
		if err != nil {
			// Without the BBS the instances cannot even be failed; they stay
			// UNCLAIMED (Tasks PENDING) and convergence asks for them again.
			for _, inst := range pending {
				a.log.Error("auction-failed", append(inst.logAttrs(), "reason", "cannot list cells", "error", err.Error())...)
			}
			return
		}
		work, failed := schedule(cells, pending, int64(a.cfg.ProxyMemoryMB), a.cfg.StartingContainerWeight, noCells)
		for _, f := range failed {
			a.fail(ctx, f.inst, f.reason)
		}
		byID := map[string]*cellView{}
		for _, c := range cells {
			byID[c.id] = c
		}
		refused := a.commit(ctx, byID, work)
		pending = nil
		for _, inst := range refused {
			if inst.refusals > a.cfg.MaxRetries {
				a.fail(ctx, inst, ReasonInsufficientResources)
				continue
			}
			pending = append(pending, inst)
		}
	}
}

// cellViews lists the cells and reads their states in parallel; a cell that
// does not answer within CellStateTimeout, or is evacuating, is left out.
// noCells is the placement error to use if no cell is left.
func (a *Auctioneer) cellViews(ctx context.Context) (views []*cellView, noCells string, err error) {
	cctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	presences, err := a.bbs.Cells(cctx)
	cancel()
	if err != nil {
		return nil, "", err
	}
	seen := map[string]bool{}
	var cells []*bbs.CellPresence
	for _, c := range presences {
		if c == nil || c.CellID == "" || seen[c.CellID] {
			continue
		}
		seen[c.CellID] = true
		cells = append(cells, c)
	}
	if len(cells) == 0 {
		return nil, ReasonNoCells, nil
	}
	states := make([]*rep.CellState, len(cells))
	var wg sync.WaitGroup
	for i, c := range cells {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, a.cfg.CellStateTimeout)
			defer cancel()
			st, err := a.reps.State(sctx, c)
			switch {
			case err != nil:
				a.log.Warn("cell-state-failed", "cell_id", c.CellID, "error", err.Error())
			case st == nil:
				a.log.Warn("cell-state-failed", "cell_id", c.CellID, "error", "empty state")
			case st.Evacuating:
				a.log.Info("cell-evacuating", "cell_id", c.CellID)
			default:
				states[i] = st
			}
		}()
	}
	wg.Wait()
	for i, st := range states {
		if st != nil {
			views = append(views, newCellView(cells[i], st))
		}
	}
	return views, ReasonCellCommunication, nil
}

// commit sends each cell its work in one call, in parallel, and returns the
// instances that were refused (listed in WorkResponse.Failed, or all of a
// cell's work when the call failed), each marked as refused by that cell.
func (a *Auctioneer) commit(ctx context.Context, cells map[string]*cellView, work map[string][]*instance) []*instance {
	var (
		mu      sync.Mutex
		refused []*instance
		wg      sync.WaitGroup
	)
	for id, insts := range work {
		cell := cells[id]
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := rep.Work{LRPs: []rep.LRP{}}
			for _, inst := range insts {
				if inst.task != nil {
					w.Tasks = append(w.Tasks, *inst.task)
				} else {
					w.LRPs = append(w.LRPs, inst.lrp)
				}
			}
			wctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
			sent := time.Now()
			resp, err := a.reps.Perform(wctx, cell.cell, w)
			cancel()
			failed := map[instanceKey]bool{}
			if err != nil {
				a.log.Warn("cell-work-failed", "cell_id", id, "instances", len(insts), "error", err.Error())
				for _, inst := range insts {
					failed[inst.key()] = true
				}
			} else if resp != nil {
				for _, l := range resp.Failed {
					failed[instanceKey{processGUID: l.ProcessGUID, index: l.Index}] = true
				}
				for _, t := range resp.FailedTasks {
					failed[instanceKey{taskGUID: t.TaskGUID}] = true
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, inst := range insts {
				if failed[inst.key()] {
					if inst.refusedBy == nil {
						inst.refusedBy = map[string]bool{}
					}
					inst.refusedBy[id] = true
					inst.refusals++
					refused = append(refused, inst)
					a.log.Info("auction-refused", append(inst.logAttrs(), "cell_id", id)...)
					continue
				}
				a.log.Info("auction-placed", append(inst.logAttrs(), "cell_id", id)...)
				a.tracePlaced(inst, id, len(cells), sent)
			}
		}()
	}
	wg.Wait()
	return refused
}

// fail records a placement error on the instance in the BBS; a Task that
// cannot be placed is failed (it completes, failed with the reason).
func (a *Auctioneer) fail(ctx context.Context, inst *instance, reason string) {
	a.log.Warn("auction-failed", append(inst.logAttrs(), "reason", reason)...)
	fctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	if inst.task != nil {
		if err := a.bbs.FailTask(fctx, inst.task.TaskGUID, reason); err != nil {
			a.log.Error("fail-task-failed", "task_guid", inst.task.TaskGUID, "error", err.Error())
		}
		return
	}
	key := bbs.ActualLRPKey{ProcessGUID: inst.lrp.ProcessGUID, Index: inst.lrp.Index, Domain: inst.lrp.Domain}
	if err := a.bbs.FailActualLRP(fctx, key, reason); err != nil {
		a.log.Error("fail-actual-lrp-failed", "process_guid", key.ProcessGUID, "index", key.Index, "error", err.Error())
	}
}
