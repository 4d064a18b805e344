package cc

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc/ccapi"
)

const unknownBuildpack = `Buildpack "nonsense_buildpack" for stack "cflinuxfs4" must be an existing admin buildpack or a valid git URI`

const gitBuildpack = "https://github.com/cloudfoundry/go-buildpack.git"

const gitBuildpackRefused = `Buildpack "` + gitBuildpack + `" is a URL: minicf cannot fetch buildpacks, use an admin buildpack (go_buildpack, binary_buildpack)`

// buildpackNames lists GET path's buildpack names.
func (e *env) buildpackNames(path string) []string {
	e.t.Helper()
	var list ccapi.List[ccapi.Buildpack]
	e.mustJSON("GET", path, nil, 200, &list)
	out := []string{}
	for _, bp := range list.Resources {
		out = append(out, bp.Name)
	}
	return out
}

func testBuildpacks(t *testing.T, e *env) {
	// The shape, as `cf buildpacks` asks for it.
	code, _, data := e.do("GET", "/v3/buildpacks?order_by=position", nil)
	if code != 200 {
		t.Fatalf("GET /v3/buildpacks: %d %s", code, data)
	}
	var doc struct {
		Pagination ccapi.Pagination  `json:"pagination"`
		Resources  []json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Pagination.TotalResults != 2 || len(doc.Resources) != 2 || doc.Pagination.Next != nil {
		t.Fatalf("list %v: %s", err, data)
	}
	for i, name := range []string{"go_buildpack", "binary_buildpack"} {
		var bp map[string]any
		json.Unmarshal(doc.Resources[i], &bp)
		guid, _ := bp["guid"].(string)
		if _, err := uuid.Parse(guid); err != nil {
			t.Errorf("%s: guid %q", name, guid)
		}
		want := map[string]any{"guid": guid, "created_at": "2026-11-26T00:00:00Z", "updated_at": "2026-11-26T00:00:00Z",
			"name": name, "stack": "cflinuxfs4", "position": float64(i + 1), "enabled": true, "locked": false, "state": "READY",
			"filename": "built into minicf", "lifecycle": "buildpack",
			"metadata": map[string]any{"labels": map[string]any{}, "annotations": map[string]any{}},
			"links": map[string]any{"self": map[string]any{"href": testExternalURL + "/v3/buildpacks/" + guid},
				"upload": map[string]any{"href": testExternalURL + "/v3/buildpacks/" + guid + "/upload", "method": "POST"}}}
		if !reflect.DeepEqual(bp, want) {
			g, _ := json.MarshalIndent(bp, "", "  ")
			w, _ := json.MarshalIndent(want, "", "  ")
			t.Errorf("buildpack %d\n%s\nwant\n%s", i, g, w)
		}
		var one ccapi.Buildpack
		e.mustJSON("GET", "/v3/buildpacks/"+guid, nil, 200, &one)
		if one.Name != name || one.GUID != guid {
			t.Errorf("GET /v3/buildpacks/%s: %+v", guid, one)
		}
	}
	e.wantError("GET", "/v3/buildpacks/nope", nil, 404, "CF-NotFound", "Buildpack not found")
	// The guids are the same in every minicf.
	if buildpackGUID("go_buildpack") != buildpackGUID("go_buildpack") || buildpackGUID("go_buildpack") == buildpackGUID("binary_buildpack") {
		t.Error("buildpack guids are not stable per name")
	}

	// Filters, order and paging; an unknown parameter is ignored.
	all := []string{"go_buildpack", "binary_buildpack"}
	for path, want := range map[string][]string{
		"/v3/buildpacks":                                      all,
		"/v3/buildpacks?order_by=-position":                   {"binary_buildpack", "go_buildpack"},
		"/v3/buildpacks?order_by=created_at":                  all,
		"/v3/buildpacks?lifecycle=buildpack":                  all,
		"/v3/buildpacks?lifecycle=cnb":                        {},
		"/v3/buildpacks?names=binary_buildpack,nope":          {"binary_buildpack"},
		"/v3/buildpacks?stacks=cflinuxfs4":                    all,
		"/v3/buildpacks?stacks=cflinuxfs3":                    {},
		"/v3/buildpacks?label_selector=env%3Dprod":            {},
		"/v3/buildpacks?label_selector=env":                   {},
		"/v3/buildpacks?label_selector=!env,tier+notin+(a,b)": all,
		"/v3/buildpacks?page=2&per_page=1":                    {"binary_buildpack"},
		"/v3/buildpacks?unknown_filter=x":                     all,
	} {
		if got := e.buildpackNames(path); !equalStrings(got, want) {
			t.Errorf("%s: %v, want %v", path, got, want)
		}
	}
	var page ccapi.List[ccapi.Buildpack]
	e.mustJSON("GET", "/v3/buildpacks?per_page=1", nil, 200, &page)
	if page.Pagination.Next == nil || !strings.HasPrefix(page.Pagination.Next.Href, testExternalURL+"/v3/buildpacks?") {
		t.Errorf("pagination %+v", page.Pagination)
	}
	e.wantError("GET", "/v3/buildpacks?order_by=stack", nil, 400, "CF-BadQueryParameter", "The query parameter is invalid: Order by can only be: 'created_at', 'updated_at', 'position'")
	e.wantError("GET", "/v3/buildpacks?label_selector=a,,b", nil, 400, "CF-BadQueryParameter", "The query parameter is invalid: Label selector 'a,,b' is invalid")
}

func testAppBuildpackChoice(t *testing.T, e *env) {
	lifecycle := func(buildpacks any) map[string]any {
		return map[string]any{"type": "buildpack", "data": map[string]any{"buildpacks": buildpacks}}
	}
	create := func(name string, buildpacks any) map[string]any {
		return map[string]any{"name": name, "lifecycle": lifecycle(buildpacks),
			"relationships": map[string]any{"space": map[string]any{"data": map[string]string{"guid": e.space}}}}
	}
	// An unknown name is CC's 422, and no app is made.
	e.wantError("POST", "/v3/apps", create("bad", []string{"nonsense_buildpack"}), 422, "CF-UnprocessableEntity", unknownBuildpack)
	if _, ok := e.appByName("bad"); ok {
		t.Error("an app was created with an unknown buildpack")
	}
	// A git URL is refused, by name: minicf cannot fetch it.
	e.wantError("POST", "/v3/apps", create("bad", []string{gitBuildpack}), 422, "CF-UnprocessableEntity", gitBuildpackRefused)
	// Several bad ones are all named.
	e.wantError("POST", "/v3/apps", create("bad", []string{"binary_buildpack", "nonsense_buildpack", "x"}), 422, "CF-UnprocessableEntity",
		unknownBuildpack+`, Buildpack "x" for stack "cflinuxfs4" must be an existing admin buildpack or a valid git URI`)

	var a ccapi.App
	e.mustJSON("POST", "/v3/apps", create("chooser", []string{"binary_buildpack"}), 201, &a)
	if !equalStrings(a.Lifecycle.Data.Buildpacks, []string{"binary_buildpack"}) {
		t.Fatalf("created with %v", a.Lifecycle.Data.Buildpacks)
	}
	patch := func(buildpacks any, want ...string) {
		t.Helper()
		var got ccapi.App
		e.mustJSON("PATCH", "/v3/apps/"+a.GUID, map[string]any{"lifecycle": lifecycle(buildpacks)}, 200, &got)
		e.mustJSON("GET", "/v3/apps/"+a.GUID, nil, 200, &got)
		if want == nil {
			want = []string{}
		}
		if !equalStrings(got.Lifecycle.Data.Buildpacks, want) {
			t.Errorf("PATCH buildpacks %v: %v, want %v", buildpacks, got.Lifecycle.Data.Buildpacks, want)
		}
	}
	patch([]string{"go_buildpack", "binary_buildpack"}, "go_buildpack", "binary_buildpack")
	patch([]string{"default"}) // auto-detect
	patch([]string{"binary_buildpack"}, "binary_buildpack")
	patch(nil) // null: auto-detect
	patch([]string{"go_buildpack"}, "go_buildpack")
	patch([]any{nil}) // [null]
	patch([]string{"null", "binary_buildpack"}, "binary_buildpack")
	patch([]string{}) // none
	// Refused changes leave the app as it was.
	patch([]string{"go_buildpack"}, "go_buildpack")
	e.wantError("PATCH", "/v3/apps/"+a.GUID, map[string]any{"lifecycle": lifecycle([]string{"nonsense_buildpack"})}, 422, "CF-UnprocessableEntity", unknownBuildpack)
	e.wantError("PATCH", "/v3/apps/"+a.GUID, map[string]any{"lifecycle": lifecycle([]string{gitBuildpack})}, 422, "CF-UnprocessableEntity", gitBuildpackRefused)
	e.wantError("PATCH", "/v3/apps/"+a.GUID, map[string]any{"lifecycle": lifecycle("binary_buildpack")}, 400, "CF-MessageParseError", "…")
	e.mustJSON("GET", "/v3/apps/"+a.GUID, nil, 200, &a)
	if !equalStrings(a.Lifecycle.Data.Buildpacks, []string{"go_buildpack"}) {
		t.Errorf("after refused changes: %v", a.Lifecycle.Data.Buildpacks)
	}
	// A PATCH without buildpacks keeps them.
	e.mustJSON("PATCH", "/v3/apps/"+a.GUID, map[string]any{"name": "chooser2", "lifecycle": map[string]any{"type": "buildpack", "data": map[string]any{"stack": "cflinuxfs4"}}}, 200, &a)
	if !equalStrings(a.Lifecycle.Data.Buildpacks, []string{"go_buildpack"}) {
		t.Errorf("after a PATCH without buildpacks: %v", a.Lifecycle.Data.Buildpacks)
	}
	// A build's own lifecycle is checked the same way.
	p := e.readyPackage(a.GUID)
	e.wantError("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": p.GUID}, "lifecycle": lifecycle([]string{"nonsense_buildpack"})},
		422, "CF-UnprocessableEntity", unknownBuildpack)
	if calls := e.bbs.takeCalls(); len(calls) != 0 {
		t.Errorf("a refused build desired %v", calls)
	}
}

