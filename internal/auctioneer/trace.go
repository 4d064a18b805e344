package auctioneer

import (
	"fmt"
	"time"

	"github.com/minicf/minicf/internal/trace"
)

// tracePlaced records flow 1's instance-placed step: the auction's winner
// accepted the instance. at is when the work was sent to the cell.
func (a *Auctioneer) tracePlaced(inst *instance, cellID string, cells int, at time.Time) {
	if inst.task != nil || !trace.Enabled(a.cfg.Trace) {
		return
	}
	l := inst.lrp
	trace.Emit(a.cfg.Trace, trace.Event{Time: at, Step: trace.StepInstancePlaced, ProcessGUID: l.ProcessGUID, CellID: cellID,
		Detail: fmt.Sprintf("instance %d placed on %s, the best score of %d cell(s) (%d MB)", l.Index, cellID, cells, l.Resource.MemoryMB),
		Artifact: trace.Artifact(map[string]any{"process_guid": l.ProcessGUID, "index": l.Index, "cell_id": cellID,
			"cells": cells, "memory_mb": l.Resource.MemoryMB, "disk_mb": l.Resource.DiskMB})})
}
