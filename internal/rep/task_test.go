package rep

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/testutil"
)

// uploadServer is the Cloud Controller's internal API as far as uploads go:
// mutual TLS, PUT bodies recorded, answering status.
type uploadServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	bodies  map[string][]byte // path → body
	clients []string          // client certificate CNs
	status  int
}

func newUploadServer(t *testing.T) *uploadServer {
	t.Helper()
	ca := testCA()
	cred, err := ca.IssueComponent("cloud-controller", []string{"127.0.0.1"}, time.Hour)
	must(t, err)
	serverTLS, err := ca.ServerTLS(cred)
	must(t, err)
	u := &uploadServer{bodies: map[string][]byte{}, status: http.StatusCreated}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		defer u.mu.Unlock()
		if r.Method != http.MethodPut {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		u.bodies[r.URL.Path] = body
		u.clients = append(u.clients, r.TLS.PeerCertificates[0].Subject.CommonName)
		w.WriteHeader(u.status)
		fmt.Fprintln(w, "{}")
	}))
	u.srv.TLS = serverTLS
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	return u
}

func (u *uploadServer) body(path string) ([]byte, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	b, ok := u.bodies[path]
	return b, ok
}

// withClientTLS gives the rep its client certificate (for uploads).
func withClientTLS(t *testing.T) func(*Config) {
	cred, err := testCA().IssueComponent("rep-cell-1", nil, time.Hour)
	must(t, err)
	clientTLS, err := testCA().ClientTLS(cred)
	must(t, err)
	return func(c *Config) { c.ClientTLS = clientTLS }
}

// goEnv is the staging environment the Cloud Controller gives the builder,
// with this machine's Go (and its build cache, so the test is quick).
var goEnv = sync.OnceValues(func() ([]bbs.EnvironmentVariable, error) {
	out, err := exec.Command("go", "env", "GOROOT", "GOCACHE", "GOMODCACHE").Output()
	if err != nil {
		return nil, err
	}
	v := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(v) != 3 {
		return nil, fmt.Errorf("go env: %q", out)
	}
	return []bbs.EnvironmentVariable{
		{Name: "GOCACHE", Value: v[1]}, {Name: "GOMODCACHE", Value: v[2]}, {Name: "GOPROXY", Value: "off"},
		{Name: "GOFLAGS", Value: "-mod=mod"}, {Name: "CGO_ENABLED", Value: "0"}, {Name: "GOTOOLCHAIN", Value: "local"},
		{Name: "PATH", Value: filepath.Join(v[0], "bin") + ":/usr/local/bin:/usr/bin:/bin"},
	}, nil
})

// stagingTask is the Cloud Controller's staging Task (internal/cc/staging.go)
// with local URLs.
func stagingTask(t *testing.T, source, uploadURL string) *bbs.TaskDefinition {
	env, err := goEnv()
	must(t, err)
	return &bbs.TaskDefinition{
		Setup: &bbs.DownloadAction{From: source, To: "/home/vcap/app"},
		Action: &bbs.RunAction{Path: bbs.LifecycleBuilder, User: "vcap", Env: env,
			Args: []string{"--app-dir", "/home/vcap/app", "--output-droplet", "/tmp/droplet.tgz", "--result", "/tmp/result.json"}},
		MemoryMB: 256, DiskMB: 1024,
		Upload:     &bbs.UploadAction{From: "/tmp/droplet.tgz", To: uploadURL},
		ResultFile: "/tmp/result.json", CompletionCallbackURL: "https://cc.invalid/internal/v4/tasks/b/completed",
		LogGUID: "app-guid", LogSource: "STG", MaxDurationMs: 120_000,
	}
}

func shellTask(script string, maxMs int64) *bbs.TaskDefinition {
	return &bbs.TaskDefinition{
		Action:   &bbs.RunAction{Path: "/bin/sh", Args: []string{"-c", script}},
		MemoryMB: 64, LogGUID: "app-guid", LogSource: "STG", MaxDurationMs: maxMs,
	}
}

