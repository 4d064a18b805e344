package auctioneer

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/rep"
)

// fakeBBS lists cells and records placement failures.
type fakeBBS struct {
	mu       sync.Mutex
	cells    []*bbs.CellPresence
	cellsErr error
	cellCall int
	failed   map[string]string // "guid/index" → reason
}

func (f *fakeBBS) Cells(ctx context.Context) ([]*bbs.CellPresence, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cellCall++
	return append([]*bbs.CellPresence(nil), f.cells...), f.cellsErr
}

func (f *fakeBBS) FailActualLRP(ctx context.Context, key bbs.ActualLRPKey, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed == nil {
		f.failed = map[string]string{}
	}
	if key.Domain == "" {
		return errors.New("no domain in the key")
	}
	f.failed[fmt.Sprintf("%s/%d", key.ProcessGUID, key.Index)] = reason
	return nil
}

// FailTask records a Task's placement failure under "task:<guid>".
func (f *fakeBBS) FailTask(ctx context.Context, taskGUID, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed == nil {
		f.failed = map[string]string{}
	}
	f.failed["task:"+taskGUID] = reason
	return nil
}

func (f *fakeBBS) failures() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for k, v := range f.failed {
		out[k] = v
	}
	return out
}

// fakeCell is one rep: it reports its state and takes work like a rep,
// unless told to fail, hang or refuse.
type fakeCell struct {
	presence    *bbs.CellPresence
	state       rep.CellState
	stateErr    error
	stateHangs  bool // State waits for its context to end
	refuses     bool // Perform lists every LRP as failed
	performHang bool // Perform waits for its context to end
}

// fakeReps holds the fake cells by id and counts what the auctioneer asks.
type fakeReps struct {
	mu           sync.Mutex
	works        []workCall
	cells        map[string]*fakeCell
	stateCalls   map[string]int
	performCalls map[string]int
	performing   chan string // cell ids, as Perform starts (if set)
}

func newFakeReps() *fakeReps {
	return &fakeReps{cells: map[string]*fakeCell{}, stateCalls: map[string]int{}, performCalls: map[string]int{}}
}

// add makes a cell offering memory, disk and containers, empty.
func (f *fakeReps) add(b *fakeBBS, id string, memoryMB, diskMB, containers int32) *fakeCell {
	capacity := bbs.CellCapacity{MemoryMB: memoryMB, DiskMB: diskMB, Containers: containers}
	c := &fakeCell{
		presence: &bbs.CellPresence{CellID: id, RepAddress: "127.0.0.1:1801", RepURL: "https://" + id + ":1801", Capacity: capacity},
		state:    rep.CellState{CellID: id, TotalResources: capacity, AvailableResources: capacity},
	}
	f.mu.Lock()
	f.cells[id] = c
	f.mu.Unlock()
	b.mu.Lock()
	b.cells = append(b.cells, c.presence)
	b.mu.Unlock()
	return c
}

func (f *fakeReps) State(ctx context.Context, cell *bbs.CellPresence) (*rep.CellState, error) {
	f.mu.Lock()
	f.stateCalls[cell.CellID]++
	c := f.cells[cell.CellID]
	if c == nil {
		f.mu.Unlock()
		return nil, errors.New("no such cell")
	}
	hangs, err := c.stateHangs, c.stateErr
	st := c.state
	st.LRPs = append([]rep.InstanceSummary(nil), c.state.LRPs...)
	st.Tasks = append([]rep.TaskSummary(nil), c.state.Tasks...)
	f.mu.Unlock()
	if hangs {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	return &st, nil
}

func (f *fakeReps) Perform(ctx context.Context, cell *bbs.CellPresence, w rep.Work) (*rep.WorkResponse, error) {
	f.mu.Lock()
	f.performCalls[cell.CellID]++
	c := f.cells[cell.CellID]
	performing := f.performing
	f.mu.Unlock()
	if performing != nil {
		performing <- cell.CellID
	}
	if c.performHang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.works = append(f.works, workCall{cell: cell.CellID, work: w})
	if c.refuses {
		return &rep.WorkResponse{Failed: w.LRPs, FailedTasks: w.Tasks}, nil
	}
	resp := &rep.WorkResponse{}
	for _, t := range w.Tasks {
		a := &c.state.AvailableResources
		if a.MemoryMB < t.Resource.MemoryMB || a.DiskMB < t.Resource.DiskMB || a.Containers < 1 {
			resp.FailedTasks = append(resp.FailedTasks, t)
			continue
		}
		a.MemoryMB -= t.Resource.MemoryMB
		a.DiskMB -= t.Resource.DiskMB
		a.Containers--
		c.state.StartingContainers++
		c.state.Tasks = append(c.state.Tasks, rep.TaskSummary{TaskGUID: t.TaskGUID, Domain: t.Domain, State: "reserved", Resource: t.Resource})
	}
	for _, l := range w.LRPs {
		need := l.Resource.MemoryMB + DefaultProxyMemoryMB
		a := &c.state.AvailableResources
		if a.MemoryMB < need || a.DiskMB < l.Resource.DiskMB || a.Containers < 1 {
			resp.Failed = append(resp.Failed, l)
			continue
		}
		a.MemoryMB -= need
		a.DiskMB -= l.Resource.DiskMB
		a.Containers--
		c.state.StartingContainers++
		c.state.LRPs = append(c.state.LRPs, rep.InstanceSummary{ProcessGUID: l.ProcessGUID, Index: l.Index,
			InstanceGUID: fmt.Sprintf("%s-%d", l.ProcessGUID, l.Index), State: "reserved", Resource: l.Resource})
	}
	return resp, nil
}

// workCall is one Perform: the cell and its work.
type workCall struct {
	cell string
	work rep.Work
}

// placedTasks lists the Tasks each cell took, sorted.
func (f *fakeReps) placedTasks() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	for id, c := range f.cells {
		for _, t := range c.state.Tasks {
			out[id] = append(out[id], t.TaskGUID)
		}
		sort.Strings(out[id])
	}
	return out
}

