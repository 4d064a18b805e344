// Package cc is minicf's Cloud Controller: the v3 API (orgs, spaces,
// domains, apps, processes, packages, builds, droplets, routes and their
// destinations, jobs, apply_manifest) with Cloud Controller's resource
// shapes, paths and error texts (see internal/cc/ccapi), so that the stock
// cf CLI v8 can drive it; a small log cache (log-cache's /api/v1 read API)
// fed from NATS; and the bridge to Diego, as cloud_controller_ng's
// Diego::Runner, AppRecipeBuilder and ProcessesSync are:
//
//   - staging a package runs as a Diego Task (domain cf-tasks, task guid =
//     build guid) whose completion callback marks the build STAGED or FAILED;
//   - starting an app desires one LRP per process (domain cf-apps, process
//     guid <process guid>-<process version>, routes["cf-router"] with one
//     entry per route mapping);
//   - mapping or unmapping a route on a started app updates the LRP's routes
//     right after the database commit; scale updates its instances; stop and
//     delete remove it; restart desires a new version and removes the old;
//   - a sync every 30 s repairs any drift between what the Cloud Controller
//     says and what the BBS holds (missing, stale and orphaned LRPs), then
//     marks the cf-apps domain fresh for 120 s.
//
// Two listeners: the public API (bearer JWT on /v3 and /api/v1; GET /, the
// UAA-style token endpoint POST /oauth/token and GET /login are open; see
// uaa.go) and the internal API (mutual TLS with the foundation CA: cells
// download packages and droplets and upload droplets there; the BBS posts
// completed staging tasks there).
//
// The state (SQLite by default, PostgreSQL by URL) lives in one database;
// package and droplet files and the token signing key live in the state
// directory.
package cc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/trace"
)

// Defaults of Config.
const (
	DefaultListen           = "127.0.0.1:9022"
	DefaultInternalListen   = "127.0.0.1:9023"
	DefaultSharedDomain     = "apps.localhost"
	DefaultSyncInterval     = 30 * time.Second // capi-release cc.diego_sync.frequency_in_seconds
	DefaultMaxPackageBytes  = 1 << 30          // CC's packages.max_package_size
	DefaultMaxPackageFiles  = 200_000
	DefaultMaxDropletBytes  = 2 << 30
	DefaultLogLinesPerApp   = 1000
	DefaultAppMemoryMB      = 1024 // CC's default_app_memory
	DefaultAppDiskMB        = 1024 // CC's default_app_disk_in_mb
	DefaultOrg              = "minicf"
	DefaultSpace            = "dev"
	DefaultStack            = "cflinuxfs4"
	DomainFreshnessTTL      = 120 * time.Second // CC's bump_freshness
	DefaultStagingTimeout   = 15 * time.Minute  // CC's staging_timeout_in_seconds (900)
	DefaultHealthTimeoutSec = 60                // CC's default_health_check_timeout
)

// Config configures a Cloud Controller.
type Config struct {
	Listen         string // public API, default 127.0.0.1:9022
	InternalListen string // internal API (mutual TLS), default 127.0.0.1:9023
	// ExternalURL is the base of every absolute link (pagination, job
	// Location, root document). Empty: built from each request's Host
	// (http://<Host>), which is http://<Listen> for a client that dials it.
	ExternalURL string
	// InternalURL is the internal API as cells and the BBS reach it.
	// Empty: https://<bound internal address>.
	InternalURL string
	// DB is the database: a SQLite path or sqlite:// URL, :memory:, or a
	// postgres:// URL. Empty: sqlite://<StateDir>/cc.db.
	DB string
	// StateDir holds packages, droplets, the token key and the staging
	// caches (required).
	StateDir        string
	SharedDomain    string        // default apps.localhost
	SyncInterval    time.Duration // default 30 s
	MaxPackageBytes int64         // upload and unpacked size bound, default 1 GiB
	MaxPackageFiles int           // entries in a package, default 200 000
	MaxDropletBytes int64         // droplet upload bound, default 2 GiB
	LogLinesPerApp  int           // log cache lines kept per app, default 1000
	// DefaultAppMemoryMB and DefaultAppDiskMB are what a process gets when
	// nothing says otherwise (CC: 1024 each).
	DefaultAppMemoryMB int
	DefaultAppDiskMB   int
	// GoCache is GOCACHE for staging Go apps (default <StateDir>/staging/gocache).
	// Sharing the host's Go build cache makes the first staging as fast as a
	// warm one, since the standard library is already compiled there.
	GoCache string
	// StagingTimeout bounds a staging task (default 15 min).
	StagingTimeout time.Duration
	// Trace records flow 1's route-mapped steps; nil records nothing.
	Trace  trace.Emitter
	Logger *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Users are who may log in with POST /oauth/token's password grant
	// (user name → password; origin uaa), e.g. admin. None: nobody can
	// (IssueToken still makes tokens).
	Users map[string]string
	// Clients are the client_credentials clients (client id → secret,
	// which must not be empty). "cf", UAA's public client with an empty
	// secret, is always there for the password and refresh_token grants.
	Clients map[string]string
}