func taskWork(guid string, memoryMB int32) Work {
	return Work{Tasks: []Task{{TaskGUID: guid, Domain: bbs.DomainCFTasks, Resource: bbs.Resource{MemoryMB: memoryMB, DiskMB: 64}}}}
}

// waitTask waits for a Task to reach state in the BBS.
func (c *cell) waitTask(guid, state string, within time.Duration) bbs.Task {
	c.t.Helper()
	var task bbs.Task
	testutil.CheckFor(c.t, within, 10*time.Millisecond, func() error {
		var ok bool
		task, ok = c.bbs.task(guid)
		if !ok || task.State != state {
			return fmt.Errorf("task %s is %q (ok %v), want %s; calls %v", guid, task.State, ok, state, c.bbs.callsMatching(""))
		}
		return nil
	})
	return task
}

// waitNoContainer waits for a handle's container to be gone.
func (c *cell) waitNoContainer(handle string) {
	c.t.Helper()
	testutil.CheckFor(c.t, 15*time.Second, 10*time.Millisecond, func() error {
		if _, err := c.garden.Info(handle); !errors.Is(err, garden.ErrNotFound) {
			return fmt.Errorf("container %s: %v", handle, err)
		}
		return nil
	})
}

func (a *appLogs) messages(source string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, l := range a.lines {
		if l.SourceType == source {
			out = append(out, l.Message)
		}
	}
	return out
}

func TestTaskStagesAGoAppEndToEnd(t *testing.T) {
	f := newFakeBBS()
	up := newUploadServer(t)
	c := startCell(t, f, "", withClientTLS(t))
	c.cleanupAll()
	src, err := filepath.Abs("testdata/goapp")
	must(t, err)
	f.desireTask("build-1", stagingTask(t, src, up.srv.URL+"/internal/v4/droplets/d1/upload"))
	start := time.Now()
	c.perform(taskWork("build-1", 256))
	// The cell counts it at once (no proxy memory for a Task).
	st := c.rep.State()
	if len(st.Tasks) != 1 || st.Tasks[0].TaskGUID != "build-1" || st.AvailableResources.MemoryMB != 1024-256 ||
		st.AvailableResources.Containers != 9 || len(st.LRPs) != 0 {
		t.Fatalf("state while staging %+v", st)
	}
	task := c.waitTask("build-1", bbs.TaskStateCompleted, 90*time.Second)
	t.Logf("staged and uploaded in %v", time.Since(start).Round(time.Millisecond))
	if task.Failed {
		t.Fatalf("staging failed: %s\nSTG: %s", task.FailureReason, strings.Join(c.logs.messages("STG"), "\n"))
	}
	var res struct {
		ProcessTypes      map[string]string `json:"process_types"`
		LifecycleType     string            `json:"lifecycle_type"`
		DetectedBuildpack string            `json:"detected_buildpack"`
	}
	must(t, json.Unmarshal([]byte(task.Result), &res))
	if !reflect.DeepEqual(res.ProcessTypes, map[string]string{"web": "./goapp"}) || res.DetectedBuildpack != "go" || res.LifecycleType != "buildpack" {
		t.Fatalf("result %s", task.Result)
	}
	if calls := f.callsMatching("start-task"); len(calls) != 1 || calls[0] != "start-task build-1 cell-1" {
		t.Fatalf("start calls %v", calls)
	}
	// The droplet reached the upload URL over mutual TLS.
	body, ok := up.body("/internal/v4/droplets/d1/upload")
	if !ok {
		t.Fatal("no droplet was uploaded")
	}
	up.mu.Lock()
	clients := append([]string(nil), up.clients...)
	up.mu.Unlock()
	if len(clients) != 1 || clients[0] != "rep-cell-1" {
		t.Fatalf("the upload presented %v", clients)
	}
	names := map[string]int64{}
	gz, err := gzip.NewReader(bytes.NewReader(body))
	must(t, err)
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		names[h.Name] = h.Mode
	}
	if names["goapp"]&0o111 == 0 || names["main.go"] == 0 || names["go.mod"] == 0 {
		t.Fatalf("droplet entries %v", names)
	}
	// The builder's progress and the cell's steps reached the app's logs as STG.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, want := range []string{"creating container for instance build-1", "-----> Go app detected", "-----> Running go build",
			"-----> Droplet created (", "Uploading /tmp/droplet.tgz", "Uploaded /tmp/droplet.tgz (", "destroying container"} {
			if !c.logs.has("STG", want) {
				return fmt.Errorf("no STG line with %q in %q", want, c.logs.messages("STG"))
			}
		}
		return nil
	})
	c.logs.mu.Lock()
	for _, l := range c.logs.lines {
		if l.SourceType == "STG" && (l.AppID != "app-guid" || l.InstanceIndex != "0") {
			t.Errorf("log line %+v", l)
		}
	}
	c.logs.mu.Unlock()
	// The container goes, and the resources come back.
	c.waitNoContainer("build-1")
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := c.rep.State(); len(st.Tasks) != 0 || st.AvailableResources.MemoryMB != 1024 {
			return fmt.Errorf("state after the task: %+v", st)
		}
		return nil
	})
}

