package bbs

import "fmt"

// Paths of the BBS API. Like Diego's, every call is a POST whose body is the
// request and whose response body carries either the result or an error.
const (
	PathPing                = "/v1/ping"
	PathDesireLRP           = "/v1/desired_lrp/desire.r2"
	PathUpdateDesiredLRP    = "/v1/desired_lrp/update"
	PathRemoveDesiredLRP    = "/v1/desired_lrp/remove"
	PathDesiredLRPs         = "/v1/desired_lrps/list.r3"
	PathDesiredLRPByGUID    = "/v1/desired_lrps/get_by_process_guid.r3"
	PathRoutingInfos        = "/v1/desired_lrp_routing_infos/list"
	PathActualLRPs          = "/v1/actual_lrps/list"
	PathClaimActualLRP      = "/v1/actual_lrps/claim"
	PathStartActualLRP      = "/v1/actual_lrps/start.r1"
	PathCrashActualLRP      = "/v1/actual_lrps/crash"
	PathRemoveActualLRP     = "/v1/actual_lrps/remove"
	PathFailActualLRP       = "/v1/actual_lrps/fail"
	PathCells               = "/v1/cells/list.r1"
	PathCellHeartbeat       = "/v1/cells/heartbeat" // minicf's stand-in for Locket presence
	PathLRPInstanceEvents   = "/v1/events/lrp_instances.r1"
	PathUpsertDomain        = "/v1/domains/upsert"
	PathDomains             = "/v1/domains/list"
	MaxRequestBytes         = 1 << 20 // a DesiredLRP with the largest routes fits many times over
	EventStreamContentType  = "text/event-stream; charset=utf-8"
	EventStreamCacheControl = "no-cache, no-store, must-revalidate"
)

// Error types, with Diego's names.
const (
	ErrTypeInvalidRequest           = "InvalidRequest"
	ErrTypeInvalidRecord            = "InvalidRecord"
	ErrTypeInvalidJSON              = "InvalidJSON"
	ErrTypeResourceConflict         = "ResourceConflict"
	ErrTypeResourceExists           = "ResourceExists"
	ErrTypeResourceNotFound         = "ResourceNotFound"
	ErrTypeActualLRPCannotBeClaimed = "ActualLRPCannotBeClaimed"
	ErrTypeActualLRPCannotBeStarted = "ActualLRPCannotBeStarted"
	ErrTypeActualLRPCannotBeCrashed = "ActualLRPCannotBeCrashed"
	ErrTypeRunningOnDifferentCell   = "RunningOnDifferentCell"
	// ErrTypeInvalidStateTransition is Diego's error for a Task asked to
	// move where its state machine does not go (a second cell starting a
	// RUNNING Task, completing a PENDING one, cancelling a COMPLETED one).
	ErrTypeInvalidStateTransition = "InvalidStateTransition"
	ErrTypeRequestTooLarge        = "RequestEntityTooLarge"
	ErrTypeUnauthorized           = "Unauthorized"
	ErrTypeUnknown                = "UnknownError"
)

// Error is the BBS error, as every response body may carry it:
// {"error":{"type":"ResourceNotFound","message":"..."}}.
type Error struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Type, e.Message) }

// Is lets errors.Is match BBS errors by type.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Type == e.Type
}

// Sentinel errors for errors.Is.
var (
	ErrResourceNotFound         = &Error{Type: ErrTypeResourceNotFound}
	ErrResourceExists           = &Error{Type: ErrTypeResourceExists}
	ErrResourceConflict         = &Error{Type: ErrTypeResourceConflict}
	ErrActualLRPCannotBeClaimed = &Error{Type: ErrTypeActualLRPCannotBeClaimed}
	ErrActualLRPCannotBeStarted = &Error{Type: ErrTypeActualLRPCannotBeStarted}
	ErrInvalidRequest           = &Error{Type: ErrTypeInvalidRequest}
	ErrInvalidStateTransition   = &Error{Type: ErrTypeInvalidStateTransition}
	ErrRunningOnDifferentCell   = &Error{Type: ErrTypeRunningOnDifferentCell}
)

