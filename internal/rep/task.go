package rep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/mbus"
)

// Tasks, as Diego's rep and executor run them:
//
//  1. the auctioneer's work names the Task (guid, domain, resources); the
//     cell reserves its resources and fetches the Task from the BBS;
//  2. StartTask at the BBS: only the first cell to ask runs it (false or an
//     error: the cell drops it);
//  3. a Garden container whose handle is the task guid, with the setup
//     download (Garden's source) and no NetIn and no sidecar;
//  4. the action, with the lifecycle mapping (lifecycle.go), its output
//     line by line to AppLogs (source = log_source, app = log_guid);
//  5. on exit 0: the result file is read from the container (at most
//     bbs.MaxTaskResultBytes), the upload is made (HTTP PUT of a file of the
//     container, with Config.ClientTLS: mutual TLS), then CompleteTask with
//     the result; a non-zero exit, max_duration_ms passed, a missing or
//     oversized result file or a failed upload is CompleteTask failed, with
//     the exit status or the error;
//  6. the container is destroyed.
//
// The BBS cancels a Task with POST /v1/tasks/{task_guid}/cancel: its
// processes are stopped and its container destroyed (the BBS completed it
// already). Reconcile fails a Task the BBS says runs here but that has no
// container ("container missing"), and one whose container an earlier run
// of the rep left (its exit status cannot be known), and stops a Task the
// BBS no longer has running here.

// Task states, as TaskSummary.State reports them.
const (
	TaskStateReserved   = "reserved"   // accepted, not yet started at the BBS
	TaskStateRunning    = "running"    // started: container and process
	TaskStateCompleting = "completing" // exited: result, upload, CompleteTask
)

// Task container properties and process name.
const (
	PropTaskGUID = "task_guid"
	ProcessTask  = "task"
	// DefaultTaskLogSource is the log source of a Task that names none.
	DefaultTaskLogSource = "TASK"
	// ReasonTaskRepRestarted fails a Task whose container an earlier run of
	// the rep left: how it ended cannot be known.
	ReasonTaskRepRestarted = "the cell's rep restarted while the task ran"
	// ReasonTaskCellStopped fails the Tasks a cell stops with StopAll.
	ReasonTaskCellStopped = "the cell stopped before the task completed"
)

// uploadTimeout bounds a Task's upload.
const uploadTimeout = 10 * time.Minute

type taskRun struct {
	guid     string
	domain   string
	resource bbs.Resource

	mu     sync.Mutex
	state  string
	reason string // why a stop fails the Task ("": the BBS cancelled it, nothing to report)
	stopCh chan struct{}
	once   sync.Once
	done   chan struct{}
}

func newTaskRun(t Task) *taskRun {
	return &taskRun{guid: t.TaskGUID, domain: t.Domain, resource: t.Resource, state: TaskStateReserved,
		stopCh: make(chan struct{}), done: make(chan struct{})}
}

func (t *taskRun) getState() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

func (t *taskRun) setState(s string) {
	t.mu.Lock()
	t.state = s
	t.mu.Unlock()
}

// requestStop stops the Task; a non-empty reason completes it failed with
// it, "" (a cancel from the BBS) reports nothing.
func (t *taskRun) requestStop(reason string) {
	t.mu.Lock()
	if reason != "" && t.reason == "" {
		t.reason = reason
	}
	t.mu.Unlock()
	t.once.Do(func() { close(t.stopCh) })
}

func (t *taskRun) stopRequested() bool {
	select {
	case <-t.stopCh:
		return true
	default:
		return false
	}
}

func (t *taskRun) stopReason() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reason
}

// acceptTaskLocked takes a Task if it fits in what is left (used), and
// starts running it. Tasks need no proxy memory.
func (r *Rep) acceptTaskLocked(t Task, used *bbs.CellCapacity) bool {
	need := t.Resource
	fits := t.TaskGUID != "" && len(t.TaskGUID) <= bbs.MaxProcessGUIDLen && validTaskGUID(t.TaskGUID) &&
		r.tasks[t.TaskGUID] == nil && need.MemoryMB >= 0 && need.DiskMB >= 0 &&
		used.MemoryMB+need.MemoryMB <= r.cfg.Capacity.MemoryMB &&
		(r.cfg.Capacity.DiskMB == 0 || used.DiskMB+need.DiskMB <= r.cfg.Capacity.DiskMB) &&
		used.Containers+1 <= r.cfg.Capacity.Containers
	if !fits {
		return false
	}
	used.MemoryMB += need.MemoryMB
	used.DiskMB += need.DiskMB
	used.Containers++
	tr := newTaskRun(t)
	r.tasks[tr.guid] = tr
	r.insts.Add(1)
	go r.runTask(tr)
	return true
}

