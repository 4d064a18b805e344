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
	post(PathDesireLRP, func(w http.ResponseWriter, r *http.Request) {
		var req DesireLRPRequest
		if s.decode(w, r, &req) {
			s.reply(w, s.svc.DesireLRP(r.Context(), req.DesiredLRP), nil)
		}
	})
	post(PathUpdateDesiredLRP, func(w http.ResponseWriter, r *http.Request) {
		var req UpdateDesiredLRPRequest
		if s.decode(w, r, &req) {
			s.reply(w, s.svc.UpdateDesiredLRP(r.Context(), req.ProcessGUID, req.Update), nil)
		}
	})
	post(PathRemoveDesiredLRP, func(w http.ResponseWriter, r *http.Request) {
		var req RemoveDesiredLRPRequest
		if s.decode(w, r, &req) {
			s.reply(w, s.svc.RemoveDesiredLRP(r.Context(), req.ProcessGUID), nil)
		}
	})
	post(PathDesiredLRPs, func(w http.ResponseWriter, r *http.Request) {
		var req DesiredLRPsRequest
		if s.decode(w, r, &req) {
			list, err := s.svc.DesiredLRPs(r.Context(), req)
			s.reply(w, err, DesiredLRPsResponse{DesiredLRPs: nonNil(list)})
		}
	})
	post(PathRoutingInfos, func(w http.ResponseWriter, r *http.Request) {
		var req DesiredLRPsRequest
		if s.decode(w, r, &req) {
			list, err := s.svc.RoutingInfos(r.Context(), req)
			s.reply(w, err, DesiredLRPsResponse{DesiredLRPs: nonNil(list)})
		}
	})
	post(PathDesiredLRPByGUID, func(w http.ResponseWriter, r *http.Request) {
		var req DesiredLRPByProcessGUIDRequest
		if s.decode(w, r, &req) {
			d, err := s.svc.DesiredLRP(r.Context(), req.ProcessGUID)
			s.reply(w, err, DesiredLRPResponse{DesiredLRP: d})
		}
	})
	post(PathActualLRPs, func(w http.ResponseWriter, r *http.Request) {
		var req ActualLRPsRequest
		if s.decode(w, r, &req) {
			list, err := s.svc.ActualLRPs(r.Context(), req)
			if list == nil {
				list = []*ActualLRP{}
			}
			s.reply(w, err, ActualLRPsResponse{ActualLRPs: list})
		}
	})
	post(PathClaimActualLRP, func(w http.ResponseWriter, r *http.Request) {
		var req ClaimActualLRPRequest
		if s.decode(w, r, &req) {
			if req.ActualLRPInstanceKey == nil {
				s.reply(w, NewError(ErrTypeInvalidRequest, "actual_lrp_instance_key is missing"), nil)
				return
			}
			s.reply(w, s.svc.ClaimActualLRP(r.Context(), req.ProcessGUID, req.Index, *req.ActualLRPInstanceKey), nil)
		}
	})
	post(PathStartActualLRP, func(w http.ResponseWriter, r *http.Request) {
		var req StartActualLRPRequest
		if s.decode(w, r, &req) {
			if req.ActualLRPKey == nil || req.ActualLRPInstanceKey == nil || req.ActualLRPNetInfo == nil {
				s.reply(w, NewError(ErrTypeInvalidRequest, "actual_lrp_key, actual_lrp_instance_key and actual_lrp_net_info are required"), nil)
				return
			}
			s.reply(w, s.svc.StartActualLRP(r.Context(), *req.ActualLRPKey, *req.ActualLRPInstanceKey, *req.ActualLRPNetInfo, req.Routable), nil)
		}
	})
	post(PathCrashActualLRP, func(w http.ResponseWriter, r *http.Request) {
		var req CrashActualLRPRequest
		if s.decode(w, r, &req) {
			if req.ActualLRPKey == nil || req.ActualLRPInstanceKey == nil {
				s.reply(w, NewError(ErrTypeInvalidRequest, "actual_lrp_key and actual_lrp_instance_key are required"), nil)
				return
			}
			s.reply(w, s.svc.CrashActualLRP(r.Context(), *req.ActualLRPKey, *req.ActualLRPInstanceKey, req.ErrorMessage), nil)
		}
	})
	post(PathRemoveActualLRP, func(w http.ResponseWriter, r *http.Request) {
		var req RemoveActualLRPRequest
		if s.decode(w, r, &req) {
			s.reply(w, s.svc.RemoveActualLRP(r.Context(), req.ProcessGUID, req.Index, req.ActualLRPInstanceKey), nil)
		}
	})
	post(PathFailActualLRP, func(w http.ResponseWriter, r *http.Request) {
		var req FailActualLRPRequest
		if s.decode(w, r, &req) {
			if req.ActualLRPKey == nil {
				s.reply(w, NewError(ErrTypeInvalidRequest, "actual_lrp_key is required"), nil)
				return
			}
			s.reply(w, s.svc.FailActualLRP(r.Context(), *req.ActualLRPKey, req.ErrorMessage), nil)
		}
	})
	post(PathCells, func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, nil, CellsResponse{Cells: s.svc.Cells()})
	})
	post(PathCellHeartbeat, func(w http.ResponseWriter, r *http.Request) {
		var req CellHeartbeatRequest
		if s.decode(w, r, &req) {
			s.reply(w, s.svc.CellHeartbeat(req.Cell), nil)
		}
	})
	post(PathUpsertDomain, func(w http.ResponseWriter, r *http.Request) {
		var req UpsertDomainRequest
		if s.decode(w, r, &req) {
			s.reply(w, s.svc.UpsertDomain(r.Context(), req.Domain, time.Duration(req.TTL)*time.Second), nil)
		}
	})
	post(PathDomains, func(w http.ResponseWriter, r *http.Request) {
		list, err := s.svc.Domains(r.Context())
		if list == nil {
			list = []string{}
		}
		s.reply(w, err, DomainsResponse{Domains: list})
	})
	s.taskRoutes(post)
	post(PathLRPInstanceEvents, s.events)
	post(PathTaskEvents, s.taskEvents)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, NewError(ErrTypeInvalidRequest, "%s %s is not a BBS endpoint", r.Method, r.URL.Path))
	})
	return mux
}

func nonNil(l []*DesiredLRP) []*DesiredLRP {
	if l == nil {
		return []*DesiredLRP{}
	}
	return l
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
