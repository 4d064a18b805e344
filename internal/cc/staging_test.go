package cc

import (
	"encoding/json"
	"errors"
	"net/url"
	"path"
	"reflect"
	"strings"
	"testing"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc/ccapi"
)

func (e *env) readyPackage(app string) ccapi.Package {
	e.t.Helper()
	p := e.createPackage(app)
	if code, data := e.upload(p.GUID, "[]", makeZip(e.t, zipEntry{name: "main.go", mode: 0o644, body: "package main\n"})); code != 200 {
		e.t.Fatalf("upload: %d %s", code, data)
	}
	return p
}

func dropletOfTask(def *bbs.TaskDefinition) string {
	u, _ := url.Parse(def.Upload.To)
	return path.Base(path.Dir(u.Path))
}

func testStaging(t *testing.T, e *env) {
	a := e.createApp("stager")
	web := e.webProcess(a.GUID)
	e.mustJSON("PATCH", "/v3/processes/"+web.GUID, map[string]any{"command": "./run.sh"}, 200, nil)
	e.mustJSON("PATCH", "/v3/apps/"+a.GUID+"/environment_variables", map[string]any{"var": map[string]string{"GREETING": "hi"}}, 200, nil)
	p := e.readyPackage(a.GUID)

	var b ccapi.Build
	e.mustJSON("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": p.GUID}}, 201, &b)
	if b.State != ccapi.BuildStaging || b.Droplet != nil || b.Package.GUID != p.GUID || b.Error != nil {
		t.Fatalf("new build %+v", b)
	}
	def := e.bbs.task(b.GUID)
	if def == nil {
		t.Fatalf("no task %s; calls %v", b.GUID, e.bbs.takeCalls())
	}
	if calls := e.bbs.takeCalls(); !equalStrings(calls, []string{"desire-task " + b.GUID + " cf-tasks"}) {
		t.Errorf("BBS calls %v", calls)
	}
	droplet := dropletOfTask(def)
	st := e.cc.cfg.StateDir
	want := &bbs.TaskDefinition{
		RootFS: "preloaded:cflinuxfs4",
		Setup:  &bbs.DownloadAction{From: testInternalURL + "/internal/v4/packages/" + p.GUID + "/download", To: "/home/vcap/app"},
		Action: &bbs.RunAction{Path: "/tmp/lifecycle/builder", User: "vcap",
			Args: []string{"--app-dir", "/home/vcap/app", "--output-droplet", "/tmp/droplet.tgz", "--result", "/tmp/result.json", "--command", "./run.sh",
				"--buildpack-order", "go_buildpack,binary_buildpack"}, // none chosen: detect
			Env: []bbs.EnvironmentVariable{{Name: "GREETING", Value: "hi"},
				{Name: "GOCACHE", Value: st + "/staging/gocache"}, {Name: "GOMODCACHE", Value: st + "/staging/gomodcache"},
				{Name: "GOPROXY", Value: "off"}, {Name: "GOFLAGS", Value: "-mod=mod"}, {Name: "CGO_ENABLED", Value: "0"},
				{Name: "GOTOOLCHAIN", Value: "local"}, {Name: "PATH", Value: "/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}},
		MemoryMB:              1024, // CC's minimum_staging_memory_mb, whatever the app asks
		DiskMB:                4096, // minimum_staging_disk_mb
		Upload:                &bbs.UploadAction{From: "/tmp/droplet.tgz", To: testInternalURL + "/internal/v4/droplets/" + droplet + "/upload"},
		ResultFile:            "/tmp/result.json",
		CompletionCallbackURL: testInternalURL + "/internal/v4/tasks/" + b.GUID + "/completed",
		LogGUID:               a.GUID,
		LogSource:             "STG",
		MaxDurationMs:         900000,
	}
	if !reflect.DeepEqual(def, want) {
		g, _ := json.MarshalIndent(def, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("task definition\n%s\nwant\n%s", g, w)
	}
	var d ccapi.Droplet
	e.mustJSON("GET", "/v3/droplets/"+droplet, nil, 200, &d)
	if d.State != ccapi.BuildStaging {
		t.Errorf("droplet while staging: %s", d.State)
	}

	// The cell uploads the droplet (a .tgz), then the BBS calls back.
	if code, _ := e.internalDo("PUT", "/internal/v4/droplets/"+droplet+"/upload", []byte("not gzip")); code != 422 {
		t.Errorf("a non-gzip droplet: %d", code)
	}
	if code, _ := e.internalDo("PUT", "/internal/v4/droplets/nope/upload", gzipBytes(t, "x")); code != 404 {
		t.Errorf("upload to an unknown droplet: %d", code)
	}
	e.stage(b.GUID, def, `{"process_types":{"web":"./run.sh","worker":"./work"},"lifecycle_type":"buildpack","execution_metadata":"","detected_buildpack":"binary"}`)
	e.mustJSON("GET", "/v3/builds/"+b.GUID, nil, 200, &b)
	if b.State != ccapi.BuildStaged || b.Droplet == nil || b.Droplet.GUID != droplet || b.Error != nil {
		t.Fatalf("staged build %+v", b)
	}
	e.mustJSON("GET", "/v3/droplets/"+droplet, nil, 200, &d)
	if d.State != ccapi.BuildStaged || d.ProcessTypes["web"] != "./run.sh" || d.Checksum == nil || len(d.Buildpacks) != 1 ||
		d.Buildpacks[0].DetectOutput != "binary" || relGUID(d.Relationships, "app") != a.GUID {
		t.Errorf("staged droplet %+v", d)
	}
	// The callback is idempotent; a late failure changes nothing.
	e.complete(def, &bbs.Task{TaskGUID: b.GUID, Failed: true, FailureReason: "late"})
	e.mustJSON("GET", "/v3/builds/"+b.GUID, nil, 200, &b)
	if b.State != ccapi.BuildStaged {
		t.Errorf("a second callback changed the build: %+v", b)
	}
	if code, _ := e.internalDo("PUT", "/internal/v4/droplets/"+droplet+"/upload", gzipBytes(t, "again")); code != 422 {
		t.Errorf("an upload to a staged droplet: %d", code)
	}
	code, body := e.internalDo("GET", "/internal/v4/droplets/"+droplet+"/download", nil)
	if code != 200 || string(body) != string(gzipBytes(t, "droplet")) {
		t.Errorf("droplet download: %d %q", code, body)
	}
	var list ccapi.List[ccapi.Droplet]
	e.mustJSON("GET", "/v3/packages/"+p.GUID+"/droplets?states=STAGED&page=1&per_page=1", nil, 200, &list)
	if len(list.Resources) != 1 || list.Resources[0].GUID != droplet {
		t.Errorf("package droplets %+v", list.Resources)
	}

	// Assigning the droplet makes a process per process type.
	var rel ccapi.CurrentDroplet
	e.mustJSON("PATCH", "/v3/apps/"+a.GUID+"/relationships/current_droplet", map[string]any{"data": map[string]string{"guid": droplet}}, 200, &rel)
	if rel.Data == nil || rel.Data.GUID != droplet {
		t.Errorf("current droplet relationship %+v", rel)
	}
	e.mustJSON("GET", "/v3/apps/"+a.GUID+"/droplets/current", nil, 200, &d)
	if d.GUID != droplet {
		t.Errorf("current droplet %s", d.GUID)
	}
	var worker ccapi.Process
	e.mustJSON("GET", "/v3/apps/"+a.GUID+"/processes/worker", nil, 200, &worker)
	if worker.Instances != 0 || worker.Command == nil || *worker.Command != "./work" {
		t.Errorf("worker from the droplet %+v", worker)
	}
	other := e.createApp("other")
	e.wantError("PATCH", "/v3/apps/"+other.GUID+"/relationships/current_droplet", map[string]any{"data": map[string]string{"guid": droplet}},
		422, "CF-UnprocessableEntity", "Unable to assign current droplet. Ensure the droplet exists and belongs to this app.")
}

func testStagingFailures(t *testing.T, e *env) {
	a := e.createApp("failing")
	waiting := e.createPackage(a.GUID)
	e.wantError("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": waiting.GUID}}, 400, "CF-InvalidRequest",
		"Bad request: Cannot stage package whose state is not ready.")
	e.wantError("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": "nope"}}, 422, "CF-UnprocessableEntity",
		"Unable to use package. Ensure that the package exists and you have access to it.")
	e.wantError("GET", "/v3/builds/nope", nil, 404, "CF-NotFound", "Build not found")
	p := e.readyPackage(a.GUID)

	build := func() (ccapi.Build, *bbs.TaskDefinition) {
		t.Helper()
		var b ccapi.Build
		e.mustJSON("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": p.GUID}}, 201, &b)
		return b, e.bbs.task(b.GUID)
	}
	failedWith := func(b ccapi.Build, want string) {
		t.Helper()
		e.mustJSON("GET", "/v3/builds/"+b.GUID, nil, 200, &b)
		if b.State != ccapi.BuildFailed || b.Error == nil || *b.Error != want || b.Droplet != nil {
			t.Errorf("build %s error %v, want FAILED with %q", b.State, b.Error, want)
		}
	}
	// The task failed (the builder's reason).
	b, def := build()
	e.complete(def, &bbs.Task{TaskGUID: b.GUID, Failed: true, FailureReason: "no start command: give one with -c or a Procfile web: line"})
	failedWith(b, "StagingError - Staging error: no start command: give one with -c or a Procfile web: line")
	var d ccapi.Droplet
	e.mustJSON("GET", "/v3/droplets/"+dropletOfTask(def), nil, 200, &d)
	if d.State != ccapi.BuildFailed {
		t.Errorf("droplet of a failed build: %s", d.State)
	}
	// Success without a droplet upload.
	b, def = build()
	e.complete(def, &bbs.Task{TaskGUID: b.GUID, Result: `{"process_types":{"web":"x"}}`})
	failedWith(b, "StagingError - Staging error: the droplet was not uploaded")
	// A result that is not the builder's JSON.
	b, def = build()
	e.complete(def, &bbs.Task{TaskGUID: b.GUID, Result: `web: x`})
	failedWith(b, "StagingError - Staging error: the builder's result is not the expected JSON: invalid character 'w' looking for beginning of value")
	// Callbacks for builds that are gone are answered 200; a mismatched
	// guid is refused.
	if code, _ := e.internalDo("POST", "/internal/v4/tasks/gone/completed", []byte(`{"task_guid":"gone"}`)); code != 200 {
		t.Errorf("callback for an unknown build: %d", code)
	}
	if code, _ := e.internalDo("POST", "/internal/v4/tasks/"+b.GUID+"/completed", []byte(`{"task_guid":"other"}`)); code != 400 {
		t.Errorf("callback with another task guid: %d", code)
	}
	// The BBS is down: the build fails at once with the reason.
	e.bbs.setFail(errors.New("cannot reach the BBS"))
	var down ccapi.Build
	e.mustJSON("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": p.GUID}}, 201, &down)
	e.bbs.setFail(nil)
	if down.State != ccapi.BuildFailed || down.Error == nil || !strings.Contains(*down.Error, "cannot start staging: cannot reach the BBS") {
		t.Errorf("build with the BBS down: %+v", down)
	}
	failedWith(down, "StagingError - Staging error: cannot start staging: cannot reach the BBS")
}