func TestTaskFailsWithItsExitStatus(t *testing.T) {
	f := newFakeBBS()
	up := newUploadServer(t)
	c := startCell(t, f, "", withClientTLS(t))
	c.cleanupAll()
	def := shellTask("echo doing things; echo 'it went wrong' >&2; exit 3", 0)
	def.Upload = &bbs.UploadAction{From: "/tmp/x", To: up.srv.URL + "/never"}
	def.ResultFile = "/tmp/result.json"
	f.desireTask("fails", def)
	c.perform(taskWork("fails", 64))
	task := c.waitTask("fails", bbs.TaskStateCompleted, 20*time.Second)
	if !task.Failed || task.FailureReason != "Exited with status 3: it went wrong" || task.Result != "" {
		t.Fatalf("task %+v", task)
	}
	if _, ok := up.body("/never"); ok {
		t.Fatal("a failed task uploaded")
	}
	if !c.logs.has("STG", "doing things") || !c.logs.has("STG", "it went wrong") {
		t.Fatalf("logs %q", c.logs.messages("STG"))
	}
	c.waitNoContainer("fails")

	// Exit 0 without its result file, or with a result too large: failed.
	f.desireTask("no-result", &bbs.TaskDefinition{Action: &bbs.RunAction{Path: "/bin/true"}, ResultFile: "/tmp/result.json"})
	big := shellTask(fmt.Sprintf(`head -c %d /dev/zero | tr '\0' x > "$TMPDIR/result.json"`, bbs.MaxTaskResultBytes+1), 0)
	big.ResultFile = "/tmp/result.json"
	f.desireTask("big-result", big)
	outside := shellTask("true", 0)
	outside.ResultFile = "/etc/hostname"
	f.desireTask("outside", outside)
	ok := shellTask(`printf '{"ok":true}' > "$TMPDIR/result.json"`, 0)
	ok.ResultFile = "/tmp/result.json"
	f.desireTask("ok", ok)
	c.perform(Work{Tasks: append(append(append(taskWork("no-result", 16).Tasks, taskWork("big-result", 16).Tasks...),
		taskWork("outside", 16).Tasks...), taskWork("ok", 16).Tasks...)})
	for guid, want := range map[string]string{
		"no-result":  "cannot read the result file: /tmp/result.json: no such file or directory",
		"big-result": fmt.Sprintf("cannot read the result file: /tmp/result.json is larger than the %d bytes allowed", bbs.MaxTaskResultBytes),
		"outside":    "cannot read the result file: /etc/hostname is not inside the container (/home/vcap/... or /tmp/...)",
	} {
		if task := c.waitTask(guid, bbs.TaskStateCompleted, 20*time.Second); !task.Failed || task.FailureReason != want {
			t.Errorf("%s: %+v, want failed with %q", guid, task, want)
		}
	}
	if task := c.waitTask("ok", bbs.TaskStateCompleted, 20*time.Second); task.Failed || task.Result != `{"ok":true}` {
		t.Errorf("ok: %+v", task)
	}
}

