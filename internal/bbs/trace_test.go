package bbs

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
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

func (s *traceSink) take() []trace.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.events
	s.events = nil
	return out
}

func TestTraceLRPSteps(t *testing.T) {
	sink := &traceSink{}
	e := &env{auc: &fakeAuctioneer{}, reps: &fakeReps{}, clk: newClock()}
	e.svc = NewService(Config{Logger: quietLogger(), Now: e.clk.Now, Trace: sink},
		stOpen(t, filepath.Join(t.TempDir(), "bbs.db")), e.auc, e.reps)
	t.Cleanup(e.svc.Stop)
	ctx := context.Background()

	d := desired("web", 1)
	if err := e.svc.DesireLRP(ctx, d); err != nil {
		t.Fatal(err)
	}
	got := sink.take()
	if len(got) != 1 || got[0].Step != trace.StepLRPDesired || got[0].ProcessGUID != "web" || got[0].AppGUID != "app-web" {
		t.Fatalf("after DesireLRP: %+v", got)
	}
	var a struct {
		Routes Routes `json:"routes"`
	}
	json.Unmarshal(got[0].Artifact, &a)
	if !slices.Equal(trace.LRPHostnames(got[0].Artifact), []string{"web.apps.localhost"}) || string(a.Routes[RouterKeyCF]) != string(d.Routes[RouterKeyCF]) {
		t.Fatalf("lrp-desired artifact %s", got[0].Artifact)
	}

	ann := "1.5"
	if err := e.svc.UpdateDesiredLRP(ctx, "web", &DesiredLRPUpdate{Annotation: &ann}); err != nil {
		t.Fatal(err)
	}
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("an annotation-only update is not a step: %+v", got)
	}
	routes := Routes{}.SetCFRoutes([]CFRoute{{Hostnames: []string{"web.apps.localhost"}, Port: 8080}, {Hostnames: []string{"second.apps.localhost"}, Port: 8080}})
	if err := e.svc.UpdateDesiredLRP(ctx, "web", &DesiredLRPUpdate{Routes: &routes}); err != nil {
		t.Fatal(err)
	}
	got = sink.take()
	if len(got) != 1 || got[0].Step != trace.StepLRPUpdated || !slices.Contains(trace.LRPHostnames(got[0].Artifact), "second.apps.localhost") {
		t.Fatalf("after a routes update: %+v", got)
	}

	e.heartbeat(t, "cell-1")
	e.run(t, "web", 0, "cell-1", "inst-0")
	got = sink.take()
	if len(got) != 1 || got[0].Step != trace.StepActualLRPRunning || got[0].InstanceGUID != "inst-0" || got[0].CellID != "cell-1" {
		t.Fatalf("after StartActualLRP: %+v", got)
	}
	var actual ActualLRP
	json.Unmarshal(got[0].Artifact, &actual)
	if held := e.actual(t, "web", 0); actual.Address != held.Address || actual.State != StateRunning || actual.ModificationTag != held.ModificationTag {
		t.Fatalf("actual-lrp-running artifact %+v, the BBS holds %+v", actual, held)
	}
}
