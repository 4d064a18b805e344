package rep

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/testutil"
)

// Built once by TestMain: the real minicf binary (its envoy verb is the
// sidecar), the test app, and the lifecycle binary (the builder and
// launcher verbs).
var minicfBin, appDir, lifecycleBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "rep-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	minicfBin = filepath.Join(dir, "minicf")
	appDir = filepath.Join(dir, "app")
	if err := os.Mkdir(appDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lifecycleBin = filepath.Join(dir, "lifecycle")
	for _, b := range [][2]string{{minicfBin, "../../cmd/minicf"}, {filepath.Join(appDir, "testapp"), "./testdata/app"},
		{lifecycleBin, "./testdata/lifecycle"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", b[1], err, out)
			return 1
		}
	}
	return m.Run()
}

// cell is a rep under test with its garden, fake BBS and TLS.
type cell struct {
	t      *testing.T
	rep    *Rep
	garden *garden.Garden
	bbs    *fakeBBS
	ca     *identity.CA
	client *Client
	logs   *appLogs
	cfg    Config
}

type appLogs struct {
	mu    sync.Mutex
	lines []mbus.AppLog
}

func (a *appLogs) add(l mbus.AppLog) {
	a.mu.Lock()
	a.lines = append(a.lines, l)
	a.mu.Unlock()
}

func (a *appLogs) has(source, substr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.lines {
		if l.SourceType == source && strings.Contains(l.Message, substr) {
			return true
		}
	}
	return false
}

var testCA = sync.OnceValue(func() *identity.CA {
	ca, _, err := identity.New("rep test CA")
	if err != nil {
		panic(err)
	}
	return ca
})

func testConfig() Config {
	return Config{
		CellID: "cell-1", Zone: "z1", Listen: "127.0.0.1:0",
		Capacity:             bbs.CellCapacity{MemoryMB: 1024, DiskMB: 4096, Containers: 10},
		HeartbeatInterval:    50 * time.Millisecond,
		PollInterval:         time.Hour, // tests call reconcile themselves
		GracePeriod:          2 * time.Second,
		ProxyReloadWait:      -1,
		SidecarCommand:       []string{minicfBin, "envoy", "--log-level", "warn"},
		LifecycleBinary:      lifecycleBin,
		HealthCheckInterval:  20 * time.Millisecond,
		DefaultStartTimeout:  20 * time.Second,
		InstanceCertValidity: time.Hour,
	}
}

