package router

import (
	"math/rand/v2"
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
type Pool struct {
	key mbus.RouteKey

	mu        sync.RWMutex
	endpoints []*Endpoint
	byAddr    map[string]*Endpoint
	lb        string // round-robin or least-connection

	next atomic.Uint32
}

func newPool(key mbus.RouteKey, lb string) *Pool {
	p := &Pool{key: key, byAddr: make(map[string]*Endpoint, 1), lb: lb}
	// A random start spreads the first requests of many routers over instances.
	p.next.Store(rand.Uint32())
	return p
}

// Key is the route this pool serves.
func (p *Pool) Key() mbus.RouteKey { return p.key }

// put adds or refreshes an endpoint. An update whose endpoint_updated_at_ns is
// older than the stored endpoint's is ignored: NATS does not order messages
// from different publishers, and an old registration must not undo a new one.
func (p *Pool) put(e *Endpoint, lb string) (putResult, *Endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if lb != "" {
		p.lb = lb
	}
	old, ok := p.byAddr[e.Addr]
	if !ok {
		p.endpoints = append(p.endpoints, e)
		p.byAddr[e.Addr] = e
		return putAdded, nil
	}
	if old.UpdatedAtNs != 0 && e.UpdatedAtNs != 0 && e.UpdatedAtNs < old.UpdatedAtNs {
		return putIgnored, nil
	}
	if old.sameAs(e) {
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
	for i, x := range p.endpoints {
		if x == old {
			p.endpoints[i] = e
			break
		}
	}
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

func (p *Pool) removeLocked(e *Endpoint) {
	delete(p.byAddr, e.Addr)
	for i, x := range p.endpoints {
		if x == e {
			// Copy rather than reslice in place: pickers hold the old slice
			// under the read lock only while picking, but clarity wins here.
			eps := make([]*Endpoint, 0, len(p.endpoints)-1)
			eps = append(eps, p.endpoints[:i]...)
			p.endpoints = append(eps, p.endpoints[i+1:]...)
			break
		}
	}
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
	for _, e := range p.endpoints {
		if e.TLS {
			continue
		}
		if nowNs-e.updated.Load() > int64(e.StaleThreshold) {
			pruned = append(pruned, e)
		}
	}
	for _, e := range pruned {
		p.removeLocked(e)
	}
	return pruned
}

// freshen stamps every endpoint as registered now. Called after the bus comes
// back, so that routes are not all pruned before emitters re-register them.
func (p *Pool) freshen(now time.Time) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, e := range p.endpoints {
		e.updated.Store(now.UnixNano())
	}
}

// Len is the number of endpoints.
func (p *Pool) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.endpoints)
}

// Endpoints returns a copy of the endpoints, in registration order.
func (p *Pool) Endpoints() []*Endpoint {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return append([]*Endpoint(nil), p.endpoints...)
}

// LoadBalancing is the pool's algorithm.
func (p *Pool) LoadBalancing() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.lb
}

// byInstance finds the endpoint of one instance, for sticky sessions.
func (p *Pool) byInstance(id string) *Endpoint {
	if id == "" {
		return nil
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, e := range p.endpoints {
		if e.PrivateInstanceID == id {
			return e
		}
	}
	return nil
}

// byAppIndex finds the endpoint targeted by X-Cf-App-Instance.
func (p *Pool) byAppIndex(app, index string) *Endpoint {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, e := range p.endpoints {
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
	p.mu.RLock()
	defer p.mu.RUnlock()
	n := len(p.endpoints)
	if n == 0 {
		return nil
	}
	if n == 1 && len(tried) == 0 {
		return p.endpoints[0]
	}
	cutoff := now.UnixNano() - int64(retryAfterFailure)
	var fallback *Endpoint
	if p.lb == mbus.LBLeastConnection {
		start := rand.IntN(n)
		var best *Endpoint
		for i := 0; i < n; i++ {
			e := p.endpoints[(start+i)%n]
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
		e := p.endpoints[(start+i)%n]
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
