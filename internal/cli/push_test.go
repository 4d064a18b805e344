package cli

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

func appDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "myapp")
	writeFiles(t, dir, map[string]string{
		"run.sh*":          "#!/bin/sh\nexec ./server\n",
		"sub/data.txt":     "data",
		"sub/empty":        "",
		".git/config":      "[core]",
		".gitignore":       "*.o",
		".cfignore":        "# comment\n*.log\n!keep.log\nsecret/\n/top-only.txt\n",
		"app.log":          "noise",
		"keep.log":         "kept",
		"secret/key.pem":   "KEY",
		"top-only.txt":     "x",
		"sub/top-only.txt": "y",
		"manifest.yml":     "applications: [{name: other}]\n",
		".DS_Store":        "junk",
	})
	return dir
}

func TestPushSequenceAndOutput(t *testing.T) {
	h := newHarness(t)
	h.cc.stagingLines = []string{"-----> Downloading binary_buildpack...", "-----> Staging complete"}
	h.cc.buildPolls = 2
	dir := appDir(t)
	out, errOut, err := h.run("push", "myapp", "-p", dir, "-c", "./run.sh", "-i", "2", "-m", "256M")
	if err != nil {
		t.Fatalf("push: %v\n%s\n%s", err, out, errOut)
	}
	a := h.cc.appByName("myapp")
	pkg := h.cc.packages["package-1"]
	if a == nil || pkg == nil {
		t.Fatalf("no app or package: %v", h.cc.requests())
	}
	diffLines(t, "push requests", squash(h.cc.requests()), []string{
		"POST /v3/spaces/space-guid/actions/apply_manifest",
		"GET /v3/jobs/job-1",
		"GET /v3/apps?names=myapp&space_guids=space-guid",
		"POST /v3/resource_matches",
		"POST /v3/packages",
		"POST /v3/packages/package-1/upload",
		"POST /v3/builds",
		"GET /v3/builds/build-1",
		"GET /v3/droplets/droplet-1",
		"PATCH /v3/apps/myapp-guid/relationships/current_droplet",
		"POST /v3/apps/myapp-guid/actions/restart",
		"GET /v3/apps/myapp-guid/processes",
		"GET /v3/processes/myapp-web-guid/stats",
		// the summary
		"GET /v3/apps/myapp-guid/processes",
		"GET /v3/processes/myapp-web-guid/stats",
		"GET /v3/apps/myapp-guid/routes",
		"GET /v3/apps/myapp-guid/droplets/current",
	})
	// Every request carries the bearer token.
	for _, r := range h.cc.reqs {
		if r.Auth != "bearer "+testToken {
			t.Errorf("%s: Authorization %q", r, r.Auth)
		}
	}
	// The job and the build were polled, and staging logs were read.
	reqs := strings.Join(h.cc.requests(), "\n")
	if strings.Count(reqs, "GET /v3/jobs/job-1") != 2 || strings.Count(reqs, "GET /v3/builds/build-1") != 3 {
		t.Errorf("job/build polls:\n%s", reqs)
	}
	wantContains(t, "requests", reqs, "GET /api/v1/read/myapp-guid?start_time=", "&envelope_types=LOG")

	// apply_manifest: YAML from the flags, with default-route.
	am := h.cc.request("POST", "/v3/spaces/space-guid/actions/apply_manifest")
	if am.ContentType != "application/x-yaml" {
		t.Errorf("apply_manifest Content-Type %q", am.ContentType)
	}
	wantYAML := "applications:\n  - name: myapp\n    path: " + dir + "\n    instances: 2\n    memory: 256M\n    command: ./run.sh\n    default-route: true\n"
	if string(am.Body) != wantYAML {
		t.Errorf("apply_manifest body:\n%s\nwant:\n%s", am.Body, wantYAML)
	}
	// resource_matches lists the non-empty files with SHA-1s.
	rm := h.cc.request("POST", "/v3/resource_matches")
	wantContains(t, "resource_matches", string(rm.Body), `"path":"run.sh","mode":"755","checksum":{"value":"`, `"size_in_bytes":24`)
	if strings.Contains(string(rm.Body), "sub/empty") || strings.Contains(string(rm.Body), "app.log") {
		t.Errorf("resource_matches lists empty or ignored files: %s", rm.Body)
	}
	pk := h.cc.request("POST", "/v3/packages")
	if string(pk.Body) != `{"relationships":{"app":{"data":{"guid":"myapp-guid"}}},"type":"bits"}` {
		t.Errorf("POST /v3/packages body %s", pk.Body)
	}
	// The upload: resources "[]" then bits/package.zip, modes kept, ignores applied.
	if strings.Join(pkg.partNames, ",") != "resources,bits" || pkg.resources != "[]" || pkg.filename != "package.zip" {
		t.Errorf("upload parts %v resources %q filename %q", pkg.partNames, pkg.resources, pkg.filename)
	}
	entries := zipEntries(t, pkg.zip)
	var names []string
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	diffLines(t, "zip entries", names, []string{"keep.log", "run.sh", "sub/", "sub/data.txt", "sub/empty", "sub/top-only.txt"})
	if got := entries["run.sh"]; !strings.HasPrefix(got, "-rwxr-xr-x ") {
		t.Errorf("run.sh entry %s: want mode -rwxr-xr-x", got)
	}
	if got := entries["sub/data.txt"]; got != `-rw-r--r-- "data"` {
		t.Errorf("sub/data.txt entry %s", got)
	}
	if got := entries["sub/"]; !strings.HasPrefix(got, "drwxr-xr-x") {
		t.Errorf("sub/ entry %s", got)
	}
	bd := h.cc.request("POST", "/v3/builds")
	if string(bd.Body) != `{"package":{"guid":"package-1"}}` {
		t.Errorf("POST /v3/builds body %s", bd.Body)
	}
	pd := h.cc.request("PATCH", "/v3/apps/myapp-guid/relationships/current_droplet")
	if string(pd.Body) != `{"data":{"guid":"droplet-1"}}` {
		t.Errorf("PATCH current_droplet body %s", pd.Body)
	}

	wantOut := `Pushing app myapp to org myorg / space dev as admin...

Uploading myapp...
Uploaded 5 files (33 B).

Staging app and tracing logs...
   -----> Downloading binary_buildpack...
   -----> Staging complete

Starting app...
0 of 2 instances running, 2 starting
1 of 2 instances running, 1 starting
2 of 2 instances running

name:              myapp
requested state:   started
routes:            myapp.apps.localhost
last uploaded:     Thu 26 Nov 04:08:56 UTC 2026
stack:             cflinuxfs4
buildpacks:        binary_buildpack

type:            web
instances:       2/2
memory usage:    256M
start command:   ./run.sh
     state     since                  cell     address             instance address   details
#0   running   2026-11-26T04:08:56Z   cell-1   10.244.0.11:61001   10.244.1.2
#1   running   2026-11-26T04:08:56Z   cell-2   10.244.0.11:61003   10.244.1.3

Try it:
   curl http://myapp.apps.localhost:8081/
`
	if out != wantOut {
		t.Errorf("push output:\n%s\nwant:\n%s", out, wantOut)
	}
	if errOut != "" {
		t.Errorf("stderr: %s", errOut)
	}
}

