package cc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

func testRootDocument(t *testing.T, e *env) {
	resp, err := http.Get(e.base + "/") // no token
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /: %d %s", resp.StatusCode, data)
	}
	var raw map[string]map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cloud_controller_v2", "routing", "network_policy_v1", "logging", "app_ssh"} {
		if v, ok := raw["links"][k]; !ok || string(v) != "null" {
			t.Errorf("links.%s = %s, want null", k, v)
		}
	}
	var root ccapi.Root
	json.Unmarshal(data, &root)
	v3 := root.Links["cloud_controller_v3"]
	if v3 == nil || v3.Href != testExternalURL+"/v3" || v3.Meta["version"] != ccapi.APIVersion {
		t.Errorf("cloud_controller_v3 = %+v", v3)
	}
	for _, k := range []string{"self", "login", "uaa", "log_cache"} {
		if l := root.Links[k]; l == nil || l.Href != testExternalURL {
			t.Errorf("links.%s = %+v, want %s", k, l, testExternalURL)
		}
	}

	// Without an external URL, links follow the request's Host.
	e2 := newEnv(t, testSQLiteDSN(t), func(c *Config) { c.ExternalURL = "" })
	var root2 ccapi.Root
	e2.mustJSON("GET", "/", nil, 200, &root2)
	if got := root2.Links["login"].Href; got != e2.base {
		t.Errorf("login href %q, want the request's host %q", got, e2.base)
	}
	// A Host that is not a host[:port] cannot get into a link.
	code, _, body := e2.do("GET", "/", nil, "Host", "evil.test/x?y")
	if code == 200 && strings.Contains(string(body), "evil") {
		t.Errorf("a malformed Host reached the links: %s", body)
	}
	e.wantError("GET", "/v3/nothing/here", nil, 404, "CF-NotFound", "Unknown request")
	e.wantError("PUT", "/v3/apps", nil, 404, "CF-NotFound", "Unknown request")
}

