package bbs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// EventSource reads one event stream connection.
type EventSource struct {
	body   io.ReadCloser
	r      *bufio.Reader
	cancel context.CancelFunc
	lastID int
}

// ErrEventStreamClosed says the stream ended: resubscribe and resync.
var ErrEventStreamClosed = errors.New("the BBS event stream closed")

// maxEventBytes bounds one event; a DesiredLRP with the largest routes fits.
const maxEventBytes = 4 << 20

// SubscribeToInstanceEvents opens the LRP instance event stream; cellID ""
// gets every cell's actual-LRP events.
func (c *Client) SubscribeToInstanceEvents(ctx context.Context, cellID string) (*EventSource, error) {
	return c.subscribe(ctx, PathLRPInstanceEvents, EventsByCellID{CellID: cellID})
}

// SubscribeToTaskEvents opens the task event stream (task_created,
// task_changed, task_removed).
func (c *Client) SubscribeToTaskEvents(ctx context.Context) (*EventSource, error) {
	return c.subscribe(ctx, PathTaskEvents, struct{}{})
}

func (c *Client) subscribe(ctx context.Context, path string, request any) (*EventSource, error) {
	body, _ := json.Marshal(request)
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.stream.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cannot subscribe to BBS events at %s: %w", c.url, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		cancel()
		var env ErrorResponse
		if json.Unmarshal(data, &env) == nil && env.Error != nil {
			return nil, env.Error
		}
		return nil, fmt.Errorf("the BBS refused the event subscription: %d %.200s", resp.StatusCode, data)
	}
	return &EventSource{body: resp.Body, r: bufio.NewReaderSize(resp.Body, 64<<10), cancel: cancel, lastID: -1}, nil
}

// Next blocks for the next event. It returns ErrEventStreamClosed (wrapped)
// when the connection ends, and an error naming the gap when ids skip.
func (es *EventSource) Next() (Event, error) {
	var e Event
	var data []byte
	id := -1
	size := 0
	for {
		line, err := es.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return Event{}, fmt.Errorf("%w: %v", ErrEventStreamClosed, err)
		}
		size += len(line)
		if size > maxEventBytes {
			return Event{}, fmt.Errorf("%w: an event is larger than %d bytes", ErrEventStreamClosed, maxEventBytes)
		}
		full := errors.Is(err, bufio.ErrBufferFull)
		text := string(bytes.TrimRight(line, "\r\n"))
		if full {
			// A long data line: keep reading it.
			data = append(data, text...)
			continue
		}
		switch {
		case text == "":
			if e.Type == "" && data == nil {
				size = 0
				continue // keepalive comment block
			}
			e.Data = json.RawMessage(data)
			if id >= 0 {
				if es.lastID >= 0 && id != es.lastID+1 {
					es.lastID = id
					return e, fmt.Errorf("%w: event ids jumped from %d to %d", ErrEventStreamClosed, es.lastID, id)
				}
				es.lastID = id
			}
			return e, nil
		case strings.HasPrefix(text, ":"):
		case strings.HasPrefix(text, "id:"):
			id, _ = strconv.Atoi(strings.TrimSpace(text[3:]))
		case strings.HasPrefix(text, "event:"):
			e.Type = strings.TrimSpace(text[6:])
		case strings.HasPrefix(text, "data:"):
			chunk := strings.TrimPrefix(text[5:], " ")
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, chunk...)
		}
	}
}

// Close ends the subscription.
func (es *EventSource) Close() error {
	es.cancel()
	return es.body.Close()
}

// Watcher receives what WatchInstanceEvents sees.
type Watcher struct {
	// Resync runs after every (re)connection, before any event of that
	// connection, so the caller can list what it may have missed.
	Resync func(context.Context) error
	// Event gets each event in order.
	Event func(Event)
	// Lost gets the error that ended a connection (may be nil).
	Lost func(error)
}

// WatchInstanceEvents keeps a subscription open until ctx ends, reconnecting
// with backoff. Subscribing before resyncing means no change falls between
// the list and the stream.
func (c *Client) WatchInstanceEvents(ctx context.Context, cellID string, w Watcher) error {
	resync, onEvent := w.Resync, w.Event
	backoff := 100 * time.Millisecond
	for {
		es, err := c.SubscribeToInstanceEvents(ctx, cellID)
		if err == nil {
			if rerr := resync(ctx); rerr != nil {
				es.Close()
				err = fmt.Errorf("resync after subscribing: %w", rerr)
			} else {
				backoff = 100 * time.Millisecond
				for {
					e, nerr := es.Next()
					if nerr != nil {
						es.Close()
						err = nerr
						break
					}
					onEvent(e)
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if w.Lost != nil {
			w.Lost(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}
