package cli

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

// fakeCC is just enough of a Cloud Controller (and log-cache) for the CLI's
// tests: in-memory apps, processes, routes, packages, builds and droplets,
// the apply_manifest semantics of cf-cli-v8.md §7.1, and a record of every
// request.
type fakeCC struct {
	t   *testing.T
	srv *httptest.Server
	mu  sync.Mutex

	reqs []recorded

	spaceGUID string
	domains   []ccapi.Domain
	apps      map[string]*fakeApp // by guid
	routes    []*ccapi.Route
	packages  map[string]*fakePackage
	builds    map[string]*ccapi.Build
	droplets  map[string]*ccapi.Droplet
	jobs      map[string]int // job guid -> GETs left before COMPLETE
	jobErrors map[string][]ccapi.APIError
	logs      map[string][]ccapi.LogEnvelope // by app guid
	seq       map[string]int

	// knobs
	pageSize       int      // >0: paginate lists
	jobPolls       int      // PROCESSING answers before COMPLETE
	buildPolls     int      // STAGING answers before STAGED
	buildFail      string   // build error; "" = staged
	stagingLines   []string // STG lines logged when a build starts
	statsFn        func(p *fakeProcess, call int) []ccapi.ProcessStat
	failures       map[string]fakeFailure // "METHOD /path" -> canned error
	uploadNotReady bool
	warnings       string // X-Cf-Warnings on every answer
}

type recorded struct {
	Method, Path, ContentType, Auth string
	Body                            []byte
}

func (r recorded) String() string { return r.Method + " " + r.Path }

type fakeFailure struct {
	status int
	body   string
}

type fakeApp struct {
	app       ccapi.App
	process   *fakeProcess
	manifests []Application
}

type fakeProcess struct {
	proc  ccapi.Process
	calls int
}

type fakePackage struct {
	pkg       ccapi.Package
	resources string
	zip       []byte
	partNames []string
	filename  string
}

func newFakeCC(t *testing.T) *fakeCC {
	f := &fakeCC{
		t:         t,
		spaceGUID: "space-guid",
		domains: []ccapi.Domain{{Resource: ccapi.Resource{GUID: "domain-guid"}, Name: "apps.localhost",
			SupportedProtocols: []string{"http"}, Relationships: map[string]ccapi.Relationship{"organization": {}}}},
		apps:      map[string]*fakeApp{},
		packages:  map[string]*fakePackage{},
		builds:    map[string]*ccapi.Build{},
		droplets:  map[string]*ccapi.Droplet{},
		jobs:      map[string]int{},
		jobErrors: map[string][]ccapi.APIError{},
		logs:      map[string][]ccapi.LogEnvelope{},
		failures:  map[string]fakeFailure{},
		jobPolls:  1,
		seq:       map[string]int{},
	}
	f.statsFn = rampStats
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// rampStats answers all STARTING first, then one more RUNNING per poll.
func rampStats(p *fakeProcess, call int) []ccapi.ProcessStat {
	var out []ccapi.ProcessStat
	for i := 0; i < p.proc.Instances; i++ {
		st := ccapi.ProcessStat{Type: "web", Index: i, State: ccapi.InstanceStarting}
		if i < call {
			st.State = ccapi.InstanceRunning
			st.Uptime = 90
			st.Host = "10.244.0.11"
			st.CellID = fmt.Sprintf("cell-%d", i+1)
			st.InstanceGUID = fmt.Sprintf("instance-%d", i)
			st.InstanceAddress = fmt.Sprintf("10.244.1.%d", i+2)
			st.InstancePorts = []ccapi.InstancePort{{External: 61000 + 2*i, Internal: 8080, ExternalTLSProxyPort: 61001 + 2*i, InternalTLSProxyPort: 61001}}
		}
		out = append(out, st)
	}
	return out
}

func (f *fakeCC) next(prefix string) string {
	f.seq[prefix]++
	return fmt.Sprintf("%s-%d", prefix, f.seq[prefix])
}

// requests lists "METHOD /path?query" of every request so far.
func (f *fakeCC) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.reqs {
		out = append(out, r.String())
	}
	return out
}

