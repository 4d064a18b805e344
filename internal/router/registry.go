package router

import (
	"strings"
	"sync"
	"time"

	"github.com/minicf/minicf/internal/mbus"
)

// node is one level of the route table: a host's root, or a context-path
// segment below it. Most hosts have no paths, so children stays nil and a
// lookup is one map access.
type node struct {
	pool     *Pool
	children map[string]*node
}

// Registry is the route table: exact hosts, wildcard hosts ("*.apps.localhost")
// and context paths under either, each with its endpoint pool.
type Registry struct {
	mu    sync.RWMutex
	exact map[string]*node
	wild  map[string]*node // keyed by the suffix after "*."
	pools int
	eps   int

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
		exact:        make(map[string]*node),
		wild:         make(map[string]*node),
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
		if n.pool == nil {
			n.pool = newPool(key, r.defaultLB)
			r.pools++
		}
		out, old := n.pool.put(e, lb)
		if r.onAdd != nil && (out == putAdded || out == putUpdated && old != nil && old.PrivateInstanceID != e.PrivateInstanceID) {
			r.onAdd(n.pool, e)
		}
		switch out {
		case putAdded:
			res.Added++
			r.eps++
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
		if n == nil || n.pool == nil {
			continue
		}
		if e := n.pool.remove(addr, m.EndpointUpdatedAtNs); e != nil {
			removed = append(removed, e)
			r.eps--
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
	r.eps--
	r.dropIfEmpty(p.key)
	return true
}

// Lookup finds the pool for a request: the longest context path with
// endpoints under the exact host, else under the nearest wildcard host.
// host must be lower case without a port; path is the request's escaped path.
func (r *Registry) Lookup(host, path string) *Pool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if n := r.exact[host]; n != nil {
		if p := match(n, path); p != nil {
			return p
		}
	}
	if len(r.wild) == 0 {
		return nil
	}
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			if n := r.wild[host[i+1:]]; n != nil {
				if p := match(n, path); p != nil {
					return p
				}
			}
		}
	}
	return nil
}

func match(n *node, path string) *Pool {
	var best *Pool
	if n.pool != nil && n.pool.Len() > 0 {
		best = n.pool
	}
	if n.children == nil {
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
		child := cur.children[seg]
		if child == nil {
			child = cur.children[strings.ToLower(seg)]
		}
		if child == nil {
			break
		}
		cur = child
		if cur.pool != nil && cur.pool.Len() > 0 {
			best = cur.pool
		}
		if cur.children == nil {
			break
		}
	}
	return best
}

// nodeFor walks (and with create, builds) the node for key. Callers hold mu.
func (r *Registry) nodeFor(key mbus.RouteKey, create bool) *node {
	top, name := r.exact, key.Host
	if strings.HasPrefix(key.Host, "*.") {
		top, name = r.wild, key.Host[2:]
	}
	n := top[name]
	if n == nil {
		if !create {
			return nil
		}
		n = &node{}
		top[name] = n
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
		child := n.children[seg]
		if child == nil {
			if !create {
				return nil
			}
			if n.children == nil {
				n.children = make(map[string]*node, 1)
			}
			child = &node{}
			n.children[seg] = child
		}
		n = child
	}
	return n
}

// dropIfEmpty removes key's pool when it has no endpoints, and the nodes
// above it that no longer hold anything. Callers hold mu.
func (r *Registry) dropIfEmpty(key mbus.RouteKey) {
	top, name := r.exact, key.Host
	if strings.HasPrefix(key.Host, "*.") {
		top, name = r.wild, key.Host[2:]
	}
	root := top[name]
	if root == nil {
		return
	}
	segs := []string{}
	if key.Path != "" {
		segs = strings.Split(key.Path[1:], "/")
	}
	chain := []*node{root}
	n := root
	for _, s := range segs {
		n = n.children[s]
		if n == nil {
			return
		}
		chain = append(chain, n)
	}
	if n.pool == nil || n.pool.Len() > 0 {
		return
	}
	n.pool = nil
	r.pools--
	for i := len(chain) - 1; i >= 0; i-- {
		c := chain[i]
		if c.pool != nil || len(c.children) > 0 {
			return
		}
		if i == 0 {
			delete(top, name)
		} else {
			delete(chain[i-1].children, segs[i-1])
			if len(chain[i-1].children) == 0 {
				chain[i-1].children = nil
			}
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
			r.eps -= len(gone)
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
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.walkLocked(func(p *Pool) { p.freshen(now) })
}

// Counts returns the number of routes (pools) and endpoints.
func (r *Registry) Counts() (routes, endpoints int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.pools, r.eps
}

// Pools returns every pool, for /routes.
func (r *Registry) Pools() []*Pool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Pool, 0, r.pools)
	r.walkLocked(func(p *Pool) { out = append(out, p) })
	return out
}

func (r *Registry) walkLocked(f func(*Pool)) {
	var walk func(n *node)
	walk = func(n *node) {
		if n.pool != nil {
			f(n.pool)
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	for _, n := range r.exact {
		walk(n)
	}
	for _, n := range r.wild {
		walk(n)
	}
}
