package cc

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/testutil"
)

// realBBS is the BBS's own client against the BBS's own service and HTTP
// API (SQLite in memory, no auctioneer, no cells); Tasks go to the fake, so
// the test can play the cell that stages (TestStagingThroughRealBBS runs
// them through the BBS).
type realBBS struct {
	*bbs.Client
	tasks *fakeBBS
}

func (r realBBS) DesireTask(ctx context.Context, guid, domain string, def *bbs.TaskDefinition) error {
	return r.tasks.DesireTask(ctx, guid, domain, def)
}

// TestWithRealBBS runs the CC → BBS path against the real BBS: what the CC
// desires, updates and removes is accepted, stored and read back with the
// same shapes, and its errors are the ones the CC expects.
func TestWithRealBBS(t *testing.T) {
	store, err := bbs.OpenSQLStore(t.Context(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := bbs.NewService(bbs.Config{Logger: logger}, store, nil, nil)
	srv := httptest.NewServer(bbs.NewServer(bbs.ServerConfig{Logger: logger}, svc).Handler())
	defer srv.Close()
	client := bbs.NewClient(srv.URL, nil)
	fb := newFakeBBS()
	e := newEnvWith(t, testSQLiteDSN(t), realBBS{Client: client, tasks: fb})
	e.bbs = fb // for the staging tasks
	ctx := context.Background()

	a, web, _ := e.startedApp("real")
	guid := e.lrpGUIDOf(a.GUID)
	d, err := client.DesiredLRPByProcessGUID(ctx, guid)
	if err != nil {
		t.Fatalf("the BBS has no LRP %s: %v", guid, err)
	}
	if got := cfHostnames(t, d); !equalStrings(got, []string{"real.apps.localhost"}) || d.Instances != 1 || d.LogGUID != a.GUID {
		t.Errorf("stored LRP: routes %v, %+v", got, d)
	}
	// Map a route and scale: the BBS's LRP follows at once.
	e.mapRoute(e.createRoute("real2", "").GUID, a.GUID)
	e.mustJSON("POST", "/v3/processes/"+web.GUID+"/actions/scale", map[string]int{"instances": 2}, 202, nil)
	d, _ = client.DesiredLRPByProcessGUID(ctx, guid)
	if got := cfHostnames(t, d); !equalStrings(got, []string{"real.apps.localhost", "real2.apps.localhost"}) || d.Instances != 2 {
		t.Errorf("after map and scale: routes %v, instances %d", got, d.Instances)
	}
	// Stats read the BBS's ActualLRPs (UNCLAIMED here: no auctioneer).
	var stats struct {
		Resources []ccapi.ProcessStat `json:"resources"`
	}
	e.mustJSON("GET", "/v3/processes/"+web.GUID+"/stats", nil, 200, &stats)
	if len(stats.Resources) != 2 || stats.Resources[0].State != ccapi.InstanceStarting {
		t.Errorf("stats %+v", stats.Resources)
	}
	// Drift: the LRP goes behind the CC's back, an orphan appears.
	if err := client.RemoveDesiredLRP(ctx, guid); err != nil {
		t.Fatal(err)
	}
	orphan := &bbs.DesiredLRP{ProcessGUID: "orphan", Domain: bbs.DomainCFApps, Instances: 0, Action: &bbs.RunAction{Path: "/bin/true"}}
	if err := client.DesireLRP(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	if err := e.cc.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	all, _ := client.DesiredLRPs(ctx, bbs.DesiredLRPsRequest{Domain: bbs.DomainCFApps})
	if len(all) != 1 || all[0].ProcessGUID != guid || all[0].Instances != 2 {
		t.Errorf("after the sync: %+v", all)
	}
	if doms, _ := client.Domains(ctx); !equalStrings(doms, []string{bbs.DomainCFApps}) {
		t.Errorf("fresh domains %v", doms)
	}
	// Stop removes it.
	e.mustJSON("POST", "/v3/apps/"+a.GUID+"/actions/stop", nil, 200, nil)
	if _, err := client.DesiredLRPByProcessGUID(ctx, guid); err == nil {
		t.Error("the LRP is still there after stop")
	}
}

// TestStagingThroughRealBBS: the staging contract end to end with the
// real BBS. The CC desires the Task; a "cell" uploads the droplet to the
// internal API (mutual TLS) and completes the Task; the BBS posts it to
// the completion callback (mutual TLS, its own component certificate) and
// the build is STAGED.
func TestStagingThroughRealBBS(t *testing.T) {
	ca, _, err := identity.New("test foundation CA")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string) (*tls.Config, *tls.Config) {
		cred, err := ca.IssueComponent(name, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		server, _ := ca.ServerTLS(cred)
		client, _ := ca.ClientTLS(cred)
		return server, client
	}
	ccServerTLS, _ := issue("cc")
	_, bbsClientTLS := issue("bbs")
	_, cellClientTLS := issue("rep-cell-1")

	store, err := bbs.OpenSQLStore(t.Context(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := bbs.NewService(bbs.Config{Logger: logger, TaskCallbackTLS: bbsClientTLS}, store, nil, nil)
	svc.Start()
	defer svc.Stop()
	bbsSrv := httptest.NewServer(bbs.NewServer(bbs.ServerConfig{Logger: logger}, svc).Handler())
	defer bbsSrv.Close()
	client := bbs.NewClient(bbsSrv.URL, nil)

	var internal http.Handler
	intSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { internal.ServeHTTP(w, r) }))
	intSrv.TLS = ccServerTLS
	intSrv.StartTLS()
	defer intSrv.Close()
	e := newEnvWith(t, testSQLiteDSN(t), client, func(c *Config) { c.InternalURL = intSrv.URL })
	internal = e.cc.InternalHandler()
	ctx := context.Background()

	a := e.createApp("staged")
	p := e.readyPackage(a.GUID)
	var b ccapi.Build
	e.mustJSON("POST", "/v3/builds", map[string]any{"package": map[string]string{"guid": p.GUID}}, 201, &b)
	task, err := client.TaskByGUID(ctx, b.GUID)
	if err != nil || task.Domain != bbs.DomainCFTasks || task.State != bbs.TaskStatePending || task.TaskDefinition.LogSource != "STG" {
		t.Fatalf("the BBS's task: %+v, %v", task, err)
	}
	// The cell: the package downloads, the droplet uploads, over mutual TLS.
	cell := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cellClientTLS}}
	resp, err := cell.Get(task.TaskDefinition.Setup.From)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/zip" {
		t.Errorf("package download: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	req, _ := http.NewRequest("PUT", task.TaskDefinition.Upload.To, bytes.NewReader(gzipBytes(t, "droplet")))
	resp, err = cell.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("droplet upload: %d", resp.StatusCode)
	}
	if ok, err := client.StartTask(ctx, b.GUID, "cell-1"); err != nil || !ok {
		t.Fatalf("start task: %v %v", ok, err)
	}
	result := `{"process_types":{"web":"./app"},"lifecycle_type":"buildpack","execution_metadata":"","detected_buildpack":"go"}`
	if err := client.CompleteTask(ctx, b.GUID, "cell-1", false, "", result); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		e.mustJSON("GET", "/v3/builds/"+b.GUID, nil, 200, &b)
		if b.State != ccapi.BuildStaged {
			return fmt.Errorf("build %s", b.State)
		}
		return nil
	})
	var d ccapi.Droplet
	e.mustJSON("GET", "/v3/droplets/"+b.Droplet.GUID, nil, 200, &d)
	if d.ProcessTypes["web"] != "./app" || d.Buildpacks[0].DetectOutput != "go" {
		t.Errorf("droplet %+v", d)
	}
	// Once the callback answered, the BBS lets the Task go.
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if _, err := client.TaskByGUID(ctx, b.GUID); err == nil {
			return fmt.Errorf("task %s still in the BBS", b.GUID)
		}
		return nil
	})
}