func newGarden(t *testing.T, root string) *garden.Garden {
	t.Helper()
	g, err := garden.NewProcessGarden(garden.ProcessConfig{Root: root, PortRangeStart: 63500 + rand.IntN(1500),
		AdoptPollInterval: 20 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// startCell starts a rep (mutual TLS) on a garden root ("" for a fresh one).
func startCell(t *testing.T, f *fakeBBS, root string, edit func(*Config)) *cell {
	t.Helper()
	if root == "" {
		root = t.TempDir()
	}
	ca := testCA()
	repCred, err := ca.IssueComponent("rep-cell-1", []string{"127.0.0.1"}, time.Hour)
	must(t, err)
	serverTLS, err := ca.ServerTLS(repCred)
	must(t, err)
	clientCred, err := ca.IssueComponent("auctioneer", nil, time.Hour)
	must(t, err)
	clientTLS, err := ca.ClientTLS(clientCred)
	must(t, err)
	c := &cell{t: t, bbs: f, ca: ca, client: NewClient(clientTLS), logs: &appLogs{}, garden: newGarden(t, root)}
	c.cfg = testConfig()
	c.cfg.AppLogs = c.logs.add
	c.cfg.Logger = testLogger(t)
	if edit != nil {
		edit(&c.cfg)
	}
	c.rep, err = New(c.cfg, f, c.garden, ca, serverTLS)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(t, c.rep.Start(ctx))
	return c
}

// cleanupAll stops every instance when the test ends and checks that no
// container, process or port is left.
func (c *cell) cleanupAll() {
	c.t.Cleanup(func() {
		infos, _ := c.garden.Containers()
		var pids []int
		var ports []uint32
		for _, info := range infos {
			for _, p := range info.Processes {
				pids = append(pids, p.PID)
			}
			for _, p := range info.BindPorts {
				ports = append(ports, p)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.rep.StopAll(ctx); err != nil {
			c.t.Error(err)
		}
		assertNothingLeft(c.t, c.garden, pids, ports)
	})
}

func assertNothingLeft(t *testing.T, g *garden.Garden, pids []int, ports []uint32) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(g.Root(), "containers"))
	if err != nil {
		t.Error(err)
	}
	for _, e := range entries {
		t.Errorf("container left behind: %s", e.Name())
	}
	for _, pid := range pids {
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("process group %d is still alive", pid)
			}
			return nil
		})
	}
	for _, p := range ports {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(int(p)))
		if err != nil {
			t.Errorf("port %d is still taken: %v", p, err)
			continue
		}
		ln.Close()
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (c *cell) presence() *bbs.CellPresence {
	return &bbs.CellPresence{CellID: c.cfg.CellID, RepURL: c.rep.URL(), RepAddress: c.rep.Addr()}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// desiredLRP is the test app on port 8080, copied in by the setup action.
func desiredLRP(pg string, instances int32, env ...bbs.EnvironmentVariable) *bbs.DesiredLRP {
	return &bbs.DesiredLRP{
		ProcessGUID: pg, Domain: bbs.DomainCFApps, Instances: instances, Ports: []uint32{8080},
		LogGUID: "app-" + pg, MemoryMB: 128, DiskMB: 256,
		Routes: bbs.Routes{}.SetCFRoutes([]bbs.CFRoute{{Hostnames: []string{pg + ".apps.localhost"}, Port: 8080}}),
		Setup:  &bbs.DownloadAction{From: appDir, To: "/home/vcap/app"},
		Action: &bbs.RunAction{Path: "/home/vcap/app/testapp", Dir: "/home/vcap/app",
			Env: append([]bbs.EnvironmentVariable{{Name: "FROM_CC", Value: "yes"}}, env...)},
		CheckDefinition:       &bbs.CheckDefinition{Checks: []bbs.Check{{HTTPCheck: &bbs.HTTPCheck{Port: 8080, Path: "/health"}}}},
		CertificateProperties: &bbs.CertificateProperties{OrganizationalUnit: []string{"organization:o1", "space:s1", "app:a1"}},
		MetricTags:            map[string]bbs.MetricTagValue{"app_name": {Static: "myapp"}, "process_type": {Static: "web"}},
	}
}

func work(pg string, indices ...int32) Work {
	var w Work
	for _, i := range indices {
		w.LRPs = append(w.LRPs, LRP{ProcessGUID: pg, Index: i, Domain: bbs.DomainCFApps, Resource: bbs.Resource{MemoryMB: 128, DiskMB: 256}})
	}
	return w
}

// perform sends work over the API and expects all of it taken.
func (c *cell) perform(w Work) {
	c.t.Helper()
	resp, err := c.client.Perform(ctxT(c.t), c.presence(), w)
	must(c.t, err)
	if len(resp.Failed) != 0 || len(resp.FailedTasks) != 0 {
		c.t.Fatalf("work refused: %+v %+v", resp.Failed, resp.FailedTasks)
	}
}

// waitState waits for an ActualLRP to reach state.
func (c *cell) waitState(pg string, index int32, state string) bbs.ActualLRP {
	c.t.Helper()
	var a bbs.ActualLRP
	testutil.CheckFor(c.t, 20*time.Second, 10*time.Millisecond, func() error {
		var ok bool
		a, ok = c.bbs.get(pg, index)
		if !ok || a.State != state {
			return fmt.Errorf("%s/%d is %+v (ok %v), want %s; calls %v", pg, index, a.State, ok, state, c.bbs.callsMatching(""))
		}
		return nil
	})
	return a
}

// instanceTLS is a client that trusts the instance identity CA and checks
// the SAN is the instance guid.
func (c *cell) instanceTLS(guid string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: c.ca.Pool(), ServerName: guid, MinVersion: tls.VersionTLS12},
	}}
}

