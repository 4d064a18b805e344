package bbs

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls a BBS over HTTP (mutual TLS when tlsConfig is set).
type Client struct {
	url  string
	http *http.Client
	// stream is for the event stream: no overall timeout, the connection
	// lives as long as the subscription.
	stream *http.Client
}

// NewClient returns a client of the BBS at baseURL (https://host:port).
func NewClient(baseURL string, tlsConfig *tls.Config) *Client {
	tr := &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second}
	streamTr := &http.Transport{TLSClientConfig: tlsConfig, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second}
	return &Client{
		url:    strings.TrimRight(baseURL, "/"),
		http:   &http.Client{Transport: tr, Timeout: 60 * time.Second},
		stream: &http.Client{Transport: streamTr},
	}
}

// URL is the BBS this client talks to.
func (c *Client) URL() string { return c.url }

// CloseIdleConnections closes kept-alive connections to the BBS (a BBS
// that shuts down waits up to 5 s for a connection that was opened and
// never used).
func (c *Client) CloseIdleConnections() {
	c.http.CloseIdleConnections()
	c.stream.CloseIdleConnections()
}

// maxResponseBytes bounds what the client reads from one response; a list
// of every LRP of a large foundation stays far below it.
const maxResponseBytes = 64 << 20

func (c *Client) call(ctx context.Context, path string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return fmt.Errorf("cannot reach the BBS at %s: %w", c.url, err)
	}
	defer hresp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("reading the BBS's answer to %s: %w", path, err)
	}
	var envelope ErrorResponse
	if err := json.Unmarshal(data, &envelope); err != nil {
		return fmt.Errorf("the BBS answered %s with %d and no JSON: %.200s", path, hresp.StatusCode, data)
	}
	if envelope.Error != nil {
		return envelope.Error
	}
	if hresp.StatusCode != http.StatusOK {
		return fmt.Errorf("the BBS answered %s with %d", path, hresp.StatusCode)
	}
	if resp != nil {
		return json.Unmarshal(data, resp)
	}
	return nil
}

// Ping checks that the BBS answers.
func (c *Client) Ping(ctx context.Context) error { return c.call(ctx, PathPing, struct{}{}, nil) }

// DesireLRP stores a new DesiredLRP and starts its instances.
func (c *Client) DesireLRP(ctx context.Context, d *DesiredLRP) error {
	return c.call(ctx, PathDesireLRP, DesireLRPRequest{DesiredLRP: d}, nil)
}

// UpdateDesiredLRP changes instances, routes, annotation or metric tags.
func (c *Client) UpdateDesiredLRP(ctx context.Context, processGUID string, u *DesiredLRPUpdate) error {
	return c.call(ctx, PathUpdateDesiredLRP, UpdateDesiredLRPRequest{ProcessGUID: processGUID, Update: u}, nil)
}

// RemoveDesiredLRP removes a DesiredLRP and stops its instances.
func (c *Client) RemoveDesiredLRP(ctx context.Context, processGUID string) error {
	return c.call(ctx, PathRemoveDesiredLRP, RemoveDesiredLRPRequest{ProcessGUID: processGUID}, nil)
}

// DesiredLRPs lists DesiredLRPs, optionally filtered.
func (c *Client) DesiredLRPs(ctx context.Context, f DesiredLRPsRequest) ([]*DesiredLRP, error) {
	var r DesiredLRPsResponse
	err := c.call(ctx, PathDesiredLRPs, f, &r)
	return r.DesiredLRPs, err
}

// DesiredLRPByProcessGUID gets one DesiredLRP.
func (c *Client) DesiredLRPByProcessGUID(ctx context.Context, processGUID string) (*DesiredLRP, error) {
	var r DesiredLRPResponse
	err := c.call(ctx, PathDesiredLRPByGUID, DesiredLRPByProcessGUIDRequest{ProcessGUID: processGUID}, &r)
	return r.DesiredLRP, err
}

// DesiredLRPRoutingInfos lists DesiredLRPs with only the fields the route
// emitter needs (process guid, domain, log guid, instances, routes,
// modification tag, metric tags).
func (c *Client) DesiredLRPRoutingInfos(ctx context.Context, f DesiredLRPsRequest) ([]*DesiredLRP, error) {
	var r DesiredLRPsResponse
	err := c.call(ctx, PathRoutingInfos, f, &r)
	return r.DesiredLRPs, err
}

// ActualLRPs lists ActualLRPs, optionally by domain, cell, process or index.
func (c *Client) ActualLRPs(ctx context.Context, f ActualLRPsRequest) ([]*ActualLRP, error) {
	var r ActualLRPsResponse
	err := c.call(ctx, PathActualLRPs, f, &r)
	return r.ActualLRPs, err
}

// ClaimActualLRP marks an instance slot as taken by a container on a cell.
func (c *Client) ClaimActualLRP(ctx context.Context, key ActualLRPKey, ik ActualLRPInstanceKey) error {
	return c.call(ctx, PathClaimActualLRP, ClaimActualLRPRequest{ProcessGUID: key.ProcessGUID, Index: key.Index, ActualLRPInstanceKey: &ik}, nil)
}

