package integration

// The stock cf CLI against `minicf up` (issue 9).
//
// TestCFCLI_EndToEnd drives the real cf binary named by CF_CLI (skipped
// without it): api, auth, target, push with a manifest and with flags,
// apps, app, routes, create-route, map-route, unmap-route, scale, stop,
// start, restart, logs --recent, delete -r, checking each exit code and
// output and curling the routes through the router; the minicf CLI sees
// the same state.
//
// TestCFCLI_ReplayOnFoundation needs no cf binary: it sends the cf CLI's
// requests for auth, target and push (cf-cli-v8.md §5) to the real
// foundation, so staging (Go, and binary_buildpack without go build),
// the start wait (stats STARTING → RUNNING, never empty) and the log
// cache are the real ones.

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/minicf/minicf/internal/cli"
	"github.com/minicf/minicf/internal/foundation"
	"github.com/minicf/minicf/internal/testutil"
)

// cfCLIEnv names the cf binary the end-to-end test drives.
const cfCLIEnv = "CF_CLI"

// apiURL is the foundation's Cloud Controller URL, from the CLI config
// minicf up wrote.
func (f *foundationProc) apiURL(t *testing.T) string {
	t.Helper()
	cfg, err := cli.LoadConfig(f.home)
	if err != nil {
		t.Fatalf("minicf up's CLI config: %v", err)
	}
	return cfg.API
}