func (c *Config) setDefaults() error {
	if c.StateDir == "" {
		return errors.New("cc: Config.StateDir is required")
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.InternalListen == "" {
		c.InternalListen = DefaultInternalListen
	}
	if c.DB == "" {
		c.DB = "sqlite://" + filepath.Join(c.StateDir, "cc.db")
	}
	if c.SharedDomain == "" {
		c.SharedDomain = DefaultSharedDomain
	}
	c.SharedDomain = strings.ToLower(strings.TrimSuffix(c.SharedDomain, "."))
	if c.SyncInterval <= 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.MaxPackageBytes <= 0 {
		c.MaxPackageBytes = DefaultMaxPackageBytes
	}
	if c.MaxPackageFiles <= 0 {
		c.MaxPackageFiles = DefaultMaxPackageFiles
	}
	if c.MaxDropletBytes <= 0 {
		c.MaxDropletBytes = DefaultMaxDropletBytes
	}
	if c.LogLinesPerApp <= 0 {
		c.LogLinesPerApp = DefaultLogLinesPerApp
	}
	if c.DefaultAppMemoryMB <= 0 {
		c.DefaultAppMemoryMB = DefaultAppMemoryMB
	}
	if c.DefaultAppDiskMB <= 0 {
		c.DefaultAppDiskMB = DefaultAppDiskMB
	}
	if c.StagingTimeout <= 0 {
		c.StagingTimeout = DefaultStagingTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.ExternalURL = strings.TrimRight(c.ExternalURL, "/")
	c.InternalURL = strings.TrimRight(c.InternalURL, "/")
	if err := validDomainName(c.SharedDomain); err != nil {
		return fmt.Errorf("cc: shared domain %q: %v", c.SharedDomain, err)
	}
	return checkCredentials(c.Users, c.Clients)
}

// BBSClient is what the Cloud Controller asks of the BBS. *bbs.Client
// implements it (DesireTask comes with the BBS's Tasks).
type BBSClient interface {
	DesireLRP(ctx context.Context, d *bbs.DesiredLRP) error
	UpdateDesiredLRP(ctx context.Context, processGUID string, u *bbs.DesiredLRPUpdate) error
	RemoveDesiredLRP(ctx context.Context, processGUID string) error
	DesiredLRPs(ctx context.Context, f bbs.DesiredLRPsRequest) ([]*bbs.DesiredLRP, error)
	ActualLRPs(ctx context.Context, f bbs.ActualLRPsRequest) ([]*bbs.ActualLRP, error)
	UpsertDomain(ctx context.Context, domain string, ttl time.Duration) error
	DesireTask(ctx context.Context, taskGUID, domain string, def *bbs.TaskDefinition) error
}

var _ BBSClient = (*bbs.Client)(nil)

// Bus is where app log lines arrive (mbus.SubjectAppLogsPrefix + ">").
// *mbus.Client implements it.
type Bus interface {
	Subscribe(subject string, handler func(mbus.Msg)) (mbus.Subscription, error)
}

var _ Bus = (*mbus.Client)(nil)

// CC is a Cloud Controller.
type CC struct {
	cfg   Config
	bbs   BBSClient
	bus   Bus
	ca    *identity.CA
	log   *slog.Logger
	store *store
	auth  *tokenAuth
	logs  *logCache

	// lrpSem (one slot) serializes talking to the BBS about LRPs: the sync
	// pass and the updates that follow a commit each read the database and
	// act on the BBS while holding it, so a sync never writes back what a
	// commit just changed. Waiting for it is bounded by a context: a
	// request whose update cannot get it in time leaves it to the sync.
	lrpSem chan struct{}
	// lockWait bounds how long a request's update waits for lrpSem.
	lockWait time.Duration

	mu          sync.Mutex
	apiLn       net.Listener
	intLn       net.Listener
	apiSrv      *http.Server
	intSrv      *http.Server
	internalURL string
	sub         mbus.Subscription
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	stopped     bool
	syncKick    chan struct{}
}

// New opens the database (creating the default org minicf, its space dev
// and the shared domain on first start) and the token key. bbsClient may be
// nil only in tests that never reach Diego; bus may be nil (no log cache
// feed); ca is needed by Start for the internal API's mutual TLS.
func New(cfg Config, bbsClient BBSClient, bus Bus, ca *identity.CA) (*CC, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	for _, d := range []string{"", "packages", "droplets", "tmp", "staging/gocache", "staging/gomodcache"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("cc: cannot create the state directory: %w", err)
		}
	}
	// What an upload interrupted by a crash left behind.
	if left, err := os.ReadDir(filepath.Join(cfg.StateDir, "tmp")); err == nil {
		for _, l := range left {
			os.RemoveAll(filepath.Join(cfg.StateDir, "tmp", l.Name()))
		}
	}
	auth, err := loadTokenAuth(filepath.Join(cfg.StateDir, TokenKeyFile), cfg.Now)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := openStore(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	c := &CC{cfg: cfg, bbs: bbsClient, bus: bus, ca: ca, log: cfg.Logger, store: st, auth: auth,
		logs: newLogCache(cfg.LogLinesPerApp, defaultMaxLogApps), internalURL: cfg.InternalURL,
		syncKick: make(chan struct{}, 1), lrpSem: make(chan struct{}, 1), lockWait: 10 * time.Second}
	if err := c.bootstrap(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return c, nil
}

// IssueToken makes a bearer token (HS256 JWT, cf-cli-v8.md §4.2 claims)
// for user, valid for ttl (default 24 h), that this Cloud Controller
// accepts.
func (c *CC) IssueToken(user string, ttl time.Duration) (string, error) {
	return c.auth.issue(user, ttl, c.tokenIssuer())
}

func (c *CC) tokenIssuer() string {
	if c.cfg.ExternalURL != "" {
		return c.cfg.ExternalURL + "/oauth/token"
	}
	return "http://" + c.cfg.Listen + "/oauth/token"
}

// Start binds both listeners, subscribes the log cache to app logs and
// starts the sync loop (its first pass right away).
func (c *CC) Start(ctx context.Context) error {
	if c.ca == nil {
		return errors.New("cc: Start needs the foundation CA for the internal API's mutual TLS")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiLn != nil || c.stopped {
		return errors.New("cc: Start called twice")
	}
	apiLn, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("cc: cannot listen on %s: %w", c.cfg.Listen, err)
	}
	intLn, err := net.Listen("tcp", c.cfg.InternalListen)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("cc: cannot listen on %s (internal API): %w", c.cfg.InternalListen, err)
	}
	if c.internalURL == "" {
		c.internalURL = "https://" + intLn.Addr().String()
	}
	serverTLS, err := c.internalTLS(intLn.Addr().String())
	if err != nil {
		apiLn.Close()
		intLn.Close()
		return err
	}
	if c.bus != nil {
		sub, err := c.bus.Subscribe(mbus.SubjectAppLogsPrefix+">", func(m mbus.Msg) { c.logs.ingest(m.Data) })
		if err != nil {
			apiLn.Close()
			intLn.Close()
			return fmt.Errorf("cc: cannot subscribe to app logs: %w", err)
		}
		c.sub = sub
	}
	c.apiLn = apiLn
	c.intLn = tls.NewListener(intLn, serverTLS)
	errLog := log.New(io.Discard, "", 0)
	c.apiSrv = &http.Server{Handler: c.APIHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 64 << 10, ErrorLog: errLog}
	c.intSrv = &http.Server{Handler: c.InternalHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 64 << 10, ErrorLog: errLog}
	go c.apiSrv.Serve(c.apiLn)
	go c.intSrv.Serve(c.intLn)
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	if c.bbs != nil {
		c.wg.Add(1)
		go c.syncLoop(loopCtx)
	}
	c.log.Info("cc-listening", "api", apiLn.Addr().String(), "internal", intLn.Addr().String(),
		"internal_url", c.internalURL, "db", c.store.String(), "shared_domain", c.cfg.SharedDomain)
	return nil
}

func (c *CC) internalTLS(bound string) (*tls.Config, error) {
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if h, _, err := net.SplitHostPort(bound); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	if h, _, err := net.SplitHostPort(c.cfg.InternalListen); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	if u := c.internalURL; u != "" {
		if i := strings.Index(u, "://"); i >= 0 {
			hp := u[i+3:]
			if j := strings.IndexByte(hp, '/'); j >= 0 {
				hp = hp[:j]
			}
			if h, _, err := net.SplitHostPort(hp); err == nil {
				hosts = append(hosts, h)
			} else {
				hosts = append(hosts, hp)
			}
		}
	}
	cred, err := c.ca.IssueComponent("cc", hosts, 0)
	if err != nil {
		return nil, fmt.Errorf("cc: cannot issue the internal API's certificate: %w", err)
	}
	return c.ca.ServerTLS(cred)
}

// Addr is the public API's bound address.
func (c *CC) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiLn == nil {
		return c.cfg.Listen
	}
	return c.apiLn.Addr().String()
}

// InternalAddr is the internal API's bound address.
func (c *CC) InternalAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.intLn == nil {
		return c.cfg.InternalListen
	}
	return c.intLn.Addr().String()
}

