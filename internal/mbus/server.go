package mbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// MaxPayloadBytes bounds one NATS message on the embedded server. Routing
// messages are far smaller (see MaxMessageBytes); the margin leaves room for
// other components without letting one client pin megabytes per message.
const MaxPayloadBytes = 1 << 20

// serverReadyTimeout is how long Start waits for the listener. Binding a
// local port takes milliseconds; ten seconds only matters on a starved host.
const serverReadyTimeout = 10 * time.Second

// ServerConfig configures an embedded nats-server.
type ServerConfig struct {
	Host     string // default "127.0.0.1"
	Port     int    // 0 picks a free port
	User     string // required
	Password string // required
	Logger   *slog.Logger
}

// Server is an embedded nats-server for a single-host foundation.
type Server struct {
	cfg    ServerConfig
	log    *slog.Logger
	ns     *natsserver.Server
	nsLog  *serverLogger
	mu     sync.Mutex
	state  serverState
	addr   string
	stopMu sync.Mutex // serialises Stop so a second caller waits for the first
}

type serverState int

const (
	serverNew serverState = iota
	serverRunning
	serverStopped
)

// NewServer validates cfg and prepares the server without listening.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("nats server port %d is not between 0 and 65535", cfg.Port)
	}
	if cfg.User == "" || cfg.Password == "" {
		// An open bus would let anyone on the network register routes.
		return nil, errors.New("nats server needs a user and a password")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	port := cfg.Port
	if port == 0 {
		// nats-server reads 0 as "use 4222"; -1 is how it spells "any free port".
		port = natsserver.RANDOM_PORT
	}
	opts := &natsserver.Options{
		ServerName:      "minicf",
		Host:            cfg.Host,
		Port:            port,
		Username:        cfg.User,
		Password:        cfg.Password,
		MaxPayload:      MaxPayloadBytes,
		NoSigs:          true, // the process owner handles signals, not the library
		NoLog:           true, // our own logger is installed below instead of stdout
		NoSystemAccount: true, // nothing here uses $SYS; it only adds goroutines
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cannot configure nats server on %s: %w", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)), err)
	}
	nsLog := &serverLogger{log: log}
	ns.SetLogger(nsLog, log.Enabled(context.Background(), slog.LevelDebug), false)
	return &Server{cfg: cfg, log: log, ns: ns, nsLog: nsLog}, nil
}

// Start listens and returns once clients can connect.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case serverRunning:
		return errors.New("nats server is already running")
	case serverStopped:
		// nats-server cannot be restarted once shut down.
		return errors.New("nats server was stopped; create a new one")
	}
	want := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
	// natsserver.Start binds synchronously; when that fails it only reports
	// through Fatalf, and ReadyForConnections would spin until its timeout.
	s.ns.Start()
	if s.ns.Addr() == nil {
		s.state = serverStopped
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		if msg := s.nsLog.fatal(); msg != "" {
			return fmt.Errorf("nats server cannot listen on %s: %s", want, msg)
		}
		return fmt.Errorf("nats server cannot listen on %s", want)
	}
	if !s.ns.ReadyForConnections(serverReadyTimeout) {
		s.state = serverStopped
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		return fmt.Errorf("nats server on %s was not ready for connections after %s", want, serverReadyTimeout)
	}
	tcp, ok := s.ns.Addr().(*net.TCPAddr)
	if !ok {
		s.state = serverStopped
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		return fmt.Errorf("nats server on %s listens on an unexpected address %v", want, s.ns.Addr())
	}
	s.addr = net.JoinHostPort(s.cfg.Host, strconv.Itoa(tcp.Port))
	s.state = serverRunning
	s.log.Info("nats-server-started", "addr", s.addr)
	return nil
}

// Addr is host:port of the listener, empty before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL is the client URL without credentials, empty before Start. A wildcard
// listen host is replaced by loopback so the URL can actually be dialled.
func (s *Server) URL() string {
	addr := s.Addr()
	if addr == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	switch host {
	case "0.0.0.0", "":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "nats://" + net.JoinHostPort(host, port)
}

// Stop shuts the server down and waits until its goroutines and listener are
// gone, so the port can be reused at once. It is safe to call more than once
// and before Start.
func (s *Server) Stop() {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	s.mu.Lock()
	wasRunning := s.state == serverRunning
	s.state = serverStopped
	s.mu.Unlock()
	// Shutdown and WaitForShutdown are idempotent, which also covers a
	// server that never started or failed to.
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	if wasRunning {
		s.log.Info("nats-server-stopped", "addr", s.Addr())
	}
}

// serverLogger routes nats-server's printf-style log into slog. Its chatter is
// debug; its warnings and errors stay visible. Fatalf must not exit the
// process (the default logger does), and is remembered so Start can explain
// why the listener is missing.
type serverLogger struct {
	log *slog.Logger

	mu        sync.Mutex
	lastFatal string
}

func (l *serverLogger) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastFatal
}

func (l *serverLogger) Noticef(format string, v ...any) {
	l.log.Debug("nats-server-log", "nats_level", "notice", "text", fmt.Sprintf(format, v...))
}

func (l *serverLogger) Warnf(format string, v ...any) {
	text := fmt.Sprintf(format, v...)
	if strings.HasPrefix(text, "Plaintext passwords detected") {
		// Expected: the embedded server authenticates loopback clients with
		// a configured password, not nkeys. Not worth a warning at every start.
		l.log.Debug("nats-server-log", "nats_level", "warn", "text", text)
		return
	}
	l.log.Warn("nats-server-log", "nats_level", "warn", "text", text)
}

func (l *serverLogger) Fatalf(format string, v ...any) {
	text := fmt.Sprintf(format, v...)
	l.mu.Lock()
	l.lastFatal = text
	l.mu.Unlock()
	l.log.Error("nats-server-log", "nats_level", "fatal", "text", text)
}

func (l *serverLogger) Errorf(format string, v ...any) {
	l.log.Warn("nats-server-log", "nats_level", "error", "text", fmt.Sprintf(format, v...))
}

func (l *serverLogger) Debugf(format string, v ...any) {
	l.log.Debug("nats-server-log", "nats_level", "debug", "text", fmt.Sprintf(format, v...))
}

func (l *serverLogger) Tracef(format string, v ...any) {
	l.log.Debug("nats-server-log", "nats_level", "trace", "text", fmt.Sprintf(format, v...))
}
