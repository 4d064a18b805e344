package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
	"github.com/minicf/minicf/internal/testutil"
)

// foundationProc is `minicf up` running in its own MINICF_HOME.
type foundationProc struct {
	home   string
	router string
	up     *harness.Proc
	// status, bbs and trace are the router status, BBS and trace API
	// addresses (trace_test.go).
	status, bbs, trace string
}

func startFoundation(t *testing.T, mode string, extra ...string) *foundationProc {
	t.Helper()
	return harness.WithFreshPorts(t, "minicf up ("+mode+")", func() (*foundationProc, error) {
		return tryStartFoundation(t, mode, extra...)
	})
}

func tryStartFoundation(t *testing.T, mode string, extra ...string) (*foundationProc, error) {
	t.Helper()
	home := t.TempDir()
	f := &foundationProc{home: home, router: "127.0.0.1:" + harness.FreePort(t), status: "127.0.0.1:" + harness.FreePort(t),
		bbs: "127.0.0.1:" + harness.FreePort(t), trace: "127.0.0.1:" + harness.FreePort(t)}
	args := []string{"up", "--home", home, "--mode", mode, "--log-level", "info",
		"--router", f.router, "--router-status", f.status,
		"--api", "127.0.0.1:" + harness.FreePort(t), "--api-internal", "127.0.0.1:" + harness.FreePort(t),
		"--nats", "127.0.0.1:" + harness.FreePort(t), "--bbs-listen", f.bbs,
		"--auctioneer-listen", "127.0.0.1:" + harness.FreePort(t), "--trace", f.trace}
	f.up = suite.StartProc(t, "minicf up ("+mode+")", append(args, extra...)...)
	var exited error
	testutil.CheckFor(t, 2*time.Minute, 20*time.Millisecond, func() error {
		if f.up.Exited() {
			exited = fmt.Errorf("minicf up exited (%s) before it was ready", f.up.State())
			if harness.PortTaken(f.up) {
				exited = fmt.Errorf("%w: %v", harness.ErrPortTaken, exited)
			}
			return nil
		}
		if !strings.Contains(f.up.Logs(), "==> ready") {
			return fmt.Errorf("minicf up is not ready")
		}
		return nil
	})
	return f, exited
}

