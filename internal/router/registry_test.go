package router

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/mbus"
)

func reg(host string, port uint16, uris ...string) *mbus.RegistryMessage {
	return &mbus.RegistryMessage{Host: host, Port: port, URIs: uris, PrivateInstanceID: fmt.Sprintf("%s-%d", host, port)}
}

func lookupAddr(r *Registry, host, path string) string {
	p := r.Lookup(host, path)
	if p == nil {
		return ""
	}
	eps := p.Endpoints()
	if len(eps) == 0 {
		return "empty"
	}
	return eps[0].Addr
}

func TestRegistryLookup(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRegistry(120*time.Second, "")
	r.Register(reg("10.0.0.1", 1, "app.apps.localhost"), now)
	r.Register(reg("10.0.0.2", 2, "*.apps.localhost"), now)
	r.Register(reg("10.0.0.3", 3, "app.apps.localhost/api"), now)
	r.Register(reg("10.0.0.4", 4, "app.apps.localhost/api/v2"), now)
	r.Register(reg("10.0.0.5", 5, "*.wild.localhost/docs"), now)
	r.Register(reg("10.0.0.6", 6, "MiXeD.Apps.Localhost/Path?x=1"), now)

	cases := []struct{ host, path, want string }{
		{"app.apps.localhost", "/", "10.0.0.1:1"},
		{"app.apps.localhost", "", "10.0.0.1:1"},
		{"app.apps.localhost", "/other", "10.0.0.1:1"},
		{"app.apps.localhost", "/api", "10.0.0.3:3"},
		{"app.apps.localhost", "/api/", "10.0.0.3:3"},
		{"app.apps.localhost", "/API/users", "10.0.0.3:3"},
		{"app.apps.localhost", "/api/v2/x", "10.0.0.4:4"},
		{"app.apps.localhost", "/api/v3", "10.0.0.3:3"},
		{"app.apps.localhost", "/apix", "10.0.0.1:1"},
		{"other.apps.localhost", "/", "10.0.0.2:2"},
		{"deep.other.apps.localhost", "/", "10.0.0.2:2"},
		{"apps.localhost", "/", ""},
		{"x.wild.localhost", "/", ""},
		{"x.wild.localhost", "/docs/a", "10.0.0.5:5"},
		{"mixed.apps.localhost", "/path", "10.0.0.6:6"},
		{"nothing.localhost", "/", ""},
	}
	for _, c := range cases {
		if got := lookupAddr(r, c.host, c.path); got != c.want {
			t.Errorf("Lookup(%q, %q) = %q, want %q", c.host, c.path, got, c.want)
		}
	}
	if routes, eps := r.Counts(); routes != 6 || eps != 6 {
		t.Errorf("Counts = %d routes, %d endpoints, want 6 and 6", routes, eps)
	}
}

func TestRegistryOlderUpdatesAreIgnored(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRegistry(120*time.Second, "")
	m := reg("10.0.0.1", 1, "app.localhost")
	m.EndpointUpdatedAtNs = 200
	m.App = "new"
	if res := r.Register(m, now); res.Added != 1 {
		t.Fatalf("first registration: %+v", res)
	}
	old := *m
	old.EndpointUpdatedAtNs = 100
	old.App = "old"
	if res := r.Register(&old, now); res.Ignored != 1 {
		t.Fatalf("older registration should be ignored: %+v", res)
	}
	if got := r.Lookup("app.localhost", "/").Endpoints()[0].AppID; got != "new" {
		t.Fatalf("app = %q after an older update, want new", got)
	}
	if removed := r.Unregister(&old); len(removed) != 0 {
		t.Fatalf("an older unregister removed %v", removed)
	}
	newer := *m
	newer.EndpointUpdatedAtNs = 300
	newer.App = "newer"
	if res := r.Register(&newer, now); res.Updated != 1 {
		t.Fatalf("newer registration should update: %+v", res)
	}
	if res := r.Register(&newer, now); res.Refreshed != 1 {
		t.Fatalf("same registration again should refresh: %+v", res)
	}
	if removed := r.Unregister(&newer); len(removed) != 1 {
		t.Fatalf("unregister removed %d endpoints, want 1", len(removed))
	}
	if p := r.Lookup("app.localhost", "/"); p != nil {
		t.Fatalf("route still there after unregister")
	}
	if routes, eps := r.Counts(); routes != 0 || eps != 0 {
		t.Fatalf("Counts = %d, %d after the last unregister", routes, eps)
	}
}

