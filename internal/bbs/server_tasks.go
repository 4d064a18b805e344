package bbs

import (
	"context"
	"net/http"
)

// taskRoutes adds the Task endpoints (tasks.go's paths).
func (s *Server) taskRoutes(post func(path string, h func(w http.ResponseWriter, r *http.Request))) {
	post(PathDesireTask, handle(s, func(ctx context.Context, req DesireTaskRequest) (any, error) {
		return nil, s.svc.DesireTask(ctx, req.TaskGUID, req.Domain, req.TaskDefinition)
	}))
	post(PathTasks, handle(s, func(ctx context.Context, req TasksRequest) (any, error) {
		list, err := s.svc.Tasks(ctx, req)
		return TasksResponse{Tasks: nonNil(list)}, err
	}))
	post(PathTaskByGUID, handle(s, func(ctx context.Context, req TaskByGUIDRequest) (any, error) {
		t, err := s.svc.TaskByGUID(ctx, req.TaskGUID)
		return TaskResponse{Task: t}, err
	}))
	post(PathStartTask, handle(s, func(ctx context.Context, req StartTaskRequest) (any, error) {
		ok, err := s.svc.StartTask(ctx, req.TaskGUID, req.CellID)
		return StartTaskResponse{ShouldStart: ok}, err
	}))
	post(PathCompleteTask, handle(s, func(ctx context.Context, req CompleteTaskRequest) (any, error) {
		return nil, s.svc.CompleteTask(ctx, req.TaskGUID, req.CellID, req.Failed, req.FailureReason, req.Result)
	}))
	post(PathFailTask, handle(s, func(ctx context.Context, req FailTaskRequest) (any, error) {
		return nil, s.svc.FailTask(ctx, req.TaskGUID, req.FailureReason)
	}))
	post(PathCancelTask, handle(s, func(ctx context.Context, req TaskByGUIDRequest) (any, error) {
		return nil, s.svc.CancelTask(ctx, req.TaskGUID)
	}))
	post(PathDeleteTask, handle(s, func(ctx context.Context, req TaskByGUIDRequest) (any, error) {
		return nil, s.svc.DeleteTask(ctx, req.TaskGUID)
	}))
}
