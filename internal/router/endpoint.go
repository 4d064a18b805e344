package router

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/minicf/minicf/internal/mbus"
)

// Endpoint is one backend of a route: an instance's host:port as the route
// emitter announced it. Its identity fields never change after creation; a
// registration that changes them replaces the Endpoint in its pool.
type Endpoint struct {
	Addr                string // host:port, the pool key
	TLS                 bool
	ServerCertDomainSAN string
	AppID               string
	PrivateInstanceID   string
	PrivateInstanceIdx  string
	Protocol            string
	RouteServiceURL     string
	IsolationSegment    string
	AvailabilityZone    string
	Tags                map[string]string
	StaleThreshold      time.Duration
	UpdatedAtNs         int64 // endpoint_updated_at_ns as sent; orders updates

	updated  atomic.Int64 // router clock, unix ns of the last registration
	failedAt atomic.Int64 // unix ns of the last failure that makes it ineligible for a while
	inflight atomic.Int64 // requests in progress, for least-connection
	backend  atomic.Pointer[backendConns]
	// traceFirst is set while the endpoint, added since tracing began,
	// has had no request.
	traceFirst atomic.Bool
}

func newEndpoint(m *mbus.RegistryMessage, defaultStale time.Duration, now time.Time) *Endpoint {
	stale := defaultStale
	if s := time.Duration(m.StaleThresholdInSeconds) * time.Second; s > 0 && s < defaultStale {
		stale = s
	}
	proto := m.Protocol
	if proto == "" {
		proto = "http1"
	}
	e := &Endpoint{
		Addr:                m.Address(),
		TLS:                 m.TLS(),
		ServerCertDomainSAN: m.ServerCertDomainSAN,
		AppID:               m.App,
		PrivateInstanceID:   m.PrivateInstanceID,
		PrivateInstanceIdx:  m.PrivateInstanceIndex,
		Protocol:            proto,
		RouteServiceURL:     m.RouteServiceURL,
		IsolationSegment:    m.IsolationSegment,
		AvailabilityZone:    m.AvailabilityZone,
		Tags:                m.Tags,
		StaleThreshold:      stale,
		UpdatedAtNs:         m.EndpointUpdatedAtNs,
	}
	e.updated.Store(now.UnixNano())
	return e
}

// sameAs reports whether a registration describes this endpoint unchanged, so
// a heartbeat only refreshes its timestamp instead of replacing it. Tags are
// compared by hand: gorouter once spent 8% CPU in fmt.Sprint doing this.
func (e *Endpoint) sameAs(o *Endpoint) bool {
	if e.Addr != o.Addr || e.TLS != o.TLS || e.ServerCertDomainSAN != o.ServerCertDomainSAN ||
		e.AppID != o.AppID || e.PrivateInstanceID != o.PrivateInstanceID ||
		e.PrivateInstanceIdx != o.PrivateInstanceIdx || e.Protocol != o.Protocol ||
		e.RouteServiceURL != o.RouteServiceURL || e.IsolationSegment != o.IsolationSegment ||
		e.AvailabilityZone != o.AvailabilityZone || e.StaleThreshold != o.StaleThreshold ||
		e.UpdatedAtNs != o.UpdatedAtNs || len(e.Tags) != len(o.Tags) {
		return false
	}
	for k, v := range e.Tags {
		if ov, ok := o.Tags[k]; !ok || ov != v {
			return false
		}
	}
	return true
}

// InstanceHeader is the value of X-Cf-Instanceid: the instance guid, or the
// address when the emitter sent none (as gorouter does).
func (e *Endpoint) InstanceHeader() string {
	if e.PrivateInstanceID != "" {
		return e.PrivateInstanceID
	}
	return e.Addr
}

// ttlSeconds is what /routes shows as ttl.
func (e *Endpoint) ttlSeconds() int { return int(e.StaleThreshold / time.Second) }

// Inflight is the number of requests being proxied to this endpoint now.
func (e *Endpoint) Inflight() int64 { return e.inflight.Load() }

func (e *Endpoint) String() string {
	return e.Addr + " (" + e.PrivateInstanceID + " index " + e.PrivateInstanceIdx + " tls " + strconv.FormatBool(e.TLS) + ")"
}
