package bbs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/testutil"
)

// The Task suite runs on every store, as the LRP suite does.
var taskSuite = []struct {
	name string
	run  func(*testing.T, storeOpener)
}{
	{"StateMachine", taskStateMachine},
	{"FailAndCancel", taskFailAndCancel},
	{"CallbackRetriedUntilItSucceedsThenDeleted", taskCallbackRetriedUntilItSucceedsThenDeleted},
	{"CallbackTimeoutIsBounded", taskCallbackTimeoutIsBounded},
	{"Convergence", taskConvergence},
	{"HTTPAPIAndTaskStream", taskHTTPAPIAndTaskStream},
}

func TestTasksOnSQLite(t *testing.T) {
	for _, tc := range taskSuite {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			tc.run(t, func(t *testing.T) Store { return stOpen(t, filepath.Join(t.TempDir(), "bbs.db")) })
			t.Logf("took %v", time.Since(start).Round(time.Millisecond))
		})
	}
}

func TestTasksOnPostgres(t *testing.T) {
	newDSN := stPostgres(t)
	for _, tc := range taskSuite {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, func(t *testing.T) Store { return stOpen(t, newDSN(t)) }) })
	}
}

// taskEnv is a Service with fakes, a fake clock and a task subscription.
type taskEnv struct {
	*env
	tsub *subscription
}

func newTaskEnv(t *testing.T, open storeOpener, edit func(*Config)) *taskEnv {
	t.Helper()
	store := open(t)
	e := &env{auc: &fakeAuctioneer{}, reps: &fakeReps{}, clk: newClock()}
	cfg := Config{Logger: quietLogger(), Now: e.clk.Now, CellTTL: 15 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	e.svc = NewService(cfg, store, e.auc, e.reps)
	e.sub = e.svc.hub.subscribe("")
	t.Cleanup(e.svc.Stop)
	return &taskEnv{env: e, tsub: e.svc.hub.subscribeTasks()}
}

// taskEvents drains the task stream so far, as "type:guid:state" strings.
func (e *taskEnv) taskEvents() []string {
	var out []string
	for {
		select {
		case ev := <-e.tsub.ch:
			out = append(out, describeTaskEvent(ev))
		default:
			return out
		}
	}
}

func describeTaskEvent(ev Event) string {
	switch ev.Type {
	case EventTaskChanged:
		var p TaskChangedEvent
		json.Unmarshal(ev.Data, &p)
		return fmt.Sprintf("%s:%s:%s>%s", ev.Type, p.After.TaskGUID, p.Before.State, p.After.State)
	default:
		var p TaskCreatedEvent // created and removed have the same shape
		json.Unmarshal(ev.Data, &p)
		if p.Task == nil {
			return ev.Type + ":?"
		}
		return fmt.Sprintf("%s:%s:%s", ev.Type, p.Task.TaskGUID, p.Task.State)
	}
}

func (e *taskEnv) task(t *testing.T, guid string) *Task {
	t.Helper()
	task, err := e.svc.TaskByGUID(context.Background(), guid)
	if err != nil {
		t.Fatalf("task %s: %v", guid, err)
	}
	return task
}

func taskDef(callback string) *TaskDefinition {
	return &TaskDefinition{
		Setup:      &DownloadAction{From: "https://cc/internal/v4/packages/p/download", To: "/home/vcap/app"},
		Action:     &RunAction{Path: LifecycleBuilder, Args: []string{"--app-dir", "/home/vcap/app"}},
		Upload:     &UploadAction{From: "/tmp/droplet.tgz", To: "https://cc/internal/v4/droplets/d/upload"},
		ResultFile: "/tmp/result.json", CompletionCallbackURL: callback, MemoryMB: 128, DiskMB: 512,
		LogGUID: "app-guid", LogSource: "STG",
	}
}

func errType(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Type
	}
	if err == nil {
		return "nil"
	}
	return "untyped: " + err.Error()
}

