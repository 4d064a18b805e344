package rep

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// ErrorResponse is the body of every error the rep API answers.
type ErrorResponse struct {
	Error string `json:"error"`
}

func (r *Rep) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathState, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, r.State())
	})
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST "+PathWork, func(w http.ResponseWriter, req *http.Request) {
		var work Work
		if !decode(w, req, &work) {
			return
		}
		writeJSON(w, http.StatusOK, r.Perform(work))
	})
	mux.HandleFunc(PathStopLRPPattern, func(w http.ResponseWriter, req *http.Request) {
		pg, ig := req.PathValue("process_guid"), req.PathValue("instance_guid")
		if !r.StopLRPInstance(pg, ig) {
			writeJSON(w, http.StatusNotFound, ErrorResponse{Error: fmt.Sprintf("cell %s runs no instance %s of %s", r.cfg.CellID, ig, pg)})
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc(PathCancelTaskPattern, func(w http.ResponseWriter, req *http.Request) {
		g := req.PathValue("task_guid")
		if !r.CancelTask(g) {
			writeJSON(w, http.StatusNotFound, ErrorResponse{Error: fmt.Sprintf("cell %s runs no task %s", r.cfg.CellID, g)})
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	return mux
}

func decode(w http.ResponseWriter, req *http.Request, v any) bool {
	req.Body = http.MaxBytesReader(w, req.Body, MaxRequestBytes)
	if err := json.NewDecoder(req.Body).Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, ErrorResponse{Error: fmt.Sprintf("the request is larger than %d bytes", MaxRequestBytes)})
			return false
		}
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "the request is not valid JSON: " + err.Error()})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
