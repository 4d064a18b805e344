package bbs

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Tasks, as Diego's BBS keeps them.
//
// State machine (Diego's Task.ValidateTransitionTo):
//
//	PENDING   --StartTask(cell)-->            RUNNING (once: the same cell again is told not to start; another cell gets InvalidStateTransition)
//	PENDING   --FailTask / CancelTask-->       COMPLETED (failed)
//	RUNNING   --CompleteTask(same cell)-->     COMPLETED (another cell gets RunningOnDifferentCell)
//	RUNNING   --CancelTask-->                  COMPLETED (failed, "task was cancelled"; the cell is told to stop it)
//	RUNNING   --FailTask-->                    COMPLETED (failed)
//	COMPLETED --callback begins-->             RESOLVING
//	RESOLVING --callback answered 2xx-->       deleted
//	RESOLVING --callback failed-->             COMPLETED (retried by convergence, with backoff)
//	COMPLETED or RESOLVING --DeleteTask-->     deleted
//
// A completed Task leaves its cell (cell_id is cleared), as in Diego.
//
// Completion callbacks: when a Task with a completion_callback_url reaches
// COMPLETED, the BBS moves it to RESOLVING and POSTs the Task (JSON) to the
// URL, with TaskCallbackTLS (mutual TLS) and TaskCallbackTimeout. A 2xx
// answer deletes the Task (task_removed); anything else puts it back to
// COMPLETED, and convergence tries again: at every run for the first three
// failures, then after 30 s, doubling up to 16 minutes (the restart backoff
// of LRPs), until ExpireUnresolvedTaskDuration after its completion.
//
// Task convergence (ConvergeTasks), with Diego's durations:
//   - PENDING for longer than ExpirePendingTaskDuration (30 min): COMPLETED,
//     failed "not started within time limit";
//   - PENDING, unchanged for KickTaskDuration (30 s): auctioned again;
//   - RUNNING on a cell that is gone: COMPLETED, failed "cell disappeared
//     before completion";
//   - RESOLVING, unchanged for KickTaskDuration: back to COMPLETED (its
//     callback was cut short) and retried;
//   - COMPLETED with a callback: the callback again, when its backoff allows;
//   - COMPLETED without a callback for ExpireCompletedTaskDuration (2 min):
//     deleted (nobody came for its result).

// maxCallbacksInFlight bounds the completion callbacks made at once.
const maxCallbacksInFlight = 16

// maxCallbackAnswer is how much of a callback's answer is read.
const maxCallbackAnswer = 64 << 10

type taskCancel struct {
	guid   string
	cellID string
}

// callbackRetry is a Task's failed callbacks so far and when the last failed.
type callbackRetry struct {
	attempts int32
	last     time.Time
}

func newCallbackClient(cfg *tls.Config, timeout time.Duration) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: timeout, Proxy: http.ProxyFromEnvironment}
	return &http.Client{Transport: tr, Timeout: timeout,
		// A redirect would resend the Task elsewhere: refuse it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func copyTask(t *Task) *Task {
	c := *t
	return &c
}

func hasCallback(t *Task) bool {
	return t.TaskDefinition != nil && t.TaskDefinition.CompletionCallbackURL != ""
}

// changeTask stores after and records task_changed.
func changeTask(tx StoreTx, o *outbox, before, after *Task) error {
	if err := tx.UpdateTask(after); err != nil {
		return err
	}
	o.event(EventTaskChanged, TaskChangedEvent{Before: before, After: after})
	return nil
}

// removeTask deletes a Task and records task_removed.
func (s *Service) removeTask(tx StoreTx, o *outbox, t *Task) error {
	if err := tx.DeleteTask(t.TaskGUID); err != nil {
		return err
	}
	o.event(EventTaskRemoved, TaskRemovedEvent{Task: t})
	return nil
}

// completeTaskTx moves t to COMPLETED (off its cell) and, when it has a
// callback, asks for it.
func (s *Service) completeTaskTx(tx StoreTx, o *outbox, t *Task, failed bool, reason, result string) error {
	after := copyTask(t)
	now := s.now()
	after.State = TaskStateCompleted
	after.CellID = ""
	after.Failed = failed
	after.FailureReason = reason
	after.Result = result
	after.UpdatedAt = now
	after.FirstCompletedAt = now
	if err := changeTask(tx, o, t, after); err != nil {
		return err
	}
	if hasCallback(after) {
		o.resolves = append(o.resolves, after.TaskGUID)
	}
	s.log.Info("task-completed", "task_guid", t.TaskGUID, "cell_id", t.CellID, "failed", failed, "reason", reason)
	return nil
}

func transitionError(t *Task, to string) error {
	return NewError(ErrTypeInvalidStateTransition, "Cannot transition from %s to %s (task %s)", t.State, to, t.TaskGUID)
}