func taskStateMachine(t *testing.T, open storeOpener) {
	e := newTaskEnv(t, open, nil)
	ctx := context.Background()
	if err := e.svc.DesireTask(ctx, "stage-1", DomainCFTasks, taskDef("")); err != nil {
		t.Fatal(err)
	}
	if got := e.taskEvents(); strings.Join(got, ",") != "task_created:stage-1:PENDING" {
		t.Fatalf("events %v", got)
	}
	if got := e.events(); len(got) != 0 {
		t.Fatalf("task events reached the LRP stream: %v", got)
	}
	if got := e.auc.taskAuctions(); fmt.Sprint(got) != "[stage-1]" {
		t.Fatalf("task auctions %v", got)
	}
	e.auc.mu.Lock()
	req := e.auc.tasks[0]
	e.auc.mu.Unlock()
	if req.Domain != DomainCFTasks || req.Resource != (Resource{MemoryMB: 128, DiskMB: 512}) {
		t.Fatalf("task start request %+v", req)
	}
	task := e.task(t, "stage-1")
	if task.State != TaskStatePending || task.CreatedAt != e.clk.Now().UnixNano() || task.UpdatedAt != task.CreatedAt || task.CellID != "" {
		t.Fatalf("desired task %+v", task)
	}
	if err := e.svc.DesireTask(ctx, "stage-1", DomainCFTasks, taskDef("")); !errors.Is(err, ErrResourceExists) {
		t.Fatalf("desiring twice: %v", err)
	}
	for _, bad := range []struct {
		guid, domain string
		def          *TaskDefinition
		want         string
	}{
		{"bad guid!", DomainCFTasks, taskDef(""), "task_guid"},
		{"ok", "", taskDef(""), "domain"},
		{"ok", DomainCFTasks, &TaskDefinition{}, "action.path"},
		{"ok", DomainCFTasks, taskDef("ftp://cc/x"), "completion_callback_url"},
		{"ok", DomainCFTasks, nil, "task_definition"},
	} {
		if err := e.svc.DesireTask(ctx, bad.guid, bad.domain, bad.def); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("desire %q/%q: %v, want an error about %s", bad.guid, bad.domain, err, bad.want)
		}
	}

	// Completing before it runs is refused.
	if err := e.svc.CompleteTask(ctx, "stage-1", "cell-1", false, "", ""); !errors.Is(err, ErrInvalidStateTransition) {
		t.Fatalf("completing a PENDING task: %v", err)
	}
	e.clk.Add(time.Second)
	ok, err := e.svc.StartTask(ctx, "stage-1", "cell-1")
	if err != nil || !ok {
		t.Fatalf("start: %v %v", ok, err)
	}
	task = e.task(t, "stage-1")
	if task.State != TaskStateRunning || task.CellID != "cell-1" || task.UpdatedAt != e.clk.Now().UnixNano() {
		t.Fatalf("started task %+v", task)
	}
	if got := e.taskEvents(); strings.Join(got, ",") != "task_changed:stage-1:PENDING>RUNNING" {
		t.Fatalf("events %v", got)
	}
	// The same cell again: do not start twice; another cell: refused.
	if ok, err := e.svc.StartTask(ctx, "stage-1", "cell-1"); err != nil || ok {
		t.Fatalf("starting again on the same cell: %v %v, want false and no error", ok, err)
	}
	if ok, err := e.svc.StartTask(ctx, "stage-1", "cell-2"); ok || !errors.Is(err, ErrInvalidStateTransition) {
		t.Fatalf("starting on a second cell: %v %v, want InvalidStateTransition", ok, err)
	}
	if got := e.taskEvents(); len(got) != 0 {
		t.Fatalf("refused starts emitted %v", got)
	}
	if err := e.svc.CompleteTask(ctx, "stage-1", "cell-2", false, "", "x"); !errors.Is(err, ErrRunningOnDifferentCell) {
		t.Fatalf("completion by another cell: %v", err)
	}
	big := strings.Repeat("r", MaxTaskResultBytes+1)
	if err := e.svc.CompleteTask(ctx, "stage-1", "cell-1", false, "", big); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("an oversized result: %v", err)
	}
	if list, _ := e.svc.Tasks(ctx, TasksRequest{CellID: "cell-1"}); len(list) != 1 {
		t.Fatalf("tasks on cell-1: %v", list)
	}
	e.clk.Add(time.Second)
	result := `{"process_types":{"web":"./app"}}`
	if err := e.svc.CompleteTask(ctx, "stage-1", "cell-1", false, "", result); err != nil {
		t.Fatal(err)
	}
	task = e.task(t, "stage-1")
	if task.State != TaskStateCompleted || task.Failed || task.Result != result || task.CellID != "" ||
		task.FirstCompletedAt != e.clk.Now().UnixNano() {
		t.Fatalf("completed task %+v", task)
	}
	if list, _ := e.svc.Tasks(ctx, TasksRequest{CellID: "cell-1"}); len(list) != 0 {
		t.Fatalf("a completed task is still on its cell: %v", list)
	}
	if ok, err := e.svc.StartTask(ctx, "stage-1", "cell-1"); ok || !errors.Is(err, ErrInvalidStateTransition) {
		t.Fatalf("starting a completed task: %v %v", ok, err)
	}
	if err := e.svc.CompleteTask(ctx, "stage-1", "cell-1", true, "again", ""); !errors.Is(err, ErrInvalidStateTransition) {
		t.Fatalf("completing twice: %v", err)
	}
	if got := e.taskEvents(); strings.Join(got, ",") != "task_changed:stage-1:RUNNING>COMPLETED" {
		t.Fatalf("events %v", got)
	}
	// No callback: nothing resolves it; whoever read the result deletes it.
	if err := e.svc.DeleteTask(ctx, "stage-1"); err != nil {
		t.Fatal(err)
	}
	if got := e.taskEvents(); strings.Join(got, ",") != "task_removed:stage-1:COMPLETED" {
		t.Fatalf("events %v", got)
	}
	if _, err := e.svc.TaskByGUID(ctx, "stage-1"); !errors.Is(err, ErrResourceNotFound) {
		t.Fatalf("deleted task: %v", err)
	}
	// A task that still runs cannot be deleted.
	e.svc.DesireTask(ctx, "stage-2", DomainCFTasks, taskDef(""))
	if err := e.svc.DeleteTask(ctx, "stage-2"); !errors.Is(err, ErrInvalidStateTransition) {
		t.Fatalf("deleting a PENDING task: %v", err)
	}
	for _, op := range []error{
		e.svc.DeleteTask(ctx, "nope"), e.svc.CancelTask(ctx, "nope"), e.svc.FailTask(ctx, "nope", "x"),
		e.svc.CompleteTask(ctx, "nope", "cell-1", false, "", ""),
	} {
		if !errors.Is(op, ErrResourceNotFound) {
			t.Errorf("an unknown task: %v", op)
		}
	}
	if _, err := e.svc.StartTask(ctx, "nope", "cell-1"); !errors.Is(err, ErrResourceNotFound) {
		t.Errorf("starting an unknown task: %v", err)
	}
}