func (f *fakeCC) request(method, prefix string) *recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.reqs {
		if f.reqs[i].Method == method && strings.HasPrefix(f.reqs[i].Path, prefix) {
			r := f.reqs[i]
			return &r
		}
	}
	return nil
}

func (f *fakeCC) write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		json.NewEncoder(w).Encode(v)
	}
}

func (f *fakeCC) fail(w http.ResponseWriter, status int, e ccapi.APIError) {
	f.write(w, status, ccapi.Errors{Errors: []ccapi.APIError{e}})
}

// list answers a paginated list, pageSize per page when set.
func list[T any](f *fakeCC, w http.ResponseWriter, r *http.Request, items []T) {
	if items == nil {
		items = []T{}
	}
	l := ccapi.List[T]{Resources: items}
	l.Pagination.TotalResults = len(items)
	if f.pageSize > 0 && r.URL.Query().Get("per_page") != "1" {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if page < 1 {
			page = 1
		}
		start := min((page-1)*f.pageSize, len(items))
		end := min(start+f.pageSize, len(items))
		l.Resources = items[start:end]
		if end < len(items) {
			q := r.URL.Query()
			q.Set("page", strconv.Itoa(page+1))
			l.Pagination.Next = &ccapi.Link{Href: f.srv.URL + r.URL.Path + "?" + q.Encode()}
		}
	}
	f.write(w, 200, l)
}

