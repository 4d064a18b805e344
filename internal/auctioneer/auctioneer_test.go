package auctioneer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/testutil"
)

const waitLong = 10 * time.Second

func TestSpreadsInstancesOfAProcessOverEqualCells(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	reps.add(b, "cell-a", 4096, 8192, 100)
	reps.add(b, "cell-b", 4096, 8192, 100)
	h := startHarness(t, Config{}, b, reps)

	h.request(t, start("web", 256, 0, 1, 2, 3))

	want := map[string][]string{"cell-a": {"web/0", "web/2"}, "cell-b": {"web/1", "web/3"}}
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if got := reps.placed(); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("placed %v, want %v", got, want)
		}
		return nil
	})
	if f := b.failures(); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
	_, perform := reps.calls()
	if perform["cell-a"] != 1 || perform["cell-b"] != 1 {
		t.Fatalf("each cell should get its work in one call: %v", perform)
	}
	if len(h.logs.events("auction-started")) == 0 {
		t.Fatal("no auction-started log")
	}
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		placed := h.logs.events("auction-placed")
		if len(placed) != 4 {
			return fmt.Errorf("%d auction-placed logs, want 4", len(placed))
		}
		for _, e := range placed {
			if e["process_guid"] != "web" || e["cell_id"] == nil || e["index"] == nil {
				return fmt.Errorf("auction-placed without process guid, index and cell: %v", e)
			}
		}
		return nil
	})
}

func TestLeastLoadedCellWinsForANewProcess(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	reps.add(b, "cell-a", 4096, 8192, 100)
	reps.add(b, "cell-b", 4096, 8192, 100)
	reps.add(b, "cell-c", 4096, 8192, 100)
	h := startHarness(t, Config{}, b, reps)

	// The larger process goes first and takes cell-a (ties go to the lowest
	// id); the other then prefers the empty cell-b over the busy cell-a.
	h.request(t, start("big", 2048, 0), start("other", 1024, 0))
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		want := map[string][]string{"cell-a": {"big/0"}, "cell-b": {"other/0"}}
		if got := reps.placed(); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("placed %v, want %v", got, want)
		}
		return nil
	})

	// A new process goes to the least loaded cell, cell-c.
	h.request(t, start("new", 256, 0))
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if got := reps.placed(); !reflect.DeepEqual(got["cell-c"], []string{"new/0"}) {
			return fmt.Errorf("placed %v, want new/0 on cell-c", got)
		}
		return nil
	})
}

func TestResourceLimitsAreRespected(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	// cell-a holds 2 × (512+32) MB; cell-b has memory for many but 1 container.
	reps.add(b, "cell-a", 1100, 8192, 100)
	reps.add(b, "cell-b", 8192, 8192, 1)
	h := startHarness(t, Config{}, b, reps)

	h.request(t, start("web", 512, 0, 1, 2, 3))

	// The failure is recorded and the work sent to the cells concurrently:
	// wait for both.
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if f := b.failures(); len(f) != 1 {
			return fmt.Errorf("failures %v, want one", f)
		}
		if got := reps.placed(); len(got["cell-a"]) != 2 || len(got["cell-b"]) != 1 {
			return fmt.Errorf("placed %v: want 2 on cell-a (memory) and 1 on cell-b (containers)", got)
		}
		return nil
	})
	for _, reason := range b.failures() {
		// cell-a is short of memory, cell-b of containers: no single
		// resource is short everywhere, as Diego reports it.
		if reason != "insufficient resources" {
			t.Fatalf("reason %q", reason)
		}
	}
}