// validTaskGUID: a task guid becomes the container handle.
func validTaskGUID(g string) bool {
	for i := 0; i < len(g); i++ {
		c := g[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return g != ""
}

// CancelTask stops a Task the BBS cancelled; false if the cell has no such
// Task.
func (r *Rep) CancelTask(taskGUID string) bool {
	r.mu.Lock()
	tr := r.tasks[taskGUID]
	r.mu.Unlock()
	if tr == nil {
		return false
	}
	tr.requestStop("")
	return true
}

// finishTask forgets a Task whose goroutine ends.
func (r *Rep) finishTask(tr *taskRun) {
	r.mu.Lock()
	delete(r.tasks, tr.guid)
	now := time.Now()
	r.taskFinished[tr.guid] = now
	for g, t := range r.taskFinished {
		if now.Sub(t) > 2*r.cfg.PollInterval+time.Minute {
			delete(r.taskFinished, g)
		}
	}
	r.mu.Unlock()
	close(tr.done)
}

func taskLogSource(d *bbs.TaskDefinition) string {
	if d.LogSource != "" {
		return d.LogSource
	}
	return DefaultTaskLogSource
}

// taskLog sends a line to the Task's logs (its log source, its log guid).
func (r *Rep) taskLog(d *bbs.TaskDefinition, format string, args ...any) {
	if r.cfg.AppLogs == nil || d.LogGUID == "" {
		return
	}
	r.cfg.AppLogs(mbus.AppLog{AppID: d.LogGUID, SourceType: taskLogSource(d), InstanceIndex: "0",
		TimestampNs: time.Now().UnixNano(), Message: fmt.Sprintf(format, args...)})
}

// runTask runs a Task the auctioneer gave the cell, start to end.
func (r *Rep) runTask(tr *taskRun) {
	defer r.insts.Done()
	defer r.finishTask(tr)
	log := r.log.With("task_guid", tr.guid)
	ctx, cancel := r.bbsCtx()
	task, err := r.bbs.TaskByGUID(ctx, tr.guid)
	cancel()
	if err != nil {
		log.Warn("task-fetch-failed", "error", err.Error())
		return
	}
	d := task.TaskDefinition
	if task.State != bbs.TaskStatePending || d == nil || d.Action == nil {
		log.Info("task-not-startable", "state", task.State)
		return
	}
	if tr.stopRequested() || r.ctx.Err() != nil {
		return
	}
	ctx, cancel = r.bbsCtx()
	start, err := r.bbs.StartTask(ctx, tr.guid, r.cfg.CellID)
	cancel()
	if err != nil || !start {
		log.Info("task-not-started", "should_start", start, "error", errString(err))
		return
	}
	tr.setState(TaskStateRunning)
	log.Info("task-started")
	res := r.execTask(tr, d, log)
	if res.leave {
		return // the rep stops: the next run's reconcile settles the Task
	}
	if res.report {
		r.completeTask(tr, log, res.failed, res.reason, res.result)
	}
	if res.created {
		r.destroyTask(tr, d, log)
	}
}

// taskResult is how execTask ended.
type taskResult struct {
	leave   bool // the rep is stopping: leave the container as it is
	report  bool // CompleteTask with the rest
	created bool // a container exists and must go
	failed  bool
	reason  string
	result  string
}

func fail(created bool, format string, args ...any) taskResult {
	return taskResult{report: true, created: created, failed: true, reason: fmt.Sprintf(format, args...)}
}

// execTask makes the container, runs the action, reads the result and
// makes the upload.
func (r *Rep) execTask(tr *taskRun, d *bbs.TaskDefinition, log *slog.Logger) taskResult {
	props := map[string]string{
		PropOwner:    OwnerRep,
		PropTaskGUID: tr.guid,
		PropDomain:   tr.domain,
		PropCellID:   r.cfg.CellID,
		PropLogGUID:  d.LogGUID,
		PropMemoryMB: fmt.Sprint(tr.resource.MemoryMB),
		PropDiskMB:   fmt.Sprint(tr.resource.DiskMB),
	}
	spec := garden.ContainerSpec{Handle: tr.guid, MemoryMB: d.MemoryMB, DiskMB: d.DiskMB, Properties: props}
	setupTo := ""
	if d.Setup != nil {
		spec.Source = d.Setup.From
		setupTo = d.Setup.To
	}
	r.taskLog(d, "Cell %s creating container for instance %s", r.cfg.CellID, tr.guid)
	info, err := r.garden.Create(r.ctx, spec)
	if err != nil {
		if r.ctx.Err() != nil {
			return taskResult{leave: true}
		}
		if tr.stopRequested() && tr.stopReason() == "" {
			return taskResult{}
		}
		r.taskLog(d, "Cell %s failed to create container for instance %s: %v", r.cfg.CellID, tr.guid, err)
		return fail(false, "cannot create the container: %v", err)
	}
	r.taskLog(d, "Cell %s successfully created container for instance %s", r.cfg.CellID, tr.guid)
	log.Info("task-container-created", "dir", info.Dir)
	if tr.stopRequested() {
		return r.stoppedTask(tr)
	}
	pathName, args, err := r.actionCommand(info.Dir, d.Action, setupTo)
	if err != nil {
		return fail(true, "%v", err)
	}
	ps := garden.ProcessSpec{Path: pathName, Args: args, Env: taskEnv(d, tr.guid, info), LogName: ProcessTask}
	if dir, rel := containerPath(d.Action.Dir, setupTo); rel {
		ps.Dir = dir
	} else {
		ps.Dir = d.Action.Dir
	}
	var lastErr lastLine
	emit := func(line string) { r.taskLog(d, "%s", line) }
	ps.Stdout = &lineWriter{emit: emit}
	ps.Stderr = &lineWriter{emit: func(line string) { lastErr.set(line); emit(line) }}
	p, err := r.garden.Run(r.ctx, tr.guid, ps)
	if err != nil {
		if r.ctx.Err() != nil {
			return taskResult{leave: true}
		}
		return fail(true, "cannot start the task's process: %v", err)
	}
	exits := make(chan exit, 1)
	go func() {
		status, err := p.Wait()
		exits <- exit{process: ProcessTask, status: status, err: err}
	}()
	var timeout <-chan time.Time
	var limit time.Duration
	if d.MaxDurationMs > 0 {
		limit = time.Duration(d.MaxDurationMs) * time.Millisecond
		t := time.NewTimer(limit)
		defer t.Stop()
		timeout = t.C
	}
	var e exit
	select {
	case <-r.ctx.Done():
		return taskResult{leave: true}
	case <-tr.stopCh:
		r.destroyTask(tr, d, log)
		r.awaitExit(exits)
		res := r.stoppedTask(tr)
		res.created = false
		return res
	case <-timeout:
		log.Warn("task-timed-out", "max_duration", limit.String())
		r.taskLog(d, "Task exceeded its maximum duration of %v: stopping it", limit)
		r.destroyTask(tr, d, log)
		r.awaitExit(exits)
		return fail(false, "exceeded %v timeout", limit)
	case e = <-exits:
	}
	tr.setState(TaskStateCompleting)
	log.Info("task-process-exited", "status", e.status)
	switch {
	case e.err != nil:
		return fail(true, "Exited: %v", e.err)
	case e.status != 0:
		reason := fmt.Sprintf("Exited with status %d", e.status)
		if l := lastErr.get(); l != "" {
			reason += ": " + l
		}
		return fail(true, "%s", reason)
	}
	var result string
	if d.ResultFile != "" {
		if result, err = readContainerFile(info.Dir, d.ResultFile, setupTo, bbs.MaxTaskResultBytes); err != nil {
			return fail(true, "cannot read the result file: %v", err)
		}
	}
	if d.Upload != nil {
		r.taskLog(d, "Uploading %s...", d.Upload.From)
		n, err := r.upload(info.Dir, d.Upload, setupTo)
		if err != nil {
			if r.ctx.Err() != nil {
				return taskResult{leave: true}
			}
			r.taskLog(d, "Uploading %s failed: %v", d.Upload.From, err)
			return fail(true, "upload failed: %v", err)
		}
		r.taskLog(d, "Uploaded %s (%s)", d.Upload.From, byteSize(n))
		log.Info("task-uploaded", "from", d.Upload.From, "to", redactURL(d.Upload.To), "bytes", n)
	}
	return taskResult{report: true, created: true, result: result}
}

// stoppedTask is how a stopped Task ends: reported when the cell stopped
// it (StopAll), not when the BBS cancelled it.
func (r *Rep) stoppedTask(tr *taskRun) taskResult {
	if reason := tr.stopReason(); reason != "" {
		return fail(true, "%s", reason)
	}
	return taskResult{created: true}
}

// awaitExit waits (boundedly) for the process of a destroyed container.
func (r *Rep) awaitExit(exits <-chan exit) {
	t := time.NewTimer(r.cfg.GracePeriod + 10*time.Second)
	defer t.Stop()
	select {
	case <-exits:
	case <-t.C:
	}
}

func (r *Rep) destroyTask(tr *taskRun, d *bbs.TaskDefinition, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), r.cfg.GracePeriod+30*time.Second)
	defer cancel()
	r.taskLog(d, "Cell %s destroying container for instance %s", r.cfg.CellID, tr.guid)
	if err := r.garden.Destroy(ctx, tr.guid, r.cfg.GracePeriod); err != nil && !errors.Is(err, garden.ErrNotFound) {
		log.Error("task-container-destroy-failed", "error", err.Error())
		return
	}
	r.taskLog(d, "Cell %s successfully destroyed container for instance %s", r.cfg.CellID, tr.guid)
	log.Info("task-container-destroyed")
}

