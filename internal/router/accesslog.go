package router

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/minicf/minicf/internal/mbus"
)

// AppLogPublisher receives, per app, a batch of the access-log lines of the
// requests that reached it (newline-delimited mbus.AppLog JSON), so the
// app's own recent logs can show its RTR lines.
type AppLogPublisher func(appID string, batch []byte)

// maxAppLogBatch bounds what one app's lines may hold between flushes; an app
// under a flood loses RTR lines rather than the router its memory.
const maxAppLogBatch = 256 << 10

// AccessLog writes one line per request in gorouter's format. Lines go to a
// buffer flushed every flushEvery and on Close: a write per request would
// cost a system call on the hot path.
type AccessLog struct {
	mu      sync.Mutex
	w       *bufio.Writer // nil when only publishing
	publish AppLogPublisher
	// pending holds each app's lines until the next flush: one NATS message
	// per app per flush costs far less than one per request.
	pending map[string][]byte
	dropped int64

	stop chan struct{}
	done chan struct{}
}

const flushEvery = 200 * time.Millisecond

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// NewAccessLog writes to out (may be nil) and publishes per app (may be nil).
func NewAccessLog(out io.Writer, publish AppLogPublisher) *AccessLog {
	a := &AccessLog{publish: publish, pending: map[string][]byte{}, stop: make(chan struct{}), done: make(chan struct{})}
	if out != nil {
		a.w = bufio.NewWriterSize(out, 64<<10)
	}
	go a.flushLoop()
	return a
}

func (a *AccessLog) flushLoop() {
	defer close(a.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.Flush()
		case <-a.stop:
			a.Flush()
			return
		}
	}
}

// Flush writes out buffered lines and publishes pending app lines.
func (a *AccessLog) Flush() error {
	var err error
	a.mu.Lock()
	if a.w != nil {
		err = a.w.Flush()
	}
	// Take the map out from under the lock before ranging over it: Log
	// writes to whatever map a.pending holds.
	pending := a.pending
	if len(pending) > 0 {
		a.pending = make(map[string][]byte, len(pending))
	} else {
		pending = nil
	}
	a.mu.Unlock()
	for app, batch := range pending {
		a.publish(app, batch)
	}
	return err
}

// Close stops the flusher and writes what is buffered. Safe to call twice.
func (a *AccessLog) Close() error {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
	return nil
}

// Log records one request.
func (a *AccessLog) Log(r *http.Request, st *reqState, total time.Duration) {
	bp := lineBufs.Get().(*[]byte)
	b := appendAccessLine((*bp)[:0], r, st, total)
	a.mu.Lock()
	if a.w != nil {
		a.w.Write(b)
	}
	if a.publish != nil && st.appID != "" {
		batch := a.pending[st.appID]
		if len(batch) < maxAppLogBatch {
			batch = mbus.AppendAppLog(batch, st.appID, "RTR", st.appIndex, st.start.UnixNano(), b[:len(b)-1])
			a.pending[st.appID] = append(batch, '\n')
		} else {
			a.dropped++
		}
	}
	a.mu.Unlock()
	*bp = b
	lineBufs.Put(bp)
}

// appendAccessLine renders gorouter's access-log line:
//
//	host - [time] "METHOD uri PROTO" status bytes_received bytes_sent "referer" "user-agent"
//	"client" "backend" x_forwarded_for:"..." x_forwarded_proto:"..." vcap_request_id:"..."
//	response_time:s gorouter_time:s app_id:"..." app_index:"..." instance_id:"..."
//	x_cf_routererror:"..."
func appendAccessLine(b []byte, r *http.Request, st *reqState, total time.Duration) []byte {
	host := r.Host
	if host == "" {
		host = "-"
	}
	b = append(b, host...)
	b = append(b, " - ["...)
	b = st.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000000Z")
	b = append(b, "] \""...)
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = appendClean(b, r.RequestURI)
	b = append(b, ' ')
	b = append(b, r.Proto...)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(st.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, st.bytesIn, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, st.bytesOut, 10)
	b = appendQuoted(b, " ", r.Header.Get("Referer"))
	b = appendQuoted(b, " ", r.Header.Get("User-Agent"))
	b = appendQuoted(b, " ", r.RemoteAddr)
	b = appendQuoted(b, " ", st.backendAddr)
	b = appendQuoted(b, " x_forwarded_for:", r.Header.Get(headerForwardedFor))
	b = appendQuoted(b, " x_forwarded_proto:", r.Header.Get(headerForwardedProto))
	b = appendQuoted(b, " vcap_request_id:", st.requestID)
	b = append(b, " response_time:"...)
	b = strconv.AppendFloat(b, total.Seconds(), 'f', 6, 64)
	b = append(b, " gorouter_time:"...)
	b = strconv.AppendFloat(b, (total - st.backendTime).Seconds(), 'f', 6, 64)
	b = appendQuoted(b, " app_id:", st.appID)
	b = appendQuoted(b, " app_index:", st.appIndex)
	b = appendQuoted(b, " instance_id:", st.instanceID)
	b = appendQuoted(b, " x_cf_routererror:", st.routerError)
	return append(b, '\n')
}

// appendQuoted writes label"value", with "-" for empty values as gorouter does.
func appendQuoted(b []byte, label, v string) []byte {
	b = append(b, label...)
	b = append(b, '"')
	if v == "" {
		b = append(b, '-')
	} else {
		b = appendClean(b, v)
	}
	return append(b, '"')
}

// appendClean keeps one request on one line whatever a client sends.
func appendClean(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"':
			b = append(b, '\\', '"')
		case c < ' ' || c == 0x7f:
			b = append(b, '?')
		default:
			b = append(b, c)
		}
	}
	return b
}