func get(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

func TestWorkClaimsStartsAndServesThroughTheSidecar(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", nil)
	c.cleanupAll()
	f.desire(desiredLRP("pg-web", 1))
	start := time.Now()
	c.perform(work("pg-web", 0))
	a := c.waitState("pg-web", 0, bbs.StateRunning)
	t.Logf("running after %v", time.Since(start))

	guid := a.InstanceGUID
	if len(guid) != InstanceGUIDLength || a.CellID != "cell-1" {
		t.Fatalf("instance key %+v", a.ActualLRPInstanceKey)
	}
	if claims := f.callsMatching("claim pg-web/0 " + guid); len(claims) != 1 {
		t.Fatalf("claims: %v", f.callsMatching(""))
	}
	info, err := c.garden.Info(guid)
	must(t, err)
	ni := a.ActualLRPNetInfo
	if ni.Address != "127.0.0.1" || ni.InstanceAddress != "127.0.0.1" || ni.PreferredAddress != "HOST" || len(ni.Ports) != 1 {
		t.Fatalf("net info %+v", ni)
	}
	pm := ni.Ports[0]
	want := bbs.PortMapping{ContainerPort: 8080, HostPort: info.BindPorts[8080], ContainerTLSProxyPort: 61001, HostTLSProxyPort: info.BindPorts[61001]}
	if pm != want || pm.HostPort == 0 || pm.HostTLSProxyPort == 0 || pm.HostPort == pm.HostTLSProxyPort {
		t.Fatalf("ports %+v, want %+v", pm, want)
	}
	if a.Routable == nil || !*a.Routable {
		t.Fatal("not routable")
	}

	// Through the sidecar, with TLS verifying SAN = instance guid.
	body := get(t, c.instanceTLS(guid), fmt.Sprintf("https://127.0.0.1:%d/", pm.HostTLSProxyPort))
	if !strings.HasPrefix(body, guid+" 0 ") {
		t.Fatalf("through the sidecar: %q", body)
	}
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", pm.HostTLSProxyPort), &tls.Config{RootCAs: c.ca.Pool(), ServerName: guid})
	must(t, err)
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if leaf.Subject.CommonName != guid || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) ||
		!sameSet(leaf.Subject.OrganizationalUnit, []string{"organization:o1", "space:s1", "app:a1"}) {
		t.Fatalf("certificate: CN %s IPs %v OU %v", leaf.Subject.CommonName, leaf.IPAddresses, leaf.Subject.OrganizationalUnit)
	}
	if v := leaf.NotAfter.Sub(leaf.NotBefore); v > 2*time.Hour {
		t.Fatalf("validity %v, configured 1h", v)
	}
	// Another name does not verify.
	if _, err := c.instanceTLS("someone-else").Get(fmt.Sprintf("https://127.0.0.1:%d/", pm.HostTLSProxyPort)); err == nil {
		t.Fatal("a wrong SAN verified")
	}
	// Directly, on its own host port (process mode).
	if body := get(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/", pm.HostPort)); !strings.HasPrefix(body, guid) {
		t.Fatalf("direct: %q", body)
	}

	// Its environment.
	var env map[string]string
	must(t, json.Unmarshal([]byte(get(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/env", pm.HostPort))), &env))
	hp, tp := strconv.Itoa(int(pm.HostPort)), strconv.Itoa(int(pm.HostTLSProxyPort))
	for k, v := range map[string]string{
		"PORT": hp, "INSTANCE_INDEX": "0", "INSTANCE_GUID": guid, "CF_INSTANCE_GUID": guid, "CF_INSTANCE_INDEX": "0",
		"CF_INSTANCE_IP": "127.0.0.1", "CF_INSTANCE_INTERNAL_IP": "127.0.0.1", "CF_INSTANCE_PORT": hp,
		"CF_INSTANCE_ADDR":  "127.0.0.1:" + hp,
		"CF_INSTANCE_PORTS": `[{"external":` + hp + `,"internal":8080,"external_tls_proxy":` + tp + `,"internal_tls_proxy":61001}]`,
		"CF_INSTANCE_CERT":  filepath.Join(info.Dir, "etc/cf-instance-credentials/instance.crt"),
		"CF_INSTANCE_KEY":   filepath.Join(info.Dir, "etc/cf-instance-credentials/instance.key"),
		"FROM_CC":           "yes", "HOME": filepath.Join(info.Dir, "app"), "_CWD": filepath.Join(info.Dir, "app"),
	} {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	var vcap map[string]any
	must(t, json.Unmarshal([]byte(env["VCAP_APPLICATION"]), &vcap))
	for k, v := range map[string]any{"application_id": "app-pg-web", "instance_id": guid, "instance_index": 0.0, "host": "0.0.0.0",
		"port": float64(pm.HostPort), "process_id": "pg-web", "application_name": "myapp", "process_type": "web"} {
		if vcap[k] != v {
			t.Errorf("VCAP_APPLICATION.%s = %v, want %v", k, vcap[k], v)
		}
	}
	if lim, _ := vcap["limits"].(map[string]any); lim["mem"] != 128.0 || lim["disk"] != 256.0 {
		t.Errorf("VCAP_APPLICATION.limits = %v", vcap["limits"])
	}
	if uris, _ := vcap["application_uris"].([]any); len(uris) != 1 || uris[0] != "pg-web.apps.localhost" {
		t.Errorf("VCAP_APPLICATION.application_uris = %v", vcap["application_uris"])
	}
	if _, err := os.Stat(env["CF_INSTANCE_CERT"]); err != nil {
		t.Error(err)
	}

	// The state the auctioneer reads.
	st, err := c.client.State(ctxT(t), c.presence())
	must(t, err)
	if len(st.LRPs) != 1 || st.LRPs[0].InstanceGUID != guid || st.LRPs[0].State != StateRunning || st.StartingContainers != 0 ||
		st.AvailableResources.MemoryMB != 1024-128-DefaultProxyMemoryMB || st.AvailableResources.Containers != 9 ||
		st.TotalResources != c.cfg.Capacity || st.CellID != "cell-1" || st.Zone != "z1" {
		t.Fatalf("state %+v", st)
	}
	// The app's output and the cell's messages reached AppLogs.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !c.logs.has("APP/PROC/WEB", "listening on "+hp) || !c.logs.has("CELL", "Container became healthy") {
			return fmt.Errorf("logs: %+v", c.logs.lines)
		}
		return nil
	})
}

func TestCrashIsReportedAndTheContainerDestroyed(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", nil)
	c.cleanupAll()
	f.desire(desiredLRP("pg-crash", 1))
	c.perform(work("pg-crash", 0))
	a := c.waitState("pg-crash", 0, bbs.StateRunning)
	get(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/crash", a.Ports[0].HostPort))
	c.waitState("pg-crash", 0, bbs.StateCrashed)
	if r := f.crashReasons(); len(r) != 1 || r[0] != "APP/PROC/WEB: Exited with status 3" {
		t.Fatalf("crash reasons %q", r)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		infos, _ := c.garden.Containers()
		if st := c.rep.State(); len(infos) != 0 || len(st.LRPs) != 0 {
			return fmt.Errorf("containers %d, state %+v", len(infos), st.LRPs)
		}
		return nil
	})
	if f.callsMatching("remove") != nil {
		t.Fatalf("a crash removed the ActualLRP: %v", f.callsMatching(""))
	}
}

func TestStopInvalidatesTheIdentityThenTermsAndRemoves(t *testing.T) {
	f := newFakeBBS()
	// The sidecar polls its certificate every second: wait long enough for
	// it to take the invalid one.
	c := startCell(t, f, "", func(cfg *Config) { cfg.ProxyReloadWait = 1500 * time.Millisecond })
	c.cleanupAll()
	f.desire(desiredLRP("pg-stop", 1))
	c.perform(work("pg-stop", 0))
	a := c.waitState("pg-stop", 0, bbs.StateRunning)
	url := fmt.Sprintf("https://127.0.0.1:%d/", a.Ports[0].HostTLSProxyPort)
	get(t, c.instanceTLS(a.InstanceGUID), url)

	err := c.client.StopLRPInstance(ctxT(t), c.presence(), a.ActualLRPKey, a.ActualLRPInstanceKey)
	must(t, err)
	// First the routers lose trust, while the app still runs...
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		resp, err := c.instanceTLS(a.InstanceGUID).Get(url)
		if err == nil {
			resp.Body.Close()
		}
		var verr *tls.CertificateVerificationError
		if err == nil || !errors.As(err, &verr) {
			return fmt.Errorf("the identity is still valid: %v", err)
		}
		return nil
	})
	if _, ok := f.get("pg-stop", 0); !ok {
		t.Fatal("removed before the proxy reload wait")
	}
	// ...then SIGTERM, destroy, remove.
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if _, ok := f.get("pg-stop", 0); ok {
			return errors.New("not removed yet")
		}
		return nil
	})
	if !c.logs.has("APP/PROC/WEB", "app received SIGTERM") {
		t.Errorf("the app was not sent SIGTERM: %+v", c.logs.lines)
	}
	if infos, _ := c.garden.Containers(); len(infos) != 0 {
		t.Fatalf("containers left: %+v", infos)
	}
	if f.crashReasons() != nil {
		t.Fatalf("a stop crashed: %v", f.crashReasons())
	}
	// Stopping what is not there is an error the BBS can recognise.
	err = c.client.StopLRPInstance(ctxT(t), c.presence(), a.ActualLRPKey, a.ActualLRPInstanceKey)
	if !errors.Is(err, ErrInstanceNotFound) || !strings.Contains(err.Error(), "cell-1") {
		t.Fatalf("second stop: %v", err)
	}
}

