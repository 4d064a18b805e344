package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

// seed gives the fake CC two started apps and a stopped one, with routes.
func seed(h *harness) {
	f := h.cc
	for _, n := range []string{"myapp", "app2", "app3"} {
		a := f.addApp(n)
		a.app.State = ccapi.AppStarted
		d := &ccapi.Droplet{Resource: ccapi.Resource{GUID: n + "-droplet", CreatedAt: testNow.Add(-90e9)}, State: "STAGED",
			Stack: "cflinuxfs4", ProcessTypes: map[string]string{"web": "./run.sh"}}
		f.droplets[d.GUID] = d
		a.app.Relationships["current_droplet"] = ccapi.ToOne(d.GUID)
	}
	f.appByName("myapp").process.proc.Instances = 3
	f.appByName("myapp").process.calls = 3
	f.appByName("app2").process.calls = 1
	f.appByName("app3").app.State = ccapi.AppStopped
	f.addDest(f.addRoute("myapp", &f.domains[0], ""), "myapp-guid")
	f.addDest(f.addRoute("h2", &f.domains[0], "/foo"), "myapp-guid")
	f.addDest(f.addRoute("app2-7d884067", &f.domains[0], ""), "app2-guid")
	rt := f.addRoute("lonely", &f.domains[0], "")
	rt.Options = map[string]string{"loadbalancing": "least-connection"}
	f.pageSize = 1 // every list is paged: the CLI must follow pagination.next
}

func TestAppsTable(t *testing.T) {
	h := newHarness(t)
	seed(h)
	out := h.mustRun("apps")
	want := `Getting apps in org myorg / space dev as admin...

name    requested state   processes   routes
app2    started           web:1/1     app2-7d884067.apps.localhost
app3    stopped           web:0/1
myapp   started           web:3/3     myapp.apps.localhost, h2.apps.localhost/foo
`
	if out != want {
		t.Errorf("apps:\n%s\nwant:\n%s", out, want)
	}
	reqs := squash(h.cc.requests())
	diffLines(t, "apps requests", reqs, []string{
		"GET /v3/apps?order_by=name&per_page=5000&space_guids=space-guid",
		"GET /v3/apps?order_by=name&page=2&per_page=5000&space_guids=space-guid",
		"GET /v3/apps?order_by=name&page=3&per_page=5000&space_guids=space-guid",
		"GET /v3/processes?app_guids=app2-guid,app3-guid,myapp-guid",
		"GET /v3/processes?app_guids=app2-guid%2Capp3-guid%2Cmyapp-guid&page=2",
		"GET /v3/processes?app_guids=app2-guid%2Capp3-guid%2Cmyapp-guid&page=3",
		"GET /v3/processes/app2-web-guid/stats",
		"GET /v3/processes/app3-web-guid/stats",
		"GET /v3/processes/myapp-web-guid/stats",
		"GET /v3/routes?app_guids=app2-guid,app3-guid,myapp-guid",
		"GET /v3/routes?app_guids=app2-guid%2Capp3-guid%2Cmyapp-guid&page=2",
		"GET /v3/routes?app_guids=app2-guid%2Capp3-guid%2Cmyapp-guid&page=3",
	})

	empty := newHarness(t)
	if out := empty.mustRun("apps"); !strings.HasSuffix(out, "\n\nNo apps found\n") {
		t.Errorf("apps with none: %q", out)
	}
}

func TestAppSummary(t *testing.T) {
	h := newHarness(t)
	seed(h)
	d := "instance is being evacuated"
	h.cc.statsFn = func(p *fakeProcess, call int) []ccapi.ProcessStat {
		s := rampStats(p, 2)
		s[2].Details = &d
		return s
	}
	out := h.mustRun("app", "myapp")
	want := `Showing health and status for app myapp in org myorg / space dev as admin...

name:              myapp
requested state:   started
routes:            myapp.apps.localhost, h2.apps.localhost/foo
last uploaded:     Thu 26 Nov 04:08:56 UTC 2026
stack:             cflinuxfs4
buildpacks:

type:            web
instances:       2/3
memory usage:    256M
start command:   ./run.sh
     state      since                  cell     address             instance address   details
#0   running    2026-11-26T04:08:56Z   cell-1   10.244.0.11:61001   10.244.1.2
#1   running    2026-11-26T04:08:56Z   cell-2   10.244.0.11:61003   10.244.1.3
#2   starting   2026-11-26T04:10:26Z                                                   instance is being evacuated
`
	if out != want {
		t.Errorf("app:\n%s\nwant:\n%s", out, want)
	}
	diffLines(t, "app requests", squash(h.cc.requests()), []string{
		"GET /v3/apps?names=myapp&space_guids=space-guid",
		"GET /v3/apps/myapp-guid/processes",
		"GET /v3/processes/myapp-web-guid/stats",
		"GET /v3/apps/myapp-guid/routes",
		"GET /v3/apps/myapp-guid/routes?page=2",
		"GET /v3/apps/myapp-guid/droplets/current",
	})

	// A stopped app without a droplet: 404 "Droplet not found" is tolerated.
	h.cc.addApp("fresh")
	out = h.mustRun("app", "fresh")
	wantContains(t, "app fresh", out, "requested state:   stopped\n", "last uploaded:\n", "#0   down")
}

