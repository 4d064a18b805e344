package auctioneer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/minicf/minicf/internal/bbs"
)

// The auctioneer's API, as Diego's: POST /v1/lrps with a JSON list of
// bbs.LRPStartRequest, and POST /v1/tasks with a JSON list of
// bbs.TaskStartRequest, answer 202 Accepted; the instances and Tasks are
// auctioned in the background. Errors are the BBS's
// {"error":{"type","message"}}.
const (
	PathLRPs        = "/v1/lrps"
	PathTasks       = "/v1/tasks"
	MaxRequestBytes = 1 << 20
)

func (a *Auctioneer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PathLRPs, a.handleLRPs)
	mux.HandleFunc(PathTasks, a.handleTasks)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, bbs.NewError(bbs.ErrTypeResourceNotFound, "no such path: %s", clip(r.URL.Path)))
	})
	return mux
}

// readPost reads a POST's bounded body; on failure it answers and returns nil.
func readPost(w http.ResponseWriter, r *http.Request, path string) []byte {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, bbs.NewError(bbs.ErrTypeInvalidRequest, "%s takes POST, not %s", path, clip(r.Method)))
		return nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, bbs.NewError(bbs.ErrTypeRequestTooLarge, "the request body is larger than %d bytes", MaxRequestBytes))
			return nil
		}
		writeError(w, http.StatusBadRequest, bbs.NewError(bbs.ErrTypeInvalidRequest, "cannot read the request body: %v", err))
		return nil
	}
	return body
}

func accepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, "{}")
}

func (a *Auctioneer) handleTasks(w http.ResponseWriter, r *http.Request) {
	body := readPost(w, r, PathTasks)
	if body == nil {
		return
	}
	var reqs []bbs.TaskStartRequest
	if err := json.Unmarshal(body, &reqs); err != nil {
		writeError(w, http.StatusBadRequest, bbs.NewError(bbs.ErrTypeInvalidRequest, "the body is not a JSON list of Task start requests: %v", err))
		return
	}
	for i := range reqs {
		if err := validateTaskStart(&reqs[i]); err != nil {
			writeError(w, http.StatusBadRequest, bbs.NewError(bbs.ErrTypeInvalidRequest, "request %d: %v", i, err))
			return
		}
	}
	a.enqueueTasks(reqs)
	accepted(w)
}

// validateTaskStart names the first field of r the auction cannot use.
func validateTaskStart(r *bbs.TaskStartRequest) error {
	if r.TaskGUID == "" {
		return errors.New("task_guid is empty")
	}
	if len(r.TaskGUID) > bbs.MaxProcessGUIDLen {
		return fmt.Errorf("task_guid %q is longer than %d", clip(r.TaskGUID), bbs.MaxProcessGUIDLen)
	}
	if r.Domain == "" {
		return errors.New("domain is empty")
	}
	if r.Resource.MemoryMB < 0 || r.Resource.DiskMB < 0 {
		return errors.New("resource memory_mb and disk_mb must not be negative")
	}
	return nil
}

func (a *Auctioneer) handleLRPs(w http.ResponseWriter, r *http.Request) {
	body := readPost(w, r, PathLRPs)
	if body == nil {
		return
	}
	var reqs []bbs.LRPStartRequest
	if err := json.Unmarshal(body, &reqs); err != nil {
		writeError(w, http.StatusBadRequest, bbs.NewError(bbs.ErrTypeInvalidRequest, "the body is not a JSON list of LRP start requests: %v", err))
		return
	}
	for i := range reqs {
		if err := validateStart(&reqs[i]); err != nil {
			writeError(w, http.StatusBadRequest, bbs.NewError(bbs.ErrTypeInvalidRequest, "request %d: %v", i, err))
			return
		}
	}
	a.enqueue(reqs)
	accepted(w)
}

// validateStart names the first field of r the auction cannot use, as
// Diego's LRPStartRequest.Validate does.
func validateStart(r *bbs.LRPStartRequest) error {
	if r.ProcessGUID == "" {
		return errors.New("process_guid is empty")
	}
	if len(r.ProcessGUID) > bbs.MaxProcessGUIDLen {
		return fmt.Errorf("process_guid %q is longer than %d", clip(r.ProcessGUID), bbs.MaxProcessGUIDLen)
	}
	if r.Domain == "" {
		return errors.New("domain is empty")
	}
	if len(r.Indices) == 0 {
		return errors.New("indices is empty")
	}
	for _, i := range r.Indices {
		if i < 0 || i >= bbs.MaxInstances {
			return fmt.Errorf("index %d is not between 0 and %d", i, bbs.MaxInstances-1)
		}
	}
	if r.Resource.MemoryMB < 0 || r.Resource.DiskMB < 0 {
		return errors.New("resource memory_mb and disk_mb must not be negative")
	}
	return nil
}

func writeError(w http.ResponseWriter, status int, e *bbs.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(bbs.ErrorResponse{Error: e})
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
