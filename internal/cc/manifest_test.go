package cc

import (
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

// applyManifest posts a manifest as the cf CLI does and returns its job.
func (e *env) applyManifest(manifest string) ccapi.Job {
	e.t.Helper()
	code, h, data := e.do("POST", "/v3/spaces/"+e.space+"/actions/apply_manifest", manifest, "Content-Type", "application/x-yaml")
	if code != 202 {
		e.t.Fatalf("apply_manifest: %d %s", code, data)
	}
	var job ccapi.Job
	e.mustJSON("GET", strings.Replace(h.Get("Location"), testExternalURL, e.base, 1), nil, 200, &job)
	return job
}

func (e *env) appByName(name string) (ccapi.App, bool) {
	e.t.Helper()
	var list ccapi.List[ccapi.App]
	e.mustJSON("GET", "/v3/apps?names="+name+"&space_guids="+e.space, nil, 200, &list)
	if len(list.Resources) == 0 {
		return ccapi.App{}, false
	}
	return list.Resources[0], true
}

// routesOf lists the URLs of the routes mapped to the app, sorted.
func (e *env) routesOf(name string) []string {
	e.t.Helper()
	a, ok := e.appByName(name)
	if !ok {
		e.t.Fatalf("no app %s", name)
	}
	var list ccapi.List[ccapi.Route]
	e.mustJSON("GET", "/v3/apps/"+a.GUID+"/routes", nil, 200, &list)
	out := []string{}
	for _, r := range list.Resources {
		out = append(out, r.URL)
	}
	sort.Strings(out)
	return out
}

func testApplyManifestRoutes(t *testing.T, e *env) {
	// An existing app with one route, for the additive cases.
	e.applyManifest("applications:\n- name: existing\n  routes:\n  - route: old.apps.localhost\n")

	cases := []struct {
		name     string
		manifest string
		want     []string // route URLs mapped afterwards; "RANDOM" matches <app>-<word>-<word>
	}{
		{"default route for a new app", "applications:\n- name: fresh\n  path: /home/me/app\n  default-route: true\n", []string{"fresh.apps.localhost"}},
		{"routes win over the default the CLI adds", "applications:\n- name: routed\n  default-route: true\n  routes:\n  - route: a.apps.localhost\n  - route: b.apps.localhost/v1\n",
			[]string{"a.apps.localhost", "b.apps.localhost/v1"}},
		{"routes are additive", "applications:\n- name: existing\n  default-route: true\n  routes:\n  - route: new.apps.localhost\n",
			[]string{"new.apps.localhost", "old.apps.localhost"}},
		{"default route only without routes", "applications:\n- name: existing\n  default-route: true\n",
			[]string{"new.apps.localhost", "old.apps.localhost"}},
		{"random route only without routes", "applications:\n- name: existing\n  random-route: true\n",
			[]string{"new.apps.localhost", "old.apps.localhost"}},
		{"random route for a new app", "applications:\n- name: rnd\n  random-route: true\n", []string{"RANDOM"}},
		{"scheme is dropped", "applications:\n- name: scheme\n  routes:\n  - route: https://sch.apps.localhost/p\n", []string{"sch.apps.localhost/p"}},
		{"no-route removes every mapping", "applications:\n- name: existing\n  no-route: true\n", []string{}},
		{"no-route wins over routes", "applications:\n- name: routed\n  no-route: true\n  routes:\n  - route: c.apps.localhost\n", []string{}},
		{"an existing route of the space is mapped", "applications:\n- name: sharer\n  routes:\n  - route: a.apps.localhost\n", []string{"a.apps.localhost"}},
	}
	random := regexp.MustCompile(`^rnd-[a-z]+-[a-z]+\.apps\.localhost$`)
	for _, c := range cases {
		job := e.applyManifest(c.manifest)
		if job.State != ccapi.JobComplete {
			t.Errorf("%s: job %s %+v", c.name, job.State, job.Errors)
			continue
		}
		appName := strings.TrimSpace(strings.SplitN(strings.SplitN(c.manifest, "name: ", 2)[1], "\n", 2)[0])
		got := e.routesOf(appName)
		if len(c.want) == 1 && c.want[0] == "RANDOM" {
			if len(got) != 1 || !random.MatchString(got[0]) {
				t.Errorf("%s: routes %v, want one <app>-<word>-<word>", c.name, got)
			}
			continue
		}
		if !equalStrings(got, c.want) {
			t.Errorf("%s: routes %v, want %v", c.name, got, c.want)
		}
	}
	// no-route unmaps but keeps the routes themselves.
	var list ccapi.List[ccapi.Route]
	e.mustJSON("GET", "/v3/routes?hosts=old", nil, 200, &list)
	if len(list.Resources) != 1 || len(list.Resources[0].Destinations) != 0 {
		t.Errorf("old route after no-route: %+v", list.Resources)
	}
	// Per-route protocol sets, then updates, the destination's protocol.
	e.applyManifest("applications:\n- name: h2app\n  routes:\n  - route: h2.apps.localhost\n    protocol: http2\n")
	e.mustJSON("GET", "/v3/routes?hosts=h2", nil, 200, &list)
	if d := list.Resources[0].Destinations; len(d) != 1 || d[0].Protocol != "http2" {
		t.Errorf("protocol http2: %+v", d)
	}
	e.applyManifest("applications:\n- name: h2app\n  routes:\n  - route: h2.apps.localhost\n    protocol: http1\n")
	e.mustJSON("GET", "/v3/routes?hosts=h2", nil, 200, &list)
	if d := list.Resources[0].Destinations; len(d) != 1 || d[0].Protocol != "http1" {
		t.Errorf("protocol back to http1: %+v", d)
	}
}

func testApplyManifestFields(t *testing.T, e *env) {
	job := e.applyManifest(`---
version: 1
applications:
- name: full
  path: /somewhere/local
  instances: 3
  memory: 256M
  disk_quota: 1G
  command: ./run.sh --fast
  health-check-type: http
  health-check-http-endpoint: /health
  timeout: 45
  buildpacks:
  - binary_buildpack
  stack: cflinuxfs4
  env:
    GREETING: hello
    COUNT: 3
  no-route: true
  processes:
  - type: worker
    instances: 2
    command: ./work
    memory: 64M
`)
	if job.State != ccapi.JobComplete {
		t.Fatalf("job %+v", job)
	}
	a, _ := e.appByName("full")
	if !equalStrings(a.Lifecycle.Data.Buildpacks, []string{"binary_buildpack"}) {
		t.Errorf("buildpacks %v", a.Lifecycle.Data.Buildpacks)
	}
	web := e.webProcess(a.GUID)
	if web.Instances != 3 || web.MemoryInMB != 256 || web.DiskInMB != 1024 || web.Command == nil || *web.Command != "./run.sh --fast" ||
		web.HealthCheck.Type != "http" || web.HealthCheck.Data.Endpoint != "/health" || *web.HealthCheck.Data.Timeout != 45 {
		t.Errorf("web %+v", web)
	}
	var worker ccapi.Process
	e.mustJSON("GET", "/v3/apps/"+a.GUID+"/processes/worker", nil, 200, &worker)
	if worker.Instances != 2 || worker.MemoryInMB != 64 || *worker.Command != "./work" || worker.HealthCheck.Type != "process" {
		t.Errorf("worker %+v", worker)
	}
	var env struct {
		Var map[string]string `json:"var"`
	}
	e.mustJSON("GET", "/v3/apps/"+a.GUID+"/environment_variables", nil, 200, &env)
	if env.Var["GREETING"] != "hello" || env.Var["COUNT"] != "3" {
		t.Errorf("env %v", env.Var)
	}
	// command: null resets the command; what is not given stays.
	e.applyManifest("applications:\n- name: full\n  command: null\n  no-route: true\n")
	web = e.webProcess(a.GUID)
	if web.Command != nil || web.Instances != 3 {
		t.Errorf("after command: null: %+v", web)
	}
	// manifest_diff answers an empty diff.
	code, _, data := e.do("POST", "/v3/spaces/"+e.space+"/manifest_diff", "applications:\n- name: full\n", "Content-Type", "application/x-yaml")
	if code != 201 || strings.TrimSpace(string(data)) != `{"diff":[]}` {
		t.Errorf("manifest_diff: %d %s", code, data)
	}
}

func testApplyManifestFailures(t *testing.T, e *env) {
	post := func(manifest string, status int, detail string) {
		t.Helper()
		code, _, data := e.do("POST", "/v3/spaces/"+e.space+"/actions/apply_manifest", manifest, "Content-Type", "application/x-yaml")
		checkError(t, "apply_manifest", code, data, status, "CF-UnprocessableEntity", detail)
	}
	post("applications: [", 422, "The manifest is not valid YAML: …")
	post("foo: bar\n", 422, "Applications must be a list of applications")
	post("applications:\n- path: .\n", 422, "Name can't be blank")
	post("applications:\n- name: m\n  memory: 0M\n", 422, "For application 'm': Memory must be greater than 0MB")
	post("applications:\n- name: m\n  memory: 12Q\n", 422, "For application 'm': Memory must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB")
	post("applications:\n- name: m\n  instances: many\n", 422, "For application 'm': …")
	post("applications:\n- name: m\n  health-check-type: tcp\n", 422, `For application 'm': Health check type must be "port", "process", or "http"`)
	post("applications:\n- name: m\n  docker:\n    image: x\n", 422, "For application 'm': Docker support has not been enabled")
	e.wantError("POST", "/v3/spaces/nope/actions/apply_manifest", "applications:\n- name: m\n", 404, "CF-NotFound", "Space not found")

	failed := func(manifest, detail string) {
		t.Helper()
		job := e.applyManifest(manifest)
		if job.State != ccapi.JobFailed || len(job.Errors) != 1 || job.Errors[0].Detail != detail || job.Errors[0].Title != "CF-UnprocessableEntity" {
			t.Errorf("job %s %+v, want FAILED with %q", job.State, job.Errors, detail)
		}
	}
	failed("applications:\n- name: lost\n  routes:\n  - route: x.example.com\n",
		"For application 'lost': The route 'x.example.com' did not match any existing domains.")
	failed("applications:\n- name: lost\n  routes:\n  - route: x.apps.localhost:8080\n",
		"For application 'lost': The route 'x.apps.localhost:8080' has a port, which only TCP domains take; 'apps.localhost' is an HTTP domain.")
	failed("applications:\n- name: lost\n  routes:\n  - route: apps.localhost\n",
		"For application 'lost': Missing host. Routes in shared domains must have a host defined.")
	failed("applications:\n- name: lost\n  routes:\n  - route: bad_host!.apps.localhost\n",
		`For application 'lost': Host must be either "*" or contain only alphanumeric characters, "_", or "-"`)
	failed("applications:\n- name: my_app!\n  default-route: true\n",
		`For application 'my_app!': Failed to create default route from app name: Host must be either "*" or contain only alphanumeric characters, "_", or "-"`)
	// A route of another space cannot be mapped.
	var other ccapi.Space
	e.mustJSON("POST", "/v3/spaces", map[string]any{"name": "s2", "relationships": map[string]any{"organization": map[string]any{"data": map[string]string{"guid": e.org}}}}, 201, &other)
	e.mustJSON("POST", "/v3/routes", routeBody("taken", "", other.GUID, e.domain), 201, nil)
	failed("applications:\n- name: lost\n  routes:\n  - route: taken.apps.localhost\n",
		"For application 'lost': The app cannot be mapped to route taken.apps.localhost because the route is not in this space. Apps must be mapped to routes in the same space.")
	// Nothing of a failed manifest is kept: not the app, not a route, and
	// not the first app of a manifest whose second fails.
	failed("applications:\n- name: first\n  routes:\n  - route: first.apps.localhost\n- name: second\n  routes:\n  - route: y.example.com\n",
		"For application 'second': The route 'y.example.com' did not match any existing domains.")
	for _, n := range []string{"lost", "my_app!", "first", "second"} {
		if _, ok := e.appByName(n); ok {
			t.Errorf("app %s exists after a failed manifest", n)
		}
	}
	var list ccapi.List[ccapi.Route]
	e.mustJSON("GET", "/v3/routes?space_guids="+e.space, nil, 200, &list)
	if len(list.Resources) != 0 {
		t.Errorf("routes exist after failed manifests: %+v", list.Resources)
	}
}

var manifestSeeds = []string{
	"applications:\n- name: a\n",
	"applications:\n- name: a\n  routes:\n  - route: x.apps.localhost\n  default-route: true\n",
	"applications:\n- name: a\n  memory: 1G\n  instances: 2\n  command: null\n  processes:\n  - type: worker\n    command: w\n",
	"---\nversion: 1\napplications:\n- name: 'quoted: name'\n- name: \"x\\ty\"\n",
	"applications:\n- name: &a foo\n- name: *a\n",
	"applications:\n- name: a\n  env: {A: 1, B: null}\n  buildpacks: [binary_buildpack]\n",
	"applications: {}\n",
	"applications:\n- name: a\n  routes: [{route: a.b, protocol: http2, options: {loadbalancing: hash}}]\n",
}

// FuzzApplyManifest: the manifest parser never panics, and a manifest it
// accepts keeps its app names through a write and a read.
func FuzzApplyManifest(f *testing.F) {
	for _, s := range manifestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxManifestBody {
			return
		}
		start := time.Now()
		defer func() {
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("a %d-byte manifest took %v", len(data), d)
			}
		}()
		apps, err := parseManifest(data)
		if err != nil {
			if _, ok := err.(*manifestError); !ok {
				t.Fatalf("parseManifest returned a %T: %v", err, err)
			}
			return
		}
		out, err := yaml.Marshal(manifest{Applications: apps})
		if err != nil {
			t.Fatalf("an accepted manifest does not marshal: %v", err)
		}
		again, err := parseManifest(out)
		if err != nil {
			t.Fatalf("an accepted manifest, written back, is refused: %v\n%s", err, out)
		}
		if len(again) != len(apps) {
			t.Fatalf("%d apps became %d", len(apps), len(again))
		}
		for i := range apps {
			if apps[i].Name != again[i].Name {
				t.Fatalf("name %q became %q", apps[i].Name, again[i].Name)
			}
		}
	})
}
