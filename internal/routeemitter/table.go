package routeemitter

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/mbus"
)

// RoutingKey names one entry of the routing table, as in Diego: the routes
// of a DesiredLRP for one container port, and the endpoints that expose that
// port.
type RoutingKey struct {
	ProcessGUID   string
	ContainerPort uint32
}

// Route is one hostname of a cf-router entry of a DesiredLRP. The Cloud
// Controller writes one entry per route mapping; an entry with several
// hostnames gives several routes.
type Route struct {
	Hostname         string
	RouteServiceURL  string
	IsolationSegment string
	Protocol         string
	LoadBalancing    string // options.loadbalancing
}

// Endpoint is a RUNNING, routable ActualLRP as the table keeps it.
type Endpoint struct {
	ProcessGUID  string
	InstanceGUID string
	CellID       string
	Index        int32
	Address      string            // the cell's IP
	Ports        []bbs.PortMapping // the first mapping of each container port
	Since        int64
	Tag          bbs.ModificationTag
}

// mapping is the port mapping of container port cp.
func (e *Endpoint) mapping(cp uint32) (bbs.PortMapping, bool) {
	for _, p := range e.Ports {
		if p.ContainerPort == cp {
			return p, true
		}
	}
	return bbs.PortMapping{}, false
}

// addresses are the host:port the router keys this endpoint's pools on,
// one per container port (the TLS port when the sidecar's is mapped).
func (e *Endpoint) addresses() []string {
	var out []string
	for _, p := range e.Ports {
		port := p.HostTLSProxyPort
		if port == 0 {
			port = p.HostPort
		}
		if port != 0 {
			out = append(out, net.JoinHostPort(e.Address, strconv.Itoa(int(port))))
		}
	}
	return out
}

type desiredEntry struct {
	lrp    *bbs.DesiredLRP // the routing info as received
	routes map[uint32][]Route
}

// regKey is the router's identity of a registration: one URI at one
// host:port. Two messages with the same key replace each other in a router.
type regKey struct {
	uri  string
	addr string
}

// Changes are the messages one change of the table calls for, and the
// address collisions it found.
type Changes struct {
	Registrations   []*mbus.RegistryMessage
	Unregistrations []*mbus.RegistryMessage
	Collisions      []Collision
}

// Empty reports whether nothing needs to be sent or logged.
func (c Changes) Empty() bool {
	return len(c.Registrations) == 0 && len(c.Unregistrations) == 0 && len(c.Collisions) == 0
}

func (c *Changes) add(o Changes) {
	c.Registrations = append(c.Registrations, o.Registrations...)
	c.Unregistrations = append(c.Unregistrations, o.Unregistrations...)
	c.Collisions = append(c.Collisions, o.Collisions...)
}

// Collision is two instances reported at the same host:port: one of them is
// stale (a missed removal, or a cell that reused a port), and a router would
// send one instance's requests to the other were it not for route integrity.
type Collision struct {
	Address           string
	InstanceGUID      string
	ProcessGUID       string
	OtherInstanceGUID string
	OtherProcessGUID  string
}

// Table is the route emitter's routing table: the cf-router routes of every
// DesiredLRP it knows, keyed like Diego's by (process guid, container port),
// joined with the RUNNING, routable ActualLRPs that expose those ports.
// Every change returns the router.register and router.unregister messages
// that take a router from the old table to the new one. Changes are ordered
// by modification tag: an update older than what the table holds is ignored.
//
// A Table is pure (no I/O, no clock) and not safe for concurrent use.
type Table struct {
	desired map[string]*desiredEntry
	actuals map[string]map[string]*Endpoint // process guid → instance guid
	// msgs holds the registrations of every process guid, as last computed.
	msgs   map[string]map[regKey]*mbus.RegistryMessage
	routes int
	// addrs indexes endpoint addresses: host:port → instance guid → process guid.
	addrs map[string]map[string]string
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{
		desired: map[string]*desiredEntry{},
		actuals: map[string]map[string]*Endpoint{},
		msgs:    map[string]map[regKey]*mbus.RegistryMessage{},
		addrs:   map[string]map[string]string{},
	}
}

