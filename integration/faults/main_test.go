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
// Its processes, routers, NATS clients and backends come from
// integration/harness, shared with the integration suite.
package faults

import (
	"os"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
)

// suite runs this suite's minicf processes; TestMain builds the
// race-enabled binary (suite.Bin) and the test app (suite.AppDir,
// integration/testdata/diegoapp, the Diego cases' LRPs) once. Every case
// stops several processes, some of them under load: each gets 10 s to
// exit. FAULTS_LOGS=1 prints every process's output, not only a failed
// case's.
var suite = harness.Suite{
	Name:        "faults",
	StopGrace:   10 * time.Second,
	ShowLogs:    os.Getenv("FAULTS_LOGS") == "1",
	HTTPTimeout: 15 * time.Second,
	RouterConfig: map[string]any{
		"minimum_register_interval":     registerInterval.String(),
		"prune_stale_droplets_interval": pruneInterval.String(),
		"droplet_stale_threshold":       "3s",
	},
}

// The router's timers, shortened: heartbeats (router.start's register
// interval) every second, pruning every 250 ms.
const (
	registerInterval = time.Second
	pruneInterval    = 250 * time.Millisecond
)

func TestMain(m *testing.M) {
	os.Exit(suite.Main(m))
}
