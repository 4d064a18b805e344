package trace

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"
)

// SubjectPrefix starts every trace subject: minicf.trace.<component>.
const SubjectPrefix = "minicf.trace."

// SubjectAll is what a Recorder subscribes to.
const SubjectAll = SubjectPrefix + ">"

// DefaultQueue is how many events a NATS emitter holds while it publishes.
const DefaultQueue = 1024

// Publisher is what the NATS emitter needs from the bus; *mbus.Client has
// it. When it also has Connected() bool (mbus.Client does), events are
// dropped while it reports false, instead of piling up in the client's
// reconnect buffer.
type Publisher interface {
	Publish(subject string, data []byte) error
}

type connectedReporter interface{ Connected() bool }

// NATS publishes events on the bus from one goroutine of its own, so that
// Emit never waits: an event that finds the queue full, or the bus down,
// is dropped and counted. Components get their Emitter from For.
type NATS struct {
	pub     Publisher
	queue   chan Event
	dropped atomic.Int64
	sent    atomic.Int64
	closed  atomic.Bool
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// NewNATS starts a NATS emitter with a queue of queue events (0: DefaultQueue).
func NewNATS(pub Publisher, queue int) *NATS {
	if queue <= 0 {
		queue = DefaultQueue
	}
	n := &NATS{pub: pub, queue: make(chan Event, queue), stop: make(chan struct{}), done: make(chan struct{})}
	go n.run()
	return n
}

// For is the Emitter of one component: its events are published on
// minicf.trace.<component> with Component set.
func (n *NATS) For(component string) Emitter {
	return componentEmitter{n: n, component: component}
}

type componentEmitter struct {
	n         *NATS
	component string
}

func (c componentEmitter) Emit(e Event) {
	e.Component = c.component
	c.n.Emit(e)
}

// Emit queues e (Component must be set) without ever blocking.
func (n *NATS) Emit(e Event) {
	if n == nil {
		return
	}
	if n.closed.Load() {
		n.dropped.Add(1)
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	select {
	case n.queue <- e:
	default:
		n.dropped.Add(1)
	}
}

// Dropped counts the events that were not published: queue full, bus
// down, publish failed, or emitted after Close.
func (n *NATS) Dropped() int64 { return n.dropped.Load() }

// Sent counts the events handed to the bus.
func (n *NATS) Sent() int64 { return n.sent.Load() }

// Close stops the publishing goroutine; queued events that it has not
// sent yet are dropped. Emit after Close drops.
func (n *NATS) Close() {
	n.once.Do(func() {
		n.closed.Store(true)
		close(n.stop)
		<-n.done
		for {
			select {
			case <-n.queue:
				n.dropped.Add(1)
			default:
				return
			}
		}
	})
}

func (n *NATS) run() {
	defer close(n.done)
	cr, _ := n.pub.(connectedReporter)
	for {
		select {
		case <-n.stop:
			return
		case e := <-n.queue:
			if cr != nil && !cr.Connected() {
				n.dropped.Add(1)
				continue
			}
			data, err := json.Marshal(e)
			if err == nil {
				err = n.pub.Publish(Subject(e.Component), data)
			}
			if err != nil {
				n.dropped.Add(1)
				continue
			}
			n.sent.Add(1)
		}
	}
}

// Subject is the subject of a component's events.
func Subject(component string) string {
	if component == "" {
		component = "unknown"
	}
	return SubjectPrefix + component
}