func TestRoutesTable(t *testing.T) {
	h := newHarness(t)
	seed(h)
	out := h.mustRun("routes")
	want := `Getting routes for org myorg / space dev as admin...

space   host            domain           port   path   protocol   app-protocol   app-port   apps    options
dev     app2-7d884067   apps.localhost                 http       http1          8080       app2
dev     h2              apps.localhost          /foo   http       http1          8080       myapp
dev     lonely          apps.localhost                 http                                         loadbalancing=least-connection
dev     myapp           apps.localhost                 http       http1          8080       myapp
`
	if out != want {
		t.Errorf("routes:\n%s\nwant:\n%s", out, want)
	}
	wantContains(t, "requests", strings.Join(h.cc.requests(), "\n"),
		"GET /v3/routes?space_guids=space-guid&per_page=5000", "GET /v3/apps?guids=myapp-guid,app2-guid")
	if out := newHarness(t).mustRun("routes"); !strings.HasSuffix(out, "\n\nNo routes found.\n") {
		t.Errorf("routes with none: %q", out)
	}
}

func TestAppNotFound(t *testing.T) {
	h := newHarness(t)
	var codes []int
	h.exit = func(c int) { codes = append(codes, c) }
	for _, verb := range [][]string{{"app", "nope"}, {"scale", "nope", "-i", "2"}, {"start", "nope"}, {"stop", "nope"},
		{"restart", "nope"}, {"logs", "nope", "--recent"}, {"map-route", "nope", "apps.localhost", "--hostname", "x"}} {
		out, errOut, err := h.run(verb...)
		if !errors.Is(err, ErrFailed) {
			t.Errorf("%v: err = %v", verb, err)
		}
		if errOut != "App 'nope' not found.\n" || !strings.HasSuffix(out, "\nFAILED\n") {
			t.Errorf("%v:\nstdout %q\nstderr %q", verb, out, errOut)
		}
	}
	if len(codes) != 7 || codes[0] != 1 {
		t.Errorf("exit codes %v, want 1 each time", codes)
	}

	// A 404 "App not found" from the API reads the same.
	seed(h)
	h.cc.failures["GET /v3/apps/myapp-guid/processes"] = fakeFailure{404, `{"errors":[{"code":10010,"title":"CF-ResourceNotFound","detail":"App not found"}]}`}
	_, errOut, _ := h.run("app", "myapp")
	if errOut != "App 'myapp' not found.\n" {
		t.Errorf("404 App not found: %q", errOut)
	}
}

func TestErrorRendering(t *testing.T) {
	h := newHarness(t)
	seed(h)
	// A CC error's detail is shown, FAILED follows.
	h.cc.failures["POST /v3/apps/myapp-guid/actions/stop"] = fakeFailure{422, `{"errors":[{"code":10008,"title":"CF-UnprocessableEntity","detail":"Something is off."}]}`}
	out, errOut, err := h.run("stop", "myapp")
	if !errors.Is(err, ErrFailed) || errOut != "Something is off.\n" || !strings.HasSuffix(out, "FAILED\n") {
		t.Errorf("422: err %v out %q err %q", err, out, errOut)
	}
	// A non-JSON error body.
	h.cc.failures["GET /v3/apps"] = fakeFailure{502, `<html>bad gateway</html>`}
	_, errOut, _ = h.run("apps")
	wantContains(t, "502", errOut, "Unexpected Response", "Response code: 502", "<html>bad gateway</html>")
	// An endpoint the CC does not have.
	h.cc.failures["GET /v3/apps"] = fakeFailure{404, `{"errors":[{"code":10000,"title":"CF-NotFound","detail":"Unknown request"}]}`}
	_, errOut, _ = h.run("apps")
	wantContains(t, "unknown request", errOut, "API endpoint not found at '"+h.cc.srv.URL+"/v3/apps?order_by=name")
	delete(h.cc.failures, "GET /v3/apps")
	// Warnings are shown on stderr.
	h.cc.warnings = "first%20warning,second%2C%20with%20comma"
	_, errOut, err = h.run("stop", "app2")
	if err != nil || errOut != "first warning\nsecond, with comma\nfirst warning\nsecond, with comma\n" {
		t.Errorf("warnings: %v %q", err, errOut)
	}
}

