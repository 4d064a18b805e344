package rep

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/minicf/minicf/internal/bbs"
)

// fakeBBS keeps DesiredLRPs and ActualLRPs in memory, applies Diego's
// ActualLRP state machine and records every call.
type fakeBBS struct {
	mu         sync.Mutex
	desired    map[string]*bbs.DesiredLRP
	actual     map[string]*bbs.ActualLRP // by process guid/index
	calls      []string
	crashes    []string // reasons
	heartbeats []bbs.CellPresence
	tasks      map[string]*bbs.Task
}

func newFakeBBS() *fakeBBS {
	return &fakeBBS{desired: map[string]*bbs.DesiredLRP{}, actual: map[string]*bbs.ActualLRP{}, tasks: map[string]*bbs.Task{}}
}

func akey(pg string, index int32) string { return fmt.Sprintf("%s/%d", pg, index) }

func (f *fakeBBS) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// desire stores d and its instances, UNCLAIMED.
func (f *fakeBBS) desire(d *bbs.DesiredLRP) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.desired[d.ProcessGUID] = d
	for i := int32(0); i < d.Instances; i++ {
		f.actual[akey(d.ProcessGUID, i)] = &bbs.ActualLRP{
			ActualLRPKey: bbs.ActualLRPKey{ProcessGUID: d.ProcessGUID, Index: i, Domain: d.Domain},
			State:        bbs.StateUnclaimed, Presence: bbs.PresenceOrdinary,
		}
	}
}

// put stores an ActualLRP as it is.
func (f *fakeBBS) put(a *bbs.ActualLRP) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := *a
	f.actual[akey(a.ProcessGUID, a.Index)] = &c
}

func (f *fakeBBS) get(pg string, index int32) (bbs.ActualLRP, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.actual[akey(pg, index)]
	if !ok {
		return bbs.ActualLRP{}, false
	}
	return *a, true
}

func (f *fakeBBS) callsMatching(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeBBS) crashReasons() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.crashes...)
}

func (f *fakeBBS) DesiredLRPByProcessGUID(_ context.Context, pg string) (*bbs.DesiredLRP, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.desired[pg]
	if !ok {
		return nil, bbs.NewError(bbs.ErrTypeResourceNotFound, "no DesiredLRP %s", pg)
	}
	c := *d
	return &c, nil
}

func (f *fakeBBS) ActualLRPs(_ context.Context, r bbs.ActualLRPsRequest) ([]*bbs.ActualLRP, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*bbs.ActualLRP
	for _, a := range f.actual {
		if r.CellID != "" && a.CellID != r.CellID {
			continue
		}
		c := *a
		out = append(out, &c)
	}
	return out, nil
}

func (f *fakeBBS) ClaimActualLRP(_ context.Context, key bbs.ActualLRPKey, ik bbs.ActualLRPInstanceKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("claim %s %s", akey(key.ProcessGUID, key.Index), ik.InstanceGUID)
	a, ok := f.actual[akey(key.ProcessGUID, key.Index)]
	if !ok || !a.AllowsTransitionTo(ik, bbs.StateClaimed) {
		return bbs.NewError(bbs.ErrTypeActualLRPCannotBeClaimed, "cannot claim %s", akey(key.ProcessGUID, key.Index))
	}
	a.ActualLRPInstanceKey, a.State = ik, bbs.StateClaimed
	return nil
}

func (f *fakeBBS) StartActualLRP(_ context.Context, key bbs.ActualLRPKey, ik bbs.ActualLRPInstanceKey, ni bbs.ActualLRPNetInfo, routable bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("start %s %s", akey(key.ProcessGUID, key.Index), ik.InstanceGUID)
	a, ok := f.actual[akey(key.ProcessGUID, key.Index)]
	if !ok || !a.AllowsTransitionTo(ik, bbs.StateRunning) {
		return bbs.NewError(bbs.ErrTypeActualLRPCannotBeStarted, "cannot start %s", akey(key.ProcessGUID, key.Index))
	}
	a.ActualLRPInstanceKey, a.ActualLRPNetInfo, a.State, a.Routable = ik, ni, bbs.StateRunning, &routable
	return nil
}

func (f *fakeBBS) CrashActualLRP(_ context.Context, key bbs.ActualLRPKey, ik bbs.ActualLRPInstanceKey, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("crash %s %s %s", akey(key.ProcessGUID, key.Index), ik.InstanceGUID, reason)
	a, ok := f.actual[akey(key.ProcessGUID, key.Index)]
	if !ok || !a.AllowsTransitionTo(ik, bbs.StateCrashed) {
		return bbs.NewError(bbs.ErrTypeActualLRPCannotBeCrashed, "cannot crash %s", akey(key.ProcessGUID, key.Index))
	}
	f.crashes = append(f.crashes, reason)
	a.State, a.CrashReason, a.CrashCount = bbs.StateCrashed, reason, a.CrashCount+1
	a.ActualLRPInstanceKey, a.ActualLRPNetInfo = bbs.ActualLRPInstanceKey{}, bbs.ActualLRPNetInfo{}
	return nil
}

