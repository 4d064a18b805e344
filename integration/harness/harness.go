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
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
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
	if p, ok := portOutsideEphemeralRange(); ok {
		return strconv.Itoa(p)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// ErrPortTaken says a process stopped at start because a port FreePort had
// found free was taken before it could bind it.
var ErrPortTaken = errors.New("a port picked for it was taken before it could bind")

// PortTaken reports whether p exited because one of its ports was taken.
func PortTaken(p *Proc) bool {
	return p.Exited() && strings.Contains(p.Logs(), "address already in use")
}

// WithFreshPorts calls try, which picks its own ports with FreePort, until
// it does not fail with ErrPortTaken, at most three times; any other error
// fails the test.
func WithFreshPorts[T any](t testing.TB, what string, try func() (T, error)) T {
	t.Helper()
	for attempt := 1; ; attempt++ {
		v, err := try()
		if err == nil {
			return v
		}
		if !errors.Is(err, ErrPortTaken) || attempt == 3 {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s (attempt %d): %v; trying other ports", what, attempt, err)
	}
}

// Ports handed out by FreePort, so that parallel tests never get the same one.
var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
	portsNext int
)

// portOutsideEphemeralRange finds a bindable loopback port below the
// kernel's ephemeral range. A port from a bind to :0 comes from that range,
// and between the test closing it and minicf binding it, any outgoing
// connection on the machine may take it as its source port (a CI run
// failed that way: "bind: address already in use"); below the range only
// explicit binds compete.
func portOutsideEphemeralRange() (int, bool) {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	var low, high int
	if _, err := fmt.Sscan(string(data), &low, &high); err != nil || low <= 20000 {
		return 0, false
	}
	const first = 20000
	portsMu.Lock()
	defer portsMu.Unlock()
	if portsNext == 0 {
		// Start somewhere different in each test process: two suites
		// running at once rarely walk the same ports.
		portsNext = first + rand.IntN(low-first)
	}
	for range low - first {
		p := portsNext
		if portsNext++; portsNext >= low {
			portsNext = first
		}
		if portsUsed[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		portsUsed[p] = true
		return p, true
	}
	return 0, false
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
