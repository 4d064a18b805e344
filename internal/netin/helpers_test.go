package netin_test

// Address conventions in these tests (all inside the foundation range
// 10.244.0.0/16; nothing here is ever sent anywhere):
//   - 10.244.0.11 is the cell's IP, the DNAT rules' destination;
//     10.244.0.12 is another cell.
//   - 10.244.0.1 is the router (the client of every traced packet).
//   - 10.244.1.0/24 holds the cell's containers.
//   - 10.244.9.0/24 is used by rules and chains that are not netin's.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/minicf/minicf/internal/netin"
	"github.com/minicf/minicf/internal/netin/netintest"
)

const (
	cellIP   = "10.244.0.11"
	routerIP = "10.244.0.1"
)

// Two instance guids as CF writes them; the first is the onboarding
// example of the reference notes, whose chain is netin--a0d2b217-fa7d-4ac1-65.
const (
	handleA = "a0d2b217-fa7d-4ac1-65d8-bd5c"
	handleB = "b7e3c9a1-0c4f-4d2e-7a9b-33f1"
	chainA  = "netin--a0d2b217-fa7d-4ac1-65"
	chainB  = "netin--b7e3c9a1-0c4f-4d2e-7a"
)

// conntrackRule is netin.ConntrackChain's rule as iptables-save prints it.
const conntrackRule = `-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN`

// conntrackOnly is what netin keeps in a cell's nat table with no
// container: its conntrack chain, the chain's rule and its jump, in
// iptables-save's order (see netinLines).
var conntrackOnly = []string{":netin--+conntrack - [0:0]", "-A PREROUTING -j netin--+conntrack", conntrackRule}

// netinLines returns a dump's lines that name a netin chain.
func netinLines(dump string) []string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if strings.Contains(l, netin.ChainPrefix) {
			out = append(out, l)
		}
	}
	return out
}

var (
	containerA = netin.Container{Handle: handleA, Mappings: []netin.Mapping{
		{HostPort: 61001, ContainerIP: "10.244.1.2", ContainerPort: 8080},
		{HostPort: 61002, ContainerIP: "10.244.1.2", ContainerPort: 61001},
	}}
	containerB = netin.Container{Handle: handleB, Mappings: []netin.Mapping{
		{HostPort: 61003, ContainerIP: "10.244.1.3", ContainerPort: 61001},
	}}
)

// dedent strips the common leading tabs of a golden text and its first
// newline, so goldens can be indented with the code.
func dedent(s string) string {
	s = strings.TrimPrefix(s, "\n")
	lines := strings.Split(s, "\n")
	prefix := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, "\t"))
		if prefix < 0 || n < prefix {
			prefix = n
		}
	}
	for i, l := range lines {
		if len(l) >= prefix && prefix > 0 {
			lines[i] = l[prefix:]
		} else {
			lines[i] = strings.TrimLeft(l, "\t")
		}
	}
	return strings.Join(lines, "\n")
}

// stripComments drops iptables-save's "# Generated"/"# Completed" lines.
func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// assertText compares a whole text with its golden; t.Helper makes the
// failure point at the caller's line, as kube-proxy's getLine() does.
func assertText(t testing.TB, what, want, got string) {
	t.Helper()
	if want != got {
		t.Fatalf("%s differs\n--- want\n%s--- got\n%s", what, want, got)
	}
}

// sortedLines sorts a dump's lines, for tables whose rule order is not
// determined.
func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}

// dnatTargets lists the DNAT rules' destinations in a dump.
func dnatTargets(dump string) []string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if i := strings.Index(l, "--to-destination "); i >= 0 && strings.HasPrefix(l, "-A netin--") {
			out = append(out, l[i+len("--to-destination "):])
		}
	}
	return out
}

// packetFlowTest is one packet from src to dst:port and where it must
// end up: a container's ip:port, or "none" (delivered to the cell, where
// nothing listens, so refused).
type packetFlowTest struct {
	name   string
	src    string
	dst    string
	port   uint32
	output string
}

// runPacketFlowTests traces each packet through the fake's nat table, as
// kube-proxy's runPacketFlowTests does.
func runPacketFlowTests(t *testing.T, fake *netintest.Fake, tests []packetFlowTest) {
	t.Helper()
	for _, tc := range tests {
		src := tc.src
		if src == "" {
			src = routerIP
		}
		if got := fake.Trace(src, tc.dst, tc.port); got != tc.output {
			t.Errorf("packet %q (%s -> %s:%d) ends at %q, want %q\nnat table:\n%s", tc.name, src, tc.dst, tc.port, got, tc.output, fake.Dump())
		}
	}
}

// logBuffer collects a JSON logger's lines; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func newLogger() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// events returns the logged lines whose msg is event.
func (l *logBuffer) events(event string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			panic(fmt.Sprintf("bad log line %q: %v", line, err))
		}
		if m["msg"] == event {
			out = append(out, m)
		}
	}
	return out
}