func (f *fakeCC) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, recorded{Method: r.Method, Path: r.URL.RequestURI(), ContentType: r.Header.Get("Content-Type"),
		Auth: r.Header.Get("Authorization"), Body: body})
	if f.warnings != "" {
		w.Header().Set("X-Cf-Warnings", f.warnings)
	}
	if fl, ok := f.failures[r.Method+" "+r.URL.Path]; ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(fl.status)
		io.WriteString(w, fl.body)
		return
	}
	if r.Header.Get("Authorization") != "bearer "+testToken {
		f.fail(w, 401, ccapi.ErrInvalidAuthToken.With("Invalid Auth Token"))
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	route := r.Method + " " + pattern(parts)
	q := r.URL.Query()
	switch route {
	case "GET v3/apps":
		f.listApps(w, r)
	case "POST v3/spaces/*/actions/apply_manifest":
		f.applyManifest(w, r, body)
	case "GET v3/jobs/*":
		left, ok := f.jobs[parts[2]]
		if !ok {
			f.fail(w, 404, ccapi.ErrNotFound.With("Job not found"))
			return
		}
		job := ccapi.Job{Resource: ccapi.Resource{GUID: parts[2]}, State: ccapi.JobProcessing}
		if left <= 0 {
			job.State = ccapi.JobComplete
			if errs := f.jobErrors[parts[2]]; errs != nil {
				job.State, job.Errors = ccapi.JobFailed, errs
			}
		}
		f.jobs[parts[2]] = left - 1
		f.write(w, 200, job)
	case "POST v3/resource_matches":
		f.write(w, 201, map[string]any{"resources": []any{}})
	case "POST v3/packages":
		var in struct {
			Type          string
			Relationships map[string]ccapi.Relationship
		}
		json.Unmarshal(body, &in)
		p := &fakePackage{pkg: ccapi.Package{Resource: ccapi.Resource{GUID: f.next("package"), CreatedAt: time.Now()}, Type: in.Type,
			State: ccapi.PackageAwaitingUpload, Relationships: in.Relationships}}
		f.packages[p.pkg.GUID] = p
		f.write(w, 201, p.pkg)
	case "POST v3/packages/*/upload":
		f.upload(w, r, parts[2], body)
	case "GET v3/packages/*":
		p, ok := f.packages[parts[2]]
		if !ok {
			f.fail(w, 404, ccapi.ErrNotFound.With("Package not found"))
			return
		}
		p.pkg.State = ccapi.PackageReady
		f.write(w, 200, p.pkg)
	case "GET v3/packages":
		var out []ccapi.Package
		for _, p := range f.packages {
			if relGUID(p.pkg.Relationships, "app") == q.Get("app_guids") {
				out = append(out, p.pkg)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].GUID > out[j].GUID })
		list(f, w, r, out)
	case "GET v3/packages/*/droplets":
		var out []ccapi.Droplet
		for _, b := range f.builds {
			if b.Package.GUID == parts[2] && b.Droplet != nil {
				out = append(out, *f.droplets[b.Droplet.GUID])
			}
		}
		list(f, w, r, out)
	case "POST v3/builds":
		f.createBuild(w, body)
	case "GET v3/builds/*":
		b, ok := f.builds[parts[2]]
		if !ok {
			f.fail(w, 404, ccapi.ErrNotFound.With("Build not found"))
			return
		}
		f.buildPolls--
		if f.buildPolls < 0 && b.State == ccapi.BuildStaging {
			if f.buildFail != "" {
				b.State, b.Error = ccapi.BuildFailed, &f.buildFail
			} else {
				d := &ccapi.Droplet{Resource: ccapi.Resource{GUID: f.next("droplet"), CreatedAt: time.Date(2026, 11, 26, 4, 8, 56, 0, time.UTC)},
					State: ccapi.BuildStaged, Stack: "cflinuxfs4", ProcessTypes: map[string]string{"web": "./run.sh"},
					Buildpacks: []ccapi.DropletBuildpack{{Name: "binary_buildpack"}}}
				f.droplets[d.GUID] = d
				b.State, b.Droplet = ccapi.BuildStaged, &ccapi.Ref{GUID: d.GUID}
			}
		}
		f.write(w, 200, b)
	case "GET v3/droplets/*":
		d, ok := f.droplets[parts[2]]
		if !ok {
			f.fail(w, 404, ccapi.ErrNotFound.With("Droplet not found"))
			return
		}
		f.write(w, 200, d)
	case "PATCH v3/apps/*/relationships/current_droplet":
		a := f.app(w, parts[2])
		if a == nil {
			return
		}
		var in ccapi.Relationship
		json.Unmarshal(body, &in)
		a.app.Relationships["current_droplet"] = in
		f.write(w, 200, in)
	case "POST v3/apps/*/actions/restart", "POST v3/apps/*/actions/start":
		a := f.app(w, parts[2])
		if a == nil {
			return
		}
		if relGUID(a.app.Relationships, "current_droplet") == "" {
			f.fail(w, 422, ccapi.ErrUnprocessable.With("Assign a droplet before starting this app."))
			return
		}
		a.app.State = ccapi.AppStarted
		a.process.calls = 0
		f.write(w, 200, a.app)
	case "POST v3/apps/*/actions/stop":
		a := f.app(w, parts[2])
		if a == nil {
			return
		}
		a.app.State = ccapi.AppStopped
		f.write(w, 200, a.app)
	case "GET v3/apps/*/processes":
		a := f.app(w, parts[2])
		if a == nil {
			return
		}
		list(f, w, r, []ccapi.Process{a.process.proc})
	case "GET v3/processes":
		var out []ccapi.Process
		for _, g := range strings.Split(q.Get("app_guids"), ",") {
			if a, ok := f.apps[g]; ok {
				out = append(out, a.process.proc)
			}
		}
		list(f, w, r, out)
	case "GET v3/processes/*/stats":
		for _, a := range f.apps {
			if a.process.proc.GUID == parts[2] {
				var stats []ccapi.ProcessStat
				if a.app.State == ccapi.AppStarted {
					stats = f.statsFn(a.process, a.process.calls)
					a.process.calls++
				} else {
					for i := 0; i < a.process.proc.Instances; i++ {
						stats = append(stats, ccapi.ProcessStat{Type: "web", Index: i, State: ccapi.InstanceDown})
					}
				}
				if stats == nil {
					stats = []ccapi.ProcessStat{}
				}
				f.write(w, 200, map[string]any{"resources": stats})
				return
			}
		}
		f.fail(w, 404, ccapi.ErrNotFound.With("Process not found"))
	case "POST v3/apps/*/processes/web/actions/scale":
		a := f.app(w, parts[2])
		if a == nil {
			return
		}
		var in struct{ Instances *int }
		json.Unmarshal(body, &in)
		if in.Instances != nil {
			a.process.proc.Instances = *in.Instances
		}
		a.process.calls = 0
		f.write(w, 202, a.process.proc)
	case "GET v3/apps/*/routes":
		if f.app(w, parts[2]) == nil {
			return
		}
		list(f, w, r, f.routesOf(parts[2]))
	case "GET v3/apps/*/droplets/current":
		a := f.app(w, parts[2])
		if a == nil {
			return
		}
		d, ok := f.droplets[relGUID(a.app.Relationships, "current_droplet")]
		if !ok {
			f.fail(w, 404, ccapi.ErrNotFound.With("Droplet not found"))
			return
		}
		f.write(w, 200, d)
	case "GET v3/routes":
		var out []ccapi.Route
		for _, rt := range f.routes {
			switch {
			case q.Has("app_guids"):
				for _, g := range strings.Split(q.Get("app_guids"), ",") {
					if hasDest(rt, g) {
						out = append(out, *rt)
						break
					}
				}
			case q.Has("domain_guids"):
				if relGUID(rt.Relationships, "domain") == q.Get("domain_guids") && rt.Host == q.Get("hosts") && rt.Path == q.Get("paths") {
					out = append(out, *rt)
				}
			default:
				out = append(out, *rt)
			}
		}
		list(f, w, r, out)
	case "POST v3/routes":
		var in createRouteBody
		json.Unmarshal(body, &in)
		d := f.domain(relGUID(in.Relationships, "domain"))
		if f.findRoute(in.Host, d.Name, in.Path) != nil {
			f.fail(w, 422, ccapi.ErrUnprocessable.With("Route already exists with host '%s' for domain '%s'.", in.Host, d.Name))
			return
		}
		rt := f.addRoute(in.Host, d, in.Path)
		f.write(w, 201, rt)
	case "POST v3/routes/*/destinations":
		rt := f.route(parts[2])
		var in struct {
			Destinations []ccapi.Destination
		}
		json.Unmarshal(body, &in)
		for _, d := range in.Destinations {
			f.addDest(rt, d.App.GUID)
		}
		f.write(w, 200, map[string]any{"destinations": rt.Destinations})
	case "DELETE v3/routes/*/destinations/*":
		rt := f.route(parts[2])
		for i, d := range rt.Destinations {
			if d.GUID == parts[4] {
				rt.Destinations = append(rt.Destinations[:i], rt.Destinations[i+1:]...)
				w.WriteHeader(204)
				return
			}
		}
		f.fail(w, 404, ccapi.ErrNotFound.With("Destination not found"))
	case "DELETE v3/routes/*":
		for i, rt := range f.routes {
			if rt.GUID == parts[2] {
				f.routes = append(f.routes[:i], f.routes[i+1:]...)
				f.accepted(w)
				return
			}
		}
		f.fail(w, 404, ccapi.ErrNotFound.With("Route not found"))
	case "DELETE v3/apps/*":
		if f.app(w, parts[2]) == nil {
			return
		}
		delete(f.apps, parts[2])
		for _, rt := range f.routes {
			for i := 0; i < len(rt.Destinations); i++ {
				if rt.Destinations[i].App.GUID == parts[2] {
					rt.Destinations = append(rt.Destinations[:i], rt.Destinations[i+1:]...)
					i--
				}
			}
		}
		f.accepted(w)
	case "GET v3/domains":
		var out []ccapi.Domain
		for _, d := range f.domains {
			if q.Get("names") == "" || d.Name == q.Get("names") {
				out = append(out, d)
			}
		}
		list(f, w, r, out)
	case "GET api/v1/read/*":
		f.readLogs(w, r, parts[3])
	default:
		f.fail(w, 404, ccapi.ErrNotFound.With("Unknown request"))
	}
}

