// Package ccapi holds the Cloud Controller v3 resource shapes that minicf's
// Cloud Controller serves and its CLI reads: the JSON field names, states
// and error details are Cloud Controller's own, so the stock cf CLI v8 can
// drive the same API (../shared/cf-cli-v8.md lists what it reads).
package ccapi

import (
	"fmt"
	"time"
)

// APIVersion is what GET / advertises: semver in [3.183.0, 3.211.0), so the
// cf CLI honours route options and keeps the per-process stats path.
const APIVersion = "3.190.0"

// Link is one entry of links.
type Link struct {
	Href   string `json:"href"`
	Method string `json:"method,omitempty"`
}

// Links maps a name to a link.
type Links map[string]Link

// Ref points at another resource: {"guid": "..."}.
type Ref struct {
	GUID string `json:"guid"`
}

// Relationship is {"data": {"guid": ...}}; Data nil encodes as null.
type Relationship struct {
	Data *Ref `json:"data"`
}

// ToOne builds a relationship to guid ("" = null).
func ToOne(guid string) Relationship {
	if guid == "" {
		return Relationship{}
	}
	return Relationship{Data: &Ref{GUID: guid}}
}

// Metadata is labels and annotations.
type Metadata struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// Resource carries the fields every v3 resource has.
type Resource struct {
	GUID      string    `json:"guid"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Links     Links     `json:"links,omitempty"`
	Metadata  *Metadata `json:"metadata,omitempty"`
}

// Pagination is a list's paging block; Next holds an absolute URL or is null.
type Pagination struct {
	TotalResults int   `json:"total_results"`
	TotalPages   int   `json:"total_pages"`
	First        Link  `json:"first"`
	Last         Link  `json:"last"`
	Next         *Link `json:"next"`
	Previous     *Link `json:"previous"`
}

// List is a paginated list of T.
type List[T any] struct {
	Pagination Pagination `json:"pagination"`
	Resources  []T        `json:"resources"`
}

// Organization is an org.
type Organization struct {
	Resource
	Name          string                  `json:"name"`
	Suspended     bool                    `json:"suspended"`
	Relationships map[string]Relationship `json:"relationships"` // quota
}

// Space is a space in an org.
type Space struct {
	Resource
	Name          string                  `json:"name"`
	Relationships map[string]Relationship `json:"relationships"` // organization, quota
}

// Domain is an HTTP domain; a null organization means shared.
type Domain struct {
	Resource
	Name               string                  `json:"name"`
	Internal           bool                    `json:"internal"`
	RouterGroup        *Ref                    `json:"router_group"`
	SupportedProtocols []string                `json:"supported_protocols"`
	Relationships      map[string]Relationship `json:"relationships"` // organization, shared_organizations
}

// DestinationApp names the app (and process type) a destination sends to.
type DestinationApp struct {
	GUID    string              `json:"guid"`
	Process *DestinationProcess `json:"process,omitempty"`
}

// DestinationProcess is the process type of a destination.
type DestinationProcess struct {
	Type string `json:"type"`
}

// Destination is a route mapping: a route sends to an app's process.
type Destination struct {
	GUID     string         `json:"guid"`
	App      DestinationApp `json:"app"`
	Weight   *int           `json:"weight"`
	Port     int            `json:"port"`
	Protocol string         `json:"protocol"` // http1 or http2
}

// RouteDestinations is the body of GET/POST/PATCH /v3/routes/:guid/destinations.
type RouteDestinations struct {
	Destinations []Destination `json:"destinations"`
	Links        Links         `json:"links"`
}

// CurrentDroplet is the body of GET/PATCH
// /v3/apps/:guid/relationships/current_droplet.
type CurrentDroplet struct {
	Data  *Ref  `json:"data"`
	Links Links `json:"links"`
}

// Route is host.domain[/path].
type Route struct {
	Resource
	Protocol      string                  `json:"protocol"` // http
	Host          string                  `json:"host"`
	Path          string                  `json:"path"`
	Port          *int                    `json:"port"`
	URL           string                  `json:"url"`
	Destinations  []Destination           `json:"destinations"`
	Options       map[string]string       `json:"options"`
	Relationships map[string]Relationship `json:"relationships"` // space, domain
}

// Lifecycle is an app's or droplet's build lifecycle.
type Lifecycle struct {
	Type string        `json:"type"` // buildpack
	Data LifecycleData `json:"data"`
}

// LifecycleData lists buildpacks and the stack.
type LifecycleData struct {
	Buildpacks []string `json:"buildpacks"`
	Stack      string   `json:"stack,omitempty"`
}

// App states.
const (
	AppStarted = "STARTED"
	AppStopped = "STOPPED"
)

// App is an application.
type App struct {
	Resource
	Name          string                  `json:"name"`
	State         string                  `json:"state"`
	Lifecycle     Lifecycle               `json:"lifecycle"`
	Relationships map[string]Relationship `json:"relationships"` // space, current_droplet
}

// HealthCheck decides when an instance counts as running and routable.
type HealthCheck struct {
	Type string          `json:"type"` // port, http or process
	Data HealthCheckData `json:"data"`
}

// HealthCheckData holds the health check's settings.
type HealthCheckData struct {
	Timeout           *int   `json:"timeout"`
	InvocationTimeout *int   `json:"invocation_timeout"`
	Endpoint          string `json:"endpoint,omitempty"`
}

// Process is an app's process (web).
type Process struct {
	Resource
	Type                         string                  `json:"type"`
	Command                      *string                 `json:"command"`
	Instances                    int                     `json:"instances"`
	MemoryInMB                   int                     `json:"memory_in_mb"`
	DiskInMB                     int                     `json:"disk_in_mb"`
	LogRateLimitInBytesPerSecond int                     `json:"log_rate_limit_in_bytes_per_second"`
	HealthCheck                  HealthCheck             `json:"health_check"`
	ReadinessHealthCheck         HealthCheck             `json:"readiness_health_check"`
	Relationships                map[string]Relationship `json:"relationships"` // app, revision
	Version                      string                  `json:"version,omitempty"`
	// ProcessInstances is embedded only with ?embed=process_instances.
	ProcessInstances []ProcessInstance `json:"process_instances,omitempty"`
}

// ProcessInstance is one instance as embedded in a process
// (embed=process_instances): since is Unix seconds.
type ProcessInstance struct {
	Index int    `json:"index"`
	State string `json:"state"`
	Since int64  `json:"since"`
}

// Instance states in process stats.
const (
	InstanceRunning  = "RUNNING"
	InstanceStarting = "STARTING"
	InstanceCrashed  = "CRASHED"
	InstanceDown     = "DOWN"
)

// InstancePort is one port of an instance in stats.
type InstancePort struct {
	External             int `json:"external"`
	Internal             int `json:"internal"`
	ExternalTLSProxyPort int `json:"external_tls_proxy_port"`
	InternalTLSProxyPort int `json:"internal_tls_proxy_port"`
}

// Usage is an instance's resource usage.
type Usage struct {
	Time           *time.Time `json:"time,omitempty"`
	CPU            float64    `json:"cpu"`
	CPUEntitlement float64    `json:"cpu_entitlement"`
	Mem            int64      `json:"mem"`
	Disk           int64      `json:"disk"`
	LogRate        int64      `json:"log_rate"`
}

// ProcessStat is one instance in GET /v3/processes/:guid/stats. Host,
// InstanceGUID, CellID and InstanceAddress are how minicf shows where an
// instance runs (CC shows host and instance_ports too).
type ProcessStat struct {
	Type             string         `json:"type"`
	Index            int            `json:"index"`
	State            string         `json:"state"`
	Routable         *bool          `json:"routable"`
	Host             string         `json:"host"`
	InstancePorts    []InstancePort `json:"instance_ports"`
	Uptime           int64          `json:"uptime"`
	MemQuota         int64          `json:"mem_quota"`
	DiskQuota        int64          `json:"disk_quota"`
	LogRateLimit     int64          `json:"log_rate_limit"`
	FdsQuota         int64          `json:"fds_quota"`
	IsolationSegment *string        `json:"isolation_segment"`
	Details          *string        `json:"details"`
	Usage            Usage          `json:"usage"`
	InstanceGUID     string         `json:"instance_guid,omitempty"`
	CellID           string         `json:"cell_id,omitempty"`
	InstanceAddress  string         `json:"instance_address,omitempty"`
}

// Package states.
const (
	PackageAwaitingUpload   = "AWAITING_UPLOAD"
	PackageProcessingUpload = "PROCESSING_UPLOAD"
	PackageReady            = "READY"
	PackageFailed           = "FAILED"
	PackageExpired          = "EXPIRED"
)

// Package is an app's bits.
type Package struct {
	Resource
	Type          string                  `json:"type"` // bits
	State         string                  `json:"state"`
	Data          map[string]any          `json:"data"`
	Relationships map[string]Relationship `json:"relationships"` // app
}

// Build and droplet states.
const (
	BuildStaging = "STAGING"
	BuildStaged  = "STAGED"
	BuildFailed  = "FAILED"
)

// Build stages a package into a droplet.
type Build struct {
	Resource
	State     string    `json:"state"`
	Error     *string   `json:"error"`
	Lifecycle Lifecycle `json:"lifecycle"`
	Package   Ref       `json:"package"`
	Droplet   *Ref      `json:"droplet"`
	CreatedBy any       `json:"created_by,omitempty"`
}

// DropletBuildpack describes a buildpack used by a droplet.
type DropletBuildpack struct {
	Name          string `json:"name"`
	BuildpackName string `json:"buildpack_name"`
	DetectOutput  string `json:"detect_output"`
	Version       string `json:"version"`
}

// Droplet is a staged app, ready to run.
type Droplet struct {
	Resource
	State             string                  `json:"state"`
	Error             *string                 `json:"error"`
	Lifecycle         Lifecycle               `json:"lifecycle"`
	ExecutionMetadata string                  `json:"execution_metadata"`
	ProcessTypes      map[string]string       `json:"process_types"`
	Checksum          *Checksum               `json:"checksum"`
	Buildpacks        []DropletBuildpack      `json:"buildpacks"`
	Stack             string                  `json:"stack"`
	Image             *string                 `json:"image"`
	Relationships     map[string]Relationship `json:"relationships"` // app
}

// Checksum of a droplet.
type Checksum struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Buildpack states and lifecycles.
const (
	BuildpackReady     = "READY"
	LifecycleBuildpack = "buildpack"
)

// Buildpack is an admin buildpack (GET /v3/buildpacks); a null stack
// means any stack.
type Buildpack struct {
	Resource
	Name      string  `json:"name"`
	Stack     *string `json:"stack"`
	Position  int     `json:"position"`
	Enabled   bool    `json:"enabled"`
	Locked    bool    `json:"locked"`
	State     string  `json:"state"` // READY
	Filename  *string `json:"filename"`
	Lifecycle string  `json:"lifecycle"` // buildpack
}

// Job states.
const (
	JobProcessing = "PROCESSING"
	JobComplete   = "COMPLETE"
	JobFailed     = "FAILED"
)

// Job is an asynchronous operation.
type Job struct {
	Resource
	Operation string     `json:"operation"`
	State     string     `json:"state"`
	Errors    []APIError `json:"errors"`
	Warnings  []Warning  `json:"warnings"`
}

// Warning is a job warning.
type Warning struct {
	Detail string `json:"detail"`
}

// APIError is one error of {"errors": [...]}, with CC's codes and titles.
type APIError struct {
	Code   int    `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

func (e APIError) Error() string { return fmt.Sprintf("%s: %s", e.Title, e.Detail) }

// Errors is the body of every error response.
type Errors struct {
	Errors []APIError `json:"errors"`
}

// CC error codes and titles the CLI and the cf CLI depend on.
var (
	ErrNotFound             = APIError{Code: 10000, Title: "CF-NotFound"}            // "Unknown request", "App not found", ...
	ErrInvalidAuthToken     = APIError{Code: 1000, Title: "CF-InvalidAuthToken"}     // 401
	ErrNotAuthenticated     = APIError{Code: 10002, Title: "CF-NotAuthenticated"}    // 401
	ErrUnprocessable        = APIError{Code: 10008, Title: "CF-UnprocessableEntity"} // 422
	ErrBadRequest           = APIError{Code: 1004, Title: "CF-InvalidRequest"}       // 400
	ErrMessageParseError    = APIError{Code: 1001, Title: "CF-MessageParseError"}    // 400
	ErrRequestTooLarge      = APIError{Code: 10013, Title: "CF-RequestEntityTooLarge"}
	ErrServiceUnavailable   = APIError{Code: 10015, Title: "CF-ServiceUnavailable"}
	ErrUniquenessError      = APIError{Code: 10016, Title: "CF-UniquenessError"}
	ErrStagingError         = APIError{Code: 170001, Title: "CF-StagingError"}
	ErrRouteInvalid         = APIError{Code: 210001, Title: "CF-RouteInvalid"}
	ErrRouteHostTaken       = APIError{Code: 210003, Title: "CF-RouteHostTaken"}
	ErrAppPackageInvalid    = APIError{Code: 150001, Title: "CF-AppPackageInvalid"}
	ErrAppBitsUploadInvalid = APIError{Code: 160001, Title: "CF-AppBitsUploadInvalid"}

	ErrUnknown                    = APIError{Code: 10001, Title: "UnknownError"} // 500
	ErrBadQueryParameter          = APIError{Code: 10005, Title: "CF-BadQueryParameter"}
	ErrStatsUnavailable           = APIError{Code: 200002, Title: "CF-StatsUnavailable"} // 503
	ErrPackageBitsAlreadyUploaded = APIError{Code: 150004, Title: "CF-PackageBitsAlreadyUploaded"}
)

// With returns e with a detail.
func (e APIError) With(format string, args ...any) APIError {
	e.Detail = fmt.Sprintf(format, args...)
	return e
}

// Root is GET /.
type Root struct {
	Links map[string]*RootLink `json:"links"`
}

// RootLink is a root document link.
type RootLink struct {
	Href string         `json:"href"`
	Meta map[string]any `json:"meta,omitempty"`
}

// Log-cache shapes (GET /api/v1/read/:source_id), as protojson renders them.
type LogEnvelopeBatch struct {
	Envelopes struct {
		Batch []LogEnvelope `json:"batch"`
	} `json:"envelopes"`
}

// LogEnvelope is one log line: timestamp in ns as a string, payload base64.
type LogEnvelope struct {
	Timestamp  string            `json:"timestamp"`
	SourceID   string            `json:"source_id"`
	InstanceID string            `json:"instance_id"`
	Tags       map[string]string `json:"tags"`
	Log        *LogPayload       `json:"log,omitempty"`
}

// LogPayload is the log part of an envelope.
type LogPayload struct {
	Payload string `json:"payload"` // base64
	Type    string `json:"type"`    // OUT or ERR
}
