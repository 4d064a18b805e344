package router

import (
	"fmt"
	"net/http"

	"github.com/minicf/minicf/internal/trace"
)

// Trace events of flow 1 (see internal/trace): route-added when an
// endpoint is new to a pool (or a new instance took over its address), and
// first-request when the router sends that endpoint its first request.

// traceAdded is the Registry's hook for an added endpoint.
func (r *Router) traceAdded(p *Pool, e *Endpoint) {
	e.traceFirst.Store(true)
	entry := RouteEndpoint{Address: e.Addr, AvailabilityZone: e.AvailabilityZone, Protocol: e.Protocol,
		TLS: e.TLS, TTL: e.ttlSeconds(), RouteServiceURL: e.RouteServiceURL, Tags: e.Tags,
		PrivateInstanceID: e.PrivateInstanceID, ServerCertDomainSAN: e.ServerCertDomainSAN,
		IsolationSegment: e.IsolationSegment, LoadBalancing: p.LoadBalancing()}
	trace.Emit(r.proxy.trace, trace.Event{Step: trace.StepRouteAdded, Route: p.key.String(), AppGUID: e.AppID,
		InstanceGUID: e.PrivateInstanceID,
		Detail:       fmt.Sprintf("%s added to the pool of %s (%d endpoint(s), %s)", e.Addr, p.key, p.Len(), entry.LoadBalancing),
		Artifact:     trace.Artifact(entry)})
}

// traceFirst records the first request sent to an endpoint added since
// tracing began; later requests cost one atomic load.
func (p *Proxy) traceFirst(pool *Pool, e *Endpoint, r *http.Request, st *reqState) {
	if !e.traceFirst.Load() || !e.traceFirst.CompareAndSwap(true, false) {
		return
	}
	trace.Emit(p.trace, trace.Event{Step: trace.StepFirstRequest, Route: pool.key.String(), AppGUID: e.AppID,
		InstanceGUID: e.PrivateInstanceID,
		Detail: fmt.Sprintf("first request to %s: %s %s%s -> %d (X-Vcap-Request-Id %s)",
			e.Addr, r.Method, st.host, r.URL.Path, st.status, st.requestID),
		Artifact: trace.Artifact(map[string]any{"request_id": st.requestID, "method": r.Method, "host": st.host,
			"path": r.URL.Path, "endpoint": e.Addr, "tls": e.TLS, "server_cert_domain_san": e.ServerCertDomainSAN,
			"status": st.status, "duration_ms": float64(p.now().Sub(st.start).Microseconds()) / 1000})})
}
