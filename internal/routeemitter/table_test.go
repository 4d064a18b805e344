package routeemitter

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/mbus"
)

func routable(a *bbs.ActualLRP, ok bool, tagIndex uint32) *bbs.ActualLRP {
	c := *a
	c.Routable = &ok
	c.ModificationTag.Index = tagIndex
	return &c
}

// stateKeepingKey is a with another state and tag, same instance key (what
// a changed event carries: Diego's CRASHED and CLAIMED keep the key).
func stateKeepingKey(a *bbs.ActualLRP, state string, tagIndex uint32) *bbs.ActualLRP {
	c := *a
	c.State = state
	c.ModificationTag.Index = tagIndex
	if state != bbs.StateRunning {
		c.ActualLRPNetInfo = bbs.ActualLRPNetInfo{}
	}
	return &c
}

// unclaimed is the slot of a after the BBS unclaimed it: no instance key.
func unclaimed(a *bbs.ActualLRP, tagIndex uint32) *bbs.ActualLRP {
	c := stateKeepingKey(a, bbs.StateUnclaimed, tagIndex)
	c.ActualLRPInstanceKey = bbs.ActualLRPInstanceKey{}
	return c
}

func withPorts(a *bbs.ActualLRP, tagIndex uint32, ports ...bbs.PortMapping) *bbs.ActualLRP {
	c := *a
	c.Ports = ports
	c.ModificationTag.Index = tagIndex
	return &c
}

func withRoutes(d *bbs.DesiredLRP, tagIndex uint32, rs ...bbs.CFRoute) *bbs.DesiredLRP {
	c := *d
	c.Routes = bbs.Routes{}.SetCFRoutes(rs)
	c.ModificationTag.Index = tagIndex
	return &c
}

func withInstances(d *bbs.DesiredLRP, n int32, tagIndex uint32) *bbs.DesiredLRP {
	c := *d
	c.Instances = n
	c.ModificationTag.Index = tagIndex
	return &c
}