func TestUnauthorized(t *testing.T) {
	h := newHarness(t)
	h.cfg.AccessToken = "expired"
	h.saveConfig()
	out, errOut, err := h.run("apps")
	if !errors.Is(err, ErrFailed) || !strings.HasSuffix(out, "FAILED\n") {
		t.Fatalf("err %v out %q", err, out)
	}
	wantContains(t, "401", errOut, "rejected the access token in "+h.home+"/config.json as invalid or expired",
		"CF-InvalidAuthToken: Invalid Auth Token", "Get a new token by running `minicf up` again")
	// No user in an opaque token: the messages leave "as USER" out.
	wantContains(t, "stdout", out, "Getting apps in org myorg / space dev...")
}

func TestNoConfig(t *testing.T) {
	h := newHarness(t)
	h.home = t.TempDir()
	_, errOut, err := h.run("apps")
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err %v", err)
	}
	wantContains(t, "stderr", errOut, "no foundation targeted: run `minicf up` first, or set MINICF_HOME")
}

func TestCannotConnect(t *testing.T) {
	h := newHarness(t)
	h.cc.srv.Close()
	_, errOut, err := h.run("apps")
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err %v", err)
	}
	wantContains(t, "stderr", errOut, "Cannot reach the Cloud Controller at "+h.cc.srv.URL, "minicf up")
}

func TestCreateRoute(t *testing.T) {
	h := newHarness(t)
	out := h.mustRun("create-route", "apps.localhost", "--hostname", "h1", "--path", "foo")
	want := "Creating route h1.apps.localhost/foo for org myorg / space dev as admin...\nRoute h1.apps.localhost/foo has been created.\nOK\n"
	if out != want {
		t.Errorf("create-route: %q want %q", out, want)
	}
	body := string(h.cc.request("POST", "/v3/routes").Body)
	if body != `{"host":"h1","path":"/foo","relationships":{"domain":{"data":{"guid":"domain-guid"}},"space":{"data":{"guid":"space-guid"}}}}` {
		t.Errorf("POST /v3/routes body %s", body)
	}
	diffLines(t, "requests", h.cc.requests(), []string{"GET /v3/domains?names=apps.localhost&page=1&per_page=1", "POST /v3/routes"})
	// The same route again: the CC's 422 is a warning, and OK (rc 0).
	out, errOut, err := h.run("create-route", "apps.localhost", "--hostname", "h1", "--path", "/foo")
	if err != nil || errOut != "Route already exists with host 'h1' for domain 'apps.localhost'.\n" || !strings.HasSuffix(out, "\nOK\n") {
		t.Errorf("duplicate: err %v out %q stderr %q", err, out, errOut)
	}
	// An unknown domain fails.
	_, errOut, err = h.run("create-route", "nowhere.example", "--hostname", "h1")
	if !errors.Is(err, ErrFailed) || errOut != "Domain 'nowhere.example' not found.\n" {
		t.Errorf("unknown domain: %v %q", err, errOut)
	}
}