// DesireTask stores a new PENDING Task and asks the auctioneer to place it.
func (s *Service) DesireTask(ctx context.Context, taskGUID, domain string, def *TaskDefinition) error {
	if def == nil {
		return NewError(ErrTypeInvalidRequest, "task_definition is missing")
	}
	now := s.now()
	t := &Task{TaskDefinition: def, TaskGUID: taskGUID, Domain: domain, State: TaskStatePending, CreatedAt: now, UpdatedAt: now}
	if err := t.Validate(); err != nil {
		return NewError(ErrTypeInvalidRecord, "%v", err)
	}
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		if err := tx.CreateTask(t); err != nil {
			return err
		}
		o.event(EventTaskCreated, TaskCreatedEvent{Task: t})
		o.taskStarts = append(o.taskStarts, NewTaskStartRequest(t))
		s.log.Info("task-desired", "task_guid", taskGUID, "domain", domain)
		return nil
	})
}

// TaskByGUID returns one Task.
func (s *Service) TaskByGUID(ctx context.Context, taskGUID string) (*Task, error) {
	var t *Task
	err := s.store.Read(ctx, func(tx StoreTx) error {
		var err error
		t, err = tx.Task(taskGUID)
		return err
	})
	return t, err
}

// Tasks lists Tasks, by domain and cell when given.
func (s *Service) Tasks(ctx context.Context, f TasksRequest) ([]*Task, error) {
	var out []*Task
	err := s.store.Read(ctx, func(tx StoreTx) error {
		var err error
		out, err = tx.Tasks(f)
		return err
	})
	return out, err
}

// StartTask records that a cell runs a PENDING Task. It reports false, with
// no error, when that cell already runs it: the cell must not start it a
// second time. Another cell gets an InvalidStateTransition error.
func (s *Service) StartTask(ctx context.Context, taskGUID, cellID string) (bool, error) {
	if cellID == "" {
		return false, NewError(ErrTypeInvalidRequest, "cell_id is empty")
	}
	started := false
	err := s.write(ctx, func(tx StoreTx, o *outbox) error {
		started = false
		t, err := tx.Task(taskGUID)
		if err != nil {
			return err
		}
		if t.State == TaskStateRunning && t.CellID == cellID {
			return nil
		}
		if t.State != TaskStatePending {
			return transitionError(t, TaskStateRunning)
		}
		after := copyTask(t)
		after.State = TaskStateRunning
		after.CellID = cellID
		after.UpdatedAt = s.now()
		if err := changeTask(tx, o, t, after); err != nil {
			return err
		}
		started = true
		s.log.Info("task-started", "task_guid", taskGUID, "cell_id", cellID)
		return nil
	})
	return started, err
}

// CompleteTask records how a RUNNING Task ended on its cell: its result
// (at most MaxTaskResultBytes), or why it failed.
func (s *Service) CompleteTask(ctx context.Context, taskGUID, cellID string, failed bool, reason, result string) error {
	if cellID == "" {
		return NewError(ErrTypeInvalidRequest, "cell_id is empty")
	}
	if len(result) > MaxTaskResultBytes {
		return NewError(ErrTypeInvalidRequest, "the result of task %s is %d bytes, more than the %d allowed", taskGUID, len(result), MaxTaskResultBytes)
	}
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		t, err := tx.Task(taskGUID)
		if err != nil {
			return err
		}
		if t.State == TaskStateRunning && t.CellID != cellID {
			return NewError(ErrTypeRunningOnDifferentCell, "task %s runs on cell %q, not on %q", taskGUID, t.CellID, cellID)
		}
		if t.State != TaskStateRunning {
			return transitionError(t, TaskStateCompleted)
		}
		return s.completeTaskTx(tx, o, t, failed, reason, result)
	})
}

// FailTask completes a Task that cannot run (the auctioneer found no
// place for it), failed with reason.
func (s *Service) FailTask(ctx context.Context, taskGUID, reason string) error {
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		t, err := tx.Task(taskGUID)
		if err != nil {
			return err
		}
		if t.State != TaskStatePending && t.State != TaskStateRunning {
			return transitionError(t, TaskStateCompleted)
		}
		s.log.Warn("task-failed", "task_guid", taskGUID, "reason", reason)
		return s.completeTaskTx(tx, o, t, true, reason, "")
	})
}

