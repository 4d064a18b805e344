package router

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/trace"
)

// Bus is what the router needs from NATS.
type Bus interface {
	Subscribe(subject string, handler func(mbus.Msg)) (mbus.Subscription, error)
	Publish(subject string, data []byte) error
	Connected() bool
	Reconnected() <-chan struct{}
}

// Options are the router's settings after the config file and flags are read.
type Options struct {
	Config     FileConfig
	BackendTLS *tls.Config
	// AccessLog receives access-log lines; nil for none.
	AccessLog io.Writer
	// AppLogs receives each app's RTR lines; nil for none.
	AppLogs AppLogPublisher
	// Dropped reports NATS messages lost to slow-consumer limits.
	Dropped func() int64
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now. Tests of pruning pass their own.
	Now func() time.Time
	// Trace records flow 1's route-added and first-request steps; nil
	// records nothing.
	Trace trace.Emitter
}

// Router is the GoRouter component: construct with New, then Start, Drain
// and Stop. No goroutine of it outlives Stop.
type Router struct {
	cfg     FileConfig
	bus     Bus
	log     *slog.Logger
	now     func() time.Time
	reg     *Registry
	proxy   *Proxy
	metrics *Metrics
	access  *AccessLog
	id      string

	listener net.Listener
	server   *http.Server
	status   *http.Server
	statusLn net.Listener
	subs     []mbus.Subscription

	started  time.Time
	draining atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup
	serveErr chan error
	stopOnce sync.Once
}

// New builds a router; it binds nothing until Start.
func New(bus Bus, o Options) (*Router, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := o.Config
	reg := NewRegistry(c.DropletStaleThreshold, c.BalancingAlgorithm)
	m := NewMetrics(reg, o.Dropped)
	r := &Router{
		cfg:      c,
		bus:      bus,
		log:      o.Logger,
		now:      o.Now,
		reg:      reg,
		metrics:  m,
		id:       strconv.Itoa(c.Index) + "-" + uuid.NewString(),
		stop:     make(chan struct{}),
		serveErr: make(chan error, 2),
	}
	if o.AccessLog != nil || o.AppLogs != nil {
		r.access = NewAccessLog(o.AccessLog, o.AppLogs)
	}
	r.proxy = &Proxy{
		reg: reg,
		tr: newTransport(o.BackendTLS, c.Backends.DialTimeout, c.Backends.IdleTimeout,
			c.Backends.IdleProbeAfter, c.Backends.MaxIdleConnsPerBackend),
		cfg: ProxyConfig{
			MaxAttempts:            c.Backends.MaxAttempts,
			RetryAfterFailure:      c.DropletStaleThreshold / 4,
			EndpointTimeout:        c.EndpointTimeout,
			DialTimeout:            c.Backends.DialTimeout,
			IdleTimeout:            c.Backends.IdleTimeout,
			MaxIdleConnsPerBackend: c.Backends.MaxIdleConnsPerBackend,
			MaxResponseHeaderBytes: c.Backends.MaxResponseHeaderBytes,
			StickyCookies:          c.StickySessionCookieNames,
		},
		metrics: m,
		access:  r.access,
		log:     o.Logger,
		now:     o.Now,
		trace:   o.Trace,
	}
	r.proxy.cfg.defaults()
	if trace.Enabled(o.Trace) {
		reg.onAdd = r.traceAdded
	}
	return r, nil
}

// Registry exposes the route table (for tests and the status server).
func (r *Router) Registry() *Registry { return r.reg }

// Metrics exposes the router's metrics.
func (r *Router) Metrics() *Metrics { return r.metrics }