func taskFailAndCancel(t *testing.T, open storeOpener) {
	e := newTaskEnv(t, open, nil)
	ctx := context.Background()
	e.heartbeat(t, "cell-1")
	for _, g := range []string{"unplaceable", "queued", "running"} {
		if err := e.svc.DesireTask(ctx, g, DomainCFTasks, taskDef("")); err != nil {
			t.Fatal(err)
		}
	}
	// The auctioneer found no place for one.
	if err := e.svc.FailTask(ctx, "unplaceable", "insufficient resources: memory"); err != nil {
		t.Fatal(err)
	}
	if task := e.task(t, "unplaceable"); task.State != TaskStateCompleted || !task.Failed || task.FailureReason != "insufficient resources: memory" {
		t.Fatalf("failed task %+v", task)
	}
	if err := e.svc.FailTask(ctx, "unplaceable", "again"); !errors.Is(err, ErrInvalidStateTransition) {
		t.Fatalf("failing a completed task: %v", err)
	}
	// A PENDING one is cancelled without a cell to tell.
	if err := e.svc.CancelTask(ctx, "queued"); err != nil {
		t.Fatal(err)
	}
	if task := e.task(t, "queued"); task.State != TaskStateCompleted || !task.Failed || task.FailureReason != TaskReasonCancelled {
		t.Fatalf("cancelled pending task %+v", task)
	}
	// A RUNNING one: its cell is told to stop it.
	if _, err := e.svc.StartTask(ctx, "running", "cell-1"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.CancelTask(ctx, "running"); err != nil {
		t.Fatal(err)
	}
	if task := e.task(t, "running"); task.State != TaskStateCompleted || task.FailureReason != "task was cancelled" || task.CellID != "" {
		t.Fatalf("cancelled running task %+v", task)
	}
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if got := e.reps.cancelled(); fmt.Sprint(got) != "[running@cell-1]" {
			return fmt.Errorf("cancels sent to cells: %v", got)
		}
		return nil
	})
	if err := e.svc.CancelTask(ctx, "running"); !errors.Is(err, ErrInvalidStateTransition) {
		t.Fatalf("cancelling twice: %v", err)
	}
	// The cell, not knowing yet, completes it: refused, the cancel stands.
	if err := e.svc.CompleteTask(ctx, "running", "cell-1", false, "", "late"); !errors.Is(err, ErrInvalidStateTransition) {
		t.Fatalf("completion after the cancel: %v", err)
	}
	want := "task_created:unplaceable:PENDING,task_created:queued:PENDING,task_created:running:PENDING," +
		"task_changed:unplaceable:PENDING>COMPLETED,task_changed:queued:PENDING>COMPLETED," +
		"task_changed:running:PENDING>RUNNING,task_changed:running:RUNNING>COMPLETED"
	if got := strings.Join(e.taskEvents(), ","); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
}

