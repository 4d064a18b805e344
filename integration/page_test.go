package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/minicf/minicf/internal/testutil"
	"github.com/minicf/minicf/internal/trace"
)

// Issue 7, the page: `minicf up` serves a flow page at the trace address.
// With the page open in headless Chromium, push the example app: the page
// shows every step of flow 1 for its route as it happens, in order, the
// router's route table and the cells' instances.

// chromiumPath is Debian's chromium (a var, so -ldflags -X can point elsewhere).
var chromiumPath = "/usr/bin/chromium"

// requireChromium skips without Chromium, and fails with CI=true: .ci/run
// installs it.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return
	}
	msg := chromiumPath + " is missing: install Debian's chromium package " +
		"(DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)"
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true and " + msg + "; .ci/run must install chromium (its APT_PACKAGES list)")
	}
	t.Skip(msg)
}

// browser is a headless Chromium tab, and what the page did in it.
type browser struct {
	ctx context.Context

	mu       sync.Mutex
	requests []string // every URL the page asked for
	console  []string // console errors and uncaught exceptions
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	requireChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1600, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{ctx: ctx}
	// Start the browser and its tab before anything listens: Listen and
	// Console would each start one otherwise.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("cannot start %s: %v", chromiumPath, err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && e.Request != nil {
			b.mu.Lock()
			b.requests = append(b.requests, e.Request.URL)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				b.mu.Lock()
				b.console = append(b.console, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *browser) do(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// eval runs js in the page and decodes its value into T.
func eval[T any](b *browser, js string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js))
}

// pageView is what the page shows, read from its DOM.
type pageView struct {
	Route      string   `json:"route"`
	Live       string   `json:"live"`
	LiveEvents string   `json:"liveEvents"`
	Steps      []string `json:"steps"`
	Pending    []string `json:"pending"`
	Lit        []string `json:"lit"`
	Labels     []string `json:"labels"`
	Routes     []struct {
		Route     string   `json:"route"`
		Addresses []string `json:"addresses"`
	} `json:"routes"`
	Instances []pageInstance `json:"instances"`
}

// pageInstance is an ActualLRP in the page's cells list.
type pageInstance struct {
	GUID  string `json:"guid"`
	State string `json:"state"`
	Cell  string `json:"cell"`
	Text  string `json:"text"`
}

const readPage = `(() => {
  const all = (sel) => Array.from(document.querySelectorAll(sel));
  return {
    route: document.getElementById('journey').dataset.route || '',
    live: document.getElementById('live').dataset.state || '',
    liveEvents: document.body.dataset.liveEvents || '0',
    steps: all('#steps [data-step]').map((e) => e.dataset.step),
    pending: all('#steps [data-pending]').map((e) => e.dataset.pending),
    lit: all('#d-boxes .box.done').map((e) => e.dataset.box),
    labels: all('#d-labels .label.has-text').map((e) => e.dataset.order + ' ' + e.textContent),
    routes: all('#route-table [data-route]').map((e) => ({
      route: e.dataset.route,
      addresses: Array.from(e.querySelectorAll('[data-address]')).map((a) => a.dataset.address),
    })),
    instances: all('#cells [data-instance-guid]').map((e) => ({
      guid: e.dataset.instanceGuid, state: e.dataset.state,
      cell: (e.closest('[data-cell]') || {dataset: {}}).dataset.cell || '', text: e.textContent,
    })),
  };
})()`