func TestTableDiffs(t *testing.T) {
	d := desired("pg", 2, 1, "web.example.com")
	d2 := desired("pg", 2, 1, "web.example.com", "api.example.com")
	a0 := running("pg", 0, "ig-0", 61001, 2)
	a1 := running("pg", 1, "ig-1", 61002, 2)
	claimed0 := stateKeepingKey(a0, bbs.StateClaimed, 1)
	const (
		web0 = "web.example.com 10.0.0.1:61001 ig-0"
		web1 = "web.example.com 10.0.0.1:61002 ig-1"
		api0 = "api.example.com 10.0.0.1:61001 ig-0"
		api1 = "api.example.com 10.0.0.1:61002 ig-1"
	)
	base := []bbs.Event{desiredCreated(d), actualCreated(a0), actualCreated(a1)}
	cases := []struct {
		name       string
		setup      []bbs.Event
		step       []bbs.Event
		reg, unreg []string
		collisions int
	}{
		{name: "routes without instances register nothing",
			step: []bbs.Event{desiredCreated(d2)}},
		{name: "a running instance gets every route",
			setup: []bbs.Event{desiredCreated(d2)}, step: []bbs.Event{actualCreated(a0)},
			reg: []string{api0, web0}},
		{name: "claimed then started (changed event) registers",
			setup: []bbs.Event{desiredCreated(d), actualCreated(claimed0)},
			step:  []bbs.Event{actualChanged(claimed0, a0)}, reg: []string{web0}},
		{name: "an instance seen before its routes registers when they arrive",
			setup: []bbs.Event{actualCreated(a0)}, step: []bbs.Event{desiredCreated(d)}, reg: []string{web0}},
		{name: "claim by a cell (removed unclaimed, created claimed) registers nothing",
			setup: []bbs.Event{desiredCreated(d), actualCreated(unclaimed(a0, 0))},
			step:  []bbs.Event{actualRemoved(unclaimed(a0, 0)), actualCreated(claimed0)}},
		{name: "crashed (changed, same key) unregisters",
			setup: base, step: []bbs.Event{actualChanged(a0, stateKeepingKey(a0, bbs.StateCrashed, 3))},
			unreg: []string{web0}},
		{name: "crash restart (removed running, created unclaimed) unregisters",
			setup: base, step: []bbs.Event{actualRemoved(a0), actualCreated(unclaimed(a0, 3))},
			unreg: []string{web0}},
		{name: "unclaimed by the BBS (changed to UNCLAIMED) unregisters",
			setup: base, step: []bbs.Event{actualChanged(a0, stateKeepingKey(a0, bbs.StateUnclaimed, 3))},
			unreg: []string{web0}},
		{name: "routable false unregisters",
			setup: base, step: []bbs.Event{actualChanged(a0, routable(a0, false, 3))}, unreg: []string{web0}},
		{name: "routable again registers",
			setup: append(slices.Clone(base), actualChanged(a0, routable(a0, false, 3))),
			step:  []bbs.Event{actualChanged(routable(a0, false, 3), routable(a0, true, 4))}, reg: []string{web0}},
		{name: "instance removed unregisters",
			setup: base, step: []bbs.Event{actualRemoved(a1)}, unreg: []string{web1}},
		{name: "route added registers it on every instance",
			setup: base, step: []bbs.Event{desiredChanged(d, withRoutes(d, 2,
				bbs.CFRoute{Hostnames: []string{"web.example.com"}, Port: 8080},
				bbs.CFRoute{Hostnames: []string{"api.example.com"}, Port: 8080}))},
			reg: []string{api0, api1}},
		{name: "route removed unregisters it from every instance",
			setup: []bbs.Event{desiredCreated(d2), actualCreated(a0), actualCreated(a1)},
			step: []bbs.Event{desiredChanged(d2, withRoutes(d2, 2,
				bbs.CFRoute{Hostnames: []string{"api.example.com"}, Port: 8080}))},
			unreg: []string{web0, web1}},
		{name: "scale-down unregisters the extra instances at once",
			setup: base, step: []bbs.Event{desiredChanged(d, withInstances(d, 1, 2))}, unreg: []string{web1}},
		{name: "scale back up before the instance stopped registers it again",
			setup: append(slices.Clone(base), desiredChanged(d, withInstances(d, 1, 2))),
			step:  []bbs.Event{desiredChanged(withInstances(d, 1, 2), withInstances(d, 2, 3))}, reg: []string{web1}},
		{name: "an index beyond the desired count is not registered",
			setup: []bbs.Event{desiredCreated(withInstances(d, 1, 1))}, step: []bbs.Event{actualCreated(a1)}},
		{name: "desired removed unregisters everything",
			setup: base, step: []bbs.Event{desiredRemoved(d)}, unreg: []string{web0, web1}},
		{name: "an older desired change is ignored",
			setup: []bbs.Event{desiredCreated(withInstances(d, 2, 5)), actualCreated(a0)},
			step:  []bbs.Event{desiredChanged(d, withRoutes(d, 4, bbs.CFRoute{Hostnames: []string{"old.example.com"}, Port: 8080}))}},
		{name: "an older desired removal is ignored",
			setup: []bbs.Event{desiredCreated(withInstances(d, 2, 5)), actualCreated(a0)},
			step:  []bbs.Event{desiredRemoved(withInstances(d, 2, 4))}},
		{name: "an older instance update is ignored",
			setup: []bbs.Event{desiredCreated(d), actualCreated(withPorts(a0, 3, bbs.PortMapping{ContainerPort: 8080, HostTLSProxyPort: 61001}))},
			step:  []bbs.Event{actualChanged(a0, withPorts(a0, 2, bbs.PortMapping{ContainerPort: 8080, HostTLSProxyPort: 61009}))}},
		{name: "an older instance removal is ignored",
			setup: []bbs.Event{desiredCreated(d), actualCreated(routable(a0, true, 3))},
			step:  []bbs.Event{actualRemoved(a0)}},
		{name: "the same event twice changes nothing the second time",
			setup: base, step: []bbs.Event{actualCreated(a0), desiredCreated(d)}},
		{name: "a new desired epoch (re-created LRP) replaces the routes",
			setup: base, step: []bbs.Event{desiredCreated(withRoutes(&bbs.DesiredLRP{ProcessGUID: "pg", Domain: bbs.DomainCFApps,
				Instances: 2, LogGUID: "app-pg", ModificationTag: tag("new-epoch", 0)}, 0,
				bbs.CFRoute{Hostnames: []string{"api.example.com"}, Port: 8080}))},
			reg: []string{api0, api1}, unreg: []string{web0, web1}},
		{name: "a route service bound re-registers without unregistering",
			setup: base, step: []bbs.Event{desiredChanged(d, withRoutes(d, 2,
				bbs.CFRoute{Hostnames: []string{"web.example.com"}, Port: 8080, RouteServiceURL: "https://rs.example.com"}))},
			reg: []string{web0, web1}},
		{name: "a new host port moves the registration",
			setup: base, step: []bbs.Event{actualChanged(a0, withPorts(a0, 3, bbs.PortMapping{ContainerPort: 8080, HostTLSProxyPort: 61009}))},
			reg: []string{"web.example.com 10.0.0.1:61009 ig-0"}, unreg: []string{web0}},
		{name: "without a sidecar the plain host port is the address",
			setup: []bbs.Event{desiredCreated(d)},
			step:  []bbs.Event{actualCreated(withPorts(a0, 2, bbs.PortMapping{ContainerPort: 8080, HostPort: 61100}))},
			reg:   []string{"web.example.com 10.0.0.1:61100 ig-0"}},
		{name: "a route on a port the instance does not map registers nothing",
			setup: []bbs.Event{desiredCreated(withRoutes(d, 1, bbs.CFRoute{Hostnames: []string{"x.example.com"}, Port: 9090}))},
			step:  []bbs.Event{actualCreated(a0)}},
		{name: "the first mapping of a container port wins",
			setup: []bbs.Event{desiredCreated(d)},
			step: []bbs.Event{actualCreated(withPorts(a0, 2,
				bbs.PortMapping{ContainerPort: 8080, ContainerTLSProxyPort: 61001, HostTLSProxyPort: 61001},
				bbs.PortMapping{ContainerPort: 8080, ContainerTLSProxyPort: 61443, HostTLSProxyPort: 61444}))},
			reg: []string{web0}},
		{name: "two instances at one address are a collision",
			setup: []bbs.Event{desiredCreated(d), actualCreated(a0)},
			step:  []bbs.Event{actualCreated(running("pg", 1, "ig-1", 61001, 2))},
			reg:   []string{"web.example.com 10.0.0.1:61001 ig-1"}, collisions: 1},
		{name: "actual_lrp_crashed alone changes nothing",
			setup: base, step: []bbs.Event{event(bbs.EventActualLRPCrashed, bbs.ActualLRPCrashedEvent{
				ActualLRPKey: a0.ActualLRPKey, ActualLRPInstanceKey: a0.ActualLRPInstanceKey, CrashCount: 1})}},
		{name: "a desired change of metric tags re-registers",
			setup: base, step: []bbs.Event{desiredChanged(d, func() *bbs.DesiredLRP {
				c := *d
				c.MetricTags = map[string]bbs.MetricTagValue{"app_name": {Static: "renamed"}}
				c.ModificationTag.Index = 2
				return &c
			}())},
			reg: []string{web0, web1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := NewTable()
			for _, e := range tc.setup {
				if _, err := tb.Apply(e); err != nil {
					t.Fatal(err)
				}
			}
			var ch Changes
			for _, e := range tc.step {
				c, err := tb.Apply(e)
				if err != nil {
					t.Fatal(err)
				}
				ch.add(c)
			}
			if got, want := shorts(ch.Registrations), orEmpty(tc.reg); !slices.Equal(got, want) {
				t.Errorf("registrations:\n got %q\nwant %q", got, want)
			}
			if got, want := shorts(ch.Unregistrations), orEmpty(tc.unreg); !slices.Equal(got, want) {
				t.Errorf("unregistrations:\n got %q\nwant %q", got, want)
			}
			if len(ch.Collisions) != tc.collisions {
				t.Errorf("collisions: got %+v, want %d", ch.Collisions, tc.collisions)
			}
			// The running count always equals what a heartbeat sends.
			if n := len(tb.Messages()); n != tb.RouteCount() {
				t.Errorf("RouteCount %d, but Messages has %d", tb.RouteCount(), n)
			}
		})
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func TestTableCollisionNamesBothInstances(t *testing.T) {
	tb := NewTable()
	tb.SetDesired(desired("pg-a", 1, 1, "a.example.com"))
	tb.SetDesired(desired("pg-b", 1, 1, "b.example.com"))
	tb.SetActual(running("pg-a", 0, "ig-a", 61001, 1))
	ch := tb.SetActual(running("pg-b", 0, "ig-b", 61001, 1))
	want := Collision{Address: "10.0.0.1:61001", InstanceGUID: "ig-b", ProcessGUID: "pg-b", OtherInstanceGUID: "ig-a", OtherProcessGUID: "pg-a"}
	if len(ch.Collisions) != 1 || ch.Collisions[0] != want {
		t.Fatalf("collisions %+v, want %+v", ch.Collisions, want)
	}
	// The same instance updated in place is not a new collision.
	if ch := tb.SetActual(running("pg-b", 0, "ig-b", 61001, 2)); len(ch.Collisions) != 0 {
		t.Fatalf("an update of a known collision reported it again: %+v", ch.Collisions)
	}
	if got := tb.Collisions(); len(got) != 1 || got[0].Address != want.Address {
		t.Fatalf("Collisions() = %+v", got)
	}
	tb.RemoveActual(running("pg-a", 0, "ig-a", 61001, 1))
	if got := tb.Collisions(); len(got) != 0 {
		t.Fatalf("collision left after one instance went: %+v", got)
	}
}

func TestTableDiffIsWhatASyncSends(t *testing.T) {
	old := NewTable()
	old.SetDesired(desired("pg", 3, 1, "web.example.com"))
	old.SetActual(running("pg", 0, "ig-0", 61001, 1))
	old.SetActual(running("pg", 1, "ig-1", 61002, 1))
	old.SetDesired(desired("gone", 1, 1, "gone.example.com"))
	old.SetActual(running("gone", 0, "ig-g", 61009, 1))

	next := NewTable()
	next.SetDesired(desired("pg", 3, 1, "web.example.com"))
	next.SetActual(running("pg", 0, "ig-0", 61001, 1))
	next.SetActual(running("pg", 2, "ig-2", 61003, 1))

	ch := old.Diff(next)
	if got, want := shorts(ch.Registrations), []string{"web.example.com 10.0.0.1:61003 ig-2"}; !slices.Equal(got, want) {
		t.Errorf("registrations %q, want %q", got, want)
	}
	if got, want := shorts(ch.Unregistrations), []string{"gone.example.com 10.0.0.1:61009 ig-g", "web.example.com 10.0.0.1:61002 ig-1"}; !slices.Equal(got, want) {
		t.Errorf("unregistrations %q, want %q", got, want)
	}
	if got := old.Diff(old); !got.Empty() {
		t.Errorf("a table differs from itself: %+v", got)
	}
}

func TestTableMessagesOmitUpdatedAt(t *testing.T) {
	tb := NewTable()
	tb.SetDesired(desired("pg", 1, 1, "web.example.com"))
	ch := tb.SetActual(running("pg", 0, "ig-0", 61001, 1))
	if len(ch.Registrations) != 1 || ch.Registrations[0].EndpointUpdatedAtNs != 1000 {
		t.Fatalf("an event's registration must carry the instance's since: %+v", ch.Registrations)
	}
	ms := tb.Messages()
	if len(ms) != 1 || ms[0].EndpointUpdatedAtNs != 0 {
		t.Fatalf("a heartbeat's registration must not carry since: %+v", ms)
	}
	if ch.Registrations[0].EndpointUpdatedAtNs != 1000 {
		t.Fatal("Messages changed the table's own message")
	}
}

// TestRegisterMessageGolden pins the JSON of one router.register, field by
// field: a real gorouter reads these names.
func TestRegisterMessageGolden(t *testing.T) {
	const (
		appGUID  = "3f9b1e20-7c44-4a8e-b1d2-5e6f7a8b9c0d"
		procGUID = "6a1c2d9e-0b7f-4f55-9d1e-3c8a0f2b7d41"
		ig       = "a0d2b217-fa7d-4ac1-65a2-7b19"
	)
	d := &bbs.DesiredLRP{
		ProcessGUID: procGUID + "-8f0e7c3a-2b9d-4e61-a5c4-1d7e9b3f6a20", Domain: bbs.DomainCFApps, Instances: 2,
		LogGUID: appGUID, ModificationTag: tag("e", 3),
		Routes: bbs.Routes{}.SetCFRoutes([]bbs.CFRoute{{Hostnames: []string{"shop.apps.example.test"}, Port: 8080,
			Protocol: "http1", Options: map[string]string{"loadbalancing": "least-connection"}}}),
		MetricTags: map[string]bbs.MetricTagValue{
			"source_id": {Static: appGUID}, "app_id": {Static: appGUID}, "app_name": {Static: "shop"},
			"process_id": {Static: procGUID}, "process_type": {Static: "web"},
			"process_instance_id": {Dynamic: "INSTANCE_GUID"}, "instance_id": {Dynamic: "INDEX"},
			"organization_id": {Static: "org-guid"}, "organization_name": {Static: "acme"},
			"space_id": {Static: "space-guid"}, "space_name": {Static: "dev"},
		},
	}
	a := &bbs.ActualLRP{
		ActualLRPKey:         bbs.ActualLRPKey{ProcessGUID: d.ProcessGUID, Index: 1, Domain: bbs.DomainCFApps},
		ActualLRPInstanceKey: bbs.ActualLRPInstanceKey{InstanceGUID: ig, CellID: "cell-1"},
		ActualLRPNetInfo: bbs.ActualLRPNetInfo{Address: "10.0.1.12", InstanceAddress: "10.244.1.6", PreferredAddress: "HOST",
			Ports: []bbs.PortMapping{
				{ContainerPort: 8080, HostPort: 0, ContainerTLSProxyPort: 61001, HostTLSProxyPort: 61012},
				{ContainerPort: 8080, HostPort: 0, ContainerTLSProxyPort: 61443, HostTLSProxyPort: 0},
				{ContainerPort: 2222, HostPort: 0, ContainerTLSProxyPort: 61002, HostTLSProxyPort: 61013},
			}},
		State: bbs.StateRunning, Since: 1767225600123456789, ModificationTag: tag("a", 2), Presence: bbs.PresenceOrdinary,
	}
	tb := NewTable()
	tb.SetDesired(d)
	ch := tb.SetActual(a)
	if len(ch.Registrations) != 1 {
		t.Fatalf("want one registration, got %d", len(ch.Registrations))
	}
	got, err := json.Marshal(ch.Registrations[0])
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"host":"10.0.1.12","port":0,"tls_port":61012,"uris":["shop.apps.example.test"],` +
		`"app":"3f9b1e20-7c44-4a8e-b1d2-5e6f7a8b9c0d",` +
		`"private_instance_id":"a0d2b217-fa7d-4ac1-65a2-7b19","private_instance_index":"1",` +
		`"server_cert_domain_san":"a0d2b217-fa7d-4ac1-65a2-7b19",` +
		`"endpoint_updated_at_ns":1767225600123456789,"protocol":"http1",` +
		`"tags":{"app_id":"3f9b1e20-7c44-4a8e-b1d2-5e6f7a8b9c0d","app_name":"shop","component":"route-emitter",` +
		`"instance_id":"1","organization_id":"org-guid","organization_name":"acme",` +
		`"process_id":"6a1c2d9e-0b7f-4f55-9d1e-3c8a0f2b7d41","process_instance_id":"a0d2b217-fa7d-4ac1-65a2-7b19",` +
		`"process_type":"web","source_id":"3f9b1e20-7c44-4a8e-b1d2-5e6f7a8b9c0d","space_id":"space-guid","space_name":"dev"},` +
		`"options":{"loadbalancing":"least-connection"}}`
	if string(got) != want {
		t.Fatalf("router.register JSON changed:\n got %s\nwant %s", got, want)
	}
	// What we send, our router (and gorouter's rules) accept.
	m, err := mbus.DecodeRegistryMessage(got)
	if err != nil {
		t.Fatalf("the router would refuse it: %v", err)
	}
	if m.Address() != "10.0.1.12:61012" || !m.TLS() {
		t.Fatalf("the router would dial %s (tls %v)", m.Address(), m.TLS())
	}
}
