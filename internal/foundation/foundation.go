// Package foundation is minicf's stand-in for BOSH deploying Cloud Foundry:
// it builds the whole foundation in one process (embedded NATS, the BBS on
// SQLite, the Cloud Controller, the auctioneer, the cells, a route emitter
// per cell and the router), starts the parts in order, each only after the
// one before is ready, and stops them in reverse. `minicf up` and `minicf
// demo` run it.
package foundation

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minicf/minicf/internal/auctioneer"
	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc"
	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/minicf/minicf/internal/cli"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/rep"
	"github.com/minicf/minicf/internal/routeemitter"
	"github.com/minicf/minicf/internal/router"
	"github.com/minicf/minicf/internal/supervisor"
	"github.com/minicf/minicf/internal/trace"
)

// Config is the foundation's shape. Zero values take the defaults of
// DESIGN.md: 127.0.0.1 and Cloud Foundry's ports, two cells, auto mode.
type Config struct {
	Home           string // state: databases, CA, token key, CLI config
	Mode           string // namespace, process or auto
	Cells          int
	NetworkRange   string // namespace mode: the foundation's /16
	Prefix         string // namespace mode: name prefix of namespaces and links
	RouteIntegrity *bool  // nil: on
	Domain         string // the shared app domain

	NATSListen, BBSListen, AuctioneerListen, CCListen, CCInternalListen, RouterListen, RouterStatus string
	// TraceListen is the trace API's address (default 127.0.0.1:8083);
	// TraceOff records no trace and serves no API.
	TraceListen string

	// Timers, shortened by tests; zero values take Cloud Foundry's.
	ConvergeInterval, CellHeartbeat, GracePeriod, ProxyReloadWait, CCSyncInterval time.Duration
	RouterStartDelay                                                              time.Duration

	// AccessLog receives the router's access log (nil: none).
	AccessLog io.Writer
	Logger    *slog.Logger
}

