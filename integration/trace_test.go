package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/trace"
)

// Issue 7: after a push on a running foundation, `minicf trace` shows
// every step of flow 1 in order, with durations that add up, and artifacts
// that match what the components hold.

func TestTrace_PushThenTraceInProcessMode(t *testing.T) {
	requireTraceVerb(t)
	f := startFoundation(t, "process")
	runTrace(t, f, nil)
}

func TestTrace_PushThenTraceInNamespaceMode(t *testing.T) {
	harness.RequireNetns(t) // CI=true fails here rather than skip when not root
	requireTraceVerb(t)
	nw := claimNetns(t)
	f := startFoundation(t, "namespace", "--prefix", nw.Prefix, "--network-range", nw.Range.String())
	runTrace(t, f, nw)
}

// requireTraceVerb fails at once when the binary has no trace verb.
func requireTraceVerb(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(suite.Bin, "trace", "--help").CombinedOutput(); err != nil {
		t.Fatalf("minicf has no trace verb (cmd/minicf/main.go must add traceCommand() to the root command): %v\n%s", err, out)
	}
}

// stdout runs a minicf verb against the foundation and returns its
// standard output alone.
func (f *foundationProc) stdout(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(suite.Bin, args...)
	cmd.Env = append(harness.ChildEnv(), "MINICF_HOME="+f.home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("minicf %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

func runTrace(t *testing.T, f *foundationProc, nw *garden.Network) {
	if !strings.Contains(f.up.Logs(), "trace:      http://"+f.trace) {
		t.Fatalf("minicf up does not print the trace API %s in its info block", f.trace)
	}
	if out := f.cli(t, "push", "hello", "-p", examplesDir(t)); !strings.Contains(out, "hello.apps.localhost") {
		t.Fatalf("push output:\n%s", out)
	}
	const route = "hello.apps.localhost"
	var tl trace.Timeline
	raw := f.stdout(t, "trace", route, "--json")
	if err := json.Unmarshal(raw, &tl); err != nil {
		t.Fatalf("minicf trace --json: %v\n%s", err, raw)
	}
	t.Logf("minicf trace %s --json: %d steps in %.1f ms", route, len(tl.Steps), tl.TotalMs)

	// Every step of flow 1, in order: the first event of each place of
	// the flow comes after the first event of the place before.
	if len(tl.Missing) > 0 {
		t.Fatalf("steps missing from the trace: %v\n%s", tl.Missing, raw)
	}
	first := map[int]int{}
	for i, s := range tl.Steps {
		o := trace.StepOrder(s.Step)
		if o == 0 {
			t.Fatalf("unknown step %q", s.Step)
		}
		if _, ok := first[o]; !ok {
			first[o] = i
		}
	}
	for o := 2; o <= len(trace.Flow); o++ {
		if first[o] < first[o-1] {
			t.Fatalf("%s (step %d) comes before %s (step %d)", tl.Steps[first[o]].Step, first[o], tl.Steps[first[o-1]].Step, first[o-1])
		}
	}
	wantDNAT, otherDNAT := trace.StepDNATNotInProcessMode, trace.StepDNATApplied
	if nw != nil {
		wantDNAT, otherDNAT = otherDNAT, wantDNAT
	}
	if step(tl, wantDNAT) == nil || step(tl, otherDNAT) != nil {
		t.Fatalf("want %s and no %s in this mode", wantDNAT, otherDNAT)
	}

	// Durations add up: each delta is the difference of consecutive times.
	var sum int64
	for i, s := range tl.Steps {
		if i > 0 && (s.Time.Before(tl.Steps[i-1].Time) || s.DeltaNs != s.SinceNs-tl.Steps[i-1].SinceNs) {
			t.Fatalf("step %d (%s): delta %d ns, since %d ns after %d ns", i, s.Step, s.DeltaNs, s.SinceNs, tl.Steps[i-1].SinceNs)
		}
		if s.SinceNs != s.Time.Sub(tl.Steps[0].Time).Nanoseconds() {
			t.Fatalf("step %d (%s): since %d ns is not its time since the first step", i, s.Step, s.SinceNs)
		}
		sum += s.DeltaNs
	}
	if last := tl.Steps[len(tl.Steps)-1]; sum != last.SinceNs {
		t.Fatalf("deltas add up to %d ns, the last step is at %d ns", sum, last.SinceNs)
	}

	// route-registered is what the router holds in its /routes.
	reg := step(tl, trace.StepRouteRegistered)
	var msg struct {
		Host                string   `json:"host"`
		Port                uint16   `json:"port"`
		TLSPort             uint16   `json:"tls_port"`
		URIs                []string `json:"uris"`
		PrivateInstanceID   string   `json:"private_instance_id"`
		ServerCertDomainSAN string   `json:"server_cert_domain_san"`
	}
	if err := json.Unmarshal(reg.Artifact, &msg); err != nil || !slices.Contains(msg.URIs, route) {
		t.Fatalf("route-registered artifact %s: %v", reg.Artifact, err)
	}
	port := msg.Port
	if msg.TLSPort != 0 {
		port = msg.TLSPort
	}
	addr := net.JoinHostPort(msg.Host, strconv.Itoa(int(port)))
	type poolEntry struct {
		Address             string `json:"address"`
		TLS                 bool   `json:"tls"`
		PrivateInstanceID   string `json:"private_instance_id"`
		ServerCertDomainSAN string `json:"server_cert_domain_san"`
	}
	var routes map[string][]poolEntry
	getJSONInto(t, "http://"+f.status+"/routes", &routes)
	var held *poolEntry
	for i, e := range routes[route] {
		if e.Address == addr {
			held = &routes[route][i]
		}
	}
	if held == nil {
		t.Fatalf("the router's /routes has no %s for %s: %+v", addr, route, routes[route])
	}
	if held.TLS != (msg.TLSPort != 0) || held.ServerCertDomainSAN != msg.ServerCertDomainSAN || held.PrivateInstanceID != msg.PrivateInstanceID {
		t.Fatalf("router.register %s\ndoes not match the router's pool entry %+v", reg.Artifact, *held)
	}
	var added poolEntry
	json.Unmarshal(step(tl, trace.StepRouteAdded).Artifact, &added)
	if added != *held {
		t.Fatalf("route-added artifact %+v, the router holds %+v", added, *held)
	}

	// lrp-desired carries the routes the BBS holds.
	desired := step(tl, trace.StepLRPDesired)
	if desired == nil {
		desired = step(tl, trace.StepLRPUpdated)
	}
	var lrp struct {
		ProcessGUID string `json:"process_guid"`
		Routes      any    `json:"routes"`
	}
	json.Unmarshal(desired.Artifact, &lrp)
	var bbsRoutes any
	found := false
	for _, line := range lines(f.stdout(t, "cfdot", "desired-lrps", "--bbs", "https://"+f.bbs)) {
		var d struct {
			ProcessGUID string `json:"process_guid"`
			Routes      any    `json:"routes"`
		}
		if json.Unmarshal(line, &d) == nil && d.ProcessGUID == lrp.ProcessGUID {
			bbsRoutes, found = d.Routes, true
		}
	}
	if !found || !reflect.DeepEqual(bbsRoutes, lrp.Routes) {
		t.Fatalf("lrp-desired routes %v, cfdot desired-lrps for %s: %v (found %v)", lrp.Routes, lrp.ProcessGUID, bbsRoutes, found)
	}

	// actual-lrp-running is the ActualLRP the BBS holds.
	running := step(tl, trace.StepActualLRPRunning)
	type actualLRP struct {
		InstanceGUID    string `json:"instance_guid"`
		Address         string `json:"address"`
		InstanceAddress string `json:"instance_address"`
		State           string `json:"state"`
	}
	var actual actualLRP
	json.Unmarshal(running.Artifact, &actual)
	found = false
	for _, line := range lines(f.stdout(t, "cfdot", "actual-lrps", "--bbs", "https://"+f.bbs, "--process-guid", running.ProcessGUID)) {
		var held actualLRP
		if json.Unmarshal(line, &held) == nil && held == actual && held.State == "RUNNING" {
			found = true
		}
	}
	if !found || actual.Address != msg.Host {
		t.Fatalf("actual-lrp-running %s is not what cfdot actual-lrps shows, or not where the route points (%s)", running.Artifact, msg.Host)
	}

	// The request through the router and its way back.
	req := tl.Request
	if req == nil || req.Status != http.StatusOK || req.RequestID == "" || req.InstanceGUID != msg.PrivateInstanceID {
		t.Fatalf("request %+v", req)
	}
	var fr struct {
		RequestID string `json:"request_id"`
	}
	json.Unmarshal(step(tl, trace.StepFirstRequest).Artifact, &fr)
	if req.First != (fr.RequestID == req.RequestID) || fr.RequestID == "" {
		t.Fatalf("first-request %s, the trace's request %s (first %v)", fr.RequestID, req.RequestID, req.First)
	}
	var hops []string
	for _, h := range req.Hops {
		hops = append(hops, h.Component)
	}
	if got := strings.Join(hops, " "); got != "router cell envoy app" {
		t.Fatalf("request path %q, want router cell envoy app: %+v", got, req.Hops)
	}

	if nw != nil {
		checkDNAT(t, tl, nw)
	}

	// The same for people.
	text := string(f.stdout(t, "trace", route))
	for _, f := range trace.Flow {
		if !strings.Contains(text, f.Steps[0]) && (len(f.Steps) < 2 || !strings.Contains(text, f.Steps[1])) {
			t.Fatalf("minicf trace does not show %v:\n%s", f.Steps, text)
		}
	}
	if !strings.Contains(text, "X-Vcap-Request-Id ") {
		t.Fatalf("minicf trace shows no request id:\n%s", text)
	}
	t.Logf("minicf trace %s:\n%s", route, text)

	f.up.Signal(t, syscall.SIGTERM)
	if !f.up.WaitExit(2 * time.Minute) {
		t.Fatal("minicf up did not stop within 2 minutes of SIGTERM")
	}
}

// checkDNAT compares the dnat-applied artifact with the cell's nat table.
func checkDNAT(t *testing.T, tl trace.Timeline, nw *garden.Network) {
	t.Helper()
	s := step(tl, trace.StepDNATApplied)
	var a trace.DNATArtifact
	if err := json.Unmarshal(s.Artifact, &a); err != nil || len(a.Rules) < 2 {
		t.Fatalf("dnat-applied artifact %s: %v", s.Artifact, err)
	}
	cell, err := strconv.Atoi(strings.TrimPrefix(s.CellID, "cell-"))
	if err != nil {
		t.Fatalf("cell id %q", s.CellID)
	}
	if a.Namespace != nw.CellNS(cell) || a.Table != "nat" {
		t.Fatalf("dnat-applied names %s table %s, want %s nat", a.Namespace, a.Table, nw.CellNS(cell))
	}
	out, err := exec.Command("ip", "netns", "exec", nw.CellNS(cell), "iptables", "-t", "nat", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -t nat -S in %s: %v\n%s", nw.CellNS(cell), err, out)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, r := range a.Rules {
		if !have[r] {
			t.Fatalf("rule %q of the trace is not in %s's nat table:\n%s", r, nw.CellNS(cell), out)
		}
	}
	if !have["-N "+a.Chain] {
		t.Fatalf("chain %s is not in %s's nat table:\n%s", a.Chain, nw.CellNS(cell), out)
	}
}

func step(tl trace.Timeline, name string) *trace.Step {
	for i := range tl.Steps {
		if tl.Steps[i].Step == name {
			return &tl.Steps[i]
		}
	}
	return nil
}

func lines(b []byte) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	return out
}

func getJSONInto(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
}