func TestMapAndUnmapRoute(t *testing.T) {
	h := newHarness(t)
	seed(h)
	h.cc.pageSize = 0
	h.cc.reqs = nil
	out := h.mustRun("map-route", "app2", "apps.localhost", "--hostname", "www")
	if out != "Mapping route www.apps.localhost to app app2 in org myorg / space dev as admin...\nOK\n" {
		t.Errorf("map-route: %q", out)
	}
	diffLines(t, "map-route requests", h.cc.requests(), []string{
		"GET /v3/domains?names=apps.localhost&page=1&per_page=1",
		"GET /v3/apps?names=app2&space_guids=space-guid",
		"GET /v3/routes?domain_guids=domain-guid&hosts=www&paths=&page=1&per_page=1",
		"POST /v3/routes",
		"POST /v3/routes/route-5/destinations",
	})
	if b := string(h.cc.request("POST", "/v3/routes/route-5/destinations").Body); b != `{"destinations":[{"app":{"guid":"app2-guid"}}]}` {
		t.Errorf("destinations body %s", b)
	}
	// Mapping again changes nothing.
	out = h.mustRun("map-route", "app2", "apps.localhost", "--hostname", "www")
	wantContains(t, "map-route again", out, "App 'app2' is already mapped to route 'www.apps.localhost'. Nothing has been updated.\nOK\n")
	// An existing route with a path.
	h.cc.reqs = nil
	h.mustRun("map-route", "app2", "apps.localhost", "--hostname", "h2", "--path", "foo")
	wantContains(t, "requests", strings.Join(h.cc.requests(), "\n"), "hosts=h2&paths=%2Ffoo", "POST /v3/routes/route-2/destinations")

	h.cc.reqs = nil
	out = h.mustRun("unmap-route", "app2", "apps.localhost", "--hostname", "www")
	if out != "Removing route www.apps.localhost from app app2 in org myorg / space dev as admin...\nOK\n" {
		t.Errorf("unmap-route: %q", out)
	}
	reqs := h.cc.requests()
	if len(reqs) != 4 || !strings.HasPrefix(reqs[3], "DELETE /v3/routes/route-5/destinations/destination-") {
		t.Errorf("unmap-route requests: %v", reqs)
	}
	out = h.mustRun("unmap-route", "app2", "apps.localhost", "--hostname", "www")
	wantContains(t, "unmap again", out, "Route to be unmapped is not currently mapped to the application.\nOK\n")
	_, errOut, err := h.run("unmap-route", "app2", "apps.localhost", "--hostname", "nope")
	if !errors.Is(err, ErrFailed) || errOut != "Route with host 'nope' for domain 'apps.localhost' does not exist.\n" {
		t.Errorf("unmap unknown route: %v %q", err, errOut)
	}
}

func TestDeleteRoute(t *testing.T) {
	h := newHarness(t)
	seed(h)
	h.cc.pageSize = 0
	h.stdin = "n\n"
	out := h.mustRun("delete-route", "apps.localhost", "--hostname", "lonely")
	if out != "Really delete the route lonely.apps.localhost?> \n'lonely.apps.localhost' has not been deleted.\n" {
		t.Errorf("declined: %q", out)
	}
	h.stdin = "y\n"
	h.cc.reqs = nil
	out = h.mustRun("delete-route", "apps.localhost", "--hostname", "lonely")
	wantContains(t, "delete-route", out, "Deleting route lonely.apps.localhost...\nOK\n")
	diffLines(t, "delete-route requests", h.cc.requests(), []string{
		"GET /v3/domains?names=apps.localhost&page=1&per_page=1",
		"GET /v3/routes?domain_guids=domain-guid&hosts=lonely&paths=&page=1&per_page=1",
		"DELETE /v3/routes/route-4",
		"GET /v3/jobs/job-1",
		"GET /v3/jobs/job-1",
	})
	out, errOut, err := h.run("delete-route", "apps.localhost", "--hostname", "lonely", "-f")
	if err != nil || errOut != "Unable to delete. Route with host 'lonely' for domain 'apps.localhost' does not exist.\n" || !strings.HasSuffix(out, "OK\n") {
		t.Errorf("missing route: %v %q %q", err, out, errOut)
	}
}