func TestStopKillsAnAppThatIgnoresSIGTERM(t *testing.T) {
	f := newFakeBBS()
	grace := 400 * time.Millisecond
	c := startCell(t, f, "", func(cfg *Config) { cfg.GracePeriod = grace })
	c.cleanupAll()
	f.desire(desiredLRP("pg-stubborn", 1, bbs.EnvironmentVariable{Name: "IGNORE_TERM", Value: "1"}))
	c.perform(work("pg-stubborn", 0))
	a := c.waitState("pg-stubborn", 0, bbs.StateRunning)
	info, err := c.garden.Info(a.InstanceGUID)
	must(t, err)
	start := time.Now()
	if !c.rep.StopLRPInstance("pg-stubborn", a.InstanceGUID) {
		t.Fatal("instance unknown")
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if _, ok := f.get("pg-stubborn", 0); ok {
			return errors.New("not removed yet")
		}
		return nil
	})
	if d := time.Since(start); d < grace {
		t.Fatalf("removed after %v, before the %v grace period", d, grace)
	}
	var pids []int
	for _, p := range info.Processes {
		pids = append(pids, p.PID)
	}
	assertNothingLeft(t, c.garden, pids, nil)
}

func TestWorkBeyondCapacityIsReturned(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", func(cfg *Config) {
		cfg.Capacity = bbs.CellCapacity{MemoryMB: 400, DiskMB: 1000, Containers: 5}
	})
	c.cleanupAll()
	// No ActualLRPs exist, so the claims fail and nothing starts: only the
	// accounting is under test. 128+32 MB each: two fit in 400.
	resp, err := c.client.Perform(ctxT(t), c.presence(), work("pg-big", 0, 1, 2))
	must(t, err)
	if len(resp.Failed) != 1 || resp.Failed[0].Index != 2 {
		t.Fatalf("failed %+v", resp.Failed)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := len(f.callsMatching("claim pg-big")); n != 2 {
			return fmt.Errorf("%d claims", n)
		}
		if st := c.rep.State(); len(st.LRPs) != 0 || st.AvailableResources.MemoryMB != 400 {
			return fmt.Errorf("state %+v", st)
		}
		return nil
	})
	// Too many containers.
	c2 := startCell(t, f, "", func(cfg *Config) { cfg.Capacity.Containers = 1; cfg.CellID = "cell-2" })
	c2.cleanupAll()
	resp, err = c2.client.Perform(ctxT(t), &bbs.CellPresence{CellID: "cell-2", RepURL: c2.rep.URL()}, work("pg-many", 0, 1))
	must(t, err)
	if len(resp.Failed) != 1 {
		t.Fatalf("failed %+v", resp.Failed)
	}
}

