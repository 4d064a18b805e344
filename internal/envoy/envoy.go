// Package envoy is minicf's twin of Diego's envoy sidecar: the process that
// runs beside the app in every container, terminates TLS with the instance
// identity certificate (CN and DNS SAN = instance guid, IP SAN = container
// address) and proxies each connection, at L4 with no HTTP routing, to the
// app's port. Like Envoy with Diego's SDS files, it re-reads its certificate
// when the files change, so a rotation takes effect on the next handshake
// without a restart; and like Envoy's admin interface it serves /listeners,
// /clusters, /config_dump, /ready and /stats on a loopback port.
package envoy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults, as Diego configures its envoy.
const (
	DefaultConnectTimeout = 250 * time.Millisecond // service-cluster connect timeout
	DefaultDrainTimeout   = 5 * time.Second
	HandshakeTimeout      = 10 * time.Second
	certPollInterval      = time.Second
)

// ALPN is what the listeners offer, Diego's default (containers.proxy.enable_http2).
var ALPN = []string{"h2", "http/1.1"}

// Listener is one TLS listener and the app address it proxies to.
type Listener struct {
	Name    string // default listener-<app port>-<listen port>, Diego's name
	Listen  string // host:port, e.g. 0.0.0.0:61001 or 127.0.0.1:0
	AppAddr string // e.g. 127.0.0.1:8080
}

// Config configures a Proxy.
type Config struct {
	Listeners []Listener
	// CertFile holds the instance identity chain (leaf, then CA) and KeyFile
	// its key. Both are polled and re-read when they change (rotation).
	CertFile, KeyFile string
	// ClientCAFile, when set, makes every listener require a client
	// certificate signed by one of its CAs (Diego's
	// require_and_verify_client_certificates). Re-read when it changes.
	ClientCAFile string
	// AdminListen is the admin interface's address, e.g. 127.0.0.1:61003
	// ("" = none).
	AdminListen string
	// ConnectTimeout bounds the dial to the app (default 250ms).
	ConnectTimeout time.Duration
	// DrainTimeout bounds how long Stop waits for open connections (default 5s).
	DrainTimeout time.Duration
	Logger       *slog.Logger
}

// Proxy is a running (or ready to run) sidecar.
type Proxy struct {
	cfg     Config
	logger  *slog.Logger
	started time.Time

	base *tls.Config // shared by all listeners; reads the current state through callbacks

	tlsMu      sync.RWMutex
	cert       *tls.Certificate
	leaf       *x509.Certificate
	certStamp  [2]os.FileInfo // cert, key as last loaded
	clientConf *tls.Config    // base plus the client CA pool; nil without ClientCAFile
	clientCAs  []*x509.Certificate
	caStamp    os.FileInfo

	// Only the watcher touches these: the last reload errors, so a bad file
	// is logged (and counted) once rather than every second.
	certErr, caErr string

	certUpdates, certRejected atomic.Int64

	listeners []*listener
	clusters  []*cluster // unique by app address, in first-use order

	mu       sync.Mutex // guards the lifecycle below
	running  bool
	stopped  bool
	stopDone chan struct{}
	admin    *http.Server
	adminLn  net.Listener

	draining    atomic.Bool
	quit        chan struct{} // closed by Stop: ends the watcher and accept back-offs
	forceCtx    context.Context
	forceCancel context.CancelFunc

	bg       sync.WaitGroup // accept loops, watcher, admin server
	acceptWG sync.WaitGroup // accept loops only
	connWG   sync.WaitGroup // connection handlers

	connMu sync.Mutex
	conns  map[*proxyConn]struct{}
	forced bool
}

type listener struct {
	Listener
	cluster *cluster
	ln      net.Listener
	addr    string // bound address once started

	downstreamTotal, downstreamActive atomic.Int64
	handshakes, handshakeErrors       atomic.Int64
}

type cluster struct {
	name, addr                 string
	active, total, connectFail atomic.Int64
	bytesIn, bytesOut          atomic.Int64 // in: client to app; out: app to client
}

type proxyConn struct {
	down, up net.Conn
	// Unix ns of the last bytes each way, for telling an idle keep-alive
	// connection (last bytes went to the client) from one whose request
	// the app is still working on.
	lastIn, lastOut atomic.Int64
}

