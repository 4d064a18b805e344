package bbs

import (
	"encoding/json"
	"sync"
)

// hub fans events out to the streams subscribed to them. A subscriber that
// cannot keep up is dropped rather than allowed to stall the BBS: its client
// reconnects and resyncs, which is what Diego's consumers do after a gap.
type hub struct {
	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
}

type subscription struct {
	cellID string
	tasks  bool // the task stream: task events only; otherwise no task events
	ch     chan Event
	once   sync.Once
}

// subscriberBuffer is how many events a slow stream may fall behind.
const subscriberBuffer = 4096

func newHub() *hub { return &hub{subs: map[*subscription]struct{}{}} }

// subscribe opens an LRP instance stream (cellID "" for every cell): LRP
// events only.
func (h *hub) subscribe(cellID string) *subscription {
	return h.add(&subscription{cellID: cellID, ch: make(chan Event, subscriberBuffer)})
}

// subscribeTasks opens a task stream: task events only.
func (h *hub) subscribeTasks() *subscription {
	return h.add(&subscription{tasks: true, ch: make(chan Event, subscriberBuffer)})
}

func (h *hub) add(s *subscription) *subscription {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(s.ch)
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

func (h *hub) unsubscribe(s *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		s.once.Do(func() { close(s.ch) })
	}
}

func (h *hub) publish(events ...Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range events {
		cell := ""
		if e.IsActualLRPEvent() {
			cell = e.CellID()
		}
		task := e.IsTaskEvent()
		for s := range h.subs {
			if s.tasks != task {
				continue
			}
			if s.cellID != "" && e.IsActualLRPEvent() && cell != s.cellID {
				continue
			}
			select {
			case s.ch <- e:
			default:
				delete(h.subs, s)
				s.once.Do(func() { close(s.ch) })
			}
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		s.once.Do(func() { close(s.ch) })
	}
}

func newEvent(typ string, payload any) Event {
	b, err := json.Marshal(payload)
	if err != nil {
		panic("bbs: event payload does not marshal: " + err.Error())
	}
	return Event{Type: typ, Data: b}
}
