package router

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/mbus"
)

// walkCounts counts pools and endpoints by walking the table, and reports
// nodes that hold nothing (no pool, no kids), pools with 0 endpoints.
func walkCounts(t *testing.T, r *Registry) (pools, eps, nwild int) {
	t.Helper()
	var walk func(path string, n *node, root bool)
	walk = func(path string, n *node, root bool) {
		p := n.pool.Load()
		if p != nil {
			pools++
			eps += p.Len()
			if p.Len() == 0 {
				t.Errorf("empty pool left at %s", path)
			}
			if p.Len() != len(p.byAddr) {
				t.Errorf("%s: state has %d endpoints, byAddr %d", path, p.Len(), len(p.byAddr))
			}
		}
		if p == nil && !n.hasKids() {
			t.Errorf("empty node left at %s", path)
		}
		if k := n.kids.Load(); k != nil {
			if len(*k) == 0 {
				t.Errorf("empty kids map at %s", path)
			}
			for s, c := range *k {
				walk(path+"/"+s, c, false)
			}
		}
	}
	r.exact.Range(func(k, v any) bool { walk(k.(string), v.(*node), true); return true })
	r.wild.Range(func(k, v any) bool { nwild++; walk("*."+k.(string), v.(*node), true); return true })
	return
}

var stressHosts = []string{"a.apps.internal", "b.apps.internal", "*.apps.internal", "*.internal", "c.x.apps.internal"}
var stressPaths = []string{"", "/p", "/p/q", "/p/q/r", "/s"}

func stressURI(rng *rand.Rand) string {
	return stressHosts[rng.IntN(len(stressHosts))] + stressPaths[rng.IntN(len(stressPaths))]
}

// Lookups take no lock, so they run here against writers that register,
// unregister, prune and freshen overlapping routes (exact, wildcard, nested
// paths): a lookup must only ever return a pool that serves the host and
// path asked for, and once the writers stop the counters, the wildcard count
// and the tree must agree, with no empty node or pool left behind.
func TestRegistryConcurrentReadersAndWriters(t *testing.T) {
	for iter := 0; iter < 5; iter++ {
		r := NewRegistry(50*time.Millisecond, "")
		var stop atomic.Bool
		var wg, wwg sync.WaitGroup
		var clock atomic.Int64
		clock.Store(time.Unix(1000, 0).UnixNano())
		now := func() time.Time { return time.Unix(0, clock.Load()) }
		// writers
		for w := 0; w < 4; w++ {
			wwg.Add(1)
			go func(w int) {
				defer wwg.Done()
				rng := rand.New(rand.NewPCG(uint64(iter), uint64(w)))
				for i := 0; i < 2000; i++ {
					uri := stressURI(rng)
					port := uint16(1 + rng.IntN(3))
					m := &mbus.RegistryMessage{Host: "10.0.0.1", Port: port, URIs: []string{uri, stressURI(rng)},
						PrivateInstanceID: fmt.Sprint(port), App: fmt.Sprint(rng.IntN(2))}
					switch rng.IntN(6) {
					case 0, 1, 2:
						r.Register(m, now())
					case 3, 4:
						r.Unregister(m)
					case 5:
						clock.Add(int64(20 * time.Millisecond))
						if rng.IntN(2) == 0 {
							r.PruneStale(now())
						} else {
							r.Freshen(now())
						}
					}
				}
			}(w)
		}
		// readers
		var lookups, hits atomic.Int64
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(iter), 100+uint64(g)))
				qhosts := []string{"a.apps.internal", "b.apps.internal", "z.apps.internal", "c.x.apps.internal", "q.internal"}
				for !stop.Load() {
					h := qhosts[rng.IntN(len(qhosts))]
					path := stressPaths[rng.IntN(len(stressPaths))] + "/zz"
					p := r.Lookup(h, path)
					lookups.Add(1)
					if p == nil {
						continue
					}
					hits.Add(1)
					k := p.Key()
					ok := k.Host == h || strings.HasPrefix(k.Host, "*.") && strings.HasSuffix(h, k.Host[1:])
					if !ok {
						t.Errorf("Lookup(%q) returned pool for %q", h, k.Host)
					}
					if k.Path != "" && !strings.HasPrefix(path, k.Path+"/") {
						t.Errorf("Lookup(%q,%q) returned pool for path %q", h, path, k.Path)
					}
					e := p.pick(nil, now(), time.Second)
					if e != nil && e.Addr == "" {
						t.Errorf("endpoint with empty addr")
					}
					_ = p.Endpoints()
					_ = p.byInstance("1")
				}
			}(g)
		}
		wwg.Wait()
		stop.Store(true)
		wg.Wait()
		pools, eps, nwild := walkCounts(t, r)
		rp, re := r.Counts()
		if rp != pools || re != eps {
			t.Fatalf("iter %d: Counts() = %d,%d; walk = %d,%d", iter, rp, re, pools, eps)
		}
		if int(r.nwild.Load()) != nwild {
			t.Fatalf("iter %d: nwild=%d, wild roots=%d", iter, r.nwild.Load(), nwild)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// A route that is never unregistered must never disappear from lookups while
// its neighbours (parent, child, sibling paths, wildcards) churn.
func TestRegistryStableRouteNeverMissedWhileNeighboursChurn(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, stable := range []string{"a.x.internal", "a.x.internal/p", "a.x.internal/p/q", "*.x.internal/p"} {
		r := NewRegistry(time.Hour, "")
		r.Register(&mbus.RegistryMessage{Host: "10.0.0.9", Port: 9, URIs: []string{stable}}, now)
		churn := []string{"a.x.internal", "a.x.internal/p", "a.x.internal/p/q", "a.x.internal/p/q/r", "a.x.internal/s", "*.x.internal", "*.x.internal/p/q", "b.a.x.internal"}
		var stop atomic.Bool
		var wg, rwg sync.WaitGroup
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					m := &mbus.RegistryMessage{Host: "10.0.0.1", Port: uint16(1 + w), URIs: []string{churn[(i+w)%len(churn)], churn[(i*3+w)%len(churn)]}}
					r.Register(m, now)
					r.Unregister(m)
				}
			}(w)
		}
		var misses atomic.Int64
		for g := 0; g < 4; g++ {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				for i := 0; i < 50000; i++ {
					if p := r.Lookup("a.x.internal", "/p/q/z"); p == nil || p.Len() == 0 && p.Key().String() == stable {
						misses.Add(1)
					}
				}
			}()
		}
		rwg.Wait()
		stop.Store(true)
		wg.Wait()
		if misses.Load() > 0 {
			t.Errorf("stable %s: %d lookups missed", stable, misses.Load())
		}
		p, e := r.Counts()
		if p != 1 || e != 1 {
			t.Errorf("stable %s: Counts %d %d after churn", stable, p, e)
		}
		pools, eps, nw := walkCounts(t, r)
		if pools != 1 || eps != 1 || int(r.nwild.Load()) != nw {
			t.Errorf("walk %d %d nwild %d/%d", pools, eps, r.nwild.Load(), nw)
		}
	}
}
