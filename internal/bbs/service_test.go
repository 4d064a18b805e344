package bbs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/testutil"
)

type fakeAuctioneer struct {
	mu    sync.Mutex
	reqs  []LRPStartRequest
	tasks []TaskStartRequest
}

func (f *fakeAuctioneer) RequestTaskAuctions(_ context.Context, reqs []TaskStartRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tasks = append(f.tasks, reqs...)
	return nil
}

// taskAuctions lists the task guids whose placement was asked, in order.
func (f *fakeAuctioneer) taskAuctions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.tasks {
		out = append(out, r.TaskGUID)
	}
	return out
}

func (f *fakeAuctioneer) RequestLRPStarts(_ context.Context, reqs []LRPStartRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, reqs...)
	return nil
}

func (f *fakeAuctioneer) indices(guid string) []int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int32
	for _, r := range f.reqs {
		if r.ProcessGUID == guid {
			out = append(out, r.Indices...)
		}
	}
	return out
}

type fakeReps struct {
	mu      sync.Mutex
	stops   []string
	cancels []string // "task@cell"
	err     error    // returned by every stop
}

func (f *fakeReps) CancelTask(_ context.Context, cell *CellPresence, taskGUID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, taskGUID+"@"+cell.CellID)
	return nil
}

func (f *fakeReps) cancelled() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cancels...)
}

func (f *fakeReps) StopLRPInstance(_ context.Context, cell *CellPresence, key ActualLRPKey, ik ActualLRPInstanceKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops = append(f.stops, fmt.Sprintf("%s/%d@%s", key.ProcessGUID, key.Index, cell.CellID))
	return f.err
}

func (f *fakeReps) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.stops...)
}

type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *clock               { c := &clock{}; c.ns.Store(time.Unix(1_700_000_000, 0).UnixNano()); return c }
func quietLogger() *slog.Logger      { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func ptr[T any](v T) *T              { return &v }
func keyOf(guid string, i int32) ActualLRPKey {
	return ActualLRPKey{ProcessGUID: guid, Index: i, Domain: DomainCFApps}
}

type env struct {
	svc  *Service
	auc  *fakeAuctioneer
	reps *fakeReps
	clk  *clock
	sub  *subscription
}

// storeOpener gives each test its own empty store.
type storeOpener func(t *testing.T) Store

// serviceSuite runs on every store the BBS supports: the issue asks for the
// same BBS tests on SQLite and PostgreSQL.
var serviceSuite = []struct {
	name string
	run  func(*testing.T, storeOpener)
}{
	{"DesireCreatesUnclaimedInstancesAndAsksForPlacement", serviceDesireCreatesUnclaimedInstancesAndAsksForPlacement},
	{"ActualLRPStateMachine", serviceActualLRPStateMachine},
	{"CrashesRestartThreeTimesThenBackOff", serviceCrashesRestartThreeTimesThenBackOff},
	{"ScaleUpAndDown", serviceScaleUpAndDown},
	{"StopOfAnInstanceTheCellDoesNotRun", serviceStopOfAnInstanceTheCellDoesNotRun},
	{"RestartDoesNotReplaceInstancesOfCellsNotYetHeard", serviceRestartDoesNotReplaceInstancesOfCellsNotYetHeard},
	{"RoutesUpdateAndRemoval", serviceRoutesUpdateAndRemoval},
	{"ConvergenceReplacesInstancesOfLostCellsAndCreatesMissingOnes", serviceConvergenceReplacesInstancesOfLostCellsAndCreatesMissingOnes},
	{"CellsHeartbeatAndValidation", serviceCellsHeartbeatAndValidation},
	{"HTTPAPI", serviceHTTPAPI},
	{"EventStreamFiltersByCellAndCountsIDs", serviceEventStreamFiltersByCellAndCountsIDs},
	{"WatchResyncsAfterTheStreamDrops", serviceWatchResyncsAfterTheStreamDrops},
}

func runServiceSuite(t *testing.T, open storeOpener) {
	for _, tc := range serviceSuite {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open) })
	}
}

func TestServiceOnSQLite(t *testing.T) {
	runServiceSuite(t, func(t *testing.T) Store { return stOpen(t, filepath.Join(t.TempDir(), "bbs.db")) })
}

func TestServiceOnPostgres(t *testing.T) {
	newDSN := stPostgres(t)
	runServiceSuite(t, func(t *testing.T) Store { return stOpen(t, newDSN(t)) })
}

