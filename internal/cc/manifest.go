package cc

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

// Server-side manifests: POST /v3/spaces/:guid/actions/apply_manifest with
// cloud_controller_ng's semantics (app_apply_manifest.rb,
// manifest_route_update.rb), cf-cli-v8.md §7.1:
//
//   - each app is found by name in the space, or created with a web process;
//   - process fields (instances, memory, disk_quota, command — null resets
//     it —, health-check-type, health-check-http-endpoint, timeout, the
//     processes list), buildpacks, stack and env are applied; path is the
//     client's local directory and is ignored;
//   - buildpacks (or buildpack, not both) must be admin buildpacks, as on
//     PATCH /v3/apps (buildpacks.go): an unknown one fails the job, as
//     CC's AppUpdate fails it; "default", null and [] mean auto-detect;
//   - routes, in this order: no-route: true removes all the app's route
//     mappings and nothing else happens; routes: adds a web destination to
//     each route, creating the route in the app's space if need be
//     (additive: other mappings stay); random-route, then default-route,
//     only when the app has no routes at that point.
//
// A manifest that cannot be read is a 422 on the POST; one that fails while
// being applied (an unknown domain, a route in another space, a host the
// app name cannot be) is a FAILED job, and nothing of it is kept: the
// whole manifest is applied in one transaction.

// Manifest bounds.
const (
	maxManifestApps      = 200
	maxManifestRoutes    = 1000
	maxManifestProcesses = 64
)

type manifest struct {
	Version      any           `yaml:"version,omitempty"`
	Applications []manifestApp `yaml:"applications"`
}

type manifestProcessFields struct {
	Instances               *int    `yaml:"instances,omitempty"`
	Memory                  string  `yaml:"memory,omitempty"`
	DiskQuota               string  `yaml:"disk_quota,omitempty"`
	DiskQuotaDash           string  `yaml:"disk-quota,omitempty"`
	Command                 *string `yaml:"command,omitempty"`
	HealthCheckType         string  `yaml:"health-check-type,omitempty"`
	HealthCheckHTTPEndpoint string  `yaml:"health-check-http-endpoint,omitempty"`
	InvocationTimeout       *int    `yaml:"health-check-invocation-timeout,omitempty"`
	Timeout                 *int    `yaml:"timeout,omitempty"`
	// resetCommand is "command: null".
	resetCommand bool
}

type manifestProcess struct {
	Type                  string `yaml:"type"`
	manifestProcessFields `yaml:",inline"`
}

type manifestRoute struct {
	Route    string            `yaml:"route"`
	Protocol string            `yaml:"protocol,omitempty"`
	Options  map[string]string `yaml:"options,omitempty"`
}

type manifestApp struct {
	Name                  string `yaml:"name"`
	Path                  string `yaml:"path,omitempty"`
	manifestProcessFields `yaml:",inline"`
	Buildpacks            []string          `yaml:"buildpacks,omitempty"`
	Buildpack             string            `yaml:"buildpack,omitempty"`
	Stack                 string            `yaml:"stack,omitempty"`
	Env                   map[string]string `yaml:"env,omitempty"`
	Services              []any             `yaml:"services,omitempty"`
	Routes                []manifestRoute   `yaml:"routes,omitempty"`
	NoRoute               bool              `yaml:"no-route,omitempty"`
	RandomRoute           bool              `yaml:"random-route,omitempty"`
	DefaultRoute          bool              `yaml:"default-route,omitempty"`
	Processes             []manifestProcess `yaml:"processes,omitempty"`
	Docker                any               `yaml:"docker,omitempty"`
	Metadata              any               `yaml:"metadata,omitempty"`
	Sidecars              any               `yaml:"sidecars,omitempty"`

	memoryMB, diskMB int // parsed Memory and DiskQuota (0: not given)
	// buildpackSet, buildpacksSet: the keys were given (null included).
	buildpackSet, buildpacksSet bool
}

// manifestError is a manifest that cannot be read or applied.
type manifestError struct{ msg string }

func (e *manifestError) Error() string { return e.msg }

func mErr(app string, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if app != "" {
		msg = fmt.Sprintf("For application '%s': %s", app, msg)
	}
	return &manifestError{msg}
}

