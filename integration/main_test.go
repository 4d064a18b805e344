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
var suite = harness.Suite{Name: "integration", StopGrace: 5 * time.Second}

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m))
}