func TestPushRouteFlagsAndManifest(t *testing.T) {
	h := newHarness(t)
	dir := filepath.Join(h.dir, "src")
	writeFiles(t, dir, map[string]string{"run.sh*": "x"})
	writeFiles(t, h.dir, map[string]string{"manifest.yml": `---
applications:
- name: web1
  path: src
  instances: 3
  env: {GREETING: hi}
  routes:
  - route: old.apps.localhost
`})
	// manifest.yml in the working directory is read; --route replaces its routes.
	h.mustRun("push", "web1", "--route", "a.apps.localhost/x", "--route", "b.apps.localhost")
	am := h.cc.request("POST", "/v3/spaces/space-guid/actions/apply_manifest")
	want := "applications:\n  - name: web1\n    path: " + dir + "\n    instances: 3\n    env:\n      GREETING: hi\n" +
		"    routes:\n      - route: a.apps.localhost/x\n      - route: b.apps.localhost\n    default-route: true\n"
	if string(am.Body) != want {
		t.Errorf("apply_manifest body:\n%s\nwant:\n%s", am.Body, want)
	}
	var urls []string
	for _, r := range h.cc.routesOf("web1-guid") {
		urls = append(urls, r.URL)
	}
	diffLines(t, "routes", urls, []string{"a.apps.localhost/x", "b.apps.localhost"})
}

