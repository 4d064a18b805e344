package trace

import (
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"time"
)

// DefaultCapacity is how many events a Recorder keeps.
const DefaultCapacity = 5000

// Recorder keeps the last Capacity events in a ring and hands new ones to
// its subscribers. It is safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	ring []entry
	next int // where the next entry goes
	n    int // entries held
	seq  uint64
	subs map[*Subscription]struct{}
	bad  int64 // messages that were not events
}

type entry struct {
	seq uint64
	ev  Event
}

// NewRecorder keeps capacity events (0 or less: DefaultCapacity).
func NewRecorder(capacity int) *Recorder {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Recorder{ring: make([]entry, capacity), subs: map[*Subscription]struct{}{}}
}

// Capacity is how many events the ring holds.
func (r *Recorder) Capacity() int { return len(r.ring) }

// Len is how many events it holds now.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Invalid counts the messages HandleMessage refused.
func (r *Recorder) Invalid() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bad
}

// Add records e, the oldest event making room when the ring is full, and
// offers it to every subscriber.
func (r *Recorder) Add(e Event) {
	e.Route = NormalizeRoute(e.Route)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	r.ring[r.next] = entry{seq: r.seq, ev: e}
	r.next = (r.next + 1) % len(r.ring)
	if r.n < len(r.ring) {
		r.n++
	}
	for s := range r.subs {
		s.offer(Stamped{Seq: r.seq, Event: e})
	}
}

// MaxMessageBytes bounds one event on the bus.
const MaxMessageBytes = 256 << 10

// HandleMessage records one message of minicf.trace.>: an Event as JSON.
func (r *Recorder) HandleMessage(data []byte) error {
	if len(data) > MaxMessageBytes {
		r.countBad()
		return errors.New("trace event larger than 256 KiB")
	}
	var e Event
	if err := json.Unmarshal(data, &e); err != nil || e.Step == "" || e.Time.IsZero() {
		r.countBad()
		if err == nil {
			err = errors.New("trace event without step or time")
		}
		return err
	}
	r.Add(e)
	return nil
}

func (r *Recorder) countBad() {
	r.mu.Lock()
	r.bad++
	r.mu.Unlock()
}

// Stamped is an event with the Recorder's sequence number, which orders
// events by arrival and identifies them in a stream.
type Stamped struct {
	Seq uint64
	Event
}

// snapshot copies the ring, oldest first.
func (r *Recorder) snapshot() []Stamped {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Stamped, 0, r.n)
	start := (r.next - r.n + len(r.ring)) % len(r.ring)
	for i := 0; i < r.n; i++ {
		en := r.ring[(start+i)%len(r.ring)]
		out = append(out, Stamped{Seq: en.seq, Event: en.ev})
	}
	return out
}

// Events are every event held, ordered by time.
func (r *Recorder) Events() []Event { return plain(sortByTime(r.snapshot())) }

// Query returns the events q selects, ordered by time (see Join).
func (r *Recorder) Query(q Query) []Event { return plain(Join(r.snapshot(), q)) }

// Route is the journey of one route: Query(Query{Route: route}).
func (r *Recorder) Route(route string) []Event { return r.Query(Query{Route: route}) }

func plain(s []Stamped) []Event {
	out := make([]Event, len(s))
	for i, e := range s {
		out[i] = e.Event
	}
	return out
}

// sortByTime orders by time, then by arrival.
func sortByTime(s []Stamped) []Stamped {
	sort.SliceStable(s, func(i, j int) bool {
		if !s[i].Time.Equal(s[j].Time) {
			return s[i].Time.Before(s[j].Time)
		}
		return s[i].Seq < s[j].Seq
	})
	return s
}

// Subscription receives the events recorded after it was made.
type Subscription struct {
	r       *Recorder
	C       <-chan Stamped
	c       chan Stamped
	mu      sync.Mutex
	dropped int64
}

// Subscribe returns a subscription whose channel holds up to buffer
// events (0: 256); a subscriber that falls behind loses events (counted
// in Dropped) rather than slowing the Recorder.
func (r *Recorder) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = 256
	}
	c := make(chan Stamped, buffer)
	s := &Subscription{r: r, C: c, c: c}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	return s
}

// Subscribers is how many subscriptions are open.
func (r *Recorder) Subscribers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.subs)
}

func (s *Subscription) offer(e Stamped) {
	select {
	case s.c <- e:
	default:
		s.mu.Lock()
		s.dropped++
		s.mu.Unlock()
	}
}

// Dropped counts the events this subscriber missed because it was slow.
func (s *Subscription) Dropped() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close ends the subscription. Its channel is not closed.
func (s *Subscription) Close() {
	s.r.mu.Lock()
	delete(s.r.subs, s)
	s.r.mu.Unlock()
}

// Query selects events. The first non-empty field of Route, InstanceGUID,
// ProcessGUID and AppGUID is used; all empty selects every event.
type Query struct {
	Route, AppGUID, ProcessGUID, InstanceGUID string
}

// Empty reports whether q selects everything.
func (q Query) Empty() bool {
	return q.Route == "" && q.AppGUID == "" && q.ProcessGUID == "" && q.InstanceGUID == ""
}

