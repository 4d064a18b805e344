package rep

import "github.com/minicf/minicf/internal/bbs"

// The rep's API, as Diego's: the auctioneer reads a cell's state and sends
// it work (LRP instances and Tasks); the BBS asks it to stop instances and
// to cancel Tasks. Served over mutual TLS.
const (
	PathState = "/state"
	PathWork  = "/work"
	// PathStopLRP is POST /v1/lrps/{process_guid}/instances/{instance_guid}/stop.
	PathStopLRPPattern = "POST /v1/lrps/{process_guid}/instances/{instance_guid}/stop"
	// PathCancelTaskPattern is Diego's POST /v1/tasks/{task_guid}/cancel.
	PathCancelTaskPattern = "POST /v1/tasks/{task_guid}/cancel"
	MaxRequestBytes       = 1 << 20
)

// CancelTaskPath is the cancel path for one Task.
func CancelTaskPath(taskGUID string) string { return "/v1/tasks/" + taskGUID + "/cancel" }

// StopLRPPath is the stop path for one instance.
func StopLRPPath(processGUID, instanceGUID string) string {
	return "/v1/lrps/" + processGUID + "/instances/" + instanceGUID + "/stop"
}

// LRP is one instance slot the auctioneer assigns to a cell.
type LRP struct {
	ProcessGUID   string       `json:"process_guid"`
	Index         int32        `json:"index"`
	Domain        string       `json:"domain"`
	Resource      bbs.Resource `json:"resource"`
	PlacementTags []string     `json:"placement_tags,omitempty"`
}

// Task is a Task the auctioneer assigns to a cell (Diego's rep.Task).
type Task struct {
	TaskGUID      string       `json:"task_guid"`
	Domain        string       `json:"domain"`
	Resource      bbs.Resource `json:"resource"`
	PlacementTags []string     `json:"placement_tags,omitempty"`
}

// Work is a batch of LRPs and Tasks for a cell to start.
type Work struct {
	LRPs  []LRP  `json:"lrps"`
	Tasks []Task `json:"tasks,omitempty"`
}

// WorkResponse lists the LRPs and Tasks the cell could not take (no room
// any more).
type WorkResponse struct {
	Failed      []LRP  `json:"failed_lrps"`
	FailedTasks []Task `json:"failed_tasks,omitempty"`
}

// InstanceSummary is one container the cell holds, for placement scoring.
type InstanceSummary struct {
	ProcessGUID  string       `json:"process_guid"`
	Index        int32        `json:"index"`
	InstanceGUID string       `json:"instance_guid"`
	State        string       `json:"state"` // reserved, starting, running, stopping
	Resource     bbs.Resource `json:"resource"`
}

// TaskSummary is one Task the cell holds.
type TaskSummary struct {
	TaskGUID string       `json:"task_guid"`
	Domain   string       `json:"domain"`
	State    string       `json:"state"` // reserved, running, completing
	Resource bbs.Resource `json:"resource"`
}

// CellState is what GET /state returns. AvailableResources counts what the
// Tasks take too.
type CellState struct {
	CellID             string            `json:"cell_id"`
	Zone               string            `json:"zone,omitempty"`
	TotalResources     bbs.CellCapacity  `json:"total_resources"`
	AvailableResources bbs.CellCapacity  `json:"available_resources"`
	LRPs               []InstanceSummary `json:"lrps"`
	Tasks              []TaskSummary     `json:"tasks"`
	StartingContainers int               `json:"starting_container_count"`
	Evacuating         bool              `json:"evacuating"`
}
