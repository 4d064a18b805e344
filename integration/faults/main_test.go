// Package faults is issue 8's fault suite: the failures of
// code-and-reliability-anchors.md B1 and B5, each played against the real
// minicf binary, real NATS and real cells (namespace mode as root, process
// mode otherwise), with timers shortened through flags and config.
//
// Every case runs a steady request load through the router while the fault
// happens, counts every response (sent, ok, failed, misrouted), prints the
// figures with t.Logf and asserts on them. A case that finds a bug fails; it
// is never skipped.
//
// The helpers are adapted from integration/*_test.go (test files cannot be
// imported across packages).
package faults

import (
	"fmt"
	"os"
	"testing"

	"github.com/minicf/minicf/internal/testutil"
)

// minicfBin is the race-enabled binary TestMain builds once; appDir holds
// the test app (integration/testdata/diegoapp) the Diego cases run as LRPs.
var minicfBin, appDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "minicf-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if minicfBin, appDir, err = testutil.BuildBlackBox(dir); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	return m.Run()
}
