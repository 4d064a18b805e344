package auctioneer

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

	"github.com/minicf/minicf/internal/bbs"
)

// Client calls an auctioneer over HTTP (mutual TLS when tlsConfig is set).
// It is the BBS's bbs.Auctioneer.
type Client struct {
	url  string
	http *http.Client
}

var _ bbs.Auctioneer = (*Client)(nil)

// NewClient returns a client of the auctioneer at url (https://host:port).
func NewClient(url string, tlsConfig *tls.Config) *Client {
	tr := &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second}
	return &Client{url: strings.TrimRight(url, "/"), http: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// URL is the auctioneer this client talks to.
func (c *Client) URL() string { return c.url }

// CloseIdleConnections closes kept-alive connections to the auctioneer.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// RequestLRPStarts asks the auctioneer to place instances. It returns once
// the auctioneer accepted the work, not once it is placed. A list whose JSON
// is larger than the auctioneer accepts in one request goes in several.
func (c *Client) RequestLRPStarts(ctx context.Context, reqs []bbs.LRPStartRequest) error {
	return postSplit(ctx, c, PathLRPs, reqs, func(r bbs.LRPStartRequest) string { return r.ProcessGUID })
}

// RequestTaskAuctions asks the auctioneer to place Tasks, as
// RequestLRPStarts does instances.
func (c *Client) RequestTaskAuctions(ctx context.Context, reqs []bbs.TaskStartRequest) error {
	return postSplit(ctx, c, PathTasks, reqs, func(r bbs.TaskStartRequest) string { return r.TaskGUID })
}

// postSplit posts reqs to path, halving the list while its JSON is larger
// than the auctioneer takes.
func postSplit[T any](ctx context.Context, c *Client, path string, reqs []T, name func(T) string) error {
	if len(reqs) == 0 {
		return nil
	}
	body, err := json.Marshal(reqs)
	if err != nil {
		return err
	}
	if len(body) > MaxRequestBytes {
		if len(reqs) == 1 {
			return fmt.Errorf("the start request for %s is larger than the auctioneer's limit of %d bytes", clip(name(reqs[0])), MaxRequestBytes)
		}
		half := len(reqs) / 2
		if err := postSplit(ctx, c, path, reqs[:half], name); err != nil {
			return err
		}
		return postSplit(ctx, c, path, reqs[half:], name)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hreq)
	if err != nil {
		return fmt.Errorf("cannot reach the auctioneer at %s: %w", c.url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusAccepted {
		return nil
	}
	var envelope bbs.ErrorResponse
	if json.Unmarshal(data, &envelope) == nil && envelope.Error != nil {
		return envelope.Error
	}
	return fmt.Errorf("the auctioneer answered %s with %d: %.200s", path, resp.StatusCode, data)
}