// idleFor reports whether c has carried nothing for d and its last bytes
// were an answer to the client: a keep-alive connection between requests.
func (c *proxyConn) idleFor(now time.Time, d time.Duration) bool {
	in, out := c.lastIn.Load(), c.lastOut.Load()
	last := max(in, out)
	return out >= in && now.UnixNano()-last > int64(d)
}

// New validates cfg and loads the certificate (and client CA) once.
func New(cfg Config) (*Proxy, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:      cfg,
		logger:   cfg.Logger,
		quit:     make(chan struct{}),
		stopDone: make(chan struct{}),
		conns:    map[*proxyConn]struct{}{},
	}
	p.forceCtx, p.forceCancel = context.WithCancel(context.Background())
	byAddr := map[string]*cluster{}
	names := map[string]bool{}
	for _, l := range cfg.Listeners {
		c := byAddr[l.AppAddr]
		if c == nil {
			_, port, _ := net.SplitHostPort(l.AppAddr)
			name := "service-cluster-" + port
			if names[name] {
				name = "service-cluster-" + strings.NewReplacer(":", "_", "[", "", "]", "").Replace(l.AppAddr)
			}
			names[name] = true
			c = &cluster{name: name, addr: l.AppAddr}
			byAddr[l.AppAddr] = c
			p.clusters = append(p.clusters, c)
		}
		p.listeners = append(p.listeners, &listener{Listener: l, cluster: c})
	}
	p.base = &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: ALPN,
		// Every handshake presents (and checks) the current credentials: a
		// resumed session would skip both, and so hide a rotation or the
		// invalid credentials Diego writes to make routers move away.
		SessionTicketsDisabled: true,
		GetCertificate:         p.getCertificate,
		GetConfigForClient:     p.getConfigForClient,
	}
	if err := p.reloadCert(true); err != nil {
		return nil, err
	}
	if cfg.ClientCAFile != "" {
		if err := p.reloadClientCA(true); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func validate(cfg *Config) error {
	if len(cfg.Listeners) == 0 {
		return errors.New("envoy: Listeners: at least one listener is needed")
	}
	names := map[string]bool{}
	listens := map[string]bool{}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		field := fmt.Sprintf("envoy: Listeners[%d]", i)
		_, lport, err := parseAddr(l.Listen, true)
		if err != nil {
			return fmt.Errorf("%s.Listen: %w", field, err)
		}
		_, aport, err := parseAddr(l.AppAddr, false)
		if err != nil {
			return fmt.Errorf("%s.AppAddr: %w", field, err)
		}
		if l.Name == "" {
			l.Name = fmt.Sprintf("listener-%d-%d", aport, lport)
		}
		if names[l.Name] {
			return fmt.Errorf("%s.Name: %q is used by two listeners", field, l.Name)
		}
		names[l.Name] = true
		if lport != 0 {
			if listens[l.Listen] {
				return fmt.Errorf("%s.Listen: %q is used by two listeners", field, l.Listen)
			}
			listens[l.Listen] = true
		}
	}
	if cfg.CertFile == "" {
		return errors.New("envoy: CertFile: the instance certificate file is required")
	}
	if cfg.KeyFile == "" {
		return errors.New("envoy: KeyFile: the instance key file is required")
	}
	if cfg.AdminListen != "" {
		if _, _, err := parseAddr(cfg.AdminListen, true); err != nil {
			return fmt.Errorf("envoy: AdminListen: %w", err)
		}
	}
	switch {
	case cfg.ConnectTimeout < 0:
		return fmt.Errorf("envoy: ConnectTimeout: %v is negative", cfg.ConnectTimeout)
	case cfg.ConnectTimeout == 0:
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	switch {
	case cfg.DrainTimeout < 0:
		return fmt.Errorf("envoy: DrainTimeout: %v is negative", cfg.DrainTimeout)
	case cfg.DrainTimeout == 0:
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// parseAddr checks host:port; port 0 is allowed only where we listen.
func parseAddr(addr string, listen bool) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 || (port == 0 && !listen) {
		return "", 0, fmt.Errorf("%q has no valid port", addr)
	}
	if !listen && host == "" {
		return "", 0, fmt.Errorf("%q has no host", addr)
	}
	return host, port, nil
}

// ---- certificates ----

func (p *Proxy) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	p.tlsMu.RLock()
	defer p.tlsMu.RUnlock()
	return p.cert, nil
}

func (p *Proxy) getConfigForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	p.tlsMu.RLock()
	defer p.tlsMu.RUnlock()
	return p.clientConf, nil // nil: use the base config
}