func TestFullFoundationFailsNamingTheResource(t *testing.T) {
	tests := []struct {
		name       string
		memoryMB   int32
		containers int32
		want       string
	}{
		{"memory", 512, 100, "insufficient resources: memory"},
		{"containers", 8192, 1, "insufficient resources: containers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, reps := &fakeBBS{}, newFakeReps()
			reps.add(b, "cell-a", tc.memoryMB, 8192, tc.containers)
			reps.add(b, "cell-b", tc.memoryMB, 8192, tc.containers)
			h := startHarness(t, Config{}, b, reps)

			// Each cell takes one 400 MB instance; the third fits nowhere.
			h.request(t, start("web", 400, 0, 1, 2))

			testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
				if f := b.failures(); len(f) != 1 || f["web/2"] != tc.want {
					return fmt.Errorf("failures %v, want web/2: %q", f, tc.want)
				}
				return nil
			})
			testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
				for _, e := range h.logs.events("auction-failed") {
					if e["reason"] == tc.want && e["process_guid"] == "web" {
						return nil
					}
				}
				return errors.New("no auction-failed log with the reason")
			})
		})
	}
}

func TestNoCellsFindsNoCompatibleCell(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	startHarness(t, Config{}, b, reps).request(t, start("web", 256, 0, 1))
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		want := map[string]string{"web/0": "found no compatible cell", "web/1": "found no compatible cell"}
		if f := b.failures(); !reflect.DeepEqual(f, want) {
			return fmt.Errorf("failures %v, want %v", f, want)
		}
		return nil
	})
}

func TestPlacementTagsFitNoCell(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	reps.add(b, "cell-a", 4096, 8192, 100)
	h := startHarness(t, Config{}, b, reps)
	r := start("isolated", 256, 0)
	r.PlacementTags = []string{"segment-1"}
	h.request(t, r)
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if f := b.failures(); f["isolated/0"] != `found no compatible cell with placement tag "segment-1"` {
			return fmt.Errorf("failures %v", f)
		}
		return nil
	})
}

func TestRefusedWorkIsRetriedElsewhere(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	// cell-a is the emptier cell, so it wins first, but it refuses.
	reps.add(b, "cell-a", 8192, 8192, 100).refuses = true
	reps.add(b, "cell-b", 2048, 8192, 100)
	h := startHarness(t, Config{}, b, reps)

	h.request(t, start("web", 256, 0))

	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if got := reps.placed(); !reflect.DeepEqual(got["cell-b"], []string{"web/0"}) {
			return fmt.Errorf("placed %v", got)
		}
		return nil
	})
	_, perform := reps.calls()
	if perform["cell-a"] != 1 || perform["cell-b"] != 1 {
		t.Fatalf("perform calls %v: want cell-a once, then cell-b once", perform)
	}
	if f := b.failures(); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
}

func TestRefusedEverywhereFailsAfterMaxRetries(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	for _, id := range []string{"cell-a", "cell-b", "cell-c"} {
		reps.add(b, id, 4096, 8192, 100).refuses = true
	}
	h := startHarness(t, Config{MaxRetries: 1}, b, reps)

	h.request(t, start("web", 256, 0))

	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if f := b.failures(); f["web/0"] != "insufficient resources" {
			return fmt.Errorf("failures %v", f)
		}
		return nil
	})
	_, perform := reps.calls()
	total := 0
	for id, n := range perform {
		if n > 1 {
			t.Errorf("%s was offered the instance %d times", id, n)
		}
		total += n
	}
	if total != 2 {
		t.Fatalf("perform calls %v: want 2 (a first try and MaxRetries=1 retry)", perform)
	}
}

func TestACellWhoseStateFailsIsSkipped(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	reps.add(b, "cell-a", 8192, 8192, 100).stateErr = errors.New("connection refused")
	reps.add(b, "cell-b", 8192, 8192, 100).stateHangs = true
	reps.add(b, "cell-c", 1024, 8192, 100)
	h := startHarness(t, Config{CellStateTimeout: 100 * time.Millisecond}, b, reps)

	h.request(t, start("web", 256, 0, 1))

	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if got := reps.placed(); !reflect.DeepEqual(got["cell-c"], []string{"web/0", "web/1"}) {
			return fmt.Errorf("placed %v", got)
		}
		return nil
	})
	_, perform := reps.calls()
	if perform["cell-a"] != 0 || perform["cell-b"] != 0 {
		t.Fatalf("silent cells got work: %v", perform)
	}
	failedCells := map[any]bool{}
	for _, e := range h.logs.events("cell-state-failed") {
		failedCells[e["cell_id"]] = true
	}
	if !failedCells["cell-a"] || !failedCells["cell-b"] {
		t.Fatalf("cell-state-failed logged for %v, want cell-a and cell-b", failedCells)
	}
}

