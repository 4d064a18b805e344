package cc

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc/ccapi"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func testStartStopDelete(t *testing.T, e *env) {
	a, _ := e.stagedApp("runner")
	rt := e.createRoute("runner", "")
	e.mapRoute(rt.GUID, a.GUID)
	e.bbs.takeCalls()
	e.mustJSON("POST", "/v3/apps/"+a.GUID+"/actions/start", nil, 200, &a)
	if a.State != ccapi.AppStarted {
		t.Fatalf("state %s", a.State)
	}
	first := e.lrpGUIDOf(a.GUID)
	if calls := e.bbs.takeCalls(); !equalStrings(calls, []string{"update " + first, "desire " + first}) {
		t.Errorf("start: BBS calls %v", calls)
	}
	d := e.bbs.lrp(first)
	if d == nil || d.Instances != 1 || !equalStrings(cfHostnames(t, d), []string{"runner.apps.localhost"}) {
		t.Fatalf("desired %+v", d)
	}
	if !strings.HasPrefix(first, e.webProcess(a.GUID).GUID+"-") || len(first) != 73 {
		t.Errorf("process guid %q is not <process guid>-<version>", first)
	}
	// Starting a started app changes nothing.
	e.mustJSON("POST", "/v3/apps/"+a.GUID+"/actions/start", nil, 200, nil)
	if calls := e.bbs.takeCalls(); len(calls) != 0 {
		t.Errorf("a second start: %v", calls)
	}
	// Stop removes the LRP.
	e.mustJSON("POST", "/v3/apps/"+a.GUID+"/actions/stop", nil, 200, &a)
	if calls := e.bbs.takeCalls(); a.State != ccapi.AppStopped || !equalStrings(calls, []string{"remove " + first}) {
		t.Errorf("stop: %s, calls %v", a.State, calls)
	}
	if len(e.bbs.lrpGUIDs()) != 0 {
		t.Errorf("LRPs after stop: %v", e.bbs.lrpGUIDs())
	}
	// A new start is a new version: a new LRP.
	e.mustJSON("POST", "/v3/apps/"+a.GUID+"/actions/start", nil, 200, nil)
	second := e.lrpGUIDOf(a.GUID)
	if second == first || !equalStrings(e.bbs.lrpGUIDs(), []string{second}) {
		t.Errorf("start after stop: %s (was %s), LRPs %v", second, first, e.bbs.lrpGUIDs())
	}
	e.bbs.takeCalls()
	// Restart: the old LRP goes, a new version comes.
	e.mustJSON("POST", "/v3/apps/"+a.GUID+"/actions/restart", nil, 200, &a)
	third := e.lrpGUIDOf(a.GUID)
	if calls := e.bbs.takeCalls(); third == second || !equalStrings(calls, []string{"remove " + second, "update " + third, "desire " + third}) {
		t.Errorf("restart: calls %v", calls)
	}
	// Delete removes the LRP and the route mappings (the route stays).
	e.mustJSON("DELETE", "/v3/apps/"+a.GUID, nil, 202, nil)
	if calls := e.bbs.takeCalls(); !equalStrings(calls, []string{"remove " + third}) {
		t.Errorf("delete: calls %v", calls)
	}
	var route ccapi.Route
	e.mustJSON("GET", "/v3/routes/"+rt.GUID, nil, 200, &route)
	if len(route.Destinations) != 0 {
		t.Errorf("route mappings after delete: %+v", route.Destinations)
	}
	if files := listFiles(t, filepath.Join(e.stateDir, "droplets")); len(files) != 0 {
		t.Errorf("droplet files after delete: %v", files)
	}
	if files := listFiles(t, filepath.Join(e.stateDir, "packages")); len(files) != 0 {
		t.Errorf("package files after delete: %v", files)
	}
}