func testApplyManifestBuildpacks(t *testing.T, e *env) {
	buildpacksOf := func(name string) []string {
		t.Helper()
		a, ok := e.appByName(name)
		if !ok {
			t.Fatalf("no app %s", name)
		}
		return a.Lifecycle.Data.Buildpacks
	}
	for _, tc := range []struct {
		manifest string
		want     []string
	}{
		{"  buildpacks:\n  - binary_buildpack\n", []string{"binary_buildpack"}},
		{"  buildpack: default\n", []string{}},
		{"  buildpack: go_buildpack\n", []string{"go_buildpack"}},
		{"  buildpack: null\n", []string{}},
		{"  buildpacks: [go_buildpack, binary_buildpack]\n", []string{"go_buildpack", "binary_buildpack"}},
		{"  instances: 1\n", []string{"go_buildpack", "binary_buildpack"}}, // not given: kept
		{"  buildpacks: []\n", []string{}},                                 // cf push -b default sends this
		{"  buildpacks: [binary_buildpack]\n", []string{"binary_buildpack"}},
		{"  buildpacks: [default]\n", []string{}},
		{"  buildpack: ~\n", []string{}},
	} {
		if job := e.applyManifest("applications:\n- name: m\n" + tc.manifest); job.State != ccapi.JobComplete {
			t.Fatalf("%q: job %+v", tc.manifest, job)
		}
		if got := buildpacksOf("m"); !equalStrings(got, tc.want) {
			t.Errorf("%q: buildpacks %v, want %v", tc.manifest, got, tc.want)
		}
	}
	// Unknown buildpacks and URLs fail the job (as CC's AppUpdate does in
	// the apply_manifest job), and nothing of the manifest is kept.
	failed := func(manifest, detail string) {
		t.Helper()
		job := e.applyManifest(manifest)
		if job.State != ccapi.JobFailed || len(job.Errors) != 1 || job.Errors[0].Detail != detail || job.Errors[0].Title != "CF-UnprocessableEntity" {
			t.Errorf("job %s %+v, want FAILED with %q", job.State, job.Errors, detail)
		}
	}
	failed("applications:\n- name: lost\n  buildpacks:\n  - nonsense_buildpack\n", "For application 'lost': "+unknownBuildpack)
	failed("applications:\n- name: lost\n  buildpack: nonsense_buildpack\n", "For application 'lost': "+unknownBuildpack)
	failed("applications:\n- name: lost\n  buildpacks:\n  - "+gitBuildpack+"\n", "For application 'lost': "+gitBuildpackRefused)
	failed("applications:\n- name: m\n  instances: 4\n  buildpacks: [nonsense_buildpack]\n", "For application 'm': "+unknownBuildpack)
	if _, ok := e.appByName("lost"); ok {
		t.Error("app lost exists after failed manifests")
	}
	if got := buildpacksOf("m"); !equalStrings(got, []string{}) || e.webProcess(mustApp(t, e, "m")).Instances == 4 {
		t.Errorf("a failed manifest changed app m: %v", got)
	}
	// Both keys at once is CC's 422 on the POST.
	code, _, data := e.do("POST", "/v3/spaces/"+e.space+"/actions/apply_manifest", "applications:\n- name: m\n  buildpack: go_buildpack\n  buildpacks: [binary_buildpack]\n",
		"Content-Type", "application/x-yaml")
	checkError(t, "apply_manifest", code, data, 422, "CF-UnprocessableEntity", "For application 'm': Buildpack and Buildpacks fields cannot be used together.")
}

