// Package integration runs the real minicf binary the way gorouter's
// integration suite runs gorouter: one build per test run, each test starts
// its own processes on loopback ports, talks to them over NATS and HTTP only,
// and asserts on status codes, headers, backend hit counters and log lines.
package integration

import (
	"fmt"
	"os"
	"testing"

	"github.com/minicf/minicf/internal/testutil"
)

// minicfBin is the race-enabled binary TestMain builds once; appDir holds
// the test app (diegoapp) the Diego tests run as an LRP.
var minicfBin, appDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "minicf-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if minicfBin, appDir, err = testutil.BuildBlackBox(dir); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	return m.Run()
}
