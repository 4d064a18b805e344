package router

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the router's Prometheus series, named after gorouter's where
// one exists. Each router has its own prometheus.Registry so that tests and
// several components in one process never collide.
type Metrics struct {
	Registry *prometheus.Registry

	requests           [6]prometheus.Counter // by status class: xxx, 1xx..5xx
	latency            prometheus.Histogram
	registrations      *prometheus.CounterVec
	unregistrations    prometheus.Counter
	pruned             prometheus.Counter
	badMessages        prometheus.Counter
	backendTLSFailures *prometheus.CounterVec
	registrationDelay  prometheus.Histogram
}

// NewMetrics builds the series; routes and endpoints are read from reg, and
// dropped reports NATS messages lost to slow-consumer limits.
func NewMetrics(reg *Registry, dropped func() int64) *Metrics {
	pr := prometheus.NewRegistry()
	m := &Metrics{Registry: pr}
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "minicf_router_requests_total",
		Help: "Requests handled, by response status class.",
	}, []string{"status_class"})
	for i, c := range []string{"xxx", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		m.requests[i] = reqs.WithLabelValues(c)
	}
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "minicf_router_request_duration_seconds",
		Help:    "Time from the request's arrival to the end of its response.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	m.registrations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "minicf_router_registrations_total",
		Help: "router.register effects per route: added, updated, refreshed (heartbeat) or ignored (older than the stored endpoint).",
	}, []string{"result"})
	m.unregistrations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "minicf_router_unregistrations_total",
		Help: "Endpoints removed by router.unregister.",
	})
	m.pruned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "minicf_router_routes_pruned_total",
		Help: "Endpoints removed because their registration went stale or their TLS identity failed.",
	})
	m.badMessages = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "minicf_router_invalid_messages_total",
		Help: "NATS messages that were not valid registry messages and were dropped.",
	})
	m.backendTLSFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "minicf_router_backend_tls_failures_total",
		Help: "TLS failures towards backends: hostname_mismatch (backend_invalid_id), untrusted_certificate, not_tls, handshake_failed.",
	}, []string{"reason"})
	m.registrationDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "minicf_router_route_registration_latency_seconds",
		Help:    "From endpoint_updated_at_ns to the endpoint being added to the table.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	routes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "minicf_router_total_routes",
		Help: "Routes (host and path) in the table.",
	}, func() float64 { r, _ := reg.Counts(); return float64(r) })
	eps := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "minicf_router_total_endpoints",
		Help: "Endpoints over all routes.",
	}, func() float64 { _, e := reg.Counts(); return float64(e) })
	pr.MustRegister(reqs, m.latency, m.registrations, m.unregistrations, m.pruned,
		m.badMessages, m.backendTLSFailures, m.registrationDelay, routes, eps)
	if dropped != nil {
		pr.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "minicf_router_nats_dropped_messages_total",
			Help: "NATS messages dropped because the router could not keep up (slow consumer).",
		}, func() float64 { return float64(dropped()) }))
	}
	for _, r := range []string{"added", "updated", "refreshed", "ignored"} {
		m.registrations.WithLabelValues(r)
	}
	for _, r := range []string{tlsHostnameMismatch.String(), tlsUntrusted.String(), tlsNotTLS.String(), tlsHandshake.String()} {
		m.backendTLSFailures.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) observeRequest(status int, d time.Duration) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	m.requests[class].Inc()
	m.latency.Observe(d.Seconds())
}
