package trace

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestRecorderRingKeepsTheLatest(t *testing.T) {
	r := NewRecorder(3)
	for i := 0; i < 5; i++ {
		r.Add(Event{Time: at(float64(i)), Step: StepRouteAdded, Route: "r", Detail: string(rune('a' + i))})
	}
	if r.Len() != 3 || r.Capacity() != 3 {
		t.Fatalf("Len %d Capacity %d, want 3 and 3", r.Len(), r.Capacity())
	}
	var got []string
	for _, e := range r.Events() {
		got = append(got, e.Detail)
	}
	if !slices.Equal(got, []string{"c", "d", "e"}) {
		t.Fatalf("ring holds %v, want the latest three [c d e]", got)
	}
	if NewRecorder(0).Capacity() != DefaultCapacity {
		t.Fatalf("default capacity is not %d", DefaultCapacity)
	}
}

func TestRecorderOrdersByTimeNotArrival(t *testing.T) {
	r := NewRecorder(10)
	evs := flowEvents("namespace")
	shuffled := slices.Clone(evs)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, e := range shuffled {
		r.Add(e)
	}
	if got, want := steps(r.Route(helloRt)), steps(evs); !slices.Equal(got, want) {
		t.Fatalf("journey\n got %v\nwant %v", got, want)
	}
}

func TestJoinRouteThroughProcessAndInstance(t *testing.T) {
	for _, mode := range []string{"namespace", "process"} {
		t.Run(mode, func(t *testing.T) {
			evs := flowEvents(mode)
			all := append(noise(), evs...)
			got := Join(stamp(all), Query{Route: "HELLO.apps.localhost/"})
			if g, w := len(got), len(evs); g != w {
				t.Fatalf("joined %d events, want %d: %v", g, w, got)
			}
			for i := range got {
				if got[i].Step != evs[i].Step || !got[i].Time.Equal(evs[i].Time) {
					t.Fatalf("event %d is %s, want %s", i, got[i].Step, evs[i].Step)
				}
			}
			// Every step of flow 1 is there, in flow order.
			last := 0
			for _, e := range got {
				o := StepOrder(e.Step)
				if o == 0 || o < last {
					t.Fatalf("%s (order %d) after order %d", e.Step, o, last)
				}
				last = o
			}
			if last != len(Flow) {
				t.Fatalf("journey ends at step %d, want %d", last, len(Flow))
			}
		})
	}
}

func TestJoinWithoutRegistrationStillFindsTheLRP(t *testing.T) {
	// Before the instance runs, the route is known only to the CC and, in
	// its routes, the DesiredLRP; the rest joins through the process guid.
	evs := flowEvents("namespace")[:5]
	got := Join(stamp(append(noise(), evs...)), Query{Route: helloRt})
	if want := steps(evs); !slices.Equal(steps(plain(got)), want) {
		t.Fatalf("joined %v, want %v", steps(plain(got)), want)
	}
}

func TestJoinStartsAtTheLatestMapping(t *testing.T) {
	// A second route mapped to the running app: its journey is the mapping,
	// the LRP update and the registration, not the instance's history.
	evs := flowEvents("namespace")
	second := []Event{
		{Time: at(9000), Step: StepRouteMapped, Component: "cc", Route: "second.apps.localhost", AppGUID: app},
		{Time: at(9010), Step: StepLRPUpdated, Component: "bbs", ProcessGUID: proc, AppGUID: app,
			Artifact: raw(`{"routes":{"cf-router":[{"hostnames":["hello.apps.localhost"]},{"hostnames":["second.apps.localhost"]}]}}`)},
		{Time: at(9020), Step: StepRouteRegistered, Component: "route-emitter", Route: "second.apps.localhost", InstanceGUID: inst},
		{Time: at(9021), Step: StepRouteAdded, Component: "router", Route: "second.apps.localhost", InstanceGUID: inst},
	}
	// An older mapping of the same name, to another app, before.
	old := Event{Time: at(-5000), Step: StepRouteMapped, Component: "cc", Route: "second.apps.localhost", AppGUID: "gone"}
	got := plain(Join(stamp(append(append([]Event{old}, evs...), second...)), Query{Route: "second.apps.localhost"}))
	if want := steps(second); !slices.Equal(steps(got), want) {
		t.Fatalf("journey of the second route %v, want %v", steps(got), want)
	}
	// The first route's journey still has everything of its own (and the
	// update, which concerns its process).
	first := plain(Join(stamp(append(evs, second...)), Query{Route: helloRt}))
	if len(first) != len(evs)+1 || first[len(first)-1].Step != StepLRPUpdated {
		t.Fatalf("first route's journey: %v", steps(first))
	}
}

