#!/usr/bin/env bash
# bench/router-matrix.sh: bench/router.sh over ROUTES x TLS x KEEPALIVE with
# short runs, one table at the end: config, direct req/s, router req/s,
# ratio router/direct, router p50/p99. The full output of every run, the
# machine, the date and the load average around each run go to
# bench/results/router-matrix-<date>-<hostname>.txt.
#
# Usage: bench/router-matrix.sh
# Environment:
#   DURATION   wrk duration per measured run          (default 3s)
#   ROUNDS     measured rounds per target per config  (default 1)
#   WARMUP     warm-up per target                     (default 1s)
#   ROUTES_SET route counts to run                    (default "1 10 1000")
#   TLS_SET    TLS settings to run                    (default "0 1")
#   KEEPALIVE_SET keep-alive settings to run          (default "1 0")
#   THREADS, CONNS, MINICF_BIN: passed on to bench/router.sh
set -euo pipefail
export LC_ALL=C
export PATH="/usr/local/go/bin:$PATH"

export DURATION=${DURATION:-3s} ROUNDS=${ROUNDS:-1} WARMUP=${WARMUP:-1s} RPROXY=${RPROXY:-0}
ROUTES_SET=${ROUTES_SET:-1 10 1000}
TLS_SET=${TLS_SET:-0 1}
KEEPALIVE_SET=${KEEPALIVE_SET:-1 0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [[ -z ${MINICF_BIN:-} ]]; then
	echo "==> building bin/minicf" >&2
	mkdir -p bin
	go build -o bin/minicf ./cmd/minicf
	export MINICF_BIN=$ROOT/bin/minicf
fi

STAMP=$(date +%Y%m%d-%H%M%S)
HOST=$(hostname -s 2>/dev/null || hostname)
mkdir -p bench/results
RESULTS=$ROOT/bench/results/router-matrix-$STAMP-$HOST.txt
TABLE=$(mktemp "${TMPDIR:-/tmp}/minicf-matrix.XXXXXX")
trap 'rm -f "$TABLE"' EXIT

{
	echo "# bench/router-matrix.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "# host: $HOST  $(uname -srm)  cpus: $(nproc)  $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "# mem: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)  go: $(go version | cut -d' ' -f3)  wrk: $(wrk -v 2>&1 | head -n1 | cut -d' ' -f2)"
	echo "# DURATION=$DURATION ROUNDS=$ROUNDS WARMUP=$WARMUP THREADS=${THREADS:-2} CONNS=${CONNS:-64}"
	echo "# direct = wrk to the app's plain-HTTP port; router = wrk through minicf router (access log on)"
	echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$RESULTS"

fail=0
for ka in $KEEPALIVE_SET; do
	for tls in $TLS_SET; do
		for routes in $ROUTES_SET; do
			echo "==> ROUTES=$routes TLS=$tls KEEPALIVE=$ka  (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$RESULTS" >&2
			if ! ROUTES=$routes TLS=$tls KEEPALIVE=$ka RESULTS_FILE=$RESULTS bench/router.sh >/dev/null 2>>"$RESULTS"; then
				echo "FAILED: ROUTES=$routes TLS=$tls KEEPALIVE=$ka (see $RESULTS)" | tee -a "$RESULTS" >&2
				fail=1
			fi
		done
	done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"

{
	printf '\n%-34s %12s %12s %7s %9s %9s %6s\n' config 'direct req/s' 'router req/s' ratio 'p50(ms)' 'p99(ms)' errors
	grep '^SUMMARY ' "$RESULTS" | while read -r _ r t k d p ratio p50 p99 e; do
		printf '%-34s %12s %12s %7s %9s %9s %6s\n' \
			"routes=$r tls=$([[ $t == 1 ]] && echo on || echo off) $([[ $k == 1 ]] && echo keep-alive || echo close)" \
			"$d" "$p" "$ratio" "$p50" "$p99" "$e"
	done
	echo "ratio = router req/s / direct req/s (1.0 = no overhead); p50/p99 are the router's"
} | tee "$TABLE"
cat "$TABLE" >>"$RESULTS"
echo "results: $RESULTS" >&2
exit "$fail"
