package bbs

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
	"strconv"
	"sync"
	"time"
)

// ServerConfig configures the BBS's HTTP API.
type ServerConfig struct {
	Listen string      // e.g. 127.0.0.1:8889
	TLS    *tls.Config // mutual TLS; nil only in tests of the handlers
	// KeepaliveInterval is how often an idle event stream gets a comment
	// line, so dead subscribers are noticed. Default 15 s.
	KeepaliveInterval time.Duration
	Logger            *slog.Logger
}

// bodyReadTimeout bounds how long a client may take to send its request body.
const bodyReadTimeout = 30 * time.Second

// Server serves a Service over HTTP.
type Server struct {
	cfg     ServerConfig
	svc     *Service
	log     *slog.Logger
	ln      net.Listener
	srv     *http.Server
	streams sync.WaitGroup
	done    chan struct{}
	once    sync.Once
}

// NewServer builds the API server; Start binds it.
func NewServer(cfg ServerConfig, svc *Service) *Server {
	if cfg.KeepaliveInterval <= 0 {
		cfg.KeepaliveInterval = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, svc: svc, log: cfg.Logger, done: make(chan struct{})}
}

// Handler is the API's routes, for tests and for Start.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	post := func(path string, h func(w http.ResponseWriter, r *http.Request)) {
		mux.HandleFunc("POST "+path, h)
	}
	post(PathPing, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, ErrorResponse{}) })
	post(PathDesireLRP, handle(s, func(ctx context.Context, req DesireLRPRequest) (any, error) {
		return nil, s.svc.DesireLRP(ctx, req.DesiredLRP)
	}))
	post(PathUpdateDesiredLRP, handle(s, func(ctx context.Context, req UpdateDesiredLRPRequest) (any, error) {
		return nil, s.svc.UpdateDesiredLRP(ctx, req.ProcessGUID, req.Update)
	}))
	post(PathRemoveDesiredLRP, handle(s, func(ctx context.Context, req RemoveDesiredLRPRequest) (any, error) {
		return nil, s.svc.RemoveDesiredLRP(ctx, req.ProcessGUID)
	}))
	post(PathDesiredLRPs, handle(s, func(ctx context.Context, req DesiredLRPsRequest) (any, error) {
		list, err := s.svc.DesiredLRPs(ctx, req)
		return DesiredLRPsResponse{DesiredLRPs: nonNil(list)}, err
	}))
	post(PathRoutingInfos, handle(s, func(ctx context.Context, req DesiredLRPsRequest) (any, error) {
		list, err := s.svc.RoutingInfos(ctx, req)
		return DesiredLRPsResponse{DesiredLRPs: nonNil(list)}, err
	}))
	post(PathDesiredLRPByGUID, handle(s, func(ctx context.Context, req DesiredLRPByProcessGUIDRequest) (any, error) {
		d, err := s.svc.DesiredLRP(ctx, req.ProcessGUID)
		return DesiredLRPResponse{DesiredLRP: d}, err
	}))
	post(PathActualLRPs, handle(s, func(ctx context.Context, req ActualLRPsRequest) (any, error) {
		list, err := s.svc.ActualLRPs(ctx, req)
		return ActualLRPsResponse{ActualLRPs: nonNil(list)}, err
	}))
	post(PathClaimActualLRP, handle(s, func(ctx context.Context, req ClaimActualLRPRequest) (any, error) {
		if req.ActualLRPInstanceKey == nil {
			return nil, NewError(ErrTypeInvalidRequest, "actual_lrp_instance_key is missing")
		}
		return nil, s.svc.ClaimActualLRP(ctx, req.ProcessGUID, req.Index, *req.ActualLRPInstanceKey)
	}))
	post(PathStartActualLRP, handle(s, func(ctx context.Context, req StartActualLRPRequest) (any, error) {
		if req.ActualLRPKey == nil || req.ActualLRPInstanceKey == nil || req.ActualLRPNetInfo == nil {
			return nil, NewError(ErrTypeInvalidRequest, "actual_lrp_key, actual_lrp_instance_key and actual_lrp_net_info are required")
		}
		return nil, s.svc.StartActualLRP(ctx, *req.ActualLRPKey, *req.ActualLRPInstanceKey, *req.ActualLRPNetInfo, req.Routable)
	}))
	post(PathCrashActualLRP, handle(s, func(ctx context.Context, req CrashActualLRPRequest) (any, error) {
		if req.ActualLRPKey == nil || req.ActualLRPInstanceKey == nil {
			return nil, NewError(ErrTypeInvalidRequest, "actual_lrp_key and actual_lrp_instance_key are required")
		}
		return nil, s.svc.CrashActualLRP(ctx, *req.ActualLRPKey, *req.ActualLRPInstanceKey, req.ErrorMessage)
	}))
	post(PathRemoveActualLRP, handle(s, func(ctx context.Context, req RemoveActualLRPRequest) (any, error) {
		return nil, s.svc.RemoveActualLRP(ctx, req.ProcessGUID, req.Index, req.ActualLRPInstanceKey)
	}))
	post(PathFailActualLRP, handle(s, func(ctx context.Context, req FailActualLRPRequest) (any, error) {
		if req.ActualLRPKey == nil {
			return nil, NewError(ErrTypeInvalidRequest, "actual_lrp_key is required")
		}
		return nil, s.svc.FailActualLRP(ctx, *req.ActualLRPKey, req.ErrorMessage)
	}))
	post(PathCells, func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, nil, CellsResponse{Cells: s.svc.Cells()})
	})
	post(PathCellHeartbeat, handle(s, func(ctx context.Context, req CellHeartbeatRequest) (any, error) {
		return nil, s.svc.CellHeartbeat(req.Cell)
	}))
	post(PathUpsertDomain, handle(s, func(ctx context.Context, req UpsertDomainRequest) (any, error) {
		return nil, s.svc.UpsertDomain(ctx, req.Domain, time.Duration(req.TTL)*time.Second)
	}))
	post(PathDomains, func(w http.ResponseWriter, r *http.Request) {
		list, err := s.svc.Domains(r.Context())
		s.reply(w, err, DomainsResponse{Domains: nonNil(list)})
	})
	s.taskRoutes(post)
	post(PathLRPInstanceEvents, s.events)
	post(PathTaskEvents, s.taskEvents)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, NewError(ErrTypeInvalidRequest, "%s %s is not a BBS endpoint", r.Method, r.URL.Path))
	})
	return mux
}

