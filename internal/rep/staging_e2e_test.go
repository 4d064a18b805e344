package rep_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/auctioneer"
	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/rep"
	"github.com/minicf/minicf/internal/testutil"
)

// lateAuctioneer lets the BBS start before the auctioneer, whose address
// it learns afterwards.
type lateAuctioneer struct {
	c atomic.Pointer[auctioneer.Client]
}

func (l *lateAuctioneer) RequestLRPStarts(ctx context.Context, reqs []bbs.LRPStartRequest) error {
	if c := l.c.Load(); c != nil {
		return c.RequestLRPStarts(ctx, reqs)
	}
	return errors.New("no auctioneer yet")
}

func (l *lateAuctioneer) RequestTaskAuctions(ctx context.Context, reqs []bbs.TaskStartRequest) error {
	if c := l.c.Load(); c != nil {
		return c.RequestTaskAuctions(ctx, reqs)
	}
	return errors.New("no auctioneer yet")
}

// ccInternal stands for the Cloud Controller's internal API: droplet
// uploads and Task completion callbacks, over mutual TLS.
type ccInternal struct {
	srv       *httptest.Server
	mu        sync.Mutex
	droplets  map[string]int // droplet guid → bytes
	completed map[string]bbs.Task
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStagingTaskThroughBBSAuctioneerAndCell runs staging as the Cloud
// Controller will: a Task desired in a real BBS, placed by a real
// auctioneer on a real cell, built by the lifecycle builder, its droplet
// uploaded and its completion posted back, all over mutual TLS.
func TestStagingTaskThroughBBSAuctioneerAndCell(t *testing.T) {
	minicfBin, lifecycleBin := rep.BuiltBinaries()
	logger := slog.New(slog.DiscardHandler)
	ca, _, err := identity.New("staging e2e CA")
	must(t, err)
	tlsFor := func(name string) (server, client *tls.Config) {
		cred, err := ca.IssueComponent(name, []string{"127.0.0.1"}, time.Hour)
		must(t, err)
		server, err = ca.ServerTLS(cred)
		must(t, err)
		client, err = ca.ClientTLS(cred)
		must(t, err)
		return server, client
	}
	bbsServer, bbsClientTLS := tlsFor("bbs")
	aucServer, aucClientTLS := tlsFor("auctioneer")
	repServer, repClientTLS := tlsFor("rep-cell-1")
	ccServer, _ := tlsFor("cloud-controller")

	cc := &ccInternal{droplets: map[string]int{}, completed: map[string]bbs.Task{}}
	cc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		cc.mu.Lock()
		defer cc.mu.Unlock()
		switch {
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/internal/v4/droplets/"):
			cc.droplets[strings.Split(r.URL.Path, "/")[4]] = len(body)
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/internal/v4/tasks/"):
			var task bbs.Task
			json.Unmarshal(body, &task)
			cc.completed[strings.Split(r.URL.Path, "/")[4]] = task
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
		fmt.Fprintln(w, "{}")
	}))
	cc.srv.TLS = ccServer
	cc.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	cc.srv.StartTLS()
	defer cc.srv.Close()

	// The BBS, its auctioneer and one cell.
	store, err := bbs.OpenSQLStore(context.Background(), filepath.Join(t.TempDir(), "bbs.db"))
	must(t, err)
	defer store.Close()
	late := &lateAuctioneer{}
	svc := bbs.NewService(bbs.Config{Logger: logger, TaskCallbackTLS: bbsClientTLS}, store, late, rep.NewClient(bbsClientTLS))
	svc.Start()
	defer svc.Stop()
	srv := bbs.NewServer(bbs.ServerConfig{Listen: "127.0.0.1:0", TLS: bbsServer, Logger: logger}, svc)
	must(t, srv.Start())
	// Clients close their spare connections first: a server waits 5 s for
	// one that was opened and never used.
	var clients []*bbs.Client
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
		srv.Stop(context.Background())
	}()
	bbsURL := "https://" + srv.Addr()

	aucBBS := bbs.NewClient(bbsURL, aucClientTLS)
	auc, err := auctioneer.New(auctioneer.Config{Listen: "127.0.0.1:0", BatchWindow: 10 * time.Millisecond, Logger: logger},
		aucBBS, rep.NewClient(aucClientTLS), aucServer)
	must(t, err)
	must(t, auc.Start(context.Background()))
	defer auc.Stop(context.Background())
	late.c.Store(auctioneer.NewClient("https://"+auc.Addr(), bbsClientTLS))

	g, err := garden.NewProcessGarden(garden.ProcessConfig{Root: t.TempDir(), Logger: logger})
	must(t, err)
	repBBS := bbs.NewClient(bbsURL, repClientTLS)
	cell, err := rep.New(rep.Config{CellID: "cell-1", Listen: "127.0.0.1:0",
		Capacity:          bbs.CellCapacity{MemoryMB: 2048, DiskMB: 8192, Containers: 10},
		HeartbeatInterval: 100 * time.Millisecond, PollInterval: time.Hour, GracePeriod: 2 * time.Second,
		SidecarCommand: []string{minicfBin, "envoy"}, LifecycleBinary: lifecycleBin, ClientTLS: repClientTLS, Logger: logger,
	}, repBBS, g, ca, repServer)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	must(t, cell.Start(ctx))
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cell.StopAll(sctx)
	}()

	client := bbs.NewClient(bbsURL, bbsClientTLS)
	clients = append(clients, aucBBS, repBBS, client)
	events, err := client.SubscribeToTaskEvents(ctx)
	must(t, err)
	defer events.Close()
	env := stagingEnv(t)
	def := func(build, source, command string) *bbs.TaskDefinition {
		args := []string{"--app-dir", "/home/vcap/app", "--output-droplet", "/tmp/droplet.tgz", "--result", "/tmp/result.json"}
		if command != "" {
			args = append(args, "--command", command)
		}
		return &bbs.TaskDefinition{
			Setup:    &bbs.DownloadAction{From: source, To: "/home/vcap/app"},
			Action:   &bbs.RunAction{Path: bbs.LifecycleBuilder, Args: args, Env: env, User: "vcap"},
			MemoryMB: 256, DiskMB: 1024,
			Upload:                &bbs.UploadAction{From: "/tmp/droplet.tgz", To: cc.srv.URL + "/internal/v4/droplets/d-" + build + "/upload"},
			ResultFile:            "/tmp/result.json",
			CompletionCallbackURL: cc.srv.URL + "/internal/v4/tasks/" + build + "/completed",
			LogGUID:               "app-" + build, LogSource: "STG", MaxDurationMs: 120_000,
		}
	}
	goapp, err := filepath.Abs("testdata/goapp")
	must(t, err)
	noCommand := t.TempDir() // files, and nothing that says how to start them
	start := time.Now()
	must(t, client.DesireTask(ctx, "build-ok", bbs.DomainCFTasks, def("build-ok", goapp, "")))
	must(t, client.DesireTask(ctx, "build-bad", bbs.DomainCFTasks, def("build-bad", noCommand, "")))

	// Both end at the callback, and the BBS then lets them go.
	testutil.CheckFor(t, 90*time.Second, 20*time.Millisecond, func() error {
		for _, g := range []string{"build-ok", "build-bad"} {
			if _, err := client.TaskByGUID(ctx, g); !errors.Is(err, bbs.ErrResourceNotFound) {
				return fmt.Errorf("task %s is still in the BBS (%v)", g, err)
			}
		}
		return nil
	})
	t.Logf("both tasks staged, called back and deleted after %v", time.Since(start).Round(time.Millisecond))
	cc.mu.Lock()
	ok, bad, droplets := cc.completed["build-ok"], cc.completed["build-bad"], cc.droplets
	cc.mu.Unlock()
	if ok.Failed || !strings.Contains(ok.Result, `"web":"./goapp"`) || droplets["d-build-ok"] == 0 {
		t.Fatalf("the Go app's staging: %+v, droplets %v", ok, droplets)
	}
	if !bad.Failed || !strings.Contains(bad.FailureReason, "Exited with status 1") ||
		!strings.Contains(bad.FailureReason, "no start command: push with -c or add a Procfile with a web: line") {
		t.Fatalf("the staging without a start command: %+v", bad)
	}
	if _, uploaded := droplets["d-build-bad"]; uploaded {
		t.Fatal("a failed staging uploaded a droplet")
	}
	// The task stream told it all, build-ok from created to removed.
	var seen []string
	for !containsAll(seen, "task_created:build-ok", "task_removed:build-ok", "task_removed:build-bad") {
		ev, err := events.Next()
		must(t, err)
		var p struct {
			Task  *bbs.Task `json:"task"`
			After *bbs.Task `json:"after"`
		}
		json.Unmarshal(ev.Data, &p)
		task := p.Task
		if task == nil {
			task = p.After
		}
		seen = append(seen, ev.Type+":"+task.TaskGUID)
	}
}

func containsAll(have []string, want ...string) bool {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}

// stagingEnv is the Cloud Controller's staging environment with this
// machine's Go and build cache.
func stagingEnv(t *testing.T) []bbs.EnvironmentVariable {
	out, err := exec.Command("go", "env", "GOROOT", "GOCACHE", "GOMODCACHE").Output()
	must(t, err)
	v := strings.Split(strings.TrimSpace(string(out)), "\n")
	return []bbs.EnvironmentVariable{
		{Name: "GOCACHE", Value: v[1]}, {Name: "GOMODCACHE", Value: v[2]}, {Name: "GOPROXY", Value: "off"},
		{Name: "GOFLAGS", Value: "-mod=mod"}, {Name: "CGO_ENABLED", Value: "0"}, {Name: "GOTOOLCHAIN", Value: "local"},
		{Name: "PATH", Value: filepath.Join(v[0], "bin") + ":/usr/local/bin:/usr/bin:/bin"},
	}
}
