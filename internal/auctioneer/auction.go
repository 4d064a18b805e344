package auctioneer

import (
	"sort"
	"strconv"
	"strings"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/rep"
)

// LocalityWeight is what each instance of the same process already on a
// cell adds to its score (Diego's LocalityOffset): instances of one process
// spread over cells before any resource consideration.
const LocalityWeight = 1000

// Placement errors, with Diego's wording.
const (
	// ReasonNoCells: the BBS knows no cell at all.
	ReasonNoCells = "found no compatible cell"
	// ReasonCellCommunication: cells are registered but none answered
	// GET /state this round (Diego's ErrorCellCommunication).
	ReasonCellCommunication = "unable to communicate to compatible cells"
	// ReasonInsufficientResources is the bare form, used when no single
	// resource was short on every cell (or cells refused the work).
	ReasonInsufficientResources = "insufficient resources"
)

// resources are amounts in MB (and a container count), widened to int64 so
// adding the proxy overhead to a large request cannot overflow.
type resources struct {
	memoryMB, diskMB, containers int64
}

func capacity(c bbs.CellCapacity) resources {
	return resources{memoryMB: int64(c.MemoryMB), diskMB: int64(c.DiskMB), containers: int64(c.Containers)}
}

// problems is a set of short resources: containers, disk, memory.
type problems uint8

const (
	problemContainers problems = 1 << iota
	problemDisk
	problemMemory
	allProblems = problemContainers | problemDisk | problemMemory
)

// String lists the problems sorted by name, as Diego's
// InsufficientResourcesError does.
func (p problems) String() string {
	var names []string
	if p&problemContainers != 0 {
		names = append(names, "containers")
	}
	if p&problemDisk != 0 {
		names = append(names, "disk")
	}
	if p&problemMemory != 0 {
		names = append(names, "memory")
	}
	return strings.Join(names, ", ")
}

// insufficientResources is Diego's placement error for problems.
func insufficientResources(p problems) string {
	if p == 0 {
		return ReasonInsufficientResources
	}
	return ReasonInsufficientResources + ": " + p.String()
}

// placementTagMismatch is Diego's PlacementTagMismatchError text.
func placementTagMismatch(tags []string) string {
	switch len(tags) {
	case 0:
		return "found no compatible cell with no placement tags"
	case 1:
		return "found no compatible cell with placement tag " + strconv.Quote(tags[0])
	}
	quoted := make([]string, len(tags)-1)
	for i, t := range tags[:len(tags)-1] {
		quoted[i] = strconv.Quote(t)
	}
	return "found no compatible cell with placement tags " + strings.Join(quoted, ", ") + " and " + strconv.Quote(tags[len(tags)-1])
}

// shortOf says which resources a cell lacks for need (need.containers is
// ignored: an instance takes one container). A cell whose total disk is 0
// does not account disk, so disk never stops an instance there.
func shortOf(total, avail, need resources) problems {
	var p problems
	if total.diskMB > 0 && avail.diskMB < need.diskMB {
		p |= problemDisk
	}
	if avail.memoryMB < need.memoryMB {
		p |= problemMemory
	}
	if avail.containers < 1 {
		p |= problemContainers
	}
	return p
}

// usedFraction is how much of total is used when remaining is left.
func usedFraction(total, remaining int64) float64 {
	if total <= 0 {
		return 1
	}
	return 1 - float64(remaining)/float64(total)
}

// Score is Diego's placement score of one instance needing need on a cell
// with the given total and available resources, startingContainers
// containers still starting, and sameProcess instances of the same process
// already there. Lower is better:
//
//	resourceScore = mean(used fraction of memory, disk, containers after placing)
//	              + startingContainers × startingWeight
//	score         = resourceScore + LocalityWeight × sameProcess
//
// need must already include the proxy's memory overhead. A cell whose total
// disk is 0 does not account disk: its disk fraction counts as 0.
func score(total, avail, need resources, startingContainers, sameProcess int, startingWeight float64) float64 {
	mem := usedFraction(total.memoryMB, avail.memoryMB-need.memoryMB)
	disk := 0.0
	if total.diskMB > 0 {
		disk = usedFraction(total.diskMB, avail.diskMB-need.diskMB)
	}
	containers := usedFraction(total.containers, avail.containers-1)
	resourceScore := (mem+disk+containers)/3 + float64(startingContainers)*startingWeight
	return resourceScore + LocalityWeight*float64(sameProcess)
}

// cellView is the auction's picture of one cell: what its rep reported,
// updated as instances are placed on it during the auction.
type cellView struct {
	cell      *bbs.CellPresence
	id        string
	total     resources
	available resources
	starting  int
	instances map[string]int // process guid → instances on the cell
}

func newCellView(cell *bbs.CellPresence, st *rep.CellState) *cellView {
	v := &cellView{
		cell:      cell,
		id:        cell.CellID,
		total:     capacity(st.TotalResources),
		available: capacity(st.AvailableResources),
		starting:  st.StartingContainers,
		instances: map[string]int{},
	}
	for _, l := range st.LRPs {
		v.instances[l.ProcessGUID]++
	}
	return v
}