// cli runs a minicf CLI verb against the foundation and returns its output.
func (f *foundationProc) cli(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(suite.Bin, args...)
	cmd.Env = append(harness.ChildEnv(), "MINICF_HOME="+f.home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("minicf %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

type helloAnswer struct {
	App           string `json:"app"`
	InstanceIndex string `json:"instance_index"`
	InstanceGUID  string `json:"instance_guid"`
	CellIP        string `json:"cell_ip"`
	InstanceIP    string `json:"instance_ip"`
}

// get sends GET / for host through the router.
func (f *foundationProc) get(host string) (int, helloAnswer, string, error) {
	req, _ := http.NewRequest("GET", "http://"+f.router+"/", nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, helloAnswer{}, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var a helloAnswer
	json.Unmarshal(body, &a)
	return resp.StatusCode, a, resp.Header.Get("X-Cf-Routererror"), nil
}

// waitStatus polls host until it answers want, and returns how long it took.
func (f *foundationProc) waitStatus(t *testing.T, host string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	testutil.CheckFor(t, within, 5*time.Millisecond, func() error {
		status, _, rerr, err := f.get(host)
		if err != nil {
			return err
		}
		if status != want {
			return fmt.Errorf("%s answered %d %s, want %d", host, status, rerr, want)
		}
		return nil
	})
	return time.Since(start)
}

func examplesDir(t *testing.T) string {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "examples", "hello")
}

// runE2E is issue 6's end-to-end case: push the example app with two
// instances and a route, reach both through the router, map a second
// route and reach it within a second, unmap it and get 404 within a
// second, scale to 1, stop, delete, and find nothing left behind.
func runE2E(t *testing.T, f *foundationProc) {
	out := f.cli(t, "push", "hello", "-p", examplesDir(t), "-i", "2")
	if !strings.Contains(out, "2 of 2 instances running") || !strings.Contains(out, "hello.apps.localhost") {
		t.Fatalf("push output:\n%s", out)
	}
	seen := map[string]bool{}
	testutil.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		status, a, rerr, err := f.get("hello.apps.localhost")
		if err != nil || status != 200 {
			return fmt.Errorf("hello: %d %s %v", status, rerr, err)
		}
		if a.App != "hello" || a.InstanceGUID == "" {
			return fmt.Errorf("unexpected answer %+v", a)
		}
		seen[a.InstanceGUID] = true
		if len(seen) < 2 {
			return fmt.Errorf("only %d instance answered so far", len(seen))
		}
		return nil
	})

	f.cli(t, "map-route", "hello", "apps.localhost", "--hostname", "second")
	took := f.waitStatus(t, "second.apps.localhost", 200, time.Second)
	t.Logf("map-route → first 200: %v", took.Round(time.Millisecond))
	f.cli(t, "unmap-route", "hello", "apps.localhost", "--hostname", "second")
	took = f.waitStatus(t, "second.apps.localhost", 404, time.Second)
	t.Logf("unmap-route → first 404: %v", took.Round(time.Millisecond))

	f.cli(t, "scale", "hello", "-i", "1")
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		out := f.cli(t, "app", "hello")
		if strings.Count(out, "running") != 1 || strings.Contains(out, "#1") {
			return fmt.Errorf("after scaling to 1:\n%s", out)
		}
		return nil
	})
	f.cli(t, "stop", "hello")
	f.waitStatus(t, "hello.apps.localhost", 404, 10*time.Second)
	f.cli(t, "delete", "hello", "-f", "-r")
	if out := f.cli(t, "apps"); !strings.Contains(out, "No apps found") {
		t.Fatalf("apps after delete:\n%s", out)
	}
	if out := f.cli(t, "routes"); strings.Contains(out, "hello") {
		t.Fatalf("routes after delete -r:\n%s", out)
	}

	f.up.Signal(t, syscall.SIGTERM)
	if !f.up.WaitExit(2 * time.Minute) {
		t.Fatal("minicf up did not stop within 2 minutes of SIGTERM")
	}
	if code := f.up.ExitCode(); code != 0 {
		t.Fatalf("minicf up exited with %d", code)
	}
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		for i := 1; i <= 2; i++ {
			entries, _ := os.ReadDir(filepath.Join(f.home, "cells", fmt.Sprintf("cell-%d", i), "containers"))
			if len(entries) > 0 {
				return fmt.Errorf("cell-%d still has %d containers", i, len(entries))
			}
		}
		if pids := harness.ProcessesUnder(f.home); len(pids) > 0 {
			return fmt.Errorf("processes still running from the foundation: %v", pids)
		}
		return nil
	})
}

func TestE2E_PushAndCurlInProcessMode(t *testing.T) {
	runE2E(t, startFoundation(t, "process"))
}

func TestE2E_PushAndCurlInNamespaceMode(t *testing.T) {
	harness.RequireNetns(t)
	nw := claimNetns(t)
	f := startFoundation(t, "namespace", "--prefix", nw.Prefix, "--network-range", nw.Range.String())
	runE2E(t, f)
}

// TestDemo_PushesAndCurlsBothInstances runs the README's first command
// (`minicf demo`, with --exit so it ends) in process mode.
func TestDemo_PushesAndCurlsBothInstances(t *testing.T) {
	home := t.TempDir()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(suite.Bin, "demo", "--exit", "--mode", "process", "--home", home,
		"--router", "127.0.0.1:"+harness.FreePort(t), "--router-status", "127.0.0.1:"+harness.FreePort(t),
		"--api", "127.0.0.1:"+harness.FreePort(t), "--api-internal", "127.0.0.1:"+harness.FreePort(t),
		"--nats", "127.0.0.1:"+harness.FreePort(t), "--bbs-listen", "127.0.0.1:"+harness.FreePort(t),
		"--auctioneer-listen", "127.0.0.1:"+harness.FreePort(t))
	cmd.Dir = root
	cmd.Env = harness.ChildEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("minicf demo: %v\n%s", err, out)
	}
	for _, want := range []string{"2 of 2 instances running", "requests reached 2 different instances", "stopping the foundation"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
	if pids := harness.ProcessesUnder(home); len(pids) > 0 {
		t.Fatalf("processes left by the demo: %v", pids)
	}
}
