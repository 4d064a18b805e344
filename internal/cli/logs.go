package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

// LogTimestampFormat is how the cf CLI prints a log line's time.
const LogTimestampFormat = "2006-01-02T15:04:05.00-0700"

// LogLine is one decoded log-cache envelope.
type LogLine struct {
	Time       time.Time
	SourceType string // RTR, STG, APP/PROC/WEB, CELL, API
	Instance   string
	Type       string // OUT or ERR
	Message    string
}

// recentLimit is how many lines `logs --recent` asks for, as the cf CLI.
const recentLimit = 1000

// readLogs GETs <log-cache>/api/v1/read/:source_id with the given query
// and decodes the LOG envelopes.
func (c *Client) readLogs(ctx context.Context, sourceID string, kv ...string) ([]LogLine, error) {
	var batch ccapi.LogEnvelopeBatch
	_, body, err := c.do(ctx, request{method: "GET", target: query("/api/v1/read/"+sourceID, kv...), logCache: true})
	if err != nil {
		return nil, err
	}
	if err := decode("GET", "/api/v1/read/"+sourceID, body, &batch); err != nil {
		return nil, err
	}
	var out []LogLine
	for _, e := range batch.Envelopes.Batch {
		if e.Log == nil {
			continue
		}
		ns, err := strconv.ParseInt(e.Timestamp, 10, 64)
		if err != nil {
			continue
		}
		msg, err := base64.StdEncoding.DecodeString(e.Log.Payload)
		if err != nil {
			if msg, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(e.Log.Payload, "=")); err != nil {
				msg = []byte(e.Log.Payload)
			}
		}
		typ := e.Log.Type
		if typ == "" {
			typ = "OUT"
		}
		out = append(out, LogLine{
			Time:       time.Unix(0, ns),
			SourceType: e.Tags["source_type"],
			Instance:   e.InstanceID,
			Type:       typ,
			Message:    string(msg),
		})
	}
	return out, nil
}

// RecentLogs reads the newest lines of an app (as `cf logs --recent`:
// descending with a limit, then put back in time order).
func (c *Client) RecentLogs(ctx context.Context, appGUID string) ([]LogLine, error) {
	lines, err := c.readLogs(ctx, appGUID, "descending", "true", "envelope_types", "LOG", "limit", strconv.Itoa(recentLimit), "start_time", "0")
	if err != nil {
		return nil, err
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].Time.Before(lines[j].Time) })
	return lines, nil
}

// formatLog writes a line as the cf CLI does: three spaces, the header
// "TIME [SOURCE/INSTANCE] OUT " (when header), then the message; each line
// of a multi-line message gets the header again.
func formatLog(w io.Writer, l LogLine, loc *time.Location, header bool) {
	h := ""
	if header {
		h = fmt.Sprintf("%s [%s/%s] %s ", l.Time.In(loc).Format(LogTimestampFormat), l.SourceType, l.Instance, l.Type)
	}
	msg := strings.TrimSuffix(strings.TrimSuffix(l.Message, "\n"), "\r")
	for _, line := range strings.Split(msg, "\n") {
		fmt.Fprintf(w, "   %s%s\n", h, strings.TrimRight(line, "\r\n"))
	}
}

// stagingLogs streams an app's STG lines to w from start until stop is
// closed, reading log-cache every interval, then drains once more. If
// log-cache cannot be read it says so once and keeps quiet after.
func (c *Client) stagingLogs(ctx context.Context, appGUID string, start time.Time, interval time.Duration, w io.Writer, warn func(string), stop <-chan struct{}) {
	next := start.UnixNano()
	failed := false
	read := func() int {
		lines, err := c.readLogs(ctx, appGUID, "start_time", strconv.FormatInt(next, 10), "envelope_types", "LOG")
		if err != nil {
			if !failed && ctx.Err() == nil {
				warn("Failed to retrieve logs from Log Cache: " + firstLine(err.Error()))
			}
			failed = true
			return 0
		}
		sort.SliceStable(lines, func(i, j int) bool { return lines[i].Time.Before(lines[j].Time) })
		n := 0
		for _, l := range lines {
			if ns := l.Time.UnixNano(); ns >= next {
				next = ns + 1
			} else {
				continue // the server did not honour start_time
			}
			if l.SourceType == "STG" {
				formatLog(w, l, time.UTC, false)
			}
			n++
		}
		return n
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if !failed {
			read()
		}
		select {
		case <-stop:
			for i := 0; i < 10 && !failed && read() > 0; i++ {
			}
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
