package router

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/minicf/minicf/internal/trace"
)

type traceSink struct {
	mu     sync.Mutex
	events []trace.Event
}

func (s *traceSink) Emit(e trace.Event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

func (s *traceSink) steps(step string) []trace.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []trace.Event
	for _, e := range s.events {
		if e.Step == step {
			out = append(out, e)
		}
	}
	return out
}

func TestTraceRouteAddedAndFirstRequest(t *testing.T) {
	sink := &traceSink{}
	h := newHarness(t, func(_ *FileConfig, o *Options) { o.Trace = sink })
	b := newBackend(t, "b0", nil)
	m := b.msg("Traced.localhost", "inst-1", "0")
	h.register(m)
	h.register(m) // a heartbeat adds nothing
	added := sink.steps(trace.StepRouteAdded)
	if len(added) != 1 {
		t.Fatalf("route-added %d times, want once", len(added))
	}
	var entry RouteEndpoint
	if err := json.Unmarshal(added[0].Artifact, &entry); err != nil {
		t.Fatal(err)
	}
	if added[0].Route != "traced.localhost" || added[0].InstanceGUID != "inst-1" || entry.Address != m.Address() ||
		entry.PrivateInstanceID != "inst-1" || entry.LoadBalancing == "" {
		t.Fatalf("route-added %+v, pool entry %+v", added[0], entry)
	}
	if snap := h.r.RoutesSnapshot()["traced.localhost"]; len(snap) != 1 || snap[0].Address != entry.Address || snap[0].TLS != entry.TLS {
		t.Fatalf("the pool entry %+v is not /routes' %+v", entry, snap)
	}

	var ids []string
	for i := 0; i < 3; i++ {
		resp := h.do("GET", "traced.localhost", "/x", nil)
		readBody(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		ids = append(ids, resp.Header.Get("X-Vcap-Request-Id"))
	}
	first := sink.steps(trace.StepFirstRequest)
	if len(first) != 1 {
		t.Fatalf("first-request %d times, want once", len(first))
	}
	var a struct {
		RequestID string `json:"request_id"`
		Endpoint  string `json:"endpoint"`
		Status    int    `json:"status"`
		Path      string `json:"path"`
	}
	json.Unmarshal(first[0].Artifact, &a)
	if a.RequestID != ids[0] || a.Endpoint != m.Address() || a.Status != 200 || a.Path != "/x" || first[0].Route != "traced.localhost" {
		t.Fatalf("first-request %+v (artifact %+v), want request %s", first[0], a, ids[0])
	}

	// A new instance at the same address is a new endpoint: traced again.
	h.register(b.msg("traced.localhost", "inst-2", "0"))
	if n := len(sink.steps(trace.StepRouteAdded)); n != 2 {
		t.Fatalf("route-added %d times after a new instance took the address, want 2", n)
	}
	readBody(t, h.do("GET", "traced.localhost", "/", nil))
	if n := len(sink.steps(trace.StepFirstRequest)); n != 2 {
		t.Fatalf("first-request %d times, want 2", n)
	}
}
