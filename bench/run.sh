#!/usr/bin/env bash
# bench/run.sh: every benchmark of the repository, one after another, with
# bounded durations so the whole run stays under 10 minutes on 2 cores:
#
#   bench/router.sh        DURATION=5s ROUNDS=2   router throughput (wrk)
#   bench/router-matrix.sh DURATION=2s ROUNDS=1   1/1,000 routes, TLS, keep-alive
#   bench/routes100k.sh                           100,000 routes over NATS
#   bench/propagation.sh   INSTANCES=50           RUNNING → first 200 (issue 8)
#   bench/push.sh          REPEAT=50 ROUTE_REPEAT=50
#                                                 push → first 200, map-route → first 200,
#                                                 unmap-route → first 404, RUNNING → first 200
#                                                 per push (issues 6 and 8)
#   go test -bench . -benchtime=100000x ./internal/router            registry at 100k routes
#   go test -bench AddWith1000 -benchtime 1x ./internal/netin        (root) iptables at 1000 containers
#   go test -bench NamespaceContainers -benchtime 1x ./internal/garden (root) container churn
#
# Each step's output goes to bench/results/run-<date>-<hostname>.txt with
# its command, wall time, exit status and the load average around it (the
# machine may be shared), and a combined table of the headline numbers is
# printed at the end. A failing step does not stop the others; the exit
# status is 1 when any step failed or timed out.
#
# Issue 8 asks for p50/p99 over at least 50 repetitions of each propagation
# measure: the combined table gives p50, p99 (and max) with n for each. The
# percentiles of push.sh are nearest-rank, so with n = 50 the p99 is the
# max; propagation.sh's come from its Go benchmark (index round(p*(n-1)),
# the same p99 for n = 50, p50 one rank higher). On 2 cores (2026-11-26, a
# shared machine at load 5-7) the whole run takes about 5 minutes, push.sh
# about 2 of them (2.1-2.4 s per push round, 0.1 s per map/unmap cycle).
#
# Usage: bench/run.sh
# Environment:
#   BUDGET      seconds for the whole run; a step gets what is left, at most
#               its own limit, and is skipped when under 20 s remain   (default 600)
#   ONLY        space-separated step names to run (router matrix routes100k
#               propagation push go-router go-netin go-garden; default all)
#   KEEP_TMP=1  keep the temp dir (every step's full log), and router.sh's and
#               push.sh's (it is passed on to them)
#   MINICF_BIN  use this prebuilt minicf binary instead of building one
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export LC_ALL=C

BUDGET=${BUDGET:-600}
# Issue 8: at least 50 repetitions of each propagation measure.
PROP_INSTANCES=50
PUSH_REPEAT=50
ROUTE_REPEAT=50
ONLY=${ONLY:-}

export PATH="/usr/local/go/bin:$PATH"

need go "install Go (expected at /usr/local/go)"
need timeout "apt-get install coreutils"
[[ $BUDGET =~ ^[1-9][0-9]*$ ]] || die "BUDGET must be a positive number of seconds, got '$BUDGET'"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

STAMP=$(date +%Y%m%d-%H%M%S)
HOST=$(hostname -s 2>/dev/null || hostname)
RESULTS=$ROOT/bench/results/run-$STAMP-$HOST.txt
TMP=$(mktemp -d "${TMPDIR:-/tmp}/minicf-run.XXXXXX")
STEP_PID= # the step running now, if any

cleanup() {
	local rc=$?
	set +e
	trap - INT TERM
	if [[ -n $STEP_PID ]] && kill -0 "$STEP_PID" 2>/dev/null; then
		# timeout(1) passes the TERM on to the step, whose own trap cleans up.
		kill -TERM "$STEP_PID" 2>/dev/null
		for _ in $(seq 900); do
			kill -0 "$STEP_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$STEP_PID" 2>/dev/null && kill -KILL "$STEP_PID" 2>/dev/null
		wait "$STEP_PID" 2>/dev/null
	fi
	remove_tmp
	exit "$rc"
}
on_exit cleanup

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

START=$SECONDS
: >"$TMP/sections.txt" # every step's section of the results file
: >"$TMP/table.txt"    # rows of the combined table: step|measure|result|goal
: >"$TMP/status.txt"   # step status wall
FAILED=0

