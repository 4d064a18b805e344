package router

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minicf/minicf/internal/mbus"
)

// putResult says what a registration did to a pool, for logs and metrics.
type putResult int

const (
	putAdded     putResult = iota // a new endpoint
	putUpdated                    // same address, new data: the endpoint was replaced
	putRefreshed                  // a heartbeat: same data, timestamp refreshed
	putIgnored                    // older than what the pool holds
)

// Pool holds the endpoints of one route (host and context path).
//
// Requests read the pool without a lock: writers (serialized by mu) publish
// each new endpoint list as a fresh immutable poolState, so a request picks
// from a consistent list with one atomic load. Lists are small (one entry
// per instance), so copying one on every change costs less than a read lock
// on every request.
type Pool struct {
	key mbus.RouteKey

	mu     sync.Mutex
	byAddr map[string]*Endpoint // writers only
	state  atomic.Pointer[poolState]

	next atomic.Uint32
}

// poolState is one published version of a pool. Never modified once stored.
type poolState struct {
	endpoints []*Endpoint
	lb        string // round-robin or least-connection
}

func newPool(key mbus.RouteKey, lb string) *Pool {
	p := &Pool{key: key, byAddr: make(map[string]*Endpoint, 1)}
	p.state.Store(&poolState{lb: lb})
	// A random start spreads the first requests of many routers over instances.
	p.next.Store(rand.Uint32())
	return p
}

// publish stores a new version built from the current one by edit, which
// gets a copy of the endpoint list it may change. Callers hold mu.
func (p *Pool) publish(lb string, edit func([]*Endpoint) []*Endpoint) {
	cur := p.state.Load()
	next := &poolState{lb: cur.lb}
	if lb != "" {
		next.lb = lb
	}
	next.endpoints = slices.Clone(cur.endpoints)
	if edit != nil {
		next.endpoints = edit(next.endpoints)
	}
	p.state.Store(next)
}

// Key is the route this pool serves.
func (p *Pool) Key() mbus.RouteKey { return p.key }

// put adds or refreshes an endpoint. An update whose endpoint_updated_at_ns is
// older than the stored endpoint's is ignored: NATS does not order messages
// from different publishers, and an old registration must not undo a new one.
func (p *Pool) put(e *Endpoint, lb string) (putResult, *Endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if lb != "" && lb != p.state.Load().lb {
		p.publish(lb, nil)
	}
	old, ok := p.byAddr[e.Addr]
	if !ok {
		p.publish("", func(eps []*Endpoint) []*Endpoint { return append(eps, e) })
		p.byAddr[e.Addr] = e
		return putAdded, nil
	}
	if old.UpdatedAtNs != 0 && e.UpdatedAtNs != 0 && e.UpdatedAtNs < old.UpdatedAtNs {
		return putIgnored, nil
	}
	if old.sameAs(e) {
		// A heartbeat: the list is unchanged, so nothing is published.
		old.updated.Store(e.updated.Load())
		return putRefreshed, nil
	}
	// Keep warm backend connections when the TLS identity is unchanged:
	// the connections were verified against the same name.
	if old.TLS == e.TLS && old.ServerCertDomainSAN == e.ServerCertDomainSAN {
		if b := old.backend.Load(); b != nil {
			e.backend.Store(b)
		}
	} else {
		closeIdle(old)
	}
	p.publish("", func(eps []*Endpoint) []*Endpoint {
		if i := slices.Index(eps, old); i >= 0 {
			eps[i] = e
		}
		return eps
	})
	p.byAddr[e.Addr] = e
	return putUpdated, old
}

// remove deletes the endpoint at addr unless the stored one is newer than the
// unregistration (updatedAtNs 0 means "no ordering information").
func (p *Pool) remove(addr string, updatedAtNs int64) *Endpoint {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, ok := p.byAddr[addr]
	if !ok {
		return nil
	}
	if old.UpdatedAtNs != 0 && updatedAtNs != 0 && updatedAtNs < old.UpdatedAtNs {
		return nil
	}
	p.removeLocked(old)
	return old
}

