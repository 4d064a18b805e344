// Package integration runs the real minicf binary the way gorouter's
// integration suite runs gorouter: one build per test run, each test starts
// its own processes on loopback ports, talks to them over NATS and HTTP only,
// and asserts on status codes, headers, backend hit counters and log lines.
package integration

import (
	"os"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
)

// suite runs this suite's minicf processes; TestMain builds the
// race-enabled binary (suite.Bin) and the test app (suite.AppDir, the
// diegoapp the Diego tests run as an LRP) once.
var suite = harness.Suite{
	Name:        "integration",
	StopGrace:   5 * time.Second,
	HTTPTimeout: 10 * time.Second,
	RouterConfig: map[string]any{
		"prune_stale_droplets_interval": pruneInterval.String(),
		"droplet_stale_threshold":       staleThreshold.String(),
	},
}

// Timers of the test router, shortened as gorouter's integration tests do.
const (
	staleThreshold = 1 * time.Second
	pruneInterval  = 100 * time.Millisecond
)

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m))
}