// adminPassword is the generated admin password, which minicf up keeps in
// its home (0600) and prints once in its info block.
func (f *foundationProc) adminPassword(t *testing.T) string {
	t.Helper()
	p := filepath.Join(f.home, foundation.AdminPasswordFile)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("no admin password file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(p)
	pass := strings.TrimSpace(string(b))
	if len(pass) < 16 {
		t.Fatalf("admin password %q is too short", pass)
	}
	if n := strings.Count(f.up.Logs(), pass); n != 1 {
		t.Errorf("minicf up printed the admin password %d times, want once", n)
	}
	return pass
}

// stopFoundation stops minicf up as an operator does and waits for it.
func (f *foundationProc) stopFoundation(t *testing.T) {
	t.Helper()
	f.up.Signal(t, syscall.SIGTERM)
	if !f.up.WaitExit(2 * time.Minute) {
		t.Fatal("minicf up did not stop within 2 minutes of SIGTERM")
	}
	if code := f.up.ExitCode(); code != 0 {
		t.Errorf("minicf up exited with %d", code)
	}
}

// getPath sends GET path for host through the router.
func (f *foundationProc) getPath(host, path string) (int, helloAnswer, error) {
	req, _ := http.NewRequest("GET", "http://"+f.router+path, nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, helloAnswer{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var a helloAnswer
	json.Unmarshal(body, &a)
	return resp.StatusCode, a, nil
}

// waitApp polls host+path until the app named app answers 200.
func (f *foundationProc) waitApp(t *testing.T, host, path, app string, within time.Duration) {
	t.Helper()
	testutil.CheckFor(t, within, 20*time.Millisecond, func() error {
		status, a, err := f.getPath(host, path)
		if err != nil {
			return err
		}
		if status != 200 || a.App != app {
			return fmt.Errorf("%s%s answered %d from %q, want 200 from %s", host, path, status, a.App, app)
		}
		return nil
	})
}

// buildHello builds the example app into a fresh directory (for
// binary_buildpack pushes) and returns the directory.
func buildHello(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(testutil.GoTool(), "build", "-o", filepath.Join(dir, "hello"), ".")
	cmd.Dir = examplesDir(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building examples/hello: %v\n%s", err, out)
	}
	return dir
}

// ---------------------------------------------------------------------------
// The stock cf CLI.

type cfCLI struct {
	bin, home, trace string
}

// run runs cf with args in dir and returns its combined output and exit code.
func (c *cfCLI) run(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CF_HOME="+c.home, "CF_PLUGIN_HOME="+c.home, "CF_COLOR=false", "CF_TRACE="+c.trace,
		"CF_STAGING_TIMEOUT=5", "CF_STARTUP_TIMEOUT=3", "LANG=en_US.UTF-8")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("cf %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		code = ee.ExitCode()
	}
	t.Logf("$ cf %s  (rc %d)\n%s", strings.Join(args, " "), code, out)
	return string(out), code
}

// ok runs cf, requires exit code 0 and every want in the output, and
// returns the output.
func (c *cfCLI) ok(t *testing.T, dir string, args []string, want ...string) string {
	t.Helper()
	out, code := c.run(t, dir, args...)
	if code != 0 {
		t.Fatalf("cf %s exited with %d:\n%s", strings.Join(args, " "), code, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("cf %s: the output lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

// match requires a line of out to match re.
func match(t *testing.T, what, out, re string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)` + re).MatchString(out) {
		t.Fatalf("%s: no line matches %q:\n%s", what, re, out)
	}
}

func TestCFCLI_EndToEnd(t *testing.T) {
	bin := os.Getenv(cfCLIEnv)
	if bin == "" {
		t.Skipf("%s is not set: set %s=/path/to/cf (the stock cf CLI v8) to drive minicf with it", cfCLIEnv, cfCLIEnv)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s=%s is not an executable file (%v)", cfCLIEnv, bin, err)
	}
	cfHome := t.TempDir()
	c := &cfCLI{bin: bin, home: cfHome, trace: filepath.Join(cfHome, "trace.log")}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(c.trace)
			if len(b) > 64<<10 {
				b = b[len(b)-64<<10:]
			}
			t.Logf("----- end of CF_TRACE -----\n%s", b)
		}
	})
	work := t.TempDir() // no manifest.yml here: flag pushes stay flag pushes
	f := startFoundation(t, "process")
	api := f.apiURL(t)
	pass := f.adminPassword(t)
	c.ok(t, work, []string{"version"})

	// cf api, cf auth, cf target.
	c.ok(t, work, []string{"api", api}, api, ccapi.APIVersion)
	out, code := c.run(t, work, "auth", "admin", "not-the-password")
	if code == 0 || !strings.Contains(out, "Credentials were rejected") {
		t.Fatalf("cf auth with a wrong password: rc %d\n%s", code, out)
	}
	c.ok(t, work, []string{"auth", "admin", pass}, "OK")
	out = c.ok(t, work, []string{"target", "-o", "minicf", "-s", "dev"}, api, "admin")
	match(t, "cf target", out, `^org:\s+minicf\s*$`)
	match(t, "cf target", out, `^space:\s+dev\s*$`)
	match(t, "cf target", out, `^user:\s+admin\s*$`)

	// cf push with a manifest (Go staging, two instances, two routes).
	mdir := t.TempDir()
	manifest := fmt.Sprintf(`---
applications:
- name: hello
  path: %s
  instances: 2
  routes:
  - route: hello.apps.localhost
  - route: hello-v1.apps.localhost/v1
`, examplesDir(t))
	if err := os.WriteFile(filepath.Join(mdir, "manifest.yml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	out = c.ok(t, mdir, []string{"push", "-f", filepath.Join(mdir, "manifest.yml")}, "hello.apps.localhost", "hello-v1.apps.localhost/v1")
	match(t, "cf push (manifest)", out, `^name:\s+hello\s*$`)
	match(t, "cf push (manifest)", out, `^requested state:\s+started\s*$`)
	match(t, "cf push (manifest)", out, `^#\d\s+running`)
	f.waitApp(t, "hello.apps.localhost", "/", "hello", 30*time.Second)
	f.waitApp(t, "hello-v1.apps.localhost", "/v1", "hello", 30*time.Second)

	// cf push with flags: binary_buildpack with a start command (no go
	// build: the builder's --command path).
	binDir := buildHello(t)
	out = c.ok(t, work, []string{"push", "hello-bin", "-p", binDir, "-b", "binary_buildpack", "-c", "./hello", "-i", "1"}, "hello-bin.apps.localhost")
	match(t, "cf push (flags)", out, `^requested state:\s+started\s*$`)
	match(t, "cf push (flags)", out, `^#0\s+running`)
	f.waitApp(t, "hello-bin.apps.localhost", "/", "hello-bin", 30*time.Second)

	// cf apps: both, with their instances and routes.
	testutil.CheckFor(t, time.Minute, time.Second, func() error {
		out, code := c.run(t, work, "apps")
		if code != 0 {
			return fmt.Errorf("cf apps: rc %d", code)
		}
		for _, re := range []string{`^hello\s+started\s+web:2/2\s+.*hello\.apps\.localhost`, `^hello\s+.*hello-v1\.apps\.localhost/v1`,
			`^hello-bin\s+started\s+web:1/1\s+hello-bin\.apps\.localhost`} {
			if !regexp.MustCompile(`(?m)` + re).MatchString(out) {
				return fmt.Errorf("cf apps: no line matches %q", re)
			}
		}
		return nil
	})
	out = c.ok(t, work, []string{"app", "hello"}, "hello.apps.localhost")
	match(t, "cf app", out, `^name:\s+hello\s*$`)
	match(t, "cf app", out, `^#0\s+running`)
	match(t, "cf app", out, `^#1\s+running`)
	out = c.ok(t, work, []string{"routes"})
	match(t, "cf routes", out, `^dev\s+hello\s+apps\.localhost\s+.*hello`)
	match(t, "cf routes", out, `^dev\s+hello-v1\s+apps\.localhost\s+/v1\s+.*hello`)
	match(t, "cf routes", out, `^dev\s+hello-bin\s+apps\.localhost\s+.*hello-bin`)

	// The route commands.
	c.ok(t, work, []string{"create-route", "apps.localhost", "--hostname", "extra"}, "Route extra.apps.localhost has been created.", "OK")
	c.ok(t, work, []string{"create-route", "apps.localhost", "--hostname", "extra"}, "already exists", "OK")
	c.ok(t, work, []string{"map-route", "hello", "apps.localhost", "--hostname", "extra"}, "OK")
	f.waitApp(t, "extra.apps.localhost", "/", "hello", 10*time.Second)
	out = c.ok(t, work, []string{"routes"})
	match(t, "cf routes after map-route", out, `^dev\s+extra\s+apps\.localhost\s+.*hello`)
	c.ok(t, work, []string{"unmap-route", "hello", "apps.localhost", "--hostname", "extra"}, "OK")
	f.waitStatus(t, "extra.apps.localhost", 404, 10*time.Second)

	// The minicf CLI sees what the cf CLI made.
	mout := f.cli(t, "apps")
	for _, w := range []string{"hello", "hello-bin"} {
		if !strings.Contains(mout, w) {
			t.Fatalf("minicf apps lacks %s:\n%s", w, mout)
		}
	}
	if mout := f.cli(t, "routes"); !strings.Contains(mout, "extra") {
		t.Fatalf("minicf routes lacks the route cf made:\n%s", mout)
	}

	// cf scale, stop, start, restart.
	c.ok(t, work, []string{"scale", "hello", "-i", "1"}, "Scaling app hello", "Showing current scale of app hello")
	testutil.CheckFor(t, 30*time.Second, time.Second, func() error {
		out, _ := c.run(t, work, "app", "hello")
		if regexp.MustCompile(`(?m)^#1\s`).MatchString(out) {
			return fmt.Errorf("cf app still shows instance #1")
		}
		return nil
	})
	c.ok(t, work, []string{"stop", "hello"}, "Stopping app hello", "OK")
	f.waitStatus(t, "hello.apps.localhost", 404, 10*time.Second)
	out = c.ok(t, work, []string{"app", "hello"})
	match(t, "cf app (stopped)", out, `^requested state:\s+stopped\s*$`)
	out = c.ok(t, work, []string{"start", "hello"})
	match(t, "cf start", out, `^#0\s+running`)
	f.waitApp(t, "hello.apps.localhost", "/", "hello", 30*time.Second)
	out = c.ok(t, work, []string{"restart", "hello"})
	match(t, "cf restart", out, `^#0\s+running`)
	f.waitApp(t, "hello.apps.localhost", "/", "hello", 30*time.Second)

	// cf logs --recent: the staging lines are in the log cache.
	c.ok(t, work, []string{"logs", "hello", "--recent"}, "[STG/0]", "Go app detected")

	// cf delete -r: the apps and their routes go.
	c.ok(t, work, []string{"delete", "hello", "-r", "-f"}, "OK")
	c.ok(t, work, []string{"delete", "hello-bin", "-r", "-f"}, "OK")
	c.ok(t, work, []string{"apps"}, "No apps found")
	out = c.ok(t, work, []string{"routes"})
	if regexp.MustCompile(`(?m)^dev\s+hello`).MatchString(out) {
		t.Fatalf("cf routes after delete -r:\n%s", out)
	}
	f.waitStatus(t, "hello.apps.localhost", 404, 10*time.Second)
	f.waitStatus(t, "hello-bin.apps.localhost", 404, 10*time.Second)
	if mout := f.cli(t, "apps"); !strings.Contains(mout, "No apps found") {
		t.Fatalf("minicf apps after cf delete:\n%s", mout)
	}
	f.stopFoundation(t)
}

// ---------------------------------------------------------------------------
// Replaying the cf CLI's requests against the real foundation.

type ccClient struct {
	t     *testing.T
	base  string
	token string
}

type ccAnswer struct {
	what   string
	status int
	header http.Header
	body   []byte
	doc    any
}

func (c *ccClient) do(method, path, contentType string, body []byte) ccAnswer {
	c.t.Helper()
	target := path
	if !strings.HasPrefix(path, "http") {
		target = c.base + path
	}
	req, err := http.NewRequest(method, target, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	if contentType == "" {
		contentType = "application/json"
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "cf/8.18.4 (replay)")
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := ccAnswer{what: method + " " + path, status: resp.StatusCode, header: resp.Header, body: data}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.Decode(&a.doc)
	return a
}

func (c *ccClient) json(method, path string, body any, status int) ccAnswer {
	c.t.Helper()
	var data []byte
	if body != nil {
		data, _ = json.Marshal(body)
	}
	return c.do(method, path, "", data).want(c.t, status)
}

func (a ccAnswer) want(t *testing.T, status int) ccAnswer {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: status %d, want %d: %s", a.what, a.status, status, a.body)
	}
	return a
}

func (a ccAnswer) str(t *testing.T, path string) string {
	t.Helper()
	v := a.doc
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			var i int
			if _, err := fmt.Sscan(k, &i); err != nil || i >= len(x) {
				t.Fatalf("%s: %s: no element %s: %s", a.what, path, k, a.body)
			}
			v = x[i]
		default:
			t.Fatalf("%s: %s: cannot descend into %#v: %s", a.what, path, v, a.body)
		}
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s: %s = %#v, want a string: %s", a.what, path, v, a.body)
	}
	return s
}

func (a ccAnswer) count(t *testing.T, key string) int {
	t.Helper()
	m, _ := a.doc.(map[string]any)
	l, ok := m[key].([]any)
	if !ok {
		t.Fatalf("%s: %s is not a list: %s", a.what, key, a.body)
	}
	return len(l)
}

// job follows a 202's absolute Location to a COMPLETE job.
func (c *ccClient) job(a ccAnswer) {
	c.t.Helper()
	a.want(c.t, 202)
	loc := a.header.Get("Location")
	if !strings.HasPrefix(loc, c.base+"/v3/jobs/") {
		c.t.Fatalf("%s: Location %q is not absolute under %s", a.what, loc, c.base)
	}
	j := c.do("GET", loc, "", nil).want(c.t, 200)
	if s := j.str(c.t, "state"); s != "COMPLETE" {
		c.t.Fatalf("job %s: %s", loc, j.body)
	}
}

// zipDir zips dir as the cf CLI does (directory entries with regular-file
// mode bits and a trailing slash; file modes in the external attributes).
func zipDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h := &zip.FileHeader{Name: filepath.ToSlash(rel), Method: zip.Deflate, CreatorVersion: 3<<8 | 20}
		if d.IsDir() {
			h.Name += "/"
			h.Method = zip.Store
			h.ExternalAttrs = uint32(0o100755) << 16
			_, err = zw.CreateHeader(h)
			return err
		}
		h.ExternalAttrs = uint32(0o100000|fi.Mode().Perm()) << 16
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

// push replays cf push after its manifest: apply_manifest, resource
// matches, package, upload, build (polled as the CLI does), droplet,
// current droplet, restart, and the start wait; it returns the app guid
// and the instance states the wait saw.
func (c *ccClient) push(space, name, manifest string, bits []byte) (string, []string) {
	t := c.t
	t.Helper()
	c.job(c.do("POST", "/v3/spaces/"+space+"/actions/apply_manifest", "application/x-yaml", []byte(manifest)))
	apps := c.json("GET", "/v3/apps?names="+name+"&space_guids="+space, nil, 200)
	app := apps.str(t, "resources.0.guid")
	if n := c.json("POST", "/v3/resource_matches", map[string]any{"resources": []any{}}, 201).count(t, "resources"); n != 0 {
		t.Fatalf("resource_matches: %d", n)
	}
	pkg := c.json("POST", "/v3/packages", map[string]any{"type": "bits", "relationships": map[string]any{"app": map[string]any{"data": map[string]string{"guid": app}}}}, 201).str(t, "guid")
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("resources", "[]")
	w, _ := mw.CreateFormFile("bits", "package.zip")
	w.Write(bits)
	mw.Close()
	if s := c.do("POST", "/v3/packages/"+pkg+"/upload", mw.FormDataContentType(), body.Bytes()).want(t, 200).str(t, "state"); s != "READY" {
		t.Fatalf("package state after upload: %s", s)
	}
	build := c.json("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": pkg}}, 201)
	if s := build.str(t, "state"); s != "STAGING" {
		t.Fatalf("new build: %s", s)
	}
	var droplet string
	testutil.CheckFor(t, 3*time.Minute, 100*time.Millisecond, func() error {
		b := c.json("GET", "/v3/builds/"+build.str(t, "guid"), nil, 200)
		switch s := b.str(t, "state"); s {
		case "STAGED":
			droplet = b.str(t, "droplet.guid")
			return nil
		case "FAILED":
			t.Fatalf("staging %s failed: %s", name, b.body)
		}
		return fmt.Errorf("build still STAGING")
	})
	if s := c.json("GET", "/v3/droplets/"+droplet, nil, 200).str(t, "state"); s != "STAGED" {
		t.Fatalf("droplet: %s", s)
	}
	c.json("PATCH", "/v3/apps/"+app+"/relationships/current_droplet", map[string]any{"data": map[string]string{"guid": droplet}}, 200)
	c.json("POST", "/v3/apps/"+app+"/actions/restart", nil, 200)
	proc := c.json("GET", "/v3/apps/"+app+"/processes", nil, 200).str(t, "resources.0.guid")
	// The start wait: stable once any instance is RUNNING; an empty list
	// would end it at once, so it must never be empty.
	var seen []string
	testutil.CheckFor(t, 2*time.Minute, 50*time.Millisecond, func() error {
		st := c.json("GET", "/v3/processes/"+proc+"/stats", nil, 200)
		n := st.count(t, "resources")
		if n == 0 {
			t.Fatalf("empty stats for a started app with instances")
		}
		running := false
		for i := 0; i < n; i++ {
			s := st.str(t, fmt.Sprintf("resources.%d.state", i))
			if len(seen) == 0 || seen[len(seen)-1] != s {
				seen = append(seen, s)
			}
			running = running || s == "RUNNING"
			if s == "CRASHED" {
				t.Fatalf("%s crashed: %s", name, st.body)
			}
		}
		if !running {
			return fmt.Errorf("no instance RUNNING yet")
		}
		return nil
	})
	return app, seen
}

// stagingLog reads the app's STG lines from the log cache as push does.
func (c *ccClient) stagingLog(app string) string {
	t := c.t
	t.Helper()
	if v := c.json("GET", "/api/v1/info", nil, 200).str(t, "version"); v != "3.0.0" {
		t.Errorf("log-cache version %s", v)
	}
	r := c.json("GET", "/api/v1/read/"+app+"?start_time=0&envelope_types=LOG&limit=1000", nil, 200)
	var out strings.Builder
	env, _ := r.doc.(map[string]any)["envelopes"].(map[string]any)
	batch, _ := env["batch"].([]any)
	for _, e := range batch {
		m, _ := e.(map[string]any)
		tags, _ := m["tags"].(map[string]any)
		lg, _ := m["log"].(map[string]any)
		p, _ := base64.StdEncoding.DecodeString(fmt.Sprint(lg["payload"]))
		fmt.Fprintf(&out, "[%v/%v] %s\n", tags["source_type"], m["instance_id"], p)
	}
	return out.String()
}

func TestCFCLI_ReplayOnFoundation(t *testing.T) {
	f := startFoundation(t, "process")
	api := f.apiURL(t)
	c := &ccClient{t: t, base: api}

	// cf api: the root document's links.
	root := c.json("GET", "/", nil, 200)
	for _, l := range []string{"login", "uaa", "log_cache"} {
		if h := root.str(t, "links."+l+".href"); h != api {
			t.Errorf("links.%s = %s, want %s", l, h, api)
		}
	}
	if v := root.str(t, "links.cloud_controller_v3.meta.version"); v != ccapi.APIVersion {
		t.Errorf("version %s", v)
	}
	// cf auth admin PASSWORD, with the password minicf up generated.
	form := url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {f.adminPassword(t)}}
	req, _ := http.NewRequest("POST", api+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("cf", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		RefreshToken string `json:"refresh_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.TokenType != "bearer" || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("password grant: %d %+v", resp.StatusCode, tok)
	}
	// The client from the state directory works too.
	secret, err := os.ReadFile(filepath.Join(f.home, foundation.AdminClientSecretFile))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.PostForm(api+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {foundation.AdminClient},
		"client_secret": {strings.TrimSpace(string(secret))}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("client_credentials grant: %d", resp.StatusCode)
	}
	c.token = tok.AccessToken

	// cf target -o minicf -s dev.
	org := c.json("GET", "/v3/organizations?names=minicf&page=1&per_page=1", nil, 200).str(t, "resources.0.guid")
	space := c.json("GET", "/v3/spaces?names=dev&organization_guids="+org+"&page=1&per_page=1", nil, 200).str(t, "resources.0.guid")

	// cf push hello -f manifest.yml: Go staging.
	c.do("POST", "/v3/spaces/"+space+"/manifest_diff", "application/x-yaml", []byte("applications:\n- name: hello\n")).want(t, 201)
	hello, states := c.push(space, "hello", "applications:\n- name: hello\n  path: "+examplesDir(t)+"\n  default-route: true\n  instances: 2\n  routes:\n  - route: hello.apps.localhost\n",
		zipDir(t, examplesDir(t)))
	t.Logf("hello: instance states during the start wait: %v", states)
	if states[0] != "STARTING" && states[0] != "RUNNING" {
		t.Errorf("the first state after restart is %s, want STARTING", states[0])
	}
	f.waitApp(t, "hello.apps.localhost", "/", "hello", 30*time.Second)
	if log := c.stagingLog(hello); !strings.Contains(log, "[STG/0] -----> Go app detected") {
		t.Errorf("hello's staging log:\n%s", log)
	}

	// cf push hello-bin -p DIR -b binary_buildpack -c ./hello: no go build.
	bin, states := c.push(space, "hello-bin", "applications:\n- name: hello-bin\n  path: /somewhere\n  default-route: true\n  buildpacks:\n  - binary_buildpack\n  command: ./hello\n",
		zipDir(t, buildHello(t)))
	t.Logf("hello-bin: instance states during the start wait: %v", states)
	f.waitApp(t, "hello-bin.apps.localhost", "/", "hello-bin", 30*time.Second)
	if log := c.stagingLog(bin); !strings.Contains(log, "[STG/0] -----> Buildpacks chosen for the app (detection skipped): binary_buildpack") ||
		strings.Contains(log, "] -----> Go app detected") || strings.Contains(log, "go_buildpack") {
		t.Errorf("hello-bin's staging log (binary_buildpack must not go build):\n%s", log)
	}

	// The minicf CLI sees the same state, and what it changes the cf CLI's
	// requests see.
	if out := f.cli(t, "apps"); !strings.Contains(out, "hello-bin") {
		t.Fatalf("minicf apps:\n%s", out)
	}
	f.cli(t, "map-route", "hello", "apps.localhost", "--hostname", "via-minicf")
	routes := c.json("GET", "/v3/routes?domain_guids="+c.json("GET", "/v3/domains?names=apps.localhost&page=1&per_page=1", nil, 200).str(t, "resources.0.guid")+
		"&hosts=via-minicf&paths=&page=1&per_page=1", nil, 200)
	if app := routes.str(t, "resources.0.destinations.0.app.guid"); app != hello {
		t.Errorf("the route minicf mapped goes to %s, want %s", app, hello)
	}
	f.waitApp(t, "via-minicf.apps.localhost", "/", "hello", 10*time.Second)

	// cf delete -r for both.
	for _, app := range []string{hello, bin} {
		rs := c.json("GET", "/v3/apps/"+app+"/routes", nil, 200)
		c.job(c.do("DELETE", "/v3/apps/"+app, "", nil))
		for i := 0; i < rs.count(t, "resources"); i++ {
			c.job(c.do("DELETE", "/v3/routes/"+rs.str(t, fmt.Sprintf("resources.%d.guid", i)), "", nil))
		}
	}
	if out := f.cli(t, "apps"); !strings.Contains(out, "No apps found") {
		t.Fatalf("minicf apps after delete:\n%s", out)
	}
	f.waitStatus(t, "hello.apps.localhost", 404, 10*time.Second)
	f.stopFoundation(t)
}