// RouteCount is the number of (route × endpoint) registrations: what a
// heartbeat publishes.
func (t *Table) RouteCount() int { return t.routes }

// HasDesired reports whether the table holds the routing info of pg.
func (t *Table) HasDesired(pg string) bool { return t.desired[pg] != nil }

func (t *Table) desiredLRP(pg string) *bbs.DesiredLRP {
	if d := t.desired[pg]; d != nil {
		return d.lrp
	}
	return nil
}

// Routes are the routes of one routing key, sorted by hostname.
func (t *Table) Routes(key RoutingKey) []Route {
	d := t.desired[key.ProcessGUID]
	if d == nil {
		return nil
	}
	return slices.Clone(d.routes[key.ContainerPort])
}

// Endpoints are the endpoints of process guid pg, by index then instance guid.
func (t *Table) Endpoints(pg string) []Endpoint {
	var out []Endpoint
	for _, e := range t.actuals[pg] {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.InstanceGUID, b.InstanceGUID))
	})
	return out
}

// ProcessGUIDs lists every process guid with routes or endpoints, sorted.
func (t *Table) ProcessGUIDs() []string {
	set := map[string]struct{}{}
	for pg := range t.desired {
		set[pg] = struct{}{}
	}
	for pg := range t.actuals {
		set[pg] = struct{}{}
	}
	return slices.Sorted(maps.Keys(set))
}

// Messages returns every registration in the table, as a heartbeat sends
// them: sorted, with endpoint_updated_at_ns left out (the endpoint did not
// change, so the router must not record a registration latency for it).
func (t *Table) Messages() []*mbus.RegistryMessage {
	out := make([]*mbus.RegistryMessage, 0, t.routes)
	for _, set := range t.msgs {
		for _, m := range set {
			c := *m
			c.EndpointUpdatedAtNs = 0
			out = append(out, &c)
		}
	}
	sortMessages(out)
	return out
}

// SetDesired records the routing info of a DesiredLRP (created or changed),
// unless the table holds a newer one.
func (t *Table) SetDesired(d *bbs.DesiredLRP) Changes {
	if d == nil || d.ProcessGUID == "" {
		return Changes{}
	}
	if old := t.desired[d.ProcessGUID]; old != nil && !old.lrp.ModificationTag.SucceededBy(d.ModificationTag) {
		return Changes{}
	}
	t.desired[d.ProcessGUID] = &desiredEntry{lrp: d, routes: routesOf(d)}
	return t.refresh(d.ProcessGUID)
}

// RemoveDesired forgets a DesiredLRP, unless the table holds a newer one.
func (t *Table) RemoveDesired(d *bbs.DesiredLRP) Changes {
	if d == nil {
		return Changes{}
	}
	old := t.desired[d.ProcessGUID]
	if old == nil || !notOlder(old.lrp.ModificationTag, d.ModificationTag) {
		return Changes{}
	}
	delete(t.desired, d.ProcessGUID)
	return t.refresh(d.ProcessGUID)
}

// SetActual records an ActualLRP: a RUNNING, routable one becomes (or
// updates) an endpoint; any other state removes the instance's endpoint.
// An update older than the stored endpoint is ignored.
func (t *Table) SetActual(a *bbs.ActualLRP) Changes {
	if a == nil {
		return Changes{}
	}
	if a.State != bbs.StateRunning || !a.IsRoutable() || a.InstanceGUID == "" {
		return t.RemoveActual(a)
	}
	pg := a.ProcessGUID
	old := t.actuals[pg][a.InstanceGUID]
	if old != nil && !old.Tag.SucceededBy(a.ModificationTag) {
		return Changes{}
	}
	ep := endpointOf(a)
	collisions := t.index(old, ep)
	if t.actuals[pg] == nil {
		t.actuals[pg] = map[string]*Endpoint{}
	}
	t.actuals[pg][a.InstanceGUID] = ep
	ch := t.refresh(pg)
	ch.Collisions = collisions
	return ch
}