// testDesiredLRPGolden compares one DesiredLRP, field for field, with
// testdata/desired_lrp.golden.json (guids replaced by their names; go test
// -update rewrites it).
func testDesiredLRPGolden(t *testing.T, e *env) {
	a, d := e.stagedApp("golden")
	web := e.webProcess(a.GUID)
	e.mustJSON("PATCH", "/v3/processes/"+web.GUID, map[string]any{"health_check": map[string]any{"type": "http", "data": map[string]any{"endpoint": "/health", "invocation_timeout": 2}}}, 200, nil)
	e.mustJSON("PATCH", "/v3/apps/"+a.GUID+"/environment_variables", map[string]any{"var": map[string]string{"GREETING": "hello"}}, 200, nil)
	e.mustJSON("POST", "/v3/processes/"+web.GUID+"/actions/scale", map[string]int{"instances": 2, "memory_in_mb": 256, "disk_in_mb": 512}, 202, nil)
	rt := e.createRoute("golden", "")
	e.mapRoute(rt.GUID, a.GUID)
	rt2 := e.createRoute("golden", "/api")
	e.mustJSON("PATCH", "/v3/routes/"+rt2.GUID, map[string]any{"options": map[string]string{"loadbalancing": "least-connection"}}, 200, nil)
	e.mustJSON("POST", "/v3/routes/"+rt2.GUID+"/destinations", map[string]any{"destinations": []any{map[string]any{"app": map[string]string{"guid": a.GUID}, "protocol": "http2"}}}, 200, nil)
	e.mustJSON("POST", "/v3/apps/"+a.GUID+"/actions/start", nil, 200, nil)
	guid := e.lrpGUIDOf(a.GUID)
	lrp := e.bbs.lrp(guid)
	if lrp == nil {
		t.Fatal("no LRP")
	}
	got, _ := json.MarshalIndent(lrp, "", "  ")
	version := strings.TrimPrefix(guid, web.GUID+"-")
	if !regexp.MustCompile(`^1767323\d{3}\.\d+$`).MatchString(lrp.Annotation) {
		t.Errorf("annotation %q is not the process's updated_at in seconds", lrp.Annotation)
	}
	s := strings.NewReplacer(web.GUID, "PROCESS_GUID", version, "VERSION", a.GUID, "APP_GUID", e.space, "SPACE_GUID",
		e.org, "ORG_GUID", d.GUID, "DROPLET_GUID", `"annotation": "`+lrp.Annotation+`"`, `"annotation": "ANNOTATION"`).Replace(string(got)) + "\n"
	golden := filepath.Join("testdata", "desired_lrp.golden.json")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestCCOnSQLite/DesiredLRPGolden -update to write it)", err)
	}
	if s != string(want) {
		t.Errorf("DesiredLRP differs from %s:\n%s", golden, s)
	}
	if err := lrp.Validate(); err != nil {
		t.Errorf("the BBS would refuse it: %v", err)
	}
}

func testRouteMappingUpdatesLRP(t *testing.T, e *env) {
	a, _, _ := e.startedApp("mapper")
	lrp := e.lrpGUIDOf(a.GUID)
	before := e.bbs.lrp(lrp)
	e.bbs.takeCalls()
	e.clock.Add(time.Second)

	rt2 := e.createRoute("second", "/p")
	out := e.mapRoute(rt2.GUID, a.GUID)
	if calls := e.bbs.takeCalls(); !equalStrings(calls, []string{"update " + lrp}) {
		t.Fatalf("map: calls %v", calls)
	}
	after := e.bbs.lrp(lrp)
	if got := cfHostnames(t, after); !equalStrings(got, []string{"mapper.apps.localhost", "second.apps.localhost/p"}) {
		t.Errorf("routes after map: %v", got)
	}
	if after.Annotation == before.Annotation {
		t.Errorf("annotation %q did not change", after.Annotation)
	}
	// Unmap.
	var dguid string
	for _, d := range out.Destinations {
		dguid = d.GUID
	}
	code, _, data := e.do("DELETE", "/v3/routes/"+rt2.GUID+"/destinations/"+dguid, nil)
	if code != 204 {
		t.Fatalf("unmap: %d %s", code, data)
	}
	if calls := e.bbs.takeCalls(); !equalStrings(calls, []string{"update " + lrp}) {
		t.Errorf("unmap: calls %v", calls)
	}
	if got := cfHostnames(t, e.bbs.lrp(lrp)); !equalStrings(got, []string{"mapper.apps.localhost"}) {
		t.Errorf("routes after unmap: %v", got)
	}
	// A protocol change reaches the LRP.
	var list ccapi.List[ccapi.Route]
	e.mustJSON("GET", "/v3/routes?hosts=mapper", nil, 200, &list)
	e.mustJSON("PATCH", "/v3/routes/"+list.Resources[0].GUID+"/destinations/"+list.Resources[0].Destinations[0].GUID, map[string]string{"protocol": "http2"}, 200, nil)
	rs, _ := e.bbs.lrp(lrp).Routes.CFRoutes()
	if len(rs) != 1 || rs[0].Protocol != "http2" || rs[0].Port != 8080 {
		t.Errorf("routes after protocol change: %+v", rs)
	}
	e.bbs.takeCalls()
	// Deleting a route updates the LRP.
	e.mustJSON("DELETE", "/v3/routes/"+list.Resources[0].GUID, nil, 202, nil)
	if calls := e.bbs.takeCalls(); !equalStrings(calls, []string{"update " + lrp}) {
		t.Errorf("route delete: calls %v", calls)
	}
	if got := cfHostnames(t, e.bbs.lrp(lrp)); len(got) != 0 {
		t.Errorf("routes after route delete: %v", got)
	}
	// A destination on a new port needs a new LRP (ports cannot change).
	rt3 := e.createRoute("porty", "")
	e.mustJSON("POST", "/v3/routes/"+rt3.GUID+"/destinations", map[string]any{"destinations": []any{map[string]any{"app": map[string]string{"guid": a.GUID}, "port": 9090}}}, 200, nil)
	next := e.lrpGUIDOf(a.GUID)
	if calls := e.bbs.takeCalls(); next == lrp || !equalStrings(calls, []string{"remove " + lrp, "update " + next, "desire " + next}) {
		t.Errorf("new port: calls %v", calls)
	}
	nd := e.bbs.lrp(next)
	rs, _ = nd.Routes.CFRoutes()
	if len(nd.Ports) != 2 || nd.Ports[0] != 8080 || nd.Ports[1] != 9090 || len(rs) != 1 || rs[0].Port != 9090 {
		t.Errorf("LRP with port 9090: ports %v routes %+v", nd.Ports, rs)
	}
	// A stopped app's mappings touch no LRP.
	stopped, _ := e.stagedApp("quiet")
	e.bbs.takeCalls()
	e.mapRoute(e.createRoute("quiet", "").GUID, stopped.GUID)
	if calls := e.bbs.takeCalls(); len(calls) != 0 {
		t.Errorf("mapping a stopped app: calls %v", calls)
	}
}

