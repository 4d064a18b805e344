package auctioneer

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/rep"
	"github.com/minicf/minicf/internal/testutil"
)

func TestTasksArePlacedOnTheLeastLoadedCellsWithoutProxyMemory(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	reps.add(b, "cell-a", 1024, 8192, 100)
	reps.add(b, "cell-b", 1024, 8192, 100)
	h := startHarness(t, Config{}, b, reps)

	// Larger first: t-big takes cell-a (a tie, lowest id), t-big2 the
	// emptier cell-b, t-small ties again and goes to cell-a.
	h.requestTasks(t, task("t-small", 100), task("t-big", 512), task("t-big2", 512))
	want := map[string][]string{"cell-a": {"t-big", "t-small"}, "cell-b": {"t-big2"}}
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if got := reps.placedTasks(); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("placed %v, want %v", got, want)
		}
		return nil
	})
	if f := b.failures(); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
	reps.mu.Lock()
	if len(reps.works) != 2 {
		t.Errorf("%d works, want one per cell", len(reps.works))
	}
	for _, w := range reps.works {
		if len(w.work.LRPs) != 0 || len(w.work.Tasks) == 0 || w.work.Tasks[0].Domain != bbs.DomainCFTasks {
			t.Errorf("work to %s: %+v", w.cell, w.work)
		}
	}
	reps.mu.Unlock()
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		placed := h.logs.events("auction-placed")
		if len(placed) != 3 {
			return fmt.Errorf("%d auction-placed logs", len(placed))
		}
		for _, e := range placed {
			if e["task_guid"] == nil || e["process_guid"] != nil {
				return fmt.Errorf("auction-placed of a Task: %v", e)
			}
		}
		return nil
	})

	// A cell with 100 MB takes a 100 MB Task, but not a 100 MB LRP, whose
	// envoy needs 32 MB more.
	b2, reps2 := &fakeBBS{}, newFakeReps()
	reps2.add(b2, "cell-c", 100, 8192, 100)
	h2 := startHarness(t, Config{}, b2, reps2)
	h2.request(t, start("lrp", 100, 0))
	h2.requestTasks(t, task("t-fits", 100))
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if got := reps2.placedTasks(); !reflect.DeepEqual(got, map[string][]string{"cell-c": {"t-fits"}}) {
			return fmt.Errorf("placed tasks %v", got)
		}
		if got := b2.failures(); !reflect.DeepEqual(got, map[string]string{"lrp/0": "insufficient resources: memory"}) {
			return fmt.Errorf("failures %v", got)
		}
		return nil
	})
}

func TestTaskThatFitsNowhereIsFailedInTheBBS(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	reps.add(b, "cell-a", 1024, 1024, 100)
	h := startHarness(t, Config{}, b, reps)
	tagged := task("t-tagged", 64)
	tagged.PlacementTags = []string{"iso-1"}
	h.requestTasks(t, task("t-huge", 4096), tagged, task("t-ok", 64))
	want := map[string]string{
		"task:t-huge":   "insufficient resources: memory",
		"task:t-tagged": `found no compatible cell with placement tag "iso-1"`,
	}
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if got := b.failures(); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("failures %v, want %v", got, want)
		}
		return nil
	})
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if got := reps.placedTasks(); !reflect.DeepEqual(got, map[string][]string{"cell-a": {"t-ok"}}) {
			return fmt.Errorf("placed %v", got)
		}
		return nil
	})

	// No cells at all.
	b2 := &fakeBBS{}
	h2 := startHarness(t, Config{}, b2, newFakeReps())
	h2.requestTasks(t, task("t-lonely", 64))
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if got := b2.failures(); got["task:t-lonely"] != "found no compatible cell" {
			return fmt.Errorf("failures %v", got)
		}
		return nil
	})
}