// CancelTask completes a PENDING or RUNNING Task, failed "task was
// cancelled"; the cell running it is told to stop it.
func (s *Service) CancelTask(ctx context.Context, taskGUID string) error {
	return s.write(ctx, func(tx StoreTx, o *outbox) error {
		t, err := tx.Task(taskGUID)
		if err != nil {
			return err
		}
		if t.State != TaskStatePending && t.State != TaskStateRunning {
			return transitionError(t, TaskStateCompleted)
		}
		if t.State == TaskStateRunning && t.CellID != "" {
			o.taskCancels = append(o.taskCancels, taskCancel{guid: taskGUID, cellID: t.CellID})
		}
		s.log.Info("task-cancelled", "task_guid", taskGUID, "cell_id", t.CellID)
		return s.completeTaskTx(tx, o, t, true, TaskReasonCancelled, "")
	})
}

// DeleteTask removes a COMPLETED or RESOLVING Task, once its result was
// read (Diego: after ResolvingTask; minicf has no separate resolving call,
// so a COMPLETED Task may go at once).
func (s *Service) DeleteTask(ctx context.Context, taskGUID string) error {
	err := s.write(ctx, func(tx StoreTx, o *outbox) error {
		t, err := tx.Task(taskGUID)
		if err != nil {
			return err
		}
		if t.State != TaskStateCompleted && t.State != TaskStateResolving {
			return transitionError(t, TaskStateResolving)
		}
		s.log.Info("task-deleted", "task_guid", taskGUID)
		return s.removeTask(tx, o, t)
	})
	if err == nil {
		s.forgetRetries(taskGUID)
	}
	return err
}

// deliverTasks sends the cancels to the cells and starts the callbacks.
func (s *Service) deliverTasks(o outbox) {
	for _, c := range o.taskCancels {
		cell, ok := s.cell(c.cellID)
		if !ok || s.reps == nil {
			continue
		}
		s.spawn(func() {
			ctx, cancel := context.WithTimeout(s.stopCtx, 10*time.Second)
			defer cancel()
			if err := s.reps.CancelTask(ctx, &cell, c.guid); err != nil {
				s.log.Warn("task-cancel-request-failed", "task_guid", c.guid, "cell_id", c.cellID, "error", err.Error())
			}
		})
	}
	for _, guid := range o.resolves {
		s.spawn(func() { s.resolveTask(guid) })
	}
}

// resolveTask makes a COMPLETED Task's callback: COMPLETED → RESOLVING,
// POST, then deleted (2xx) or back to COMPLETED (anything else).
func (s *Service) resolveTask(guid string) {
	select {
	case s.callbackSem <- struct{}{}:
	case <-s.stopCtx.Done():
		return
	}
	defer func() { <-s.callbackSem }()
	ctx := s.stopCtx
	var resolving *Task
	err := s.write(ctx, func(tx StoreTx, o *outbox) error {
		resolving = nil
		t, err := tx.Task(guid)
		if err != nil {
			return err
		}
		if t.State != TaskStateCompleted || !hasCallback(t) {
			return nil // resolved meanwhile, or being resolved
		}
		after := copyTask(t)
		after.State = TaskStateResolving
		after.UpdatedAt = s.now()
		if err := changeTask(tx, o, t, after); err != nil {
			return err
		}
		resolving = after
		return nil
	})
	if err != nil {
		if !errors.Is(err, ErrResourceNotFound) && ctx.Err() == nil {
			s.log.Warn("task-resolving-failed", "task_guid", guid, "error", err.Error())
		}
		return
	}
	if resolving == nil {
		return
	}
	cbErr := s.postCallback(ctx, resolving)
	if cbErr == nil {
		err = s.write(ctx, func(tx StoreTx, o *outbox) error {
			t, err := tx.Task(guid)
			if err != nil {
				return err
			}
			if t.State != TaskStateResolving {
				return nil
			}
			return s.removeTask(tx, o, t)
		})
		if err != nil && !errors.Is(err, ErrResourceNotFound) {
			// Left RESOLVING: convergence demotes it and calls back again.
			s.log.Warn("task-delete-after-callback-failed", "task_guid", guid, "error", err.Error())
			return
		}
		s.forgetRetries(guid)
		s.log.Info("task-resolved", "task_guid", guid, "callback", redactURL(resolving.TaskDefinition.CompletionCallbackURL))
		return
	}
	s.retryMu.Lock()
	r := s.retries[guid]
	r.attempts++
	r.last = s.cfg.Now()
	s.retries[guid] = r
	s.retryMu.Unlock()
	s.log.Warn("task-callback-failed", "task_guid", guid, "attempt", r.attempts, "retry_in", restartDelay(r.attempts+1).String(),
		"error", cbErr.Error())
	err = s.write(ctx, func(tx StoreTx, o *outbox) error {
		t, err := tx.Task(guid)
		if err != nil {
			return err
		}
		if t.State != TaskStateResolving {
			return nil
		}
		after := copyTask(t)
		after.State = TaskStateCompleted
		after.UpdatedAt = s.now()
		return changeTask(tx, o, t, after)
	})
	if err != nil && !errors.Is(err, ErrResourceNotFound) && ctx.Err() == nil {
		s.log.Warn("task-unresolving-failed", "task_guid", guid, "error", err.Error())
	}
}