func testScaleUpdatesLRP(t *testing.T, e *env) {
	a, web, _ := e.startedApp("scaler")
	lrp := e.lrpGUIDOf(a.GUID)
	e.bbs.takeCalls()
	e.mustJSON("POST", "/v3/apps/"+a.GUID+"/processes/web/actions/scale", map[string]int{"instances": 3}, 202, nil)
	if calls := e.bbs.takeCalls(); !equalStrings(calls, []string{"update " + lrp}) || e.bbs.lrp(lrp).Instances != 3 {
		t.Errorf("scale: calls %v, instances %d", calls, e.bbs.lrp(lrp).Instances)
	}
	// Memory waits for the next start, as on CC.
	e.mustJSON("POST", "/v3/processes/"+web.GUID+"/actions/scale", map[string]int{"memory_in_mb": 512}, 202, nil)
	if calls := e.bbs.takeCalls(); len(calls) != 0 {
		t.Errorf("memory scale: calls %v", calls)
	}
	// A manifest's instances reach the LRP too.
	if job := e.applyManifest("applications:\n- name: scaler\n  instances: 2\n"); job.State != ccapi.JobComplete {
		t.Fatalf("manifest %+v", job)
	}
	if calls := e.bbs.takeCalls(); !equalStrings(calls, []string{"update " + lrp}) || e.bbs.lrp(lrp).Instances != 2 {
		t.Errorf("manifest scale: calls %v, instances %d", calls, e.bbs.lrp(lrp).Instances)
	}
}

