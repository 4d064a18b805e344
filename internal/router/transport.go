package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"time"
)

// The proxy talks HTTP/1.1 to backends over its own small connection pools
// instead of net/http's Transport: each request is written and its response
// read in the handler's own goroutine, with no hand-off to per-connection
// reader and writer goroutines. On two shared cores those hand-offs cost more
// than everything else the router does (see bench/router.sh).

// backendConn is one pooled connection to a backend.
type backendConn struct {
	conn      net.Conn
	raw       net.Conn // the TCP connection under TLS, for liveness probes
	lim       *limitedConn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

func (c *backendConn) Close() error { return c.conn.Close() }

// limitedConn lets the proxy bound how much a backend may send before the
// response headers are complete: http.ReadResponse has no limit of its own.
type limitedConn struct {
	net.Conn
	limit int64 // bytes still allowed; <0 means unlimited
}

var errResponseHeadersTooLarge = errors.New("response headers from the backend are too large")

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.limit < 0 {
		return l.Conn.Read(p)
	}
	if l.limit == 0 {
		return 0, errResponseHeadersTooLarge
	}
	if int64(len(p)) > l.limit {
		p = p[:l.limit]
	}
	n, err := l.Conn.Read(p)
	l.limit -= int64(n)
	return n, err
}

// backendConns is the idle-connection pool of one endpoint.
type backendConns struct {
	mu     sync.Mutex
	idle   []*backendConn
	closed bool
}

// transport dials endpoints and keeps their idle connections.
type transport struct {
	dialer         net.Dialer
	tlsBase        *tls.Config // RootCAs and client certificate for route integrity
	dialTimeout    time.Duration
	idleTimeout    time.Duration
	maxIdlePerHost int
	// probeIdleAfter is how long a connection may sit idle before it is
	// probed before reuse. Apps close idle connections after seconds.
	probeIdleAfter time.Duration
}

func newTransport(tlsBase *tls.Config, dialTimeout, idleTimeout, probeIdleAfter time.Duration, maxIdle int) *transport {
	if tlsBase == nil {
		tlsBase = &tls.Config{}
	}
	tlsBase = tlsBase.Clone()
	tlsBase.MinVersion = tls.VersionTLS12
	if tlsBase.ClientSessionCache == nil {
		tlsBase.ClientSessionCache = tls.NewLRUClientSessionCache(4096)
	}
	return &transport{
		dialer:         net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
		tlsBase:        tlsBase,
		dialTimeout:    dialTimeout,
		idleTimeout:    idleTimeout,
		maxIdlePerHost: maxIdle,
		probeIdleAfter: probeIdleAfter,
	}
}

func (t *transport) pool(e *Endpoint) *backendConns {
	if b := e.backend.Load(); b != nil {
		return b
	}
	b := &backendConns{}
	if e.backend.CompareAndSwap(nil, b) {
		return b
	}
	return e.backend.Load()
}

// get returns an idle connection to e, or dials a new one. reused says which:
// a reused connection may have been closed by the backend while idle.
func (t *transport) get(ctx context.Context, e *Endpoint) (c *backendConn, reused bool, err error) {
	if c := t.takeIdle(e); c != nil {
		return c, true, nil
	}
	c, err = t.dial(ctx, e)
	return c, false, err
}

func (t *transport) takeIdle(e *Endpoint) *backendConn {
	b := t.pool(e)
	now := time.Now()
	b.mu.Lock()
	for n := len(b.idle); n > 0; n = len(b.idle) {
		c := b.idle[n-1]
		b.idle[n-1] = nil
		b.idle = b.idle[:n-1]
		if t.idleTimeout > 0 && now.Sub(c.idleSince) > t.idleTimeout {
			// Close outside the lock would be nicer, but closing a socket does not block.
			c.Close()
			continue
		}
		// A connection idle for a while may have been closed by the app's own
		// idle timeout; writing a request into it would lose the request.
		// Hot connections skip the probe, which costs a system call.
		if now.Sub(c.idleSince) >= t.probeIdleAfter && !connAlive(c.raw) {
			c.Close()
			continue
		}
		b.mu.Unlock()
		return c
	}
	b.mu.Unlock()
	return nil
}

// dialError and tlsError mark where a connection attempt failed. Both happen
// before any byte of the request left the router, so both are safe to retry.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

type tlsError struct{ err error }

func (e *tlsError) Error() string { return e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

func (t *transport) dial(ctx context.Context, e *Endpoint) (*backendConn, error) {
	raw, err := t.dialer.DialContext(ctx, "tcp", e.Addr)
	if err != nil {
		return nil, &dialError{err}
	}
	conn := raw
	if e.TLS {
		cfg := t.tlsBase.Clone()
		cfg.ServerName = e.ServerCertDomainSAN
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(e.Addr)
		}
		tc := tls.Client(raw, cfg)
		hctx, cancel := context.WithTimeout(ctx, t.dialTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, &tlsError{err}
		}
		conn = tc
	}
	lim := &limitedConn{Conn: conn, limit: -1}
	return &backendConn{
		conn: conn,
		raw:  raw,
		lim:  lim,
		br:   bufio.NewReaderSize(lim, 4096),
		bw:   bufio.NewWriterSize(conn, 4096),
	}, nil
}

// put returns a healthy connection to its endpoint's idle pool.
func (t *transport) put(e *Endpoint, c *backendConn) {
	b := t.pool(e)
	c.idleSince = time.Now()
	b.mu.Lock()
	if b.closed || len(b.idle) >= t.maxIdlePerHost {
		b.mu.Unlock()
		c.Close()
		return
	}
	b.idle = append(b.idle, c)
	b.mu.Unlock()
}

// closeIdle drops an endpoint's idle connections, when it leaves the table.
func closeIdle(e *Endpoint) {
	b := e.backend.Load()
	if b == nil {
		return
	}
	b.mu.Lock()
	idle := b.idle
	b.idle = nil
	b.closed = true
	b.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// tlsFailure names the kind of route-integrity failure, for the status code,
// the metrics and the log.
type tlsFailure int

const (
	tlsOK               tlsFailure = iota
	tlsHostnameMismatch            // the backend is someone else: 503
	tlsUntrusted                   // the certificate does not chain to our CA: 526
	tlsNotTLS                      // plaintext on a TLS port: 525
	tlsHandshake                   // anything else in the handshake: 525
)

func classifyTLS(err error) tlsFailure {
	var te *tlsError
	if !errors.As(err, &te) {
		return tlsOK
	}
	var host x509.HostnameError
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var rec tls.RecordHeaderError
	var verr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &host):
		return tlsHostnameMismatch
	case errors.As(err, &unknown), errors.As(err, &invalid):
		return tlsUntrusted
	case errors.As(err, &rec):
		return tlsNotTLS
	case errors.As(err, &verr):
		return tlsUntrusted
	}
	return tlsHandshake
}

func (f tlsFailure) String() string {
	switch f {
	case tlsHostnameMismatch:
		return "hostname_mismatch"
	case tlsUntrusted:
		return "untrusted_certificate"
	case tlsNotTLS:
		return "not_tls"
	case tlsHandshake:
		return "handshake_failed"
	}
	return "ok"
}
