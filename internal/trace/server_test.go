package trace

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newTestServer(t *testing.T, r *Recorder, state StateFunc) (*Server, *httptest.Server) {
	t.Helper()
	s := NewServer(ServerConfig{Recorder: r, State: state, MaxStreams: 2, Dropped: func() int64 { return 7 }})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Stop(context.Background())
		ts.Close()
	})
	return s, ts
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q", url, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return resp.StatusCode
}

func TestAPIEvents(t *testing.T) {
	r := NewRecorder(100)
	for _, e := range append(flowEvents("namespace"), noise()...) {
		r.Add(e)
	}
	_, ts := newTestServer(t, r, nil)
	var got []Event
	if code := getJSON(t, ts.URL+"/api/events?route=hello.apps.localhost", &got); code != 200 {
		t.Fatalf("status %d", code)
	}
	if want := steps(flowEvents("namespace")); strings.Join(steps(got), " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", steps(got), want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Time.Before(got[i-1].Time) {
			t.Fatal("events are not ordered by time")
		}
	}
	var inst []Event
	getJSON(t, ts.URL+"/api/events?instance="+inst0(), &inst)
	if len(inst) != 8 {
		t.Fatalf("instance query gave %d events", len(inst))
	}
	var latest []Event
	getJSON(t, ts.URL+"/api/events?limit=2", &latest)
	if len(latest) != 2 || latest[1].Step != StepFirstRequest {
		t.Fatalf("limit=2 gave %v", steps(latest))
	}
	var none []Event
	getJSON(t, ts.URL+"/api/events?route=nothing.apps.localhost", &none)
	if none == nil || len(none) != 0 {
		t.Fatalf("an unknown route gives %v, want []", none)
	}
	var e map[string]string
	if code := getJSON(t, ts.URL+"/api/events?route="+strings.Repeat("a", 2000), &e); code != 400 {
		t.Fatalf("an overlong route gives %d, want 400", code)
	}
	if code := getJSON(t, ts.URL+"/api/nothing", &e); code != 404 {
		t.Fatalf("an unknown endpoint gives %d, want 404", code)
	}
}

func inst0() string { return inst }

func TestAPIState(t *testing.T) {
	r := NewRecorder(10)
	r.Add(flowEvents("process")[0])
	_, ts := newTestServer(t, r, func(ctx context.Context) (map[string]any, error) {
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("no deadline")
		}
		return map[string]any{"routes": map[string]any{"hello.apps.localhost": []any{}}, "cells": []string{"cell-1"}},
			errors.New("actual LRPs: BBS unavailable")
	})
	var st map[string]json.RawMessage
	getJSON(t, ts.URL+"/api/state", &st)
	for _, k := range []string{"routes", "cells", "recorder", "error"} {
		if _, ok := st[k]; !ok {
			t.Fatalf("state lacks %q: %v", k, st)
		}
	}
	var rec map[string]int
	json.Unmarshal(st["recorder"], &rec)
	if rec["events"] != 1 || rec["capacity"] != 10 || rec["dropped"] != 7 {
		t.Fatalf("recorder numbers %v", rec)
	}
	var flow []StepInfo
	getJSON(t, ts.URL+"/api/steps", &flow)
	if len(flow) != len(Flow) || flow[0].Steps[0] != StepRouteMapped {
		t.Fatalf("steps %v", flow)
	}
}

// sse reads Server-Sent Events from url into a channel.
func sse(t *testing.T, ctx context.Context, url string) (<-chan Event, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan Event, 100)
	if resp.StatusCode != 200 {
		return ch, resp
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var event, id string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = line[7:]
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				var e Event
				if event == "trace" && id != "" && json.Unmarshal([]byte(line[6:]), &e) == nil {
					ch <- e
				}
			}
		}
	}()
	return ch, resp
}

func TestAPIStream(t *testing.T) {
	r := NewRecorder(100)
	evs := flowEvents("namespace")
	for _, e := range evs[:2] { // the journey so far: mapped and desired
		r.Add(e)
	}
	s, ts := newTestServer(t, r, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	filtered, _ := sse(t, ctx, ts.URL+"/api/stream?route=hello.apps.localhost")
	all, _ := sse(t, ctx, ts.URL+"/api/stream")
	waitFor(t, "two streams", func() bool { return r.Subscribers() == 2 })
	// A third stream is one too many.
	_, resp := sse(t, ctx, ts.URL+"/api/stream")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a third stream got %d, want 503", resp.StatusCode)
	}
	resp.Body.Close()

	for _, e := range append(noise(), evs[2:]...) {
		r.Add(e)
	}
	want := steps(evs[2:])
	for i, w := range want {
		select {
		case e := <-filtered:
			if e.Step != w {
				t.Fatalf("filtered stream event %d is %s, want %s", i, e.Step, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("filtered stream: no event %d (%s)", i, w)
		}
	}
	n := 0
	for n < len(noise())+len(want) {
		select {
		case <-all:
			n++
		case <-time.After(5 * time.Second):
			t.Fatalf("unfiltered stream: %d events, want %d", n, len(noise())+len(want))
		}
	}
	// Stop ends the streams.
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	s.Stop(sctx)
	waitFor(t, "streams to end", func() bool { return r.Subscribers() == 0 })
}

func TestServerListens(t *testing.T) {
	s := NewServer(ServerConfig{Listen: "127.0.0.1:0"})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	var flow []StepInfo
	getJSON(t, s.URL()+"/api/steps", &flow)
	if len(flow) != len(Flow) {
		t.Fatalf("steps %v", flow)
	}
	busy := NewServer(ServerConfig{Listen: s.Addr()})
	if err := busy.Start(); err == nil || !strings.Contains(err.Error(), s.Addr()) {
		t.Fatalf("a second server on %s: %v", s.Addr(), err)
	}
}