// callbackServer is the Cloud Controller's internal API as far as the
// callback goes: mutual TLS, answering with the statuses it is given in
// turn (200 once they run out), recording each Task it receives.
type callbackServer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	statuses []int
	hang     chan struct{} // when set, requests wait for it to close
	got      []Task
	clients  []string // client certificate CNs
}

func newCallbackServer(t *testing.T, statuses ...int) (*callbackServer, *Config) {
	t.Helper()
	ca, _, err := identity.New("bbs test CA")
	if err != nil {
		t.Fatal(err)
	}
	serverCred, err := ca.IssueComponent("cloud-controller", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clientCred, err := ca.IssueComponent("bbs", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := ca.ServerTLS(serverCred)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := ca.ClientTLS(clientCred)
	if err != nil {
		t.Fatal(err)
	}
	cs := &callbackServer{statuses: statuses}
	cs.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var task Task
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &task)
		cs.mu.Lock()
		cs.got = append(cs.got, task)
		if len(r.TLS.PeerCertificates) > 0 {
			cs.clients = append(cs.clients, r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		status := http.StatusOK
		if len(cs.statuses) > 0 {
			status, cs.statuses = cs.statuses[0], cs.statuses[1:]
		}
		hang := cs.hang
		cs.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-r.Context().Done():
				// The BBS gave up. Answering now could still reach its
				// transport (Go's client can read a response that races
				// its own timeout), which would turn a timed-out callback
				// into a resolved one: drop the connection instead.
				panic(http.ErrAbortHandler)
			}
		}
		w.WriteHeader(status)
		fmt.Fprintln(w, "{}")
	}))
	cs.srv.TLS = serverTLS
	cs.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	cs.srv.StartTLS()
	t.Cleanup(cs.srv.Close)
	return cs, &Config{TaskCallbackTLS: clientTLS}
}

func (cs *callbackServer) calls() []Task {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return append([]Task(nil), cs.got...)
}

func (e *taskEnv) waitTaskState(t *testing.T, guid, state string) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		task, err := e.svc.TaskByGUID(context.Background(), guid)
		if err != nil {
			return err
		}
		if task.State != state {
			return fmt.Errorf("task %s is %s, want %s", guid, task.State, state)
		}
		return nil
	})
}

func (e *taskEnv) waitTaskGone(t *testing.T, guid string) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if task, err := e.svc.TaskByGUID(context.Background(), guid); !errors.Is(err, ErrResourceNotFound) {
			return fmt.Errorf("task %s is still there (%v, %v)", guid, task, err)
		}
		return nil
	})
}