// parseManifest reads and checks a manifest.
func parseManifest(data []byte) ([]manifestApp, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, mErr("", "The manifest is not valid YAML: %v", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, mErr("", "The manifest must be a YAML mapping with an applications list")
	}
	top := doc.Content[0]
	apps := mappingValue(top, "applications")
	if apps == nil || apps.Kind != yaml.SequenceNode {
		return nil, mErr("", "Applications must be a list of applications")
	}
	if len(apps.Content) == 0 {
		return nil, mErr("", "Applications must have at least one application")
	}
	if len(apps.Content) > maxManifestApps {
		return nil, mErr("", "Applications must be at most %d", maxManifestApps)
	}
	out := make([]manifestApp, 0, len(apps.Content))
	for i, n := range apps.Content {
		var a manifestApp
		if n.Kind != yaml.MappingNode {
			return nil, mErr("", "Application at index %d must be a mapping", i)
		}
		if err := n.Decode(&a); err != nil {
			return nil, mErr(nameOf(n), "%v", cleanYAMLError(err))
		}
		a.resetCommand = isNull(mappingValue(n, "command"))
		a.buildpackSet, a.buildpacksSet = mappingValue(n, "buildpack") != nil, mappingValue(n, "buildpacks") != nil
		if procs := mappingValue(n, "processes"); procs != nil && procs.Kind == yaml.SequenceNode {
			for j, pn := range procs.Content {
				if j < len(a.Processes) {
					a.Processes[j].resetCommand = isNull(mappingValue(pn, "command"))
				}
			}
		}
		if err := a.check(); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func cleanYAMLError(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func nameOf(n *yaml.Node) string {
	if v := mappingValue(n, "name"); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

// check validates an app entry and parses its sizes.
func (a *manifestApp) check() error {
	if err := validName("Name", a.Name); err != nil {
		var ae *apiError
		errors.As(err, &ae)
		return mErr("", "%s", ae.err.Detail)
	}
	if a.Docker != nil {
		return mErr(a.Name, "Docker support has not been enabled")
	}
	if len(a.Services) > 0 {
		return mErr(a.Name, "Service instance '%v' not found: minicf has no services", a.Services[0])
	}
	if err := a.manifestProcessFields.check(a.Name, &a.memoryMB, &a.diskMB); err != nil {
		return err
	}
	if a.Stack != "" && a.Stack != DefaultStack {
		return mErr(a.Name, "Stack must be an existing stack: minicf has only '%s'", DefaultStack)
	}
	if a.buildpackSet && a.buildpacksSet {
		return mErr(a.Name, "Buildpack and Buildpacks fields cannot be used together.")
	}
	for _, b := range append(append([]string(nil), a.Buildpacks...), a.Buildpack) {
		if !storable(b) || len(b) > 255 {
			return mErr(a.Name, "Buildpack %q is invalid", b)
		}
	}
	env := map[string]*string{}
	for k := range a.Env {
		env[k] = nil
	}
	if err := validEnv(env); err != nil {
		var ae *apiError
		errors.As(err, &ae)
		return mErr(a.Name, "%s", ae.err.Detail)
	}
	for k, v := range a.Env {
		if !storable(v) {
			return mErr(a.Name, "Env %s must be valid UTF-8 without NUL bytes", k)
		}
	}
	if len(a.Routes) > maxManifestRoutes {
		return mErr(a.Name, "Routes must be at most %d", maxManifestRoutes)
	}
	for _, r := range a.Routes {
		if strings.TrimSpace(r.Route) == "" {
			return mErr(a.Name, "Routes must be a list of route objects with a route")
		}
		if !storable(r.Route) || len(r.Route) > 2*maxURLLen {
			return mErr(a.Name, "The route '%s' is not a valid route", clip(r.Route))
		}
		switch r.Protocol {
		case "", protocolHTTP1, protocolHTTP2, "tcp":
		default:
			return mErr(a.Name, "Route protocol must be 'http1', 'http2' or 'tcp'.")
		}
		if err := validRouteOptions(r.Options); err != nil {
			var ae *apiError
			errors.As(err, &ae)
			return mErr(a.Name, "%s", ae.err.Detail)
		}
	}
	if len(a.Processes) > maxManifestProcesses {
		return mErr(a.Name, "Processes must be at most %d", maxManifestProcesses)
	}
	seen := map[string]bool{}
	for i := range a.Processes {
		p := &a.Processes[i]
		if p.Type == "" {
			return mErr(a.Name, "Process type must not be empty")
		}
		if validProcessType(p.Type) != nil {
			return mErr(a.Name, "Process type %q may hold only letters, digits, '_' and '-'", p.Type)
		}
		if seen[p.Type] {
			return mErr(a.Name, "Process %q may only be present once", p.Type)
		}
		seen[p.Type] = true
		var mem, disk int
		if err := p.manifestProcessFields.check(a.Name, &mem, &disk); err != nil {
			return err
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func (f *manifestProcessFields) check(app string, mem, disk *int) error {
	if f.Instances != nil && (*f.Instances < 0 || *f.Instances > 1000) {
		return mErr(app, "Instances must be between 0 and 1000")
	}
	if f.Memory != "" {
		n, err := parseMegabytes(f.Memory)
		if err != nil {
			return mErr(app, "Memory %v", err)
		}
		*mem = n
	}
	diskQuota := f.DiskQuota
	if diskQuota == "" {
		diskQuota = f.DiskQuotaDash
	}
	if diskQuota != "" {
		n, err := parseMegabytes(diskQuota)
		if err != nil {
			return mErr(app, "Disk quota %v", err)
		}
		*disk = n
	}
	switch f.HealthCheckType {
	case "", hcPort, hcHTTP, hcProcess, "none":
	default:
		return mErr(app, `Health check type must be "port", "process", or "http"`)
	}
	if f.HealthCheckHTTPEndpoint != "" {
		if f.HealthCheckType != "" && f.HealthCheckType != hcHTTP {
			return mErr(app, `Health check type must be "http" to set a health check HTTP endpoint`)
		}
		if !strings.HasPrefix(f.HealthCheckHTTPEndpoint, "/") || len(f.HealthCheckHTTPEndpoint) > maxPathLen || !storable(f.HealthCheckHTTPEndpoint) {
			return mErr(app, "Health check http endpoint must be a valid URI path")
		}
	}
	if f.Timeout != nil && (*f.Timeout < 1 || *f.Timeout > 86400) {
		return mErr(app, "Timeout must be between 1 and 86400 seconds")
	}
	if f.InvocationTimeout != nil && (*f.InvocationTimeout < 1 || *f.InvocationTimeout > 86400) {
		return mErr(app, "Health check invocation timeout must be between 1 and 86400 seconds")
	}
	if f.Command != nil && (len(*f.Command) > maxCommandLen || !storable(*f.Command)) {
		return mErr(app, "Command must be at most %d characters", maxCommandLen)
	}
	return nil
}

// parseMegabytes reads a size with CC's units (B, K, KB, M, MB, G, GB, T,
// TB) as megabytes.
func parseMegabytes(s string) (int, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	i := 0
	for i < len(u) && u[i] >= '0' && u[i] <= '9' {
		i++
	}
	if i == 0 || i > 12 {
		return 0, errors.New("must be a number with a unit (B, K, KB, M, MB, G, GB, T or TB)")
	}
	n, _ := strconv.ParseInt(u[:i], 10, 64)
	var mult int64
	switch strings.TrimSpace(u[i:]) {
	case "B":
		mult = 1
	case "K", "KB":
		mult = 1 << 10
	case "M", "MB":
		mult = 1 << 20
	case "G", "GB":
		mult = 1 << 30
	case "T", "TB":
		mult = 1 << 40
	default:
		return 0, errors.New("must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB")
	}
	mb := n * mult >> 20
	if mb < 1 {
		return 0, errors.New("must be greater than 0MB")
	}
	if mb > 1<<30 {
		return 0, errors.New("is too large")
	}
	return int(mb), nil
}

// readManifest reads a bounded manifest body.
func readManifest(w http.ResponseWriter, r *http.Request) ([]manifestApp, error) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxManifestBody))
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errf(http.StatusRequestEntityTooLarge, ccapi.ErrRequestTooLarge, "The manifest is larger than the %d bytes allowed.", maxManifestBody)
		}
		return nil, badRequest("Cannot read the manifest: %v", err)
	}
	apps, err := parseManifest(data)
	if err != nil {
		return nil, unprocessable("%v", err)
	}
	return apps, nil
}

func (c *CC) manifestDiff(w http.ResponseWriter, r *http.Request) error {
	if err := c.spaceExists(r); err != nil {
		return err
	}
	if _, err := readManifest(w, r); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, map[string]any{"diff": []any{}})
}

func (c *CC) spaceExists(r *http.Request) error {
	return c.store.read(r.Context(), func(tx *stx) error {
		_, err := getRec[spaceRec](tx, tSpaces, r.PathValue("guid"))
		if errors.Is(err, errNotFound) {
			return notFound("Space not found")
		}
		return err
	})
}

func (c *CC) applyManifest(w http.ResponseWriter, r *http.Request) error {
	if err := c.spaceExists(r); err != nil {
		return err
	}
	apps, err := readManifest(w, r)
	if err != nil {
		return err
	}
	spaceGUID := r.PathValue("guid")
	fx := newEffects()
	err = c.store.write(r.Context(), func(tx *stx) error {
		for i := range apps {
			if err := c.applyManifestApp(tx, spaceGUID, &apps[i], fx); err != nil {
				return err
			}
		}
		return c.touchProcesses(tx, fx)
	})
	var me *manifestError
	var ae *apiError
	switch {
	case errors.As(err, &me):
		return c.job(w, r, "app.apply_manifest", unprocessable("%s", me.msg))
	case errors.As(err, &ae):
		return c.job(w, r, "app.apply_manifest", ae)
	case err != nil:
		return err
	}
	c.applyEffects(r, fx)
	return c.job(w, r, "app.apply_manifest", nil)
}

func (c *CC) applyManifestApp(tx *stx, spaceGUID string, m *manifestApp, fx *effects) error {
	found, err := listRecs[appRec](tx, tApps, "space_guid = ? AND name = ?", spaceGUID, m.Name)
	if err != nil {
		return err
	}
	var a *appRec
	if len(found) > 0 {
		a = found[0]
	} else if a, err = c.createAppTx(tx, m.Name, spaceGUID); err != nil {
		return err
	}
	// Lifecycle (buildpacks as on PATCH /v3/apps: admin buildpacks only;
	// "default", null and none mean auto-detect) and env.
	if m.Stack != "" {
		a.Stack = m.Stack
	}
	if m.buildpacksSet || m.buildpackSet {
		bps := chosenBuildpacks(append(slices.Clone(m.Buildpacks), m.Buildpack))
		if detail := checkBuildpacks(bps, a.Stack); detail != "" {
			return mErr(m.Name, "%s", detail)
		}
		a.Buildpacks = bps
	}
	if len(m.Env) > 0 {
		env := map[string]*string{}
		for k, v := range m.Env {
			env[k] = &v
		}
		mergeEnv(a, env)
	}
	a.UpdatedAt = c.now()
	if err := updateRec(tx, tApps, a); err != nil {
		return err
	}
	// Processes: the top-level fields are web's.
	if err := c.applyManifestProcess(tx, a, defaultProcessType, &m.manifestProcessFields, m.memoryMB, m.diskMB, fx); err != nil {
		return mErr(m.Name, "%v", detailOf(err))
	}
	for i := range m.Processes {
		p := &m.Processes[i]
		var mem, disk int
		p.manifestProcessFields.check(m.Name, &mem, &disk)
		if err := c.applyManifestProcess(tx, a, p.Type, &p.manifestProcessFields, mem, disk, fx); err != nil {
			return mErr(m.Name, "%v", detailOf(err))
		}
	}
	return c.applyManifestRoutes(tx, a, m, fx)
}

func detailOf(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.err.Detail
	}
	return err.Error()
}