// instance is one (process guid, index) slot to place, or one Task (task
// set, lrp empty).
type instance struct {
	lrp  rep.LRP
	task *rep.Task
	// refusedBy holds the cells that refused this instance in earlier
	// rounds of the auction; they are not offered it again.
	refusedBy map[string]bool
	refusals  int
}

type instanceKey struct {
	processGUID string
	index       int32
	taskGUID    string // set for a Task (processGUID and index are then empty)
}

func (i *instance) key() instanceKey {
	if i.task != nil {
		return instanceKey{taskGUID: i.task.TaskGUID}
	}
	return instanceKey{processGUID: i.lrp.ProcessGUID, index: i.lrp.Index}
}

func (i *instance) resource() bbs.Resource {
	if i.task != nil {
		return i.task.Resource
	}
	return i.lrp.Resource
}

func (i *instance) placementTags() []string {
	if i.task != nil {
		return i.task.PlacementTags
	}
	return i.lrp.PlacementTags
}

// logAttrs name the instance in log lines.
func (i *instance) logAttrs() []any {
	if i.task != nil {
		return []any{"task_guid", i.task.TaskGUID}
	}
	return []any{"process_guid", i.lrp.ProcessGUID, "index", i.lrp.Index}
}

// failure is an instance that fits nowhere, with its placement error.
type failure struct {
	inst   *instance
	reason string
}

// schedule is one auction round over a fixed picture of the cells; it does
// no I/O. Instances are placed one at a time (index 0 of every process
// first, then larger memory first; Tasks after every LRP, larger memory
// first) on the lowest-scoring cell, ties going to the lowest cell id, and
// each placement updates the winner's view so later instances of the batch
// see it. A Task needs no proxy memory and has no same-process penalty. noCells is the placement error when
// cells is empty. It returns each cell's instances (by cell id, in
// placement order) and the instances that fit nowhere.
func schedule(cells []*cellView, insts []*instance, proxyMemoryMB int64, startingWeight float64, noCells string) (map[string][]*instance, []failure) {
	cells = append([]*cellView(nil), cells...)
	sort.Slice(cells, func(i, j int) bool { return cells[i].id < cells[j].id })
	insts = append([]*instance(nil), insts...)
	sort.SliceStable(insts, func(i, j int) bool {
		if ti, tj := insts[i].task, insts[j].task; ti != nil || tj != nil {
			switch {
			case ti == nil || tj == nil:
				return tj != nil // LRPs first
			case ti.Resource.MemoryMB != tj.Resource.MemoryMB:
				return ti.Resource.MemoryMB > tj.Resource.MemoryMB
			}
			return ti.TaskGUID < tj.TaskGUID
		}
		a, b := insts[i].lrp, insts[j].lrp
		if (a.Index == 0) != (b.Index == 0) {
			return a.Index == 0
		}
		if a.Resource.MemoryMB != b.Resource.MemoryMB {
			return a.Resource.MemoryMB > b.Resource.MemoryMB
		}
		if a.ProcessGUID != b.ProcessGUID {
			return a.ProcessGUID < b.ProcessGUID
		}
		return a.Index < b.Index
	})

	work := map[string][]*instance{}
	var failed []failure
	for _, inst := range insts {
		if len(cells) == 0 {
			failed = append(failed, failure{inst, noCells})
			continue
		}
		// Cells carry no placement tags yet, so a request with tags fits
		// none of them.
		if tags := inst.placementTags(); len(tags) > 0 {
			failed = append(failed, failure{inst, placementTagMismatch(tags)})
			continue
		}
		res := inst.resource()
		need := resources{memoryMB: int64(res.MemoryMB), diskMB: int64(res.DiskMB), containers: 1}
		if inst.task == nil {
			need.memoryMB += proxyMemoryMB // the envoy beside an LRP instance
		}
		var winner *cellView
		var best float64
		common := allProblems // what every cell lacked, as Diego reports it
		for _, c := range cells {
			if inst.refusedBy[c.id] {
				common = 0
				continue
			}
			if p := shortOf(c.total, c.available, need); p != 0 {
				common &= p
				continue
			}
			same := 0
			if inst.task == nil {
				same = c.instances[inst.lrp.ProcessGUID]
			}
			s := score(c.total, c.available, need, c.starting, same, startingWeight)
			if winner == nil || s < best { // cells are sorted: ties keep the lower id
				winner, best = c, s
			}
		}
		if winner == nil {
			failed = append(failed, failure{inst, insufficientResources(common)})
			continue
		}
		winner.available.memoryMB -= need.memoryMB
		winner.available.diskMB -= need.diskMB
		winner.available.containers--
		if inst.task == nil {
			winner.instances[inst.lrp.ProcessGUID]++
		}
		work[winner.id] = append(work[winner.id], inst)
	}
	return work, failed
}