func TestDeleteApp(t *testing.T) {
	h := newHarness(t)
	seed(h)
	h.cc.pageSize = 0
	h.cc.reqs = nil
	out := h.mustRun("delete", "myapp", "-f", "-r")
	if out != "Deleting app myapp in org myorg / space dev as admin...\nOK\n" {
		t.Errorf("delete: %q", out)
	}
	diffLines(t, "delete requests", squash(h.cc.requests()), []string{
		"GET /v3/apps?names=myapp&space_guids=space-guid",
		"GET /v3/apps/myapp-guid/routes",
		"DELETE /v3/apps/myapp-guid",
		"GET /v3/jobs/job-1",
		"DELETE /v3/routes/route-1",
		"GET /v3/jobs/job-2",
		"DELETE /v3/routes/route-2",
		"GET /v3/jobs/job-3",
	})
	out, errOut, err := h.run("delete", "myapp", "-f")
	if err != nil || errOut != "App 'myapp' does not exist.\n" || !strings.HasSuffix(out, "OK\n") {
		t.Errorf("delete missing app: %v %q %q", err, out, errOut)
	}
	h.stdin = ""
	out = h.mustRun("delete", "app2")
	wantContains(t, "no answer", out, "Really delete the app app2?> ", "App 'app2' has not been deleted.")
	if h.cc.appByName("app2") == nil {
		t.Error("app2 deleted without confirmation")
	}
}

func TestScale(t *testing.T) {
	h := newHarness(t)
	seed(h)
	h.cc.pageSize = 0
	h.cc.reqs = nil
	out := h.mustRun("scale", "app2", "-i", "2")
	if b := string(h.cc.request("POST", "/v3/apps/app2-guid/processes/web/actions/scale").Body); b != `{"instances":2}` {
		t.Errorf("scale body %s", b)
	}
	wantContains(t, "scale", out, "Scaling app app2 in org myorg / space dev as admin...\n\n0 of 2 instances running, 2 starting\n",
		"2 of 2 instances running\n\nname:              app2\n", "instances:       2/2\n")
	// A stopped app is only scaled.
	out = h.mustRun("scale", "app3", "-i", "4")
	if out != "Scaling app app3 in org myorg / space dev as admin...\nOK\n" {
		t.Errorf("scale stopped: %q", out)
	}
	_, errOut, _ := h.run("scale", "app3")
	wantContains(t, "no -i", errOut, "scale needs -i")
}

func TestStopStartRestart(t *testing.T) {
	h := newHarness(t)
	seed(h)
	h.cc.pageSize = 0
	out := h.mustRun("stop", "app2")
	if out != "Stopping app app2 in org myorg / space dev as admin...\nOK\n" {
		t.Errorf("stop: %q", out)
	}
	out = h.mustRun("stop", "app2")
	wantContains(t, "stop again", out, "App 'app2' is already stopped.\nOK\n")

	// start: the newest package has a staged droplet, so no staging.
	pkg := &fakePackage{pkg: ccapi.Package{Resource: ccapi.Resource{GUID: "pkg-app2"}, State: ccapi.PackageReady,
		Relationships: map[string]ccapi.Relationship{"app": ccapi.ToOne("app2-guid")}}}
	h.cc.packages[pkg.pkg.GUID] = pkg
	h.cc.builds["b0"] = &ccapi.Build{Resource: ccapi.Resource{GUID: "b0"}, State: "STAGED", Package: ccapi.Ref{GUID: "pkg-app2"}, Droplet: &ccapi.Ref{GUID: "app2-droplet"}}
	h.cc.reqs = nil
	out = h.mustRun("start", "app2")
	diffLines(t, "start requests", squash(h.cc.requests()), []string{
		"GET /v3/apps?names=app2&space_guids=space-guid",
		"GET /v3/packages?app_guids=app2-guid&order_by=-created_at&page=1&per_page=1",
		"GET /v3/packages/pkg-app2/droplets?states=STAGED&page=1&per_page=1",
		"POST /v3/apps/app2-guid/actions/start",
		"GET /v3/apps/app2-guid/processes",
		"GET /v3/processes/app2-web-guid/stats",
		"GET /v3/apps/app2-guid/processes",
		"GET /v3/processes/app2-web-guid/stats",
		"GET /v3/apps/app2-guid/routes",
		"GET /v3/apps/app2-guid/droplets/current",
	})
	wantContains(t, "start", out, "Starting app app2 in org myorg / space dev as admin...\n\nWaiting for app app2 to start...\n\n0 of 1 instances running, 1 starting\n1 of 1 instances running\n\nname:              app2\n")
	out = h.mustRun("start", "app2")
	wantContains(t, "start again", out, "App 'app2' is already started.\nOK\n")

	// restart: stop, then start.
	h.cc.reqs = nil
	out = h.mustRun("restart", "app2")
	reqs := strings.Join(squash(h.cc.requests()), "\n")
	wantContains(t, "restart requests", reqs, "POST /v3/apps/app2-guid/actions/stop\nPOST /v3/apps/app2-guid/actions/start\n")
	wantContains(t, "restart", out, "Restarting app app2 in org myorg / space dev as admin...\n\nStopping app...\n\nWaiting for app app2 to start...")

	// A package without a staged droplet is staged first.
	h.cc.stagingLines = []string{"staging app3"}
	h.cc.packages["pkg-app3"] = &fakePackage{pkg: ccapi.Package{Resource: ccapi.Resource{GUID: "pkg-app3"}, State: ccapi.PackageReady,
		Relationships: map[string]ccapi.Relationship{"app": ccapi.ToOne("app3-guid")}}}
	h.cc.reqs = nil
	out = h.mustRun("start", "app3")
	wantContains(t, "stage on start", strings.Join(squash(h.cc.requests()), "\n"),
		"POST /v3/builds\nGET /v3/builds/build-1\nGET /v3/droplets/droplet-1\nPATCH /v3/apps/app3-guid/relationships/current_droplet\nPOST /v3/apps/app3-guid/actions/start")
	wantContains(t, "start app3", out, "Staging app and tracing logs...\n   staging app3\n")
}