// Start binds the listeners, subscribes to the bus, announces router.start
// and starts serving. It returns once requests can be accepted; /health turns
// 200 after start_response_delay, when emitters have had time to register.
func (r *Router) Start(ctx context.Context) error {
	var err error
	r.listener, err = net.Listen("tcp", r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("router cannot listen on %s: %w", r.cfg.Listen, err)
	}
	r.statusLn, err = net.Listen("tcp", r.cfg.Status.Listen)
	if err != nil {
		r.listener.Close()
		return fmt.Errorf("router status server cannot listen on %s: %w", r.cfg.Status.Listen, err)
	}
	if err := r.subscribe(); err != nil {
		r.listener.Close()
		r.statusLn.Close()
		return err
	}
	r.started = r.now()
	errLog := log.New(slogWriter{r.log}, "", 0)
	r.server = &http.Server{
		Handler:           r.proxy,
		ReadHeaderTimeout: r.cfg.ReadHeaderTimeout,
		IdleTimeout:       r.cfg.FrontendIdleTimeout,
		MaxHeaderBytes:    r.cfg.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	r.status = &http.Server{
		Handler:           r.statusHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	r.wg.Add(4)
	go func() { defer r.wg.Done(); r.serve(r.server, r.listener) }()
	go func() { defer r.wg.Done(); r.serve(r.status, r.statusLn) }()
	go func() { defer r.wg.Done(); r.pruneLoop() }()
	go func() { defer r.wg.Done(); r.reconnectLoop() }()
	r.publishStart()
	r.log.Info("router-started", "listen", r.listener.Addr().String(), "status", r.statusLn.Addr().String(), "id", r.id)
	return nil
}

func (r *Router) serve(s *http.Server, ln net.Listener) {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		r.log.Error("router-serve-failed", "error", err)
		r.serveErr <- err
	}
}

// Errors reports a listener that stopped on its own.
func (r *Router) Errors() <-chan error { return r.serveErr }

// Addr is the proxy's bound address.
func (r *Router) Addr() string { return r.listener.Addr().String() }

// StatusAddr is the status server's bound address.
func (r *Router) StatusAddr() string { return r.statusLn.Addr().String() }

// Healthy is what /health reports.
func (r *Router) Healthy() bool {
	return !r.draining.Load() && r.now().Sub(r.started) >= r.cfg.StartResponseDelay
}

// Drain turns /health to 503 at once, keeps serving for wait so load
// balancers notice, then stops accepting and lets in-flight requests finish
// until ctx ends. It returns ctx's error when requests had to be cut off.
func (r *Router) Drain(ctx context.Context, wait time.Duration) error {
	if r.draining.Swap(true) {
		r.log.Info("router-drain-already-in-progress")
	}
	r.log.Info("router-draining", "drain_wait", wait.String())
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	err := r.server.Shutdown(ctx)
	if err != nil {
		r.log.Warn("router-drain-timeout", "error", err)
		r.server.Close()
	}
	r.log.Info("router-drained")
	return err
}

// Stop closes everything the router started. Safe after Drain and twice.
func (r *Router) Stop(ctx context.Context) error {
	r.stopOnce.Do(func() {
		r.draining.Store(true)
		close(r.stop)
		for _, s := range r.subs {
			s.Unsubscribe()
		}
		if r.server != nil {
			r.server.Close()
			r.status.Close()
		}
		r.wg.Wait()
		// Idle backend connections would hold sidecars open until their
		// drain timeout; close them with the router.
		for _, p := range r.reg.Pools() {
			for _, e := range p.Endpoints() {
				closeIdle(e)
			}
		}
		if r.access != nil {
			r.access.Close()
		}
		r.log.Info("router-stopped")
	})
	return nil
}

func (r *Router) subscribe() error {
	handlers := map[string]func(mbus.Msg){
		mbus.SubjectRegister:   r.onRegister,
		mbus.SubjectUnregister: r.onUnregister,
		mbus.SubjectGreet:      r.onGreet,
	}
	for _, subj := range []string{mbus.SubjectRegister, mbus.SubjectUnregister, mbus.SubjectGreet} {
		s, err := r.bus.Subscribe(subj, handlers[subj])
		if err != nil {
			for _, prev := range r.subs {
				prev.Unsubscribe()
			}
			r.subs = nil
			return fmt.Errorf("router cannot subscribe to %s: %w", subj, err)
		}
		r.subs = append(r.subs, s)
	}
	return nil
}

func (r *Router) onRegister(msg mbus.Msg) {
	m, err := mbus.DecodeRegistryMessage(msg.Data)
	if err != nil {
		r.metrics.badMessages.Inc()
		r.log.Warn("validation-error", "subject", msg.Subject, "error", err.Error(), "payload", clip(msg.Data))
		return
	}
	now := r.now()
	res := r.reg.Register(m, now)
	r.metrics.registrations.WithLabelValues("added").Add(float64(res.Added))
	r.metrics.registrations.WithLabelValues("updated").Add(float64(res.Updated))
	r.metrics.registrations.WithLabelValues("refreshed").Add(float64(res.Refreshed))
	r.metrics.registrations.WithLabelValues("ignored").Add(float64(res.Ignored))
	if res.Added > 0 && m.EndpointUpdatedAtNs > 0 {
		if d := now.Sub(time.Unix(0, m.EndpointUpdatedAtNs)); d >= 0 {
			r.metrics.registrationDelay.Observe(d.Seconds())
		}
	}
	if res.Added > 0 || res.Updated > 0 {
		r.log.Info("endpoint-registered", "uris", m.URIs, "address", m.Address(), "tls", m.TLS(),
			"app", m.App, "instance_id", m.PrivateInstanceID, "added", res.Added, "updated", res.Updated)
	}
	if res.Ignored > 0 {
		r.log.Info("endpoint-update-ignored-older", "uris", m.URIs, "address", m.Address(), "endpoint_updated_at_ns", m.EndpointUpdatedAtNs)
	}
}

func (r *Router) onUnregister(msg mbus.Msg) {
	m, err := mbus.DecodeRegistryMessage(msg.Data)
	if err != nil {
		r.metrics.badMessages.Inc()
		r.log.Warn("validation-error", "subject", msg.Subject, "error", err.Error(), "payload", clip(msg.Data))
		return
	}
	removed := r.reg.Unregister(m)
	for _, e := range removed {
		closeIdle(e)
	}
	r.metrics.unregistrations.Add(float64(len(removed)))
	if len(removed) > 0 {
		r.log.Info("endpoint-unregistered", "uris", m.URIs, "address", m.Address(), "instance_id", m.PrivateInstanceID)
	}
}

func (r *Router) onGreet(msg mbus.Msg) {
	if msg.Reply == "" {
		return
	}
	if err := r.bus.Publish(msg.Reply, r.startMessage()); err != nil {
		r.log.Warn("router-greet-reply-failed", "error", err)
	}
}

func (r *Router) startMessage() []byte {
	host, _, _ := net.SplitHostPort(r.cfg.Listen)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	b, _ := json.Marshal(mbus.RouterStart{
		ID:                               r.id,
		Hosts:                            []string{host},
		MinimumRegisterIntervalInSeconds: int(r.cfg.MinimumRegisterInterval / time.Second),
		PruneThresholdInSeconds:          int(r.cfg.DropletStaleThreshold / time.Second),
	})
	return b
}

func (r *Router) publishStart() {
	if err := r.bus.Publish(mbus.SubjectStart, r.startMessage()); err != nil {
		r.log.Warn("router-start-publish-failed", "error", err)
		return
	}
	r.log.Info("router-start-published", "id", r.id)
}

// reconnectLoop republishes router.start after every reconnect, so emitters
// re-send the whole table at once instead of waiting for their heartbeat.
func (r *Router) reconnectLoop() {
	for {
		select {
		case <-r.stop:
			return
		case <-r.bus.Reconnected():
			r.publishStart()
		}
	}
}

// pruneLoop removes stale endpoints every prune interval. While the bus is
// down nothing is pruned (emitters cannot reach us, so staleness says
// nothing about the apps), and when it returns every endpoint is freshened
// first, so the table is not emptied before emitters re-register.
func (r *Router) pruneLoop() {
	t := time.NewTicker(r.cfg.PruneStaleDropletsInterval)
	defer t.Stop()
	suspended := false
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		if r.cfg.SuspendPruningIfNATSUnavailable {
			if !r.bus.Connected() {
				if !suspended {
					r.log.Info("prune-suspended", "reason", "NATS is unavailable")
				}
				suspended = true
				continue
			}
			if suspended {
				suspended = false
				r.reg.Freshen(r.now())
				r.log.Info("prune-resumed", "freshened", true)
				continue
			}
		}
		r.PruneNow()
	}
}