row() { printf '%s|%s|%s|%s\n' "$1" "$2" "$3" "${4:-}" >>"$TMP/table.txt"; }

wanted() { [[ -z $ONLY || " $ONLY " == *" $1 "* ]]; }

# step NAME LIMIT_SECONDS CMD... : run CMD (stdout+stderr to $TMP/NAME.log)
# under timeout(1) with the smaller of LIMIT and what is left of BUDGET; sets
# STEP_RC (124: timed out) and STEP_WALL; appends the step's header to its section.
step() {
	local name=$1 limit=$2
	shift 2
	local left=$((BUDGET - (SECONDS - START)))
	STEP_RC=0
	STEP_WALL=0
	if ((left < 20)); then
		log "$name: skipped, only ${left}s of the ${BUDGET}s budget left"
		echo "$name|skipped (budget)|0" >>"$TMP/status.txt"
		printf '\n## %s: skipped (only %ds of the %ds budget left)\n' "$name" "$left" "$BUDGET" >>"$TMP/sections.txt"
		STEP_RC=skip
		return 0
	fi
	if ((limit > left)); then limit=$left; fi
	local load0 t0=$SECONDS
	load0=$(loadavg)
	log "$name (at most ${limit}s): $*"
	timeout -k 60 "$limit" "$@" >"$TMP/$name.log" 2>&1 &
	STEP_PID=$!
	wait "$STEP_PID" || STEP_RC=$?
	STEP_PID=
	STEP_WALL=$((SECONDS - t0))
	local status=ok
	if [[ $STEP_RC == 124 || $STEP_RC == 137 ]]; then
		status="TIMEOUT (${limit}s)"
	elif [[ $STEP_RC != 0 ]]; then
		status="FAILED (exit $STEP_RC)"
	fi
	[[ $status == ok ]] || {
		FAILED=1
		log "$name: $status; last lines of its output:"
		tail -n 25 "$TMP/$name.log" >&2
	}
	echo "$name|$status|$STEP_WALL" >>"$TMP/status.txt"
	{
		printf '\n## %s: %s in %ds\n' "$name" "$status" "$STEP_WALL"
		printf 'command:  %s\n' "$*"
		printf 'load avg: %s before, %s after\n\n' "$load0" "$(loadavg)"
	} >>"$TMP/sections.txt"
	log "$name: $status in ${STEP_WALL}s"
}

skip() { # skip NAME WHY
	log "$1: skipped: $2"
	echo "$1|skipped|0" >>"$TMP/status.txt"
	printf '\n## %s: skipped (%s)\n' "$1" "$2" >>"$TMP/sections.txt"
}

# go_bench_rows STEP LOG: a table row per "value unit" of each Benchmark line.
go_bench_rows() {
	awk -v s="$1" '
		/^Benchmark/ && NF >= 4 {
			name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
			for (i = 3; i < NF; i += 2) printf "%s|%s %s|%s|\n", s, name, $(i + 1), $i
		}' "$2" >>"$TMP/table.txt"
}

LOAD_START=$(loadavg)

# ---- build once, for router.sh and push.sh ---------------------------------
if [[ -n ${MINICF_BIN:-} ]]; then
	[[ -x $MINICF_BIN ]] || die "MINICF_BIN=$MINICF_BIN is not an executable"
	BIN=$(cd "$(dirname "$MINICF_BIN")" && pwd)/$(basename "$MINICF_BIN")
elif ! wanted router && ! wanted push; then
	BIN=
else
	log "building minicf"
	BIN=$TMP/minicf
	go build -o "$BIN" ./cmd/minicf || die "go build ./cmd/minicf failed"
fi

# ---- bench/router.sh -------------------------------------------------------
if wanted router; then
	step router 150 env DURATION=5s ROUNDS=2 MINICF_BIN="$BIN" bash bench/router.sh
	if [[ $STEP_RC != skip ]]; then
		# Its summary: everything from the per-round table on (stdout; logs are "==>" lines).
		grep -v '^==> ' "$TMP/router.log" | sed -n '/^round /,$p' >>"$TMP/sections.txt" || true
		awk '
			/^medians over/ { m = 1; next }
			m && ($1 == "direct" || $1 == "proxied" || $1 == "rproxy") && NF == 4 {
				printf "router|%s req/s (median)|%s|\n", $1, $2
				printf "router|%s p50 / p99 latency (ms)|%s / %s|\n", $1, $3, $4
			}
			/^ratio proxied\/direct/ { printf "router|proxied/direct req/s|%s|\n", $NF }
			/^ratio proxied\/rproxy/ { printf "router|proxied/bare ReverseProxy req/s|%s|\n", $NF }
			/^router RSS:/ { sub(/^router RSS: /, ""); printf "router|router RSS|%s|\n", $0 }
		' "$TMP/router.log" >>"$TMP/table.txt"
	fi