func TestQueryByProcessInstanceAndApp(t *testing.T) {
	r := NewRecorder(100)
	for _, e := range append(noise(), flowEvents("namespace")...) {
		r.Add(e)
	}
	byProc := r.Query(Query{ProcessGUID: proc})
	// lrp-desired, instance-placed, then every instance event; the route
	// events carry the instance guid.
	if len(byProc) != 9 {
		t.Fatalf("process query: %v", steps(byProc))
	}
	byInst := r.Query(Query{InstanceGUID: inst})
	if byInst[0].Step != StepLRPDesired || slices.Contains(steps(byInst), StepInstancePlaced) || slices.Contains(steps(byInst), StepRouteMapped) {
		t.Fatalf("instance query: %v", steps(byInst))
	}
	if len(byInst) != 8 {
		t.Fatalf("instance query has %d events: %v", len(byInst), steps(byInst))
	}
	byApp := r.Query(Query{AppGUID: app})
	if len(byApp) != 10 {
		t.Fatalf("app query: %v", steps(byApp))
	}
	if n := len(r.Query(Query{})); n != 15 {
		t.Fatalf("empty query gives %d events, want all 15", n)
	}
	if n := len(r.Query(Query{Route: "nothing.apps.localhost"})); n != 0 {
		t.Fatalf("unknown route gives %d events", n)
	}
}

func TestRecorderHandleMessage(t *testing.T) {
	r := NewRecorder(10)
	good, _ := json.Marshal(Event{Time: base, Step: StepRouteAdded, Component: "router", Route: "A.apps.localhost"})
	for _, bad := range [][]byte{[]byte("{"), []byte(`{"step":"x"}`), []byte(`{"time":"2025-03-04T10:00:00Z"}`), make([]byte, MaxMessageBytes+1)} {
		if err := r.HandleMessage(bad); err == nil {
			t.Fatalf("accepted %.40q", bad)
		}
	}
	if err := r.HandleMessage(good); err != nil {
		t.Fatal(err)
	}
	if r.Len() != 1 || r.Invalid() != 4 {
		t.Fatalf("Len %d Invalid %d, want 1 and 4", r.Len(), r.Invalid())
	}
	if got := r.Events()[0].Route; got != "a.apps.localhost" {
		t.Fatalf("route recorded as %q, want it normalised", got)
	}
}

func TestSubscriptionAndFollower(t *testing.T) {
	r := NewRecorder(100)
	evs := flowEvents("namespace")
	for _, e := range evs[:3] {
		r.Add(e)
	}
	sub := r.Subscribe(2)
	defer sub.Close()
	f := NewFollower(Query{Route: helloRt}, r.snapshot())
	for _, e := range append(noise(), evs[3:]...) {
		r.Add(e)
	}
	// The subscriber is slow: it holds two and missed the rest.
	if sub.Dropped() != int64(len(noise())+len(evs)-3-2) {
		t.Fatalf("dropped %d", sub.Dropped())
	}
	// The follower joins live events through the keys it learns.
	f = NewFollower(Query{Route: helloRt}, stamp(evs[:3]))
	var got []string
	for _, e := range append(noise(), evs[3:]...) {
		if f.Match(e) {
			got = append(got, e.Step)
		}
	}
	if want := steps(evs[3:]); !slices.Equal(got, want) {
		t.Fatalf("followed %v, want %v", got, want)
	}
	sub.Close()
	if r.Subscribers() != 0 {
		t.Fatal("subscription still registered after Close")
	}
}

func TestNormalizeRoute(t *testing.T) {
	for in, want := range map[string]string{
		"Hello.Apps.Localhost":                    "hello.apps.localhost",
		"http://hello.apps.localhost:8081/":       "hello.apps.localhost",
		"hello.apps.localhost/Path/?q=1":          "hello.apps.localhost/path",
		"https://hello.apps.localhost/a/b":        "hello.apps.localhost/a/b",
		"  hello.apps.localhost  ":                "hello.apps.localhost",
		"hello.apps.localhost:8081/x/":            "hello.apps.localhost/x",
		"":                                        "",
		"*.apps.localhost":                        "*.apps.localhost",
		"hello.apps.localhost/with:colon-in-path": "hello.apps.localhost/with:colon-in-path",
	} {
		if got := NormalizeRoute(in); got != want {
			t.Errorf("NormalizeRoute(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFlowIsComplete(t *testing.T) {
	seen := map[string]bool{}
	for i, f := range Flow {
		if f.Order != i+1 {
			t.Fatalf("Flow[%d].Order = %d", i, f.Order)
		}
		for _, s := range f.Steps {
			if seen[s] {
				t.Fatalf("%s twice", s)
			}
			seen[s] = true
		}
	}
	for _, s := range []string{StepRouteMapped, StepLRPDesired, StepLRPUpdated, StepInstancePlaced, StepContainerCreated,
		StepDNATApplied, StepDNATNotInProcessMode, StepEnvoyListening, StepActualLRPRunning, StepRouteRegistered,
		StepRouteAdded, StepFirstRequest} {
		if !seen[s] {
			t.Fatalf("%s missing from Flow", s)
		}
	}
}