func TestPushNoRouteAndRandomRoute(t *testing.T) {
	for _, tc := range []struct {
		flag, key string
	}{{"--no-route", "no-route: true"}, {"--random-route", "random-route: true"}} {
		t.Run(tc.flag, func(t *testing.T) {
			h := newHarness(t)
			writeFiles(t, h.dir, map[string]string{"run.sh*": "x"})
			out := h.mustRun("push", "myapp", tc.flag)
			am := h.cc.request("POST", "/v3/spaces/space-guid/actions/apply_manifest")
			body := string(am.Body)
			wantContains(t, "apply_manifest", body, tc.key, "path: "+h.dir+"\n")
			if strings.Contains(body, "default-route") {
				t.Errorf("%s sent default-route:\n%s", tc.flag, body)
			}
			if tc.flag == "--no-route" && strings.Contains(out, "curl") {
				t.Errorf("no route, yet a curl hint:\n%s", out)
			}
			if tc.flag == "--random-route" {
				wantContains(t, "output", out, "curl http://myapp-happy-panda.apps.localhost:8081/")
			}
		})
	}
	h := newHarness(t)
	_, errOut, err := h.run("push", "myapp", "--no-route", "--route", "x.apps.localhost")
	if !errors.Is(err, ErrFailed) || !strings.Contains(errOut, "cannot be used together: --no-route, --route") {
		t.Errorf("--no-route with --route: %v %q", err, errOut)
	}
	if len(h.cc.requests()) != 0 {
		t.Errorf("requests sent for a usage error: %v", h.cc.requests())
	}
}

func TestPushMultiAppManifest(t *testing.T) {
	h := newHarness(t)
	mdir := filepath.Join(h.dir, "deploy")
	writeFiles(t, mdir, map[string]string{
		"one/run.sh*": "1",
		"two/run.sh*": "2",
		"apps.yml": `applications:
- name: one
  path: one
  no-route: true
- name: two
  path: two
  command: null
  random-route: true
`,
	})
	out := h.mustRun("push", "-f", filepath.Join(mdir, "apps.yml"))
	wantContains(t, "output", out, "Pushing apps one, two to org myorg / space dev as admin...",
		"Applying manifest file "+filepath.Join(mdir, "apps.yml")+"...", "Manifest applied")
	am := h.cc.request("POST", "/v3/spaces/space-guid/actions/apply_manifest")
	want := "applications:\n  - name: one\n    path: " + filepath.Join(mdir, "one") + "\n    no-route: true\n" +
		"  - name: two\n    path: " + filepath.Join(mdir, "two") + "\n    command: null\n    random-route: true\n"
	if string(am.Body) != want {
		t.Errorf("apply_manifest body:\n%s\nwant:\n%s", am.Body, want)
	}
	if n := strings.Count(strings.Join(h.cc.requests(), "\n"), "POST /v3/builds"); n != 2 {
		t.Errorf("%d builds, want 2", n)
	}
	// Flags cannot apply to several apps.
	_, errOut, err := h.run("push", "-f", filepath.Join(mdir, "apps.yml"), "-i", "3")
	if err == nil || !strings.Contains(errOut, "cannot be applied when pushing multiple apps") {
		t.Errorf("flags with a multi-app manifest: %v %q", err, errOut)
	}
	// A named app is pushed alone.
	h.cc.reqs = nil
	h.mustRun("push", "two", "-f", filepath.Join(mdir, "apps.yml"))
	am = h.cc.request("POST", "/v3/spaces/space-guid/actions/apply_manifest")
	if strings.Contains(string(am.Body), "name: one") {
		t.Errorf("pushing two sent one too:\n%s", am.Body)
	}
	_, errOut, _ = h.run("push", "three", "-f", filepath.Join(mdir, "apps.yml"))
	wantContains(t, "stderr", errOut, "Could not find app named 'three' in manifest")
}

func TestPushBadManifest(t *testing.T) {
	h := newHarness(t)
	writeFiles(t, h.dir, map[string]string{"manifest.yml": "applications:\n- name: x\n  instnaces: 2\n"})
	out, errOut, err := h.run("push", "x")
	if !errors.Is(err, ErrFailed) || !strings.HasSuffix(out, "FAILED\n") {
		t.Fatalf("err %v out %q", err, out)
	}
	wantContains(t, "stderr", errOut, `manifest line 3: applications[0]."instnaces": unknown key (did you mean "instances"?)`)
}