func TestUnhealthyInstanceCrashesAfterItsStartTimeout(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", nil)
	c.cleanupAll()
	d := desiredLRP("pg-sick", 1, bbs.EnvironmentVariable{Name: "HEALTH_STATUS", Value: "500"})
	d.StartTimeoutMs = 500
	f.desire(d)
	c.perform(work("pg-sick", 0))
	c.waitState("pg-sick", 0, bbs.StateCrashed)
	r := f.crashReasons()
	if len(r) != 1 || !strings.HasPrefix(r[0], "Instance never healthy after 500ms: ") || !strings.Contains(r[0], "status code 500") {
		t.Fatalf("reasons %q", r)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if infos, _ := c.garden.Containers(); len(infos) != 0 {
			return fmt.Errorf("%d containers", len(infos))
		}
		return nil
	})
}

func TestWithoutRouteIntegrityThereIsNoSidecar(t *testing.T) {
	f := newFakeBBS()
	off := false
	c := startCell(t, f, "", func(cfg *Config) { cfg.RouteIntegrity = &off })
	c.cleanupAll()
	d := desiredLRP("pg-plain", 1)
	d.CheckDefinition = nil // the default: a port check
	f.desire(d)
	c.perform(work("pg-plain", 0))
	a := c.waitState("pg-plain", 0, bbs.StateRunning)
	if len(a.Ports) != 1 || a.Ports[0].ContainerTLSProxyPort != 0 || a.Ports[0].HostTLSProxyPort != 0 || a.Ports[0].HostPort == 0 {
		t.Fatalf("ports %+v", a.Ports)
	}
	info, err := c.garden.Info(a.InstanceGUID)
	must(t, err)
	if len(info.Processes) != 1 || info.Processes[0].ID != ProcessApp {
		t.Fatalf("processes %+v", info.Processes)
	}
	if st := c.rep.State(); st.AvailableResources.MemoryMB != 1024-128 {
		t.Fatalf("no proxy memory without a proxy: %+v", st.AvailableResources)
	}
}