func mustApp(t *testing.T, e *env, name string) string {
	t.Helper()
	a, ok := e.appByName(name)
	if !ok {
		t.Fatalf("no app %s", name)
	}
	return a.GUID
}

// testStagingWithChosenBuildpacks: the build's buildpacks reach the
// builder as --buildpack-order with --skip-detect, and the droplet shows
// the buildpacks the builder says ran.
func testStagingWithChosenBuildpacks(t *testing.T, e *env) {
	a := e.createApp("chosen")
	e.mustJSON("PATCH", "/v3/apps/"+a.GUID, map[string]any{"lifecycle": map[string]any{"data": map[string]any{"buildpacks": []string{"binary_buildpack"}}}}, 200, nil)
	p := e.readyPackage(a.GUID)
	argsOf := func(def *bbs.TaskDefinition) []string {
		i := slices.Index(def.Action.Args, "--buildpack-order")
		if i < 0 {
			return nil
		}
		return def.Action.Args[i:]
	}
	var b ccapi.Build
	e.mustJSON("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": p.GUID}}, 201, &b)
	def := e.bbs.task(b.GUID)
	if got := argsOf(def); !equalStrings(got, []string{"--buildpack-order", "binary_buildpack", "--skip-detect"}) {
		t.Errorf("builder args %v", def.Action.Args)
	}
	if !equalStrings(b.Lifecycle.Data.Buildpacks, []string{"binary_buildpack"}) {
		t.Errorf("build lifecycle %+v", b.Lifecycle)
	}
	e.stage(b.GUID, def, `{"process_types":{"web":"./run.sh"},"lifecycle_type":"buildpack","execution_metadata":"","detected_buildpack":"binary",`+
		`"lifecycle_metadata":{"buildpack_key":"binary_buildpack","detected_buildpack":"binary","buildpacks":[{"key":"binary_buildpack","name":"binary"}]}}`)
	var d ccapi.Droplet
	e.mustJSON("GET", "/v3/droplets/"+dropletOfTask(def), nil, 200, &d)
	if want := []ccapi.DropletBuildpack{{Name: "binary_buildpack", BuildpackName: "binary", DetectOutput: "binary"}}; d.State != ccapi.BuildStaged || !reflect.DeepEqual(d.Buildpacks, want) {
		t.Errorf("droplet %s buildpacks %+v, want %+v", d.State, d.Buildpacks, want)
	}

	// A build's lifecycle overrides the app's for that build: two
	// buildpacks, the first supplying; the droplet lists both.
	e.mustJSON("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": p.GUID},
		"lifecycle": map[string]any{"type": "buildpack", "data": map[string]any{"buildpacks": []string{"go_buildpack", "binary_buildpack"}}}}, 201, &b)
	def = e.bbs.task(b.GUID)
	if got := argsOf(def); !equalStrings(got, []string{"--buildpack-order", "go_buildpack,binary_buildpack", "--skip-detect"}) {
		t.Errorf("builder args %v", def.Action.Args)
	}
	e.stage(b.GUID, def, `{"process_types":{"web":"./run.sh"},"lifecycle_type":"buildpack","execution_metadata":"","detected_buildpack":"binary",`+
		`"lifecycle_metadata":{"buildpack_key":"binary_buildpack","detected_buildpack":"binary","buildpacks":[{"key":"go_buildpack","name":"go"},{"key":"binary_buildpack","name":"binary"}]}}`)
	e.mustJSON("GET", "/v3/droplets/"+dropletOfTask(def), nil, 200, &d)
	if want := []ccapi.DropletBuildpack{{Name: "go_buildpack", BuildpackName: "go"}, {Name: "binary_buildpack", BuildpackName: "binary", DetectOutput: "binary"}}; !reflect.DeepEqual(d.Buildpacks, want) {
		t.Errorf("droplet buildpacks %+v, want %+v", d.Buildpacks, want)
	}

	// Back to auto-detect: all admin buildpacks, detection on; the
	// droplet names the one detected.
	e.mustJSON("PATCH", "/v3/apps/"+a.GUID, map[string]any{"lifecycle": map[string]any{"data": map[string]any{"buildpacks": nil}}}, 200, nil)
	e.mustJSON("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": p.GUID}}, 201, &b)
	def = e.bbs.task(b.GUID)
	if got := argsOf(def); !equalStrings(got, []string{"--buildpack-order", "go_buildpack,binary_buildpack"}) {
		t.Errorf("builder args %v", def.Action.Args)
	}
	e.stage(b.GUID, def, `{"process_types":{"web":"./app"},"lifecycle_type":"buildpack","execution_metadata":"","detected_buildpack":"go",`+
		`"lifecycle_metadata":{"buildpack_key":"go_buildpack","detected_buildpack":"go","buildpacks":[{"key":"go_buildpack","name":"go"}]}}`)
	e.mustJSON("GET", "/v3/droplets/"+dropletOfTask(def), nil, 200, &d)
	if want := []ccapi.DropletBuildpack{{Name: "go_buildpack", BuildpackName: "go", DetectOutput: "go"}}; !reflect.DeepEqual(d.Buildpacks, want) {
		t.Errorf("droplet buildpacks %+v, want %+v", d.Buildpacks, want)
	}

	// A result naming too many buildpacks, or bad ones, fails the build.
	for _, meta := range []string{
		`{"buildpacks":[` + strings.Repeat(`{"key":"go_buildpack"},`, maxStagedBuildpacks) + `{"key":"go_buildpack"}]}`,
		`{"buildpacks":[{"key":"go\u0000buildpack"}]}`,
	} {
		e.mustJSON("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": p.GUID}}, 201, &b)
		def = e.bbs.task(b.GUID)
		e.stage(b.GUID, def, `{"process_types":{"web":"./app"},"lifecycle_metadata":`+meta+`}`)
		e.mustJSON("GET", "/v3/builds/"+b.GUID, nil, 200, &b)
		if b.State != ccapi.BuildFailed || b.Error == nil || !strings.Contains(*b.Error, "buildpack") {
			t.Errorf("build with lifecycle_metadata %s: %s %v", meta, b.State, b.Error)
		}
	}
}

func TestLabelSelectorOnUnlabelled(t *testing.T) {
	for sel, want := range map[string]bool{
		"": true, "!env": true, "env!=prod": true, "env notin (a,b)": true, "!a,b!=c": true,
		"env": false, "env=prod": false, "env==prod": false, "env in (a,b)": false, "!a,b": false,
	} {
		s, err := parseLabelSelector(sel)
		if err != nil || s.matchesNoLabels() != want {
			t.Errorf("%q: %v %v, want %v", sel, s.matchesNoLabels(), err, want)
		}
	}
	for _, bad := range []string{"a,", ",a", "a in (b", "a)"} {
		if _, err := parseLabelSelector(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	for s, want := range map[string]bool{gitBuildpack: true, "git://example.com/bp": true, "http://x/y.zip": true,
		"go_buildpack": false, "git@github.com:a/b.git": false, "": false, "a:": false} {
		if isURL(s) != want {
			t.Errorf("isURL(%q) = %v", s, !want)
		}
	}
}
