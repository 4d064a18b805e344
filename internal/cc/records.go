package cc

import (
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

// The stored records. Each is kept whole as JSON (store.go); the columns()
// are the lookup columns of its table.

type orgRec struct {
	GUID      string    `json:"guid"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (r *orgRec) key() string        { return r.GUID }
func (r *orgRec) created() time.Time { return r.CreatedAt }
func (r *orgRec) columns() []any     { return []any{r.Name} }

type spaceRec struct {
	GUID      string    `json:"guid"`
	Name      string    `json:"name"`
	OrgGUID   string    `json:"org_guid"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (r *spaceRec) key() string        { return r.GUID }
func (r *spaceRec) created() time.Time { return r.CreatedAt }
func (r *spaceRec) columns() []any     { return []any{r.OrgGUID, r.Name} }

type domainRec struct {
	GUID      string    `json:"guid"`
	Name      string    `json:"name"`
	OrgGUID   string    `json:"org_guid,omitempty"` // "" = shared
	Internal  bool      `json:"internal,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (r *domainRec) key() string        { return r.GUID }
func (r *domainRec) created() time.Time { return r.CreatedAt }
func (r *domainRec) columns() []any     { return []any{r.Name} }

type appRec struct {
	GUID        string            `json:"guid"`
	Name        string            `json:"name"`
	SpaceGUID   string            `json:"space_guid"`
	State       string            `json:"state"`
	Buildpacks  []string          `json:"buildpacks,omitempty"`
	Stack       string            `json:"stack,omitempty"`
	DropletGUID string            `json:"droplet_guid,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

func (r *appRec) key() string        { return r.GUID }
func (r *appRec) created() time.Time { return r.CreatedAt }
func (r *appRec) columns() []any     { return []any{r.SpaceGUID, r.Name} }

// Health check types.
const (
	hcPort    = "port"
	hcHTTP    = "http"
	hcProcess = "process"
)

type processRec struct {
	GUID                string  `json:"guid"`
	AppGUID             string  `json:"app_guid"`
	Type                string  `json:"type"`
	Command             *string `json:"command,omitempty"` // nil: the droplet's
	Instances           int     `json:"instances"`
	MemoryMB            int     `json:"memory_mb"`
	DiskMB              int     `json:"disk_mb"`
	LogRateLimit        int64   `json:"log_rate_limit"`
	HealthCheckType     string  `json:"health_check_type"`
	HealthCheckEndpoint string  `json:"health_check_endpoint,omitempty"`
	HealthCheckTimeout  *int    `json:"health_check_timeout,omitempty"`
	InvocationTimeout   *int    `json:"invocation_timeout,omitempty"`
	// Version changes on every start, restart and port change, so the LRP
	// (process guid <guid>-<version>) is a new one, as CC's process.version.
	Version string `json:"version"`
	// Ports are the container ports of the LRP last desired (ports cannot
	// change on a DesiredLRP: a new set needs a new version).
	Ports     []uint32  `json:"ports,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (r *processRec) key() string        { return r.GUID }
func (r *processRec) created() time.Time { return r.CreatedAt }
func (r *processRec) columns() []any     { return []any{r.AppGUID, r.Type} }

// lrpGUID is the DesiredLRP's process guid, as CC makes it.
func (r *processRec) lrpGUID() string { return r.GUID + "-" + r.Version }

type routeRec struct {
	GUID       string            `json:"guid"`
	Host       string            `json:"host"`
	Path       string            `json:"path"`
	DomainGUID string            `json:"domain_guid"`
	SpaceGUID  string            `json:"space_guid"`
	Options    map[string]string `json:"options,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at"`
}

func (r *routeRec) key() string        { return r.GUID }
func (r *routeRec) created() time.Time { return r.CreatedAt }
func (r *routeRec) columns() []any {
	return []any{r.SpaceGUID, r.DomainGUID, r.Host, r.Path}
}

type destRec struct {
	GUID        string    `json:"guid"`
	RouteGUID   string    `json:"route_guid"`
	AppGUID     string    `json:"app_guid"`
	ProcessType string    `json:"process_type"`
	Port        int       `json:"port"`
	Protocol    string    `json:"protocol"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func (r *destRec) key() string        { return r.GUID }
func (r *destRec) created() time.Time { return r.CreatedAt }
func (r *destRec) columns() []any     { return []any{r.RouteGUID, r.AppGUID} }

type packageRec struct {
	GUID      string    `json:"guid"`
	AppGUID   string    `json:"app_guid"`
	Type      string    `json:"type"`
	State     string    `json:"state"`
	File      string    `json:"file,omitempty"` // name under <state>/packages
	SHA1      string    `json:"sha1,omitempty"`
	SHA256    string    `json:"sha256,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (r *packageRec) key() string        { return r.GUID }
func (r *packageRec) created() time.Time { return r.CreatedAt }
func (r *packageRec) columns() []any     { return []any{r.AppGUID} }

type buildRec struct {
	GUID          string    `json:"guid"`
	AppGUID       string    `json:"app_guid"`
	PackageGUID   string    `json:"package_guid"`
	DropletGUID   string    `json:"droplet_guid"`
	State         string    `json:"state"`
	Error         string    `json:"error,omitempty"`
	Buildpacks    []string  `json:"buildpacks,omitempty"`
	Stack         string    `json:"stack,omitempty"`
	CreatedByName string    `json:"created_by_name,omitempty"`
	CreatedByGUID string    `json:"created_by_guid,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func (r *buildRec) key() string        { return r.GUID }
func (r *buildRec) created() time.Time { return r.CreatedAt }
func (r *buildRec) columns() []any     { return []any{r.AppGUID, r.PackageGUID} }

type dropletRec struct {
	GUID              string            `json:"guid"`
	AppGUID           string            `json:"app_guid"`
	PackageGUID       string            `json:"package_guid"`
	BuildGUID         string            `json:"build_guid"`
	State             string            `json:"state"`
	Error             string            `json:"error,omitempty"`
	ProcessTypes      map[string]string `json:"process_types,omitempty"`
	ExecutionMetadata string            `json:"execution_metadata,omitempty"`
	DetectedBuildpack string            `json:"detected_buildpack,omitempty"`
	Buildpacks        []string          `json:"buildpacks,omitempty"`        // the build's (chosen)
	StagedBuildpacks  []stagedBuildpack `json:"staged_buildpacks,omitempty"` // the ones that ran (the result's)
	Stack             string            `json:"stack,omitempty"`
	File              string            `json:"file,omitempty"` // name under <state>/droplets
	SHA256            string            `json:"sha256,omitempty"`
	CreatedAt         time.Time         `json:"created_at"`
	UpdatedAt         time.Time         `json:"updated_at"`
}

// stagedBuildpack is a buildpack that staged a droplet: Key its admin
// name (go_buildpack), Name its own (go).
type stagedBuildpack struct {
	Key          string `json:"key"`
	Name         string `json:"name,omitempty"`
	Version      string `json:"version,omitempty"`
	DetectOutput string `json:"detect_output,omitempty"`
}

func (r *dropletRec) key() string        { return r.GUID }
func (r *dropletRec) created() time.Time { return r.CreatedAt }
func (r *dropletRec) columns() []any     { return []any{r.AppGUID, r.PackageGUID} }

type jobRec struct {
	GUID      string           `json:"guid"`
	Operation string           `json:"operation"`
	State     string           `json:"state"`
	Errors    []ccapi.APIError `json:"errors,omitempty"`
	Warnings  []ccapi.Warning  `json:"warnings,omitempty"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
}

func (r *jobRec) key() string        { return r.GUID }
func (r *jobRec) created() time.Time { return r.CreatedAt }
func (r *jobRec) columns() []any     { return nil }

func newGUID() string { return uuid.NewString() }

// Presenters: records to the v3 shapes. base is the absolute API URL.

// apiTime is how CC shows times: UTC, whole seconds.
func apiTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

func emptyMetadata() *ccapi.Metadata {
	return &ccapi.Metadata{Labels: map[string]string{}, Annotations: map[string]string{}}
}

func resource(guid string, created, updated time.Time, links ccapi.Links) ccapi.Resource {
	return ccapi.Resource{GUID: guid, CreatedAt: apiTime(created), UpdatedAt: apiTime(updated), Links: links, Metadata: emptyMetadata()}
}

func link(href string) ccapi.Link { return ccapi.Link{Href: href} }

func linkM(href, method string) ccapi.Link { return ccapi.Link{Href: href, Method: method} }

func presentOrg(base string, o *orgRec) ccapi.Organization {
	self := base + "/v3/organizations/" + o.GUID
	return ccapi.Organization{
		Resource: resource(o.GUID, o.CreatedAt, o.UpdatedAt, ccapi.Links{
			"self": link(self), "domains": link(self + "/domains"), "default_domain": link(self + "/domains/default"),
		}),
		Name:          o.Name,
		Relationships: map[string]ccapi.Relationship{"quota": ccapi.ToOne("")},
	}
}

func presentSpace(base string, s *spaceRec) ccapi.Space {
	self := base + "/v3/spaces/" + s.GUID
	return ccapi.Space{
		Resource: resource(s.GUID, s.CreatedAt, s.UpdatedAt, ccapi.Links{
			"self": link(self), "organization": link(base + "/v3/organizations/" + s.OrgGUID),
			"features":       link(self + "/features"),
			"apply_manifest": linkM(self+"/actions/apply_manifest", "POST"),
		}),
		Name: s.Name,
		Relationships: map[string]ccapi.Relationship{
			"organization": ccapi.ToOne(s.OrgGUID), "quota": ccapi.ToOne(""),
		},
	}
}

func presentDomain(base string, d *domainRec) ccapi.Domain {
	self := base + "/v3/domains/" + d.GUID
	links := ccapi.Links{"self": link(self), "route_reservations": link(self + "/route_reservations")}
	if d.OrgGUID != "" {
		links["organization"] = link(base + "/v3/organizations/" + d.OrgGUID)
	}
	return ccapi.Domain{
		Resource:           resource(d.GUID, d.CreatedAt, d.UpdatedAt, links),
		Name:               d.Name,
		Internal:           d.Internal,
		SupportedProtocols: []string{"http"},
		Relationships:      map[string]ccapi.Relationship{"organization": ccapi.ToOne(d.OrgGUID)},
	}
}

func appLifecycle(a *appRec) ccapi.Lifecycle {
	bps := a.Buildpacks
	if bps == nil {
		bps = []string{}
	}
	stack := a.Stack
	if stack == "" {
		stack = DefaultStack
	}
	return ccapi.Lifecycle{Type: "buildpack", Data: ccapi.LifecycleData{Buildpacks: bps, Stack: stack}}
}

func presentApp(base string, a *appRec) ccapi.App {
	self := base + "/v3/apps/" + a.GUID
	return ccapi.App{
		Resource: resource(a.GUID, a.CreatedAt, a.UpdatedAt, ccapi.Links{
			"self": link(self), "space": link(base + "/v3/spaces/" + a.SpaceGUID),
			"processes": link(self + "/processes"), "packages": link(self + "/packages"),
			"environment_variables": link(self + "/environment_variables"),
			"current_droplet":       link(self + "/droplets/current"), "droplets": link(self + "/droplets"),
			"tasks": link(self + "/tasks"), "start": linkM(self+"/actions/start", "POST"),
			"stop": linkM(self+"/actions/stop", "POST"), "revisions": link(self + "/revisions"),
			"deployed_revisions": link(self + "/revisions/deployed"), "features": link(self + "/features"),
		}),
		Name:      a.Name,
		State:     a.State,
		Lifecycle: appLifecycle(a),
		Relationships: map[string]ccapi.Relationship{
			"space": ccapi.ToOne(a.SpaceGUID), "current_droplet": ccapi.ToOne(a.DropletGUID),
		},
	}
}

func healthCheck(p *processRec) ccapi.HealthCheck {
	hc := ccapi.HealthCheck{Type: p.HealthCheckType, Data: ccapi.HealthCheckData{
		Timeout: p.HealthCheckTimeout, InvocationTimeout: p.InvocationTimeout}}
	if p.HealthCheckType == hcHTTP {
		hc.Data.Endpoint = p.HealthCheckEndpoint
		if hc.Data.Endpoint == "" {
			hc.Data.Endpoint = "/"
		}
	}
	return hc
}

// presentProcess shows the command given, else the droplet's for the type.
func presentProcess(base string, p *processRec, droplet *dropletRec) ccapi.Process {
	self := base + "/v3/processes/" + p.GUID
	cmd := p.Command
	if cmd == nil && droplet != nil {
		if c, ok := droplet.ProcessTypes[p.Type]; ok {
			cmd = &c
		}
	}
	return ccapi.Process{
		Resource: resource(p.GUID, p.CreatedAt, p.UpdatedAt, ccapi.Links{
			"self": link(self), "scale": linkM(self+"/actions/scale", "POST"),
			"app": link(base + "/v3/apps/" + p.AppGUID), "stats": link(self + "/stats"),
		}),
		Type:                         p.Type,
		Command:                      cmd,
		Instances:                    p.Instances,
		MemoryInMB:                   p.MemoryMB,
		DiskInMB:                     p.DiskMB,
		LogRateLimitInBytesPerSecond: int(p.LogRateLimit),
		HealthCheck:                  healthCheck(p),
		ReadinessHealthCheck:         ccapi.HealthCheck{Type: hcProcess},
		Relationships:                map[string]ccapi.Relationship{"app": ccapi.ToOne(p.AppGUID), "revision": ccapi.ToOne("")},
		Version:                      p.Version,
	}
}

// routeURL is host.domain[/path], as CC's route.uri.
func routeURL(r *routeRec, domain string) string {
	u := domain
	if r.Host != "" {
		u = r.Host + "." + domain
	}
	return u + r.Path
}

func presentDestination(d *destRec) ccapi.Destination {
	return ccapi.Destination{GUID: d.GUID, App: ccapi.DestinationApp{GUID: d.AppGUID,
		Process: &ccapi.DestinationProcess{Type: d.ProcessType}}, Port: d.Port, Protocol: d.Protocol}
}

func presentRoute(base string, r *routeRec, domain string, dests []*destRec) ccapi.Route {
	self := base + "/v3/routes/" + r.GUID
	out := ccapi.Route{
		Resource: resource(r.GUID, r.CreatedAt, r.UpdatedAt, ccapi.Links{
			"self": link(self), "space": link(base + "/v3/spaces/" + r.SpaceGUID),
			"domain": link(base + "/v3/domains/" + r.DomainGUID), "destinations": link(self + "/destinations"),
		}),
		Protocol:     "http",
		Host:         r.Host,
		Path:         r.Path,
		URL:          routeURL(r, domain),
		Destinations: []ccapi.Destination{},
		Options:      map[string]string{},
		Relationships: map[string]ccapi.Relationship{
			"space": ccapi.ToOne(r.SpaceGUID), "domain": ccapi.ToOne(r.DomainGUID),
		},
	}
	for k, v := range r.Options {
		out.Options[k] = v
	}
	sortDests(dests)
	for _, d := range dests {
		out.Destinations = append(out.Destinations, presentDestination(d))
	}
	return out
}

func sortDests(d []*destRec) {
	sort.SliceStable(d, func(i, j int) bool {
		if !d[i].CreatedAt.Equal(d[j].CreatedAt) {
			return d[i].CreatedAt.Before(d[j].CreatedAt)
		}
		return d[i].GUID < d[j].GUID
	})
}

func presentPackage(base string, p *packageRec) ccapi.Package {
	self := base + "/v3/packages/" + p.GUID
	data := map[string]any{"error": nil, "checksum": map[string]any{"type": "sha256", "value": nil}}
	if p.SHA256 != "" {
		data["checksum"] = map[string]any{"type": "sha256", "value": p.SHA256}
	}
	return ccapi.Package{
		Resource: resource(p.GUID, p.CreatedAt, p.UpdatedAt, ccapi.Links{
			"self": link(self), "upload": linkM(self+"/upload", "POST"),
			"download": link(self + "/download"), "app": link(base + "/v3/apps/" + p.AppGUID),
		}),
		Type:          p.Type,
		State:         p.State,
		Data:          data,
		Relationships: map[string]ccapi.Relationship{"app": ccapi.ToOne(p.AppGUID)},
	}
}

func buildpacksOrEmpty(b []string) []string {
	if b == nil {
		return []string{}
	}
	return b
}

func presentBuild(base string, b *buildRec) ccapi.Build {
	links := ccapi.Links{"self": link(base + "/v3/builds/" + b.GUID), "app": link(base + "/v3/apps/" + b.AppGUID)}
	out := ccapi.Build{
		Resource:  resource(b.GUID, b.CreatedAt, b.UpdatedAt, links),
		State:     b.State,
		Lifecycle: ccapi.Lifecycle{Type: "buildpack", Data: ccapi.LifecycleData{Buildpacks: buildpacksOrEmpty(b.Buildpacks), Stack: b.Stack}},
		Package:   ccapi.Ref{GUID: b.PackageGUID},
		CreatedBy: map[string]string{"guid": b.CreatedByGUID, "name": b.CreatedByName, "email": ""},
	}
	if b.Error != "" {
		e := b.Error
		out.Error = &e
	}
	if b.State == ccapi.BuildStaged {
		out.Droplet = &ccapi.Ref{GUID: b.DropletGUID}
		links["droplet"] = link(base + "/v3/droplets/" + b.DropletGUID)
	}
	return out
}

func presentDroplet(base string, d *dropletRec) ccapi.Droplet {
	self := base + "/v3/droplets/" + d.GUID
	out := ccapi.Droplet{
		Resource: resource(d.GUID, d.CreatedAt, d.UpdatedAt, ccapi.Links{
			"self": link(self), "package": link(base + "/v3/packages/" + d.PackageGUID),
			"app":                    link(base + "/v3/apps/" + d.AppGUID),
			"assign_current_droplet": linkM(base+"/v3/apps/"+d.AppGUID+"/relationships/current_droplet", "PATCH"),
			"download":               link(self + "/download"),
		}),
		State:             d.State,
		Lifecycle:         ccapi.Lifecycle{Type: "buildpack", Data: ccapi.LifecycleData{Buildpacks: []string{}}},
		ExecutionMetadata: d.ExecutionMetadata,
		ProcessTypes:      map[string]string{},
		Buildpacks:        []ccapi.DropletBuildpack{},
		Stack:             d.Stack,
		Relationships:     map[string]ccapi.Relationship{"app": ccapi.ToOne(d.AppGUID)},
	}
	if d.Error != "" {
		e := d.Error
		out.Error = &e
	}
	for k, v := range d.ProcessTypes {
		out.ProcessTypes[k] = v
	}
	if d.SHA256 != "" && d.State == ccapi.BuildStaged {
		out.Checksum = &ccapi.Checksum{Type: "sha256", Value: d.SHA256}
	}
	switch {
	case d.State != ccapi.BuildStaged:
	case len(d.StagedBuildpacks) > 0:
		// CC's: name is the admin buildpack, buildpack_name its own name.
		for _, bp := range d.StagedBuildpacks {
			out.Buildpacks = append(out.Buildpacks, ccapi.DropletBuildpack{Name: bp.Key, BuildpackName: bp.Name,
				DetectOutput: bp.DetectOutput, Version: bp.Version})
		}
	default: // staged by a builder that did not say which buildpacks ran
		name := d.DetectedBuildpack
		if len(d.Buildpacks) > 0 {
			name = d.Buildpacks[0]
		}
		out.Buildpacks = append(out.Buildpacks, ccapi.DropletBuildpack{Name: name, BuildpackName: d.DetectedBuildpack,
			DetectOutput: d.DetectedBuildpack})
	}
	return out
}

func presentJob(base string, j *jobRec) ccapi.Job {
	out := ccapi.Job{
		Resource:  resource(j.GUID, j.CreatedAt, j.UpdatedAt, ccapi.Links{"self": link(base + "/v3/jobs/" + j.GUID)}),
		Operation: j.Operation,
		State:     j.State,
		Errors:    j.Errors,
		Warnings:  j.Warnings,
	}
	out.Metadata = nil
	if out.Errors == nil {
		out.Errors = []ccapi.APIError{}
	}
	if out.Warnings == nil {
		out.Warnings = []ccapi.Warning{}
	}
	return out
}