func TestRestartedRepAdoptsDestroysAndCrashes(t *testing.T) {
	f := newFakeBBS()
	root := t.TempDir()
	c1 := startCell(t, f, root, nil)
	f.desire(desiredLRP("pg-keep", 1))
	c1.perform(work("pg-keep", 0))
	a := c1.waitState("pg-keep", 0, bbs.StateRunning)
	before := get(t, c1.instanceTLS(a.InstanceGUID), fmt.Sprintf("https://127.0.0.1:%d/", a.Ports[0].HostTLSProxyPort))
	must(t, c1.rep.Stop(ctxT(t)))

	// While the rep is away: a container nobody knows, and an ActualLRP of
	// this cell whose container is gone.
	_, err := c1.garden.Create(ctxT(t), garden.ContainerSpec{Handle: "stray-container", NetIn: []garden.NetIn{{ContainerPort: 8080}}})
	must(t, err)
	_, err = c1.garden.Run(ctxT(t), "stray-container", garden.ProcessSpec{Path: "/bin/sh", Args: []string{"-c", "exec sleep 60"}})
	must(t, err)
	f.desire(desiredLRP("pg-ghost", 1))
	f.put(&bbs.ActualLRP{ActualLRPKey: bbs.ActualLRPKey{ProcessGUID: "pg-ghost", Index: 0, Domain: bbs.DomainCFApps},
		ActualLRPInstanceKey: bbs.ActualLRPInstanceKey{InstanceGUID: "ghost-guid", CellID: "cell-1"}, State: bbs.StateRunning})

	c2 := startCell(t, f, root, nil)
	c2.cleanupAll()
	// Adopted: the same process answers, and it is not restarted.
	after := get(t, c2.instanceTLS(a.InstanceGUID), fmt.Sprintf("https://127.0.0.1:%d/", a.Ports[0].HostTLSProxyPort))
	if after != before {
		t.Fatalf("before the restart %q, after %q", before, after)
	}
	if n := len(f.callsMatching("claim pg-keep")); n != 1 {
		t.Fatalf("claimed %d times", n)
	}
	if st := c2.rep.State(); len(st.LRPs) != 1 || st.LRPs[0].InstanceGUID != a.InstanceGUID || st.LRPs[0].State != StateRunning {
		t.Fatalf("state %+v", st.LRPs)
	}
	// Destroyed and crashed, at start.
	if _, err := c2.garden.Info("stray-container"); !errors.Is(err, garden.ErrNotFound) {
		t.Fatalf("stray container: %v", err)
	}
	if g, _ := f.get("pg-ghost", 0); g.State != bbs.StateCrashed || g.CrashReason != ReasonContainerMissing {
		t.Fatalf("ghost %+v", g)
	}
	// The adopted instance is monitored: its crash is reported.
	get(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/crash", a.Ports[0].HostPort))
	c2.waitState("pg-keep", 0, bbs.StateCrashed)
	k, _ := f.get("pg-keep", 0)
	if !strings.HasPrefix(k.CrashReason, "APP/PROC/WEB: Exited") {
		t.Fatalf("reason %q", k.CrashReason)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if infos, _ := c2.garden.Containers(); len(infos) != 0 {
			return fmt.Errorf("%d containers", len(infos))
		}
		return nil
	})
}

