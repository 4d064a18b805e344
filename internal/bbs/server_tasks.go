package bbs

import "net/http"

// taskRoutes adds the Task endpoints (tasks.go's paths).
func (s *Server) taskRoutes(post func(path string, h func(w http.ResponseWriter, r *http.Request))) {
	post(PathDesireTask, func(w http.ResponseWriter, r *http.Request) {
		var req DesireTaskRequest
		if s.decode(w, r, &req) {
			s.reply(w, s.svc.DesireTask(r.Context(), req.TaskGUID, req.Domain, req.TaskDefinition), nil)
		}
	})
	post(PathTasks, func(w http.ResponseWriter, r *http.Request) {
		var req TasksRequest
		if s.decode(w, r, &req) {
			list, err := s.svc.Tasks(r.Context(), req)
			if list == nil {
				list = []*Task{}
			}
			s.reply(w, err, TasksResponse{Tasks: list})
		}
	})
	post(PathTaskByGUID, func(w http.ResponseWriter, r *http.Request) {
		var req TaskByGUIDRequest
		if s.decode(w, r, &req) {
			t, err := s.svc.TaskByGUID(r.Context(), req.TaskGUID)
			s.reply(w, err, TaskResponse{Task: t})
		}
	})
	post(PathStartTask, func(w http.ResponseWriter, r *http.Request) {
		var req StartTaskRequest
		if s.decode(w, r, &req) {
			ok, err := s.svc.StartTask(r.Context(), req.TaskGUID, req.CellID)
			s.reply(w, err, StartTaskResponse{ShouldStart: ok})
		}
	})
	post(PathCompleteTask, func(w http.ResponseWriter, r *http.Request) {
		var req CompleteTaskRequest
		if s.decode(w, r, &req) {
			s.reply(w, s.svc.CompleteTask(r.Context(), req.TaskGUID, req.CellID, req.Failed, req.FailureReason, req.Result), nil)
		}
	})
	post(PathFailTask, func(w http.ResponseWriter, r *http.Request) {
		var req FailTaskRequest
		if s.decode(w, r, &req) {
			s.reply(w, s.svc.FailTask(r.Context(), req.TaskGUID, req.FailureReason), nil)
		}
	})
	post(PathCancelTask, func(w http.ResponseWriter, r *http.Request) {
		var req TaskByGUIDRequest
		if s.decode(w, r, &req) {
			s.reply(w, s.svc.CancelTask(r.Context(), req.TaskGUID), nil)
		}
	})
	post(PathDeleteTask, func(w http.ResponseWriter, r *http.Request) {
		var req TaskByGUIDRequest
		if s.decode(w, r, &req) {
			s.reply(w, s.svc.DeleteTask(r.Context(), req.TaskGUID), nil)
		}
	})
}