fi

# ---- bench/router-matrix.sh: table size, TLS, keep-alive ---------------------
if wanted matrix; then
	step matrix 200 env DURATION=2s ROUNDS=1 WARMUP=1s ROUTES_SET="1 1000" MINICF_BIN="$BIN" bash bench/router-matrix.sh
	if [[ $STEP_RC != skip ]]; then
		grep -v '^==> ' "$TMP/matrix.log" | sed -n '/^config /,$p' >>"$TMP/sections.txt" || true
		echo "matrix|router/direct req/s by config|see the matrix section|" >>"$TMP/table.txt"
	fi
fi

# ---- bench/routes100k.sh: 100,000 routes over NATS -----------------------------
if wanted routes100k; then
	step routes100k 120 env MINICF_BIN="$BIN" bash bench/routes100k.sh
	if [[ $STEP_RC != skip ]]; then
		grep -v '^==> ' "$TMP/routes100k.log" >>"$TMP/sections.txt" || true
		echo "routes100k|100,000 routes registered over NATS|see the routes100k section|" >>"$TMP/table.txt"
	fi
fi

# ---- bench/propagation.sh --------------------------------------------------
if wanted propagation; then
	step propagation 180 env INSTANCES="$PROP_INSTANCES" bash bench/propagation.sh
	if [[ $STEP_RC != skip ]]; then
		grep -E '^(Benchmark|---|    |ok|PASS|FAIL)' "$TMP/propagation.log" >>"$TMP/sections.txt" || true
		awk -v n="$PROP_INSTANCES" '/^BenchmarkRunningToRoutable/ {
			for (i = 3; i < NF; i += 2) v[$(i + 1)] = $i
			printf "propagation|RUNNING -> first 200 (ms)|p50 %s, p99 %s, max %s (n=%d)|\n",
				v["p50-ms"], v["p99-ms"], v["max-ms"], n
		}' "$TMP/propagation.log" >>"$TMP/table.txt"
		sed -n 's/.*RUNNING → router.register on NATS[^:]*: /propagation|RUNNING -> router.register on NATS|/p' \
			"$TMP/propagation.log" | sed 's/$/|/' >>"$TMP/table.txt"
	fi
fi