func TestTaskFailsWhenTheUploadFails(t *testing.T) {
	f := newFakeBBS()
	up := newUploadServer(t)
	up.status = http.StatusUnprocessableEntity
	c := startCell(t, f, "", withClientTLS(t))
	c.cleanupAll()
	def := shellTask(`echo droplet > "$TMPDIR/droplet.tgz"`, 0)
	def.Upload = &bbs.UploadAction{From: "/tmp/droplet.tgz", To: up.srv.URL + "/upload?token=secret"}
	f.desireTask("upload-refused", def)
	// And a cell without the client certificate cannot upload at all.
	c2 := startCell(t, f, "", func(cfg *Config) { cfg.CellID = "cell-2" })
	c2.cleanupAll()
	def2 := shellTask(`echo droplet > "$TMPDIR/droplet.tgz"`, 0)
	def2.Upload = &bbs.UploadAction{From: "/tmp/droplet.tgz", To: up.srv.URL + "/upload2"}
	f.desireTask("no-client-cert", def2)
	c.perform(taskWork("upload-refused", 16))
	resp, err := c2.client.Perform(ctxT(t), c2.presence(), taskWork("no-client-cert", 16))
	must(t, err)
	if len(resp.FailedTasks) != 0 {
		t.Fatalf("refused %+v", resp.FailedTasks)
	}
	task := c.waitTask("upload-refused", bbs.TaskStateCompleted, 20*time.Second)
	if !task.Failed || !strings.HasPrefix(task.FailureReason, "upload failed: PUT "+up.srv.URL+"/upload answered 422") ||
		strings.Contains(task.FailureReason, "secret") {
		t.Fatalf("task %+v", task)
	}
	task = c2.waitTask("no-client-cert", bbs.TaskStateCompleted, 20*time.Second)
	if !task.Failed || !strings.HasPrefix(task.FailureReason, "upload failed: PUT "+up.srv.URL+"/upload2: ") {
		t.Fatalf("task %+v", task)
	}
}

func TestTaskOverItsMaxDurationIsKilledAndFailed(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", nil)
	c.cleanupAll()
	f.desireTask("slow", shellTask("echo started; exec sleep 30", 300))
	start := time.Now()
	c.perform(taskWork("slow", 64))
	task := c.waitTask("slow", bbs.TaskStateCompleted, 15*time.Second)
	took := time.Since(start)
	t.Logf("failed after %v", took.Round(time.Millisecond))
	if !task.Failed || task.FailureReason != "exceeded 300ms timeout" {
		t.Fatalf("task %+v", task)
	}
	if took < 300*time.Millisecond || took > 10*time.Second {
		t.Fatalf("it took %v", took)
	}
	c.waitNoContainer("slow")
	if !c.logs.has("STG", "started") || !c.logs.has("STG", "exceeded its maximum duration of 300ms") {
		t.Fatalf("logs %q", c.logs.messages("STG"))
	}
}

func TestTaskCancelStopsItWithoutReporting(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", nil)
	c.cleanupAll()
	f.desireTask("long", shellTask("echo running; exec sleep 30", 0))
	c.perform(taskWork("long", 64))
	c.waitTask("long", bbs.TaskStateRunning, 10*time.Second)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !c.logs.has("STG", "running") {
			return errors.New("not running yet")
		}
		return nil
	})
	info, err := c.garden.Info("long")
	must(t, err)
	c.rep.mu.Lock()
	run := c.rep.tasks["long"]
	c.rep.mu.Unlock()
	if run == nil {
		t.Fatal("the rep holds no run of the task")
	}
	f.cancelTask("long") // what the BBS does, before it tells the cell
	start := time.Now()
	must(t, c.client.CancelTask(ctxT(t), c.presence(), "long"))
	c.waitNoContainer("long")
	t.Logf("stopped %v after the cancel", time.Since(start).Round(time.Millisecond))
	assertNothingLeft(t, c.garden, []int{info.Processes[0].PID}, nil)
	// The task's goroutine is what would report it, synchronously: once it
	// has returned (done is closed, as StopAll waits for it), any report
	// it made is among the calls.
	select {
	case <-run.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled task's goroutine did not end")
	}
	if calls := f.callsMatching("complete-task"); len(calls) != 0 {
		t.Fatalf("a cancelled task was reported: %v", calls)
	}
	if st := c.rep.State(); len(st.Tasks) != 0 {
		t.Fatalf("the rep still lists tasks: %+v", st.Tasks)
	}
	if err := c.client.CancelTask(ctxT(t), c.presence(), "long"); !errors.Is(err, ErrTaskNotFound) {
		t.Fatalf("cancelling a task the cell no longer runs: %v", err)
	}
}