// removeEndpoint deletes exactly e, if it is still in the pool. The proxy uses
// it after a route-integrity failure: a newer registration at the same
// address must survive the failure of the old one.
func (p *Pool) removeEndpoint(e *Endpoint) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byAddr[e.Addr] != e {
		return false
	}
	p.removeLocked(e)
	return true
}

func (p *Pool) removeLocked(gone ...*Endpoint) {
	for _, e := range gone {
		delete(p.byAddr, e.Addr)
	}
	p.publish("", func(eps []*Endpoint) []*Endpoint {
		return slices.DeleteFunc(eps, func(x *Endpoint) bool { return slices.Contains(gone, x) })
	})
}

// prune removes plaintext endpoints not refreshed within their stale
// threshold. TLS endpoints are exempt: every connection to them proves the
// instance's identity, so a stale entry cannot misroute, and keeping them
// serves traffic while the control plane is down.
func (p *Pool) prune(now time.Time) []*Endpoint {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pruned []*Endpoint
	nowNs := now.UnixNano()
	for _, e := range p.state.Load().endpoints {
		if e.TLS {
			continue
		}
		if nowNs-e.updated.Load() > int64(e.StaleThreshold) {
			pruned = append(pruned, e)
		}
	}
	if len(pruned) > 0 {
		p.removeLocked(pruned...)
	}
	return pruned
}

// freshen stamps every endpoint as registered now. Called after the bus comes
// back, so that routes are not all pruned before emitters re-register them.
func (p *Pool) freshen(now time.Time) {
	for _, e := range p.state.Load().endpoints {
		e.updated.Store(now.UnixNano())
	}
}

// Len is the number of endpoints.
func (p *Pool) Len() int { return len(p.state.Load().endpoints) }

// Endpoints returns a copy of the endpoints, in registration order.
func (p *Pool) Endpoints() []*Endpoint {
	return slices.Clone(p.state.Load().endpoints)
}

// LoadBalancing is the pool's algorithm.
func (p *Pool) LoadBalancing() string { return p.state.Load().lb }

// byInstance finds the endpoint of one instance, for sticky sessions.
func (p *Pool) byInstance(id string) *Endpoint {
	if id == "" {
		return nil
	}
	for _, e := range p.state.Load().endpoints {
		if e.PrivateInstanceID == id {
			return e
		}
	}
	return nil
}

// byAppIndex finds the endpoint targeted by X-Cf-App-Instance.
func (p *Pool) byAppIndex(app, index string) *Endpoint {
	for _, e := range p.state.Load().endpoints {
		if e.AppID == app && e.PrivateInstanceIdx == index {
			return e
		}
	}
	return nil
}

// pick chooses the next endpoint for a request, skipping the ones this
// request already tried and, while others are available, the ones that failed
// within retryAfterFailure (a passive outlier ejection, as gorouter does).
// It returns nil when every endpoint has been tried.
func (p *Pool) pick(tried []*Endpoint, now time.Time, retryAfterFailure time.Duration) *Endpoint {
	st := p.state.Load()
	eps := st.endpoints
	n := len(eps)
	if n == 0 {
		return nil
	}
	if n == 1 && len(tried) == 0 {
		return eps[0]
	}
	cutoff := now.UnixNano() - int64(retryAfterFailure)
	var fallback *Endpoint
	if st.lb == mbus.LBLeastConnection {
		start := rand.IntN(n)
		var best *Endpoint
		for i := 0; i < n; i++ {
			e := eps[(start+i)%n]
			if contains(tried, e) {
				continue
			}
			if f := e.failedAt.Load(); f != 0 && f > cutoff {
				if fallback == nil {
					fallback = e
				}
				continue
			}
			if best == nil || e.inflight.Load() < best.inflight.Load() {
				best = e
			}
		}
		if best != nil {
			return best
		}
		return fallback
	}
	start := int(p.next.Add(1) % uint32(n))
	for i := 0; i < n; i++ {
		e := eps[(start+i)%n]
		if contains(tried, e) {
			continue
		}
		if f := e.failedAt.Load(); f != 0 && f > cutoff {
			if fallback == nil {
				fallback = e
			}
			continue
		}
		return e
	}
	return fallback
}

func contains(list []*Endpoint, e *Endpoint) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}