func taskCallbackRetriedUntilItSucceedsThenDeleted(t *testing.T, open storeOpener) {
	cs, cbCfg := newCallbackServer(t, 500, 503, 502, 500)
	e := newTaskEnv(t, open, func(c *Config) { c.TaskCallbackTLS = cbCfg.TaskCallbackTLS })
	ctx := context.Background()
	url := cs.srv.URL + "/internal/v4/tasks/stage-1/completed"
	if err := e.svc.DesireTask(ctx, "stage-1", DomainCFTasks, taskDef(url)); err != nil {
		t.Fatal(err)
	}
	e.heartbeat(t, "cell-1")
	if _, err := e.svc.StartTask(ctx, "stage-1", "cell-1"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.CompleteTask(ctx, "stage-1", "cell-1", false, "", `{"process_types":{"web":"./app"}}`); err != nil {
		t.Fatal(err)
	}
	// The first callback fails: the task goes back to COMPLETED.
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := len(cs.calls()); n != 1 {
			return fmt.Errorf("%d callbacks", n)
		}
		return nil
	})
	e.waitTaskState(t, "stage-1", TaskStateCompleted)
	got := cs.calls()[0]
	if got.TaskGUID != "stage-1" || got.Result != `{"process_types":{"web":"./app"}}` || got.Failed || got.State != TaskStateResolving ||
		got.TaskDefinition == nil || got.TaskDefinition.LogGUID != "app-guid" {
		t.Fatalf("the callback got %+v", got)
	}
	cs.mu.Lock()
	clients := append([]string(nil), cs.clients...)
	cs.mu.Unlock()
	if len(clients) != 1 || clients[0] != "bbs" {
		t.Fatalf("the callback presented %v, want the BBS's client certificate", clients)
	}
	// Convergence retries: at once for the first three failures...
	for i := 2; i <= 4; i++ {
		e.clk.Add(time.Second)
		e.heartbeat(t, "cell-1")
		if err := e.svc.ConvergeTasks(ctx); err != nil {
			t.Fatal(err)
		}
		testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if n := len(cs.calls()); n != i {
				return fmt.Errorf("%d callbacks, want %d", n, i)
			}
			return nil
		})
		e.waitTaskState(t, "stage-1", TaskStateCompleted)
	}
	// ...then with a backoff: not before 30 s have passed.
	e.clk.Add(10 * time.Second)
	e.svc.ConvergeTasks(ctx)
	e.svc.spawned.Wait()
	if n := len(cs.calls()); n != 4 {
		t.Fatalf("%d callbacks during the backoff, want 4", n)
	}
	e.clk.Add(21 * time.Second)
	e.svc.ConvergeTasks(ctx)
	// The fifth succeeds: the task is deleted.
	e.waitTaskGone(t, "stage-1")
	if n := len(cs.calls()); n != 5 {
		t.Fatalf("%d callbacks, want 5", n)
	}
	// (The event follows the commit the test saw: wait for it.)
	var seen []string
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		seen = append(seen, e.taskEvents()...)
		events := strings.Join(seen, ",")
		if !strings.HasSuffix(events, "task_changed:stage-1:COMPLETED>RESOLVING,task_removed:stage-1:RESOLVING") ||
			strings.Count(events, "COMPLETED>RESOLVING") != 5 || strings.Count(events, "RESOLVING>COMPLETED") != 4 {
			return fmt.Errorf("events %s", events)
		}
		return nil
	})
	// Nothing more happens.
	e.clk.Add(time.Hour)
	e.svc.ConvergeTasks(ctx)
	e.svc.spawned.Wait()
	if n := len(cs.calls()); n != 5 {
		t.Fatalf("%d callbacks after the task was resolved", n)
	}
}

func taskCallbackTimeoutIsBounded(t *testing.T, open storeOpener) {
	cs, cbCfg := newCallbackServer(t)
	cs.hang = make(chan struct{})
	defer close(cs.hang)
	e := newTaskEnv(t, open, func(c *Config) {
		c.TaskCallbackTLS = cbCfg.TaskCallbackTLS
		c.TaskCallbackTimeout = 200 * time.Millisecond
	})
	ctx := context.Background()
	e.svc.DesireTask(ctx, "slow", DomainCFTasks, taskDef(cs.srv.URL+"/cb"))
	e.svc.StartTask(ctx, "slow", "cell-1")
	start := time.Now()
	if err := e.svc.CompleteTask(ctx, "slow", "cell-1", true, "Exited with status 1", ""); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if len(cs.calls()) != 1 {
			return errors.New("no callback yet")
		}
		task := e.task(t, "slow")
		if task.State != TaskStateCompleted || !task.Failed {
			return fmt.Errorf("task %+v", task)
		}
		return nil
	})
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a hanging callback held the task for %v", d)
	}
	// A server that refuses the BBS's certificate is a failure too.
	e2 := newTaskEnv(t, open, nil) // no client certificate, and the test CA unknown
	e2.svc.DesireTask(ctx, "untrusted", DomainCFTasks, taskDef(cs.srv.URL+"/cb"))
	e2.svc.StartTask(ctx, "untrusted", "cell-1")
	e2.svc.CompleteTask(ctx, "untrusted", "cell-1", false, "", "")
	var events []string
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		events = append(events, e2.taskEvents()...)
		task := e2.task(t, "untrusted")
		if task.State != TaskStateCompleted || !strings.Contains(strings.Join(events, ","), "RESOLVING>COMPLETED") {
			return fmt.Errorf("task %s, events %v", task.State, events)
		}
		return nil
	})
	if n := len(cs.calls()); n != 1 {
		t.Fatalf("a callback without the client certificate reached the server (%d calls)", n)
	}
}