func TestRegistryPrune(t *testing.T) {
	start := time.Unix(1000, 0)
	r := NewRegistry(120*time.Second, "")
	r.Register(reg("10.0.0.1", 1, "plain.localhost"), start)
	tlsMsg := &mbus.RegistryMessage{Host: "10.0.0.2", TLSPort: 2, URIs: []string{"tls.localhost"}, ServerCertDomainSAN: "x"}
	r.Register(tlsMsg, start)
	short := reg("10.0.0.3", 3, "short.localhost")
	short.StaleThresholdInSeconds = 10
	r.Register(short, start)

	if n := len(r.PruneStale(start.Add(11 * time.Second))); n != 1 {
		t.Fatalf("pruned %d at 11s, want only the 10s-threshold endpoint", n)
	}
	if r.Lookup("short.localhost", "/") != nil {
		t.Fatal("short.localhost survived its own threshold")
	}
	// A heartbeat at 100s keeps plain.localhost past 120s from the start.
	r.Register(reg("10.0.0.1", 1, "plain.localhost"), start.Add(100*time.Second))
	if n := len(r.PruneStale(start.Add(121 * time.Second))); n != 0 {
		t.Fatalf("pruned %d right after a heartbeat", n)
	}
	if n := len(r.PruneStale(start.Add(221 * time.Second))); n != 1 {
		t.Fatalf("pruned %d at 221s, want the plain endpoint", n)
	}
	if r.Lookup("tls.localhost", "/") == nil {
		t.Fatal("a TLS endpoint was pruned by age")
	}
	r.Freshen(start.Add(500 * time.Second))
	if routes, eps := r.Counts(); routes != 1 || eps != 1 {
		t.Fatalf("Counts = %d, %d, want the TLS route only", routes, eps)
	}
}

func TestRegistryFreshenKeepsRoutes(t *testing.T) {
	start := time.Unix(1000, 0)
	r := NewRegistry(10*time.Second, "")
	r.Register(reg("10.0.0.1", 1, "a.localhost"), start)
	r.Freshen(start.Add(30 * time.Second))
	if n := len(r.PruneStale(start.Add(35 * time.Second))); n != 0 {
		t.Fatalf("pruned %d endpoints freshened 5s ago", n)
	}
}

func TestRegistryDropsEmptyPathNodes(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRegistry(time.Minute, "")
	m := reg("10.0.0.1", 1, "a.localhost/x/y/z")
	r.Register(m, now)
	r.Unregister(m)
	r.exact.Range(func(k, v any) bool {
		t.Fatalf("host node %v left behind", k)
		return false
	})
	r.Register(reg("10.0.0.1", 1, "a.localhost"), now)
	r.Register(m, now)
	r.Unregister(m)
	if v, ok := r.exact.Load("a.localhost"); !ok || v.(*node).hasKids() {
		t.Fatalf("path nodes left behind under a.localhost: %v %+v", ok, v)
	}
}

func TestPoolRoundRobinAndLeastConnection(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRegistry(time.Minute, "")
	for i := 1; i <= 3; i++ {
		r.Register(reg("10.0.0.1", uint16(i), "rr.localhost"), now)
	}
	p := r.Lookup("rr.localhost", "/")
	seen := map[string]int{}
	for i := 0; i < 30; i++ {
		seen[p.pick(nil, now, time.Second).Addr]++
	}
	for addr, n := range seen {
		if n != 10 {
			t.Errorf("round-robin sent %d of 30 to %s, want 10 each: %v", n, addr, seen)
		}
	}

	lc := reg("10.0.0.2", 1, "lc.localhost")
	lc.Options = &mbus.RouteOptions{LoadBalancing: mbus.LBLeastConnection}
	r.Register(lc, now)
	lc2 := *lc
	lc2.Port = 2
	r.Register(&lc2, now)
	p = r.Lookup("lc.localhost", "/")
	if p.LoadBalancing() != mbus.LBLeastConnection {
		t.Fatalf("pool algorithm = %q", p.LoadBalancing())
	}
	busy := p.Endpoints()[0]
	busy.inflight.Add(5)
	for i := 0; i < 10; i++ {
		if e := p.pick(nil, now, time.Second); e == busy {
			t.Fatalf("least-connection picked the endpoint with 5 requests in flight")
		}
	}
}

