package cli

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc"
	"github.com/minicf/minicf/internal/cc/ccapi"
)

// stagingBBS is a fake BBS for a real Cloud Controller: it "runs" the
// staging Task by downloading the package, uploading a droplet and posting
// the completed Task to the CC's internal API, and reports every desired
// LRP's instances RUNNING.
type stagingBBS struct {
	mu       sync.Mutex
	t        *testing.T
	cc       *cc.CC
	token    string
	desired  map[string]*bbs.DesiredLRP
	pkgModes map[string]string // the staged package's entries -> modes
	wg       sync.WaitGroup
}

func (f *stagingBBS) DesireLRP(_ context.Context, d *bbs.DesiredLRP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.desired[d.ProcessGUID] = d
	return nil
}

func (f *stagingBBS) UpdateDesiredLRP(_ context.Context, guid string, u *bbs.DesiredLRPUpdate) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.desired[guid]
	if d == nil {
		return bbs.NewError(bbs.ErrTypeResourceNotFound, "desired LRP %q does not exist", guid)
	}
	if u.Instances != nil {
		d.Instances = *u.Instances
	}
	return nil
}

func (f *stagingBBS) RemoveDesiredLRP(_ context.Context, guid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.desired, guid)
	return nil
}

func (f *stagingBBS) DesiredLRPs(_ context.Context, req bbs.DesiredLRPsRequest) ([]*bbs.DesiredLRP, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*bbs.DesiredLRP
	for _, d := range f.desired {
		out = append(out, d)
	}
	return out, nil
}

func (f *stagingBBS) ActualLRPs(_ context.Context, req bbs.ActualLRPsRequest) ([]*bbs.ActualLRP, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*bbs.ActualLRP
	for _, d := range f.desired {
		if req.ProcessGUID != "" && d.ProcessGUID != req.ProcessGUID {
			continue
		}
		for i := int32(0); i < d.Instances; i++ {
			a := &bbs.ActualLRP{State: bbs.StateRunning, Since: time.Now().Add(-5 * time.Second).UnixNano()}
			a.ProcessGUID, a.Index, a.Domain = d.ProcessGUID, i, d.Domain
			a.InstanceGUID, a.CellID = fmt.Sprintf("instance-%d", i), fmt.Sprintf("cell-%d", i+1)
			a.Address, a.InstanceAddress = "10.244.0.11", fmt.Sprintf("10.244.1.%d", i+2)
			a.Ports = []bbs.PortMapping{{ContainerPort: 8080, HostPort: uint32(61000 + 2*i), ContainerTLSProxyPort: 61001, HostTLSProxyPort: uint32(61001 + 2*i)}}
			out = append(out, a)
		}
	}
	return out, nil
}

func (f *stagingBBS) UpsertDomain(context.Context, string, time.Duration) error { return nil }

func (f *stagingBBS) DesireTask(_ context.Context, guid, domain string, def *bbs.TaskDefinition) error {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err := f.stage(guid, def); err != nil {
			f.t.Errorf("fake staging of %s: %v", guid, err)
		}
	}()
	return nil
}