func sameFile(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// reloadCert re-reads the certificate and key if they changed since the last
// load (always when initial). A failed reload keeps the current certificate.
func (p *Proxy) reloadCert(initial bool) error {
	certInfo, err1 := os.Stat(p.cfg.CertFile)
	keyInfo, err2 := os.Stat(p.cfg.KeyFile)
	p.tlsMu.RLock()
	unchanged := sameFile(certInfo, p.certStamp[0]) && sameFile(keyInfo, p.certStamp[1])
	p.tlsMu.RUnlock()
	if !initial && unchanged {
		return nil
	}
	cert, leaf, err := p.readCert(err1, err2)
	if err != nil {
		if !initial && err.Error() != p.certErr {
			p.certErr = err.Error()
			p.certRejected.Add(1)
			p.logger.Warn("envoy-certificate-reload-failed", "error", err.Error(), "cert_file", p.cfg.CertFile, "key_file", p.cfg.KeyFile)
		}
		return err
	}
	p.certErr = ""
	p.tlsMu.Lock()
	old := p.leaf
	p.cert, p.leaf = cert, leaf
	p.certStamp = [2]os.FileInfo{certInfo, keyInfo}
	p.tlsMu.Unlock()
	p.certUpdates.Add(1)
	attrs := []any{"subject_cn", leaf.Subject.CommonName, "serial", serialHex(leaf), "not_after", leaf.NotAfter.UTC()}
	switch {
	case old == nil:
		p.logger.Info("envoy-certificate-loaded", attrs...)
	case !old.Equal(leaf):
		p.logger.Info("envoy-certificate-rotated", append(attrs, "old_serial", serialHex(old))...)
	}
	return nil
}

func (p *Proxy) readCert(statCertErr, statKeyErr error) (*tls.Certificate, *x509.Certificate, error) {
	if statCertErr != nil {
		return nil, nil, fmt.Errorf("envoy: CertFile: %w", statCertErr)
	}
	if statKeyErr != nil {
		return nil, nil, fmt.Errorf("envoy: KeyFile: %w", statKeyErr)
	}
	certPEM, err := os.ReadFile(p.cfg.CertFile)
	if err != nil {
		return nil, nil, fmt.Errorf("envoy: CertFile: %w", err)
	}
	keyPEM, err := os.ReadFile(p.cfg.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("envoy: KeyFile: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("envoy: CertFile/KeyFile: %s and %s are not a certificate and its key: %w", p.cfg.CertFile, p.cfg.KeyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("envoy: CertFile: %w", err)
		}
	}
	return &cert, cert.Leaf, nil
}

// reloadClientCA re-reads the client CA file if it changed since the last
// load (always when initial). A failed reload keeps the current CAs.
func (p *Proxy) reloadClientCA(initial bool) error {
	info, statErr := os.Stat(p.cfg.ClientCAFile)
	p.tlsMu.RLock()
	unchanged := sameFile(info, p.caStamp)
	p.tlsMu.RUnlock()
	if !initial && unchanged {
		return nil
	}
	cas, err := p.readClientCAs(statErr)
	if err != nil {
		err = fmt.Errorf("envoy: ClientCAFile: %w", err)
		if !initial && err.Error() != p.caErr {
			p.caErr = err.Error()
			p.logger.Warn("envoy-client-ca-reload-failed", "error", err.Error(), "file", p.cfg.ClientCAFile)
		}
		return err
	}
	p.caErr = ""
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	conf := p.base.Clone()
	conf.GetConfigForClient = nil
	conf.ClientAuth = tls.RequireAndVerifyClientCert
	conf.ClientCAs = pool
	p.tlsMu.Lock()
	p.clientConf, p.clientCAs, p.caStamp = conf, cas, info
	p.tlsMu.Unlock()
	if !initial {
		p.logger.Info("envoy-client-ca-reloaded", "file", p.cfg.ClientCAFile, "cas", len(cas))
	}
	return nil
}

func (p *Proxy) readClientCAs(statErr error) ([]*x509.Certificate, error) {
	if statErr != nil {
		return nil, statErr
	}
	data, err := os.ReadFile(p.cfg.ClientCAFile)
	if err != nil {
		return nil, err
	}
	var cas []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", p.cfg.ClientCAFile)
	}
	return cas, nil
}