// RemoveActual removes the endpoint of an instance, unless the table holds
// a newer version of it.
func (t *Table) RemoveActual(a *bbs.ActualLRP) Changes {
	if a == nil {
		return Changes{}
	}
	old := t.actuals[a.ProcessGUID][a.InstanceGUID]
	if old == nil || !notOlder(old.Tag, a.ModificationTag) {
		return Changes{}
	}
	t.index(old, nil)
	delete(t.actuals[a.ProcessGUID], a.InstanceGUID)
	if len(t.actuals[a.ProcessGUID]) == 0 {
		delete(t.actuals, a.ProcessGUID)
	}
	return t.refresh(a.ProcessGUID)
}

// Apply applies one BBS event. actual_lrp_crashed changes nothing: the
// instance's own changed or removed event carries the change.
func (t *Table) Apply(e bbs.Event) (Changes, error) {
	c, err := decodeEvent(e)
	if err != nil {
		return Changes{}, err
	}
	return t.apply(c), nil
}

// change is a decoded event: at most one field is set.
type change struct {
	setDesired, removeDesired *bbs.DesiredLRP
	setActual, removeActual   *bbs.ActualLRP
}

func (t *Table) apply(c change) Changes {
	switch {
	case c.setDesired != nil:
		return t.SetDesired(c.setDesired)
	case c.removeDesired != nil:
		return t.RemoveDesired(c.removeDesired)
	case c.setActual != nil:
		return t.SetActual(c.setActual)
	case c.removeActual != nil:
		return t.RemoveActual(c.removeActual)
	}
	return Changes{}
}

// runningActual is the ActualLRP an event leaves behind, when it is one the
// table would route to.
func (c change) runningActual() *bbs.ActualLRP {
	if a := c.setActual; a != nil && a.State == bbs.StateRunning && a.IsRoutable() {
		return a
	}
	return nil
}

func decodeEvent(e bbs.Event) (change, error) {
	bad := func(err error) (change, error) {
		return change{}, fmt.Errorf("cannot decode %s event: %w", e.Type, err)
	}
	switch e.Type {
	case bbs.EventDesiredLRPCreated:
		var p bbs.DesiredLRPCreatedEvent
		if err := json.Unmarshal(e.Data, &p); err != nil || p.DesiredLRP == nil {
			return bad(orMissing(err, "desired_lrp"))
		}
		return change{setDesired: p.DesiredLRP}, nil
	case bbs.EventDesiredLRPChanged:
		var p bbs.DesiredLRPChangedEvent
		if err := json.Unmarshal(e.Data, &p); err != nil || p.After == nil {
			return bad(orMissing(err, "after"))
		}
		return change{setDesired: p.After}, nil
	case bbs.EventDesiredLRPRemoved:
		var p bbs.DesiredLRPRemovedEvent
		if err := json.Unmarshal(e.Data, &p); err != nil || p.DesiredLRP == nil {
			return bad(orMissing(err, "desired_lrp"))
		}
		return change{removeDesired: p.DesiredLRP}, nil
	case bbs.EventActualLRPInstanceCreated:
		var p bbs.ActualLRPInstanceCreatedEvent
		if err := json.Unmarshal(e.Data, &p); err != nil || p.ActualLRP == nil {
			return bad(orMissing(err, "actual_lrp"))
		}
		return change{setActual: p.ActualLRP}, nil
	case bbs.EventActualLRPInstanceChanged:
		var p bbs.ActualLRPInstanceChangedEvent
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return bad(err)
		}
		after := &bbs.ActualLRP{
			ActualLRPKey: p.ActualLRPKey, ActualLRPInstanceKey: p.ActualLRPInstanceKey,
			ActualLRPNetInfo: p.After.ActualLRPNetInfo, State: p.After.State, CrashCount: p.After.CrashCount,
			CrashReason: p.After.CrashReason, PlacementError: p.After.PlacementError, Since: p.After.Since,
			ModificationTag: p.After.ModificationTag, Presence: p.After.Presence, Routable: p.After.Routable,
		}
		return change{setActual: after}, nil
	case bbs.EventActualLRPInstanceRemoved:
		var p bbs.ActualLRPInstanceRemovedEvent
		if err := json.Unmarshal(e.Data, &p); err != nil || p.ActualLRP == nil {
			return bad(orMissing(err, "actual_lrp"))
		}
		return change{removeActual: p.ActualLRP}, nil
	}
	// actual_lrp_crashed, task events and anything newer: nothing to route.
	return change{}, nil
}