// pattern replaces ids in a path by *, keeping the resource words.
func pattern(parts []string) string {
	words := map[string]bool{"v3": true, "apps": true, "spaces": true, "actions": true, "apply_manifest": true, "jobs": true,
		"resource_matches": true, "packages": true, "upload": true, "droplets": true, "builds": true, "relationships": true,
		"current_droplet": true, "restart": true, "start": true, "stop": true, "processes": true, "stats": true, "scale": true,
		"web": true, "routes": true, "current": true, "destinations": true, "domains": true, "api": true, "v1": true, "read": true}
	out := make([]string, len(parts))
	for i, p := range parts {
		if words[p] && !(i > 0 && (parts[i-1] == "read")) {
			out[i] = p
		} else {
			out[i] = "*"
		}
	}
	return strings.Join(out, "/")
}

func (f *fakeCC) accepted(w http.ResponseWriter) {
	g := f.next("job")
	f.jobs[g] = f.jobPolls
	w.Header().Set("Location", f.srv.URL+"/v3/jobs/"+g)
	w.WriteHeader(202)
}

func (f *fakeCC) app(w http.ResponseWriter, guid string) *fakeApp {
	a, ok := f.apps[guid]
	if !ok {
		f.fail(w, 404, ccapi.ErrNotFound.With("App not found"))
		return nil
	}
	return a
}