func (c *CC) applyManifestProcess(tx *stx, a *appRec, ptype string, f *manifestProcessFields, mem, disk int, fx *effects) error {
	ps, err := listRecs[processRec](tx, tProcesses, "app_guid = ? AND type = ?", a.GUID, ptype)
	if err != nil {
		return err
	}
	var p *processRec
	created := false
	if len(ps) > 0 {
		p = ps[0]
	} else {
		p, created = c.newProcess(a.GUID, ptype), true
	}
	var memP, diskP *int
	if mem > 0 {
		memP = &mem
	}
	if disk > 0 {
		diskP = &disk
	}
	changed, err := scale(p, f.Instances, memP, diskP, nil)
	if err != nil {
		return err
	}
	if f.resetCommand {
		p.Command = nil
	} else if f.Command != nil {
		cmd := *f.Command
		p.Command = &cmd
		if cmd == "" {
			p.Command = nil
		}
	}
	var typ, endpoint *string
	if f.HealthCheckType != "" {
		typ = &f.HealthCheckType
	}
	if f.HealthCheckHTTPEndpoint != "" {
		endpoint = &f.HealthCheckHTTPEndpoint
	}
	if err := setHealthCheck(p, typ, endpoint, f.Timeout, f.InvocationTimeout); err != nil {
		return err
	}
	p.UpdatedAt = c.now()
	if created {
		if a.State == ccapi.AppStarted {
			fx.app(a.GUID)
		}
		return insertRec(tx, tProcesses, p)
	}
	if changed {
		fx.app(a.GUID)
	}
	return updateRec(tx, tProcesses, p)
}