func TestTaskStartedElsewhereIsDroppedAndCapacityIsChecked(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", nil)
	c.cleanupAll()
	f.desireTask("taken", shellTask("true", 0))
	if ok, err := f.StartTask(ctxT(t), "taken", "cell-9"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	c.perform(taskWork("taken", 64))
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := c.rep.State(); len(st.Tasks) != 0 {
			return fmt.Errorf("tasks %+v", st.Tasks)
		}
		return nil
	})
	if infos, _ := c.garden.Containers(); len(infos) != 0 {
		t.Fatalf("a container for a task another cell runs: %+v", infos)
	}
	if task, _ := f.task("taken"); task.State != bbs.TaskStateRunning || task.CellID != "cell-9" {
		t.Fatalf("task %+v", task)
	}
	// Too big, a bad guid, twice the same: refused.
	f.desireTask("huge", shellTask("true", 0))
	f.desireTask("twice", shellTask("exec sleep 30", 0))
	w := Work{Tasks: []Task{
		{TaskGUID: "huge", Domain: bbs.DomainCFTasks, Resource: bbs.Resource{MemoryMB: 2048}},
		{TaskGUID: "bad/guid", Domain: bbs.DomainCFTasks, Resource: bbs.Resource{MemoryMB: 1}},
		{TaskGUID: "twice", Domain: bbs.DomainCFTasks, Resource: bbs.Resource{MemoryMB: 16}},
		{TaskGUID: "twice", Domain: bbs.DomainCFTasks, Resource: bbs.Resource{MemoryMB: 16}},
	}}
	resp, err := c.client.Perform(ctxT(t), c.presence(), w)
	must(t, err)
	var refused []string
	for _, r := range resp.FailedTasks {
		refused = append(refused, r.TaskGUID)
	}
	if fmt.Sprint(refused) != "[huge bad/guid twice]" || len(resp.Failed) != 0 {
		t.Fatalf("refused %v", refused)
	}
	c.waitTask("twice", bbs.TaskStateRunning, 10*time.Second)
}