// placed lists the instances each cell took, as sorted "guid/index".
func (f *fakeReps) placed() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	for id, c := range f.cells {
		for _, l := range c.state.LRPs {
			out[id] = append(out[id], fmt.Sprintf("%s/%d", l.ProcessGUID, l.Index))
		}
		sort.Strings(out[id])
	}
	return out
}

func (f *fakeReps) calls() (state, perform map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	state, perform = map[string]int{}, map[string]int{}
	for k, v := range f.stateCalls {
		state[k] = v
	}
	for k, v := range f.performCalls {
		perform[k] = v
	}
	return state, perform
}

// logBuffer collects JSON log lines safely from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// events returns the log lines whose msg is event.
func (l *logBuffer) events(event string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == event {
			out = append(out, m)
		}
	}
	return out
}

// pki is a foundation CA with the auctioneer's server config and a BBS
// client config, as the BBS would call the auctioneer.
type pki struct {
	ca     *identity.CA
	server *tls.Config
	client *tls.Config
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, _, err := identity.New("test foundation CA")
	if err != nil {
		t.Fatal(err)
	}
	serverCred, err := ca.IssueComponent("auctioneer", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clientCred, err := ca.IssueComponent("bbs", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{ca: ca}
	if p.server, err = ca.ServerTLS(serverCred); err != nil {
		t.Fatal(err)
	}
	if p.client, err = ca.ClientTLS(clientCred); err != nil {
		t.Fatal(err)
	}
	return p
}

// harness is a running auctioneer with fakes behind it and a client in
// front.
type harness struct {
	a      *Auctioneer
	bbs    *fakeBBS
	reps   *fakeReps
	client *Client
	logs   *logBuffer
	pki    *pki
}

func startHarness(t *testing.T, cfg Config, b *fakeBBS, reps *fakeReps) *harness {
	t.Helper()
	h := &harness{bbs: b, reps: reps, logs: &logBuffer{}, pki: newPKI(t)}
	cfg.Listen = "127.0.0.1:0"
	if cfg.BatchWindow == 0 {
		cfg.BatchWindow = 20 * time.Millisecond
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg, b, reps, h.pki.server)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.a = a
	h.client = NewClient("https://"+a.Addr(), h.pki.client)
	t.Cleanup(func() {
		h.client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return h
}

func (h *harness) request(t *testing.T, reqs ...bbs.LRPStartRequest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.client.RequestLRPStarts(ctx, reqs); err != nil {
		t.Fatalf("RequestLRPStarts: %v", err)
	}
}

// start is a start request for indices of process guid with memoryMB.
func start(guid string, memoryMB int32, indices ...int32) bbs.LRPStartRequest {
	return bbs.LRPStartRequest{ProcessGUID: guid, Domain: bbs.DomainCFApps, Indices: indices,
		Resource: bbs.Resource{MemoryMB: memoryMB, DiskMB: 64}}
}

// rawPost posts body to the auctioneer with the client certificate and
// returns the status and the decoded error, if any.
func (h *harness) rawPost(t *testing.T, method, path string, body []byte) (int, *bbs.Error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: h.pki.client}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(method, "https://"+h.a.Addr()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var envelope bbs.ErrorResponse
	json.NewDecoder(resp.Body).Decode(&envelope)
	return resp.StatusCode, envelope.Error
}

// task is a Task start request.
func task(guid string, memoryMB int32) bbs.TaskStartRequest {
	return bbs.TaskStartRequest{TaskGUID: guid, Domain: bbs.DomainCFTasks, Resource: bbs.Resource{MemoryMB: memoryMB, DiskMB: 64}}
}

func (h *harness) requestTasks(t *testing.T, reqs ...bbs.TaskStartRequest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.client.RequestTaskAuctions(ctx, reqs); err != nil {
		t.Fatalf("RequestTaskAuctions: %v", err)
	}
}
