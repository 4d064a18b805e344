package cc

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/minicf/minicf/internal/cc/ccapi"
	"github.com/minicf/minicf/internal/mbus"
)

func appLogLine(app, source string, ts int64, msg string) string {
	return string(mbus.AppendAppLog(nil, app, source, "0", ts, []byte(msg)))
}

func TestLogCacheRead(t *testing.T) {
	e := newEnv(t, testSQLiteDSN(t))
	bus := &fakeBus{}
	// Start's subscription, without its listeners (TestListeners has them).
	bus.Subscribe(mbus.SubjectAppLogsPrefix+">", func(m mbus.Msg) { e.cc.logs.ingest(m.Data) })
	var lines []string
	for i := 1; i <= 5; i++ {
		lines = append(lines, appLogLine("app-1", "STG", int64(i*100), fmt.Sprintf("line %d", i)))
	}
	// One message with several lines, one with a late timestamp, one line
	// of garbage, and another app.
	bus.publish("minicf.logs.app-1", []byte(strings.Join(lines[:3], "\n")+"\n"))
	bus.publish("minicf.logs.app-1", []byte(lines[3]+"\nnot json\n"+lines[4]))
	bus.publish("minicf.logs.app-1", []byte(appLogLine("app-1", "RTR", 50, "late")))
	bus.publish("minicf.logs.app-2", []byte(appLogLine("app-2", "APP/PROC/WEB", 1, "other app")))

	read := func(query string) []ccapi.LogEnvelope {
		t.Helper()
		var out ccapi.LogEnvelopeBatch
		e.mustJSON("GET", "/api/v1/read/app-1"+query, nil, 200, &out)
		return out.Envelopes.Batch
	}
	msgs := func(b []ccapi.LogEnvelope) string {
		var s []string
		for _, en := range b {
			p, _ := base64.StdEncoding.DecodeString(en.Log.Payload)
			s = append(s, en.Timestamp+":"+string(p))
		}
		return strings.Join(s, ",")
	}
	// The late line gets the next timestamp, so a walk never skips it.
	if got := msgs(read("")); got != "100:line 1,200:line 2,300:line 3,400:line 4,500:line 5,501:late" {
		t.Errorf("all: %s", got)
	}
	if got := msgs(read("?start_time=300&limit=2")); got != "300:line 3,400:line 4" {
		t.Errorf("start_time=300&limit=2: %s", got)
	}
	if got := msgs(read("?start_time=401")); got != "500:line 5,501:late" {
		t.Errorf("walk on from 401: %s", got)
	}
	if got := msgs(read("?descending=true&limit=2")); got != "501:late,500:line 5" {
		t.Errorf("descending: %s", got)
	}
	if got := msgs(read("?end_time=300&envelope_types=LOG")); got != "100:line 1,200:line 2" {
		t.Errorf("end_time: %s", got)
	}
	if got := msgs(read("?envelope_types=GAUGE")); got != "" {
		t.Errorf("GAUGE: %s", got)
	}
	b := read("?limit=1")
	if b[0].SourceID != "app-1" || b[0].InstanceID != "0" || b[0].Tags["source_type"] != "STG" || b[0].Log.Type != "OUT" {
		t.Errorf("envelope %+v", b[0])
	}
	_, _, data := e.do("GET", "/api/v1/read/unknown", nil)
	if !strings.Contains(string(data), `"batch":[]`) {
		t.Errorf("unknown source: %s", data)
	}
	e.wantError("GET", "/api/v1/read/app-1?start_time=x", nil, 400, "CF-BadQueryParameter", "The query parameter is invalid: start_time must be an integer (nanoseconds since the epoch)")
	var info map[string]string
	e.mustJSON("GET", "/api/v1/info", nil, 200, &info)
	if info["version"] != "3.0.0" {
		t.Errorf("info %v", info)
	}
}

func TestLogCacheBounds(t *testing.T) {
	lc := newLogCache(3, 2)
	for i := 1; i <= 5; i++ {
		lc.add("a", logLine{ts: int64(i), msg: fmt.Sprint(i)})
	}
	got := lc.read("a", 0, 1<<62, 100, false)
	if len(got) != 3 || got[0].msg != "3" || got[2].msg != "5" {
		t.Errorf("ring keeps the last 3: %+v", got)
	}
	lc.add("b", logLine{ts: 1})
	lc.add("a", logLine{ts: 9}) // a is now the most recent
	lc.add("c", logLine{ts: 1}) // evicts b, written least recently
	if lc.read("b", 0, 1<<62, 10, false) != nil || lc.read("a", 0, 1<<62, 10, false) == nil || lc.read("c", 0, 1<<62, 10, false) == nil {
		t.Errorf("eviction kept %v", sortedKeys(lc.apps))
	}
	long := strings.Repeat("x", maxLogMessageBytes+10)
	lc.ingest([]byte(appLogLine("d", "APP", 1, long)))
	if l := lc.read("d", 0, 1<<62, 1, false); len(l) != 1 || len(l[0].msg) != maxLogMessageBytes {
		t.Errorf("a long line is not cut")
	}
}
