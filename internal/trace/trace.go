// Package trace is minicf's propagation timeline: every component records
// the steps of flow 1 (an app pushed with a route, up to the first request
// the router sends it) as timestamped events carrying the keys that join
// them: the route, the app guid, the process guid, the instance guid and
// the cell. Cloud Foundry has no such component; it is what a person
// learning route propagation would otherwise piece together from the logs
// of seven components.
//
// Events travel on NATS, one subject per component (minicf.trace.<component>,
// JSON), published by a NATS Emitter that never blocks the component: it
// queues, and drops (and counts) what it cannot send. A Recorder subscribed
// to minicf.trace.> keeps the last few thousand in a ring, so a trace can be
// asked for after the fact, and a Server serves them over HTTP (events,
// a live stream, and the state a flow page draws).
//
// Not every component knows the route: Garden knows the instance and its
// process, the auctioneer the process and the cell. Join puts a route's
// journey together from the keys the events carry (see Join).
package trace

import (
	"encoding/json"
	"strings"
	"time"
)

// Event is one step of flow 1 as one component saw it.
type Event struct {
	// Time is when the step happened, by the emitting component's clock
	// (Emit fills it in when zero).
	Time time.Time `json:"time"`
	// Step is one of the Step constants.
	Step string `json:"step"`
	// Component is the emitter: cc, bbs, auctioneer, garden, rep,
	// route-emitter or router.
	Component string `json:"component"`
	// The join keys, each set where the component knows it. Route is
	// host.domain[/path] in lower case, as the router keys its pools.
	Route        string `json:"route,omitempty"`
	AppGUID      string `json:"app_guid,omitempty"`
	ProcessGUID  string `json:"process_guid,omitempty"`
	InstanceGUID string `json:"instance_guid,omitempty"`
	CellID       string `json:"cell_id,omitempty"`
	// Detail says what happened, in one sentence for people.
	Detail string `json:"detail,omitempty"`
	// Artifact is the thing itself, as the component holds or sends it
	// (see the Step constants for each one's shape).
	Artifact json.RawMessage `json:"artifact,omitempty"`
}

// The steps of flow 1, in the order they happen for one instance. Where a
// step has two names, one of them happens. Each constant's comment names
// the emitting component, the keys the event carries and its artifact.
const (
	// StepRouteMapped: cc; route, app. The route mapping (destination):
	// {route, route_guid, destination_guid, app_guid, process_type, port, protocol}.
	StepRouteMapped = "route-mapped"
	// StepLRPDesired: bbs; process, app. The DesiredLRP as stored:
	// {process_guid, domain, log_guid, instances, ports, routes}; routes is
	// exactly what `minicf cfdot desired-lrps` shows.
	StepLRPDesired = "lrp-desired"
	// StepLRPUpdated: bbs; process, app. Emitted only when the instances or
	// the routes changed; the artifact is the DesiredLRP after the change,
	// plus changed: the list of changed fields.
	StepLRPUpdated = "lrp-updated"
	// StepInstancePlaced: auctioneer; process, cell. {process_guid, index,
	// cell_id, cells}: cells is how many cells took part in the auction.
	StepInstancePlaced = "instance-placed"
	// StepContainerCreated: garden; process, instance, cell. {handle, mode,
	// namespace, container_ip, cell_ip, mapped_ports, bind_ports}.
	StepContainerCreated = "container-created"
	// StepDNATApplied: garden (netin); process, instance, cell. {namespace
	// (the cell's), table, chain, rules}: rules as `iptables -t nat -S`
	// prints them, the PREROUTING jump first. Namespace mode only.
	StepDNATApplied = "dnat-applied"
	// StepDNATNotInProcessMode: garden; process, instance, cell. In process
	// mode there is no network namespace and so no DNAT: the instance's
	// processes listen on host ports of 127.0.0.1 themselves.
	// {mode, mapped_ports, bind_ports}.
	StepDNATNotInProcessMode = "dnat-not-in-process-mode"
	// StepEnvoyListening: rep; process, instance, cell. Emitted once the
	// sidecar's TLS port answers: {address, proxies_to, cn, serial,
	// not_before, not_after, dns_names, ip_addresses, issuer}.
	StepEnvoyListening = "envoy-listening"
	// StepActualLRPRunning: bbs; process, instance, cell. The ActualLRP
	// after StartActualLRP, as `minicf cfdot actual-lrps` shows it.
	StepActualLRPRunning = "actual-lrp-running"
	// StepRouteRegistered: route-emitter; route, app, instance, cell. The
	// router.register message exactly as published on NATS. Only the
	// registrations that a change of the routing table causes are traced,
	// not the heartbeats that repeat them.
	StepRouteRegistered = "route-registered"
	// StepRouteAdded: router; route, app, instance. The pool entry as the
	// router's /routes shows it, once per endpoint new to the pool.
	StepRouteAdded = "route-added"
	// StepFirstRequest: router; route, app, instance. The first request the
	// router sent to a newly added endpoint: {request_id, method, host,
	// path, endpoint, tls, server_cert_domain_san, status, duration_ms}.
	StepFirstRequest = "first-request"
)