func (f *fakeCC) appByName(name string) *fakeApp {
	for _, a := range f.apps {
		if a.app.Name == name {
			return a
		}
	}
	return nil
}

func (f *fakeCC) listApps(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var out []ccapi.App
	for _, a := range f.apps {
		if q.Has("names") && a.app.Name != q.Get("names") {
			continue
		}
		if q.Has("guids") && !strings.Contains(","+q.Get("guids")+",", ","+a.app.GUID+",") {
			continue
		}
		out = append(out, a.app)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	list(f, w, r, out)
}

// addApp creates an app with a web process, as apply_manifest does.
func (f *fakeCC) addApp(name string) *fakeApp {
	a := &fakeApp{app: ccapi.App{Resource: ccapi.Resource{GUID: name + "-guid"}, Name: name, State: ccapi.AppStopped,
		Lifecycle:     ccapi.Lifecycle{Type: "buildpack", Data: ccapi.LifecycleData{Buildpacks: []string{}}},
		Relationships: map[string]ccapi.Relationship{"space": ccapi.ToOne(f.spaceGUID), "current_droplet": {}}}}
	a.process = &fakeProcess{proc: ccapi.Process{Resource: ccapi.Resource{GUID: name + "-web-guid"}, Type: "web", Instances: 1,
		MemoryInMB: 256, Relationships: map[string]ccapi.Relationship{"app": ccapi.ToOne(a.app.GUID)}}}
	f.apps[a.app.GUID] = a
	return a
}

func (f *fakeCC) applyManifest(w http.ResponseWriter, r *http.Request, body []byte) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-yaml" {
		f.fail(w, 400, ccapi.ErrBadRequest.With("Content-Type must be application/x-yaml"))
		return
	}
	m, err := ParseManifest(body)
	if err != nil {
		f.fail(w, 422, ccapi.ErrUnprocessable.With("%v", err))
		return
	}
	g := f.next("job")
	f.jobs[g] = f.jobPolls
	for _, am := range m.Applications {
		a := f.appByName(am.Name)
		if a == nil {
			a = f.addApp(am.Name)
		}
		a.manifests = append(a.manifests, am)
		if am.Instances != nil {
			a.process.proc.Instances = *am.Instances
		}
		if am.Command != nil {
			c := *am.Command
			a.process.proc.Command = &c
		}
		if am.Memory != "" {
			mb, _ := strconv.Atoi(strings.TrimRight(am.Memory, "MGB"))
			if strings.HasSuffix(am.Memory, "G") {
				mb *= 1024
			}
			a.process.proc.MemoryInMB = mb
		}
		switch {
		case am.NoRoute:
			for _, rt := range f.routesOf(a.app.GUID) {
				live := f.route(rt.GUID)
				live.Destinations = nil
			}
			continue
		case am.Routes != nil:
			for _, mr := range am.Routes {
				host, dom, path, ok := f.parseRoute(mr.Route)
				if !ok {
					f.jobErrors[g] = []ccapi.APIError{ccapi.ErrUnprocessable.With("The route '%s' did not match any existing domains.", mr.Route)}
					break
				}
				rt := f.findRoute(host, dom.Name, path)
				if rt == nil {
					rt = f.addRoute(host, dom, path)
				}
				if !hasDest(rt, a.app.GUID) {
					f.addDest(rt, a.app.GUID)
				}
			}
		}
		if len(f.routesOf(a.app.GUID)) > 0 {
			continue
		}
		switch {
		case am.RandomRoute:
			f.addDest(f.addRoute(am.Name+"-happy-panda", &f.domains[0], ""), a.app.GUID)
		case am.DefaultRoute:
			rt := f.findRoute(am.Name, f.domains[0].Name, "")
			if rt == nil {
				rt = f.addRoute(am.Name, &f.domains[0], "")
			}
			f.addDest(rt, a.app.GUID)
		}
	}
	w.Header().Set("Location", f.srv.URL+"/v3/jobs/"+g)
	w.WriteHeader(202)
}

