package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The test binary is also the command that probe runs: PROBE_TEST_HELPER
// says what it does.
func TestMain(m *testing.M) {
	if h := os.Getenv("PROBE_TEST_HELPER"); h != "" {
		os.Exit(helper(h))
	}
	os.Exit(m.Run())
}

// helper runs as the probed command:
//
//	exit:N            exit with status N
//	echo              print a line on stdout and one on stderr
//	wait:URL:N        poll URL (the server's probe count) until it is at least
//	                  N, so that the route's first answer predates the return
func helper(h string) int {
	verb, arg, _ := strings.Cut(h, ":")
	switch verb {
	case "exit":
		n, _ := strconv.Atoi(arg)
		return n
	case "echo":
		fmt.Println("out from the command")
		fmt.Fprintln(os.Stderr, "err from the command")
		return 0
	case "wait":
		i := strings.LastIndex(arg, ":")
		url, want := arg[:i], arg[i+1:]
		n, _ := strconv.Atoi(want)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if resp, err := http.Get(url); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if got, _ := strconv.Atoi(string(b)); got >= n {
					return 0
				}
			}
			time.Sleep(time.Millisecond)
		}
		fmt.Fprintln(os.Stderr, "helper: the server never saw", n, "probes")
		return 9
	}
	fmt.Fprintln(os.Stderr, "helper: unknown", h)
	return 8
}

// route is a router stand-in whose answer the test switches.
type route struct {
	srv    *httptest.Server
	status atomic.Int32
	body   atomic.Pointer[string]
	probes atomic.Int64
	hosts  atomic.Pointer[string] // the last probe's Host header
}

func newRoute(t *testing.T, status int, body string) *route {
	t.Helper()
	r := &route{}
	r.set(status, body)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/count" {
			fmt.Fprint(w, r.probes.Load())
			return
		}
		h := req.Host
		r.hosts.Store(&h)
		r.probes.Add(1)
		w.WriteHeader(int(r.status.Load()))
		io.WriteString(w, *r.body.Load())
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *route) set(status int, body string) {
	r.body.Store(&body)
	r.status.Store(int32(status))
}

func (r *route) addr() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// helperCmd is the argv of the test binary as a probed command.
func helperCmd(t *testing.T, what string) []string {
	t.Helper()
	t.Setenv("PROBE_TEST_HELPER", what)
	// A -race binary sleeps a second at exit by default.
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	return []string{os.Args[0], "-test.run=^$"}
}

// waitCmd returns once the route has answered one probe: the route's
// first answer is then known to come before the command's return.
func waitCmd(t *testing.T, r *route) []string {
	return helperCmd(t, "wait:"+r.srv.URL+"/count:1")
}

func testConfig(r *route, want int, args []string) *config {
	return &config{
		router: r.addr(), host: "m1.apps.localhost", path: "/", want: want,
		interval: time.Millisecond, intervalDuring: time.Millisecond,
		timeout: 10 * time.Second, requestTimeout: 2 * time.Second, args: args,
	}
}

// fields parses a result line into its key=value pairs.
func fields(t *testing.T, line string) map[string]string {
	t.Helper()
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "probe" {
		t.Fatalf("result line %q does not start with probe", line)
	}
	m := map[string]string{}
	for _, kv := range f[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("field %q of %q is not key=value", kv, line)
		}
		m[k] = v
	}
	return m
}