func newEnv(t *testing.T, open storeOpener) *env {
	t.Helper()
	store := open(t)
	e := &env{auc: &fakeAuctioneer{}, reps: &fakeReps{}, clk: newClock()}
	e.svc = NewService(Config{Logger: quietLogger(), Now: e.clk.Now, CellTTL: 15 * time.Second}, store, e.auc, e.reps)
	e.sub = e.svc.hub.subscribe("")
	t.Cleanup(e.svc.Stop)
	return e
}

// events drains what the hub delivered so far, as "type" strings.
func (e *env) events() []string {
	var out []string
	for {
		select {
		case ev := <-e.sub.ch:
			out = append(out, ev.Type)
		default:
			return out
		}
	}
}

func desired(guid string, instances int32) *DesiredLRP {
	return &DesiredLRP{
		ProcessGUID: guid, Domain: DomainCFApps, Instances: instances, Ports: []uint32{8080}, LogGUID: "app-" + guid,
		MemoryMB: 64, Action: &RunAction{Path: "/bin/app"},
		Routes: Routes{}.SetCFRoutes([]CFRoute{{Hostnames: []string{guid + ".apps.localhost"}, Port: 8080}}),
	}
}

func (e *env) heartbeat(t *testing.T, cell string) {
	t.Helper()
	if err := e.svc.CellHeartbeat(&CellPresence{CellID: cell, RepURL: "https://" + cell, Capacity: CellCapacity{MemoryMB: 1024, Containers: 10}}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) actual(t *testing.T, guid string, i int32) *ActualLRP {
	t.Helper()
	list, err := e.svc.ActualLRPs(context.Background(), ActualLRPsRequest{ProcessGUID: guid, Index: &i})
	if err != nil || len(list) != 1 {
		t.Fatalf("actual %s/%d: %v %v", guid, i, list, err)
	}
	return list[0]
}

func (e *env) run(t *testing.T, guid string, i int32, cell, instance string) ActualLRPInstanceKey {
	t.Helper()
	ik := ActualLRPInstanceKey{InstanceGUID: instance, CellID: cell}
	ctx := context.Background()
	if err := e.svc.ClaimActualLRP(ctx, guid, i, ik); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.StartActualLRP(ctx, keyOf(guid, i), ik, ActualLRPNetInfo{Address: "10.244.0.11", InstanceAddress: "10.244.1.2",
		Ports: []PortMapping{{ContainerPort: 8080, ContainerTLSProxyPort: 61001, HostTLSProxyPort: 61002}}}, ptr(true)); err != nil {
		t.Fatal(err)
	}
	return ik
}

func serviceDesireCreatesUnclaimedInstancesAndAsksForPlacement(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	ctx := context.Background()
	if err := e.svc.DesireLRP(ctx, desired("web", 2)); err != nil {
		t.Fatal(err)
	}
	if got := e.events(); strings.Join(got, ",") != "desired_lrp_created,actual_lrp_instance_created,actual_lrp_instance_created" {
		t.Fatalf("events %v", got)
	}
	if got := e.auc.indices("web"); fmt.Sprint(got) != "[0 1]" {
		t.Fatalf("auction requested %v", got)
	}
	for i := int32(0); i < 2; i++ {
		a := e.actual(t, "web", i)
		if a.State != StateUnclaimed || a.ModificationTag.Epoch == "" || a.Since == 0 || a.Presence != PresenceOrdinary {
			t.Fatalf("instance %d: %+v", i, a)
		}
	}
	if err := e.svc.DesireLRP(ctx, desired("web", 1)); !errors.Is(err, ErrResourceExists) {
		t.Fatalf("desiring twice: %v", err)
	}
	bad := desired("bad guid!", 1)
	if err := e.svc.DesireLRP(ctx, bad); err == nil || !strings.Contains(err.Error(), "process_guid") {
		t.Fatalf("invalid guid: %v", err)
	}
	list, _ := e.svc.DesiredLRPs(ctx, DesiredLRPsRequest{})
	if len(list) != 1 {
		t.Fatalf("%d desired LRPs after a refused one, want 1", len(list))
	}
}

func serviceActualLRPStateMachine(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	ctx := context.Background()
	e.svc.DesireLRP(ctx, desired("web", 1))
	ikA := ActualLRPInstanceKey{InstanceGUID: "inst-a", CellID: "cell-1"}
	ikB := ActualLRPInstanceKey{InstanceGUID: "inst-b", CellID: "cell-2"}
	if err := e.svc.ClaimActualLRP(ctx, "web", 0, ikA); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.ClaimActualLRP(ctx, "web", 0, ikA); err != nil {
		t.Fatalf("claiming again with the same key must be a no-op: %v", err)
	}
	if err := e.svc.ClaimActualLRP(ctx, "web", 0, ikB); !errors.Is(err, ErrActualLRPCannotBeClaimed) {
		t.Fatalf("a second cell claimed the slot: %v", err)
	}
	before := e.actual(t, "web", 0).ModificationTag
	net := ActualLRPNetInfo{Address: "10.244.0.11", InstanceAddress: "10.244.1.2", Ports: []PortMapping{{ContainerPort: 8080, HostTLSProxyPort: 61001}}}
	if err := e.svc.StartActualLRP(ctx, keyOf("web", 0), ikA, net, ptr(true)); err != nil {
		t.Fatal(err)
	}
	// Diego lets any instance start a CLAIMED slot, but a RUNNING one only
	// its own instance.
	if err := e.svc.StartActualLRP(ctx, keyOf("web", 0), ikB, net, nil); !errors.Is(err, ErrActualLRPCannotBeStarted) {
		t.Fatalf("another instance started a running slot: %v", err)
	}
	a := e.actual(t, "web", 0)
	if a.State != StateRunning || a.Address != "10.244.0.11" || a.InstanceGUID != "inst-a" || !before.SucceededBy(a.ModificationTag) {
		t.Fatalf("after start: %+v", a)
	}
	e.events()
	// Starting again with the same info changes nothing and says nothing.
	if err := e.svc.StartActualLRP(ctx, keyOf("web", 0), ikA, net, ptr(true)); err != nil {
		t.Fatal(err)
	}
	if got := e.events(); len(got) != 0 {
		t.Fatalf("an idempotent start emitted %v", got)
	}
}

func serviceCrashesRestartThreeTimesThenBackOff(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	ctx := context.Background()
	e.svc.DesireLRP(ctx, desired("web", 1))
	e.heartbeat(t, "cell-1")
	for crash := int32(1); crash <= 3; crash++ {
		ik := e.run(t, "web", 0, "cell-1", fmt.Sprintf("inst-%d", crash))
		e.events()
		if err := e.svc.CrashActualLRP(ctx, keyOf("web", 0), ik, "APP/PROC/WEB: Exited with status 1"); err != nil {
			t.Fatal(err)
		}
		a := e.actual(t, "web", 0)
		if a.State != StateUnclaimed || a.CrashCount != crash || a.CrashReason == "" || a.CellID != "" {
			t.Fatalf("after crash %d: %+v", crash, a)
		}
		if got := strings.Join(e.events(), ","); got != "actual_lrp_crashed,actual_lrp_instance_removed,actual_lrp_instance_created" {
			t.Fatalf("crash %d events: %s", crash, got)
		}
	}
	if got := len(e.auc.indices("web")); got != 4 {
		t.Fatalf("%d placements requested, want the first and 3 immediate restarts", got)
	}
	ik := e.run(t, "web", 0, "cell-1", "inst-4")
	e.svc.CrashActualLRP(ctx, keyOf("web", 0), ik, "again")
	if a := e.actual(t, "web", 0); a.State != StateCrashed || a.CrashCount != 4 {
		t.Fatalf("the 4th crash should wait in CRASHED: %+v", a)
	}
	e.svc.ConvergeNow(ctx)
	if a := e.actual(t, "web", 0); a.State != StateCrashed {
		t.Fatalf("restarted before its backoff: %+v", a)
	}
	e.clk.Add(31 * time.Second)
	e.heartbeat(t, "cell-1")
	e.svc.ConvergeNow(ctx)
	if a := e.actual(t, "web", 0); a.State != StateUnclaimed || a.CrashCount != 4 {
		t.Fatalf("not restarted after the 30 s backoff: %+v", a)
	}
	if got := len(e.auc.indices("web")); got != 5 {
		t.Fatalf("%d placements requested, want 5", got)
	}
}

func serviceScaleUpAndDown(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	ctx := context.Background()
	e.svc.DesireLRP(ctx, desired("web", 1))
	e.heartbeat(t, "cell-1")
	e.run(t, "web", 0, "cell-1", "inst-0")
	if err := e.svc.UpdateDesiredLRP(ctx, "web", &DesiredLRPUpdate{Instances: ptr(int32(3))}); err != nil {
		t.Fatal(err)
	}
	if got := e.auc.indices("web"); fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("placements %v", got)
	}
	e.run(t, "web", 1, "cell-1", "inst-1")
	e.events()
	if err := e.svc.UpdateDesiredLRP(ctx, "web", &DesiredLRPUpdate{Instances: ptr(int32(1))}); err != nil {
		t.Fatal(err)
	}
	// The running instance 1 is stopped by its rep; the unclaimed 2 just goes.
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if got := e.reps.list(); fmt.Sprint(got) != "[web/1@cell-1]" {
			return fmt.Errorf("stops %v", got)
		}
		return nil
	})
	list, _ := e.svc.ActualLRPs(ctx, ActualLRPsRequest{ProcessGUID: "web"})
	if len(list) != 2 {
		t.Fatalf("%d actuals after scaling down, want 0 and the stopping 1", len(list))
	}
	if got := strings.Join(e.events(), ","); got != "desired_lrp_changed,actual_lrp_instance_removed" {
		t.Fatalf("scale-down events %s", got)
	}
	// The rep removes the stopped instance; index 1 is not wanted, so nothing replaces it.
	if err := e.svc.RemoveActualLRP(ctx, "web", 1, &ActualLRPInstanceKey{InstanceGUID: "inst-1", CellID: "cell-1"}); err != nil {
		t.Fatal(err)
	}
	list, _ = e.svc.ActualLRPs(ctx, ActualLRPsRequest{ProcessGUID: "web"})
	if len(list) != 1 {
		t.Fatalf("%d actuals after the rep removed the stopped one", len(list))
	}
	if err := e.svc.RemoveActualLRP(ctx, "web", 0, &ActualLRPInstanceKey{InstanceGUID: "someone-else", CellID: "cell-1"}); !errors.Is(err, ErrResourceConflict) {
		t.Fatalf("removal by the wrong instance: %v", err)
	}
}

