package bbs

import "encoding/json"

// Event names on the BBS event stream, as Diego names them.
const (
	EventDesiredLRPCreated        = "desired_lrp_created"
	EventDesiredLRPChanged        = "desired_lrp_changed"
	EventDesiredLRPRemoved        = "desired_lrp_removed"
	EventActualLRPInstanceCreated = "actual_lrp_instance_created"
	EventActualLRPInstanceChanged = "actual_lrp_instance_changed"
	EventActualLRPInstanceRemoved = "actual_lrp_instance_removed"
	EventActualLRPCrashed         = "actual_lrp_crashed"
)

// Event is one message of the stream: its name and its JSON payload, one of
// the *Event types below.
type Event struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// DesiredLRPCreatedEvent is the payload of desired_lrp_created.
type DesiredLRPCreatedEvent struct {
	DesiredLRP *DesiredLRP `json:"desired_lrp"`
	TraceID    string      `json:"trace_id,omitempty"`
}

// DesiredLRPChangedEvent is the payload of desired_lrp_changed.
type DesiredLRPChangedEvent struct {
	Before  *DesiredLRP `json:"before"`
	After   *DesiredLRP `json:"after"`
	TraceID string      `json:"trace_id,omitempty"`
}

// DesiredLRPRemovedEvent is the payload of desired_lrp_removed.
type DesiredLRPRemovedEvent struct {
	DesiredLRP *DesiredLRP `json:"desired_lrp"`
	TraceID    string      `json:"trace_id,omitempty"`
}

// ActualLRPInstanceCreatedEvent is the payload of actual_lrp_instance_created.
type ActualLRPInstanceCreatedEvent struct {
	ActualLRP *ActualLRP `json:"actual_lrp"`
	TraceID   string     `json:"trace_id,omitempty"`
}

// ActualLRPInfo is the changing part of an ActualLRP, as changed events
// carry it before and after.
type ActualLRPInfo struct {
	ActualLRPNetInfo
	CrashCount      int32           `json:"crash_count"`
	CrashReason     string          `json:"crash_reason,omitempty"`
	State           string          `json:"state"`
	PlacementError  string          `json:"placement_error,omitempty"`
	Since           int64           `json:"since"`
	ModificationTag ModificationTag `json:"modification_tag"`
	Presence        string          `json:"presence"`
	Routable        *bool           `json:"routable,omitempty"`
}

// Info extracts the changing part of a.
func (a *ActualLRP) Info() ActualLRPInfo {
	return ActualLRPInfo{
		ActualLRPNetInfo: a.ActualLRPNetInfo, CrashCount: a.CrashCount, CrashReason: a.CrashReason,
		State: a.State, PlacementError: a.PlacementError, Since: a.Since,
		ModificationTag: a.ModificationTag, Presence: a.Presence, Routable: a.Routable,
	}
}

// ActualLRPInstanceChangedEvent is the payload of actual_lrp_instance_changed.
type ActualLRPInstanceChangedEvent struct {
	ActualLRPKey
	ActualLRPInstanceKey
	Before  ActualLRPInfo `json:"before"`
	After   ActualLRPInfo `json:"after"`
	TraceID string        `json:"trace_id,omitempty"`
}

// ActualLRPInstanceRemovedEvent is the payload of actual_lrp_instance_removed.
type ActualLRPInstanceRemovedEvent struct {
	ActualLRP *ActualLRP `json:"actual_lrp"`
	TraceID   string     `json:"trace_id,omitempty"`
}

// ActualLRPCrashedEvent is the payload of actual_lrp_crashed.
type ActualLRPCrashedEvent struct {
	ActualLRPKey
	ActualLRPInstanceKey
	CrashCount  int32  `json:"crash_count"`
	CrashReason string `json:"crash_reason,omitempty"`
	Since       int64  `json:"since"`
}

// CellID returns the cell an actual-LRP event concerns, for the stream's
// cell filter; desired-LRP events concern every cell and return "".
func (e Event) CellID() string {
	switch e.Type {
	case EventActualLRPInstanceCreated, EventActualLRPInstanceRemoved:
		var p struct {
			ActualLRP *ActualLRP `json:"actual_lrp"`
		}
		if json.Unmarshal(e.Data, &p) == nil && p.ActualLRP != nil {
			return p.ActualLRP.CellID
		}
	case EventActualLRPInstanceChanged, EventActualLRPCrashed:
		var p ActualLRPInstanceKey
		if json.Unmarshal(e.Data, &p) == nil {
			return p.CellID
		}
	}
	return ""
}

// IsActualLRPEvent reports whether the cell filter applies to e.
func (e Event) IsActualLRPEvent() bool {
	switch e.Type {
	case EventActualLRPInstanceCreated, EventActualLRPInstanceChanged, EventActualLRPInstanceRemoved, EventActualLRPCrashed:
		return true
	}
	return false
}
