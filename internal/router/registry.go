package router

import (
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minicf/minicf/internal/mbus"
)

// node is one level of the route table: a host's root, or a context-path
// segment below it. Requests read nodes without any lock, so everything a
// reader follows is an atomic pointer; writers hold Registry.mu. Most hosts
// have no paths, so kids stays nil and a lookup is one map access.
type node struct {
	pool atomic.Pointer[Pool]
	// kids maps a segment to its node. The map is never changed once
	// stored: a writer stores a changed copy. Nodes have few children, and a
	// plain map read is the fastest lookup there is.
	kids atomic.Pointer[map[string]*node]
}

func (n *node) child(seg string) *node {
	if k := n.kids.Load(); k != nil {
		return (*k)[seg]
	}
	return nil
}

// setChild adds (c != nil) or removes (c == nil) a child. Writers only.
func (n *node) setChild(seg string, c *node) {
	var next map[string]*node
	if k := n.kids.Load(); k != nil {
		next = maps.Clone(*k)
	}
	if c != nil {
		if next == nil {
			next = make(map[string]*node, 1)
		}
		next[seg] = c
	} else {
		delete(next, seg)
	}
	if len(next) == 0 {
		n.kids.Store(nil)
		return
	}
	n.kids.Store(&next)
}

func (n *node) hasKids() bool { return n.kids.Load() != nil }

// Registry is the route table: exact hosts, wildcard hosts ("*.apps.localhost")
// and context paths under either, each with its endpoint pool.
//
// Lookups take no lock: every request reads the table, so a lock here, even a
// read lock, would be one cache line all cores fight over. The host maps are
// sync.Maps (a concurrent hash trie since Go 1.24, whose Load is lock-free),
// nodes hold atomic pointers, and pools publish immutable endpoint lists.
// Writers (NATS messages, pruning) are serialized by mu.
type Registry struct {
	mu    sync.Mutex
	exact sync.Map // host -> *node
	wild  sync.Map // the suffix after "*." -> *node
	nwild atomic.Int64
	pools atomic.Int64
	eps   atomic.Int64

	defaultStale time.Duration
	defaultLB    string
	// onAdd, when set, hears of each endpoint new to a pool, or replacing
	// one of another instance at the same address (tracing).
	onAdd func(*Pool, *Endpoint)
}

// NewRegistry builds an empty table. defaultStale is droplet_stale_threshold;
// defaultLB the algorithm for routes whose registrations name none.
func NewRegistry(defaultStale time.Duration, defaultLB string) *Registry {
	if defaultLB == "" {
		defaultLB = mbus.LBRoundRobin
	}
	return &Registry{
		defaultStale: defaultStale,
		defaultLB:    defaultLB,
	}
}

// RegisterResult counts what one message did, route by route.
type RegisterResult struct {
	Added, Updated, Refreshed, Ignored int
}

// Register applies a router.register message to every URI it names.
func (r *Registry) Register(m *mbus.RegistryMessage, now time.Time) RegisterResult {
	var res RegisterResult
	lb := ""
	if m.Options != nil {
		lb = m.Options.LoadBalancing
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range m.URIs {
		key, err := mbus.ParseRouteKey(u)
		if err != nil {
			continue // Validate already refused such messages; belt and braces.
		}
		e := newEndpoint(m, r.defaultStale, now)
		n := r.nodeFor(key, true)
		pool := n.pool.Load()
		if pool == nil {
			pool = newPool(key, r.defaultLB)
			n.pool.Store(pool)
			r.pools.Add(1)
		}
		out, old := pool.put(e, lb)
		if r.onAdd != nil && (out == putAdded || out == putUpdated && old != nil && old.PrivateInstanceID != e.PrivateInstanceID) {
			r.onAdd(pool, e)
		}
		switch out {
		case putAdded:
			res.Added++
			r.eps.Add(1)
		case putUpdated:
			res.Updated++
		case putRefreshed:
			res.Refreshed++
		case putIgnored:
			res.Ignored++
		}
	}
	return res
}

// Unregister removes the message's endpoint from every URI it names and
// returns the endpoints removed.
func (r *Registry) Unregister(m *mbus.RegistryMessage) []*Endpoint {
	addr := m.Address()
	var removed []*Endpoint
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range m.URIs {
		key, err := mbus.ParseRouteKey(u)
		if err != nil {
			continue
		}
		n := r.nodeFor(key, false)
		if n == nil || n.pool.Load() == nil {
			continue
		}
		if e := n.pool.Load().remove(addr, m.EndpointUpdatedAtNs); e != nil {
			removed = append(removed, e)
			r.eps.Add(-1)
			r.dropIfEmpty(key)
		}
	}
	return removed
}

// RemoveEndpoint takes e out of pool p after a failure that proves it wrong
// (a route-integrity failure). It reports whether e was still there.
func (r *Registry) RemoveEndpoint(p *Pool, e *Endpoint) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !p.removeEndpoint(e) {
		return false
	}
	r.eps.Add(-1)
	r.dropIfEmpty(p.key)
	return true
}