func (f *fakeCC) parseRoute(s string) (host string, d *ccapi.Domain, path string, ok bool) {
	hostDomain := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		hostDomain, path = s[:i], s[i:]
	}
	for i := range f.domains {
		if f.domains[i].Name == hostDomain {
			return "", &f.domains[i], path, true
		}
	}
	if i := strings.IndexByte(hostDomain, '.'); i >= 0 {
		for j := range f.domains {
			if f.domains[j].Name == hostDomain[i+1:] {
				return hostDomain[:i], &f.domains[j], path, true
			}
		}
	}
	return "", nil, "", false
}

func (f *fakeCC) domain(guid string) *ccapi.Domain {
	for i := range f.domains {
		if f.domains[i].GUID == guid {
			return &f.domains[i]
		}
	}
	return &f.domains[0]
}

func (f *fakeCC) addRoute(host string, d *ccapi.Domain, path string) *ccapi.Route {
	url := d.Name + path
	if host != "" {
		url = host + "." + d.Name + path
	}
	rt := &ccapi.Route{Resource: ccapi.Resource{GUID: f.next("route")}, Protocol: "http", Host: host, Path: path, URL: url,
		Destinations: []ccapi.Destination{}, Options: map[string]string{},
		Relationships: map[string]ccapi.Relationship{"space": ccapi.ToOne(f.spaceGUID), "domain": ccapi.ToOne(d.GUID)}}
	f.routes = append(f.routes, rt)
	return rt
}

func (f *fakeCC) findRoute(host, domain, path string) *ccapi.Route {
	for _, rt := range f.routes {
		if rt.Host == host && rt.Path == path && routeDomain(*rt) == domain {
			return rt
		}
	}
	return nil
}

func (f *fakeCC) route(guid string) *ccapi.Route {
	for _, rt := range f.routes {
		if rt.GUID == guid {
			return rt
		}
	}
	f.t.Errorf("fake CC: no route %s", guid)
	return &ccapi.Route{}
}

func (f *fakeCC) addDest(rt *ccapi.Route, app string) {
	rt.Destinations = append(rt.Destinations, ccapi.Destination{GUID: f.next("destination"),
		App: ccapi.DestinationApp{GUID: app, Process: &ccapi.DestinationProcess{Type: "web"}}, Port: 8080, Protocol: "http1"})
}

func hasDest(rt *ccapi.Route, app string) bool {
	for _, d := range rt.Destinations {
		if d.App.GUID == app {
			return true
		}
	}
	return false
}