func serviceRoutesUpdateAndRemoval(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	ctx := context.Background()
	e.svc.DesireLRP(ctx, desired("web", 1))
	e.heartbeat(t, "cell-1")
	e.run(t, "web", 0, "cell-1", "inst-0")
	e.events()
	routes := Routes{}.SetCFRoutes([]CFRoute{{Hostnames: []string{"a.apps.localhost"}, Port: 8080}, {Hostnames: []string{"b.apps.localhost/api"}, Port: 8080}})
	if err := e.svc.UpdateDesiredLRP(ctx, "web", &DesiredLRPUpdate{Routes: &routes}); err != nil {
		t.Fatal(err)
	}
	var ev Event
	select {
	case ev = <-e.sub.ch:
	default:
		t.Fatal("no event for a routes update")
	}
	var changed DesiredLRPChangedEvent
	json.Unmarshal(ev.Data, &changed)
	after, _ := changed.After.Routes.CFRoutes()
	before, _ := changed.Before.Routes.CFRoutes()
	if ev.Type != EventDesiredLRPChanged || len(after) != 2 || len(before) != 1 || !changed.Before.ModificationTag.SucceededBy(changed.After.ModificationTag) {
		t.Fatalf("changed event %s %+v", ev.Type, changed)
	}
	bad := Routes{RouterKeyCF: json.RawMessage(`{"not":"a list"}`)}
	if err := e.svc.UpdateDesiredLRP(ctx, "web", &DesiredLRPUpdate{Routes: &bad}); err == nil {
		t.Fatal("malformed cf-router routes were stored")
	}
	if d, _ := e.svc.DesiredLRP(ctx, "web"); len(mustRoutes(t, d)) != 2 {
		t.Fatal("a refused update changed the stored routes")
	}
	if err := e.svc.RemoveDesiredLRP(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if got := e.reps.list(); fmt.Sprint(got) != "[web/0@cell-1]" {
			return fmt.Errorf("stops %v", got)
		}
		return nil
	})
	if _, err := e.svc.DesiredLRP(ctx, "web"); !errors.Is(err, ErrResourceNotFound) {
		t.Fatalf("removed LRP still there: %v", err)
	}
}