func TestRefusedTaskIsRetriedElsewhereThenFailed(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	reps.add(b, "cell-a", 4096, 8192, 100).refuses = true
	reps.add(b, "cell-b", 1024, 8192, 100)
	h := startHarness(t, Config{}, b, reps)
	// cell-a wins the first round (more room) and refuses; cell-b takes it.
	h.requestTasks(t, task("t-1", 512))
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if got := reps.placedTasks(); !reflect.DeepEqual(got, map[string][]string{"cell-b": {"t-1"}}) {
			return fmt.Errorf("placed %v", got)
		}
		return nil
	})
	// Every cell refuses: failed after the retries.
	reps.mu.Lock()
	reps.cells["cell-b"].refuses = true
	reps.mu.Unlock()
	h.requestTasks(t, task("t-2", 64))
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if got := b.failures(); got["task:t-2"] != ReasonInsufficientResources {
			return fmt.Errorf("failures %v", got)
		}
		return nil
	})
}

func TestLRPsAndTasksOfABatchGoToACellInOneWork(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	reps.add(b, "cell-a", 4096, 8192, 100)
	h := startHarness(t, Config{BatchWindow: 200 * time.Millisecond}, b, reps)
	h.requestTasks(t, task("stage", 256))
	h.request(t, start("web", 256, 0))
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		reps.mu.Lock()
		defer reps.mu.Unlock()
		if len(reps.works) != 1 {
			return fmt.Errorf("%d works", len(reps.works))
		}
		w := reps.works[0].work
		if len(w.LRPs) != 1 || w.LRPs[0].ProcessGUID != "web" || len(w.Tasks) != 1 || w.Tasks[0].TaskGUID != "stage" {
			return fmt.Errorf("work %+v", w)
		}
		return nil
	})
}

// A Task has no same-process penalty, needs no proxy memory, and comes
// after the LRPs of its round.
func TestScheduleTasks(t *testing.T) {
	st := func(id string) *cellView {
		capacity := bbs.CellCapacity{MemoryMB: 1024, DiskMB: 1024, Containers: 10}
		return newCellView(&bbs.CellPresence{CellID: id}, &rep.CellState{TotalResources: capacity, AvailableResources: capacity})
	}
	a, bcell := st("cell-a"), st("cell-b")
	a.instances["job"] = 2 // an LRP called "job" runs twice on cell-a
	insts := []*instance{
		{task: &rep.Task{TaskGUID: "job", Resource: bbs.Resource{MemoryMB: 1024 - 32}}},
		{lrp: rep.LRP{ProcessGUID: "web", Index: 0, Resource: bbs.Resource{MemoryMB: 1024 - 32}}},
	}
	work, failed := schedule([]*cellView{a, bcell}, insts, 32, 0.25, ReasonNoCells)
	if len(failed) != 0 {
		t.Fatalf("failed %+v", failed)
	}
	// The LRP goes first, though listed second, and takes cell-a (both are
	// empty: a tie); then the Task, whose 992 MB fit only cell-b now.
	got := map[string][]string{}
	for id, insts := range work {
		for _, in := range insts {
			if in.task != nil {
				got[id] = append(got[id], "task:"+in.task.TaskGUID)
			} else {
				got[id] = append(got[id], in.lrp.ProcessGUID)
			}
		}
	}
	if want := map[string][]string{"cell-a": {"web"}, "cell-b": {"task:job"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("work %v, want %v", got, want)
	}
	if a.available.memoryMB != 0 || bcell.available.memoryMB != 32 {
		t.Fatalf("memory left: a %d (web + proxy), b %d (the Task, no proxy)", a.available.memoryMB, bcell.available.memoryMB)
	}
	if a.instances["job"] != 2 || bcell.instances["job"] != 0 {
		t.Fatalf("a Task counted as a process instance: %v %v", a.instances, bcell.instances)
	}
	// On equal cells a Task ignores the same-named LRP's instances.
	c1, c2 := st("cell-a"), st("cell-b")
	c1.instances["job"] = 5
	work, _ = schedule([]*cellView{c1, c2}, []*instance{{task: &rep.Task{TaskGUID: "job", Resource: bbs.Resource{MemoryMB: 64}}}}, 32, 0.25, ReasonNoCells)
	if len(work["cell-a"]) != 1 {
		t.Fatalf("the Task went to %v, want cell-a (a tie, lowest id)", work)
	}
}