// nonNil makes a missing list an empty one, so that it is sent as [].
func nonNil[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}

// handle is the handler of a POST endpoint: it decodes the body (bounded,
// as decode does) into a Req, calls f and replies with f's response
// (ErrorResponse{} if nil) or its error.
func handle[Req any](s *Server, f func(ctx context.Context, req Req) (any, error)) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if s.decode(w, r, &req) {
			resp, err := f(r.Context(), req)
			s.reply(w, err, resp)
		}
	}
}

// decode reads a bounded JSON body; on failure it answers and returns false.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	// The body gets a deadline of its own rather than a server ReadTimeout,
	// which would also cut event streams that outlive it.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, NewError(ErrTypeRequestTooLarge, "the request body is larger than %d bytes", MaxRequestBytes))
			return false
		}
		writeError(w, http.StatusBadRequest, NewError(ErrTypeInvalidRequest, "cannot read the request body: %v", err))
		return false
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, NewError(ErrTypeInvalidJSON, "the request body is not the expected JSON: %v", err))
		return false
	}
	return true
}

func (s *Server) reply(w http.ResponseWriter, err error, ok any) {
	if err != nil {
		var be *Error
		if !errors.As(err, &be) {
			s.log.Error("bbs-request-failed", "error", err.Error())
			be = NewError(ErrTypeUnknown, "%v", err)
		}
		writeError(w, statusOf(be), be)
		return
	}
	if ok == nil {
		ok = ErrorResponse{}
	}
	writeJSON(w, ok)
}

func statusOf(e *Error) int {
	switch e.Type {
	case ErrTypeResourceNotFound:
		return http.StatusNotFound
	case ErrTypeResourceExists, ErrTypeResourceConflict, ErrTypeActualLRPCannotBeClaimed,
		ErrTypeActualLRPCannotBeStarted, ErrTypeActualLRPCannotBeCrashed, ErrTypeRunningOnDifferentCell,
		ErrTypeInvalidStateTransition:
		return http.StatusConflict
	case ErrTypeInvalidRequest, ErrTypeInvalidRecord, ErrTypeInvalidJSON:
		return http.StatusBadRequest
	case ErrTypeRequestTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, status int, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(ErrorResponse{Error: e})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// events streams LRP instance events as Server-Sent Events: an id counting
// up from 0 per connection, the Diego event name, and the JSON payload.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	var req EventsByCellID
	if !s.decode(w, r, &req) {
		return
	}
	s.stream(w, r, req.CellID, false)
}

// taskEvents streams task events (task_created, task_changed,
// task_removed), as the LRP stream does its own.
func (s *Server) taskEvents(w http.ResponseWriter, r *http.Request) {
	var req struct{}
	if !s.decode(w, r, &req) {
		return
	}
	s.stream(w, r, "", true)
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request, cellID string, tasks bool) {
	req := EventsByCellID{CellID: cellID}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, NewError(ErrTypeUnknown, "streaming is not supported on this connection"))
		return
	}
	s.streams.Add(1)
	defer s.streams.Done()
	var sub *subscription
	if tasks {
		sub = s.svc.hub.subscribeTasks()
	} else {
		sub = s.svc.hub.subscribe(req.CellID)
	}
	defer s.svc.hub.unsubscribe(sub)
	h := w.Header()
	h.Set("Content-Type", EventStreamContentType)
	h.Set("Cache-Control", EventStreamCacheControl)
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	s.log.Info("event-stream-opened", "cell_id", req.CellID, "tasks", tasks, "remote", r.RemoteAddr)
	defer s.log.Info("event-stream-closed", "cell_id", req.CellID, "tasks", tasks, "remote", r.RemoteAddr)
	keepalive := time.NewTicker(s.cfg.KeepaliveInterval)
	defer keepalive.Stop()
	id := 0
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case e, ok := <-sub.ch:
			if !ok {
				// Dropped for falling behind, or the BBS is stopping: the
				// client reconnects and resyncs.
				return
			}
			if _, err := fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", strconv.Itoa(id), e.Type, e.Data); err != nil {
				return
			}
			id++
			// Send what is queued in one flush.
			for more := true; more; {
				select {
				case e, ok := <-sub.ch:
					if !ok {
						fl.Flush()
						return
					}
					if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", id, e.Type, e.Data); err != nil {
						return
					}
					id++
				default:
					more = false
				}
			}
			fl.Flush()
		}
	}
}

// Start binds the listener and serves.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("the BBS cannot listen on %s: %w", s.cfg.Listen, err)
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go s.srv.Serve(ln)
	s.log.Info("bbs-listening", "address", ln.Addr().String())
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop ends event streams and shuts the server down.
func (s *Server) Stop(ctx context.Context) error {
	s.once.Do(func() { close(s.done) })
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	s.streams.Wait()
	return err
}