func TestPoolSkipsFailedAndTriedEndpoints(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRegistry(time.Minute, "")
	r.Register(reg("10.0.0.1", 1, "f.localhost"), now)
	r.Register(reg("10.0.0.1", 2, "f.localhost"), now)
	p := r.Lookup("f.localhost", "/")
	eps := p.Endpoints()
	eps[0].failedAt.Store(now.UnixNano())
	for i := 0; i < 10; i++ {
		if e := p.pick(nil, now, 15*time.Second); e != eps[1] {
			t.Fatalf("picked the endpoint that failed a moment ago")
		}
	}
	// Once the failure is old enough, it is eligible again.
	later := now.Add(16 * time.Second)
	seen := map[*Endpoint]bool{}
	for i := 0; i < 4; i++ {
		seen[p.pick(nil, later, 15*time.Second)] = true
	}
	if !seen[eps[0]] {
		t.Fatalf("the failed endpoint never came back after retryAfterFailure")
	}
	// When everything failed, the router still tries something.
	eps[1].failedAt.Store(now.UnixNano())
	if e := p.pick(nil, now, 15*time.Second); e == nil {
		t.Fatal("no endpoint picked when all had failed")
	}
	// A request never gets the same endpoint twice.
	if e := p.pick(eps, now, 15*time.Second); e != nil {
		t.Fatalf("picked %v although every endpoint was tried", e)
	}
}

func BenchmarkLookup100kRoutes(b *testing.B) {
	r, hosts := table(b, 100_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r.Lookup(hosts[i%len(hosts)], "/some/path") == nil {
			b.Fatal("miss")
		}
	}
}

func BenchmarkLookup100kRoutesParallel(b *testing.B) {
	r, hosts := table(b, 100_000)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if r.Lookup(hosts[i%len(hosts)], "/") == nil {
				b.Fatal("miss")
			}
			i++
		}
	})
}

// Every request of a busy route looks up the same host and picks from the
// same pool on every core: the case a lock in the lookup would serialize.
func BenchmarkLookupAndPickHotRouteParallel(b *testing.B) {
	r, hosts := table(b, 100_000)
	host := hosts[7]
	now := time.Unix(1000, 0)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p := r.Lookup(host, "/")
			if p == nil || p.pick(nil, now, time.Second) == nil {
				b.Fatal("miss")
			}
		}
	})
}

func BenchmarkLookupContextPath100kRoutes(b *testing.B) {
	r, _ := table(b, 100_000)
	now := time.Unix(1000, 0)
	r.Register(reg("10.1.0.1", 1, "app-7.apps.localhost/api/v2"), now)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r.Lookup("app-7.apps.localhost", "/api/v2/users/42") == nil {
			b.Fatal("miss")
		}
	}
}

func BenchmarkLookupWildcard100kRoutes(b *testing.B) {
	r, _ := table(b, 100_000)
	r.Register(reg("10.1.0.1", 1, "*.wild.localhost"), time.Unix(1000, 0))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r.Lookup("a.b.wild.localhost", "/") == nil {
			b.Fatal("miss")
		}
	}
}

// BenchmarkRegisterHeartbeat100kRoutes measures a heartbeat (a registration
// that only refreshes) against a full table, which is what an emitter's
// periodic re-emit costs the router.
func BenchmarkRegisterHeartbeat100kRoutes(b *testing.B) {
	r, _ := table(b, 100_000)
	msgs := make([]*mbus.RegistryMessage, 1000)
	for i := range msgs {
		msgs[i] = tableMsg(i * 100)
	}
	now := time.Unix(2000, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := r.Register(msgs[i%len(msgs)], now); res.Refreshed != 1 {
			b.Fatalf("%+v", res)
		}
	}
}

// BenchmarkRegisterNew100kRoutes measures adding routes to a table that
// already holds 100,000, and reports the heap each route costs.
func BenchmarkRegisterNew100kRoutes(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, _ := table(b, 100_000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	now := time.Unix(2000, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Register(tableMsg(100_000+i), now)
	}
	b.StopTimer()
	// Reported after the loop: ResetTimer deletes metrics reported before it.
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/100_000, "heap-bytes/route")
	runtime.KeepAlive(r)
}

func tableMsg(i int) *mbus.RegistryMessage {
	return &mbus.RegistryMessage{
		Host: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Port: 61000, TLSPort: 61001,
		URIs: []string{fmt.Sprintf("app-%d.apps.localhost", i)}, App: fmt.Sprintf("app-guid-%d", i),
		PrivateInstanceID: fmt.Sprintf("instance-guid-%d", i), PrivateInstanceIndex: "0",
		ServerCertDomainSAN: fmt.Sprintf("instance-guid-%d", i), EndpointUpdatedAtNs: 1,
		Tags: map[string]string{"component": "route-emitter", "app_name": fmt.Sprintf("app-%d", i)},
	}
}

func table(b *testing.B, n int) (*Registry, []string) {
	b.Helper()
	r := NewRegistry(120*time.Second, "")
	hosts := make([]string, n)
	now := time.Unix(1000, 0)
	for i := 0; i < n; i++ {
		m := tableMsg(i)
		r.Register(m, now)
		hosts[i] = m.URIs[0]
	}
	return r, hosts
}