func TestTaskReconcile(t *testing.T) {
	f := newFakeBBS()
	root := t.TempDir()
	c1 := startCell(t, f, root, nil)
	f.desireTask("left-running", shellTask("exec sleep 30", 0))
	c1.perform(taskWork("left-running", 64))
	c1.waitTask("left-running", bbs.TaskStateRunning, 10*time.Second)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		info, err := c1.garden.Info("left-running")
		if err != nil || len(info.Processes) != 1 {
			return fmt.Errorf("container %+v %v", info, err)
		}
		return nil
	})
	info, _ := c1.garden.Info("left-running")
	must(t, c1.rep.Stop(ctxT(t))) // the container stays, as LRPs' do

	// While the rep is away, the BBS has another Task running here whose
	// container is gone.
	f.putTask(&bbs.Task{TaskGUID: "ghost-task", Domain: bbs.DomainCFTasks, State: bbs.TaskStateRunning, CellID: "cell-1",
		TaskDefinition: shellTask("true", 0)})

	c2 := startCell(t, f, root, nil)
	c2.cleanupAll()
	if task, _ := f.task("ghost-task"); task.State != bbs.TaskStateCompleted || !task.Failed || task.FailureReason != ReasonContainerMissing {
		t.Fatalf("ghost task %+v", task)
	}
	if task, _ := f.task("left-running"); task.State != bbs.TaskStateCompleted || !task.Failed || task.FailureReason != ReasonTaskRepRestarted {
		t.Fatalf("the task of the earlier run %+v", task)
	}
	if _, err := c2.garden.Info("left-running"); !errors.Is(err, garden.ErrNotFound) {
		t.Fatalf("its container: %v", err)
	}
	assertNothingLeft(t, c2.garden, []int{info.Processes[0].PID}, nil)

	// A Task the BBS no longer has running here (a cancel that never
	// arrived) is stopped by reconcile, without a report.
	f.desireTask("orphan", shellTask("exec sleep 30", 0))
	c2.perform(taskWork("orphan", 64))
	c2.waitTask("orphan", bbs.TaskStateRunning, 10*time.Second)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := c2.rep.State(); len(st.Tasks) != 1 || st.Tasks[0].State != TaskStateRunning {
			return fmt.Errorf("tasks %+v", st.Tasks)
		}
		return nil
	})
	f.cancelTask("orphan")
	must(t, c2.rep.reconcile(ctxT(t)))
	c2.waitNoContainer("orphan")
	if calls := f.callsMatching("complete-task orphan"); len(calls) != 0 {
		t.Fatalf("calls %v", calls)
	}
}

func TestLRPRunsThroughTheLauncher(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", nil)
	c.cleanupAll()
	d := desiredLRP("pg-launched", 1)
	d.Action = &bbs.RunAction{Path: bbs.LifecycleLauncher, Args: []string{"/home/vcap/app", "./testapp", ""},
		Env: []bbs.EnvironmentVariable{{Name: "FROM_CC", Value: "yes"}}}
	f.desire(d)
	c.perform(work("pg-launched", 0))
	a := c.waitState("pg-launched", 0, bbs.StateRunning)
	info, err := c.garden.Info(a.InstanceGUID)
	must(t, err)
	var env map[string]string
	must(t, json.Unmarshal([]byte(get(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/env", a.Ports[0].HostPort))), &env))
	if env["_CWD"] != filepath.Join(info.Dir, "app") || env["HOME"] != info.Dir || env["FROM_CC"] != "yes" || env["INSTANCE_GUID"] != a.InstanceGUID {
		t.Fatalf("the launched app's cwd %q, HOME %q, FROM_CC %q", env["_CWD"], env["HOME"], env["FROM_CC"])
	}
	// The launcher became the app (exec): the container's process is the
	// app itself, so the stop's SIGTERM reaches it.
	if len(info.Processes) < 1 {
		t.Fatalf("processes %+v", info.Processes)
	}
	must(t, c.client.StopLRPInstance(ctxT(t), c.presence(), a.ActualLRPKey, a.ActualLRPInstanceKey))
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !c.logs.has("APP/PROC/WEB", "app received SIGTERM") {
			return fmt.Errorf("logs %q", c.logs.messages("APP/PROC/WEB"))
		}
		return nil
	})
	c.waitNoContainer(a.InstanceGUID)
}

func TestLifecycleMapping(t *testing.T) {
	r := &Rep{cfg: Config{LifecycleBinary: "/opt/minicf"}}
	dir := "/var/cells/c1/containers/g1"
	for _, tc := range []struct {
		action   bbs.RunAction
		setupTo  string
		wantPath string
		wantArgs []string
	}{
		{bbs.RunAction{Path: bbs.LifecycleBuilder, Args: []string{"--app-dir", "/home/vcap/app", "--output-droplet", "/tmp/droplet.tgz",
			"--result=/tmp/result.json", "--command", "/home/vcap/app/bin/run --x=/tmp/y"}}, "/home/vcap/app",
			"/opt/minicf", []string{"builder", "--app-dir", dir + "/app", "--output-droplet", dir + "/tmp/droplet.tgz",
				"--result=" + dir + "/tmp/result.json", "--command", "/home/vcap/app/bin/run --x=/tmp/y"}},
		{bbs.RunAction{Path: bbs.LifecycleLauncher, Args: []string{"/home/vcap/app", "/home/vcap/app/run --url=http://x//y", ""}}, "",
			"/opt/minicf", []string{"launcher", dir + "/app", dir + "/app/run --url=http://x//y", ""}},
		{bbs.RunAction{Path: bbs.LifecycleLauncher, Args: []string{"/srv/app", "./web", "{}"}}, "/srv/app",
			"/opt/minicf", []string{"launcher", dir + "/app", "./web", "{}"}},
		{bbs.RunAction{Path: bbs.LifecycleLauncher, Args: []string{"/home/vcap", "/tmpfile", "/home/vcapx"}}, "",
			"/opt/minicf", []string{"launcher", dir, "/tmpfile", "/home/vcapx"}},
		// Not a lifecycle binary: arguments as they are.
		{bbs.RunAction{Path: "/home/vcap/app/testapp", Args: []string{"/tmp/x"}}, "", dir + "/app/testapp", []string{"/tmp/x"}},
	} {
		p, args, err := r.actionCommand(dir, &tc.action, tc.setupTo)
		if err != nil || p != tc.wantPath || !reflect.DeepEqual(args, tc.wantArgs) {
			t.Errorf("%s %q:\n got %s %q %v\nwant %s %q", tc.action.Path, tc.action.Args, p, args, err, tc.wantPath, tc.wantArgs)
		}
	}
	if _, _, err := r.actionCommand(dir, &bbs.RunAction{Path: "/tmp/lifecycle/healthcheck"}, ""); err == nil {
		t.Error("an unknown lifecycle binary was run")
	}
	// The files the rep reads for a Task stay inside the container.
	cdir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(cdir, "tmp"), 0o755))
	must(t, os.WriteFile(filepath.Join(filepath.Dir(cdir), "outside"), []byte("secret"), 0o644))
	must(t, os.Symlink("../../outside", filepath.Join(cdir, "tmp", "link")))
	if _, err := readContainerFile(cdir, "/tmp/link", "", 100); err == nil {
		t.Error("a link out of the container was followed")
	}
	if _, err := readContainerFile(cdir, "/tmp/../../outside", "", 100); err == nil {
		t.Error("a path out of the container was read")
	}
}