// PruneNow runs one prune cycle.
func (r *Router) PruneNow() int {
	pruned := r.reg.PruneStale(r.now())
	for _, e := range pruned {
		closeIdle(e)
		r.log.Info("endpoint-pruned", "address", e.Addr, "instance_id", e.PrivateInstanceID, "app", e.AppID)
	}
	r.metrics.pruned.Add(float64(len(pruned)))
	return len(pruned)
}

func (r *Router) statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !r.Healthy() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "unavailable\n")
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /is-process-alive-do-not-use-for-loadbalancing", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /routes", r.basicAuth(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.RoutesSnapshot())
	}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.metrics.Registry, promhttp.HandlerOpts{}))
	if r.cfg.Status.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (r *Router) basicAuth(h http.HandlerFunc) http.HandlerFunc {
	if r.cfg.Status.User == "" {
		return h
	}
	return func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !ok || u != r.cfg.Status.User || p != r.cfg.Status.Password {
			w.Header().Set("WWW-Authenticate", `Basic realm="minicf router"`)
			http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, req)
	}
}

// RouteEndpoint is one entry of /routes, in gorouter's shape.
type RouteEndpoint struct {
	Address             string            `json:"address"`
	AvailabilityZone    string            `json:"availability_zone"`
	Protocol            string            `json:"protocol"`
	TLS                 bool              `json:"tls"`
	TTL                 int               `json:"ttl"`
	RouteServiceURL     string            `json:"route_service_url,omitempty"`
	Tags                map[string]string `json:"tags"`
	PrivateInstanceID   string            `json:"private_instance_id,omitempty"`
	ServerCertDomainSAN string            `json:"server_cert_domain_san,omitempty"`
	IsolationSegment    string            `json:"isolation_segment,omitempty"`
	LoadBalancing       string            `json:"load_balancing_algorithm,omitempty"`
}