// StartActualLRP marks an instance RUNNING with where it can be reached.
func (c *Client) StartActualLRP(ctx context.Context, key ActualLRPKey, ik ActualLRPInstanceKey, net ActualLRPNetInfo, routable bool) error {
	return c.call(ctx, PathStartActualLRP, StartActualLRPRequest{ActualLRPKey: &key, ActualLRPInstanceKey: &ik, ActualLRPNetInfo: &net, Routable: &routable}, nil)
}

// CrashActualLRP reports that an instance's process exited.
func (c *Client) CrashActualLRP(ctx context.Context, key ActualLRPKey, ik ActualLRPInstanceKey, reason string) error {
	return c.call(ctx, PathCrashActualLRP, CrashActualLRPRequest{ActualLRPKey: &key, ActualLRPInstanceKey: &ik, ErrorMessage: reason}, nil)
}

// RemoveActualLRP removes an instance after the cell stopped it.
func (c *Client) RemoveActualLRP(ctx context.Context, key ActualLRPKey, ik *ActualLRPInstanceKey) error {
	return c.call(ctx, PathRemoveActualLRP, RemoveActualLRPRequest{ProcessGUID: key.ProcessGUID, Index: key.Index, ActualLRPInstanceKey: ik}, nil)
}

// FailActualLRP records a placement error on an UNCLAIMED instance.
func (c *Client) FailActualLRP(ctx context.Context, key ActualLRPKey, reason string) error {
	return c.call(ctx, PathFailActualLRP, FailActualLRPRequest{ActualLRPKey: &key, ErrorMessage: reason}, nil)
}

// Cells lists the cells whose presence is current.
func (c *Client) Cells(ctx context.Context) ([]*CellPresence, error) {
	var r CellsResponse
	err := c.call(ctx, PathCells, struct{}{}, &r)
	return r.Cells, err
}

// CellHeartbeat announces (or renews) a cell's presence.
func (c *Client) CellHeartbeat(ctx context.Context, p *CellPresence) error {
	return c.call(ctx, PathCellHeartbeat, CellHeartbeatRequest{Cell: p}, nil)
}

// UpsertDomain marks a domain fresh for ttl.
func (c *Client) UpsertDomain(ctx context.Context, domain string, ttl time.Duration) error {
	return c.call(ctx, PathUpsertDomain, UpsertDomainRequest{Domain: domain, TTL: uint32(ttl / time.Second)}, nil)
}

// Domains lists the fresh domains.
func (c *Client) Domains(ctx context.Context) ([]string, error) {
	var r DomainsResponse
	err := c.call(ctx, PathDomains, struct{}{}, &r)
	return r.Domains, err
}

// DesireTask stores a new Task (PENDING) and asks for its placement.
func (c *Client) DesireTask(ctx context.Context, taskGUID, domain string, def *TaskDefinition) error {
	return c.call(ctx, PathDesireTask, DesireTaskRequest{TaskDefinition: def, TaskGUID: taskGUID, Domain: domain}, nil)
}

// Tasks lists Tasks, optionally by domain and cell.
func (c *Client) Tasks(ctx context.Context, f TasksRequest) ([]*Task, error) {
	var r TasksResponse
	err := c.call(ctx, PathTasks, f, &r)
	return r.Tasks, err
}

// TaskByGUID gets one Task.
func (c *Client) TaskByGUID(ctx context.Context, taskGUID string) (*Task, error) {
	var r TaskResponse
	err := c.call(ctx, PathTaskByGUID, TaskByGUIDRequest{TaskGUID: taskGUID}, &r)
	return r.Task, err
}

// StartTask marks a PENDING Task RUNNING on a cell. false (with no error)
// means the cell already runs it and must not start it again.
func (c *Client) StartTask(ctx context.Context, taskGUID, cellID string) (bool, error) {
	var r StartTaskResponse
	err := c.call(ctx, PathStartTask, StartTaskRequest{TaskGUID: taskGUID, CellID: cellID}, &r)
	return r.ShouldStart, err
}

// CompleteTask records how a RUNNING Task ended on its cell.
func (c *Client) CompleteTask(ctx context.Context, taskGUID, cellID string, failed bool, reason, result string) error {
	return c.call(ctx, PathCompleteTask, CompleteTaskRequest{TaskGUID: taskGUID, CellID: cellID, Failed: failed,
		FailureReason: reason, Result: result}, nil)
}

// FailTask completes a Task that could not be placed, failed with reason.
func (c *Client) FailTask(ctx context.Context, taskGUID, reason string) error {
	return c.call(ctx, PathFailTask, FailTaskRequest{TaskGUID: taskGUID, FailureReason: reason}, nil)
}

// CancelTask completes a PENDING or RUNNING Task as cancelled (its cell
// stops it).
func (c *Client) CancelTask(ctx context.Context, taskGUID string) error {
	return c.call(ctx, PathCancelTask, TaskByGUIDRequest{TaskGUID: taskGUID}, nil)
}

// DeleteTask removes a COMPLETED (or RESOLVING) Task.
func (c *Client) DeleteTask(ctx context.Context, taskGUID string) error {
	return c.call(ctx, PathDeleteTask, TaskByGUIDRequest{TaskGUID: taskGUID}, nil)
}
