package bbs

import (
	"fmt"
	"net/url"
)

// Domain the Cloud Controller uses for staging tasks.
const DomainCFTasks = "cf-tasks"

// Task states, as Diego names them.
const (
	TaskStatePending   = "PENDING"
	TaskStateRunning   = "RUNNING"
	TaskStateCompleted = "COMPLETED"
	TaskStateResolving = "RESOLVING"
)

// TaskDefinition is what a Task runs: like a DesiredLRP's run info, once.
type TaskDefinition struct {
	RootFS   string          `json:"rootfs,omitempty"`
	Setup    *DownloadAction `json:"setup,omitempty"`
	Action   *RunAction      `json:"action"`
	MemoryMB int32           `json:"memory_mb"`
	DiskMB   int32           `json:"disk_mb"`
	// Upload, when set, is done by the cell (outside the container, as
	// Diego's executor runs an UploadAction) after Action succeeded: the
	// staged droplet goes to the Cloud Controller this way, so a container
	// never needs a network path to the Cloud Controller.
	Upload *UploadAction `json:"upload,omitempty"`
	// ResultFile is a path inside the container whose content (at most
	// MaxTaskResultBytes) becomes the Task's result when the action succeeds.
	ResultFile string `json:"result_file,omitempty"`
	// CompletionCallbackURL gets the completed Task (POST, JSON) from the
	// BBS; the Task is deleted once the callback answered 2xx.
	CompletionCallbackURL string   `json:"completion_callback_url,omitempty"`
	LogGUID               string   `json:"log_guid,omitempty"`
	LogSource             string   `json:"log_source,omitempty"` // e.g. STG
	PlacementTags         []string `json:"placement_tags,omitempty"`
	// MaxDurationMs bounds the run; 0 means no limit.
	MaxDurationMs int64 `json:"max_duration_ms,omitempty"`
}

// UploadAction sends a file from the container to a URL (HTTP PUT; over
// mutual TLS when the URL is https).
type UploadAction struct {
	From string `json:"from"` // path inside the container, e.g. /tmp/droplet.tgz
	To   string `json:"to"`   // URL
}

// Lifecycle binaries: an action path under LifecyclePrefix names a minicf
// verb the cell runs in the container in its place, as Diego cells get the
// buildpack lifecycle's builder and launcher from a blobstore.
const (
	LifecyclePrefix   = "/tmp/lifecycle/"
	LifecycleBuilder  = LifecyclePrefix + "builder"  // stages a package into a droplet
	LifecycleLauncher = LifecyclePrefix + "launcher" // runs a droplet's start command
)

// MaxTaskResultBytes bounds a Task's result, as Diego does (10 KiB).
const MaxTaskResultBytes = 10 << 10

// Task is a one-off process: staging an app is one.
type Task struct {
	TaskDefinition   *TaskDefinition `json:"task_definition"`
	TaskGUID         string          `json:"task_guid"`
	Domain           string          `json:"domain"`
	CellID           string          `json:"cell_id,omitempty"`
	State            string          `json:"state"`
	Result           string          `json:"result,omitempty"`
	Failed           bool            `json:"failed"`
	FailureReason    string          `json:"failure_reason,omitempty"`
	CreatedAt        int64           `json:"created_at"`
	UpdatedAt        int64           `json:"updated_at"`
	FirstCompletedAt int64           `json:"first_completed_at,omitempty"`
}

// Validate names the first field that cannot be stored.
func (t *Task) Validate() error {
	if t.TaskGUID == "" || len(t.TaskGUID) > MaxProcessGUIDLen || !guidChars(t.TaskGUID) {
		return fmt.Errorf("task_guid %q must be 1 to %d letters, digits, '-' or '_'", clip(t.TaskGUID), MaxProcessGUIDLen)
	}
	if t.Domain == "" {
		return fmt.Errorf("domain is empty")
	}
	d := t.TaskDefinition
	if d == nil || d.Action == nil || d.Action.Path == "" {
		return fmt.Errorf("task_definition.action.path is empty: there is nothing to run")
	}
	if d.MemoryMB < 0 || d.DiskMB < 0 {
		return fmt.Errorf("memory_mb and disk_mb must not be negative")
	}
	if d.CompletionCallbackURL != "" {
		u, err := url.Parse(d.CompletionCallbackURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("completion_callback_url %q is not an http(s) URL", clip(d.CompletionCallbackURL))
		}
	}
	return nil
}