// applyManifestRoutes applies no-route, routes, random-route and
// default-route, in that order (manifest_route_update.rb).
func (c *CC) applyManifestRoutes(tx *stx, a *appRec, m *manifestApp, fx *effects) error {
	dests, err := listRecs[destRec](tx, tDestinations, "app_guid = ?", a.GUID)
	if err != nil {
		return err
	}
	if m.NoRoute {
		for _, d := range dests {
			if err := deleteRec(tx, tDestinations, d.GUID); err != nil {
				return err
			}
			fx.app(a.GUID)
		}
		return nil
	}
	domains, err := listRecs[domainRec](tx, tDomains, "")
	if err != nil {
		return err
	}
	for _, mr := range m.Routes {
		host, dom, path, err := resolveManifestRoute(mr.Route, domains)
		if err != nil {
			return mErr(a.Name, "%v", err)
		}
		if mr.Protocol == "tcp" {
			return mErr(a.Name, "Cannot use 'tcp' protocol for the http route '%s'.", mr.Route)
		}
		if err := c.mapManifestRoute(tx, a, host, dom, path, mr.Protocol, mr.Options, fx); err != nil {
			return mErr(a.Name, "%s", detailOf(err))
		}
	}
	if m.RandomRoute || m.DefaultRoute {
		if dests, err = listRecs[destRec](tx, tDestinations, "app_guid = ?", a.GUID); err != nil {
			return err
		}
		if len(dests) > 0 {
			return nil
		}
		dom, err := c.sharedDomain(tx)
		if errors.Is(err, errNotFound) {
			return mErr(a.Name, "No default domains available")
		} else if err != nil {
			return err
		}
		if m.RandomRoute {
			return c.mapRandomRoute(tx, a, dom, fx)
		}
		if err := validHost(a.Name, true); err != nil {
			return mErr(a.Name, "Failed to create default route from app name: %s", detailOf(err))
		}
		if err := validURLLength(a.Name, dom.Name); err != nil {
			return mErr(a.Name, "Failed to create default route from app name: %s", detailOf(err))
		}
		if err := c.mapManifestRoute(tx, a, a.Name, dom, "", "", nil, fx); err != nil {
			return mErr(a.Name, "%s", detailOf(err))
		}
	}
	return nil
}