func mustRoutes(t *testing.T, d *DesiredLRP) []CFRoute {
	r, err := d.Routes.CFRoutes()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func serviceConvergenceReplacesInstancesOfLostCellsAndCreatesMissingOnes(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	ctx := context.Background()
	e.svc.DesireLRP(ctx, desired("web", 2))
	e.heartbeat(t, "cell-1")
	e.heartbeat(t, "cell-2")
	e.run(t, "web", 0, "cell-1", "inst-0")
	e.run(t, "web", 1, "cell-2", "inst-1")
	e.clk.Add(10 * time.Second)
	e.heartbeat(t, "cell-2") // cell-1 stops heartbeating
	e.clk.Add(10 * time.Second)
	if !e.svc.expireCells() {
		t.Fatal("cell-1 did not expire")
	}
	if err := e.svc.ConvergeNow(ctx); err != nil {
		t.Fatal(err)
	}
	if a := e.actual(t, "web", 0); a.State != StateUnclaimed || a.CellID != "" {
		t.Fatalf("instance on the lost cell: %+v", a)
	}
	if a := e.actual(t, "web", 1); a.State != StateRunning {
		t.Fatalf("instance on the live cell: %+v", a)
	}
	// A missing instance row (lost by hand) comes back.
	e.svc.store.Write(ctx, func(tx StoreTx) error { return tx.DeleteActualLRP("web", 1) })
	e.svc.ConvergeNow(ctx)
	if a := e.actual(t, "web", 1); a.State != StateUnclaimed {
		t.Fatalf("missing instance not recreated: %+v", a)
	}
	// Stale UNCLAIMED instances are auctioned again.
	n := len(e.auc.indices("web"))
	e.clk.Add(31 * time.Second)
	e.heartbeat(t, "cell-2")
	e.svc.ConvergeNow(ctx)
	if got := len(e.auc.indices("web")); got != n+2 {
		t.Fatalf("placements %d, want %d after the stale ones were re-auctioned", got, n+2)
	}
}

func serviceCellsHeartbeatAndValidation(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	e.heartbeat(t, "cell-b")
	e.heartbeat(t, "cell-a")
	cells := e.svc.Cells()
	if len(cells) != 2 || cells[0].CellID != "cell-a" {
		t.Fatalf("cells %v", cells)
	}
	if err := e.svc.CellHeartbeat(&CellPresence{CellID: "x y"}); err == nil {
		t.Fatal("an invalid cell id was accepted")
	}
	e.clk.Add(16 * time.Second)
	if len(e.svc.Cells()) != 0 {
		t.Fatal("cells listed after their TTL")
	}
}

// TestHTTPAPI drives the handlers over HTTP: typed errors for malformed and
// oversized requests, and nothing stored changes.
func serviceHTTPAPI(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	srv := NewServer(ServerConfig{Logger: quietLogger(), KeepaliveInterval: 50 * time.Millisecond}, e.svc)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	c := NewClient(hs.URL, nil)
	ctx := context.Background()
	if err := c.DesireLRP(ctx, desired("web", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DesiredLRPByProcessGUID(ctx, "nope"); !errors.Is(err, ErrResourceNotFound) {
		t.Fatalf("missing LRP: %v", err)
	}
	post := func(path string, body []byte) (int, Error) {
		resp, err := http.Post(hs.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env ErrorResponse
		json.NewDecoder(resp.Body).Decode(&env)
		if env.Error == nil {
			return resp.StatusCode, Error{}
		}
		return resp.StatusCode, *env.Error
	}
	cases := []struct {
		name, path string
		body       []byte
		status     int
		typ        string
	}{
		{"malformed", PathDesireLRP, []byte(`{"desired_lrp":`), 400, ErrTypeInvalidJSON},
		{"wrong types", PathDesireLRP, []byte(`{"desired_lrp":{"instances":"two"}}`), 400, ErrTypeInvalidJSON},
		{"missing record", PathDesireLRP, []byte(`{}`), 400, ErrTypeInvalidRequest},
		{"invalid record", PathDesireLRP, []byte(`{"desired_lrp":{"process_guid":"x","domain":"d","instances":-1,"action":{"path":"a"}}}`), 400, ErrTypeInvalidRecord},
		{"oversized", PathUpdateDesiredLRP, bytes.Repeat([]byte(" "), MaxRequestBytes+1), 413, ErrTypeRequestTooLarge},
		{"unknown path", "/v1/nothing", []byte(`{}`), 404, ErrTypeInvalidRequest},
		{"claim without key", PathClaimActualLRP, []byte(`{"process_guid":"web","index":0}`), 400, ErrTypeInvalidRequest},
	}
	for _, tc := range cases {
		status, perr := post(tc.path, tc.body)
		if status != tc.status || perr.Type != tc.typ || perr.Message == "" {
			t.Errorf("%s: %d %+v, want %d %s", tc.name, status, perr, tc.status, tc.typ)
		}
	}
	list, _ := c.DesiredLRPs(ctx, DesiredLRPsRequest{})
	actuals, _ := c.ActualLRPs(ctx, ActualLRPsRequest{})
	if len(list) != 1 || list[0].Instances != 1 || len(actuals) != 1 {
		t.Fatalf("bad requests changed the store: %v %v", list, actuals)
	}
	infos, err := c.DesiredLRPRoutingInfos(ctx, DesiredLRPsRequest{})
	if err != nil || len(infos) != 1 || infos[0].Action != nil || len(mustRoutes(t, infos[0])) != 1 {
		t.Fatalf("routing infos %+v %v", infos, err)
	}
}

func serviceEventStreamFiltersByCellAndCountsIDs(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	srv := NewServer(ServerConfig{Logger: quietLogger(), KeepaliveInterval: 20 * time.Millisecond}, e.svc)
	hs := httptest.NewServer(srv.Handler())
	defer func() { srv.Stop(context.Background()); hs.Close() }()
	c := NewClient(hs.URL, nil)
	ctx := context.Background()
	es, err := c.SubscribeToInstanceEvents(ctx, "cell-1")
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	e.heartbeat(t, "cell-1")
	e.svc.DesireLRP(ctx, desired("web", 2))
	e.run(t, "web", 0, "cell-1", "inst-0")
	e.run(t, "web", 1, "cell-2", "inst-1")
	// A crash on cell-1 afterwards: if cell-2's events had leaked, they would
	// come before it.
	e.svc.CrashActualLRP(ctx, keyOf("web", 0), ActualLRPInstanceKey{InstanceGUID: "inst-0", CellID: "cell-1"}, "boom")
	var got []string
	for len(got) < 5 {
		ev, err := es.Next()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, ev.Type)
	}
	// desired created is never filtered; the unclaimed instances have no
	// cell; the claim moves instance 0 to cell-1 (created), the start
	// changes it, the crash reports it and then removes it from cell-1.
	want := "desired_lrp_created,actual_lrp_instance_created,actual_lrp_instance_changed,actual_lrp_crashed,actual_lrp_instance_removed"
	if strings.Join(got, ",") != want {
		t.Fatalf("cell-1's stream:\n got %v\nwant %s", got, want)
	}
}

func serviceWatchResyncsAfterTheStreamDrops(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	srv := NewServer(ServerConfig{Logger: quietLogger(), KeepaliveInterval: 20 * time.Millisecond}, e.svc)
	hs := httptest.NewServer(srv.Handler())
	defer func() { srv.Stop(context.Background()); hs.Close() }()
	c := NewClient(hs.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var resyncs, events atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- c.WatchInstanceEvents(ctx, "", Watcher{
			Resync: func(context.Context) error { resyncs.Add(1); return nil },
			Event:  func(Event) { events.Add(1) },
		})
	}()
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if resyncs.Load() != 1 {
			return fmt.Errorf("%d resyncs", resyncs.Load())
		}
		return nil
	})
	e.svc.DesireLRP(ctx, desired("web", 1))
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if events.Load() < 2 {
			return fmt.Errorf("%d events", events.Load())
		}
		return nil
	})
	// Drop every subscriber, as the hub does to one that falls behind.
	e.svc.hub.mu.Lock()
	for s := range e.svc.hub.subs {
		if s != e.sub {
			delete(e.svc.hub.subs, s)
			s.once.Do(func() { close(s.ch) })
		}
	}
	e.svc.hub.mu.Unlock()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if resyncs.Load() < 2 {
			return fmt.Errorf("no resync after the stream dropped")
		}
		return nil
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch ended with %v", err)
	}
}