// call sends a request to one of the CC's handlers.
func call(h http.Handler, method, rawURL, token string, body []byte) (int, []byte) {
	u, _ := url.Parse(rawURL)
	req := httptest.NewRequest(method, u.RequestURI(), bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func (f *stagingBBS) stage(guid string, def *bbs.TaskDefinition) error {
	// The build is committed once POST /v3/builds answers; wait for it.
	for i := 0; ; i++ {
		if code, _ := call(f.cc.APIHandler(), "GET", "/v3/builds/"+guid, f.token, nil); code == 200 {
			break
		}
		if i > 500 {
			return fmt.Errorf("build %s never appeared", guid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	in := f.cc.InternalHandler()
	code, pkg := call(in, "GET", def.Setup.From, "", nil)
	if code != 200 {
		return fmt.Errorf("package download: %d %s", code, pkg)
	}
	zr, err := zip.NewReader(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		return err
	}
	f.mu.Lock()
	for _, e := range zr.File {
		f.pkgModes[e.Name] = e.Mode().String()
	}
	f.mu.Unlock()
	var tgz bytes.Buffer
	gz := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: "run.sh", Mode: 0o755, Size: 2})
	tw.Write([]byte("#!"))
	tw.Close()
	gz.Close()
	if code, body := call(in, "PUT", def.Upload.To, "", tgz.Bytes()); code != 201 {
		return fmt.Errorf("droplet upload: %d %s", code, body)
	}
	task, _ := json.Marshal(bbs.Task{TaskGUID: guid, Domain: "cf-tasks", State: "COMPLETED",
		Result: `{"process_types":{"web":"./run.sh"},"lifecycle_type":"buildpack","execution_metadata":"","detected_buildpack":"binary"}`})
	if code, body := call(in, "POST", def.CompletionCallbackURL, "", task); code != 200 {
		return fmt.Errorf("task callback: %d %s", code, body)
	}
	return nil
}

// TestVerbsAgainstRealCC drives minicf's real Cloud Controller (with a
// fake BBS that stages and runs instantly) through push and the other
// verbs, as `minicf up` would have it.
func TestVerbsAgainstRealCC(t *testing.T) {
	fb := &stagingBBS{t: t, desired: map[string]*bbs.DesiredLRP{}, pkgModes: map[string]string{}}
	c, err := cc.New(cc.Config{StateDir: t.TempDir(), InternalURL: "https://cc.minicf.test:9023",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, fb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fb.cc = c
	t.Cleanup(func() { fb.wg.Wait(); c.Stop(context.Background()) })
	srv := httptest.NewServer(c.APIHandler())
	t.Cleanup(srv.Close)
	if fb.token, err = c.IssueToken("admin", time.Hour); err != nil {
		t.Fatal(err)
	}
	getOne := func(path string, out any) {
		code, body := call(c.APIHandler(), "GET", path, fb.token, nil)
		var l ccapi.List[json.RawMessage]
		if code != 200 || json.Unmarshal(body, &l) != nil || len(l.Resources) != 1 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		json.Unmarshal(l.Resources[0], out)
	}
	var org ccapi.Organization
	var space ccapi.Space
	getOne("/v3/organizations?names=minicf", &org)
	getOne("/v3/spaces?names=dev&organization_guids="+org.GUID, &space)

	h := &harness{t: t, home: t.TempDir(), dir: t.TempDir()}
	h.cfg = &Config{API: srv.URL, AccessToken: fb.token, OrganizationGUID: org.GUID, SpaceGUID: space.GUID,
		OrganizationName: org.Name, SpaceName: space.Name, Router: "127.0.0.1:8081"}
	h.saveConfig()
	writeFiles(t, h.dir, map[string]string{"hello/run.sh*": "#!/bin/sh\necho hi\n", "hello/static/index.html": "<p>hi</p>", "hello/.git/HEAD": "x"})

	out := h.mustRun("push", "hello", "-p", "hello", "-c", "./run.sh", "-i", "2", "-m", "64M")
	wantContains(t, "push", out, "Pushing app hello to org minicf / space dev as admin...", "Uploading hello...",
		"Staging app and tracing logs...", "Starting app...", "2 of 2 instances running",
		"routes:            hello.apps.localhost\n", "memory usage:    64M\n", "start command:   ./run.sh\n",
		"#0   running", "cell-1   10.244.0.11:61001   10.244.1.2", "curl http://hello.apps.localhost:8081/")
	fb.mu.Lock()
	modes := fmt.Sprint(fb.pkgModes)
	fb.mu.Unlock()
	wantContains(t, "staged package", modes, "run.sh:-rwxr-xr-x", "static/:d", "static/index.html:-rw-r--r--")
	if strings.Contains(modes, ".git") {
		t.Errorf("the package holds .git: %s", modes)
	}

	out = h.mustRun("apps")
	wantContains(t, "apps", out, "hello   started           web:2/2     hello.apps.localhost\n")
	h.mustRun("map-route", "hello", "apps.localhost", "--hostname", "www", "--path", "v1")
	out = h.mustRun("routes")
	wantContains(t, "routes", out, "dev     hello   apps.localhost", "dev     www     apps.localhost          /v1    http       http1          8080       hello")
	out, errOut, err := h.run("create-route", "apps.localhost", "--hostname", "www", "--path", "/v1")
	if err != nil || !strings.Contains(errOut, "Route already exists") || !strings.HasSuffix(out, "OK\n") {
		t.Errorf("create-route of an existing route: %v %q %q", err, out, errOut)
	}
	h.mustRun("unmap-route", "hello", "apps.localhost", "--hostname", "www", "--path", "v1")
	out = h.mustRun("scale", "hello", "-i", "1")
	wantContains(t, "scale", out, "1 of 1 instances running", "instances:       1/1")
	h.mustRun("stop", "hello")
	out = h.mustRun("app", "hello")
	wantContains(t, "app (stopped)", out, "requested state:   stopped", "#0   down")
	out = h.mustRun("start", "hello")
	wantContains(t, "start", out, "1 of 1 instances running")
	h.mustRun("restart", "hello")
	h.mustRun("logs", "hello", "--recent")
	_, errOut, err = h.run("app", "nope")
	if err == nil || errOut != "App 'nope' not found.\n" {
		t.Errorf("app nope: %v %q", err, errOut)
	}
	// A buildpack the Cloud Controller does not have: FAILED with its reason.
	out, errOut, err = h.run("push", "bad", "-p", "hello", "-b", "nonsense_buildpack", "-c", "./run.sh")
	if err == nil || !strings.Contains(errOut, `Buildpack "nonsense_buildpack" for stack "cflinuxfs4" must be an existing admin buildpack or a valid git URI`) {
		t.Errorf("push -b nonsense_buildpack: %v %q %q", err, out, errOut)
	}
	h.mustRun("delete", "hello", "-f", "-r")
	out = h.mustRun("apps")
	wantContains(t, "apps after delete", out, "No apps found")
	out = h.mustRun("routes")
	if strings.Contains(out, "hello") {
		t.Errorf("routes left after delete -r:\n%s", out)
	}
}