// resolveManifestRoute splits [scheme://]host.domain[:port][/path]: the
// candidates are (no host, the whole name) and (first label, the rest),
// in that order; the first that names a domain wins.
func resolveManifestRoute(route string, domains []*domainRec) (host string, dom *domainRec, path string, err error) {
	s := route
	for _, scheme := range []string{"http://", "https://", "tcp://"} {
		if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			s = s[len(scheme):]
			break
		}
	}
	hostPart := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		hostPart, path = s[:i], s[i:]
	}
	hasPort := false
	if i := strings.LastIndexByte(hostPart, ':'); i >= 0 {
		hostPart, hasPort = hostPart[:i], true
	}
	byName := map[string]*domainRec{}
	for _, d := range domains {
		byName[d.Name] = d
	}
	candidates := [][2]string{{"", hostPart}}
	if i := strings.IndexByte(hostPart, '.'); i >= 0 {
		candidates = append(candidates, [2]string{hostPart[:i], hostPart[i+1:]})
	}
	for _, cand := range candidates {
		if d := byName[strings.ToLower(cand[1])]; d != nil {
			if hasPort {
				return "", nil, "", fmt.Errorf("The route '%s' has a port, which only TCP domains take; '%s' is an HTTP domain.", route, d.Name)
			}
			return cand[0], d, path, nil
		}
	}
	return "", nil, "", fmt.Errorf("The route '%s' did not match any existing domains.", route)
}

