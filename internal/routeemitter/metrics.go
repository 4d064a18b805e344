package routeemitter

import "github.com/prometheus/client_golang/prometheus"

// Reasons a message was sent: the value of the reason label.
const (
	reasonEvent       = "event"        // a BBS event changed the table
	reasonSync        = "sync"         // a sync with the BBS changed the table
	reasonHeartbeat   = "heartbeat"    // the periodic re-registration of everything
	reasonRouterStart = "router_start" // a router announced itself (or NATS reconnected)
	reasonResend      = "resend"       // an unregistration sent again, NATS being at-most-once
)

// metrics are the emitter's Prometheus series, the twins of Diego's
// RoutesTotal, RoutesRegistered/RoutesSynced, RoutesUnregistered,
// RouteEmitterSyncDuration and AddressCollisions.
type metrics struct {
	routes          prometheus.Gauge
	registrations   *prometheus.CounterVec
	unregistrations *prometheus.CounterVec
	syncDuration    prometheus.Histogram
	collisions      prometheus.Counter
	publishErrors   prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		routes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "minicf_route_emitter_routes_total",
			Help: "(route × endpoint) registrations in the routing table: what one heartbeat publishes.",
		}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "minicf_route_emitter_registrations_sent_total",
			Help: "router.register messages published, by reason: event, sync, heartbeat, router_start.",
		}, []string{"reason"}),
		unregistrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "minicf_route_emitter_unregistrations_sent_total",
			Help: "router.unregister messages published, by reason: event, sync, resend.",
		}, []string{"reason"}),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "minicf_route_emitter_sync_duration_seconds",
			Help:    "Time of a full sync with the BBS, from the first request to the last message.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		collisions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "minicf_route_emitter_address_collisions_total",
			Help: "Times two different instances were seen at the same host:port.",
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "minicf_route_emitter_publish_errors_total",
			Help: "Messages NATS refused to publish.",
		}),
	}
	for _, c := range []prometheus.Collector{m.routes, m.registrations, m.unregistrations, m.syncDuration, m.collisions, m.publishErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Every series exists from the start, so a dashboard sees zeros, not gaps.
	for _, r := range []string{reasonEvent, reasonSync, reasonHeartbeat, reasonRouterStart} {
		m.registrations.WithLabelValues(r)
	}
	for _, r := range []string{reasonEvent, reasonSync, reasonResend} {
		m.unregistrations.WithLabelValues(r)
	}
	return m, nil
}