func TestRestartDelay(t *testing.T) {
	for n, want := range map[int32]time.Duration{1: 0, 3: 0, 4: 30 * time.Second, 5: time.Minute, 8: 8 * time.Minute, 9: 16 * time.Minute, 50: 16 * time.Minute} {
		if got := restartDelay(n); got != want {
			t.Errorf("restartDelay(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestAllowsTransitionTo(t *testing.T) {
	k := ActualLRPInstanceKey{InstanceGUID: "i", CellID: "c"}
	other := ActualLRPInstanceKey{InstanceGUID: "j", CellID: "c"}
	none := ActualLRPInstanceKey{}
	cases := []struct {
		from string
		key  ActualLRPInstanceKey
		to   string
		ok   bool
	}{
		{StateUnclaimed, k, StateClaimed, true},
		{StateUnclaimed, k, StateCrashed, false},
		{StateClaimed, other, StateClaimed, false},
		{StateClaimed, k, StateCrashed, true},
		{StateClaimed, other, StateRunning, true},
		{StateRunning, other, StateRunning, false},
		{StateRunning, none, StateUnclaimed, true},
		{StateRunning, k, StateUnclaimed, false},
		{StateCrashed, k, StateRunning, true},
		{StateCrashed, k, StateCrashed, false},
	}
	for _, c := range cases {
		a := &ActualLRP{State: c.from, ActualLRPInstanceKey: k}
		if got := a.AllowsTransitionTo(c.key, c.to); got != c.ok {
			t.Errorf("%s -> %s with %v: %v, want %v", c.from, c.to, c.key, got, c.ok)
		}
	}
}

// serviceStopOfAnInstanceTheCellDoesNotRun: a cell that answers "not here"
// to a stop never removes the instance, so the BBS does.
func serviceStopOfAnInstanceTheCellDoesNotRun(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	e.reps.err = fmt.Errorf("cell-1: %w", ErrInstanceNotOnCell)
	ctx := context.Background()
	e.svc.DesireLRP(ctx, desired("web", 2))
	e.heartbeat(t, "cell-1")
	e.run(t, "web", 1, "cell-1", "inst-1")
	if err := e.svc.UpdateDesiredLRP(ctx, "web", &DesiredLRPUpdate{Instances: ptr(int32(1))}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		list, _ := e.svc.ActualLRPs(ctx, ActualLRPsRequest{ProcessGUID: "web"})
		if len(list) != 1 || list[0].Index != 0 {
			return fmt.Errorf("actuals %v", list)
		}
		return nil
	})
}

// serviceRestartDoesNotReplaceInstancesOfCellsNotYetHeard: a restarted BBS
// knows no cells; the first heartbeat must not make it re-place everything
// running on the cells that have not heartbeaten yet.
func serviceRestartDoesNotReplaceInstancesOfCellsNotYetHeard(t *testing.T, open storeOpener) {
	e := newEnv(t, open)
	ctx := context.Background()
	e.svc.DesireLRP(ctx, desired("web", 2))
	e.heartbeat(t, "cell-1")
	e.heartbeat(t, "cell-2")
	e.run(t, "web", 0, "cell-1", "inst-0")
	e.run(t, "web", 1, "cell-2", "inst-1")
	// A new BBS on the same store: no cells known, one heartbeats.
	restarted := NewService(Config{Logger: quietLogger(), Now: e.clk.Now, CellTTL: 15 * time.Second}, e.svc.store, e.auc, e.reps)
	t.Cleanup(restarted.Stop)
	restarted.CellHeartbeat(&CellPresence{CellID: "cell-1", RepURL: "https://cell-1", Capacity: CellCapacity{MemoryMB: 1024, Containers: 10}})
	if err := restarted.ConvergeNow(ctx); err != nil {
		t.Fatal(err)
	}
	if a := e.actual(t, "web", 1); a.State != StateRunning || a.InstanceGUID != "inst-1" {
		t.Fatalf("an instance of a cell not yet heard from was replaced right after a restart: %+v", a)
	}
	// After a whole cell TTL without a heartbeat, cell-2 is lost after all.
	e.clk.Add(16 * time.Second)
	restarted.CellHeartbeat(&CellPresence{CellID: "cell-1", RepURL: "https://cell-1", Capacity: CellCapacity{MemoryMB: 1024, Containers: 10}})
	if err := restarted.ConvergeNow(ctx); err != nil {
		t.Fatal(err)
	}
	if a := e.actual(t, "web", 1); a.State != StateUnclaimed {
		t.Fatalf("the instance of a cell silent for a TTL was not replaced: %+v", a)
	}
}
