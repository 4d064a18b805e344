package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func fixtureTimeline(mode string) *Timeline {
	tl := NewTimeline(helloRt, flowEvents(mode))
	req := &Request{Method: "GET", URL: "http://127.0.0.1:8081/", Host: helloRt, Status: 200, RequestID: reqID, DurationMs: 3.25}
	tl.Request = req
	tl.Locate(req, []byte(`{"app":"hello"}`))
	return tl
}

func TestTimelineRenderGolden(t *testing.T) {
	for _, mode := range []string{"namespace", "process"} {
		t.Run(mode, func(t *testing.T) {
			var b bytes.Buffer
			fixtureTimeline(mode).Render(&b)
			golden(t, "timeline-"+mode+".golden", b.Bytes())
		})
	}
}

func TestTimelineRenderPartialGolden(t *testing.T) {
	// Before the instance runs, with no request sent.
	var b bytes.Buffer
	NewTimeline(helloRt, flowEvents("namespace")[:4]).Render(&b)
	NewTimeline("nothing.apps.localhost", nil).Render(&b)
	golden(t, "timeline-partial.golden", b.Bytes())
}

func TestTimelineDeltasAddUp(t *testing.T) {
	tl := NewTimeline(helloRt, flowEvents("namespace"))
	if len(tl.Missing) != 0 {
		t.Fatalf("missing %v", tl.Missing)
	}
	var sum int64
	for i, s := range tl.Steps {
		sum += s.DeltaNs
		if s.SinceNs != s.Time.Sub(tl.Steps[0].Time).Nanoseconds() || sum != s.SinceNs {
			t.Fatalf("step %d: since %d, deltas so far %d", i, s.SinceNs, sum)
		}
		if i > 0 && s.DeltaNs != s.SinceNs-tl.Steps[i-1].SinceNs {
			t.Fatalf("step %d: delta %d is not the difference of consecutive times", i, s.DeltaNs)
		}
	}
	if tl.TotalMs != 2700 {
		t.Fatalf("total %v ms, want 2700", tl.TotalMs)
	}
	// The JSON carries the same, snake_case, flat.
	b, _ := json.Marshal(tl)
	var back struct {
		Steps []map[string]any `json:"steps"`
	}
	json.Unmarshal(b, &back)
	if back.Steps[1]["step"] != StepLRPDesired || back.Steps[1]["since_ms"].(float64) != 2312.5 || back.Steps[1]["process_guid"] != proc {
		t.Fatalf("JSON step: %v", back.Steps[1])
	}
	partial := NewTimeline(helloRt, flowEvents("process")[:3])
	if strings.Join(partial.Missing, " ") != "container-created dnat-applied|dnat-not-in-process-mode envoy-listening actual-lrp-running route-registered route-added first-request" {
		t.Fatalf("missing %v", partial.Missing)
	}
}

func TestLocate(t *testing.T) {
	ns := fixtureTimeline("namespace").Request
	if !ns.First || ns.InstanceGUID != inst || ns.Endpoint != "10.244.0.11:61000" || ns.FoundBy != "first-request event" {
		t.Fatalf("namespace request: %+v", ns)
	}
	var comps []string
	for _, h := range ns.Hops {
		comps = append(comps, h.Component+"@"+h.Address)
	}
	if got := strings.Join(comps, " "); got != "router@127.0.0.1:8081 cell@10.244.0.11:61000 envoy@10.244.1.2:61001 app@127.0.0.1:8080" {
		t.Fatalf("hops %s", got)
	}

	// A later request: found by the app's answer, or as the only endpoint.
	tl := NewTimeline(helloRt, flowEvents("namespace"))
	req := &Request{Method: "GET", URL: "http://127.0.0.1:8081/", RequestID: "another", Status: 200}
	tl.Locate(req, []byte(`{"instance_guid":"`+inst+`"}`))
	if req.First || req.FoundBy != "app answer" || len(req.Hops) != 4 {
		t.Fatalf("later request: %+v", req)
	}
	req = &Request{Method: "GET", URL: "http://127.0.0.1:8081/", RequestID: "another", Status: 200}
	tl.Locate(req, []byte("hello"))
	if req.FoundBy != "only endpoint" {
		t.Fatalf("later request without an answer: %+v", req)
	}
	// Process mode: no DNAT hop, envoy on loopback.
	pm := fixtureTimeline("process").Request
	if len(pm.Hops) != 4 || pm.Hops[1].Address != "127.0.0.1:61001" || !strings.Contains(pm.Hops[1].Detail, "no DNAT") {
		t.Fatalf("process mode hops %+v", pm.Hops)
	}
}