func TestWantedAfterReturn(t *testing.T) {
	r := newRoute(t, 404, "unknown route")
	cfg := testConfig(r, 200, waitCmd(t, r))
	cfg.onReturn = func() { r.set(200, "hello") }
	res, err := run(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !res.wantAt.After(res.returned) {
		t.Errorf("wanted at %v, not after the return at %v", res.wantAt, res.returned)
	}
	if res.firstStatus != 404 || res.probes < 2 || res.lastMissAt.IsZero() {
		t.Errorf("first status %d, %d probes, last miss %v: want 404, at least 2, set", res.firstStatus, res.probes, res.lastMissAt)
	}
	// Every probe over one keep-alive connection.
	if res.conns != 1 {
		t.Errorf("%d connections for %d probes, want 1", res.conns, res.probes)
	}
	if h := *r.hosts.Load(); h != "m1.apps.localhost" {
		t.Errorf("Host header %q, want m1.apps.localhost", h)
	}
	f := fields(t, res.line())
	if f["already"] != "0" || f["exit"] != "0" || f["want"] != "200" || f["first_status"] != "404" || f["window_ms"] == "-" || f["rtt_ms"] == "-" {
		t.Errorf("line %q: want already=0 exit=0 want=200 first_status=404 and a window", res.line())
	}
	window, _ := strconv.ParseFloat(f["window_ms"], 64)
	rtt, _ := strconv.ParseFloat(f["rtt_ms"], 64)
	if rtt <= 0 || rtt > window {
		t.Errorf("rtt_ms %v not within window_ms %v", rtt, window)
	}
	ret, _ := strconv.ParseFloat(f["return_to_want_ms"], 64)
	start, _ := strconv.ParseFloat(f["start_to_want_ms"], 64)
	wall, _ := strconv.ParseFloat(f["wall_ms"], 64)
	if ret < 0 || start < wall || start-wall-ret > 0.002 || start-wall-ret < -0.002 {
		t.Errorf("start_to_want %v != wall %v + return_to_want %v", start, wall, ret)
	}
	// The server also saw the baseline probe sent before the command.
	if n := int64(res.probes) + 1; n != r.probes.Load() {
		t.Errorf("probe counted %d probes and a baseline, the server saw %d", res.probes, r.probes.Load())
	}
}

func TestAlreadyThere(t *testing.T) {
	r := newRoute(t, 200, "hello")
	res, err := run(context.Background(), testConfig(r, 200, waitCmd(t, r)), io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f := fields(t, res.line())
	if f["already"] != "1" || f["return_to_want_ms"] != "0.000" || f["first_status"] != "200" || f["window_ms"] != "-" || f["probes"] != "1" {
		t.Errorf("line %q: want already=1 return_to_want_ms=0.000 first_status=200 window_ms=- probes=1", res.line())
	}
	// Probing stops at the wanted answer, even while the command runs:
	// the baseline and one probe.
	if n := r.probes.Load(); n != 2 {
		t.Errorf("the server saw %d probes, want 2 (the baseline and one)", n)
	}
}

func TestUnmapTo404(t *testing.T) {
	r := newRoute(t, 200, "hello")
	cfg := testConfig(r, 404, waitCmd(t, r))
	cfg.onReturn = func() { r.set(404, "unknown route") }
	res, err := run(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.firstStatus != 200 || !res.wantAt.After(res.returned) {
		t.Errorf("first status %d, wanted at %v (return %v): want 200 first, 404 after the return", res.firstStatus, res.wantAt, res.returned)
	}
}

func TestBodyContains(t *testing.T) {
	r := newRoute(t, 200, `{"app": "other"}`)
	cfg := testConfig(r, 200, waitCmd(t, r))
	cfg.bodyContains = `"app": "bench1"`
	cfg.onReturn = func() { r.set(200, `{"app": "bench1"}`) }
	res, err := run(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.firstStatus != 200 || !res.wantAt.After(res.returned) {
		t.Errorf("a 200 from another app counted as wanted: %s", res.line())
	}
}

// A body longer than the bound is not read to its end: the connection is
// dropped and the next probe dials again.
func TestLongBodyIsBounded(t *testing.T) {
	r := newRoute(t, 404, strings.Repeat("x", 1<<20))
	cfg := testConfig(r, 200, waitCmd(t, r))
	cfg.onReturn = func() { r.set(200, "hello") }
	res, err := run(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.conns < 2 {
		t.Errorf("%d connections: a 1 MiB body should have dropped the first", res.conns)
	}
	if len(res.lastBody) > snippetLen {
		t.Errorf("kept %d bytes of body, want at most %d", len(res.lastBody), snippetLen)
	}
}

func TestTimeout(t *testing.T) {
	r := newRoute(t, 404, "unknown route")
	var out, errOut bytes.Buffer
	code := mainExit([]string{"--router", r.addr(), "--host", "m1.apps.localhost", "--want", "200",
		"--timeout", "20ms", "--"}, &out, &errOut)
	if code != exitUsage {
		t.Fatalf("no command: exit %d, want %d", code, exitUsage)
	}
	args := append([]string{"--router", r.addr(), "--host", "m1.apps.localhost", "--want", "200",
		"--timeout", "20ms", "--"}, helperCmd(t, "exit:0")...)
	out.Reset()
	errOut.Reset()
	if code := mainExit(args, &out, &errOut); code != exitTimeout {
		t.Fatalf("exit %d, want %d (stderr %q)", code, exitTimeout, errOut.String())
	}
	if s := errOut.String(); !strings.Contains(s, "did not answer 200") || !strings.Contains(s, "last: 404 unknown route") {
		t.Errorf("stderr %q: want the timeout and the last answer", s)
	}
	f := fields(t, strings.TrimSpace(out.String()))
	if f["start_to_want_ms"] != "-" || f["want_us"] != "-" || f["rtt_ms"] != "-" || f["exit"] != "0" {
		t.Errorf("line %q: want no wanted time and exit=0", out.String())
	}
}

func TestCommandFails(t *testing.T) {
	r := newRoute(t, 404, "unknown route")
	var out, errOut bytes.Buffer
	args := append([]string{"--router", r.addr(), "--host", "m1.apps.localhost", "--want", "200", "--"},
		helperCmd(t, "exit:3")...)
	if code := mainExit(args, &out, &errOut); code != exitCmdFailed {
		t.Fatalf("exit %d, want %d (stderr %q)", code, exitCmdFailed, errOut.String())
	}
	if f := fields(t, strings.TrimSpace(out.String())); f["exit"] != "3" {
		t.Errorf("line %q: want exit=3", out.String())
	}
	out.Reset()
	errOut.Reset()
	code := mainExit([]string{"--router", r.addr(), "--host", "h", "--want", "200", "--", "/nonexistent/command"}, &out, &errOut)
	if code != exitCmdFailed || !strings.Contains(errOut.String(), "cannot start") {
		t.Errorf("a command that cannot start: exit %d, stderr %q", code, errOut.String())
	}
}

func TestCommandOutput(t *testing.T) {
	r := newRoute(t, 200, "hello")
	var out, errOut bytes.Buffer
	args := append([]string{"--router", r.addr(), "--host", "h", "--want", "200", "--"}, helperCmd(t, "echo")...)
	if code := mainExit(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d (stderr %q)", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if lines[0] != "out from the command" || !strings.HasPrefix(lines[len(lines)-1], "probe ") || errOut.String() != "err from the command\n" {
		t.Errorf("passed through: stdout %q stderr %q", out.String(), errOut.String())
	}

	dir := t.TempDir()
	out.Reset()
	errOut.Reset()
	args = append([]string{"--router", r.addr(), "--host", "h", "--want", "200",
		"--cmd-output", dir + "/cmd.txt", "--result", dir + "/result.txt", "--"}, helperCmd(t, "echo")...)
	if code := mainExit(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d (stderr %q)", code, errOut.String())
	}
	cmdOut, _ := os.ReadFile(dir + "/cmd.txt")
	result, _ := os.ReadFile(dir + "/result.txt")
	if out.Len() != 0 || errOut.Len() != 0 || !strings.Contains(string(cmdOut), "out from the command") ||
		!strings.Contains(string(cmdOut), "err from the command") || !strings.HasPrefix(string(result), "probe ") {
		t.Errorf("to files: stdout %q stderr %q cmd.txt %q result.txt %q", out.String(), errOut.String(), cmdOut, result)
	}
}

func TestParseArgs(t *testing.T) {
	ok := []string{"--router", "127.0.0.1:1", "--host", "h", "--want", "404"}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--host", "h", "--want", "200", "--", "true"}, "--router is required"},
		{[]string{"--router", "127.0.0.1:1", "--want", "200", "--", "true"}, "--host is required"},
		{[]string{"--router", "127.0.0.1:1", "--host", "h", "--", "true"}, "--want must be"},
		{[]string{"--router", "127.0.0.1:1", "--host", "h", "--want", "2000", "--", "true"}, "--want must be"},
		{[]string{"--router", "127.0.0.1", "--host", "h", "--want", "200", "--", "true"}, "host:port"},
		{append(ok, "--path", "x", "--", "true"), "--path must start with /"},
		{append(ok, "--timeout", "0s", "--", "true"), "must be positive"},
		{ok, "no command"},
	} {
		_, err := parseArgs(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseArgs(%q): %v, want an error with %q", tc.args, err, tc.err)
		}
	}
	c, err := parseArgs(append(ok, "--interval", "2ms", "--", "minicf", "map-route", "a"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.intervalDuring != 2*time.Millisecond || c.timeout != defaultTimeout || c.path != "/" || len(c.args) != 3 {
		t.Errorf("defaults: %+v", c)
	}
}