// completeTask reports the end of a Task, trying a few times: a lost
// report would leave it RUNNING until reconcile fails it.
func (r *Rep) completeTask(tr *taskRun, log *slog.Logger, failed bool, reason, result string) {
	tr.setState(TaskStateCompleting)
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		ctx, cancel := r.bbsCtx()
		err = r.bbs.CompleteTask(ctx, tr.guid, r.cfg.CellID, failed, reason, result)
		cancel()
		var be *bbs.Error
		if err == nil || errors.As(err, &be) {
			break // done, or refused for good (cancelled meanwhile, ...)
		}
		select {
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		case <-r.ctx.Done():
		}
	}
	if err != nil {
		log.Warn("task-complete-failed", "failed", failed, "reason", reason, "error", err.Error())
		return
	}
	log.Info("task-completed", "failed", failed, "reason", reason, "result_bytes", len(result))
}

// taskEnv is a Task's environment: the container's basics (HOME is
// /home/vcap's directory, the container's), then the action's variables,
// then the cell's CF_INSTANCE_*.
func taskEnv(d *bbs.TaskDefinition, guid string, info garden.ContainerInfo) []string {
	env := []string{
		"HOME=" + info.Dir,
		"TMPDIR=" + filepath.Join(info.Dir, "tmp"),
		"LANG=en_US.UTF-8",
		"USER=vcap",
	}
	for _, e := range d.Action.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	return append(env,
		"CF_INSTANCE_GUID="+guid,
		"CF_INSTANCE_IP="+info.ExternalIP,
		"CF_INSTANCE_INTERNAL_IP="+info.ContainerIP,
	)
}

