// Package bbs is minicf's Diego BBS (Bulletin Board System): the store of
// desired and actual long-running processes (DesiredLRP, ActualLRP), of
// one-off Tasks (staging runs as one) and of cell presences, the ActualLRP
// and Task state machines, the event streams that the route emitter and
// others watch (LRP instances; Tasks on a stream of their own), Task
// completion callbacks, and convergence, which keeps what runs equal to
// what is desired. Diego speaks protobuf over HTTP; minicf speaks
// the same messages as JSON (same field names) over HTTP with mutual TLS.
package bbs

import (
	"encoding/json"
	"fmt"
)

// Domain is the LRP domain the Cloud Controller uses for apps.
const DomainCFApps = "cf-apps"

// Route keys in DesiredLRP.Routes, as Diego names them.
const (
	RouterKeyCF       = "cf-router"
	RouterKeyTCP      = "tcp-router"
	RouterKeyInternal = "internal-router"
)

// ModificationTag orders changes to one record. A new epoch starts when a
// record is created; every change increments Index within it.
type ModificationTag struct {
	Epoch string `json:"epoch"`
	Index uint32 `json:"index"`
}

// SucceededBy reports whether other is newer than t, with Diego's rule: a
// blank epoch on either side, or a different epoch, counts as newer.
func (t ModificationTag) SucceededBy(other ModificationTag) bool {
	if t.Epoch == "" || other.Epoch == "" || t.Epoch != other.Epoch {
		return true
	}
	return other.Index > t.Index
}

// Increment returns the tag of the next change.
func (t ModificationTag) Increment() ModificationTag {
	return ModificationTag{Epoch: t.Epoch, Index: t.Index + 1}
}

// Routes holds each router's opaque route JSON, keyed by router (cf-router,
// tcp-router, internal-router, diego-ssh), exactly as Diego keeps them.
type Routes map[string]json.RawMessage

// CFRoute is one entry of routes["cf-router"]: the Cloud Controller writes
// one per route mapping, each with one hostname (host.domain[/path]).
type CFRoute struct {
	Hostnames        []string          `json:"hostnames"`
	Port             uint32            `json:"port"`
	RouteServiceURL  string            `json:"route_service_url,omitempty"`
	IsolationSegment string            `json:"isolation_segment,omitempty"`
	Protocol         string            `json:"protocol,omitempty"`
	Options          map[string]string `json:"options,omitempty"`
}

// CFRoutes decodes routes["cf-router"]; a missing key is no routes.
func (r Routes) CFRoutes() ([]CFRoute, error) {
	raw, ok := r[RouterKeyCF]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var out []CFRoute
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("routes[%q] is not a list of {hostnames, port}: %w", RouterKeyCF, err)
	}
	return out, nil
}

// SetCFRoutes returns a copy of r with routes["cf-router"] set to routes.
func (r Routes) SetCFRoutes(routes []CFRoute) Routes {
	out := Routes{}
	for k, v := range r {
		out[k] = v
	}
	if routes == nil {
		routes = []CFRoute{}
	}
	b, _ := json.Marshal(routes)
	out[RouterKeyCF] = b
	return out
}

// MetricTagValue is a tag that is either fixed or filled in per instance.
type MetricTagValue struct {
	Static  string `json:"static,omitempty"`
	Dynamic string `json:"dynamic,omitempty"` // "INDEX" or "INSTANCE_GUID"
}

// EnvironmentVariable is one variable of a RunAction.
type EnvironmentVariable struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// RunAction starts the app's process, as Diego's RunAction does.
type RunAction struct {
	Path string                `json:"path"`
	Args []string              `json:"args,omitempty"`
	Dir  string                `json:"dir,omitempty"`
	Env  []EnvironmentVariable `json:"env,omitempty"`
	User string                `json:"user,omitempty"`
}

// DownloadAction puts the app's files into the container before it runs:
// From is a local directory or file (file:// or a plain path) or an http(s)
// URL of a .tgz; To is the directory inside the container.
type DownloadAction struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Check is one health check: exactly one of TCP and HTTP is set.
type Check struct {
	TCPCheck  *TCPCheck  `json:"tcp_check,omitempty"`
	HTTPCheck *HTTPCheck `json:"http_check,omitempty"`
}

// TCPCheck passes when the port accepts a connection.
type TCPCheck struct {
	Port             uint32 `json:"port"`
	ConnectTimeoutMs uint64 `json:"connect_timeout_ms,omitempty"`
}

// HTTPCheck passes when GET path on the port answers 200.
type HTTPCheck struct {
	Port             uint32 `json:"port"`
	Path             string `json:"path"`
	RequestTimeoutMs uint64 `json:"request_timeout_ms,omitempty"`
}

// CheckDefinition holds the checks that decide when an instance is running.
// No checks means a process check: running once the process started.
type CheckDefinition struct {
	Checks []Check `json:"checks,omitempty"`
}