func (c *Config) defaults() error {
	if c.Home == "" {
		return errors.New("foundation: Home is required")
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Mode, "auto")
	def(&c.NetworkRange, garden.DefaultNetworkRange)
	def(&c.Prefix, garden.DefaultPrefix)
	def(&c.Domain, "apps.localhost")
	def(&c.NATSListen, "127.0.0.1:4222")
	def(&c.BBSListen, "127.0.0.1:8889")
	def(&c.AuctioneerListen, "127.0.0.1:9016")
	def(&c.CCListen, "127.0.0.1:9022")
	def(&c.CCInternalListen, "127.0.0.1:9023")
	def(&c.RouterListen, "127.0.0.1:8081")
	def(&c.RouterStatus, "127.0.0.1:8082")
	def(&c.TraceListen, trace.DefaultListen)
	if c.Cells <= 0 {
		c.Cells = 2
	}
	// A port 0 is resolved to a free port now: the components need each
	// other's addresses before they start (the BBS its auctioneer's).
	listeners := []*string{&c.NATSListen, &c.BBSListen, &c.AuctioneerListen, &c.CCListen, &c.CCInternalListen, &c.RouterListen, &c.RouterStatus}
	if c.TraceListen != TraceOff {
		listeners = append(listeners, &c.TraceListen)
	}
	for _, p := range listeners {
		addr, err := resolvePort(*p)
		if err != nil {
			return err
		}
		*p = addr
	}
	if c.RouteIntegrity == nil {
		on := true
		c.RouteIntegrity = &on
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// Info is what a person needs to use the foundation.
type Info struct {
	API, Router, RouterStatus, Domain, NATSURL, NATSUser, NATSPassword, Mode, Home string
	Cells                                                                          []string
	// Trace is the trace API's URL ("" when tracing is off).
	Trace string
	// AdminUser logs in with AdminPassword (cf auth admin PASSWORD); the
	// client AdminClient with AdminClientSecret (cf auth ... --client-credentials).
	// Both are generated once and kept in Home (AdminPasswordFile,
	// AdminClientSecretFile, 0600).
	AdminUser, AdminPassword, AdminClient, AdminClientSecret string
}

// The admin user and client of the token endpoint, and the files under
// Home that keep their generated secrets.
const (
	AdminUser             = "admin"
	AdminClient           = "minicf-admin"
	AdminPasswordFile     = "admin-password"
	AdminClientSecretFile = "admin-client-secret"
)

// Foundation is the running foundation.
type Foundation struct {
	cfg   Config
	log   *slog.Logger
	group *supervisor.Group
	info  Info

	ca       *identity.CA
	nats     *mbus.Server
	natsPass string
	buses    []*mbus.Client
	store    *bbs.SQLStore
	bbsSvc   *bbs.Service
	bbsSrv   *bbs.Server
	cc       *cc.CC
	router   *router.Router
	cells    []*Cell
	network  *garden.Network
	trace    *tracing // nil when tracing is off (trace.go)
}

// New prepares a foundation; Start runs it.
func New(cfg Config) (*Foundation, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	mode, why, err := ResolveMode(cfg.Mode)
	if err != nil {
		return nil, err
	}
	if why != "" {
		cfg.Logger.Info("foundation-mode-selected", "mode", mode, "reason", why)
	}
	cfg.Mode = mode
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", cfg.Home, err)
	}
	return &Foundation{cfg: cfg, log: cfg.Logger}, nil
}

// Start brings the foundation up in DESIGN.md's order; progress gets each
// component's name as it becomes ready. When Start returns nil a route can
// propagate: the last step proves it with a probe route through the router.
func (f *Foundation) Start(ctx context.Context, progress func(string)) error {
	cfg := f.cfg
	var err error
	if f.ca, err = identity.LoadOrCreate(filepath.Join(cfg.Home, "identity")); err != nil {
		return err
	}
	if f.natsPass, err = secret(filepath.Join(cfg.Home, "nats-password")); err != nil {
		return err
	}
	if cfg.Mode == garden.ModeNamespace {
		if f.network, err = garden.NewNetwork(cfg.Prefix, cfg.NetworkRange); err != nil {
			return err
		}
	}
	bbsServerTLS, bbsClientTLS, err := f.componentTLS("bbs", cfg.BBSListen)
	if err != nil {
		return err
	}
	aucServerTLS, aucClientTLS, err := f.componentTLS("auctioneer", cfg.AuctioneerListen)
	if err != nil {
		return err
	}
	bbsURL := "https://" + cfg.BBSListen
	if f.tracingOn() {
		f.trace = &tracing{recorder: trace.NewRecorder(0)}
		f.trace.emitters = trace.NewNATS(&f.trace.bus, 0)
	}
	f.group = supervisor.New(f.log,
		supervisor.Func("nats", f.startNATS, f.stopNATS),
		supervisor.Func("bbs", func(ctx context.Context) error { return f.startBBS(ctx, bbsServerTLS, bbsClientTLS) }, f.stopBBS),
		supervisor.Func("cloud controller", func(ctx context.Context) error { return f.startCC(ctx, bbsURL) }, f.stopCC),
	)
	var auc *auctioneer.Auctioneer
	f.group.Add(supervisor.Func("auctioneer", func(ctx context.Context) error {
		a, err := auctioneer.New(auctioneer.Config{Listen: cfg.AuctioneerListen, Trace: f.tracer("auctioneer"), Logger: f.log.With("component", "auctioneer")},
			bbs.NewClient(bbsURL, aucClientTLS), rep.NewClient(aucClientTLS), aucServerTLS)
		if err != nil {
			return err
		}
		auc = a
		return a.Start(ctx)
	}, func(ctx context.Context) error {
		if auc == nil {
			return nil
		}
		return auc.Stop(ctx)
	}))
	if f.network != nil {
		f.group.Add(supervisor.Func("foundation network", func(ctx context.Context) error {
			host, err := garden.ReadHostNetwork()
			if err != nil {
				return err
			}
			return f.network.CheckRange(host)
		}, nil))
	}
	for i := 1; i <= cfg.Cells; i++ {
		cell, err := f.newCell(i, bbsURL)
		if err != nil {
			return err
		}
		f.cells = append(f.cells, cell)
		f.group.Add(cell)
	}
	for _, cell := range f.cells {
		f.group.Add(f.emitter(cell.cfg.ID, bbsURL))
	}
	f.group.Add(supervisor.Func("router", f.startRouter, f.stopRouter))
	if f.trace != nil {
		f.group.Add(f.traceAPI())
	}
	f.group.Add(supervisor.Func("route propagation probe", f.probe, nil))
	if err := f.group.Start(ctx, func(name string, took time.Duration) {
		if progress != nil {
			progress(fmt.Sprintf("%-24s ready in %v", name, took.Round(time.Millisecond)))
		}
	}); err != nil {
		return err
	}
	return f.writeCLIConfig(ctx)
}

// Stop stops everything in reverse order.
func (f *Foundation) Stop(ctx context.Context) error {
	if f.group == nil {
		return nil
	}
	return f.group.Stop(ctx)
}

// Info describes the running foundation.
func (f *Foundation) Info() Info { return f.info }

func (f *Foundation) componentTLS(name, listen string) (server, client *tls.Config, err error) {
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" && h != "0.0.0.0" {
		hosts = append(hosts, h)
	}
	cred, err := f.ca.IssueComponent(name, hosts, 0)
	if err != nil {
		return nil, nil, err
	}
	if server, err = f.ca.ServerTLS(cred); err != nil {
		return nil, nil, err
	}
	client, err = f.ca.ClientTLS(cred)
	return server, client, err
}