func (f *fakeBBS) RemoveActualLRP(_ context.Context, key bbs.ActualLRPKey, ik *bbs.ActualLRPInstanceKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove %s", akey(key.ProcessGUID, key.Index))
	a, ok := f.actual[akey(key.ProcessGUID, key.Index)]
	if !ok {
		return bbs.NewError(bbs.ErrTypeResourceNotFound, "no %s", akey(key.ProcessGUID, key.Index))
	}
	if ik != nil && a.ActualLRPInstanceKey != *ik {
		return bbs.NewError(bbs.ErrTypeResourceConflict, "held by another")
	}
	delete(f.actual, akey(key.ProcessGUID, key.Index))
	return nil
}

func (f *fakeBBS) CellHeartbeat(_ context.Context, p *bbs.CellPresence) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats = append(f.heartbeats, *p)
	return nil
}

func (f *fakeBBS) lastHeartbeat() (bbs.CellPresence, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.heartbeats) == 0 {
		return bbs.CellPresence{}, 0
	}
	return f.heartbeats[len(f.heartbeats)-1], len(f.heartbeats)
}

// desireTask stores a PENDING Task.
func (f *fakeBBS) desireTask(guid string, def *bbs.TaskDefinition) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tasks[guid] = &bbs.Task{TaskGUID: guid, Domain: bbs.DomainCFTasks, TaskDefinition: def, State: bbs.TaskStatePending}
}

// putTask stores a Task as it is.
func (f *fakeBBS) putTask(t *bbs.Task) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := *t
	f.tasks[t.TaskGUID] = &c
}

func (f *fakeBBS) task(guid string) (bbs.Task, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tasks[guid]
	if !ok {
		return bbs.Task{}, false
	}
	return *t, true
}

func (f *fakeBBS) TaskByGUID(_ context.Context, guid string) (*bbs.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tasks[guid]
	if !ok {
		return nil, bbs.NewError(bbs.ErrTypeResourceNotFound, "no task %s", guid)
	}
	c := *t
	return &c, nil
}

func (f *fakeBBS) Tasks(_ context.Context, r bbs.TasksRequest) ([]*bbs.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []*bbs.Task{}
	for _, t := range f.tasks {
		if (r.CellID == "" || t.CellID == r.CellID) && (r.Domain == "" || t.Domain == r.Domain) {
			c := *t
			out = append(out, &c)
		}
	}
	return out, nil
}

// StartTask applies the BBS's rule: once, on one cell.
func (f *fakeBBS) StartTask(_ context.Context, guid, cellID string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("start-task %s %s", guid, cellID)
	t, ok := f.tasks[guid]
	if !ok {
		return false, bbs.NewError(bbs.ErrTypeResourceNotFound, "no task %s", guid)
	}
	if t.State == bbs.TaskStateRunning && t.CellID == cellID {
		return false, nil
	}
	if t.State != bbs.TaskStatePending {
		return false, bbs.NewError(bbs.ErrTypeInvalidStateTransition, "task %s is %s", guid, t.State)
	}
	t.State, t.CellID = bbs.TaskStateRunning, cellID
	return true, nil
}

func (f *fakeBBS) CompleteTask(_ context.Context, guid, cellID string, failed bool, reason, result string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("complete-task %s %s failed=%v", guid, cellID, failed)
	t, ok := f.tasks[guid]
	if !ok {
		return bbs.NewError(bbs.ErrTypeResourceNotFound, "no task %s", guid)
	}
	if t.State == bbs.TaskStateRunning && t.CellID != cellID {
		return bbs.NewError(bbs.ErrTypeRunningOnDifferentCell, "task %s runs on %s", guid, t.CellID)
	}
	if t.State != bbs.TaskStateRunning {
		return bbs.NewError(bbs.ErrTypeInvalidStateTransition, "task %s is %s", guid, t.State)
	}
	if len(result) > bbs.MaxTaskResultBytes {
		return bbs.NewError(bbs.ErrTypeInvalidRequest, "result too large")
	}
	t.State, t.CellID, t.Failed, t.FailureReason, t.Result = bbs.TaskStateCompleted, "", failed, reason, result
	return nil
}

// cancelTask completes a Task as the BBS's CancelTask does (the test then
// tells the cell).
func (f *fakeBBS) cancelTask(guid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tasks[guid]
	t.State, t.CellID, t.Failed, t.FailureReason = bbs.TaskStateCompleted, "", true, bbs.TaskReasonCancelled
}

var _ BBSClient = (*fakeBBS)(nil)