// CertificateProperties go into the instance identity certificate.
type CertificateProperties struct {
	OrganizationalUnit []string `json:"organizational_unit,omitempty"`
}

// DesiredLRP is an app process the platform must keep running.
type DesiredLRP struct {
	ProcessGUID           string                    `json:"process_guid"`
	Domain                string                    `json:"domain"`
	Instances             int32                     `json:"instances"`
	Ports                 []uint32                  `json:"ports,omitempty"`
	Routes                Routes                    `json:"routes,omitempty"`
	LogGUID               string                    `json:"log_guid,omitempty"`
	MetricTags            map[string]MetricTagValue `json:"metric_tags,omitempty"`
	Annotation            string                    `json:"annotation,omitempty"`
	MemoryMB              int32                     `json:"memory_mb"`
	DiskMB                int32                     `json:"disk_mb"`
	RootFS                string                    `json:"rootfs,omitempty"`
	Setup                 *DownloadAction           `json:"setup,omitempty"`
	Action                *RunAction                `json:"action"`
	CheckDefinition       *CheckDefinition          `json:"check_definition,omitempty"`
	StartTimeoutMs        int64                     `json:"start_timeout_ms,omitempty"`
	CertificateProperties *CertificateProperties    `json:"certificate_properties,omitempty"`
	PlacementTags         []string                  `json:"placement_tags,omitempty"`
	ModificationTag       ModificationTag           `json:"modification_tag"`
}

// Limits a DesiredLRP must respect.
const (
	MaxInstances      = 1000
	MaxRoutesBytes    = 128 << 10 // Diego's limit on all route JSON together
	MaxProcessGUIDLen = 255
)

// Validate names the first field that cannot be stored.
func (d *DesiredLRP) Validate() error {
	if d.ProcessGUID == "" {
		return fmt.Errorf("process_guid is empty")
	}
	if len(d.ProcessGUID) > MaxProcessGUIDLen || !guidChars(d.ProcessGUID) {
		return fmt.Errorf("process_guid %q must be at most %d letters, digits, '-' or '_'", clip(d.ProcessGUID), MaxProcessGUIDLen)
	}
	if d.Domain == "" {
		return fmt.Errorf("domain is empty")
	}
	if d.Instances < 0 || d.Instances > MaxInstances {
		return fmt.Errorf("instances must be between 0 and %d, not %d", MaxInstances, d.Instances)
	}
	if d.Action == nil || d.Action.Path == "" {
		return fmt.Errorf("action.path is empty: there is nothing to run")
	}
	if d.MemoryMB < 0 || d.DiskMB < 0 {
		return fmt.Errorf("memory_mb and disk_mb must not be negative")
	}
	for _, p := range d.Ports {
		if p == 0 || p > 65535 {
			return fmt.Errorf("port %d is not between 1 and 65535", p)
		}
	}
	if err := d.Routes.validate(); err != nil {
		return err
	}
	if d.CheckDefinition != nil {
		for i, c := range d.CheckDefinition.Checks {
			if (c.TCPCheck == nil) == (c.HTTPCheck == nil) {
				return fmt.Errorf("check_definition.checks[%d] must have exactly one of tcp_check and http_check", i)
			}
		}
	}
	return nil
}

func (r Routes) validate() error {
	total := 0
	for k, v := range r {
		total += len(v)
		if !json.Valid(v) {
			return fmt.Errorf("routes[%q] is not valid JSON", clip(k))
		}
	}
	if total > MaxRoutesBytes {
		return fmt.Errorf("routes hold %d bytes, more than the %d allowed", total, MaxRoutesBytes)
	}
	if _, err := r.CFRoutes(); err != nil {
		return err
	}
	return nil
}

// DesiredLRPUpdate is the part of a DesiredLRP that may change in place.
// Anything else (ports, the action) needs a new LRP.
type DesiredLRPUpdate struct {
	Instances  *int32                    `json:"instances,omitempty"`
	Routes     *Routes                   `json:"routes,omitempty"`
	Annotation *string                   `json:"annotation,omitempty"`
	MetricTags map[string]MetricTagValue `json:"metric_tags,omitempty"`
}

// ActualLRP states, as Diego names them.
const (
	StateUnclaimed = "UNCLAIMED"
	StateClaimed   = "CLAIMED"
	StateRunning   = "RUNNING"
	StateCrashed   = "CRASHED"
)

// Presence of an ActualLRP.
const (
	PresenceOrdinary   = "ORDINARY"
	PresenceEvacuating = "EVACUATING"
	PresenceSuspect    = "SUSPECT"
)

// PortMapping says how a container port is reached from outside the cell.
type PortMapping struct {
	ContainerPort         uint32 `json:"container_port"`
	HostPort              uint32 `json:"host_port"`
	ContainerTLSProxyPort uint32 `json:"container_tls_proxy_port,omitempty"`
	HostTLSProxyPort      uint32 `json:"host_tls_proxy_port,omitempty"`
}

