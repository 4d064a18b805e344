package auctioneer

import (
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/rep"
)

func TestScore(t *testing.T) {
	cell := resources{memoryMB: 1000, diskMB: 1000, containers: 10}
	need := resources{memoryMB: 100, diskMB: 100, containers: 1}
	tests := []struct {
		name        string
		total       resources
		avail       resources
		starting    int
		sameProcess int
		weight      float64
		want        float64
	}{
		{name: "empty cell", total: cell, avail: cell, want: 0.1},
		{name: "half used cell", total: cell, avail: resources{500, 500, 5}, want: 0.6},
		{name: "memory alone used", total: cell, avail: resources{500, 1000, 10}, want: (0.6 + 0.1 + 0.1) / 3},
		{name: "starting containers weigh", total: cell, avail: cell, starting: 2, weight: 0.25, want: 0.1 + 0.5},
		{name: "starting containers without weight", total: cell, avail: cell, starting: 2, want: 0.1},
		{name: "an instance of the same process", total: cell, avail: cell, sameProcess: 1, want: 1000.1},
		{name: "two instances of the same process", total: cell, avail: resources{500, 500, 5}, sameProcess: 2, want: 2000.6},
		{name: "a cell that does not account disk", total: resources{1000, 0, 10}, avail: resources{1000, 0, 10}, want: (0.1 + 0 + 0.1) / 3},
		{name: "the last room on a cell", total: cell, avail: resources{100, 100, 1}, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := score(tc.total, tc.avail, need, tc.starting, tc.sameProcess, tc.weight)
			if math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("score = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlacementErrorText(t *testing.T) {
	tests := []struct{ got, want string }{
		{insufficientResources(problemMemory), "insufficient resources: memory"},
		{insufficientResources(problemContainers), "insufficient resources: containers"},
		{insufficientResources(problemMemory | problemDisk | problemContainers), "insufficient resources: containers, disk, memory"},
		{insufficientResources(0), "insufficient resources"},
		{placementTagMismatch([]string{"a"}), `found no compatible cell with placement tag "a"`},
		{placementTagMismatch([]string{"a", "b"}), `found no compatible cell with placement tags "a" and "b"`},
		{placementTagMismatch([]string{"a", "b", "c"}), `found no compatible cell with placement tags "a", "b" and "c"`},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// cellSpec describes a cell for TestSchedule: total and available memory,
// disk and containers, starting containers and the processes it runs.
type cellSpec struct {
	id        string
	total     bbs.CellCapacity
	avail     bbs.CellCapacity
	starting  int
	processes []string
}

type instSpec struct {
	guid      string
	index     int32
	memoryMB  int32
	tags      []string
	refusedBy []string
}

func TestSchedule(t *testing.T) {
	big := bbs.CellCapacity{MemoryMB: 4096, DiskMB: 4096, Containers: 10}
	equal := func(id string) cellSpec { return cellSpec{id: id, total: big, avail: big} }
	inst := func(guid string, index int32, mem int32) instSpec {
		return instSpec{guid: guid, index: index, memoryMB: mem}
	}
	tests := []struct {
		name     string
		cells    []cellSpec
		insts    []instSpec
		noCells  string
		want     map[string][]string // cell id → "guid/index" in placement order
		wantFail map[string]string   // "guid/index" → placement error
	}{
		{
			name:  "four instances of one process spread two and two over equal cells",
			cells: []cellSpec{equal("cell-a"), equal("cell-b")},
			insts: []instSpec{inst("p", 0, 256), inst("p", 1, 256), inst("p", 2, 256), inst("p", 3, 256)},
			want:  map[string][]string{"cell-a": {"p/0", "p/2"}, "cell-b": {"p/1", "p/3"}},
		},
		{
			name: "the least loaded cell wins for a new process",
			cells: []cellSpec{
				{id: "cell-a", total: big, avail: bbs.CellCapacity{MemoryMB: 1024, DiskMB: 1024, Containers: 4}, processes: []string{"x", "y"}},
				{id: "cell-b", total: big, avail: bbs.CellCapacity{MemoryMB: 3072, DiskMB: 3072, Containers: 8}, processes: []string{"z"}},
			},
			insts: []instSpec{inst("p", 0, 256)},
			want:  map[string][]string{"cell-b": {"p/0"}},
		},
		{
			name: "an instance of the same process outweighs any load",
			cells: []cellSpec{
				{id: "cell-a", total: big, avail: big, processes: []string{"p"}},
				{id: "cell-b", total: big, avail: bbs.CellCapacity{MemoryMB: 512, DiskMB: 512, Containers: 1}, processes: []string{"x"}},
			},
			insts: []instSpec{inst("p", 1, 256)},
			want:  map[string][]string{"cell-b": {"p/1"}},
		},
		{
			name: "starting containers count against a cell",
			cells: []cellSpec{
				{id: "cell-a", total: big, avail: big, starting: 3},
				{id: "cell-b", total: big, avail: bbs.CellCapacity{MemoryMB: 3072, DiskMB: 3072, Containers: 8}},
			},
			insts: []instSpec{inst("p", 0, 256)},
			want:  map[string][]string{"cell-b": {"p/0"}},
		},
		{
			name:  "ties go to the lowest cell id",
			cells: []cellSpec{equal("cell-b"), equal("cell-a"), equal("cell-c")},
			insts: []instSpec{inst("p", 0, 256)},
			want:  map[string][]string{"cell-a": {"p/0"}},
		},
		{
			name: "memory fills and spills, the proxy's 32 MB included",
			cells: []cellSpec{
				// 2 × (512+32) = 1088 fit in 1100; 1 fits in 600.
				{id: "cell-a", total: bbs.CellCapacity{MemoryMB: 1100, DiskMB: 4096, Containers: 10}, avail: bbs.CellCapacity{MemoryMB: 1100, DiskMB: 4096, Containers: 10}},
				{id: "cell-b", total: bbs.CellCapacity{MemoryMB: 600, DiskMB: 4096, Containers: 10}, avail: bbs.CellCapacity{MemoryMB: 600, DiskMB: 4096, Containers: 10}},
			},
			insts:    []instSpec{inst("p", 0, 512), inst("p", 1, 512), inst("p", 2, 512), inst("p", 3, 512)},
			want:     map[string][]string{"cell-a": {"p/0", "p/2"}, "cell-b": {"p/1"}},
			wantFail: map[string]string{"p/3": "insufficient resources: memory"},
		},
		{
			name: "the proxy's overhead alone can leave no room",
			cells: []cellSpec{
				{id: "cell-a", total: big, avail: bbs.CellCapacity{MemoryMB: 1050, DiskMB: 4096, Containers: 10}},
			},
			insts:    []instSpec{inst("p", 0, 1024)},
			wantFail: map[string]string{"p/0": "insufficient resources: memory"},
		},
		{
			name: "containers run out",
			cells: []cellSpec{
				{id: "cell-a", total: big, avail: bbs.CellCapacity{MemoryMB: 4096, DiskMB: 4096, Containers: 1}},
				{id: "cell-b", total: big, avail: bbs.CellCapacity{MemoryMB: 4096, DiskMB: 4096, Containers: 1}},
			},
			insts:    []instSpec{inst("p", 0, 256), inst("p", 1, 256), inst("p", 2, 256)},
			want:     map[string][]string{"cell-a": {"p/0"}, "cell-b": {"p/1"}},
			wantFail: map[string]string{"p/2": "insufficient resources: containers"},
		},
		{
			name: "different shortages on different cells name no resource",
			cells: []cellSpec{
				{id: "cell-a", total: big, avail: bbs.CellCapacity{MemoryMB: 4096, DiskMB: 4096, Containers: 0}},
				{id: "cell-b", total: big, avail: bbs.CellCapacity{MemoryMB: 100, DiskMB: 4096, Containers: 5}},
			},
			insts:    []instSpec{inst("p", 0, 256)},
			wantFail: map[string]string{"p/0": "insufficient resources"},
		},
		{
			name: "a full foundation names every resource short everywhere",
			cells: []cellSpec{
				{id: "cell-a", total: big, avail: bbs.CellCapacity{MemoryMB: 10, DiskMB: 4096, Containers: 0}},
				{id: "cell-b", total: big, avail: bbs.CellCapacity{MemoryMB: 100, DiskMB: 0, Containers: 0}},
			},
			insts:    []instSpec{{guid: "p", index: 0, memoryMB: 256}},
			wantFail: map[string]string{"p/0": "insufficient resources: containers, memory"},
		},
		{
			name: "a cell that does not account disk takes any disk",
			cells: []cellSpec{
				{id: "cell-a", total: bbs.CellCapacity{MemoryMB: 4096, Containers: 10}, avail: bbs.CellCapacity{MemoryMB: 4096, Containers: 10}},
			},
			insts: []instSpec{inst("p", 0, 256)},
			want:  map[string][]string{"cell-a": {"p/0"}},
		},
		{
			name:     "no cells",
			insts:    []instSpec{inst("p", 0, 256), inst("q", 0, 256)},
			noCells:  ReasonNoCells,
			wantFail: map[string]string{"p/0": "found no compatible cell", "q/0": "found no compatible cell"},
		},
		{
			name:     "placement tags fit no cell",
			cells:    []cellSpec{equal("cell-a")},
			insts:    []instSpec{{guid: "p", index: 0, memoryMB: 256, tags: []string{"isolated"}}, inst("q", 0, 256)},
			want:     map[string][]string{"cell-a": {"q/0"}},
			wantFail: map[string]string{"p/0": `found no compatible cell with placement tag "isolated"`},
		},
		{
			name:  "a cell that refused an instance is not offered it again",
			cells: []cellSpec{equal("cell-a"), {id: "cell-b", total: big, avail: bbs.CellCapacity{MemoryMB: 1024, DiskMB: 1024, Containers: 2}}},
			insts: []instSpec{{guid: "p", index: 0, memoryMB: 256, refusedBy: []string{"cell-a"}}},
			want:  map[string][]string{"cell-b": {"p/0"}},
		},
		{
			name:     "refused everywhere is a bare insufficient resources",
			cells:    []cellSpec{equal("cell-a")},
			insts:    []instSpec{{guid: "p", index: 0, memoryMB: 256, refusedBy: []string{"cell-a"}}},
			wantFail: map[string]string{"p/0": "insufficient resources"},
		},
		{
			name: "index 0 of a process goes first",
			cells: []cellSpec{
				{id: "cell-a", total: big, avail: bbs.CellCapacity{MemoryMB: 4096, DiskMB: 4096, Containers: 1}},
			},
			insts:    []instSpec{inst("p", 1, 256), inst("p", 0, 256)},
			want:     map[string][]string{"cell-a": {"p/0"}},
			wantFail: map[string]string{"p/1": "insufficient resources: containers"},
		},
		{
			name: "larger instances go first",
			cells: []cellSpec{
				{id: "cell-a", total: big, avail: bbs.CellCapacity{MemoryMB: 2048, DiskMB: 4096, Containers: 10}},
			},
			insts:    []instSpec{inst("small", 1, 1024), inst("large", 1, 2000)},
			want:     map[string][]string{"cell-a": {"large/1"}},
			wantFail: map[string]string{"small/1": "insufficient resources: memory"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var views []*cellView
			for _, c := range tc.cells {
				st := &rep.CellState{CellID: c.id, TotalResources: c.total, AvailableResources: c.avail, StartingContainers: c.starting}
				for i, p := range c.processes {
					st.LRPs = append(st.LRPs, rep.InstanceSummary{ProcessGUID: p, Index: int32(i)})
				}
				views = append(views, newCellView(&bbs.CellPresence{CellID: c.id}, st))
			}
			var insts []*instance
			for _, s := range tc.insts {
				in := &instance{lrp: rep.LRP{ProcessGUID: s.guid, Index: s.index, Domain: bbs.DomainCFApps,
					Resource: bbs.Resource{MemoryMB: s.memoryMB, DiskMB: 64}, PlacementTags: s.tags}}
				for _, c := range s.refusedBy {
					if in.refusedBy == nil {
						in.refusedBy = map[string]bool{}
					}
					in.refusedBy[c] = true
				}
				insts = append(insts, in)
			}
			work, failed := schedule(views, insts, DefaultProxyMemoryMB, DefaultStartingContainerWeight, tc.noCells)
			got := map[string][]string{}
			for id, ins := range work {
				for _, in := range ins {
					got[id] = append(got[id], fmt.Sprintf("%s/%d", in.lrp.ProcessGUID, in.lrp.Index))
				}
			}
			gotFail := map[string]string{}
			for _, f := range failed {
				gotFail[fmt.Sprintf("%s/%d", f.inst.lrp.ProcessGUID, f.inst.lrp.Index)] = f.reason
			}
			if tc.want == nil {
				tc.want = map[string][]string{}
			}
			if tc.wantFail == nil {
				tc.wantFail = map[string]string{}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("placements %v, want %v", got, tc.want)
			}
			if !reflect.DeepEqual(gotFail, tc.wantFail) {
				t.Errorf("failures %v, want %v", gotFail, tc.wantFail)
			}
		})
	}
}
