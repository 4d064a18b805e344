#!/usr/bin/env bash
# bench/propagation.sh: route propagation latency, end to end, with real
# processes: from the moment the BBS marks an instance RUNNING (the
# ActualLRP's since, set by the rep's StartActualLRP call) to the first 200
# through the router. Prints p50, p90, p99 and max over N instances.
#
# Usage: bench/propagation.sh
# Environment:
#   INSTANCES  how many one-instance LRPs to measure, one after another (default 50:
#              issue 8 asks for p50/p99 over at least 50)
#   RACE=1     run the components with the race detector (slower; default off)
#
# It runs BenchmarkRunningToRoutable in integration/ (see its comment): a
# BBS, an auctioneer, one process-mode cell, `minicf nats`, a router and a
# route emitter, each its own process on loopback ports, all stopped at the end.
# Its percentiles are the benchmark's: the value at index round(p*(n-1)) of
# the sorted n, not nearest-rank as in push.sh (the same p99 for n = 50, the
# max; p50 one rank higher). The router is probed every 500 µs with a new
# request; process mode, unlike push.sh's namespace-mode foundation as root.
set -euo pipefail

export PATH="/usr/local/go/bin:$PATH"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

INSTANCES=${INSTANCES:-50}
[[ $INSTANCES =~ ^[1-9][0-9]*$ ]] || { echo "propagation.sh: INSTANCES must be a positive integer, got '$INSTANCES'" >&2; exit 1; }

MINICF_BENCH_INSTANCES=$INSTANCES MINICF_BENCH_RACE=${RACE:-0} \
	go test -run '^$' -bench 'BenchmarkRunningToRoutable$' -benchtime 1x -count 1 -timeout 30m ./integration/ |
	grep -v '^[[:space:]]*{'