// Join selects the events of q from events and orders them by time.
//
// A route's journey (Query.Route) is put together from the keys the
// events carry, since most components never see the route:
//
//   - the events whose Route is the route (route-mapped, route-registered,
//     route-added, first-request), and the lrp-desired and lrp-updated
//     events whose DesiredLRP lists the route among its cf-router
//     hostnames;
//   - then, repeatedly, every event carrying a process guid or an instance
//     guid that a selected event carries (instance-placed, container-created,
//     dnat-applied, envoy-listening, actual-lrp-running, ...), except the
//     events of other routes (the same instance registered for another
//     route is not a step of this one).
//
// A journey starts at the route's latest route-mapped event when the
// Recorder still holds one: a route mapped again (or a second route
// mapped to a running app) gets the journey of that mapping, not the
// history of the instances that already ran.
//
// An instance (Query.InstanceGUID) is its own events plus the lrp-desired
// and lrp-updated events of its process; a process (Query.ProcessGUID) and
// an app (Query.AppGUID) are their events plus everything joined through
// the process and instance guids they carry.
func Join(events []Stamped, q Query) []Stamped {
	events = sortByTime(append([]Stamped(nil), events...))
	if q.Empty() {
		return events
	}
	route := NormalizeRoute(q.Route)
	var start time.Time
	if route != "" {
		for _, e := range events {
			if e.Step == StepRouteMapped && e.Route == route {
				start = e.Time
			}
		}
	}
	in := make([]bool, len(events))
	procs, insts := map[string]bool{}, map[string]bool{}
	take := func(i int) {
		in[i] = true
		if p := events[i].ProcessGUID; p != "" {
			procs[p] = true
		}
		if g := events[i].InstanceGUID; g != "" {
			insts[g] = true
		}
	}
	for i, e := range events {
		if e.Time.Before(start) {
			continue
		}
		switch {
		case route != "":
			if e.Route == route || lrpStep(e.Step) && lrpHasRoute(e.Artifact, route) {
				take(i)
			}
		case q.InstanceGUID != "":
			if e.InstanceGUID == q.InstanceGUID {
				in[i] = true
				if e.ProcessGUID != "" {
					procs[e.ProcessGUID] = true
				}
			}
		case q.ProcessGUID != "":
			if e.ProcessGUID == q.ProcessGUID {
				take(i)
			}
		case q.AppGUID != "":
			if e.AppGUID == q.AppGUID {
				take(i)
			}
		}
	}
	if q.Route == "" && q.InstanceGUID != "" {
		for i, e := range events {
			if lrpStep(e.Step) && procs[e.ProcessGUID] {
				in[i] = true
			}
		}
	} else {
		for changed := true; changed; {
			changed = false
			for i, e := range events {
				if in[i] || e.Time.Before(start) || route != "" && e.Route != "" && e.Route != route {
					continue // another route's steps are not this one's
				}
				if e.ProcessGUID != "" && procs[e.ProcessGUID] || e.InstanceGUID != "" && insts[e.InstanceGUID] {
					take(i)
					changed = true
				}
			}
		}
	}
	out := make([]Stamped, 0, len(events))
	for i, e := range events {
		if in[i] {
			out = append(out, e)
		}
	}
	return out
}

func lrpStep(step string) bool { return step == StepLRPDesired || step == StepLRPUpdated }

// lrpHasRoute reports whether an lrp-desired or lrp-updated artifact lists
// route among its routes["cf-router"] hostnames.
func lrpHasRoute(artifact json.RawMessage, route string) bool {
	for _, h := range LRPHostnames(artifact) {
		if NormalizeRoute(h) == route {
			return true
		}
	}
	return false
}

// LRPHostnames are the cf-router hostnames of an lrp-desired or
// lrp-updated artifact.
func LRPHostnames(artifact json.RawMessage) []string {
	if len(artifact) == 0 {
		return nil
	}
	var a struct {
		Routes map[string]json.RawMessage `json:"routes"`
	}
	if json.Unmarshal(artifact, &a) != nil {
		return nil
	}
	var cf []struct {
		Hostnames []string `json:"hostnames"`
	}
	if json.Unmarshal(a.Routes["cf-router"], &cf) != nil {
		return nil
	}
	var out []string
	for _, r := range cf {
		out = append(out, r.Hostnames...)
	}
	return out
}

// Follower selects the events of one query as they arrive, for a live
// stream: it starts from the keys of the journey so far and learns new
// ones from each event it selects. A new route-mapped event of the route
// starts a new journey.
type Follower struct {
	q            Query
	route        string
	procs, insts map[string]bool
}

// NewFollower starts following q after the events already recorded.
func NewFollower(q Query, past []Stamped) *Follower {
	f := &Follower{q: q, route: NormalizeRoute(q.Route), procs: map[string]bool{}, insts: map[string]bool{}}
	for _, e := range Join(past, q) {
		f.learn(e.Event)
	}
	return f
}

func (f *Follower) learn(e Event) {
	if e.ProcessGUID != "" {
		f.procs[e.ProcessGUID] = true
	}
	if e.InstanceGUID != "" && (f.q.Route != "" || f.q.InstanceGUID == "") {
		f.insts[e.InstanceGUID] = true
	}
}

// Match reports whether e belongs to the followed journey.
func (f *Follower) Match(e Event) bool {
	if f.q.Empty() {
		return true
	}
	var hit bool
	switch {
	case f.route != "":
		if e.Step == StepRouteMapped && e.Route == f.route {
			f.procs, f.insts = map[string]bool{}, map[string]bool{}
		}
		hit = e.Route == f.route || lrpStep(e.Step) && lrpHasRoute(e.Artifact, f.route)
	case f.q.InstanceGUID != "":
		hit = e.InstanceGUID == f.q.InstanceGUID || lrpStep(e.Step) && f.procs[e.ProcessGUID]
	case f.q.ProcessGUID != "":
		hit = e.ProcessGUID == f.q.ProcessGUID
	case f.q.AppGUID != "":
		hit = e.AppGUID == f.q.AppGUID
	}
	if !hit && f.q.InstanceGUID == "" && (f.route == "" || e.Route == "") {
		hit = e.ProcessGUID != "" && f.procs[e.ProcessGUID] || e.InstanceGUID != "" && f.insts[e.InstanceGUID]
	}
	if hit {
		f.learn(e)
	}
	return hit
}
