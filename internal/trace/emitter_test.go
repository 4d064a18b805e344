package trace

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/testutil"
)

type fakeBus struct {
	mu        sync.Mutex
	msgs      map[string][][]byte
	down      atomic.Bool
	fail      atomic.Bool
	block     chan struct{} // non-nil: Publish waits on it
	published atomic.Int64
}

func (b *fakeBus) Publish(subject string, data []byte) error {
	if b.block != nil {
		<-b.block
	}
	if b.fail.Load() {
		return errors.New("nats: connection closed")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.msgs == nil {
		b.msgs = map[string][][]byte{}
	}
	b.msgs[subject] = append(b.msgs[subject], data)
	b.published.Add(1)
	return nil
}

func (b *fakeBus) Connected() bool { return !b.down.Load() }

func (b *fakeBus) count(subject string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs[subject])
}

// waitFor polls f with testutil's deadline helper, naming what it waits for.
func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if !f() {
			return errors.New("still waiting for " + what)
		}
		return nil
	})
}

func TestNATSEmitterPublishesPerComponent(t *testing.T) {
	bus := &fakeBus{}
	n := NewNATS(bus, 0)
	defer n.Close()
	Emit(n.For("router"), Event{Step: StepRouteAdded, Route: helloRt})
	Emit(n.For("bbs"), Event{Step: StepLRPDesired, Time: base})
	waitFor(t, "two messages", func() bool { return n.Sent() == 2 })
	if bus.count("minicf.trace.router") != 1 || bus.count("minicf.trace.bbs") != 1 {
		t.Fatalf("messages by subject: %v", bus.msgs)
	}
	var e Event
	if err := json.Unmarshal(bus.msgs["minicf.trace.router"][0], &e); err != nil {
		t.Fatal(err)
	}
	if e.Component != "router" || e.Step != StepRouteAdded || e.Time.IsZero() {
		t.Fatalf("published %+v: want component router and a time", e)
	}
	// The JSON is snake_case.
	var m map[string]any
	json.Unmarshal(bus.msgs["minicf.trace.router"][0], &m)
	for _, k := range []string{"time", "step", "component", "route"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("key %q missing from %s", k, bus.msgs["minicf.trace.router"][0])
		}
	}
}

func TestNATSEmitterNeverBlocks(t *testing.T) {
	// The bus hangs: Emit must return at once and count what it drops.
	bus := &fakeBus{block: make(chan struct{})}
	n := NewNATS(bus, 4)
	em := n.For("rep")
	start := time.Now()
	for i := 0; i < 1000; i++ {
		em.Emit(Event{Step: StepEnvoyListening})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("1000 Emits took %v with a hung bus", d)
	}
	// One in the publisher's hands, four queued, the rest dropped.
	if got := n.Dropped(); got < 1000-5 {
		t.Fatalf("dropped %d of 1000, want at least 995", got)
	}
	close(bus.block)
	n.Close()
}

func TestNATSEmitterDropsWhileTheBusIsDown(t *testing.T) {
	bus := &fakeBus{}
	bus.down.Store(true)
	n := NewNATS(bus, 0)
	defer n.Close()
	for i := 0; i < 10; i++ {
		n.For("garden").Emit(Event{Step: StepContainerCreated})
	}
	waitFor(t, "ten drops", func() bool { return n.Dropped() == 10 })
	if bus.published.Load() != 0 {
		t.Fatal("published while the bus was down")
	}
	bus.down.Store(false)
	n.For("garden").Emit(Event{Step: StepContainerCreated})
	waitFor(t, "a message after the bus came back", func() bool { return n.Sent() == 1 })
	bus.fail.Store(true)
	n.For("garden").Emit(Event{Step: StepContainerCreated})
	waitFor(t, "a drop on a failed publish", func() bool { return n.Dropped() == 11 })
}

func TestNATSEmitterAfterClose(t *testing.T) {
	bus := &fakeBus{}
	n := NewNATS(bus, 0)
	n.Close()
	n.Close()
	n.For("cc").Emit(Event{Step: StepRouteMapped})
	if n.Dropped() != 1 {
		t.Fatalf("dropped %d after Close, want 1", n.Dropped())
	}
	var nilNATS *NATS
	nilNATS.Emit(Event{}) // a nil emitter is harmless
}

func TestEmitIsNilSafe(t *testing.T) {
	Emit(nil, Event{Step: StepRouteMapped})
	if Enabled(nil) || Enabled(Nop{}) {
		t.Fatal("nil and Nop must report disabled")
	}
	rec := &recordingEmitter{}
	Emit(rec, Event{Step: StepRouteMapped})
	if !Enabled(rec) || len(rec.events) != 1 || rec.events[0].Time.IsZero() {
		t.Fatalf("Emit gave %+v, want one event with its time filled in", rec.events)
	}
	if Artifact(make(chan int)) != nil || Artifact(nil) != nil {
		t.Fatal("an unmarshallable artifact must be nil")
	}
}

type recordingEmitter struct{ events []Event }

func (r *recordingEmitter) Emit(e Event) { r.events = append(r.events, e) }