// InternalURL is the internal API's URL as cells reach it.
func (c *CC) InternalURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.internalURL
}

// URL is the public API's URL (ExternalURL, else http://<bound address>).
func (c *CC) URL() string {
	if c.cfg.ExternalURL != "" {
		return c.cfg.ExternalURL
	}
	return "http://" + c.Addr()
}

// Stop shuts both listeners down, ends the sync loop and the log
// subscription, and closes the database.
func (c *CC) Stop(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	apiSrv, intSrv, sub, cancel := c.apiSrv, c.intSrv, c.sub, c.cancel
	c.mu.Unlock()
	var errs []error
	if sub != nil {
		sub.Unsubscribe()
	}
	for _, s := range []*http.Server{apiSrv, intSrv} {
		if s == nil {
			continue
		}
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
			errs = append(errs, err)
		}
	}
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
	if err := c.store.Close(); err != nil {
		errs = append(errs, err)
	}
	c.log.Info("cc-stopped")
	return errors.Join(errs...)
}

// lockLRPs takes lrpSem, or gives up when ctx ends.
func (c *CC) lockLRPs(ctx context.Context) bool {
	select {
	case c.lrpSem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *CC) unlockLRPs() { <-c.lrpSem }

// now is the clock, to the microsecond (what both databases keep and the
// LRP annotation shows).
func (c *CC) now() time.Time { return c.cfg.Now().UTC().Truncate(time.Microsecond) }

// bootstrap creates the default org, space and shared domain once.
func (c *CC) bootstrap(ctx context.Context) error {
	return c.store.write(ctx, func(tx *stx) error {
		now := c.now()
		orgs, err := listRecs[orgRec](tx, tOrgs, "name = ?", DefaultOrg)
		if err != nil {
			return err
		}
		var org *orgRec
		if len(orgs) == 0 {
			org = &orgRec{GUID: newGUID(), Name: DefaultOrg, CreatedAt: now, UpdatedAt: now}
			if err := insertRec(tx, tOrgs, org); err != nil {
				return err
			}
		} else {
			org = orgs[0]
		}
		spaces, err := listRecs[spaceRec](tx, tSpaces, "org_guid = ? AND name = ?", org.GUID, DefaultSpace)
		if err != nil {
			return err
		}
		if len(spaces) == 0 {
			sp := &spaceRec{GUID: newGUID(), Name: DefaultSpace, OrgGUID: org.GUID, CreatedAt: now, UpdatedAt: now}
			if err := insertRec(tx, tSpaces, sp); err != nil {
				return err
			}
		}
		doms, err := listRecs[domainRec](tx, tDomains, "name = ?", c.cfg.SharedDomain)
		if err != nil {
			return err
		}
		if len(doms) == 0 {
			d := &domainRec{GUID: newGUID(), Name: c.cfg.SharedDomain, CreatedAt: now, UpdatedAt: now}
			if err := insertRec(tx, tDomains, d); err != nil {
				return err
			}
		}
		return nil
	})
}