func TestPage_ShowsAPushLiveInProcessMode(t *testing.T) {
	b := newBrowser(t) // skips (or fails with CI=true) before starting anything
	f := startFoundation(t, "process")
	const route = "hello.apps.localhost"
	base := "http://" + f.trace

	start := time.Now()
	b.do(t, chromedp.Navigate(base+"/"))
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		v, err := eval[pageView](b, readPage)
		if err != nil {
			return err
		}
		if v.Live != "live" {
			return fmt.Errorf("the page's stream is %q, not live", v.Live)
		}
		return nil
	})
	t.Logf("page open and live in %v", time.Since(start).Round(time.Millisecond))

	// Push while the page is open; requests through the router make the
	// first-request steps.
	pushed := time.Now()
	if out := f.cli(t, "push", "hello", "-p", examplesDir(t), "-i", "2"); !strings.Contains(out, route) {
		t.Fatalf("push output:\n%s", out)
	}
	t.Logf("push took %v", time.Since(pushed).Round(time.Millisecond))
	f.waitStatus(t, route, 200, 30*time.Second)
	for range 4 {
		f.get(route)
	}

	// The page shows the journey the API holds: every step of flow 1, in
	// order, the route table and the instances.
	var v pageView
	var api []trace.Event
	testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		var err error
		if v, err = eval[pageView](b, readPage); err != nil {
			return err
		}
		if v.Route != route {
			return fmt.Errorf("the page follows %q, want the pushed %s", v.Route, route)
		}
		api = nil
		getJSONInto(t, base+"/api/events?route="+route, &api)
		if err := sameSteps(v.Steps, api); err != nil {
			return err
		}
		if err := flowInOrder(v.Steps, false); err != nil {
			return err
		}
		if len(v.Pending) > 0 {
			return fmt.Errorf("the page still waits for %v", v.Pending)
		}
		return nil
	})
	t.Logf("the page shows all %d events of %s %v after the push began: %v", len(v.Steps), route,
		time.Since(pushed).Round(time.Millisecond), v.Steps)
	if v.LiveEvents == "0" || v.LiveEvents == "" {
		t.Errorf("no event reached the page by /api/stream (all came from the history)")
	}

	// The diagram: every box of flow 1 lit, every hop labelled.
	for _, box := range []string{"cli", "cc", "bbs", "auctioneer", "rep", "garden", "iptables", "envoy", "app", "emitter", "nats", "router", "user"} {
		if !slices.Contains(v.Lit, box) {
			t.Errorf("the diagram's %s box is not lit: lit %v", box, v.Lit)
		}
	}
	if len(v.Labels) != len(trace.Flow) {
		t.Errorf("the diagram labels %d hops, want %d: %q", len(v.Labels), len(trace.Flow), v.Labels)
	}

	// The route table is the router's.
	var routes map[string][]struct {
		Address string `json:"address"`
	}
	getJSONInto(t, "http://"+f.status+"/routes", &routes)
	var want []string
	for _, e := range routes[route] {
		want = append(want, e.Address)
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		var err error
		if v, err = eval[pageView](b, readPage); err != nil {
			return err
		}
		for _, r := range v.Routes {
			if r.Route == route {
				got := slices.Sorted(slices.Values(r.Addresses))
				if !slices.Equal(got, slices.Sorted(slices.Values(want))) || len(got) != 2 {
					return fmt.Errorf("the route table shows %s → %v, the router holds %v", route, got, want)
				}
				return nil
			}
		}
		return fmt.Errorf("the route table lacks %s: %+v", route, v.Routes)
	})

	// The cells show both instances, RUNNING, with their addresses and ports.
	var state struct {
		ActualLRPs []struct {
			InstanceGUID    string `json:"instance_guid"`
			CellID          string `json:"cell_id"`
			Address         string `json:"address"`
			InstanceAddress string `json:"instance_address"`
			State           string `json:"state"`
			Ports           []struct {
				HostPort         int `json:"host_port"`
				HostTLSProxyPort int `json:"host_tls_proxy_port"`
			} `json:"ports"`
		} `json:"actual_lrps"`
	}
	getJSONInto(t, base+"/api/state", &state)
	if len(state.ActualLRPs) != 2 {
		t.Fatalf("/api/state holds %d ActualLRPs, want 2", len(state.ActualLRPs))
	}
	for _, a := range state.ActualLRPs {
		i := slices.IndexFunc(v.Instances, func(x pageInstance) bool { return x.GUID == a.InstanceGUID })
		if i < 0 {
			t.Errorf("the cells list lacks instance %s: %+v", a.InstanceGUID, v.Instances)
			continue
		}
		got := v.Instances[i]
		if got.State != "RUNNING" || got.Cell != a.CellID {
			t.Errorf("instance %s shows as %s on %q, the BBS has %s on %s", a.InstanceGUID, got.State, got.Cell, a.State, a.CellID)
		}
		for _, s := range []string{a.Address, a.InstanceAddress, ":" + fmt.Sprint(a.Ports[0].HostPort), ":" + fmt.Sprint(a.Ports[0].HostTLSProxyPort)} {
			if s != ":0" && !strings.Contains(got.Text, s) {
				t.Errorf("instance %s shows %q, without %s", a.InstanceGUID, got.Text, s)
			}
		}
	}

	// Let the last animation end, then keep a picture of the page.
	b.do(t, chromedp.Sleep(2*time.Second))
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "page-screenshot.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the page after the push: %s (%d bytes)", path, len(png))
	if dir := os.Getenv("MINICF_SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "page-screenshot.png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot copied to %s", p)
	}

	// The page reached nothing but the trace address, and logged no error.
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range b.requests {
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the page requested %s, outside %s", u, base)
		}
	}
	if len(b.requests) == 0 {
		t.Error("no request of the page was seen")
	}
	for _, m := range b.console {
		t.Errorf("the page's console: %s", m)
	}
}

// sameSteps reports whether the page lists the same events as the API
// (the order is checked by flowInOrder: events of one instant may be
// listed either way).
func sameSteps(page []string, api []trace.Event) error {
	want := make([]string, len(api))
	for i, e := range api {
		want[i] = e.Step
	}
	got := slices.Clone(page)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("the page lists %v, the API %v", page, stepsOf(api))
	}
	return nil
}

func stepsOf(events []trace.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Step
	}
	return out
}

// flowInOrder checks that steps hold every place of flow 1, each first
// seen after the place before it, with the DNAT step of the mode.
func flowInOrder(steps []string, namespace bool) error {
	first := map[int]int{}
	for i, s := range steps {
		o := trace.StepOrder(s)
		if o == 0 {
			return fmt.Errorf("unknown step %q", s)
		}
		if _, ok := first[o]; !ok {
			first[o] = i
		}
	}
	for _, f := range trace.Flow {
		if _, ok := first[f.Order]; !ok {
			return fmt.Errorf("no %s yet: %v", strings.Join(f.Steps, " or "), steps)
		}
		if f.Order > 1 && first[f.Order] < first[f.Order-1] {
			return fmt.Errorf("%s comes before %s: %v", steps[first[f.Order]], steps[first[f.Order-1]], steps)
		}
	}
	want, other := trace.StepDNATNotInProcessMode, trace.StepDNATApplied
	if namespace {
		want, other = other, want
	}
	if !slices.Contains(steps, want) || slices.Contains(steps, other) {
		return fmt.Errorf("want %s and no %s in this mode: %v", want, other, steps)
	}
	return nil
}
