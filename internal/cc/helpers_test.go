package cc

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/minicf/minicf/internal/sqldb"
	"io"
	"io/fs"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/minicf/minicf/internal/mbus"
)

// ---------------------------------------------------------------------------
// Fakes.

// fakeBBS keeps DesiredLRPs, ActualLRPs and Tasks in memory, with the
// BBS's errors, and records every call.
type fakeBBS struct {
	mu      sync.Mutex
	desired map[string]*bbs.DesiredLRP
	actual  []*bbs.ActualLRP
	tasks   map[string]*bbs.TaskDefinition
	domains map[string]time.Duration
	calls   []string
	updates map[string][]*bbs.DesiredLRPUpdate
	// fail, when set, makes every call fail (the BBS is down).
	fail error
}

func newFakeBBS() *fakeBBS {
	return &fakeBBS{desired: map[string]*bbs.DesiredLRP{}, tasks: map[string]*bbs.TaskDefinition{},
		domains: map[string]time.Duration{}, updates: map[string][]*bbs.DesiredLRPUpdate{}}
}

var _ BBSClient = (*fakeBBS)(nil)

func (f *fakeBBS) record(call string) error {
	f.calls = append(f.calls, call)
	return f.fail
}

func clone[T any](v *T) *T {
	b, _ := json.Marshal(v)
	out := new(T)
	json.Unmarshal(b, out)
	return out
}

func (f *fakeBBS) DesireLRP(_ context.Context, d *bbs.DesiredLRP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("desire " + d.ProcessGUID); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return bbs.NewError(bbs.ErrTypeInvalidRecord, "%v", err)
	}
	if f.desired[d.ProcessGUID] != nil {
		return bbs.NewError(bbs.ErrTypeResourceExists, "desired LRP %q exists", d.ProcessGUID)
	}
	f.desired[d.ProcessGUID] = clone(d)
	return nil
}

func (f *fakeBBS) UpdateDesiredLRP(_ context.Context, guid string, u *bbs.DesiredLRPUpdate) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("update " + guid); err != nil {
		return err
	}
	d := f.desired[guid]
	if d == nil {
		return bbs.NewError(bbs.ErrTypeResourceNotFound, "desired LRP %q does not exist", guid)
	}
	f.updates[guid] = append(f.updates[guid], clone(u))
	if u.Instances != nil {
		d.Instances = *u.Instances
	}
	if u.Routes != nil {
		d.Routes = *u.Routes
	}
	if u.Annotation != nil {
		d.Annotation = *u.Annotation
	}
	if u.MetricTags != nil {
		d.MetricTags = u.MetricTags
	}
	d.ModificationTag = d.ModificationTag.Increment()
	return nil
}

func (f *fakeBBS) RemoveDesiredLRP(_ context.Context, guid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("remove " + guid); err != nil {
		return err
	}
	if f.desired[guid] == nil {
		return bbs.NewError(bbs.ErrTypeResourceNotFound, "desired LRP %q does not exist", guid)
	}
	delete(f.desired, guid)
	return nil
}

func (f *fakeBBS) DesiredLRPs(_ context.Context, req bbs.DesiredLRPsRequest) ([]*bbs.DesiredLRP, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("list-desired"); err != nil {
		return nil, err
	}
	var out []*bbs.DesiredLRP
	for _, g := range sortedKeys(f.desired) {
		if req.Domain == "" || f.desired[g].Domain == req.Domain {
			out = append(out, clone(f.desired[g]))
		}
	}
	return out, nil
}

func (f *fakeBBS) ActualLRPs(_ context.Context, req bbs.ActualLRPsRequest) ([]*bbs.ActualLRP, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("list-actual " + req.ProcessGUID); err != nil {
		return nil, err
	}
	var out []*bbs.ActualLRP
	for _, a := range f.actual {
		if req.ProcessGUID == "" || a.ProcessGUID == req.ProcessGUID {
			out = append(out, clone(a))
		}
	}
	return out, nil
}

func (f *fakeBBS) UpsertDomain(_ context.Context, domain string, ttl time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fmt.Sprintf("upsert-domain %s %v", domain, ttl)); err != nil {
		return err
	}
	f.domains[domain] = ttl
	return nil
}

func (f *fakeBBS) DesireTask(_ context.Context, guid, domain string, def *bbs.TaskDefinition) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("desire-task " + guid + " " + domain); err != nil {
		return err
	}
	t := &bbs.Task{TaskGUID: guid, Domain: domain, TaskDefinition: def}
	if err := t.Validate(); err != nil {
		return bbs.NewError(bbs.ErrTypeInvalidRecord, "%v", err)
	}
	if f.tasks[guid] != nil {
		return bbs.NewError(bbs.ErrTypeResourceExists, "task %q exists", guid)
	}
	f.tasks[guid] = clone(def)
	return nil
}