func TestReconcileStopsAnInstanceWhoseActualLRPIsGone(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", nil)
	c.cleanupAll()
	f.desire(desiredLRP("pg-gone", 1))
	c.perform(work("pg-gone", 0))
	a := c.waitState("pg-gone", 0, bbs.StateRunning)
	f.mu.Lock()
	delete(f.actual, akey("pg-gone", 0))
	f.mu.Unlock()
	must(t, c.rep.reconcile(ctxT(t)))
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if _, err := c.garden.Info(a.InstanceGUID); !errors.Is(err, garden.ErrNotFound) {
			return fmt.Errorf("container: %v", err)
		}
		return nil
	})
	if len(f.callsMatching("remove")) != 0 || f.crashReasons() != nil {
		t.Fatalf("calls %v", f.callsMatching(""))
	}
}

func TestHeartbeatReachesTheBBS(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", nil)
	c.cleanupAll()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if _, n := f.lastHeartbeat(); n < 3 {
			return fmt.Errorf("%d heartbeats", n)
		}
		return nil
	})
	p, _ := f.lastHeartbeat()
	want := bbs.CellPresence{CellID: "cell-1", RepAddress: c.rep.Addr(), RepURL: "https://" + c.rep.Addr(), Zone: "z1",
		Capacity: c.cfg.Capacity, Address: "127.0.0.1"}
	if p != want {
		t.Fatalf("presence %+v, want %+v", p, want)
	}
	must(t, p.Validate())
}

func TestAPIRequiresAClientCertificateAndBoundsBodies(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", nil)
	c.cleanupAll()
	anon := NewClient(&tls.Config{RootCAs: c.ca.Pool()})
	if _, err := anon.State(ctxT(t), c.presence()); err == nil || !strings.Contains(err.Error(), "cannot reach the rep of cell cell-1") {
		t.Fatalf("without a client certificate: %v", err)
	}
	// A body over the limit.
	big := Work{}
	for i := 0; i < MaxRequestBytes/100; i++ {
		big.LRPs = append(big.LRPs, LRP{ProcessGUID: strings.Repeat("x", 40)})
	}
	_, err := c.client.Perform(ctxT(t), c.presence(), big)
	if err == nil || !strings.Contains(err.Error(), "413") {
		t.Fatalf("big body: %v", err)
	}
	if _, err := c.client.State(ctxT(t), &bbs.CellPresence{CellID: "nowhere", RepURL: "https://127.0.0.1:1"}); err == nil ||
		!strings.Contains(err.Error(), "cannot reach the rep of cell nowhere at https://127.0.0.1:1") {
		t.Fatalf("unreachable: %v", err)
	}
}