func (p *Proxy) watch() {
	defer p.bg.Done()
	t := time.NewTicker(certPollInterval)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
			_ = p.reloadCert(false)
			if p.cfg.ClientCAFile != "" {
				_ = p.reloadClientCA(false)
			}
		}
	}
}

// ---- lifecycle ----

// Start binds every listener (and the admin interface) and starts serving.
// It returns once all are listening; on error nothing is left bound.
func (p *Proxy) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return errors.New("envoy: the proxy is stopped")
	}
	if p.running {
		return errors.New("envoy: the proxy is already started")
	}
	var bound []net.Listener
	closeAll := func() {
		for _, ln := range bound {
			ln.Close()
		}
	}
	for _, l := range p.listeners {
		ln, err := net.Listen("tcp", l.Listen)
		if err != nil {
			closeAll()
			return fmt.Errorf("envoy: listener %s cannot listen on %s: %w", l.Name, l.Listen, err)
		}
		bound = append(bound, ln)
		l.ln, l.addr = ln, ln.Addr().String()
	}
	if p.cfg.AdminListen != "" {
		ln, err := net.Listen("tcp", p.cfg.AdminListen)
		if err != nil {
			closeAll()
			return fmt.Errorf("envoy: admin cannot listen on %s: %w", p.cfg.AdminListen, err)
		}
		p.adminLn = ln
		p.admin = &http.Server{
			Handler:           p.adminHandler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(p.logger.Handler(), slog.LevelDebug),
		}
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			_ = p.admin.Serve(ln)
		}()
	}
	p.running = true
	p.started = time.Now()
	for _, l := range p.listeners {
		p.logger.Info("envoy-listening", "listener", l.Name, "address", l.addr, "app_address", l.AppAddr)
		p.bg.Add(1)
		p.acceptWG.Add(1)
		go p.accept(l)
	}
	if p.adminLn != nil {
		p.logger.Info("envoy-admin-listening", "address", p.adminLn.Addr().String())
	}
	p.bg.Add(1)
	go p.watch()
	return nil
}

// Addrs are the bound listener addresses, in the order of Config.Listeners
// (nil before Start).
func (p *Proxy) Addrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return nil
	}
	out := make([]string, len(p.listeners))
	for i, l := range p.listeners {
		out[i] = l.addr
	}
	return out
}

// AdminAddr is the admin interface's bound address ("" when there is none
// or before Start).
func (p *Proxy) AdminAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.adminLn == nil {
		return ""
	}
	return p.adminLn.Addr().String()
}

// Stop closes the listeners, waits for open connections to end for at most
// DrainTimeout (or until ctx ends), closes whatever is left, stops the admin
// interface and returns when no goroutine of the proxy remains. It returns
// ctx's error when ctx cut the drain short, nil otherwise. Later calls wait
// for the first to finish.
func (p *Proxy) Stop(ctx context.Context) error {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		<-p.stopDone
		return nil
	}
	p.stopped = true
	running := p.running
	p.mu.Unlock()
	defer close(p.stopDone)
	defer p.forceCancel()

	p.draining.Store(true)
	close(p.quit)
	if !running {
		return nil
	}
	for _, l := range p.listeners {
		l.ln.Close()
	}
	p.acceptWG.Wait() // no connWG.Add after this
	active := p.activeConns()
	p.logger.Info("envoy-draining", "active_connections", active, "drain_timeout", p.cfg.DrainTimeout.String())

	done := make(chan struct{})
	go func() {
		p.connWG.Wait()
		close(done)
	}()
	var err error
	forced := 0
	timer := time.NewTimer(p.cfg.DrainTimeout)
	// Keep-alive connections with no request in progress would hold the
	// drain for its whole timeout: close them as soon as they are idle, so
	// a stopping instance goes as soon as its in-flight requests are done.
	idle := time.NewTicker(idleCheckInterval)