// RoutesSnapshot is the table as /routes shows it.
func (r *Router) RoutesSnapshot() map[string][]RouteEndpoint {
	out := map[string][]RouteEndpoint{}
	for _, p := range r.reg.Pools() {
		eps := p.Endpoints()
		if len(eps) == 0 {
			continue
		}
		lb := p.LoadBalancing()
		list := make([]RouteEndpoint, 0, len(eps))
		for _, e := range eps {
			list = append(list, RouteEndpoint{
				Address: e.Addr, AvailabilityZone: e.AvailabilityZone, Protocol: e.Protocol,
				TLS: e.TLS, TTL: e.ttlSeconds(), RouteServiceURL: e.RouteServiceURL, Tags: e.Tags,
				PrivateInstanceID: e.PrivateInstanceID, ServerCertDomainSAN: e.ServerCertDomainSAN,
				IsolationSegment: e.IsolationSegment, LoadBalancing: lb,
			})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Address < list[j].Address })
		out[p.key.String()] = list
	}
	return out
}

func clip(b []byte) string {
	if len(b) > 256 {
		return string(b[:256]) + "..."
	}
	return string(b)
}

// slogWriter sends net/http's own complaints (TLS handshake errors, bad
// requests) to the structured log.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("http-server-error", "message", string(trimNL(p)))
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