func taskConvergence(t *testing.T, open storeOpener) {
	cs, cbCfg := newCallbackServer(t, 500)
	e := newTaskEnv(t, open, func(c *Config) { c.TaskCallbackTLS = cbCfg.TaskCallbackTLS })
	ctx := context.Background()
	e.heartbeat(t, "cell-1")
	e.heartbeat(t, "cell-2")
	for _, g := range []string{"pending", "old-pending", "on-lost-cell", "on-live-cell", "done", "resolving"} {
		if err := e.svc.DesireTask(ctx, g, DomainCFTasks, taskDef("")); err != nil {
			t.Fatal(err)
		}
	}
	// "unresolved" has a callback that fails once.
	if err := e.svc.DesireTask(ctx, "unresolved", DomainCFTasks, taskDef(cs.srv.URL+"/cb")); err != nil {
		t.Fatal(err)
	}
	e.svc.StartTask(ctx, "on-lost-cell", "cell-1")
	e.svc.StartTask(ctx, "on-live-cell", "cell-2")
	e.svc.StartTask(ctx, "done", "cell-2")
	e.svc.CompleteTask(ctx, "done", "cell-2", false, "", "r")
	e.svc.StartTask(ctx, "unresolved", "cell-2")
	e.svc.CompleteTask(ctx, "unresolved", "cell-2", false, "", "r")
	e.waitTaskState(t, "unresolved", TaskStateCompleted)
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if len(cs.calls()) != 1 {
			return errors.New("the first callback has not come")
		}
		return nil
	})
	e.waitTaskState(t, "unresolved", TaskStateCompleted)
	// "resolving" is stuck RESOLVING (its BBS died during the callback).
	e.svc.store.Write(ctx, func(tx StoreTx) error {
		task, err := tx.Task("resolving")
		if err != nil {
			return err
		}
		task.State, task.FirstCompletedAt, task.UpdatedAt = TaskStateResolving, e.svc.now(), e.svc.now()
		return tx.UpdateTask(task)
	})
	// "old-pending" was desired 31 minutes ago.
	e.svc.store.Write(ctx, func(tx StoreTx) error {
		task, err := tx.Task("old-pending")
		if err != nil {
			return err
		}
		task.CreatedAt = e.clk.Now().Add(-31 * time.Minute).UnixNano()
		return tx.UpdateTask(task)
	})
	e.taskEvents()
	auctioned := len(e.auc.taskAuctions())

	// 10 s later nothing is due but the expired pending task (and the callback retry).
	e.clk.Add(10 * time.Second)
	e.heartbeat(t, "cell-2")
	e.heartbeat(t, "cell-1")
	if err := e.svc.ConvergeTasks(ctx); err != nil {
		t.Fatal(err)
	}
	if task := e.task(t, "old-pending"); task.State != TaskStateCompleted || task.FailureReason != TaskReasonNotStarted {
		t.Fatalf("a task pending for 31 minutes: %+v", task)
	}
	if got := len(e.auc.taskAuctions()); got != auctioned {
		t.Fatalf("%d task auctions after 10 s, want %d", got, auctioned)
	}
	// The callback that failed is retried, and succeeds: deleted.
	e.waitTaskGone(t, "unresolved")

	// 31 s after desire: the pending task is auctioned again; cell-1 is
	// gone (no heartbeat for 21 s) with its task; RESOLVING goes back.
	e.clk.Add(21 * time.Second)
	e.heartbeat(t, "cell-2")
	e.svc.expireCells()
	if err := e.svc.ConvergeTasks(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.auc.taskAuctions()[auctioned:]; fmt.Sprint(got) != "[pending]" {
		t.Fatalf("re-auctioned %v, want [pending]", got)
	}
	if task := e.task(t, "on-lost-cell"); task.State != TaskStateCompleted || !task.Failed ||
		task.FailureReason != "cell disappeared before completion" {
		t.Fatalf("the task of the lost cell: %+v", task)
	}
	if task := e.task(t, "on-live-cell"); task.State != TaskStateRunning {
		t.Fatalf("the task of the live cell: %+v", task)
	}
	if task := e.task(t, "resolving"); task.State != TaskStateCompleted {
		t.Fatalf("a task stuck RESOLVING for 31 s: %+v", task)
	}
	if task := e.task(t, "done"); task.State != TaskStateCompleted {
		t.Fatalf("a task completed 31 s ago: %+v", task)
	}
	// Two minutes after completion, a task without a callback goes.
	e.clk.Add(90 * time.Second)
	e.heartbeat(t, "cell-2")
	e.taskEvents()
	if err := e.svc.ConvergeTasks(ctx); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"done", "resolving"} {
		if _, err := e.svc.TaskByGUID(ctx, g); !errors.Is(err, ErrResourceNotFound) {
			t.Errorf("task %s completed 2 minutes ago is still there: %v", g, err)
		}
	}
	if _, err := e.svc.TaskByGUID(ctx, "on-lost-cell"); err != nil {
		t.Errorf("task on-lost-cell, completed 90 s ago, is gone: %v", err)
	}
	events := strings.Join(e.taskEvents(), ",")
	for _, w := range []string{"task_removed:done:COMPLETED", "task_removed:resolving:COMPLETED"} {
		if !strings.Contains(events, w) {
			t.Errorf("events %s lack %s", events, w)
		}
	}
	// The LRP stream saw none of it.
	if got := e.events(); len(got) != 0 {
		t.Fatalf("task convergence emitted LRP events %v", got)
	}
}

