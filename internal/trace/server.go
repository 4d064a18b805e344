package trace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultListen is the trace API's address in `minicf up`.
const DefaultListen = "127.0.0.1:8083"

// Limits of the HTTP API.
const (
	DefaultMaxStreams = 32
	maxQueryValue     = 1024
	stateTimeout      = 5 * time.Second
	streamHeartbeat   = 15 * time.Second
	streamBuffer      = 256
)

// StateFunc returns what GET /api/state shows besides the recorder's own
// numbers: in `minicf up` the router's /routes and the BBS's cells and
// ActualLRPs. It must honour ctx.
type StateFunc func(ctx context.Context) (map[string]any, error)

// ServerConfig configures the trace HTTP API.
type ServerConfig struct {
	// Listen is host:port (DefaultListen when empty; port 0 picks one).
	Listen   string
	Recorder *Recorder
	// State feeds GET /api/state (nil: the recorder's numbers only).
	State StateFunc
	// Dropped, when set, reports the events the emitters dropped.
	Dropped func() int64
	// Page, when set, is served for every path outside /api/: the flow page.
	Page http.Handler
	// MaxStreams bounds the open /api/stream connections (DefaultMaxStreams).
	MaxStreams int
	Logger     *slog.Logger
}

// Server is the trace HTTP API:
//
//	GET /api/events?route=R   the journey of route R as a JSON list ordered
//	                          by time (or app=, process=, instance=; none:
//	                          every event held)
//	GET /api/stream?route=R   Server-Sent Events: each new event of the
//	                          journey as "event: trace", data the event's
//	                          JSON, id the recorder's sequence number (no
//	                          filter: every new event)
//	GET /api/state            {routes: the router's /routes, cells and
//	                          actual_lrps: the BBS's, recorder: counts}
//	GET /api/steps            flow 1: the steps in order, with who does
//	                          each and why
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	ln      net.Listener
	srv     *http.Server
	streams chan struct{}

	mu      sync.Mutex
	stopped bool
	stopCh  chan struct{}
}

// NewServer prepares the API; Start binds it.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.Recorder == nil {
		cfg.Recorder = NewRecorder(0)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, streams: make(chan struct{}, cfg.MaxStreams), stopCh: make(chan struct{})}
}

// Handler is the API's handler, for tests and for mounting elsewhere.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /api/stream", s.stream)
	mux.HandleFunc("GET /api/state", s.state)
	mux.HandleFunc("GET /api/steps", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, Flow) })
	mux.HandleFunc("/api/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown endpoint: see /api/events, /api/stream, /api/state, /api/steps"})
	})
	if s.cfg.Page != nil {
		mux.Handle("/", s.cfg.Page)
	}
	return mux
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("trace API cannot listen on %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second, // lifted for streams
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go s.srv.Serve(ln)
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.cfg.Listen
	}
	return s.ln.Addr().String()
}

// URL is http://<Addr>.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Stop ends the streams and shuts the server down.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	close(s.stopCh)
	s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
		return err
	}
	return nil
}

func queryOf(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{Route: v.Get("route"), AppGUID: v.Get("app"), ProcessGUID: v.Get("process"), InstanceGUID: v.Get("instance")}
	for _, s := range []string{q.Route, q.AppGUID, q.ProcessGUID, q.InstanceGUID} {
		if len(s) > maxQueryValue {
			return q, errors.New("query value longer than 1024 characters")
		}
	}
	return q, nil
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q, err := queryOf(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	events := s.cfg.Recorder.Query(q)
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 && n < len(events) {
		events = events[len(events)-n:] // the latest n
	}
	writeJSON(w, http.StatusOK, events)
}

func (s *Server) state(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{}
	if s.cfg.State != nil {
		ctx, cancel := context.WithTimeout(r.Context(), stateTimeout)
		defer cancel()
		st, err := s.cfg.State(ctx)
		for k, v := range st {
			out[k] = v
		}
		if err != nil {
			out["error"] = err.Error()
		}
	}
	rec := map[string]any{"events": s.cfg.Recorder.Len(), "capacity": s.cfg.Recorder.Capacity(),
		"invalid": s.cfg.Recorder.Invalid(), "streams": s.cfg.Recorder.Subscribers()}
	if s.cfg.Dropped != nil {
		rec["dropped"] = s.cfg.Dropped()
	}
	out["recorder"] = rec
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	q, err := queryOf(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "too many open streams"})
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return
	}
	sub := s.cfg.Recorder.Subscribe(streamBuffer)
	defer sub.Close()
	past := s.cfg.Recorder.snapshot()
	var seen uint64 // events up to here were recorded before the stream began
	for _, e := range past {
		seen = max(seen, e.Seq)
	}
	f := NewFollower(q, past)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, ": minicf trace stream\nretry: 2000\n\n")
	rc.Flush()
	beat := time.NewTicker(streamHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stopCh:
			return
		case <-beat.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			rc.Flush()
		case e := <-sub.C:
			if e.Seq <= seen || !f.Match(e.Event) {
				continue
			}
			data, err := json.Marshal(e.Event)
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: trace\ndata: %s\n\n", e.Seq, data); err != nil {
				return
			}
			rc.Flush()
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