wait:
	for {
		select {
		case <-done:
			break wait
		case <-idle.C:
			p.closeIdleConns(time.Now())
		case <-timer.C:
			forced = p.closeConns()
			break wait
		case <-ctx.Done():
			forced = p.closeConns()
			err = ctx.Err()
			break wait
		}
	}
	idle.Stop()
	timer.Stop()
	<-done
	if p.admin != nil {
		p.admin.Close()
	}
	p.bg.Wait()
	p.logger.Info("envoy-stopped", "drained", forced == 0, "closed_connections", forced)
	return err
}

func (p *Proxy) activeConns() int {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	return len(p.conns)
}

// idleCheckInterval is how often a drain looks for idle connections;
// idleAfter is how long one must have been quiet since its last answer to
// count as idle. A streamed answer that pauses longer is cut by a drain.
const (
	idleCheckInterval = 100 * time.Millisecond
	idleAfter         = 500 * time.Millisecond
)

// closeIdleConns closes the connections that are between requests.
func (p *Proxy) closeIdleConns(now time.Time) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	for c := range p.conns {
		if c.idleFor(now, idleAfter) {
			c.down.Close()
			if c.up != nil {
				c.up.Close()
			}
		}
	}
}

// closeConns ends every open connection, and any that would start.
func (p *Proxy) closeConns() int {
	p.forceCancel() // aborts dials in progress
	p.connMu.Lock()
	defer p.connMu.Unlock()
	p.forced = true
	for c := range p.conns {
		c.down.Close()
		if c.up != nil {
			c.up.Close()
		}
	}
	return len(p.conns)
}

// ---- proxying ----

func (p *Proxy) accept(l *listener) {
	defer p.bg.Done()
	defer p.acceptWG.Done()
	var backoff time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry, as net/http does.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			p.logger.Warn("envoy-accept-failed", "listener", l.Name, "error", err.Error(), "retry_in", backoff.String())
			select {
			case <-time.After(backoff):
				continue
			case <-p.quit:
				return
			}
		}
		backoff = 0
		p.connWG.Add(1)
		go p.serve(l, conn)
	}
}