// StepInfo describes one step of flow 1 for people and pages.
type StepInfo struct {
	// Order is the step's place in flow 1, from 1; alternatives share it.
	Order int `json:"order"`
	// Steps are the step names of this place: one, or two alternatives.
	Steps     []string `json:"steps"`
	Component string   `json:"component"`
	Title     string   `json:"title"`
	// Why is why the step exists.
	Why string `json:"why"`
}

// Flow is flow 1, in order. This is the one place the order is written down.
//
// Garden writes the DNAT rules while it creates the container (as
// garden-external-networker runs its NetIn calls during creation), before
// any process runs in it, so dnat-applied comes before envoy-listening.
var Flow = []StepInfo{
	{1, []string{StepRouteMapped}, "cc", "route mapped in the Cloud Controller",
		"The Cloud Controller is the source of truth: it records that the route's traffic goes to the app's web process on port 8080."},
	{2, []string{StepLRPDesired, StepLRPUpdated}, "bbs", "LRP desired (or updated) in the BBS",
		"The Cloud Controller turns the app into a DesiredLRP whose routes[\"cf-router\"] carry the hostnames; Diego never sees apps or routes otherwise."},
	{3, []string{StepInstancePlaced}, "auctioneer", "instance placed on a cell",
		"The auctioneer picks the cell with the most room, spreading instances of one process over cells."},
	{4, []string{StepContainerCreated}, "garden", "container created",
		"Garden gives the instance a network namespace and an overlay IP from the cell's /24, so every instance can listen on 8080 and 61001."},
	{5, []string{StepDNATApplied, StepDNATNotInProcessMode}, "garden", "DNAT rules applied",
		"The overlay IP is not reachable as such from the router: a DNAT rule in the cell maps a cell port to the container's envoy port."},
	{6, []string{StepEnvoyListening}, "rep", "envoy listening with the instance identity",
		"The sidecar terminates TLS with a certificate whose SAN is the instance guid, so the router can check it reached the instance it meant (route integrity)."},
	{7, []string{StepActualLRPRunning}, "bbs", "ActualLRP RUNNING",
		"Only when the app and envoy ports answer does the rep tell the BBS where the instance can be reached."},
	{8, []string{StepRouteRegistered}, "route-emitter", "router.register published on NATS",
		"The route emitter joins the ActualLRP's address with the DesiredLRP's hostnames and announces the pair; it repeats it every 20 s as a heartbeat."},
	{9, []string{StepRouteAdded}, "router", "endpoint added to the router's pool",
		"The router adds cell ip:port to the route's pool; requests for the host are balanced over the pool."},
	{10, []string{StepFirstRequest}, "router", "first request served",
		"The router's first request to the new endpoint: TLS to the cell port, through DNAT, envoy, to the app."},
}

// StepOrder is a step's place in Flow (1-based), or 0 for an unknown step.
func StepOrder(step string) int {
	for _, s := range Flow {
		for _, n := range s.Steps {
			if n == step {
				return s.Order
			}
		}
	}
	return 0
}

// Emitter records events. Implementations must not block.
type Emitter interface {
	Emit(Event)
}

// Emit sends e through em; a nil em does nothing. Components call it
// with the Emitter from their Config, which may be nil.
func Emit(em Emitter, e Event) {
	if em == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	em.Emit(e)
}

// Enabled reports whether em records anything, so a component can skip
// building an artifact nobody will see.
func Enabled(em Emitter) bool {
	if em == nil {
		return false
	}
	_, nop := em.(Nop)
	return !nop
}

// Nop drops every event.
type Nop struct{}

// Emit does nothing.
func (Nop) Emit(Event) {}

// Artifact marshals v for Event.Artifact; a value that cannot be
// marshalled gives nil.
func Artifact(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		return raw
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// NormalizeRoute is a route as the router keys its pools: lower case,
// without a scheme, port, query or trailing slash.
func NormalizeRoute(r string) string {
	r = strings.TrimSpace(strings.ToLower(r))
	for _, scheme := range []string{"http://", "https://"} {
		r = strings.TrimPrefix(r, scheme)
	}
	if i := strings.IndexByte(r, '?'); i >= 0 {
		r = r[:i]
	}
	host, path := r, ""
	if i := strings.IndexByte(r, '/'); i >= 0 {
		host, path = r[:i], r[i:]
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return host + strings.TrimRight(path, "/")
}

// short cuts a guid to its first 8 characters for people.
func short(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
