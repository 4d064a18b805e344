package faults

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
)

// Issue 8 "router drain", beyond integration/router_test.go's
// TestRouter_DrainOnSIGUSR1 (one in-flight request, one request into the
// drain): a steady keep-alive load and a stream of slow requests run
// through SIGUSR1 to the router's exit. /health turns 503 before any
// connection is refused; every request the router accepted is answered
// (slow ones included); the only errors are refused connections after the
// drain wait, which a load balancer that read /health never sends.
func TestFaults_RouterDrainUnderLoad(t *testing.T) {
	t.Parallel()
	const drainWait, slowFor = time.Second, 700 * time.Millisecond
	r := suite.StartRouter(t, harness.RouterSpec{Config: map[string]any{"drain_wait": drainWait.String(), "drain_timeout": "3s"}})
	app := newBackend(t, "drainee", harness.BackendOptions{Handler: func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/slow" {
			time.Sleep(slowFor)
		}
		io.WriteString(w, "drainee")
	}})
	const host = "drain.example.com"
	r.Bus.Register(app.reg(host, "drainee-0"))
	r.Bus.Heartbeat(app.reg(host, "drainee-0"), registerInterval)
	r.WaitForStatus(t, host, http.StatusOK, 2*time.Second)

	judge := func(path string) func(c *http.Client) shot {
		return func(c *http.Client) shot {
			resp, err := r.GetWith(c, host, path)
			switch {
			case err != nil && isRefused(err):
				return shot{v: vRefused}
			case err != nil:
				return shot{v: vFailed, desc: path + ": " + err.Error()}
			case resp.Status != http.StatusOK || resp.Body != "drainee":
				return shot{v: vFailed, desc: fmt.Sprintf("%s: %d %q %s", path, resp.Status, resp.Body, resp.RouterError())}
			}
			return shot{v: vOK, key: path}
		}
	}
	fast := startLoad(t, "drain: keep-alive load", 3, 2*time.Millisecond, judge("/"))
	slow := startLoad(t, "drain: slow requests", 3, 50*time.Millisecond, judge("/slow"))
	fast.waitProgress(t, 50, 5*time.Second)
	slow.waitProgress(t, 3, 5*time.Second)

	// /health, polled as a load balancer would.
	var firstUnhealthy atomic.Int64
	stopPoll := make(chan struct{})
	var pollWG sync.WaitGroup
	pollWG.Add(1)
	go func() {
		defer pollWG.Done()
		c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for {
			select {
			case <-stopPoll:
				return
			case <-time.After(5 * time.Millisecond):
			}
			resp, err := c.Get("http://" + r.StatusAddr + "/health")
			if err != nil {
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				firstUnhealthy.CompareAndSwap(0, time.Now().UnixNano())
			}
		}
	}()

	signalled := time.Now()
	r.Signal(t, syscall.SIGUSR1)
	if !r.WaitExit(drainWait + 5*time.Second) {
		t.Fatalf("the router still runs %v after SIGUSR1", drainWait+5*time.Second)
	}
	exited := time.Now()
	// A moment of refused connections after the exit, as a balancer would see.
	time.Sleep(200 * time.Millisecond)
	close(stopPoll)
	pollWG.Wait()
	fast.finish(t)
	slow.finish(t)

	t.Logf("SIGUSR1 → /health 503 after %v, first refused connection after %v, exit after %v (code %d)",
		nsSince(signalled, firstUnhealthy.Load()), nsSince(signalled, fast.firstRefused.Load()),
		exited.Sub(signalled).Round(time.Millisecond), r.ExitCode())
	for _, l := range []*load{fast, slow} {
		if n := l.failed.Load(); n > 0 {
			t.Errorf("%s: %d requests were lost (accepted by the draining router and not answered with a 200)", l.name, n)
		}
	}
	if firstUnhealthy.Load() == 0 {
		t.Fatal("/health never turned unhealthy during the drain")
	}
	if d := time.Duration(firstUnhealthy.Load() - signalled.UnixNano()); d > 200*time.Millisecond {
		t.Errorf("/health turned unhealthy %v after SIGUSR1, want at once", d)
	}
	for _, l := range []*load{fast, slow} {
		if fr := l.firstRefused.Load(); fr != 0 && fr < firstUnhealthy.Load() {
			t.Errorf("%s: a connection was refused before /health turned unhealthy", l.name)
		}
		if fr := l.firstRefused.Load(); fr != 0 && time.Duration(fr-signalled.UnixNano()) < drainWait {
			t.Errorf("%s: a connection was refused %v after SIGUSR1, inside the drain wait (%v)", l.name,
				time.Duration(fr-signalled.UnixNano()), drainWait)
		}
	}
	if fast.refused.Load() == 0 {
		t.Error("no connection was refused after the router exited: the load did not run through the drain")
	}
	if code := r.ExitCode(); code != 0 {
		t.Errorf("the router exited with %d after the drain, want 0", code)
	}
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused")
}

func nsSince(from time.Time, ns int64) string {
	if ns == 0 {
		return "never"
	}
	return time.Duration(ns - from.UnixNano()).Round(time.Millisecond).String()
}
