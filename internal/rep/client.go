package rep

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minicf/minicf/internal/bbs"
)

// Client calls the reps of cells (mutual TLS when tlsConfig is set): the
// auctioneer reads their state and sends them work, the BBS stops instances
// and cancels Tasks.
type Client struct {
	http *http.Client
}

var _ bbs.RepClient = (*Client)(nil)

// ErrInstanceNotFound is returned (wrapped) by StopLRPInstance when the cell
// does not run the instance.
// It is the BBS's ErrInstanceNotOnCell, so the BBS can tell.
var ErrInstanceNotFound = bbs.ErrInstanceNotOnCell

// NewClient returns a client of reps.
func NewClient(tlsConfig *tls.Config) *Client {
	tr := &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second}
	return &Client{http: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// maxResponseBytes bounds what the client reads from a rep.
const maxResponseBytes = 16 << 20

func (c *Client) do(ctx context.Context, cell *bbs.CellPresence, method, path string, body, out any) (int, error) {
	if cell == nil || cell.RepURL == "" {
		return 0, errors.New("the cell has no rep URL")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(cell.RepURL, "/")+path, rd)
	if err != nil {
		return 0, fmt.Errorf("the rep URL of cell %s, %q, is not usable: %w", cell.CellID, cell.RepURL, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach the rep of cell %s at %s: %w", cell.CellID, cell.RepURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("reading the answer of the rep of cell %s to %s %s: %w", cell.CellID, method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e ErrorResponse
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return resp.StatusCode, fmt.Errorf("the rep of cell %s answered %s %s with %d: %s", cell.CellID, method, path, resp.StatusCode, msg)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("the rep of cell %s answered %s %s with something that is not JSON: %w", cell.CellID, method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// State reads a cell's capacity and instances (GET /state).
func (c *Client) State(ctx context.Context, cell *bbs.CellPresence) (*CellState, error) {
	var st CellState
	if _, err := c.do(ctx, cell, http.MethodGet, PathState, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Perform sends a cell work (POST /work); the response lists the LRPs it
// could not take.
func (c *Client) Perform(ctx context.Context, cell *bbs.CellPresence, w Work) (*WorkResponse, error) {
	var resp WorkResponse
	if _, err := c.do(ctx, cell, http.MethodPost, PathWork, w, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// StopLRPInstance asks a cell to stop an instance. The cell stops it in the
// background and removes its ActualLRP when done.
func (c *Client) StopLRPInstance(ctx context.Context, cell *bbs.CellPresence, key bbs.ActualLRPKey, ik bbs.ActualLRPInstanceKey) error {
	path := StopLRPPath(url.PathEscape(key.ProcessGUID), url.PathEscape(ik.InstanceGUID))
	status, err := c.do(ctx, cell, http.MethodPost, path, nil, nil)
	if status == http.StatusNotFound {
		return fmt.Errorf("%w: %w", ErrInstanceNotFound, err)
	}
	return err
}

// ErrTaskNotFound is returned (wrapped) by CancelTask when the cell does not
// run the Task.
var ErrTaskNotFound = errors.New("the cell does not run this task")

// CancelTask asks a cell to stop a Task (POST /v1/tasks/{task_guid}/cancel):
// its processes are stopped and its container destroyed; the BBS has
// completed it already.
func (c *Client) CancelTask(ctx context.Context, cell *bbs.CellPresence, taskGUID string) error {
	status, err := c.do(ctx, cell, http.MethodPost, CancelTaskPath(url.PathEscape(taskGUID)), nil, nil)
	if status == http.StatusNotFound {
		return fmt.Errorf("%w: %w", ErrTaskNotFound, err)
	}
	return err
}