func testSyncRepairsDrift(t *testing.T, e *env) {
	a, _, _ := e.startedApp("sync-a")
	b, _, _ := e.startedApp("sync-b")
	e.stagedApp("sync-stopped")
	la, lb := e.lrpGUIDOf(a.GUID), e.lrpGUIDOf(b.GUID)
	want := map[string]*bbs.DesiredLRP{la: e.bbs.lrp(la), lb: e.bbs.lrp(lb)}
	ctx := context.Background()
	e.bbs.takeCalls()
	if err := e.cc.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if calls := e.bbs.takeCalls(); !equalStrings(calls, []string{"upsert-domain cf-apps 2m0s"}) {
		t.Errorf("a sync without drift: calls %v", calls)
	}

	// Drift: a's LRP is gone, b's routes and instances are stale, an
	// orphan sits in cf-apps, and a task-domain LRP is not the CC's business.
	e.bbs.mu.Lock()
	delete(e.bbs.desired, la)
	e.bbs.desired[lb].Routes = lrpRoutes(nil)
	e.bbs.desired[lb].Instances = 5
	orphan := &bbs.DesiredLRP{ProcessGUID: "orphan", Domain: bbs.DomainCFApps, Action: &bbs.RunAction{Path: "x"}}
	elsewhere := &bbs.DesiredLRP{ProcessGUID: "elsewhere", Domain: "other", Action: &bbs.RunAction{Path: "x"}}
	e.bbs.desired["orphan"], e.bbs.desired["elsewhere"] = orphan, elsewhere
	e.bbs.mu.Unlock()

	if err := e.cc.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	calls := e.bbs.takeCalls()
	wantCalls := []string{"desire " + la, "update " + lb, "remove orphan", "upsert-domain cf-apps 2m0s"}
	if la > lb {
		wantCalls[0], wantCalls[1] = wantCalls[1], wantCalls[0]
	}
	if !equalStrings(calls, wantCalls) {
		t.Errorf("repair calls %v, want %v", calls, wantCalls)
	}
	for g, w := range want {
		got := e.bbs.lrp(g)
		if got == nil || got.Instances != w.Instances || !sameCFRoutes(got.Routes, w.Routes) || got.Annotation != w.Annotation {
			t.Errorf("LRP %s after the sync: %+v", g, got)
		}
	}
	if !equalStrings(e.bbs.lrpGUIDs(), sortedKeys(map[string]bool{la: true, lb: true, "elsewhere": true})) {
		t.Errorf("LRPs after the sync: %v", e.bbs.lrpGUIDs())
	}
	// An annotation drift is an update.
	e.bbs.mu.Lock()
	e.bbs.desired[la].Annotation = "0.0"
	e.bbs.mu.Unlock()
	e.cc.Sync(ctx)
	if calls := e.bbs.takeCalls(); !equalStrings(calls, []string{"update " + la, "upsert-domain cf-apps 2m0s"}) {
		t.Errorf("annotation drift: calls %v", calls)
	}
	// With the BBS down, the sync fails and does not mark the domain fresh.
	e.bbs.setFail(errors.New("down"))
	if err := e.cc.Sync(ctx); err == nil {
		t.Error("a sync against a dead BBS succeeded")
	}
	e.bbs.setFail(nil)
	for _, c := range e.bbs.takeCalls() {
		if strings.HasPrefix(c, "upsert-domain") {
			t.Errorf("the domain was marked fresh by a failed sync: %v", c)
		}
	}
}