// ActualLRPKey names an instance slot of a DesiredLRP.
type ActualLRPKey struct {
	ProcessGUID string `json:"process_guid"`
	Index       int32  `json:"index"`
	Domain      string `json:"domain"`
}

// ActualLRPInstanceKey names who holds the slot: the container on a cell.
type ActualLRPInstanceKey struct {
	InstanceGUID string `json:"instance_guid"`
	CellID       string `json:"cell_id"`
}

// ActualLRPNetInfo is where a running instance can be reached.
type ActualLRPNetInfo struct {
	Address          string        `json:"address"`
	Ports            []PortMapping `json:"ports"`
	InstanceAddress  string        `json:"instance_address"`
	PreferredAddress string        `json:"preferred_address,omitempty"` // HOST or INSTANCE
}

// ActualLRP is one instance of a DesiredLRP, in one of four states.
type ActualLRP struct {
	ActualLRPKey
	ActualLRPInstanceKey
	ActualLRPNetInfo
	State           string          `json:"state"`
	CrashCount      int32           `json:"crash_count"`
	CrashReason     string          `json:"crash_reason,omitempty"`
	PlacementError  string          `json:"placement_error,omitempty"`
	Since           int64           `json:"since"`
	ModificationTag ModificationTag `json:"modification_tag"`
	Presence        string          `json:"presence"`
	Routable        *bool           `json:"routable,omitempty"`
}

// IsRoutable is Diego's reading of the optional routable flag.
func (a *ActualLRP) IsRoutable() bool { return a.Routable == nil || *a.Routable }

// AllowsTransitionTo applies Diego's ActualLRP state machine: whether an
// instance in a's state may move to state for the given instance key.
func (a *ActualLRP) AllowsTransitionTo(key ActualLRPInstanceKey, state string) bool {
	same := a.ActualLRPInstanceKey == key
	empty := key == ActualLRPInstanceKey{}
	switch a.State {
	case StateUnclaimed:
		return state == StateUnclaimed || state == StateClaimed || state == StateRunning
	case StateClaimed:
		switch state {
		case StateUnclaimed:
			return empty
		case StateClaimed, StateCrashed:
			return same
		case StateRunning:
			return true
		}
	case StateRunning:
		switch state {
		case StateUnclaimed:
			return empty
		case StateClaimed, StateRunning, StateCrashed:
			return same
		}
	case StateCrashed:
		switch state {
		case StateUnclaimed:
			return empty
		case StateClaimed, StateRunning:
			return same
		}
	}
	return false
}

// Resource is what one instance needs on a cell.
type Resource struct {
	MemoryMB int32 `json:"memory_mb"`
	DiskMB   int32 `json:"disk_mb"`
}

// CellCapacity is what a cell offers.
type CellCapacity struct {
	MemoryMB   int32 `json:"memory_mb"`
	DiskMB     int32 `json:"disk_mb"`
	Containers int32 `json:"containers"`
}

// CellPresence is a cell's heartbeat: who it is, where its rep listens and
// what it can hold. A cell whose heartbeat stops for its TTL is gone.
type CellPresence struct {
	CellID     string       `json:"cell_id"`
	RepAddress string       `json:"rep_address"` // host:port of the rep's API
	RepURL     string       `json:"rep_url"`     // https://host:port
	Zone       string       `json:"zone,omitempty"`
	Capacity   CellCapacity `json:"capacity"`
	// Address is the cell's IP as instances report it (ActualLRP address).
	Address string `json:"address,omitempty"`
}

// Validate names the first field a presence cannot go without.
func (c *CellPresence) Validate() error {
	if c.CellID == "" || len(c.CellID) > 255 || !guidChars(c.CellID) {
		return fmt.Errorf("cell_id %q must be 1 to 255 letters, digits, '-' or '_'", clip(c.CellID))
	}
	if c.RepURL == "" {
		return fmt.Errorf("rep_url is empty")
	}
	if c.Capacity.MemoryMB <= 0 || c.Capacity.Containers <= 0 {
		return fmt.Errorf("capacity must offer memory and containers")
	}
	return nil
}

func guidChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// LRPStartRequest asks the auctioneer to place instances of a DesiredLRP.
type LRPStartRequest struct {
	ProcessGUID   string   `json:"process_guid"`
	Domain        string   `json:"domain"`
	Indices       []int32  `json:"indices"`
	Resource      Resource `json:"resource"`
	PlacementTags []string `json:"placement_tags,omitempty"`
}

// NewLRPStartRequest asks for the given indices of d.
func NewLRPStartRequest(d *DesiredLRP, indices ...int32) LRPStartRequest {
	return LRPStartRequest{ProcessGUID: d.ProcessGUID, Domain: d.Domain, Indices: indices,
		Resource: Resource{MemoryMB: d.MemoryMB, DiskMB: d.DiskMB}, PlacementTags: d.PlacementTags}
}