func TestTraceAgainstAPIAndRouter(t *testing.T) {
	// The first request the router serves for the route is the trace's own:
	// Trace waits for the first-request event that carries its id.
	r := NewRecorder(100)
	evs := flowEvents("namespace")
	for _, e := range evs[:len(evs)-1] {
		r.Add(e)
	}
	_, api := newTestServer(t, r, nil)
	router := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Host != helloRt || req.URL.Path != "/" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("X-Vcap-Request-Id", reqID)
		io.WriteString(w, `{"app":"hello"}`)
		go func() {
			time.Sleep(50 * time.Millisecond) // the event travels on NATS meanwhile
			r.Add(evs[len(evs)-1])
		}()
	}))
	defer router.Close()
	tl, err := Trace(context.Background(), TraceOptions{Route: "http://Hello.apps.localhost/", API: api.URL, Router: router.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Steps) != len(evs) || tl.Request == nil || !tl.Request.First || tl.Request.RequestID != reqID || tl.Request.Status != 200 {
		t.Fatalf("timeline %d steps, request %+v", len(tl.Steps), tl.Request)
	}
	// No router: the journey only. An API that is not there: an error.
	tl, err = Trace(context.Background(), TraceOptions{Route: helloRt, API: api.URL})
	if err != nil || tl.Request != nil {
		t.Fatalf("without a router: %v %+v", err, tl.Request)
	}
	if _, err := Trace(context.Background(), TraceOptions{Route: helloRt, API: "http://127.0.0.1:1"}); err == nil {
		t.Fatal("no error without an API")
	}
}

func TestClientStream(t *testing.T) {
	r := NewRecorder(100)
	_, api := newTestServer(t, r, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- (&Client{URL: api.URL}).Stream(ctx, Query{Route: helloRt}, func(e Event) error {
			got <- e
			return nil
		})
	}()
	waitFor(t, "the stream", func() bool { return r.Subscribers() == 1 })
	r.Add(flowEvents("namespace")[0])
	select {
	case e := <-got:
		if e.Step != StepRouteMapped {
			t.Fatalf("streamed %s", e.Step)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event streamed")
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Stream ended with %v", err)
	}
}

func TestTraceRouteMappedToARunningApp(t *testing.T) {
	// map-route on a running app: the journey is mapping, LRP update and
	// registration; the path back still shows DNAT and envoy, from the
	// instance's own (older) events.
	r := NewRecorder(100)
	for _, e := range flowEvents("namespace") {
		r.Add(e)
	}
	const second, id2 = "second.apps.localhost", "7d1e2f3a-0000-4000-8000-000000000002"
	for _, e := range []Event{
		{Time: at(9000), Step: StepRouteMapped, Component: "cc", Route: second, AppGUID: app, Detail: "route second.apps.localhost mapped"},
		{Time: at(9002.5), Step: StepLRPUpdated, Component: "bbs", ProcessGUID: proc, AppGUID: app, Detail: "DesiredLRP updated (routes)",
			Artifact: raw(`{"routes":{"cf-router":[{"hostnames":["hello.apps.localhost"],"port":8080},{"hostnames":["second.apps.localhost"],"port":8080}]}}`)},
		{Time: at(9004), Step: StepRouteRegistered, Component: "route-emitter", Route: second, AppGUID: app, InstanceGUID: inst, CellID: "cell-1",
			Artifact: raw(`{"host":"10.244.0.11","tls_port":61000,"uris":["second.apps.localhost"]}`)},
		{Time: at(9005), Step: StepRouteAdded, Component: "router", Route: second, AppGUID: app, InstanceGUID: inst,
			Artifact: raw(`{"address":"10.244.0.11:61000","tls":true,"private_instance_id":"` + inst + `","server_cert_domain_san":"` + inst + `"}`)},
		{Time: at(9100), Step: StepFirstRequest, Component: "router", Route: second, AppGUID: app, InstanceGUID: inst,
			Artifact: raw(`{"request_id":"` + id2 + `","endpoint":"10.244.0.11:61000","status":200}`)},
	} {
		r.Add(e)
	}
	_, api := newTestServer(t, r, nil)
	router := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("X-Vcap-Request-Id", id2)
		io.WriteString(w, "hello")
	}))
	defer router.Close()
	tl, err := Trace(context.Background(), TraceOptions{Route: second, API: api.URL, Router: router.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Missing) != 0 || tl.Note == "" || len(tl.Steps) != 5 {
		t.Fatalf("missing %v, note %q, %d steps", tl.Missing, tl.Note, len(tl.Steps))
	}
	if len(tl.Request.Hops) != 4 || tl.Request.Hops[1].Component != "cell" || tl.Request.Hops[2].Component != "envoy" {
		t.Fatalf("hops %+v", tl.Request.Hops)
	}
	// The fake router's address and timing vary: the golden file has fixed ones.
	tl.Request.URL, tl.Request.DurationMs = "http://127.0.0.1:8081/", 1.5
	tl.Request.Hops[0].Address = "127.0.0.1:8081"
	var b bytes.Buffer
	tl.Render(&b)
	golden(t, "timeline-second-route.golden", b.Bytes())
}