// mapManifestRoute finds or creates the route in the app's space and adds
// a web destination to the app (a protocol given updates it).
func (c *CC) mapManifestRoute(tx *stx, a *appRec, host string, dom *domainRec, path, protocol string, opts map[string]string, fx *effects) error {
	host = strings.ToLower(host)
	existing, err := listRecs[routeRec](tx, tRoutes, "domain_guid = ? AND host = ? AND path = ?", dom.GUID, host, path)
	if err != nil {
		return err
	}
	var rt *routeRec
	if len(existing) > 0 {
		rt = existing[0]
		if rt.SpaceGUID != a.SpaceGUID {
			return unprocessable("The app cannot be mapped to route %s because the route is not in this space. Apps must be mapped to routes in the same space.", routeURL(rt, dom.Name))
		}
	} else if rt, _, err = c.newRoute(tx, host, path, a.SpaceGUID, dom.GUID, opts); err != nil {
		return err
	}
	dests, err := listRecs[destRec](tx, tDestinations, "route_guid = ? AND app_guid = ?", rt.GUID, a.GUID)
	if err != nil {
		return err
	}
	for _, d := range dests {
		if d.ProcessType == defaultProcessType && d.Port == defaultAppPort {
			if protocol != "" && d.Protocol != protocol {
				d.Protocol, d.UpdatedAt = protocol, c.now()
				fx.app(a.GUID)
				return updateRec(tx, tDestinations, d)
			}
			return nil
		}
	}
	now := c.now()
	d := &destRec{GUID: newGUID(), RouteGUID: rt.GUID, AppGUID: a.GUID, ProcessType: defaultProcessType,
		Port: defaultAppPort, Protocol: protocolHTTP1, CreatedAt: now, UpdatedAt: now}
	if protocol != "" {
		d.Protocol = protocol
	}
	fx.app(a.GUID)
	c.traceMapped(tx, fx, rt, dom, d)
	return insertRec(tx, tDestinations, d)
}

var (
	randomAdjectives = []string{"brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively", "merry",
		"nice", "proud", "quiet", "silly", "witty", "zany", "bold", "bright", "cheerful", "daring", "fierce", "grand",
		"humble", "nimble", "quick", "shiny", "sunny", "swift", "tidy", "wise"}
	randomNouns = []string{"otter", "badger", "falcon", "lynx", "panda", "koala", "heron", "walrus", "gecko", "bison",
		"puffin", "marmot", "beaver", "camel", "dingo", "ferret", "gibbon", "ibex", "jackal", "lemur", "mole", "newt",
		"oriole", "quokka", "raven", "seal", "tapir", "vole", "wombat", "yak"}
)

func randomWord(words []string) string {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(len(words))))
	if err != nil {
		return words[0]
	}
	return words[n.Int64()]
}

// mapRandomRoute maps <app>-<adjective>-<noun> on the domain (the app
// name made host-safe), trying again while the host is taken.
func (c *CC) mapRandomRoute(tx *stx, a *appRec, dom *domainRec, fx *effects) error {
	base := hostSafe(a.Name)
	for try := 0; try < 20; try++ {
		suffix := "-" + randomWord(randomAdjectives) + "-" + randomWord(randomNouns)
		if try >= 10 {
			suffix += "-" + randomSuffix()[:6]
		}
		b := base
		if len(b)+len(suffix) > maxHostLen {
			b = b[:maxHostLen-len(suffix)]
		}
		host := strings.TrimPrefix(b+suffix, "-")
		taken, err := listRecs[routeRec](tx, tRoutes, "domain_guid = ? AND host = ? AND path = ?", dom.GUID, host, "")
		if err != nil {
			return err
		}
		if len(taken) > 0 {
			continue
		}
		if err := validURLLength(host, dom.Name); err != nil {
			return mErr(a.Name, "Failed to create random route from app name: %s", detailOf(err))
		}
		if err := c.mapManifestRoute(tx, a, host, dom, "", "", nil, fx); err != nil {
			return mErr(a.Name, "%s", detailOf(err))
		}
		return nil
	}
	return mErr(a.Name, "Failed to find a free random route")
}

// hostSafe turns a name into host characters (letters, digits, '-').
func hostSafe(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if s == "" {
		s = "app"
	}
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}