func (f *fakeCC) routesOf(app string) []ccapi.Route {
	var out []ccapi.Route
	for _, rt := range f.routes {
		if hasDest(rt, app) {
			out = append(out, *rt)
		}
	}
	return out
}

func (f *fakeCC) upload(w http.ResponseWriter, r *http.Request, guid string, body []byte) {
	p, ok := f.packages[guid]
	if !ok {
		f.fail(w, 404, ccapi.ErrNotFound.With("Package not found"))
		return
	}
	if r.ContentLength != int64(len(body)) {
		f.t.Errorf("upload: Content-Length %d, body %d bytes", r.ContentLength, len(body))
	}
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		f.fail(w, 400, ccapi.ErrBadRequest.With("not multipart"))
		return
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.fail(w, 400, ccapi.ErrBadRequest.With("bad multipart: %v", err))
			return
		}
		data, _ := io.ReadAll(part)
		p.partNames = append(p.partNames, part.FormName())
		switch part.FormName() {
		case "resources":
			p.resources = string(data)
		case "bits":
			p.zip, p.filename = data, part.FileName()
		}
	}
	p.pkg.State = ccapi.PackageReady
	if f.uploadNotReady {
		p.pkg.State = ccapi.PackageProcessingUpload
	}
	f.write(w, 200, p.pkg)
}

func (f *fakeCC) createBuild(w http.ResponseWriter, body []byte) {
	var in struct{ Package ccapi.Ref }
	json.Unmarshal(body, &in)
	p, ok := f.packages[in.Package.GUID]
	if !ok {
		f.fail(w, 422, ccapi.ErrUnprocessable.With("Unable to use package. Ensure that the package exists and you have access to it."))
		return
	}
	b := &ccapi.Build{Resource: ccapi.Resource{GUID: f.next("build")}, State: ccapi.BuildStaging, Package: ccapi.Ref{GUID: p.pkg.GUID}}
	f.builds[b.GUID] = b
	app := relGUID(p.pkg.Relationships, "app")
	now := time.Now().UnixNano()
	for i, l := range f.stagingLines {
		f.logs[app] = append(f.logs[app], envelope(app, now+int64(i), "STG", "0", "OUT", l))
	}
	f.logs[app] = append(f.logs[app], envelope(app, now+int64(len(f.stagingLines)), "API", "0", "OUT", "Creating build for app"))
	f.write(w, 201, b)
}

func envelope(app string, ns int64, source, instance, typ, msg string) ccapi.LogEnvelope {
	return ccapi.LogEnvelope{Timestamp: strconv.FormatInt(ns, 10), SourceID: app, InstanceID: instance,
		Tags: map[string]string{"source_type": source}, Log: &ccapi.LogPayload{Payload: base64.StdEncoding.EncodeToString([]byte(msg)), Type: typ}}
}

// readLogs is log-cache's read: start_time, descending, limit.
func (f *fakeCC) readLogs(w http.ResponseWriter, r *http.Request, app string) {
	q := r.URL.Query()
	start, _ := strconv.ParseInt(q.Get("start_time"), 10, 64)
	var out []ccapi.LogEnvelope
	for _, e := range f.logs[app] {
		ts, _ := strconv.ParseInt(e.Timestamp, 10, 64)
		if ts >= start {
			out = append(out, e)
		}
	}
	if q.Get("descending") == "true" {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n < len(out) {
		out = out[:n]
	}
	var b ccapi.LogEnvelopeBatch
	b.Envelopes.Batch = out
	if b.Envelopes.Batch == nil {
		b.Envelopes.Batch = []ccapi.LogEnvelope{}
	}
	f.write(w, 200, b)
}

// zipEntries lists an uploaded zip's entries as "name mode".
func zipEntries(t *testing.T, data []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("uploaded bits are not a zip: %v", err)
	}
	out := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		content, _ := io.ReadAll(rc)
		rc.Close()
		out[f.Name] = fmt.Sprintf("%v %q", f.Mode(), content)
	}
	return out
}