// Task API paths, as Diego's.
const (
	PathDesireTask   = "/v1/tasks/desire.r2"
	PathTasks        = "/v1/tasks/list.r2"
	PathTaskByGUID   = "/v1/tasks/get_by_task_guid.r2"
	PathStartTask    = "/v1/tasks/start"    // rep: PENDING → RUNNING on a cell
	PathCompleteTask = "/v1/tasks/complete" // rep: → COMPLETED with result or failure
	PathFailTask     = "/v1/tasks/fail"     // auctioneer: placement failed
	PathCancelTask   = "/v1/tasks/cancel"
	PathDeleteTask   = "/v1/tasks/delete" // after the result was read (no callback)
	// PathTaskEvents is Diego's task event stream: task_created,
	// task_changed and task_removed only (the LRP instance stream never
	// carries them).
	PathTaskEvents = "/v1/events/tasks.r1"
)

// Failure reasons the BBS itself gives a Task, with Diego's wording.
const (
	TaskReasonCancelled       = "task was cancelled"
	TaskReasonCellDisappeared = "cell disappeared before completion"
	TaskReasonNotStarted      = "not started within time limit"
)

// Task events, as Diego's.
const (
	EventTaskCreated = "task_created"
	EventTaskChanged = "task_changed"
	EventTaskRemoved = "task_removed"
)

type DesireTaskRequest struct {
	TaskDefinition *TaskDefinition `json:"task_definition"`
	TaskGUID       string          `json:"task_guid"`
	Domain         string          `json:"domain"`
}

type TasksRequest struct {
	Domain string `json:"domain,omitempty"`
	CellID string `json:"cell_id,omitempty"`
}

type TaskByGUIDRequest struct {
	TaskGUID string `json:"task_guid"`
}

type StartTaskRequest struct {
	TaskGUID string `json:"task_guid"`
	CellID   string `json:"cell_id"`
}

type CompleteTaskRequest struct {
	TaskGUID      string `json:"task_guid"`
	CellID        string `json:"cell_id"`
	Failed        bool   `json:"failed"`
	FailureReason string `json:"failure_reason,omitempty"`
	Result        string `json:"result,omitempty"`
}

type FailTaskRequest struct {
	TaskGUID      string `json:"task_guid"`
	FailureReason string `json:"failure_reason"`
}

// StartTaskResponse says whether the cell should run the Task: false when
// it already runs it (a repeated start), so it must not start it twice.
type StartTaskResponse struct {
	Error       *Error `json:"error,omitempty"`
	ShouldStart bool   `json:"should_start"`
}

type TaskResponse struct {
	Error *Error `json:"error,omitempty"`
	Task  *Task  `json:"task,omitempty"`
}

type TasksResponse struct {
	Error *Error  `json:"error,omitempty"`
	Tasks []*Task `json:"tasks"`
}

// TaskStartRequest asks the auctioneer to place a Task.
type TaskStartRequest struct {
	TaskGUID      string   `json:"task_guid"`
	Domain        string   `json:"domain"`
	Resource      Resource `json:"resource"`
	PlacementTags []string `json:"placement_tags,omitempty"`
}

// NewTaskStartRequest asks for a placement of t.
func NewTaskStartRequest(t *Task) TaskStartRequest {
	r := TaskStartRequest{TaskGUID: t.TaskGUID, Domain: t.Domain}
	if d := t.TaskDefinition; d != nil {
		r.Resource = Resource{MemoryMB: d.MemoryMB, DiskMB: d.DiskMB}
		r.PlacementTags = d.PlacementTags
	}
	return r
}

// Task events' payloads, as Diego's.

// TaskCreatedEvent is the payload of task_created.
type TaskCreatedEvent struct {
	Task *Task `json:"task"`
}

// TaskChangedEvent is the payload of task_changed.
type TaskChangedEvent struct {
	Before *Task `json:"before"`
	After  *Task `json:"after"`
}

// TaskRemovedEvent is the payload of task_removed.
type TaskRemovedEvent struct {
	Task *Task `json:"task"`
}

// IsTaskEvent reports whether e belongs on the task stream rather than on
// the LRP instance stream.
func (e Event) IsTaskEvent() bool {
	switch e.Type {
	case EventTaskCreated, EventTaskChanged, EventTaskRemoved:
		return true
	}
	return false
}