func TestInstanceIdentityIsRenewed(t *testing.T) {
	f := newFakeBBS()
	// identity backdates certificates by 5 minutes, so with a 1s validity
	// identity.RenewAt is already past: the rep renews after its 1s floor.
	c := startCell(t, f, "", func(cfg *Config) { cfg.InstanceCertValidity = time.Second })
	c.cleanupAll()
	f.desire(desiredLRP("pg-renew", 1))
	c.perform(work("pg-renew", 0))
	a := c.waitState("pg-renew", 0, bbs.StateRunning)
	info, err := c.garden.Info(a.InstanceGUID)
	must(t, err)
	certFile := filepath.Join(info.Dir, CredentialsDir, "instance.crt")
	first, err := os.ReadFile(certFile)
	must(t, err)
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		now, err := os.ReadFile(certFile)
		if err != nil {
			return err
		}
		if string(now) == string(first) {
			return errors.New("not renewed yet")
		}
		return nil
	})
}

func TestRestartedRepFinishesStartingAClaimedInstance(t *testing.T) {
	f := newFakeBBS()
	root := t.TempDir()
	c1 := startCell(t, f, root, nil)
	// Never healthy under the first rep...
	d := desiredLRP("pg-slow", 1, bbs.EnvironmentVariable{Name: "HEALTH_STATUS", Value: "503"})
	f.desire(d)
	c1.perform(work("pg-slow", 0))
	a := c1.waitState("pg-slow", 0, bbs.StateClaimed)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := c1.rep.State(); len(st.LRPs) != 1 || st.StartingContainers != 1 {
			return fmt.Errorf("state %+v", st)
		}
		if info, err := c1.garden.Info(a.InstanceGUID); err != nil || len(info.Processes) != 2 {
			return fmt.Errorf("container %+v %v", info.Processes, err)
		}
		return nil
	})
	must(t, c1.rep.Stop(ctxT(t)))
	// ...whose check the next rep finds passing: it starts the instance it adopts.
	d.CheckDefinition = &bbs.CheckDefinition{Checks: []bbs.Check{{TCPCheck: &bbs.TCPCheck{Port: 8080}}}}
	f.desire(d)
	f.put(&a)
	c2 := startCell(t, f, root, nil)
	c2.cleanupAll()
	r := c2.waitState("pg-slow", 0, bbs.StateRunning)
	if r.InstanceGUID != a.InstanceGUID || len(f.callsMatching("claim pg-slow")) != 1 {
		t.Fatalf("running %+v after %v", r.ActualLRPInstanceKey, f.callsMatching(""))
	}
}

// TestShutdownStopsLocallyWithoutTellingTheBBS: when the whole foundation
// stops, instances go at once (no sidecar reload wait) and their ActualLRPs
// stay for the next rep of the cell to reconcile, instead of being removed
// and re-placed on cells that are also going away.
func TestShutdownStopsLocallyWithoutTellingTheBBS(t *testing.T) {
	f := newFakeBBS()
	c := startCell(t, f, "", func(cfg *Config) { cfg.ProxyReloadWait = time.Hour })
	c.cleanupAll()
	f.desire(desiredLRP("pg-shutdown", 1))
	c.perform(work("pg-shutdown", 0))
	c.waitState("pg-shutdown", 0, bbs.StateRunning)
	done := make(chan error, 1)
	go func() { done <- c.rep.Shutdown(ctxT(t)) }()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown waited for the sidecar reload wait (1 h)")
	}
	if infos, _ := c.garden.Containers(); len(infos) != 0 {
		t.Fatalf("containers left: %+v", infos)
	}
	if f.callsMatching("remove") != nil || f.crashReasons() != nil {
		t.Fatalf("Shutdown told the BBS: %v", f.callsMatching(""))
	}
	if a, ok := f.get("pg-shutdown", 0); !ok || a.State != bbs.StateRunning {
		t.Fatalf("the ActualLRP changed: %+v %v", a, ok)
	}
}