func orMissing(err error, field string) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%s is missing", field)
}

// Diff returns the messages that take a router from t to next.
func (t *Table) Diff(next *Table) Changes {
	var ch Changes
	for _, pg := range unionKeys(t.msgs, next.msgs) {
		ch.add(diff(t.msgs[pg], next.msgs[pg]))
	}
	sortMessages(ch.Registrations)
	sortMessages(ch.Unregistrations)
	return ch
}

// Collisions lists the addresses held by more than one instance: one entry
// per address, naming the two lowest instance guids.
func (t *Table) Collisions() []Collision {
	var out []Collision
	for addr, igs := range t.addrs {
		if len(igs) < 2 {
			continue
		}
		keys := slices.Sorted(maps.Keys(igs))
		out = append(out, Collision{Address: addr, InstanceGUID: keys[1], ProcessGUID: igs[keys[1]],
			OtherInstanceGUID: keys[0], OtherProcessGUID: igs[keys[0]]})
	}
	slices.SortFunc(out, func(a, b Collision) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

// index moves an instance's addresses from old to ep in the address index
// (either may be nil) and returns the collisions ep's new addresses make.
func (t *Table) index(old, ep *Endpoint) []Collision {
	had := map[string]bool{}
	if old != nil {
		for _, a := range old.addresses() {
			had[a] = true
			if igs := t.addrs[a]; igs != nil {
				delete(igs, old.InstanceGUID)
				if len(igs) == 0 {
					delete(t.addrs, a)
				}
			}
		}
	}
	if ep == nil {
		return nil
	}
	var out []Collision
	for _, a := range ep.addresses() {
		igs := t.addrs[a]
		if igs == nil {
			igs = map[string]string{}
			t.addrs[a] = igs
		}
		if !had[a] {
			for _, other := range slices.Sorted(maps.Keys(igs)) {
				if other != ep.InstanceGUID {
					out = append(out, Collision{Address: a, InstanceGUID: ep.InstanceGUID, ProcessGUID: ep.ProcessGUID,
						OtherInstanceGUID: other, OtherProcessGUID: igs[other]})
				}
			}
		}
		igs[ep.InstanceGUID] = ep.ProcessGUID
	}
	return out
}

// refresh recomputes the registrations of pg and returns the difference.
func (t *Table) refresh(pg string) Changes {
	before := t.msgs[pg]
	after := t.compute(pg)
	t.routes += len(after) - len(before)
	if len(after) == 0 {
		delete(t.msgs, pg)
	} else {
		t.msgs[pg] = after
	}
	ch := diff(before, after)
	sortMessages(ch.Registrations)
	sortMessages(ch.Unregistrations)
	return ch
}

// compute builds the registrations of pg: every route of every container
// port, on every endpoint that maps that port and whose index is below the
// desired instance count (a scale-down unregisters the extra instances at
// once, before the cells have stopped them).
func (t *Table) compute(pg string) map[regKey]*mbus.RegistryMessage {
	d := t.desired[pg]
	if d == nil || len(d.routes) == 0 || len(t.actuals[pg]) == 0 {
		return nil
	}
	out := map[regKey]*mbus.RegistryMessage{}
	for _, ep := range t.actuals[pg] {
		if ep.Index >= d.lrp.Instances {
			continue
		}
		for cp, routes := range d.routes {
			pm, ok := ep.mapping(cp)
			if !ok || (pm.HostPort == 0 && pm.HostTLSProxyPort == 0) {
				continue
			}
			for _, r := range routes {
				m := registryMessage(d.lrp, ep, pm, r)
				k := regKey{uri: r.Hostname, addr: m.Address()}
				if prev, ok := out[k]; ok && !newerEndpoint(m, prev) {
					continue // an address collision inside one LRP: the newer instance wins
				}
				out[k] = m
			}
		}
	}
	return out
}

func newerEndpoint(a, b *mbus.RegistryMessage) bool {
	if a.EndpointUpdatedAtNs != b.EndpointUpdatedAtNs {
		return a.EndpointUpdatedAtNs > b.EndpointUpdatedAtNs
	}
	return a.PrivateInstanceID > b.PrivateInstanceID
}

// diff is the messages from one set of registrations to another: a
// registration for what is new or different, an unregistration for what is
// gone. A registration that changes only fields other than the URI and the
// address replaces the old one in the router, so it needs no unregistration.
func diff(before, after map[regKey]*mbus.RegistryMessage) Changes {
	var ch Changes
	for k, m := range after {
		if p, ok := before[k]; !ok || !sameRegistration(p, m) {
			ch.Registrations = append(ch.Registrations, m)
		}
	}
	for k, m := range before {
		if _, ok := after[k]; !ok {
			ch.Unregistrations = append(ch.Unregistrations, m)
		}
	}
	return ch
}

// sameRegistration compares two messages for the same URI and address,
// ignoring endpoint_updated_at_ns as Diego ignores since.
func sameRegistration(a, b *mbus.RegistryMessage) bool {
	return a.Host == b.Host && a.Port == b.Port && a.TLSPort == b.TLSPort && slices.Equal(a.URIs, b.URIs) &&
		a.App == b.App && a.PrivateInstanceID == b.PrivateInstanceID && a.PrivateInstanceIndex == b.PrivateInstanceIndex &&
		a.ServerCertDomainSAN == b.ServerCertDomainSAN && a.RouteServiceURL == b.RouteServiceURL &&
		a.IsolationSegment == b.IsolationSegment && a.StaleThresholdInSeconds == b.StaleThresholdInSeconds &&
		a.Protocol == b.Protocol && maps.Equal(a.Tags, b.Tags) && a.AvailabilityZone == b.AvailabilityZone &&
		sameOptions(a.Options, b.Options)
}

func sameOptions(a, b *mbus.RouteOptions) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func sortMessages(ms []*mbus.RegistryMessage) {
	slices.SortFunc(ms, func(a, b *mbus.RegistryMessage) int {
		return cmp.Or(cmp.Compare(firstURI(a), firstURI(b)), cmp.Compare(a.Address(), b.Address()),
			cmp.Compare(a.PrivateInstanceID, b.PrivateInstanceID))
	})
}

func firstURI(m *mbus.RegistryMessage) string {
	if len(m.URIs) == 0 {
		return ""
	}
	return m.URIs[0]
}

// notOlder reports whether a removal tagged next may remove a record tagged
// stored: it must be the same version or a newer one.
func notOlder(stored, next bbs.ModificationTag) bool {
	return stored == next || stored.SucceededBy(next)
}

// routesOf groups the cf-router routes of d by container port, one Route
// per hostname. Routes the BBS would have refused (bad JSON) count as none.
func routesOf(d *bbs.DesiredLRP) map[uint32][]Route {
	cf, err := d.Routes.CFRoutes()
	if err != nil || len(cf) == 0 {
		return nil
	}
	out := map[uint32][]Route{}
	for _, r := range cf {
		for _, h := range r.Hostnames {
			if h == "" {
				continue
			}
			out[r.Port] = append(out[r.Port], Route{Hostname: h, RouteServiceURL: r.RouteServiceURL,
				IsolationSegment: r.IsolationSegment, Protocol: r.Protocol, LoadBalancing: r.Options["loadbalancing"]})
		}
	}
	for p := range out {
		slices.SortStableFunc(out[p], func(a, b Route) int { return cmp.Compare(a.Hostname, b.Hostname) })
	}
	return out
}

func endpointOf(a *bbs.ActualLRP) *Endpoint {
	ep := &Endpoint{ProcessGUID: a.ProcessGUID, InstanceGUID: a.InstanceGUID, CellID: a.CellID, Index: a.Index,
		Address: a.Address, Since: a.Since, Tag: a.ModificationTag}
	// Two mappings may share a container port (the sidecar's 61001 and the
	// C2C 61443): the first wins, as in Diego.
	for _, p := range a.Ports {
		if _, dup := ep.mapping(p.ContainerPort); !dup {
			ep.Ports = append(ep.Ports, p)
		}
	}
	return ep
}

func unionKeys[V any](a, b map[string]V) []string {
	set := map[string]struct{}{}
	for k := range a {
		set[k] = struct{}{}
	}
	for k := range b {
		set[k] = struct{}{}
	}
	return slices.Sorted(maps.Keys(set))
}