func testAuth(t *testing.T, e *env) {
	check := func(name string, hdr []string, status int, title, detail string) {
		t.Helper()
		code, _, data := e.do("GET", "/v3/apps", nil, hdr...)
		checkError(t, name, code, data, status, title, detail)
	}
	check("no token", []string{"Authorization", ""}, 401, "CF-NotAuthenticated", "Authentication error…")
	check("not a jwt", []string{"Authorization", "bearer garbage"}, 401, "CF-InvalidAuthToken",
		"Invalid Auth Token: the token is not a JWT (three base64url parts separated by dots)")
	check("basic", []string{"Authorization", "Basic Y2Y6"}, 401, "CF-InvalidAuthToken", "Invalid Auth Token: the Authorization header must be 'bearer <token>'")

	other := &tokenAuth{key: []byte("another foundation's key, 32 b!!"), now: e.clock.Now}
	foreign, _ := other.issue("admin", time.Hour, "x")
	check("foreign signature", []string{"Authorization", "bearer " + foreign}, 401, "CF-InvalidAuthToken",
		"Invalid Auth Token: the token's signature does not verify: it was not issued by this foundation")

	parts := strings.Split(e.token, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	check("alg none", []string{"Authorization", "bearer " + none}, 401, "CF-InvalidAuthToken", "Invalid Auth Token: the token is signed with \"none\"…")

	short, err := e.cc.IssueToken("admin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(2 * time.Minute)
	check("expired", []string{"Authorization", "bearer " + short}, 401, "CF-InvalidAuthToken", "Invalid Auth Token: the token expired at 2026-01-02T03:05:05Z")

	for _, scheme := range []string{"bearer", "Bearer"} {
		if code, _, data := e.do("GET", "/v3/apps", nil, "Authorization", scheme+" "+e.token); code != 200 {
			t.Errorf("%s token: %d %s", scheme, code, data)
		}
	}
	for _, p := range []string{"/api/v1/info", "/api/v1/read/x", "/v3/organizations"} {
		code, _, data := e.do("GET", p, nil, "Authorization", "")
		checkError(t, p, code, data, 401, "CF-NotAuthenticated", "Authentication error…")
	}

	// The claims the cf CLI decodes (cf-cli-v8.md §4.2).
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	for _, k := range []string{"jti", "user_name", "user_id", "origin", "client_id", "cid", "iss"} {
		if s, ok := claims[k].(string); !ok || s == "" {
			t.Errorf("claim %s = %v, want a non-empty string", k, claims[k])
		}
	}
	for _, k := range []string{"iat", "exp"} {
		if _, ok := claims[k].(float64); !ok {
			t.Errorf("claim %s = %v, want a number", k, claims[k])
		}
	}
	if claims["client_id"] != "cf" || claims["user_name"] != "admin" || claims["origin"] != "uaa" {
		t.Errorf("claims %v", claims)
	}
	if _, ok := claims["scope"].([]any); !ok {
		t.Errorf("scope %v is not a list", claims["scope"])
	}

	// The key is kept (0600) and reused: a token outlives a restart.
	keyPath := filepath.Join(e.stateDir, TokenKeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token key %v mode %v", err, fi)
	}
	again, err := loadTokenAuth(keyPath, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.verify(e.token); err != nil {
		t.Errorf("a reloaded key refuses an earlier token: %v", err)
	}
}

func testOrgsSpacesDomains(t *testing.T, e *env) {
	var orgs ccapi.List[ccapi.Organization]
	e.mustJSON("GET", "/v3/organizations?order_by=name", nil, 200, &orgs)
	if len(orgs.Resources) != 1 || orgs.Resources[0].Name != DefaultOrg || orgs.Resources[0].Suspended {
		t.Fatalf("orgs %+v", orgs.Resources)
	}
	e.wantError("GET", "/v3/organizations/nope", nil, 404, "CF-NotFound", "Organization not found")

	var spaces ccapi.List[ccapi.Space]
	e.mustJSON("GET", "/v3/spaces?names=dev&organization_guids="+e.org+"&page=1&per_page=1", nil, 200, &spaces)
	if len(spaces.Resources) != 1 || relGUID(spaces.Resources[0].Relationships, "organization") != e.org {
		t.Fatalf("spaces %+v", spaces.Resources)
	}
	e.mustJSON("GET", "/v3/spaces?guids=", nil, 200, &spaces)
	if len(spaces.Resources) != 0 {
		t.Errorf("guids= matched %d spaces", len(spaces.Resources))
	}
	e.mustJSON("GET", "/v3/spaces?guids="+e.space+",other", nil, 200, &spaces)
	if len(spaces.Resources) != 1 {
		t.Errorf("guids=S,other matched %d spaces", len(spaces.Resources))
	}

	_, _, data := e.do("GET", "/v3/domains?names=apps.localhost&page=1&per_page=1", nil)
	var raw struct {
		Resources []map[string]json.RawMessage `json:"resources"`
	}
	json.Unmarshal(data, &raw)
	if len(raw.Resources) != 1 {
		t.Fatalf("domains: %s", data)
	}
	d := raw.Resources[0]
	if string(d["router_group"]) != "null" || string(d["internal"]) != "false" || string(d["supported_protocols"]) != `["http"]` ||
		!strings.Contains(string(d["relationships"]), `"organization":{"data":null}`) {
		t.Errorf("shared domain JSON: %s", data)
	}
	var doms ccapi.List[ccapi.Domain]
	e.mustJSON("GET", "/v3/organizations/"+e.org+"/domains", nil, 200, &doms)
	if len(doms.Resources) != 1 || doms.Resources[0].Name != "apps.localhost" {
		t.Errorf("org domains %+v", doms.Resources)
	}
	var def ccapi.Domain
	e.mustJSON("GET", "/v3/organizations/"+e.org+"/domains/default", nil, 200, &def)
	if def.GUID != e.domain {
		t.Errorf("default domain %s, want %s", def.GUID, e.domain)
	}
	e.wantError("GET", "/v3/domains/nope", nil, 404, "CF-NotFound", "Domain not found")

	var org ccapi.Organization
	e.mustJSON("POST", "/v3/organizations", map[string]string{"name": "other"}, 201, &org)
	e.wantError("POST", "/v3/organizations", map[string]string{"name": "other"}, 422, "CF-UnprocessableEntity", "Organization 'other' already exists.")
	var sp ccapi.Space
	e.mustJSON("POST", "/v3/spaces", map[string]any{"name": "prod", "relationships": map[string]any{"organization": map[string]any{"data": map[string]string{"guid": org.GUID}}}}, 201, &sp)
	e.wantError("POST", "/v3/spaces", map[string]any{"name": "prod", "relationships": map[string]any{"organization": map[string]any{"data": map[string]string{"guid": org.GUID}}}},
		422, "CF-UnprocessableEntity", "Name must be unique per organization")
	e.wantError("POST", "/v3/spaces", map[string]any{"name": "x", "relationships": map[string]any{"organization": map[string]any{"data": map[string]string{"guid": "nope"}}}},
		422, "CF-UnprocessableEntity", "Invalid organization. Ensure the organization exists and you have access to it.")

	// A second start on the same database creates nothing twice.
	c2, err := New(e.cc.cfg, e.bbs, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2.Stop(context.Background())
	e.mustJSON("GET", "/v3/organizations?names="+DefaultOrg, nil, 200, &orgs)
	e.mustJSON("GET", "/v3/domains", nil, 200, &doms)
	if len(orgs.Resources) != 1 || len(doms.Resources) != 1 {
		t.Errorf("after a restart: %d default orgs, %d domains", len(orgs.Resources), len(doms.Resources))
	}
}

func testPagination(t *testing.T, e *env) {
	for _, n := range []string{"b", "a", "c"} {
		e.createApp(n)
		e.clock.Add(time.Second)
	}
	var page ccapi.List[ccapi.App]
	e.mustJSON("GET", "/v3/apps?per_page=2&space_guids="+e.space, nil, 200, &page)
	p := page.Pagination
	if p.TotalResults != 3 || p.TotalPages != 2 || len(page.Resources) != 2 || p.Next == nil || p.Previous != nil {
		t.Fatalf("page 1: %+v, %d resources", p, len(page.Resources))
	}
	if want := testExternalURL + "/v3/apps?page=2&per_page=2&space_guids=" + e.space; p.Next.Href != want {
		t.Errorf("next %q, want %q", p.Next.Href, want)
	}
	if page.Resources[0].Name != "b" || page.Resources[1].Name != "a" {
		t.Errorf("default order is creation: %s, %s", page.Resources[0].Name, page.Resources[1].Name)
	}
	e.mustJSON("GET", strings.Replace(p.Next.Href, testExternalURL, e.base, 1), nil, 200, &page)
	if len(page.Resources) != 1 || page.Pagination.Next != nil || page.Pagination.Previous == nil || page.Resources[0].Name != "c" {
		t.Errorf("page 2: %+v", page)
	}
	e.mustJSON("GET", "/v3/apps?order_by=-name", nil, 200, &page)
	if names := []string{page.Resources[0].Name, page.Resources[1].Name, page.Resources[2].Name}; !equalStrings(names, []string{"c", "b", "a"}) {
		t.Errorf("order_by=-name: %v", names)
	}
	e.mustJSON("GET", "/v3/apps?names=a,c&order_by=name", nil, 200, &page)
	if len(page.Resources) != 2 || page.Resources[0].Name != "a" {
		t.Errorf("names=a,c: %+v", page.Resources)
	}
	e.mustJSON("GET", "/v3/apps?names=", nil, 200, &page)
	if len(page.Resources) != 0 {
		t.Errorf("names= matched %d apps", len(page.Resources))
	}
	e.wantError("GET", "/v3/apps?per_page=0", nil, 400, "CF-BadQueryParameter", "The query parameter is invalid: Per page must be between 1 and 5000")
	e.wantError("GET", "/v3/apps?per_page=5001", nil, 400, "CF-BadQueryParameter", "The query parameter is invalid: Per page must be between 1 and 5000")
	e.wantError("GET", "/v3/apps?order_by=size", nil, 400, "CF-BadQueryParameter", "The query parameter is invalid: Order by can only be: …")
	// Always-empty lists still carry resources.
	for _, p := range []string{"/v3/service_route_bindings?include=service_instance&route_guids=x", "/v3/deployments?app_guids=x&status_values=ACTIVE"} {
		_, _, data := e.do("GET", p, nil)
		if !strings.Contains(string(data), `"resources":[]`) {
			t.Errorf("%s: %s", p, data)
		}
	}
}

func testAppsCRUD(t *testing.T, e *env) {
	a := e.createApp("myapp")
	if a.State != ccapi.AppStopped || a.Lifecycle.Type != "buildpack" || relGUID(a.Relationships, "space") != e.space ||
		a.Relationships["current_droplet"].Data != nil || a.Links["self"].Href != testExternalURL+"/v3/apps/"+a.GUID {
		t.Errorf("new app %+v", a)
	}
	e.wantError("POST", "/v3/apps", map[string]any{"name": "myapp", "relationships": map[string]any{"space": map[string]any{"data": map[string]string{"guid": e.space}}}},
		422, "CF-UnprocessableEntity", "App with the name 'myapp' already exists.")
	e.wantError("POST", "/v3/apps", map[string]any{"name": "x", "relationships": map[string]any{"space": map[string]any{"data": map[string]string{"guid": "nope"}}}},
		422, "CF-UnprocessableEntity", "Invalid space. Ensure that the space exists and you have access to it.")
	e.wantError("POST", "/v3/apps", map[string]any{"name": " ", "relationships": map[string]any{"space": map[string]any{"data": map[string]string{"guid": e.space}}}},
		422, "CF-UnprocessableEntity", "Name can't be blank")
	e.wantError("POST", "/v3/apps", `{"name": 3}`, 400, "CF-MessageParseError", "Request invalid due to parse error: …")

	for _, p := range []string{"/v3/apps/nope", "/v3/apps/nope/processes", "/v3/apps/nope/routes", "/v3/apps/nope/droplets/current"} {
		e.wantError("GET", p, nil, 404, "CF-NotFound", "App not found")
	}
	for _, p := range []string{"/v3/apps/nope/actions/start", "/v3/apps/nope/actions/stop", "/v3/apps/nope/actions/restart"} {
		e.wantError("POST", p, nil, 404, "CF-NotFound", "App not found")
	}
	e.wantError("DELETE", "/v3/apps/nope", nil, 404, "CF-NotFound", "App not found")
	e.wantError("GET", "/v3/apps/"+a.GUID+"/droplets/current", nil, 404, "CF-NotFound", "Droplet not found")
	e.wantError("GET", "/v3/droplets/nope", nil, 404, "CF-NotFound", "Droplet not found")
	e.wantError("POST", "/v3/apps/"+a.GUID+"/actions/start", nil, 422, "CF-UnprocessableEntity", "Assign a droplet before starting this app.")

	var list ccapi.List[ccapi.App]
	e.mustJSON("GET", "/v3/apps?names=myapp&space_guids="+e.space, nil, 200, &list)
	if len(list.Resources) != 1 || list.Resources[0].GUID != a.GUID {
		t.Fatalf("names=myapp: %+v", list.Resources)
	}
	var procs ccapi.List[ccapi.Process]
	e.mustJSON("GET", "/v3/apps/"+a.GUID+"/processes", nil, 200, &procs)
	if len(procs.Resources) != 1 {
		t.Fatalf("processes %+v", procs.Resources)
	}
	web := procs.Resources[0]
	if web.Type != "web" || web.Instances != 1 || web.HealthCheck.Type != "port" || web.MemoryInMB != 1024 || web.DiskInMB != 1024 ||
		web.Command != nil || relGUID(web.Relationships, "app") != a.GUID {
		t.Errorf("web process %+v", web)
	}

	other := e.createApp("other")
	var renamed ccapi.App
	e.mustJSON("PATCH", "/v3/apps/"+a.GUID, map[string]string{"name": "renamed"}, 200, &renamed)
	if renamed.Name != "renamed" {
		t.Errorf("rename: %+v", renamed)
	}
	e.wantError("PATCH", "/v3/apps/"+other.GUID, map[string]string{"name": "renamed"}, 422, "CF-UnprocessableEntity", "App with the name 'renamed' already exists.")

	var env map[string]any
	e.mustJSON("PATCH", "/v3/apps/"+a.GUID+"/environment_variables", map[string]any{"var": map[string]string{"GREETING": "hi"}}, 200, &env)
	if env["var"].(map[string]any)["GREETING"] != "hi" {
		t.Errorf("env %v", env)
	}
	e.wantError("PATCH", "/v3/apps/"+a.GUID+"/environment_variables", map[string]any{"var": map[string]string{"VCAP_X": "1"}}, 422, "CF-UnprocessableEntity",
		"Environment variable names cannot start with VCAP_")

	h := e.mustJSON("DELETE", "/v3/apps/"+a.GUID, nil, 202, nil)
	loc := h.Get("Location")
	if !strings.HasPrefix(loc, testExternalURL+"/v3/jobs/") {
		t.Fatalf("Location %q is not an absolute job URL", loc)
	}
	var job ccapi.Job
	e.mustJSON("GET", strings.Replace(loc, testExternalURL, e.base, 1), nil, 200, &job)
	if job.State != ccapi.JobComplete || job.Operation != "app.delete" {
		t.Errorf("job %+v", job)
	}
	e.wantError("GET", "/v3/apps/"+a.GUID, nil, 404, "CF-NotFound", "App not found")
	e.wantError("GET", "/v3/processes/"+web.GUID, nil, 404, "CF-NotFound", "Process not found")
}

func testProcesses(t *testing.T, e *env) {
	a := e.createApp("proc")
	web := e.webProcess(a.GUID)
	e.wantError("GET", "/v3/processes/nope", nil, 404, "CF-NotFound", "Process not found")
	e.wantError("GET", "/v3/apps/"+a.GUID+"/processes/worker", nil, 404, "CF-NotFound", "Process not found")
	e.wantError("POST", "/v3/processes/nope/actions/scale", map[string]int{"instances": 1}, 404, "CF-NotFound", "Process not found")

	var p ccapi.Process
	e.mustJSON("PATCH", "/v3/processes/"+web.GUID, map[string]any{"command": "./run.sh", "health_check": map[string]any{"type": "http", "data": map[string]any{"endpoint": "/health", "timeout": 30}}}, 200, &p)
	if p.Command == nil || *p.Command != "./run.sh" || p.HealthCheck.Type != "http" || p.HealthCheck.Data.Endpoint != "/health" || *p.HealthCheck.Data.Timeout != 30 {
		t.Errorf("patched %+v", p)
	}
	e.mustJSON("PATCH", "/v3/processes/"+web.GUID, map[string]any{"command": nil}, 200, &p)
	if p.Command != nil {
		t.Errorf("command: null left %q", *p.Command)
	}
	e.wantError("PATCH", "/v3/processes/"+web.GUID, map[string]any{"health_check": map[string]any{"type": "tcp"}}, 422, "CF-UnprocessableEntity", `Health check type must be "port", "process", or "http"`)
	e.wantError("PATCH", "/v3/processes/"+web.GUID, map[string]any{"health_check": map[string]any{"type": "port", "data": map[string]any{"endpoint": "/x"}}}, 422,
		"CF-UnprocessableEntity", `Health check type must be "http" to set a health check HTTP endpoint`)

	e.mustJSON("POST", "/v3/processes/"+web.GUID+"/actions/scale", map[string]int{"instances": 3, "memory_in_mb": 256, "disk_in_mb": 512}, 202, &p)
	if p.Instances != 3 || p.MemoryInMB != 256 || p.DiskInMB != 512 {
		t.Errorf("scaled %+v", p)
	}
	e.mustJSON("POST", "/v3/apps/"+a.GUID+"/processes/web/actions/scale", map[string]int{"instances": 2}, 202, &p)
	if p.Instances != 2 || p.MemoryInMB != 256 {
		t.Errorf("scaled by type %+v", p)
	}
	e.wantError("POST", "/v3/processes/"+web.GUID+"/actions/scale", map[string]int{"instances": -1}, 422, "CF-UnprocessableEntity", "Instances must be between 0 and 1000")
	e.wantError("POST", "/v3/processes/"+web.GUID+"/actions/scale", map[string]int{"memory_in_mb": 0}, 422, "CF-UnprocessableEntity", "Memory in mb must be greater than 0")

	var procs ccapi.List[ccapi.Process]
	e.mustJSON("GET", "/v3/processes?app_guids="+a.GUID, nil, 200, &procs)
	if len(procs.Resources) != 1 {
		t.Errorf("app_guids: %d", len(procs.Resources))
	}
	e.mustJSON("GET", "/v3/processes?space_guids="+e.space+"&types=worker", nil, 200, &procs)
	if len(procs.Resources) != 0 {
		t.Errorf("types=worker: %d", len(procs.Resources))
	}
	_, _, data := e.do("GET", "/v3/processes/"+web.GUID+"/sidecars", nil)
	if !strings.Contains(string(data), `"resources":[]`) {
		t.Errorf("sidecars: %s", data)
	}
	// A stopped app's instances are all DOWN.
	var stats struct {
		Resources []ccapi.ProcessStat `json:"resources"`
	}
	e.mustJSON("GET", "/v3/processes/"+web.GUID+"/stats", nil, 200, &stats)
	if len(stats.Resources) != 2 || stats.Resources[0].State != ccapi.InstanceDown || stats.Resources[1].Index != 1 {
		t.Errorf("stopped stats %+v", stats.Resources)
	}
}

func testJobs(t *testing.T, e *env) {
	e.wantError("GET", "/v3/jobs/nope", nil, 404, "CF-NotFound", "Job not found")
	rt := e.createRoute("gone", "")
	h := e.mustJSON("DELETE", "/v3/routes/"+rt.GUID, nil, 202, nil)
	_, _, data := e.do("GET", strings.Replace(h.Get("Location"), testExternalURL, e.base, 1), nil)
	var raw map[string]json.RawMessage
	json.Unmarshal(data, &raw)
	if string(raw["state"]) != `"COMPLETE"` || string(raw["errors"]) != "[]" || string(raw["warnings"]) != "[]" {
		t.Errorf("job JSON %s", data)
	}
	e.wantError("GET", "/v3/routes/"+rt.GUID, nil, 404, "CF-NotFound", "Route not found")
	e.wantError("DELETE", "/v3/routes/"+rt.GUID, nil, 404, "CF-NotFound", "Route not found")
}
