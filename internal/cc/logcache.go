package cc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"sync"

	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/minicf/minicf/internal/mbus"
)

// The log cache keeps the last lines of each app's logs in memory, from
// minicf.logs.<app guid> on NATS (RTR lines from the router, APP and STG
// lines from cells), and serves log-cache's read API: GET /api/v1/info and
// GET /api/v1/read/:source_id (cf-cli-v8.md §7.3), enough for `cf logs`
// and for the staging log during push.
//
// Timestamps are made strictly increasing per app in arrival order (a line
// stamped no later than the one before gets the one before's plus 1 ns),
// so a reader that walks with start_time = last + 1 never skips or repeats
// a line.

const (
	defaultMaxLogApps   = 4096
	maxLogMessageBytes  = 64 << 10
	defaultLogReadLimit = 100
	maxLogReadLimit     = 1000
	maxLogSourceIDLen   = 255
)

type logLine struct {
	ts       int64
	source   string
	instance string
	msg      string
}

// logRing is one app's last lines, oldest first.
type logRing struct {
	lines []logLine
	start int // index of the oldest
	n     int
	last  int64 // newest timestamp
	seq   uint64
}

func (r *logRing) add(l logLine, size int) {
	if l.ts <= r.last {
		l.ts = r.last + 1
	}
	r.last = l.ts
	if len(r.lines) < size {
		r.lines = append(r.lines, l)
		r.n++
		return
	}
	r.lines[(r.start+r.n)%size] = l
	if r.n == size {
		r.start = (r.start + 1) % size
	} else {
		r.n++
	}
}

func (r *logRing) at(i int) logLine { return r.lines[(r.start+i)%len(r.lines)] }

type logCache struct {
	mu      sync.Mutex
	perApp  int
	maxApps int
	apps    map[string]*logRing
	seq     uint64
}

func newLogCache(perApp, maxApps int) *logCache {
	return &logCache{perApp: perApp, maxApps: maxApps, apps: map[string]*logRing{}}
}

// ingest takes one NATS message: AppLog JSON objects, one per line.
func (lc *logCache) ingest(data []byte) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var l mbus.AppLog
		if err := json.Unmarshal(line, &l); err != nil || l.AppID == "" || len(l.AppID) > maxLogSourceIDLen {
			continue
		}
		if len(l.Message) > maxLogMessageBytes {
			l.Message = l.Message[:maxLogMessageBytes]
		}
		lc.add(l.AppID, logLine{ts: l.TimestampNs, source: l.SourceType, instance: l.InstanceIndex, msg: l.Message})
	}
}

func (lc *logCache) add(app string, l logLine) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	r := lc.apps[app]
	if r == nil {
		if len(lc.apps) >= lc.maxApps {
			lc.evictLocked()
		}
		r = &logRing{}
		lc.apps[app] = r
	}
	lc.seq++
	r.seq = lc.seq
	r.add(l, lc.perApp)
}

// evictLocked drops the app written to least recently.
func (lc *logCache) evictLocked() {
	var oldest string
	var seq uint64 = math.MaxUint64
	for k, r := range lc.apps {
		if r.seq < seq {
			oldest, seq = k, r.seq
		}
	}
	delete(lc.apps, oldest)
}

// read returns the app's lines with start <= ts < end: the oldest limit
// of them, or with descending the newest limit, newest first.
func (lc *logCache) read(app string, start, end int64, limit int, descending bool) []logLine {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	r := lc.apps[app]
	if r == nil {
		return nil
	}
	var out []logLine
	if descending {
		for i := r.n - 1; i >= 0 && len(out) < limit; i-- {
			if l := r.at(i); l.ts >= start && l.ts < end {
				out = append(out, l)
			}
		}
		return out
	}
	for i := 0; i < r.n && len(out) < limit; i++ {
		if l := r.at(i); l.ts >= start && l.ts < end {
			out = append(out, l)
		}
	}
	return out
}

func (c *CC) logCacheInfo(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"version": "3.0.0"})
}

func (c *CC) logCacheRead(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	start, end := int64(0), int64(math.MaxInt64)
	limit := defaultLogReadLimit
	intParam := func(name string, dst *int64) error {
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return badQuery("%s must be an integer (nanoseconds since the epoch)", name)
			}
			*dst = n
		}
		return nil
	}
	if err := intParam("start_time", &start); err != nil {
		return err
	}
	if err := intParam("end_time", &end); err != nil {
		return err
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return badQuery("limit must be a positive integer")
		}
		limit = min(n, maxLogReadLimit)
	}
	descending := q.Get("descending") == "true"
	types := queryFilter(q, "envelope_types")
	var lines []logLine
	if !types.present || types.set["LOG"] || types.set["ANY"] {
		lines = c.logs.read(r.PathValue("source_id"), start, end, limit, descending)
	}
	var out ccapi.LogEnvelopeBatch
	out.Envelopes.Batch = make([]ccapi.LogEnvelope, 0, len(lines))
	for _, l := range lines {
		out.Envelopes.Batch = append(out.Envelopes.Batch, ccapi.LogEnvelope{
			Timestamp: strconv.FormatInt(l.ts, 10), SourceID: r.PathValue("source_id"), InstanceID: l.instance,
			Tags: map[string]string{"source_type": l.source},
			Log:  &ccapi.LogPayload{Payload: base64.StdEncoding.EncodeToString([]byte(l.msg)), Type: "OUT"},
		})
	}
	return writeJSON(w, http.StatusOK, out)
}