// readContainerFile reads a file of the container (a container path:
// /home/vcap/..., /tmp/... or relative to the app directory), at most max
// bytes. It never leaves the container's directory, links included.
func readContainerFile(dir, p, setupTo string, max int64) (string, error) {
	f, err := openContainerFile(dir, p, setupTo)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	if int64(len(data)) > max {
		return "", fmt.Errorf("%s is larger than the %d bytes allowed", p, max)
	}
	return string(data), nil
}

func openContainerFile(dir, p, setupTo string) (*os.File, error) {
	rel, ok := containerRel(p, setupTo)
	if !ok {
		if path.IsAbs(p) {
			return nil, fmt.Errorf("%s is not inside the container (/home/vcap/... or /tmp/...)", p)
		}
		rel = path.Join("app", path.Clean(p))
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(rel))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, unwrapPathError(err))
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return f, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// upload PUTs a file of the container to the upload's URL (mutual TLS with
// Config.ClientTLS for https) and returns its size.
func (r *Rep) upload(dir string, u *bbs.UploadAction, setupTo string) (int64, error) {
	f, err := openContainerFile(dir, u.From, setupTo)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(r.ctx, uploadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.To, f)
	if err != nil {
		return 0, fmt.Errorf("the upload URL %s is not usable: %w", redactURL(u.To), err)
	}
	req.ContentLength = fi.Size()
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := r.uploads.Do(req)
	if err != nil {
		return 0, fmt.Errorf("PUT %s: %w", redactURL(u.To), err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 0, fmt.Errorf("PUT %s answered %d: %.200s", redactURL(u.To), resp.StatusCode, strings.TrimSpace(string(answer)))
	}
	return fi.Size(), nil
}

func newUploadClient(cfg Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: cfg.ClientTLS, Proxy: http.ProxyFromEnvironment,
			TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 5 * time.Minute, MaxIdleConnsPerHost: 2},
		Timeout: uploadTimeout,
		// A redirect would send the file elsewhere: refuse it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// redactURL drops user info and the query from a URL before it is logged.
func redactURL(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		slash := strings.IndexByte(rest, '/')
		if at := strings.IndexByte(rest, '@'); at >= 0 && (slash < 0 || at < slash) {
			s = s[:i+3] + rest[at+1:]
		}
	}
	return s
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// lastLine keeps the last non-empty line written (for a failure reason),
// cut to 200 bytes.
type lastLine struct {
	mu   sync.Mutex
	line string
}

func (l *lastLine) set(s string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	l.mu.Lock()
	l.line = s
	l.mu.Unlock()
}

func (l *lastLine) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.line
}