# ---- bench/push.sh ---------------------------------------------------------
if wanted push; then
	step push 300 env REPEAT="$PUSH_REPEAT" ROUTE_REPEAT="$ROUTE_REPEAT" MINICF_BIN="$BIN" RESULTS_FILE="$TMP/push-results.txt" bash bench/push.sh
	if [[ $STEP_RC != skip ]]; then
		if [[ -f $TMP/push-results.txt ]]; then
			sed -n '/^mode:/p; /^settings:/,/^goals:/p; /^map-route \/ unmap-route/,$p' "$TMP/push-results.txt" >>"$TMP/sections.txt"
			# Summary lines: measure p50 p90 p99 max n goal [verdict] [(note)].
			awk '
				BEGIN {
					label["push_start_to_200"] = "push start -> first 200"
					label["push_return_to_200"] = "push return -> first 200"
					label["running_to_200"] = "RUNNING -> first 200, per push"
					label["map_start_to_200"] = "map-route start -> first 200"
					label["map_return_to_200"] = "map-route return -> first 200"
					label["unmap_start_to_404"] = "unmap-route start -> first 404"
					label["unmap_return_to_404"] = "unmap-route return -> first 404"
					label["push_wall"] = "push wall"
					label["phase_staging"] = "push phase: staging"
					label["phase_go_build"] = "push phase: go build"
					label["phase_starting"] = "push phase: starting -> RUNNING"
					label["phase_notice"] = "push phase: RUNNING -> push returns"
					label["phase_running_to_table"] = "push phase: RUNNING -> router table"
				}
				/^summary / { s = 1; next }
				s && NF >= 7 && ($1 in label) && $2 ~ /^[0-9.-]+$/ {
					note = ""
					if (match($0, /\(0 = there at the return: [0-9]+ of [0-9]+\)/))
						note = "; " substr($0, RSTART + 1, RLENGTH - 2)
					goal = ""
					if ($7 != "-") {
						verdict = ""
						for (i = 8; i <= NF && $i !~ /^\(0$/; i++) verdict = verdict " " $i
						goal = "< " $7 " ms:" verdict
					}
					printf "push|%s (ms)|p50 %s, p99 %s, max %s (n=%s%s)|%s\n", label[$1], $2, $4, $5, $6, note, goal
				}' "$TMP/push-results.txt" >>"$TMP/table.txt"
		else
			grep -v '^==> ' "$TMP/push.log" | tail -n 40 >>"$TMP/sections.txt" || true
		fi
	fi
fi

# ---- Go benchmarks -----------------------------------------------------------
if wanted go-router; then
	step go-router 120 go test -run '^$' -bench . -benchtime=100000x -count 1 -timeout 110s ./internal/router
	if [[ $STEP_RC != skip ]]; then
		grep -E '^(Benchmark|---|    |ok|PASS|FAIL|cpu)' "$TMP/go-router.log" >>"$TMP/sections.txt" || true
		go_bench_rows go-router "$TMP/go-router.log"
	fi
fi
if [[ $(id -u) == 0 ]]; then
	if wanted go-netin; then
		step go-netin 120 go test -run '^$' -bench AddWith1000 -benchtime 1x -count 1 -timeout 110s ./internal/netin
		if [[ $STEP_RC != skip ]]; then
			grep -E '^(Benchmark|---|    |ok|PASS|FAIL)' "$TMP/go-netin.log" >>"$TMP/sections.txt" || true
			go_bench_rows go-netin "$TMP/go-netin.log"
			sed -i 's/^\(go-netin|AddWith1000Containers add-ms\/op|[^|]*|\)$/\1< 100 ms per apply/' "$TMP/table.txt"
		fi
	fi
	if wanted go-garden; then
		step go-garden 120 go test -run '^$' -bench NamespaceContainers -benchtime 1x -count 1 -timeout 110s ./internal/garden
		if [[ $STEP_RC != skip ]]; then
			grep -E '^(Benchmark|---|    |ok|PASS|FAIL)' "$TMP/go-garden.log" >>"$TMP/sections.txt" || true
			go_bench_rows go-garden "$TMP/go-garden.log"
		fi
	fi
else
	wanted go-netin && skip go-netin "needs root: sudo bash bench/run.sh"
	wanted go-garden && skip go-garden "needs root: sudo bash bench/run.sh"
fi

# ---- combined table and results file -----------------------------------------
TOTAL=$((SECONDS - START))
combined() {
	printf '%-12s %-40s %-48s %s\n' step measure result goal
	awk -F'|' '{ printf "%-12s %-40s %-48s %s\n", $1, $2, $3, $4 }' "$TMP/table.txt"
	printf '\n%-12s %-20s %s\n' step status 'wall (s)'
	awk -F'|' '{ printf "%-12s %-20s %s\n", $1, $2, $3 }' "$TMP/status.txt"
	printf 'total: %ds (budget %ds)\n' "$TOTAL" "$BUDGET"
}
mkdir -p "$(dirname "$RESULTS")"
{
	echo "# bench/run.sh: every benchmark, bounded"
	echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "host:     $(uname -a)"
	echo "nproc:    $(nproc)"
	echo "load avg: $LOAD_START at the start, $(loadavg) at the end (1/5/15 min; the machine is shared)"
	echo "go:       $(go version)"
	echo "tree:     $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null ||
		echo " + uncommitted changes ($(git diff --shortstat HEAD -- | sed 's/^ *//'))")"
	echo "user:     uid $(id -u)$([[ $(id -u) == 0 ]] && echo ' (root: namespace mode, root benchmarks)')"
	echo
	echo "combined:"
	combined
	cat "$TMP/sections.txt"
} >"$RESULTS"
echo
combined
log "results written to ${RESULTS#"$ROOT"/}"
((FAILED == 0)) || die "some steps failed or timed out (see above and $RESULTS)"