func (f *Foundation) bus(name string) (*mbus.Client, error) {
	c, err := mbus.Connect(mbus.ClientConfig{URLs: []string{f.nats.URL()}, User: "nats", Password: f.natsPass,
		Name: "minicf-" + name, Logger: f.log.With("component", name)})
	if err != nil {
		return nil, err
	}
	f.buses = append(f.buses, c)
	return c, nil
}

func (f *Foundation) startNATS(context.Context) error {
	host, port, err := splitHostPort(f.cfg.NATSListen)
	if err != nil {
		return fmt.Errorf("NATS listen address: %w", err)
	}
	f.nats, err = mbus.NewServer(mbus.ServerConfig{Host: host, Port: port, User: "nats", Password: f.natsPass, Logger: f.log.With("component", "nats")})
	if err != nil {
		return err
	}
	if err := f.nats.Start(); err != nil {
		return err
	}
	f.info.NATSURL, f.info.NATSUser, f.info.NATSPassword = f.nats.URL(), "nats", f.natsPass
	return f.connectTrace()
}

func (f *Foundation) stopNATS(context.Context) error {
	f.disconnectTrace()
	for _, b := range f.buses {
		b.Close()
	}
	f.buses = nil
	if f.nats != nil {
		f.nats.Stop()
	}
	return nil
}

func (f *Foundation) startBBS(ctx context.Context, serverTLS, clientTLS *tls.Config) error {
	var err error
	f.store, err = bbs.OpenSQLStore(ctx, "sqlite://"+filepath.Join(f.cfg.Home, "bbs.db"))
	if err != nil {
		return err
	}
	f.bbsSvc = bbs.NewService(bbs.Config{ConvergeInterval: f.cfg.ConvergeInterval, TaskCallbackTLS: clientTLS, Trace: f.tracer("bbs"), Logger: f.log.With("component", "bbs")},
		f.store, auctioneer.NewClient("https://"+f.cfg.AuctioneerListen, clientTLS), rep.NewClient(clientTLS))
	f.bbsSrv = bbs.NewServer(bbs.ServerConfig{Listen: f.cfg.BBSListen, TLS: serverTLS, Logger: f.log.With("component", "bbs")}, f.bbsSvc)
	f.bbsSvc.Start()
	if err := f.bbsSrv.Start(); err != nil {
		f.bbsSvc.Stop()
		f.store.Close()
		return err
	}
	return nil
}

func (f *Foundation) stopBBS(ctx context.Context) error {
	var errs []error
	if f.bbsSrv != nil {
		// Clients' pooled connections that never sent a request would
		// hold a graceful shutdown for seconds; everyone is gone by now.
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		f.bbsSrv.Stop(sctx)
		cancel()
	}
	if f.bbsSvc != nil {
		f.bbsSvc.Stop()
	}
	if f.store != nil {
		errs = append(errs, f.store.Close())
	}
	return errors.Join(errs...)
}