func taskHTTPAPIAndTaskStream(t *testing.T, open storeOpener) {
	e := newTaskEnv(t, open, nil)
	srv := NewServer(ServerConfig{Logger: quietLogger(), KeepaliveInterval: 20 * time.Millisecond}, e.svc)
	hs := httptest.NewServer(srv.Handler())
	defer func() { srv.Stop(context.Background()); hs.Close() }()
	c := NewClient(hs.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tasks, err := c.SubscribeToTaskEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tasks.Close()
	lrps, err := c.SubscribeToInstanceEvents(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer lrps.Close()
	e.heartbeat(t, "cell-1")

	if err := c.DesireTask(ctx, "t1", DomainCFTasks, taskDef("")); err != nil {
		t.Fatal(err)
	}
	if err := c.DesireTask(ctx, "t1", DomainCFTasks, taskDef("")); !errors.Is(err, ErrResourceExists) {
		t.Fatalf("desire twice over HTTP: %v", err)
	}
	if err := c.DesireTask(ctx, "t2", "other", taskDef("")); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.StartTask(ctx, "t1", "cell-1"); !ok || err != nil {
		t.Fatalf("start: %v %v", ok, err)
	}
	if ok, err := c.StartTask(ctx, "t1", "cell-1"); ok || err != nil {
		t.Fatalf("start again: %v %v", ok, err)
	}
	if _, err := c.StartTask(ctx, "t1", "cell-2"); errType(err) != ErrTypeInvalidStateTransition {
		t.Fatalf("start elsewhere: %v", err)
	}
	if err := c.CompleteTask(ctx, "t1", "cell-2", false, "", ""); errType(err) != ErrTypeRunningOnDifferentCell {
		t.Fatalf("complete elsewhere: %v", err)
	}
	if err := c.CompleteTask(ctx, "t1", "cell-1", false, "", "the result"); err != nil {
		t.Fatal(err)
	}
	task, err := c.TaskByGUID(ctx, "t1")
	if err != nil || task.State != TaskStateCompleted || task.Result != "the result" || task.TaskDefinition.LogSource != "STG" {
		t.Fatalf("task over HTTP: %+v %v", task, err)
	}
	if _, err := c.TaskByGUID(ctx, "nope"); !errors.Is(err, ErrResourceNotFound) {
		t.Fatalf("an unknown task over HTTP: %v", err)
	}
	list, err := c.Tasks(ctx, TasksRequest{Domain: DomainCFTasks})
	if err != nil || len(list) != 1 || list[0].TaskGUID != "t1" {
		t.Fatalf("tasks by domain: %v %v", list, err)
	}
	if list, err := c.Tasks(ctx, TasksRequest{CellID: "cell-9"}); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("no tasks: %#v %v", list, err)
	}
	if err := c.FailTask(ctx, "t2", "found no compatible cell"); err != nil {
		t.Fatal(err)
	}
	if err := c.CancelTask(ctx, "t2"); errType(err) != ErrTypeInvalidStateTransition {
		t.Fatalf("cancel a completed task: %v", err)
	}
	if err := c.DeleteTask(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := c.DesireTask(ctx, "t3", DomainCFTasks, taskDef("")); err != nil {
		t.Fatal(err)
	}
	if err := c.CancelTask(ctx, "t3"); err != nil {
		t.Fatal(err)
	}
	// An LRP event after all that: the first thing the LRP stream shows.
	if err := e.svc.DesireLRP(ctx, desired("web", 0)); err != nil {
		t.Fatal(err)
	}
	ev, err := lrps.Next()
	if err != nil || ev.Type != EventDesiredLRPCreated {
		t.Fatalf("the LRP stream's first event: %s %v, want desired_lrp_created (and no task events)", ev.Type, err)
	}
	want := []string{"task_created:t1:PENDING", "task_created:t2:PENDING", "task_changed:t1:PENDING>RUNNING",
		"task_changed:t1:RUNNING>COMPLETED", "task_changed:t2:PENDING>COMPLETED", "task_removed:t1:COMPLETED",
		"task_created:t3:PENDING", "task_changed:t3:PENDING>COMPLETED"}
	var got []string
	for len(got) < len(want) {
		ev, err := tasks.Next()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, describeTaskEvent(ev))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("task stream\n got %v\nwant %v", got, want)
	}
	// Malformed requests get typed errors.
	resp, err := http.Post(hs.URL+PathStartTask, "application/json", strings.NewReader(`{"task_guid":`))
	if err != nil {
		t.Fatal(err)
	}
	var env ErrorResponse
	json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	if resp.StatusCode != 400 || env.Error == nil || env.Error.Type != ErrTypeInvalidJSON {
		t.Fatalf("malformed start: %d %+v", resp.StatusCode, env.Error)
	}
	if _, err := c.StartTask(ctx, "t3", ""); errType(err) != ErrTypeInvalidRequest {
		t.Fatalf("start without a cell: %v", err)
	}
	// Malformed and oversized requests get the same typed errors as the LRP
	// endpoints', and change nothing stored.
	before, err := c.Tasks(ctx, TasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	oversized := append([]byte(`{"task_guid":"t9","domain":"cf-tasks","task_definition":{"log_source":"`),
		bytes.Repeat([]byte("x"), MaxRequestBytes)...)
	oversized = append(oversized, `"}}`...)
	for _, tc := range []struct {
		name, path string
		body       []byte
		status     int
		typ        string
	}{
		{"malformed desire", PathDesireTask, []byte(`{"task_guid":"t9",`), 400, ErrTypeInvalidJSON},
		{"wrong types", PathDesireTask, []byte(`{"task_guid":"t9","domain":"cf-tasks","task_definition":"no"}`), 400, ErrTypeInvalidJSON},
		{"oversized desire", PathDesireTask, oversized, 413, ErrTypeRequestTooLarge},
		{"oversized complete", PathCompleteTask, bytes.Repeat([]byte(" "), MaxRequestBytes+1), 413, ErrTypeRequestTooLarge},
		{"malformed cancel", PathCancelTask, []byte(`{"task_guid":3}`), 400, ErrTypeInvalidJSON},
		{"malformed delete", PathDeleteTask, []byte(`[`), 400, ErrTypeInvalidJSON},
		{"malformed fail", PathFailTask, []byte(`{"task_guid":"t3","failure_reason":`), 400, ErrTypeInvalidJSON},
		{"malformed list", PathTasks, []byte(`{"domain":1}`), 400, ErrTypeInvalidJSON},
	} {
		resp, err := http.Post(hs.URL+tc.path, "application/json", bytes.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		var env ErrorResponse
		json.NewDecoder(resp.Body).Decode(&env)
		resp.Body.Close()
		if resp.StatusCode != tc.status || env.Error == nil || env.Error.Type != tc.typ || env.Error.Message == "" {
			t.Errorf("%s: %d %+v, want %d %s", tc.name, resp.StatusCode, env.Error, tc.status, tc.typ)
		}
	}
	after, err := c.Tasks(ctx, TasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if b, a := mustJSON(t, before), mustJSON(t, after); b != a {
		t.Fatalf("bad task requests changed the store:\n%s\n%s", b, a)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
