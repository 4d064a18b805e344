package rep

import "github.com/minicf/minicf/internal/bbs"

// The rep's API, as Diego's: the auctioneer reads a cell's state and sends
// it work; the BBS asks it to stop instances. Served over mutual TLS.
const (
	PathState = "/state"
	PathWork  = "/work"
	// PathStopLRP is POST /v1/lrps/{process_guid}/instances/{instance_guid}/stop.
	PathStopLRPPattern = "POST /v1/lrps/{process_guid}/instances/{instance_guid}/stop"
	MaxRequestBytes    = 1 << 20
)

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

// Work is a batch of LRPs for a cell to start.
type Work struct {
	LRPs []LRP `json:"lrps"`
}

// WorkResponse lists the LRPs the cell could not take (no room any more).
type WorkResponse struct {
	Failed []LRP `json:"failed_lrps"`
}

// InstanceSummary is one container the cell holds, for placement scoring.
type InstanceSummary struct {
	ProcessGUID  string       `json:"process_guid"`
	Index        int32        `json:"index"`
	InstanceGUID string       `json:"instance_guid"`
	State        string       `json:"state"` // reserved, starting, running, stopping
	Resource     bbs.Resource `json:"resource"`
}

// CellState is what GET /state returns.
type CellState struct {
	CellID             string            `json:"cell_id"`
	Zone               string            `json:"zone,omitempty"`
	TotalResources     bbs.CellCapacity  `json:"total_resources"`
	AvailableResources bbs.CellCapacity  `json:"available_resources"`
	LRPs               []InstanceSummary `json:"lrps"`
	StartingContainers int               `json:"starting_container_count"`
	Evacuating         bool              `json:"evacuating"`
}
