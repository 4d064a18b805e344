// Package router is minicf's GoRouter: the HTTP edge of the foundation.
//
// It owns the route registry (host and context path → endpoint pool), fed by
// router.register and router.unregister on NATS; the pools' load balancing
// (round-robin or least-connection, per route); pruning of endpoints whose
// registrations went stale; the proxy with its retry and route-integrity
// rules (TLS to the instance's sidecar, checked against the instance guid);
// gorouter's request and response headers and error codes; the access log;
// and the status server (/health, /routes, /metrics).
package router
