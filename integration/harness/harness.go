// Package harness runs minicf the way its black-box suites, integration and
// integration/faults, need it: the real binary, built once per test run,
// started as separate processes whose output is kept, which are stopped
// (and their process groups killed by pid when they will not stop) when the
// test ends, and whose logs are printed when the test failed. On top of
// that: a router with the test's NATS client (Bus) and HTTP client, NATS
// itself, backends in the test process that routes can point at, and
// Diego (BBS, auctioneer, cells) with the test app, in process mode or on
// a foundation network of the test's own (namespace mode, as root).
//
// The two suites differ only in patience, timers and names; a Suite holds
// those. Each suite declares one as a package variable and uses it from
// TestMain:
//
//	var suite = harness.Suite{Name: "faults", StopGrace: 10 * time.Second}
//
//	func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }
package harness

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/testutil"
)

// Suite is one black-box suite's way of running minicf.
type Suite struct {
	// Name names the suite: its temporary directory, its errors.
	Name string
	// Bin is the race-enabled minicf binary and AppDir the directory holding
	// the Diego test app (integration/testdata/diegoapp); Main sets both.
	Bin, AppDir string
	// StopGrace is how long a process may take to exit after SIGTERM at
	// cleanup before its process group is SIGKILLed and the test fails.
	StopGrace time.Duration
	// ShowLogs prints every process's output at cleanup, not only when the
	// test failed.
	ShowLogs bool
	// HTTPTimeout bounds every request of the clients NewHTTPClient makes
	// (a Router's Client among them).
	HTTPTimeout time.Duration
	// RouterConfig is laid over every router's base config before the
	// RouterSpec's: the suite's pruning timers.
	RouterConfig map[string]any
}

// Main builds minicf and the test app into a temporary directory, sets Bin
// and AppDir, runs the tests and removes the directory. It returns the exit
// code for os.Exit.
func (s *Suite) Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "minicf-"+s.Name+"-")
	if err != nil {
		fmt.Fprintln(os.Stderr, s.Name+":", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if s.Bin, s.AppDir, err = testutil.BuildBlackBox(dir); err != nil {
		fmt.Fprintln(os.Stderr, s.Name+":", err)
		return 1
	}
	return m.Run()
}

// ChildEnv is the test's environment with the race runtime's exit pause cut
// from 1 s to 50 ms: every test stops at least one process.
func ChildEnv() []string {
	env := os.Environ()
	gorace := os.Getenv("GORACE")
	if !strings.Contains(gorace, "atexit_sleep_ms") {
		env = append(env, strings.TrimSpace("GORACE="+gorace+" atexit_sleep_ms=50"))
	}
	return env
}

// FreePort returns a loopback port nobody listens on right now. Another
// process may take it before ours binds it; StartRouter retries when that
// happens.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// ClosedPort returns a loopback port that refuses connections.
func ClosedPort(t testing.TB) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return uint16(port)
}