func (f *Foundation) startCC(ctx context.Context, bbsURL string) error {
	_, clientTLS, err := f.componentTLS("cloud-controller", f.cfg.CCListen)
	if err != nil {
		return err
	}
	bus, err := f.bus("cloud-controller")
	if err != nil {
		return err
	}
	adminPassword, err := secret(filepath.Join(f.cfg.Home, AdminPasswordFile))
	if err != nil {
		return err
	}
	clientSecret, err := secret(filepath.Join(f.cfg.Home, AdminClientSecretFile))
	if err != nil {
		return err
	}
	f.info.AdminUser, f.info.AdminPassword = AdminUser, adminPassword
	f.info.AdminClient, f.info.AdminClientSecret = AdminClient, clientSecret
	f.cc, err = cc.New(cc.Config{Listen: f.cfg.CCListen, InternalListen: f.cfg.CCInternalListen, StateDir: filepath.Join(f.cfg.Home, "cc"),
		SharedDomain: f.cfg.Domain, SyncInterval: f.cfg.CCSyncInterval, DefaultAppMemoryMB: 256, DefaultAppDiskMB: 1024, Trace: f.tracer("cc"),
		GoCache: hostGoCache(),
		Users:   map[string]string{AdminUser: adminPassword}, Clients: map[string]string{AdminClient: clientSecret},
		Logger: f.log.With("component", "cc")},
		bbs.NewClient(bbsURL, clientTLS), bus, f.ca)
	if err != nil {
		return err
	}
	if err := f.cc.Start(ctx); err != nil {
		return err
	}
	f.info.API = f.cc.URL()
	f.info.Domain = f.cfg.Domain
	return nil
}

func (f *Foundation) stopCC(ctx context.Context) error {
	if f.cc == nil {
		return nil
	}
	return f.cc.Stop(ctx)
}