// Lookup finds the pool for a request: the longest context path with
// endpoints under the exact host, else under the nearest wildcard host.
// host must be lower case without a port; path is the request's escaped path.
func (r *Registry) Lookup(host, path string) *Pool {
	if v, ok := r.exact.Load(host); ok {
		if p := match(v.(*node), path); p != nil {
			return p
		}
	}
	if r.nwild.Load() == 0 {
		return nil
	}
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			if v, ok := r.wild.Load(host[i+1:]); ok {
				if p := match(v.(*node), path); p != nil {
					return p
				}
			}
		}
	}
	return nil
}

func match(n *node, path string) *Pool {
	var best *Pool
	if p := n.pool.Load(); p != nil && p.Len() > 0 {
		best = p
	}
	if !n.hasKids() {
		return best
	}
	cur := n
	for len(path) > 0 {
		for len(path) > 0 && path[0] == '/' {
			path = path[1:]
		}
		if path == "" {
			break
		}
		seg := path
		if i := strings.IndexByte(path, '/'); i >= 0 {
			seg, path = path[:i], path[i:]
		} else {
			path = ""
		}
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i] // matrix parameters never name a route
		}
		child := cur.child(seg)
		if child == nil {
			child = cur.child(strings.ToLower(seg))
		}
		if child == nil {
			break
		}
		cur = child
		if p := cur.pool.Load(); p != nil && p.Len() > 0 {
			best = p
		}
		if !cur.hasKids() {
			break
		}
	}
	return best
}

// top returns the host map a route key belongs in and its name there.
func (r *Registry) top(key mbus.RouteKey) (*sync.Map, string, bool) {
	if strings.HasPrefix(key.Host, "*.") {
		return &r.wild, key.Host[2:], true
	}
	return &r.exact, key.Host, false
}

// nodeFor walks (and with create, builds) the node for key. Callers hold mu.
func (r *Registry) nodeFor(key mbus.RouteKey, create bool) *node {
	top, name, wild := r.top(key)
	var n *node
	if v, ok := top.Load(name); ok {
		n = v.(*node)
	} else {
		if !create {
			return nil
		}
		n = &node{}
		top.Store(name, n)
		if wild {
			r.nwild.Add(1)
		}
	}
	path := key.Path
	for len(path) > 0 {
		path = path[1:] // drop the leading '/'
		seg := path
		if i := strings.IndexByte(path, '/'); i >= 0 {
			seg, path = path[:i], path[i:]
		} else {
			path = ""
		}
		child := n.child(seg)
		if child == nil {
			if !create {
				return nil
			}
			child = &node{}
			n.setChild(seg, child)
		}
		n = child
	}
	return n
}

// dropIfEmpty removes key's pool when it has no endpoints, and the nodes
// above it that no longer hold anything. Callers hold mu.
func (r *Registry) dropIfEmpty(key mbus.RouteKey) {
	top, name, wild := r.top(key)
	v, ok := top.Load(name)
	if !ok {
		return
	}
	root := v.(*node)
	segs := []string{}
	if key.Path != "" {
		segs = strings.Split(key.Path[1:], "/")
	}
	chain := []*node{root}
	n := root
	for _, s := range segs {
		n = n.child(s)
		if n == nil {
			return
		}
		chain = append(chain, n)
	}
	if p := n.pool.Load(); p == nil || p.Len() > 0 {
		return
	}
	n.pool.Store(nil)
	r.pools.Add(-1)
	for i := len(chain) - 1; i >= 0; i-- {
		c := chain[i]
		if c.pool.Load() != nil || c.hasKids() {
			return
		}
		if i == 0 {
			top.Delete(name)
			if wild {
				r.nwild.Add(-1)
			}
		} else {
			chain[i-1].setChild(segs[i-1], nil)
		}
	}
}

// PruneStale removes stale plaintext endpoints everywhere and returns them.
func (r *Registry) PruneStale(now time.Time) []*Endpoint {
	var pruned []*Endpoint
	var emptied []mbus.RouteKey
	r.mu.Lock()
	defer r.mu.Unlock()
	r.walkLocked(func(p *Pool) {
		if gone := p.prune(now); len(gone) > 0 {
			pruned = append(pruned, gone...)
			r.eps.Add(-int64(len(gone)))
			if p.Len() == 0 {
				emptied = append(emptied, p.key)
			}
		}
	})
	// Dropping edits the maps just walked, so it waits until the walk is over.
	for _, k := range emptied {
		r.dropIfEmpty(k)
	}
	return pruned
}

// Freshen stamps every endpoint as registered now.
func (r *Registry) Freshen(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.walkLocked(func(p *Pool) { p.freshen(now) })
}

// Counts returns the number of routes (pools) and endpoints.
func (r *Registry) Counts() (routes, endpoints int) {
	return int(r.pools.Load()), int(r.eps.Load())
}

// Pools returns every pool, for /routes.
func (r *Registry) Pools() []*Pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Pool, 0, r.pools.Load())
	r.walkLocked(func(p *Pool) { out = append(out, p) })
	return out
}

func (r *Registry) walkLocked(f func(*Pool)) {
	var walk func(n *node)
	walk = func(n *node) {
		if p := n.pool.Load(); p != nil {
			f(p)
		}
		if k := n.kids.Load(); k != nil {
			for _, c := range *k {
				walk(c)
			}
		}
	}
	visit := func(_, v any) bool { walk(v.(*node)); return true }
	r.exact.Range(visit)
	r.wild.Range(visit)
}
