package router

import (
	"cmp"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minicf/minicf/internal/mbus"
)

// AppLogPublisher receives, per app, a batch of the access-log lines of the
// requests that reached it (newline-delimited mbus.AppLog JSON), so the
// app's own recent logs can show its RTR lines.
type AppLogPublisher func(appID string, batch []byte)

// maxAppLogBatch bounds what one app's lines may hold in one flush; an app
// under a flood loses RTR lines rather than the router its memory.
const maxAppLogBatch = 256 << 10

// AccessLog writes one line per request in gorouter's format, to a writer
// and, per app, as RTR lines published on the bus.
//
// Requests only append their line to one of several sharded buffers, picked
// at random, so no lock is shared by every request (one buffer's mutex would
// be taken once per request by every core). A flusher, every flushEvery and
// on Close, takes the buffers, puts the lines back in the order the requests
// finished (by wall-clock finish time: lines tied to the nanosecond may come
// out in either order), writes them in one call (a write per request would cost a system
// call on the hot path) and builds each app's batch of RTR lines.
type AccessLog struct {
	shards  []logShard
	out     io.Writer // nil when only publishing
	publish AppLogPublisher

	flushMu sync.Mutex // one flush at a time, so lines leave in order
	merged  []logLine  // flusher's scratch space
	outBuf  []byte
	dropped atomic.Int64

	kick     chan struct{} // a shard filled up: flush before the tick
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

type logShard struct {
	mu    sync.Mutex
	buf   []byte    // rendered lines
	lines []logLine // where each line is in buf, and what it is for
	// The flusher hands the buffers it took back here once written, so
	// that a busy router reuses two buffers per shard instead of growing
	// a new one every flush.
	spareBuf   []byte
	spareLines []logLine
	_          [64]byte // keep neighbouring shards' locks off one cache line
}

// logLine is one request's line in its shard's buffer.
type logLine struct {
	end      int64 // unix ns when the request finished: the merge order
	start    int64
	off, n   int
	buf      []byte // the shard buffer holding it (set by the flusher)
	appID    string
	appIndex string
}

const (
	flushEvery = 200 * time.Millisecond
	// A shard past maxShardBuf asks for an early flush; past maxShardHold
	// (the flusher cannot keep up with a flood) its new lines are dropped
	// and counted, so the router's memory stays bounded.
	maxShardBuf  = 64 << 10
	maxShardHold = 1 << 20
	// maxFlushKeep bounds the scratch space the flusher keeps between
	// flushes; a flood's larger buffers are dropped after use.
	maxFlushKeep = 1 << 20
)

// NewAccessLog writes to out (may be nil) and publishes per app (may be nil).
func NewAccessLog(out io.Writer, publish AppLogPublisher) *AccessLog {
	n := max(4, 2*runtime.GOMAXPROCS(0))
	a := &AccessLog{shards: make([]logShard, n), out: out, publish: publish,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
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
		case <-a.kick:
			a.Flush()
		case <-a.stop:
			a.Flush()
			return
		}
	}
}

// Log records one request.
func (a *AccessLog) Log(r *http.Request, st *reqState, total time.Duration) {
	sh := &a.shards[rand.IntN(len(a.shards))]
	sh.mu.Lock()
	if len(sh.buf) >= maxShardHold {
		sh.mu.Unlock()
		a.dropped.Add(1)
		return
	}
	off := len(sh.buf)
	sh.buf = appendAccessLine(sh.buf, r, st, total)
	sh.lines = append(sh.lines, logLine{end: st.start.UnixNano() + int64(total), start: st.start.UnixNano(),
		off: off, n: len(sh.buf) - off, appID: st.appID, appIndex: st.appIndex})
	full := len(sh.buf) >= maxShardBuf
	sh.mu.Unlock()
	if full {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// Flush writes out buffered lines and publishes each app's lines.
func (a *AccessLog) Flush() error {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	lines := a.merged[:0]
	type taken struct {
		buf   []byte
		lines []logLine
	}
	var takenBufs [16]taken
	took := takenBufs[:0]
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.Lock()
		buf, ls := sh.buf, sh.lines
		if len(ls) > 0 {
			// The taken buffer is read after the unlock, so the shard goes
			// on with its spare one.
			sh.buf, sh.lines = sh.spareBuf[:0], sh.spareLines[:0]
			sh.spareBuf, sh.spareLines = nil, nil
		}
		sh.mu.Unlock()
		if len(ls) == 0 {
			took = append(took, taken{})
			continue
		}
		took = append(took, taken{buf, ls})
		for _, l := range ls {
			l.buf = buf
			lines = append(lines, l)
		}
	}
	defer func() {
		for i, t := range took {
			// A flood's buffers go to the garbage collector: kept as
			// spares they would hold the flood's peak for good.
			if t.buf == nil || cap(t.buf) > 2*maxShardBuf {
				continue
			}
			clear(t.lines)
			sh := &a.shards[i]
			sh.mu.Lock()
			sh.spareBuf, sh.spareLines = t.buf[:0], t.lines[:0]
			sh.mu.Unlock()
		}
	}()
	if len(lines) == 0 {
		return nil
	}
	// Each shard's lines are almost in order already, which pdqsort
	// notices; a stable sort would move these large entries around far more.
	slices.SortFunc(lines, func(x, y logLine) int {
		if c := cmp.Compare(x.end, y.end); c != 0 {
			return c
		}
		return cmp.Compare(x.start, y.start)
	})
	var err error
	if a.out != nil {
		b := a.outBuf[:0]
		for _, l := range lines {
			b = append(b, l.buf[l.off:l.off+l.n]...)
		}
		_, err = a.out.Write(b)
		a.outBuf = nil
		if cap(b) <= maxFlushKeep {
			a.outBuf = b
		}
	}
	if a.publish != nil {
		// Size each app's batch once: a JSON envelope adds about 200 bytes
		// to a line.
		sizes := map[string]int{}
		var order []string
		for _, l := range lines {
			if l.appID == "" {
				continue
			}
			if _, ok := sizes[l.appID]; !ok {
				order = append(order, l.appID)
			}
			sizes[l.appID] += l.n + 256
		}
		batches := make(map[string][]byte, len(order))
		for _, l := range lines {
			if l.appID == "" {
				continue
			}
			batch, ok := batches[l.appID]
			if !ok {
				batch = make([]byte, 0, min(sizes[l.appID], maxAppLogBatch+4096))
			}
			// An app under a flood loses RTR lines rather than the router its memory.
			if len(batch) >= maxAppLogBatch {
				a.dropped.Add(1)
				continue
			}
			batch = mbus.AppendAppLog(batch, l.appID, "RTR", l.appIndex, l.start, l.buf[l.off:l.off+l.n-1])
			batches[l.appID] = append(batch, '\n')
		}
		for _, app := range order {
			a.publish(app, batches[app])
		}
	}
	clear(lines) // drop references to the shards' old buffers
	a.merged = nil
	if cap(lines) <= maxFlushKeep/128 {
		a.merged = lines[:0]
	}
	return err
}

// Close stops the flusher and writes what is buffered. Safe to call more
// than once, and from several goroutines.
func (a *AccessLog) Close() error {
	a.stopOnce.Do(func() { close(a.stop) })
	<-a.done
	return nil
}

// Dropped counts lines lost to floods: RTR lines past an app's batch limit,
// and lines that found their shard full.
func (a *AccessLog) Dropped() int64 { return a.dropped.Load() }

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