func (p *Proxy) track(c *proxyConn) bool {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.forced {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// setUpstream records the app connection, unless Stop gave up waiting.
func (p *Proxy) setUpstream(c *proxyConn, up net.Conn) bool {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.forced {
		return false
	}
	c.up = up
	return true
}

func (p *Proxy) untrack(c *proxyConn) {
	p.connMu.Lock()
	delete(p.conns, c)
	p.connMu.Unlock()
}

func (p *Proxy) serve(l *listener, raw net.Conn) {
	defer p.connWG.Done()
	c := &proxyConn{down: raw}
	if !p.track(c) {
		raw.Close()
		return
	}
	defer p.untrack(c)
	l.downstreamTotal.Add(1)
	l.downstreamActive.Add(1)
	defer l.downstreamActive.Add(-1)

	tc := tls.Server(raw, p.base)
	_ = raw.SetDeadline(time.Now().Add(HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		l.handshakeErrors.Add(1)
		// Debug: the rep's TCP port checks end this way every time.
		p.logger.Debug("envoy-handshake-failed", "listener", l.Name, "client", raw.RemoteAddr().String(), "error", err.Error())
		raw.Close()
		return
	}
	l.handshakes.Add(1)
	_ = raw.SetDeadline(time.Time{})

	cl := l.cluster
	cl.total.Add(1)
	d := net.Dialer{Timeout: p.cfg.ConnectTimeout}
	up, err := d.DialContext(p.forceCtx, "tcp", cl.addr)
	if err != nil {
		cl.connectFail.Add(1)
		p.logger.Warn("envoy-upstream-connect-failed", "listener", l.Name, "app_address", cl.addr, "error", err.Error())
		// A reset right after the handshake: the router counts it a failure.
		if tcp, ok := raw.(*net.TCPConn); ok {
			_ = tcp.SetLinger(0)
		}
		raw.Close()
		return
	}
	if !p.setUpstream(c, up) {
		up.Close()
		raw.Close()
		return
	}
	cl.active.Add(1)
	defer cl.active.Add(-1)

	abort := func() {
		raw.Close()
		up.Close()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // client to app
		defer wg.Done()
		if err := copyCounting(up, tc, &cl.bytesIn, &c.lastIn); err != nil {
			abort()
			return
		}
		closeWrite(up)
	}()
	if err := copyCounting(tc, up, &cl.bytesOut, &c.lastOut); err != nil {
		abort()
	} else {
		_ = tc.CloseWrite() // close_notify
		closeWrite(raw)     // then FIN, as Envoy half-closes
	}
	wg.Wait()
	raw.Close()
	up.Close()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyCounting copies src to dst until src's EOF (nil) or an error, adding
// every byte written to n as it goes, so /clusters shows live transfers.
func copyCounting(dst io.Writer, src io.Reader, n, last *atomic.Int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			// Counted before the write: once the peer has the bytes it may
			// answer, and a reader of the counters must already see them.
			n.Add(int64(nr))
			last.Store(time.Now().UnixNano())
			nw, werr := dst.Write(buf[:nr])
			if werr != nil {
				n.Add(int64(nw - nr))
				return werr
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// ---- admin ----

// ListenerInfo is an entry of GET /listeners.
type ListenerInfo struct {
	Name       string `json:"name"`
	Address    string `json:"address"`
	AppAddress string `json:"app_address"`
}

// ClusterStats is an entry of GET /clusters.
type ClusterStats struct {
	Name              string `json:"name"`
	AppAddress        string `json:"app_address"`
	ActiveConnections int64  `json:"active_connections"`
	TotalConnections  int64  `json:"total_connections"`
	ConnectFailures   int64  `json:"connect_failures"`
	BytesIn           int64  `json:"bytes_in"`  // client to app
	BytesOut          int64  `json:"bytes_out"` // app to client
}

// CertificateInfo describes the certificate the listeners present.
type CertificateInfo struct {
	SubjectCN string    `json:"subject_cn"`
	DNSSANs   []string  `json:"dns_sans"`
	IPSANs    []string  `json:"ip_sans"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Serial    string    `json:"serial"` // lower-case hex
	IssuerCN  string    `json:"issuer_cn"`
}

// ConfigDump is GET /config_dump.
type ConfigDump struct {
	Listeners                []ListenerDump  `json:"listeners"`
	Clusters                 []ClusterDump   `json:"clusters"`
	Certificate              CertificateInfo `json:"certificate"`
	RequireClientCertificate bool            `json:"require_client_certificate"`
	ClientCAs                []string        `json:"client_cas,omitempty"` // subject CNs
	Admin                    string          `json:"admin,omitempty"`
	DrainTimeout             string          `json:"drain_timeout"`
}

// ListenerDump is a listener in /config_dump.
type ListenerDump struct {
	ListenerInfo
	Cluster      string   `json:"cluster"`
	ALPN         []string `json:"alpn"`
	MinVersion   string   `json:"tls_minimum_protocol_version"`
	ClientCerts  bool     `json:"require_client_certificate"`
	HandshakeMax string   `json:"handshake_timeout"`
}

// ClusterDump is a cluster in /config_dump.
type ClusterDump struct {
	Name           string `json:"name"`
	AppAddress     string `json:"app_address"`
	ConnectTimeout string `json:"connect_timeout"`
}

func serialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

func certInfo(c *x509.Certificate) CertificateInfo {
	ips := make([]string, 0, len(c.IPAddresses))
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	dns := c.DNSNames
	if dns == nil {
		dns = []string{}
	}
	return CertificateInfo{
		SubjectCN: c.Subject.CommonName,
		DNSSANs:   dns,
		IPSANs:    ips,
		NotBefore: c.NotBefore.UTC(),
		NotAfter:  c.NotAfter.UTC(),
		Serial:    serialHex(c),
		IssuerCN:  c.Issuer.CommonName,
	}
}

// Listeners is what GET /listeners serves.
func (p *Proxy) Listeners() []ListenerInfo {
	out := make([]ListenerInfo, len(p.listeners))
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, l := range p.listeners {
		addr := l.addr
		if addr == "" {
			addr = l.Listen
		}
		out[i] = ListenerInfo{Name: l.Name, Address: addr, AppAddress: l.AppAddr}
	}
	return out
}

// Clusters is what GET /clusters serves.
func (p *Proxy) Clusters() []ClusterStats {
	out := make([]ClusterStats, len(p.clusters))
	for i, c := range p.clusters {
		out[i] = ClusterStats{
			Name: c.name, AppAddress: c.addr,
			ActiveConnections: c.active.Load(), TotalConnections: c.total.Load(), ConnectFailures: c.connectFail.Load(),
			BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
		}
	}
	return out
}

// Certificate describes the certificate new handshakes present.
func (p *Proxy) Certificate() CertificateInfo {
	p.tlsMu.RLock()
	defer p.tlsMu.RUnlock()
	return certInfo(p.leaf)
}

// ConfigDump is what GET /config_dump serves.
func (p *Proxy) ConfigDump() ConfigDump {
	p.tlsMu.RLock()
	cas := p.clientCAs
	p.tlsMu.RUnlock()
	d := ConfigDump{
		Certificate:              p.Certificate(),
		RequireClientCertificate: p.cfg.ClientCAFile != "",
		Admin:                    p.AdminAddr(),
		DrainTimeout:             p.cfg.DrainTimeout.String(),
	}
	for i, li := range p.Listeners() {
		d.Listeners = append(d.Listeners, ListenerDump{
			ListenerInfo: li, Cluster: p.listeners[i].cluster.name, ALPN: ALPN, MinVersion: "TLSv1_2",
			ClientCerts: d.RequireClientCertificate, HandshakeMax: HandshakeTimeout.String(),
		})
	}
	for _, c := range p.clusters {
		d.Clusters = append(d.Clusters, ClusterDump{Name: c.name, AppAddress: c.addr, ConnectTimeout: p.cfg.ConnectTimeout.String()})
	}
	for _, c := range cas {
		d.ClientCAs = append(d.ClientCAs, c.Subject.CommonName)
	}
	return d
}

// Stats are the counters of GET /stats, by Envoy-style name.
func (p *Proxy) Stats() map[string]int64 {
	s := map[string]int64{}
	for _, c := range p.clusters {
		pre := "cluster." + c.name + "."
		s[pre+"upstream_cx_active"] = c.active.Load()
		s[pre+"upstream_cx_total"] = c.total.Load()
		s[pre+"upstream_cx_connect_fail"] = c.connectFail.Load()
		s[pre+"upstream_cx_tx_bytes_total"] = c.bytesIn.Load()
		s[pre+"upstream_cx_rx_bytes_total"] = c.bytesOut.Load()
	}
	for _, l := range p.listeners {
		pre := "listener." + l.Name + "."
		s[pre+"downstream_cx_total"] = l.downstreamTotal.Load()
		s[pre+"downstream_cx_active"] = l.downstreamActive.Load()
		s[pre+"ssl.handshake"] = l.handshakes.Load()
		s[pre+"ssl.connection_error"] = l.handshakeErrors.Load()
	}
	s["sds.id-cert-and-key.update_success"] = p.certUpdates.Load()
	s["sds.id-cert-and-key.update_rejected"] = p.certRejected.Load()
	s["server.live"] = 1
	s["server.state"] = 0
	if p.draining.Load() {
		s["server.live"], s["server.state"] = 0, 1
	}
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if !started.IsZero() {
		s["server.uptime"] = int64(time.Since(started) / time.Second)
	}
	return s
}

func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	get := func(path string, h func(w http.ResponseWriter, r *http.Request)) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			h(w, r)
		})
	}
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	}
	get("/listeners", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, p.Listeners()) })
	get("/clusters", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, p.Clusters()) })
	get("/config_dump", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, p.ConfigDump()) })
	get("/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if p.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "DRAINING\n")
			return
		}
		io.WriteString(w, "LIVE\n")
	})
	get("/stats", func(w http.ResponseWriter, _ *http.Request) {
		s := p.Stats()
		names := make([]string, 0, len(s))
		for k := range s {
			names = append(names, k)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, k := range names {
			fmt.Fprintf(&b, "%s: %d\n", k, s[k])
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, b.String())
	})
	get("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "minicf envoy admin: /listeners /clusters /config_dump /ready /stats\n")
	})
	return mux
}