func testProcessStats(t *testing.T, e *env) {
	a, web, _ := e.startedApp("stats")
	e.mustJSON("POST", "/v3/processes/"+web.GUID+"/actions/scale", map[string]int{"instances": 5}, 202, nil)
	lrp := e.lrpGUIDOf(a.GUID)
	now := e.clock.Now().UnixNano()
	f := false
	tr := true
	e.bbs.mu.Lock()
	e.bbs.actual = []*bbs.ActualLRP{
		{ActualLRPKey: bbs.ActualLRPKey{ProcessGUID: lrp, Index: 0, Domain: "cf-apps"}, ActualLRPInstanceKey: bbs.ActualLRPInstanceKey{InstanceGUID: "old", CellID: "cell-9"},
			State: bbs.StateRunning, Presence: bbs.PresenceEvacuating, Since: now},
		{ActualLRPKey: bbs.ActualLRPKey{ProcessGUID: lrp, Index: 0, Domain: "cf-apps"}, ActualLRPInstanceKey: bbs.ActualLRPInstanceKey{InstanceGUID: "inst-0", CellID: "cell-1"},
			ActualLRPNetInfo: bbs.ActualLRPNetInfo{Address: "10.244.0.11", InstanceAddress: "10.244.1.2",
				Ports: []bbs.PortMapping{{ContainerPort: 8080, HostPort: 61000, ContainerTLSProxyPort: 61001, HostTLSProxyPort: 61002}}},
			State: bbs.StateRunning, Presence: bbs.PresenceOrdinary, Since: now - 10e9, Routable: &tr},
		{ActualLRPKey: bbs.ActualLRPKey{ProcessGUID: lrp, Index: 1}, State: bbs.StateUnclaimed, PlacementError: "insufficient resources: memory", Since: now},
		{ActualLRPKey: bbs.ActualLRPKey{ProcessGUID: lrp, Index: 2}, ActualLRPInstanceKey: bbs.ActualLRPInstanceKey{InstanceGUID: "inst-2", CellID: "cell-1"},
			State: bbs.StateCrashed, CrashReason: "APP/PROC/WEB: Exited with status 1", Since: now - 3e9},
		{ActualLRPKey: bbs.ActualLRPKey{ProcessGUID: lrp, Index: 3}, ActualLRPInstanceKey: bbs.ActualLRPInstanceKey{InstanceGUID: "inst-3", CellID: "cell-2"},
			State: bbs.StateRunning, Routable: &f, Since: now},
		{ActualLRPKey: bbs.ActualLRPKey{ProcessGUID: "someone-else", Index: 4}, State: bbs.StateRunning},
	}
	e.bbs.mu.Unlock()
	var stats struct {
		Resources []ccapi.ProcessStat `json:"resources"`
	}
	e.mustJSON("GET", "/v3/processes/"+web.GUID+"/stats", nil, 200, &stats)
	if len(stats.Resources) != 5 {
		t.Fatalf("%d stats", len(stats.Resources))
	}
	s := stats.Resources
	want := []struct {
		state    string
		routable bool
		details  string
	}{{"RUNNING", true, ""}, {"STARTING", false, "insufficient resources: memory"}, {"CRASHED", false, "APP/PROC/WEB: Exited with status 1"},
		{"RUNNING", false, ""}, {"STARTING", false, ""}}
	for i, w := range want {
		details := ""
		if s[i].Details != nil {
			details = *s[i].Details
		}
		if s[i].Index != i || s[i].State != w.state || s[i].Routable == nil || *s[i].Routable != w.routable || details != w.details || s[i].Type != "web" {
			t.Errorf("stat %d: %+v, want %+v", i, s[i], w)
		}
	}
	r := s[0]
	if r.Host != "10.244.0.11" || r.InstanceGUID != "inst-0" || r.CellID != "cell-1" || r.InstanceAddress != "10.244.1.2" || r.Uptime != 10 ||
		len(r.InstancePorts) != 1 || r.InstancePorts[0] != (ccapi.InstancePort{External: 61000, Internal: 8080, ExternalTLSProxyPort: 61002, InternalTLSProxyPort: 61001}) ||
		r.MemQuota != 1024<<20 || r.DiskQuota != 1024<<20 || r.FdsQuota != 16384 {
		t.Errorf("running stat %+v", r)
	}
	e.mustJSON("GET", "/v3/apps/"+a.GUID+"/processes/web/stats", nil, 200, &stats)
	if len(stats.Resources) != 5 {
		t.Errorf("stats by app and type: %d", len(stats.Resources))
	}
	var procs ccapi.List[ccapi.Process]
	e.mustJSON("GET", "/v3/processes?space_guids="+e.space+"&embed=process_instances", nil, 200, &procs)
	if len(procs.Resources) != 1 || len(procs.Resources[0].ProcessInstances) != 5 || procs.Resources[0].ProcessInstances[2].State != "CRASHED" {
		t.Errorf("embedded instances %+v", procs.Resources)
	}
	e.bbs.setFail(errors.New("down"))
	e.wantError("GET", "/v3/processes/"+web.GUID+"/stats", nil, 503, "CF-StatsUnavailable", "Stats server temporarily unavailable.")
	e.bbs.setFail(nil)
}

// TestEffectsWaitForSyncBounded: while a sync pass holds the BBS, a
// request's LRP update waits only so long, answers, and leaves the change
// to the next sync.
func TestEffectsWaitForSyncBounded(t *testing.T) {
	e := newEnv(t, testSQLiteDSN(t))
	e.cc.lockWait = 50 * time.Millisecond
	a, _, _ := e.startedApp("waiter")
	lrp := e.lrpGUIDOf(a.GUID)
	e.bbs.takeCalls()
	if !e.cc.lockLRPs(context.Background()) {
		t.Fatal("cannot take the lock")
	}
	start := time.Now()
	e.mapRoute(e.createRoute("later", "").GUID, a.GUID)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the request waited %v", d)
	}
	if calls := e.bbs.takeCalls(); len(calls) != 0 {
		t.Errorf("calls while the sync held the BBS: %v", calls)
	}
	e.cc.unlockLRPs()
	if err := e.cc.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := cfHostnames(t, e.bbs.lrp(lrp)); !equalStrings(got, []string{"later.apps.localhost", "waiter.apps.localhost"}) {
		t.Errorf("after the sync: %v", got)
	}
}

func TestPruneJobs(t *testing.T) {
	e := newEnv(t, testSQLiteDSN(t))
	rt := e.createRoute("x", "")
	h := e.mustJSON("DELETE", "/v3/routes/"+rt.GUID, nil, 202, nil)
	job := strings.Replace(h.Get("Location"), testExternalURL, e.base, 1)
	if err := e.cc.pruneJobs(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.mustJSON("GET", job, nil, 200, nil)
	e.clock.Add(25 * time.Hour)
	e.token, _ = e.cc.IssueToken("admin", time.Hour)
	if err := e.cc.pruneJobs(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.wantError("GET", job, nil, 404, "CF-NotFound", "Job not found")
}