// takeCalls returns the calls so far (without list calls) and forgets them.
func (f *fakeBBS) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "list-") {
			out = append(out, c)
		}
	}
	f.calls = nil
	return out
}

func (f *fakeBBS) lrp(guid string) *bbs.DesiredLRP {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.desired[guid]; d != nil {
		return clone(d)
	}
	return nil
}

func (f *fakeBBS) task(guid string) *bbs.TaskDefinition {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.tasks[guid]; d != nil {
		return clone(d)
	}
	return nil
}

func (f *fakeBBS) lrpGUIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedKeys(f.desired)
}

func (f *fakeBBS) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// fakeBus hands the log cache's subscription to the test.
type fakeBus struct {
	mu       sync.Mutex
	subjects []string
	handler  func(mbus.Msg)
}

type fakeSub struct{}

func (fakeSub) Unsubscribe() error { return nil }

func (b *fakeBus) Subscribe(subject string, h func(mbus.Msg)) (mbus.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subjects = append(b.subjects, subject)
	b.handler = h
	return fakeSub{}, nil
}

func (b *fakeBus) publish(subject string, data []byte) {
	b.mu.Lock()
	h := b.handler
	b.mu.Unlock()
	h(mbus.Msg{Subject: subject, Data: data})
}

// testClock is a clock the test moves; each reading also moves it on by
// a microsecond, so records made one after the other have distinct times.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Microsecond)
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// ---------------------------------------------------------------------------
// The test environment: a CC on a real database with a fake BBS, its
// public API on an httptest server and its internal API as a handler.

type env struct {
	t        *testing.T
	cc       *CC
	bbs      *fakeBBS
	clock    *testClock
	api      *httptest.Server
	internal http.Handler
	token    string
	base     string // the API's URL
	org      string
	space    string
	domain   string
	stateDir string
}

type envOption func(*Config)

const testExternalURL = "http://api.minicf.test"
const testInternalURL = "https://cc.minicf.test:9023"

func newEnv(t *testing.T, dsn string, opts ...envOption) *env {
	t.Helper()
	fb := newFakeBBS()
	e := newEnvWith(t, dsn, fb, opts...)
	e.bbs = fb
	return e
}

// newEnvWith makes an env whose CC talks to client.
func newEnvWith(t *testing.T, dsn string, client BBSClient, opts ...envOption) *env {
	t.Helper()
	clock := &testClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	dir := t.TempDir()
	cfg := Config{DB: dsn, StateDir: dir, ExternalURL: testExternalURL, InternalURL: testInternalURL,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clock.Now}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg, client, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(context.Background()) })
	api := httptest.NewServer(c.APIHandler())
	t.Cleanup(api.Close)
	e := &env{t: t, cc: c, clock: clock, api: api, internal: c.InternalHandler(), base: api.URL, stateDir: dir}
	e.token, err = c.IssueToken("admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var orgs ccapi.List[ccapi.Organization]
	e.mustJSON("GET", "/v3/organizations?names=minicf", nil, 200, &orgs)
	e.org = orgs.Resources[0].GUID
	var spaces ccapi.List[ccapi.Space]
	e.mustJSON("GET", "/v3/spaces?names=dev&organization_guids="+e.org, nil, 200, &spaces)
	e.space = spaces.Resources[0].GUID
	var doms ccapi.List[ccapi.Domain]
	e.mustJSON("GET", "/v3/domains?names=apps.localhost", nil, 200, &doms)
	e.domain = doms.Resources[0].GUID
	return e
}