// The cell's own binary (cmd/minicf) has the lifecycle verbs the rep maps
// /tmp/lifecycle/builder and /tmp/lifecycle/launcher to.
func TestMinicfBinaryHasTheLifecycleVerbs(t *testing.T) {
	home := t.TempDir()
	app := filepath.Join(home, "app")
	must(t, os.Mkdir(app, 0o755))
	must(t, os.WriteFile(filepath.Join(app, "Procfile"), []byte("web: ./run\n"), 0o644))
	out := filepath.Join(home, "tmp")
	must(t, os.Mkdir(out, 0o755))
	b, err := exec.Command(minicfBin, "builder", "--app-dir", app, "--output-droplet", filepath.Join(out, "droplet.tgz"),
		"--result", filepath.Join(out, "result.json")).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "-----> Procfile detected") {
		t.Fatalf("minicf builder: %v\n%s", err, b)
	}
	res, err := os.ReadFile(filepath.Join(out, "result.json"))
	must(t, err)
	if !strings.Contains(string(res), `"web":"./run"`) {
		t.Fatalf("result %s", res)
	}
	b, err = exec.Command(minicfBin, "builder", "--app-dir", t.TempDir(), "--output-droplet", filepath.Join(out, "d2.tgz"),
		"--result", filepath.Join(out, "r2.json")).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "no start command: push with -c or add a Procfile with a web: line") {
		t.Fatalf("minicf builder without a start command: %v\n%s", err, b)
	}
	b, err = exec.Command(minicfBin, "launcher", app, `echo "$HOME $(pwd) $1"; exit 4`, "").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 || strings.TrimSpace(string(b)) != home+" "+app {
		t.Fatalf("minicf launcher: %v %q", err, b)
	}
}