// postCallback POSTs the Task to its callback URL; nil means a 2xx answer.
func (s *Service) postCallback(ctx context.Context, t *Task) error {
	body, err := json.Marshal(t)
	if err != nil {
		return err
	}
	u := t.TaskDefinition.CompletionCallbackURL
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("the callback URL %s is not usable: %w", redactURL(u), err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.callbacks.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", redactURL(u), err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxCallbackAnswer))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s answered %d: %.200s", redactURL(u), resp.StatusCode, strings.TrimSpace(string(answer)))
	}
	return nil
}

// redactURL drops user info and the query (where a signature could be)
// from a URL before it is logged.
func redactURL(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.IndexByte(rest, '@'); at >= 0 && (strings.IndexByte(rest, '/') < 0 || at < strings.IndexByte(rest, '/')) {
			s = s[:i+3] + rest[at+1:]
		}
	}
	return s
}

func (s *Service) forgetRetries(guid string) {
	s.retryMu.Lock()
	delete(s.retries, guid)
	s.retryMu.Unlock()
}

// callbackDue says whether a COMPLETED Task's callback may be tried again:
// at once for the first three failures, then with the LRP restart backoff.
func (s *Service) callbackDue(guid string, now time.Time) bool {
	s.retryMu.Lock()
	defer s.retryMu.Unlock()
	r, ok := s.retries[guid]
	return !ok || now.Sub(r.last) >= restartDelay(r.attempts)
}

// ConvergeTasks repairs the Tasks once (see the top of this file).
func (s *Service) ConvergeTasks(ctx context.Context) error {
	var kicked, failedPending, lostCell, demoted, retried, expired int
	var gone []string
	err := s.write(ctx, func(tx StoreTx, o *outbox) error {
		kicked, failedPending, lostCell, demoted, retried, expired = 0, 0, 0, 0, 0, 0
		gone = gone[:0]
		tasks, err := tx.Tasks(TasksRequest{})
		if err != nil {
			return err
		}
		now := s.cfg.Now()
		age := func(ns int64) time.Duration { return now.Sub(time.Unix(0, ns)) }
		for _, t := range tasks {
			switch t.State {
			case TaskStatePending:
				switch {
				case age(t.CreatedAt) >= s.cfg.ExpirePendingTaskDuration:
					if err := s.completeTaskTx(tx, o, t, true, TaskReasonNotStarted, ""); err != nil {
						return err
					}
					failedPending++
				case age(t.UpdatedAt) >= s.cfg.KickTaskDuration:
					o.taskStarts = append(o.taskStarts, NewTaskStartRequest(t))
					kicked++
				}
			case TaskStateRunning:
				if s.cellGone(t.CellID) {
					if err := s.completeTaskTx(tx, o, t, true, TaskReasonCellDisappeared, ""); err != nil {
						return err
					}
					lostCell++
				}
			case TaskStateResolving, TaskStateCompleted:
				if t.State == TaskStateResolving {
					if age(t.UpdatedAt) < s.cfg.KickTaskDuration {
						continue
					}
					after := copyTask(t)
					after.State = TaskStateCompleted
					after.UpdatedAt = s.now()
					if err := changeTask(tx, o, t, after); err != nil {
						return err
					}
					t = after
					demoted++
				}
				done := age(t.FirstCompletedAt)
				switch {
				case !hasCallback(t) && done >= s.cfg.ExpireCompletedTaskDuration,
					hasCallback(t) && done >= s.cfg.ExpireUnresolvedTaskDuration:
					if hasCallback(t) {
						s.log.Error("task-callback-abandoned", "task_guid", t.TaskGUID,
							"callback", redactURL(t.TaskDefinition.CompletionCallbackURL), "completed_for", done.String())
					}
					if err := s.removeTask(tx, o, t); err != nil {
						return err
					}
					gone = append(gone, t.TaskGUID)
					expired++
				case hasCallback(t) && s.callbackDue(t.TaskGUID, now):
					o.resolves = append(o.resolves, t.TaskGUID)
					retried++
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, g := range gone {
		s.forgetRetries(g)
	}
	if kicked+failedPending+lostCell+demoted+retried+expired > 0 {
		s.log.Info("convergence-changed-tasks", "reauctioned_pending", kicked, "failed_pending", failedPending,
			"failed_lost_cell", lostCell, "demoted_resolving", demoted, "callbacks_retried", retried, "expired_completed", expired)
	}
	return nil
}