// do sends a request with the token; body is JSON unless it is []byte.
func (e *env) do(method, path string, body any, hdr ...string) (int, http.Header, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	target := path
	if !strings.HasPrefix(path, "http") {
		target = e.base + path
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// mustJSON sends a request, checks the status and decodes the answer.
func (e *env) mustJSON(method, path string, body any, status int, out any) http.Header {
	e.t.Helper()
	code, h, data := e.do(method, path, body)
	if code != status {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, status, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return h
}

// wantError sends a request and checks the status, error title and
// detail (detail: exact, or a prefix when it ends with "…").
func (e *env) wantError(method, path string, body any, status int, title, detail string) {
	e.t.Helper()
	code, _, data := e.do(method, path, body)
	checkError(e.t, method+" "+path, code, data, status, title, detail)
}

func checkError(t *testing.T, what string, code int, data []byte, status int, title, detail string) {
	t.Helper()
	if code != status {
		t.Fatalf("%s: status %d, want %d: %s", what, code, status, data)
	}
	var errs ccapi.Errors
	if err := json.Unmarshal(data, &errs); err != nil || len(errs.Errors) != 1 {
		t.Fatalf("%s: not a CC error body (%v): %s", what, err, data)
	}
	got := errs.Errors[0]
	if title != "" && got.Title != title {
		t.Errorf("%s: title %q, want %q (%s)", what, got.Title, title, got.Detail)
	}
	if strings.HasSuffix(detail, "…") {
		if !strings.HasPrefix(got.Detail, strings.TrimSuffix(detail, "…")) {
			t.Errorf("%s: detail %q, want it to start with %q", what, got.Detail, strings.TrimSuffix(detail, "…"))
		}
	} else if got.Detail != detail {
		t.Errorf("%s: detail %q, want %q", what, got.Detail, detail)
	}
	if got.Code == 0 {
		t.Errorf("%s: error without a code", what)
	}
}

// internalDo calls the internal API's handler (mutual TLS is the
// listener's business; TestListeners covers it).
func (e *env) internalDo(method, path string, body []byte) (int, []byte) {
	e.t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	rec := httptest.NewRecorder()
	e.internal.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func (e *env) createApp(name string) ccapi.App {
	e.t.Helper()
	var a ccapi.App
	e.mustJSON("POST", "/v3/apps", map[string]any{"name": name,
		"relationships": map[string]any{"space": map[string]any{"data": map[string]string{"guid": e.space}}}}, 201, &a)
	return a
}

func (e *env) createRoute(host, path string) ccapi.Route {
	e.t.Helper()
	var r ccapi.Route
	e.mustJSON("POST", "/v3/routes", map[string]any{"host": host, "path": path, "relationships": map[string]any{
		"space": map[string]any{"data": map[string]string{"guid": e.space}}, "domain": map[string]any{"data": map[string]string{"guid": e.domain}}}}, 201, &r)
	return r
}

func (e *env) mapRoute(route, app string) ccapi.RouteDestinations {
	e.t.Helper()
	var out ccapi.RouteDestinations
	e.mustJSON("POST", "/v3/routes/"+route+"/destinations", map[string]any{"destinations": []any{map[string]any{"app": map[string]string{"guid": app}}}}, 200, &out)
	return out
}

func (e *env) webProcess(app string) ccapi.Process {
	e.t.Helper()
	var p ccapi.Process
	e.mustJSON("GET", "/v3/apps/"+app+"/processes/web", nil, 200, &p)
	return p
}

// zipEntry is one entry of a test zip.
type zipEntry struct {
	name   string
	mode   fs.FileMode
	body   string
	method uint16
}

func makeZip(t testing.TB, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, en := range entries {
		h := &zip.FileHeader{Name: en.name, Method: en.method}
		if en.mode != 0 {
			h.SetMode(en.mode)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, en.body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// upload posts bits the way the cf CLI does (field resources, file part
// bits named package.zip); bits nil sends no bits part.
func (e *env) upload(pkg string, resources string, bits []byte) (int, []byte) {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("resources", resources)
	if bits != nil {
		w, _ := mw.CreateFormFile("bits", "package.zip")
		w.Write(bits)
	}
	mw.Close()
	code, _, data := e.do("POST", "/v3/packages/"+pkg+"/upload", buf.Bytes(), "Content-Type", mw.FormDataContentType())
	return code, data
}

func (e *env) createPackage(app string) ccapi.Package {
	e.t.Helper()
	var p ccapi.Package
	e.mustJSON("POST", "/v3/packages", map[string]any{"type": "bits", "relationships": map[string]any{"app": map[string]any{"data": map[string]string{"guid": app}}}}, 201, &p)
	return p
}

// stagedApp pushes an app up to a current droplet: package uploaded,
// build staged through the Task callback, droplet assigned.
func (e *env) stagedApp(name string) (ccapi.App, ccapi.Droplet) {
	e.t.Helper()
	a := e.createApp(name)
	p := e.createPackage(a.GUID)
	if code, data := e.upload(p.GUID, "[]", makeZip(e.t, zipEntry{name: "run.sh", mode: 0o755, body: "#!/bin/sh\n"})); code != 200 {
		e.t.Fatalf("upload: %d %s", code, data)
	}
	var b ccapi.Build
	e.mustJSON("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": p.GUID}}, 201, &b)
	def := e.bbs.task(b.GUID)
	if def == nil {
		e.t.Fatalf("no staging task for build %s", b.GUID)
	}
	e.stage(b.GUID, def, `{"process_types":{"web":"./run.sh"},"lifecycle_type":"buildpack","execution_metadata":"","detected_buildpack":"binary"}`)
	e.mustJSON("GET", "/v3/builds/"+b.GUID, nil, 200, &b)
	if b.State != ccapi.BuildStaged {
		e.t.Fatalf("build %s is %s: %v", b.GUID, b.State, b.Error)
	}
	var d ccapi.Droplet
	e.mustJSON("GET", "/v3/droplets/"+b.Droplet.GUID, nil, 200, &d)
	e.mustJSON("PATCH", "/v3/apps/"+a.GUID+"/relationships/current_droplet", map[string]any{"data": map[string]string{"guid": d.GUID}}, 200, nil)
	e.mustJSON("GET", "/v3/apps/"+a.GUID, nil, 200, &a)
	return a, d
}

// stage plays the cell: uploads a droplet to the task's upload URL and
// posts the completed task to its callback.
func (e *env) stage(buildGUID string, def *bbs.TaskDefinition, result string) {
	e.t.Helper()
	up, _ := url.Parse(def.Upload.To)
	if code, data := e.internalDo("PUT", up.Path, gzipBytes(e.t, "droplet")); code != 201 {
		e.t.Fatalf("droplet upload: %d %s", code, data)
	}
	e.complete(def, &bbs.Task{TaskGUID: buildGUID, Domain: bbs.DomainCFTasks, TaskDefinition: def, State: bbs.TaskStateCompleted, Result: result})
}

func (e *env) complete(def *bbs.TaskDefinition, task *bbs.Task) {
	e.t.Helper()
	cb, _ := url.Parse(def.CompletionCallbackURL)
	body, _ := json.Marshal(task)
	if code, data := e.internalDo("POST", cb.Path, body); code != 200 {
		e.t.Fatalf("completion callback: %d %s", code, data)
	}
}

func gzipBytes(t testing.TB, content string) []byte {
	t.Helper()
	// A gzip'd (empty-ish) stream: the CC only checks the magic.
	return append([]byte{0x1f, 0x8b, 0x08, 0x00}, []byte(content)...)
}

// startedApp is a staged, started app with one route mapped.
func (e *env) startedApp(name string) (ccapi.App, ccapi.Process, ccapi.Route) {
	e.t.Helper()
	a, _ := e.stagedApp(name)
	rt := e.createRoute(name, "")
	e.mapRoute(rt.GUID, a.GUID)
	e.mustJSON("POST", "/v3/apps/"+a.GUID+"/actions/start", nil, 200, &a)
	return a, e.webProcess(a.GUID), rt
}

// lrpGUIDOf is the process's LRP guid now.
func (e *env) lrpGUIDOf(app string) string {
	e.t.Helper()
	var found string
	err := e.cc.store.read(context.Background(), func(tx *stx) error {
		ps, err := listRecs[processRec](tx, tProcesses, "app_guid = ? AND type = ?", app, "web")
		if err == nil && len(ps) == 1 {
			found = ps[0].lrpGUID()
		}
		return err
	})
	if err != nil || found == "" {
		e.t.Fatalf("no web process for %s: %v", app, err)
	}
	return found
}

func cfHostnames(t testing.TB, d *bbs.DesiredLRP) []string {
	t.Helper()
	rs, err := d.Routes.CFRoutes()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, strings.Join(r.Hostnames, ","))
	}
	sort.Strings(out)
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Databases: SQLite always, PostgreSQL when MINICF_TEST_POSTGRES_URL is set
// (with CI=true, its absence is a failure), as internal/bbs's tests do.

const postgresURLEnv = "MINICF_TEST_POSTGRES_URL"

func testSQLiteDSN(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "cc.db") }

// postgresDSNs returns a maker of empty schemas, one per test.
func postgresDSNs(t *testing.T) func(*testing.T) string {
	base := os.Getenv(postgresURLEnv)
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is empty although CI=true: .ci/run should have started PostgreSQL and set it", postgresURLEnv)
		}
		t.Skipf("%s is not set; set it to a postgres:// URL of a database the tests may create schemas in to run the CC suite on PostgreSQL", postgresURLEnv)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if err := admin.PingContext(t.Context()); err != nil {
		t.Fatalf("cannot reach PostgreSQL at %s: %v", sqldb.Redact(base), err)
	}
	return func(t *testing.T) string {
		b := make([]byte, 8)
		rand.Read(b)
		schema := "cctest_" + hex.EncodeToString(b)
		if _, err := admin.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
			t.Fatalf("creating schema %s: %v", schema, err)
		}
		t.Cleanup(func() {
			if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
				t.Errorf("dropping schema %s: %v", schema, err)
			}
		})
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
}

// listFiles lists the regular files and links under dir (relative).
func listFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