func (f *Foundation) newCell(i int, bbsURL string) (*Cell, error) {
	id := fmt.Sprintf("cell-%d", i)
	serverTLS, clientTLS, err := f.componentTLS("rep-"+id, "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg := CellConfig{
		ID: id, Index: i, Listen: "127.0.0.1:0", Root: filepath.Join(f.cfg.Home, "cells", id), Mode: f.cfg.Mode,
		Network: f.network, PortRangeStart: 61000 + (i-1)*1000*boolInt(f.cfg.Mode == garden.ModeProcess),
		Capacity:       bbs.CellCapacity{MemoryMB: 8192, DiskMB: 32768, Containers: 100},
		RouteIntegrity: *f.cfg.RouteIntegrity, HeartbeatInterval: f.cfg.CellHeartbeat, GracePeriod: f.cfg.GracePeriod,
		ProxyReloadWait: f.cfg.ProxyReloadWait, StopInstances: true, Quiet: true,
		GardenTrace: f.tracer("garden"), RepTrace: f.tracer("rep"),
		BBS: bbs.NewClient(bbsURL, clientTLS), CA: f.ca, ServerTLS: serverTLS, ClientTLS: clientTLS,
		Logger: f.log.With("component", "rep", "cell_id", id),
	}
	cfg.AppLogs = func(l mbus.AppLog) {
		if len(f.buses) == 0 {
			return
		}
		b, _ := json.Marshal(l)
		f.buses[0].Publish(mbus.SubjectAppLogsPrefix+l.AppID, b)
	}
	f.info.Cells = append(f.info.Cells, id)
	return NewCell(cfg), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// emitter is a cell's local route emitter, as cf-deployment runs one on
// every cell.
func (f *Foundation) emitter(cellID, bbsURL string) supervisor.Component {
	var e *routeemitter.Emitter
	return supervisor.Func("route emitter "+cellID, func(ctx context.Context) error {
		_, clientTLS, err := f.componentTLS("route-emitter-"+cellID, "127.0.0.1:0")
		if err != nil {
			return err
		}
		bus, err := f.bus("route-emitter-" + cellID)
		if err != nil {
			return err
		}
		e, err = routeemitter.New(routeemitter.Config{CellID: cellID, Bus: bus, BBS: bbs.NewClient(bbsURL, clientTLS), Trace: f.tracer("route-emitter"),
			Logger: f.log.With("component", "route-emitter", "cell_id", cellID)})
		if err != nil {
			return err
		}
		return e.Start(ctx)
	}, func(ctx context.Context) error {
		if e == nil {
			return nil
		}
		return e.Stop(ctx)
	})
}

func (f *Foundation) startRouter(ctx context.Context) error {
	bus, err := f.bus("router")
	if err != nil {
		return err
	}
	rc := router.DefaultFileConfig()
	rc.Listen, rc.Status.Listen = f.cfg.RouterListen, f.cfg.RouterStatus
	rc.StartResponseDelay = f.cfg.RouterStartDelay
	rc.Backends.CAFile = filepath.Join(f.cfg.Home, "identity", identity.CACertFile)
	backendTLS, err := rc.BackendTLS()
	if err != nil {
		return err
	}
	f.router, err = router.New(bus, router.Options{Config: rc, BackendTLS: backendTLS, AccessLog: f.cfg.AccessLog,
		AppLogs: func(app string, batch []byte) { bus.Publish(mbus.SubjectAppLogsPrefix+app, batch) },
		Dropped: bus.Dropped, Trace: f.tracer("router"), Logger: f.log.With("component", "router")})
	if err != nil {
		return err
	}
	if err := f.router.Start(ctx); err != nil {
		return err
	}
	f.info.Router, f.info.RouterStatus = f.router.Addr(), f.router.StatusAddr()
	f.info.Mode, f.info.Home = f.cfg.Mode, f.cfg.Home
	return nil
}

func (f *Foundation) stopRouter(ctx context.Context) error {
	if f.router == nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	f.router.Drain(dctx, 0)
	return f.router.Stop(ctx)
}

// probe proves that a route propagates: a router.register for a probe
// route on the bus reaches the router, whose proxy then answers from a
// probe backend; the route is unregistered again.
func (f *Foundation) probe(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "probe")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	host := "minicf-probe-" + randomHex(4) + ".localhost"
	msg, _ := json.Marshal(mbus.RegistryMessage{Host: "127.0.0.1", Port: uint16(port), URIs: []string{host},
		PrivateInstanceID: "probe", Tags: map[string]string{"component": "minicf-up"}})
	bus := f.buses[0]
	defer bus.Publish(mbus.SubjectUnregister, msg)
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := bus.Publish(mbus.SubjectRegister, msg); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+f.router.Addr()+"/", nil)
		req.Host = host
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("a probe route registered on NATS never became reachable through the router")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// writeCLIConfig gives the CLI an admin token and the default target.
func (f *Foundation) writeCLIConfig(ctx context.Context) error {
	token, err := f.cc.IssueToken("admin", 30*24*time.Hour)
	if err != nil {
		return err
	}
	cfg := &cli.Config{API: f.cc.URL(), AccessToken: token, Router: f.router.Addr(), Trace: f.info.Trace}
	get := func(path string, v any) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", f.cc.URL()+path, nil)
		req.Header.Set("Authorization", "bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
	}
	var orgs ccapi.List[ccapi.Organization]
	if err := get("/v3/organizations?names=minicf", &orgs); err != nil || len(orgs.Resources) == 0 {
		return fmt.Errorf("the default org is missing from the Cloud Controller: %v", err)
	}
	var spaces ccapi.List[ccapi.Space]
	if err := get("/v3/spaces?names=dev&organization_guids="+url.QueryEscape(orgs.Resources[0].GUID), &spaces); err != nil || len(spaces.Resources) == 0 {
		return fmt.Errorf("the default space is missing from the Cloud Controller: %v", err)
	}
	cfg.OrganizationGUID, cfg.OrganizationName = orgs.Resources[0].GUID, orgs.Resources[0].Name
	cfg.SpaceGUID, cfg.SpaceName = spaces.Resources[0].GUID, spaces.Resources[0].Name
	return cli.SaveConfig(f.cfg.Home, cfg)
}

// hostGoCache is the host's Go build cache, if it has one: staging there
// reuses the compiled standard library.
func hostGoCache() string {
	dir := os.Getenv("GOCACHE")
	if dir == "" {
		if d, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(d, "go-build")
		}
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return ""
	}
	return dir
}

// secret reads a generated secret from path, creating it (0600) once.
func secret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), nil
	}
	s := randomHex(16)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cannot store a secret in %s: %w", path, err)
	}
	return s, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// resolvePort turns host:0 into host:<a port free right now>.
func resolvePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port", addr)
	}
	if port != "0" {
		return addr, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("no free port on %s: %w", host, err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", addr)
	}
	var port int
	if _, err := fmt.Sscan(p, &port); err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q has no valid port", addr)
	}
	return host, port, nil
}