func TestPushWaitsForPackageProcessing(t *testing.T) {
	h := newHarness(t)
	h.cc.uploadNotReady = true
	writeFiles(t, h.dir, map[string]string{"run.sh*": "x"})
	out := h.mustRun("push", "myapp")
	wantContains(t, "output", out, "Waiting for API to complete processing files...")
	wantContains(t, "requests", strings.Join(squash(h.cc.requests()), "\n"),
		"POST /v3/packages/package-1/upload\nGET /v3/packages/package-1\nPOST /v3/builds")
}

func TestPushAllInstancesCrashed(t *testing.T) {
	h := newHarness(t)
	h.cc.statsFn = func(p *fakeProcess, call int) []ccapi.ProcessStat {
		if call == 0 {
			return []ccapi.ProcessStat{{Index: 0, State: ccapi.InstanceStarting}}
		}
		d := "APP/PROC/WEB: Exited with status 1"
		return []ccapi.ProcessStat{{Index: 0, State: ccapi.InstanceCrashed, Details: &d}}
	}
	writeFiles(t, h.dir, map[string]string{"run.sh*": "x"})
	out, errOut, err := h.run("push", "myapp")
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err = %v", err)
	}
	wantContains(t, "stdout", out, "0 of 1 instances running, 1 starting\n0 of 1 instances running, 1 crashed\nFAILED\n")
	wantContains(t, "stderr", errOut, "Start unsuccessful", "minicf logs myapp --recent")
}

func TestPushStartTimeout(t *testing.T) {
	h := newHarness(t)
	h.cc.statsFn = func(p *fakeProcess, call int) []ccapi.ProcessStat {
		return []ccapi.ProcessStat{{Index: 0, State: ccapi.InstanceStarting}}
	}
	writeFiles(t, h.dir, map[string]string{"run.sh*": "x"})
	out, errOut, err := h.run("push", "myapp", "--timeout", "30ms")
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err = %v\n%s", err, out)
	}
	wantContains(t, "stderr", errOut, "Start app timeout", "did not have all instances running within 30ms", "$PORT")
}

func TestPushStagingFailed(t *testing.T) {
	h := newHarness(t)
	h.cc.buildFail = "StagingError - Staging error: the app has no run.sh"
	writeFiles(t, h.dir, map[string]string{"x": "x"})
	out, errOut, err := h.run("push", "myapp")
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err = %v", err)
	}
	wantContains(t, "stderr", errOut, "StagingError - Staging error: the app has no run.sh")
	if strings.Contains(strings.Join(h.cc.requests(), "\n"), "current_droplet") {
		t.Errorf("a failed build still set the droplet")
	}
	wantContains(t, "stdout", out, "Staging app and tracing logs...\nFAILED\n")
}

func TestPushApplyManifestJobFailed(t *testing.T) {
	h := newHarness(t)
	writeFiles(t, h.dir, map[string]string{"x": "x"})
	_, errOut, err := h.run("push", "myapp", "--route", "x.nowhere.example")
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err = %v", err)
	}
	wantContains(t, "stderr", errOut, "The route 'x.nowhere.example' did not match any existing domains.")
	if strings.Contains(strings.Join(h.cc.requests(), "\n"), "/v3/packages") {
		t.Errorf("pushed bits after a failed apply_manifest")
	}
}

func TestPushArchive(t *testing.T) {
	h := newHarness(t)
	src := filepath.Join(h.dir, "src")
	writeFiles(t, src, map[string]string{"bin/server*": "ELF", "public/index.html": "<p>"})
	bits, err := GatherBits(src)
	if err != nil {
		t.Fatal(err)
	}
	zipPath := filepath.Join(h.dir, "app.zip")
	f, err := os.Create(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bits.WriteZip(f, nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	h.mustRun("push", "myapp", "-p", zipPath)
	entries := zipEntries(t, h.cc.packages["package-1"].zip)
	if got := entries["bin/server"]; got != `-rwxr-xr-x "ELF"` {
		t.Errorf("bin/server from the archive: %s (all: %v)", got, entries)
	}
	if _, ok := entries["public/"]; !ok {
		t.Errorf("no directory entry: %v", entries)
	}
}