// NewError makes an Error of a type with a message for a person.
func NewError(typ, format string, args ...any) *Error {
	return &Error{Type: typ, Message: fmt.Sprintf(format, args...)}
}

// Requests and responses.

type DesireLRPRequest struct {
	DesiredLRP *DesiredLRP `json:"desired_lrp"`
}

type UpdateDesiredLRPRequest struct {
	ProcessGUID string            `json:"process_guid"`
	Update      *DesiredLRPUpdate `json:"update"`
}

type RemoveDesiredLRPRequest struct {
	ProcessGUID string `json:"process_guid"`
}

type DesiredLRPsRequest struct {
	Domain       string   `json:"domain,omitempty"`
	ProcessGUIDs []string `json:"process_guids,omitempty"`
}

type DesiredLRPByProcessGUIDRequest struct {
	ProcessGUID string `json:"process_guid"`
}

type ActualLRPsRequest struct {
	Domain      string `json:"domain,omitempty"`
	CellID      string `json:"cell_id,omitempty"`
	ProcessGUID string `json:"process_guid,omitempty"`
	Index       *int32 `json:"index,omitempty"`
}

type ClaimActualLRPRequest struct {
	ProcessGUID          string                `json:"process_guid"`
	Index                int32                 `json:"index"`
	ActualLRPInstanceKey *ActualLRPInstanceKey `json:"actual_lrp_instance_key"`
}

type StartActualLRPRequest struct {
	ActualLRPKey         *ActualLRPKey         `json:"actual_lrp_key"`
	ActualLRPInstanceKey *ActualLRPInstanceKey `json:"actual_lrp_instance_key"`
	ActualLRPNetInfo     *ActualLRPNetInfo     `json:"actual_lrp_net_info"`
	Routable             *bool                 `json:"routable,omitempty"`
}

type CrashActualLRPRequest struct {
	ActualLRPKey         *ActualLRPKey         `json:"actual_lrp_key"`
	ActualLRPInstanceKey *ActualLRPInstanceKey `json:"actual_lrp_instance_key"`
	ErrorMessage         string                `json:"error_message"`
}

type RemoveActualLRPRequest struct {
	ProcessGUID          string                `json:"process_guid"`
	Index                int32                 `json:"index"`
	ActualLRPInstanceKey *ActualLRPInstanceKey `json:"actual_lrp_instance_key,omitempty"`
}

type FailActualLRPRequest struct {
	ActualLRPKey *ActualLRPKey `json:"actual_lrp_key"`
	ErrorMessage string        `json:"error_message"`
}

type CellHeartbeatRequest struct {
	Cell *CellPresence `json:"cell"`
}

type EventsByCellID struct {
	CellID string `json:"cell_id"`
}

type UpsertDomainRequest struct {
	Domain string `json:"domain"`
	TTL    uint32 `json:"ttl"` // seconds
}

// Responses: each carries Error when the call failed.

type ErrorResponse struct {
	Error *Error `json:"error,omitempty"`
}

type DesiredLRPResponse struct {
	Error      *Error      `json:"error,omitempty"`
	DesiredLRP *DesiredLRP `json:"desired_lrp,omitempty"`
}

type DesiredLRPsResponse struct {
	Error       *Error        `json:"error,omitempty"`
	DesiredLRPs []*DesiredLRP `json:"desired_lrps"`
}

type ActualLRPsResponse struct {
	Error      *Error       `json:"error,omitempty"`
	ActualLRPs []*ActualLRP `json:"actual_lrps"`
}

type CellsResponse struct {
	Error *Error          `json:"error,omitempty"`
	Cells []*CellPresence `json:"cells"`
}

type DomainsResponse struct {
	Error   *Error   `json:"error,omitempty"`
	Domains []string `json:"domains"`
}