func TestLogsRecent(t *testing.T) {
	h := newHarness(t)
	seed(h)
	h.cc.pageSize = 0
	base := testNow.UnixNano()
	h.cc.logs["myapp-guid"] = []ccapi.LogEnvelope{
		envelope("myapp-guid", base, "STG", "0", "OUT", "-----> Staging complete"),
		envelope("myapp-guid", base+530e6, "APP/PROC/WEB", "1", "OUT", "listening on :8080\n"),
		envelope("myapp-guid", base+1e9, "RTR", "0", "OUT", `myapp.apps.localhost - [2026-11-26T04:10:27.000Z] "GET / HTTP/1.1" 200 0 12 "-" "curl/8.0" "127.0.0.1:5000" "10.244.0.11:61001"`),
		envelope("myapp-guid", base+2e9, "APP/PROC/WEB", "0", "ERR", "panic: boom\ngoroutine 1 [running]:"),
	}
	out := h.mustRun("logs", "myapp", "--recent")
	want := `Retrieving logs for app myapp in org myorg / space dev as admin...

   2026-11-26T04:10:26.00+0000 [STG/0] OUT -----> Staging complete
   2026-11-26T04:10:26.53+0000 [APP/PROC/WEB/1] OUT listening on :8080
   2026-11-26T04:10:27.00+0000 [RTR/0] OUT myapp.apps.localhost - [2026-11-26T04:10:27.000Z] "GET / HTTP/1.1" 200 0 12 "-" "curl/8.0" "127.0.0.1:5000" "10.244.0.11:61001"
   2026-11-26T04:10:28.00+0000 [APP/PROC/WEB/0] ERR panic: boom
   2026-11-26T04:10:28.00+0000 [APP/PROC/WEB/0] ERR goroutine 1 [running]:
`
	if out != want {
		t.Errorf("logs --recent:\n%s\nwant:\n%s", out, want)
	}
	wantContains(t, "requests", strings.Join(h.cc.requests(), "\n"),
		"GET /api/v1/read/myapp-guid?descending=true&envelope_types=LOG&limit=1000&start_time=0")
}

func TestTarget(t *testing.T) {
	h := newHarness(t)
	out := h.mustRun("target")
	want := "API endpoint:   " + h.cc.srv.URL + "\nuser:           admin\norg:            myorg\nspace:          dev\nrouter:         127.0.0.1:8081\n"
	if out != want {
		t.Errorf("target:\n%s\nwant:\n%s", out, want)
	}
	if len(h.cc.requests()) != 0 {
		t.Errorf("target sent requests: %v", h.cc.requests())
	}
}

func TestConfigSaveLoad(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	cfg := &Config{API: "http://127.0.0.1:9022/", AccessToken: "t", OrganizationGUID: "o", SpaceGUID: "s",
		OrganizationName: "myorg", SpaceName: "dev", Router: "127.0.0.1:8081"}
	if err := SaveConfig(home, cfg); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(home, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config.json mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	cfg.API = "http://127.0.0.1:9022"
	if *got != *cfg {
		t.Errorf("loaded %+v, want %+v", got, cfg)
	}
	if _, err := LoadConfig(t.TempDir()); !errors.Is(err, ErrNoConfig) {
		t.Errorf("missing config: %v", err)
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, ConfigFile), []byte("{"), 0o600)
	if _, err := LoadConfig(bad); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("bad config: %v", err)
	}
}