func TestNoCellAnsweringFailsWithCellCommunication(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	reps.add(b, "cell-a", 8192, 8192, 100).stateErr = errors.New("connection refused")
	startHarness(t, Config{}, b, reps).request(t, start("web", 256, 0))
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if f := b.failures(); f["web/0"] != "unable to communicate to compatible cells" {
			return fmt.Errorf("failures %v", f)
		}
		return nil
	})
}

func TestBatchesRequestsWithinTheWindow(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	reps.add(b, "cell-a", 8192, 8192, 100)
	reps.add(b, "cell-b", 8192, 8192, 100)
	h := startHarness(t, Config{BatchWindow: 500 * time.Millisecond}, b, reps)

	h.request(t, start("one", 256, 0))
	h.request(t, start("two", 256, 0, 1))
	h.request(t, start("three", 256, 0), start("one", 256, 0)) // one/0 again: deduplicated

	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		n := 0
		for _, ls := range reps.placed() {
			n += len(ls)
		}
		if n != 4 {
			return fmt.Errorf("%d instances placed, want 4: %v", n, reps.placed())
		}
		return nil
	})
	state, perform := reps.calls()
	if state["cell-a"] != 1 || state["cell-b"] != 1 {
		t.Fatalf("state calls %v: three requests in the window should make one auction", state)
	}
	if perform["cell-a"] > 1 || perform["cell-b"] > 1 {
		t.Fatalf("perform calls %v: one per cell per auction", perform)
	}
	if n := len(h.logs.events("auction-started")); n != 1 {
		t.Fatalf("%d auctions, want 1", n)
	}
}

func TestNewRequiresMutualTLS(t *testing.T) {
	p := newPKI(t)
	b, reps := &fakeBBS{}, newFakeReps()
	if _, err := New(Config{}, b, reps, nil); err == nil {
		t.Fatal("no TLS config was accepted")
	}
	oneWay := p.server.Clone()
	oneWay.ClientAuth = tls.NoClientCert
	if _, err := New(Config{}, b, reps, oneWay); err == nil {
		t.Fatal("a TLS config without client certificates was accepted")
	}
	if _, err := New(Config{}, nil, reps, p.server); err == nil {
		t.Fatal("no BBS client was accepted")
	}
}

func TestStopLeavesNoGoroutine(t *testing.T) {
	base := runtime.NumGoroutine()
	b, reps := &fakeBBS{}, newFakeReps()
	reps.add(b, "cell-a", 8192, 8192, 100)
	reps.add(b, "cell-b", 8192, 8192, 100).performHang = true
	reps.performing = make(chan string, 16)
	p := newPKI(t)
	a, err := New(Config{Listen: "127.0.0.1:0", BatchWindow: 10 * time.Millisecond}, b, reps, p.server)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := NewClient("https://"+a.Addr(), p.client)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := c.RequestLRPStarts(ctx, []bbs.LRPStartRequest{start("web", 256, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	// Wait until both cells have their work, one of them hanging on it.
	for range 2 {
		select {
		case <-reps.performing:
		case <-ctx.Done():
			t.Fatal("the work never reached the cells")
		}
	}
	// Work keeps arriving while stopping; none of it may outlive Stop.
	if err := c.RequestLRPStarts(ctx, []bbs.LRPStartRequest{start("late", 256, 0)}); err != nil {
		t.Fatal(err)
	}
	c.CloseIdleConnections()
	stopped := time.Now()
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(stopped); d > 5*time.Second {
		t.Fatalf("Stop took %v with an auction in flight", d)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("a second Stop: %v", err)
	}
	testutil.CheckFor(t, waitLong, 20*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > base {
			buf := make([]byte, 1<<16)
			return fmt.Errorf("%d goroutines after Stop, %d before Start:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}