func TestCurlLine(t *testing.T) {
	for _, tc := range []struct{ router, url, want string }{
		{"127.0.0.1:8081", "myapp.apps.localhost", "curl http://myapp.apps.localhost:8081/"},
		{"http://localhost:8081", "h2.apps.localhost/foo", "curl http://h2.apps.localhost:8081/foo"},
		{"http://0.0.0.0:80", "myapp.apps.localhost", "curl http://myapp.apps.localhost/"},
		{"10.0.0.5:8081", "myapp.apps.localhost", "curl -H 'Host: myapp.apps.localhost' http://10.0.0.5:8081/"},
		{"", "myapp.apps.localhost", "http://myapp.apps.localhost/"},
	} {
		s := &session{cfg: &Config{Router: tc.router}}
		if got := s.curlLine(tc.url); got != tc.want {
			t.Errorf("router %q url %q: %q, want %q", tc.router, tc.url, got, tc.want)
		}
	}
}

// Bad input to the route verbs fails with the reason, before any request.
func TestRouteVerbsBadInput(t *testing.T) {
	h := newHarness(t)
	seed(h)
	for _, c := range []struct {
		args []string
		want string // in the error (cobra's) or on stderr
	}{
		{[]string{"create-route"}, "accepts 1 arg(s), received 0"},
		{[]string{"map-route", "app2"}, "accepts 2 arg(s), received 1"},
		{[]string{"unmap-route", "app2", "apps.localhost", "extra"}, "accepts 2 arg(s), received 3"},
		{[]string{"map-route", "app2", "apps.localhost"}, "the required flag '--hostname' was not specified"},
		{[]string{"delete-route", "apps.localhost", "-f"}, "the required flag '--hostname' was not specified"},
		{[]string{"create-route", "apps.localhost", "--hostname", "a.b"}, `Host 'a.b' is invalid: it must be either "*" or contain only alphanumeric characters, "_", or "-"`},
		{[]string{"map-route", "app2", "apps.localhost", "-n", "we b"}, `Host 'we b' is invalid`},
		{[]string{"unmap-route", "app2", "apps.localhost", "-n", strings.Repeat("h", 64)}, "Host is too long (maximum is 63 characters)"},
		{[]string{"create-route", "apps.localhost", "-n", "h", "--path", "/"}, "Path cannot be exactly /"},
		{[]string{"map-route", "app2", "apps.localhost", "-n", "h", "--path", "a?b=1"}, "Path '/a?b=1' cannot contain ?"},
		{[]string{"delete-route", "apps.localhost", "-n", "h", "--path", "/a b", "-f"}, `Path '/a b' is invalid: ' ' is not allowed in a URL path`},
		{[]string{"create-route", "", "-n", "h"}, "Domain '' is not a domain name."},
	} {
		h.cc.reqs = nil
		out, errOut, err := h.run(c.args...)
		if err == nil || !strings.Contains(err.Error()+errOut, c.want) {
			t.Errorf("%q: err %v stderr %q, want %q", c.args, err, errOut, c.want)
		}
		if strings.Contains(out, "OK") {
			t.Errorf("%q: stdout %q", c.args, out)
		}
		if reqs := h.cc.requests(); len(reqs) != 0 {
			t.Errorf("%q sent %v", c.args, reqs)
		}
	}
	// An unknown domain is found out by its lookup alone: nothing is created,
	// mapped or deleted.
	for _, args := range [][]string{
		{"create-route", "nowhere.example", "-n", "h"},
		{"map-route", "app2", "nowhere.example", "-n", "h"},
		{"unmap-route", "app2", "nowhere.example", "-n", "h"},
		{"delete-route", "nowhere.example", "-n", "h", "-f"},
	} {
		h.cc.reqs = nil
		_, errOut, err := h.run(args...)
		if !errors.Is(err, ErrFailed) || errOut != "Domain 'nowhere.example' not found.\n" {
			t.Errorf("%q: %v %q", args, err, errOut)
		}
		diffLines(t, strings.Join(args, " "), h.cc.requests(), []string{"GET /v3/domains?names=nowhere.example&page=1&per_page=1"})
	}
}
