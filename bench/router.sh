#!/usr/bin/env bash
# bench/router.sh: compare wrk throughput/latency against a tiny backend
# directly and through `minicf router` (the gorouter twin).
#
# Usage: bench/router.sh
# Environment:
#   DURATION   wrk duration per measured run        (default 10s)
#   ROUNDS     measured rounds per target           (default 3)
#   WARMUP     wrk duration of the warm-up per target (default 2s)
#   THREADS    wrk threads                           (default 2)
#   CONNS      wrk connections                       (default 64)
#   KEEP_TMP=1 keep the temp dir (logs, wrk output) instead of deleting it
#   MINICF_BIN use this prebuilt minicf binary instead of building bin/minicf
#
# Starts: minicf nats, the bench backend, minicf router (access log on), and a
# route registrar. Every PID it starts is recorded and killed on exit.
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
ROUTE=bench.apps.localhost
NATS_USER=nats
NATS_PASS=nats
READY_TIMEOUT=${READY_TIMEOUT:-30} # seconds, per readiness wait

export PATH="/usr/local/go/bin:$PATH"

die() { echo "router.sh: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

need() {
	command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}
need wrk "apt-get install wrk"
need curl "apt-get install curl"
need python3 "apt-get install python3"
need go "install Go (expected at /usr/local/go)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/minicf-bench.XXXXXX")
PIDS=()   # every PID we started, in start order
NAMES=()  # matching human-readable names
WRK_PID=  # the wrk currently running, if any

cleanup() {
	local rc=$?
	set +e
	# Stop in reverse start order; TERM first, KILL after a grace period.
	local i pid
	[[ -n ${WRK_PID:-} ]] && kill -TERM "$WRK_PID" 2>/dev/null && wait "$WRK_PID" 2>/dev/null
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		kill -TERM "$pid" 2>/dev/null
	done
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "router.sh: ${NAMES[i]} (pid $pid) ignored SIGTERM, sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null
	done
	if ((rc != 0)); then
		local f
		for f in "$TMP"/*.log; do
			[[ -f $f && $(basename "$f") != access.log ]] || continue
			echo "---- last lines of $(basename "$f") ----" >&2
			tail -n 20 "$f" >&2
		done
	fi
	if [[ ${KEEP_TMP:-0} == 1 ]]; then
		echo "router.sh: kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD... : run CMD in the background with stdout+stderr in
# $TMP/NAME.log and record its PID (the PID of CMD itself, not a subshell).
start() {
	local name=$1
	shift
	"$@" >"$TMP/$name.log" 2>&1 &
	PIDS+=("$!")
	NAMES+=("$name")
	LAST_PID=$!
}

alive() { # alive PID NAME
	kill -0 "$1" 2>/dev/null || die "$2 (pid $1) exited early; its log is printed below"
}

# wait_until DESC PID NAME CMD... : poll CMD every 0.1s until it succeeds,
# failing if the process dies or READY_TIMEOUT elapses.
wait_until() {
	local desc=$1 pid=$2 name=$3
	shift 3
	local deadline=$((SECONDS + READY_TIMEOUT))
	until "$@"; do
		alive "$pid" "$name"
		((SECONDS < deadline)) || die "timed out after ${READY_TIMEOUT}s waiting for $desc"
		sleep 0.1
	done
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# free_ports N: print N distinct free TCP ports on 127.0.0.1.
free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# ---- build ---------------------------------------------------------------
if [[ -n ${MINICF_BIN:-} ]]; then
	[[ -x $MINICF_BIN ]] || die "MINICF_BIN=$MINICF_BIN is not an executable"
	MINICF=$MINICF_BIN
	log "using $MINICF; building bench backend and register"
else
	log "building bin/minicf, bench backend and register"
	mkdir -p bin
	go build -o bin/minicf ./cmd/minicf || die "go build ./cmd/minicf failed"
	MINICF=$ROOT/bin/minicf
fi
go build -o "$TMP/backend" ./bench/backend || die "go build ./bench/backend failed"
go build -o "$TMP/register" ./bench/register || die "go build ./bench/register failed"
go build -o "$TMP/rproxy" ./bench/rproxy || die "go build ./bench/rproxy failed"

PORTS=$(free_ports 3) || die "python3 could not find free ports"
read -r NATS_PORT ROUTER_PORT STATUS_PORT <<<"$PORTS"
NATS_URL="nats://$NATS_USER:$NATS_PASS@127.0.0.1:$NATS_PORT"

# ---- nats ----------------------------------------------------------------
log "starting minicf nats on 127.0.0.1:$NATS_PORT"
start nats "$MINICF" nats --listen "127.0.0.1:$NATS_PORT" --user "$NATS_USER" --password "$NATS_PASS"
NATS_PID=$LAST_PID
wait_until "NATS on port $NATS_PORT" "$NATS_PID" nats tcp_open 127.0.0.1 "$NATS_PORT"

# ---- backend -------------------------------------------------------------
log "starting bench backend"
start backend "$TMP/backend" -listen 127.0.0.1:0
BACKEND_PID=$LAST_PID
wait_until "backend to print its address" "$BACKEND_PID" backend \
	grep -qs '^listening on ' "$TMP/backend.log"
BACKEND_ADDR=$(sed -n 's/^listening on //p' "$TMP/backend.log" | head -n 1)
BACKEND_PORT=${BACKEND_ADDR##*:}
[[ $BACKEND_PORT =~ ^[0-9]+$ ]] || die "cannot parse backend address '$BACKEND_ADDR'"

# ---- router --------------------------------------------------------------
cat >"$TMP/router.yml" <<EOF
access_log:
  file: $TMP/access.log
start_response_delay: 0s
EOF
log "starting minicf router on 127.0.0.1:$ROUTER_PORT (status 127.0.0.1:$STATUS_PORT)"
start router "$MINICF" router --nats "$NATS_URL" \
	--listen "127.0.0.1:$ROUTER_PORT" --status "127.0.0.1:$STATUS_PORT" \
	--config "$TMP/router.yml"
ROUTER_PID=$LAST_PID
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" || true; }
health_ok() { [[ $(http_code "http://127.0.0.1:$STATUS_PORT/health") == 200 ]]; }
wait_until "router /health" "$ROUTER_PID" router health_ok

# ---- route registration ----------------------------------------------------
# Re-publish periodically, like a real DEA/route-emitter, so the route cannot
# be pruned as stale during a long run.
log "registering $ROUTE -> $BACKEND_ADDR"
start register "$TMP/register" -nats "$NATS_URL" -host 127.0.0.1 -port "$BACKEND_PORT" \
	-uri "$ROUTE" -app bench-app -id bench-1 -interval 10s
REGISTER_PID=$LAST_PID
route_ok() { [[ $(http_code -H "Host: $ROUTE" "http://127.0.0.1:$ROUTER_PORT/") == 200 ]]; }
wait_until "router to proxy $ROUTE with 200" "$ROUTER_PID" router route_ok
alive "$REGISTER_PID" register

# ---- calibration: Go's bare httputil.ReverseProxy ------------------------
log "starting the stdlib ReverseProxy baseline"
start rproxy "$TMP/rproxy" -listen 127.0.0.1:0 -backend "http://$BACKEND_ADDR"
RPROXY_PID=$LAST_PID
wait_until "rproxy to print its address" "$RPROXY_PID" rproxy \
	grep -qs '^listening on ' "$TMP/rproxy.log"
RPROXY_ADDR=$(sed -n 's/^listening on //p' "$TMP/rproxy.log" | head -n 1)

DIRECT_URL="http://$BACKEND_ADDR/"
PROXY_URL="http://127.0.0.1:$ROUTER_PORT/"
RPROXY_URL="http://$RPROXY_ADDR/"

# ---- wrk -------------------------------------------------------------------
# run_wrk OUTFILE DURATION URL [wrk args...]
run_wrk() {
	local out=$1 dur=$2 url=$3
	shift 3
	# Run in the background and wait, so a SIGTERM to this script is handled
	# right away (bash defers traps until a foreground child exits).
	wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency "$@" "$url" >"$out" 2>&1 &
	WRK_PID=$!
	local rc=0
	wait "$WRK_PID" || rc=$?
	WRK_PID=
	((rc == 0)) || { cat "$out" >&2; die "wrk failed (exit $rc) against $url"; }
}

# parse_wrk FILE: print "reqs_per_sec p50_ms p99_ms errors" where errors is
# non-2xx/3xx responses plus socket errors (connect/read/write/timeout).
parse_wrk() {
	awk '
	function ms(v,   n, u) {
		n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") return n / 1000
		if (u == "ms") return n
		if (u == "s")  return n * 1000
		if (u == "m")  return n * 60000
		if (u == "h")  return n * 3600000
		return -1
	}
	/^Requests\/sec:/             { rps = $2 }
	/^ *50% /                     { p50 = ms($2) }
	/^ *99% /                     { p99 = ms($2) }
	/Non-2xx or 3xx responses:/   { err += $NF }
	/Socket errors:/ {
		for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { x = $i; sub(/,/, "", x); err += x }
	}
	END {
		if (rps == "" || p50 == "" || p99 == "") exit 1
		printf "%.2f %.3f %.3f %d\n", rps, p50, p99, err
	}' "$1"
}

# median [PRINTF_FMT]: median of the numbers on stdin (mean of the middle
# two if even).
median() {
	sort -g | awk -v f="${1:-%.3f}\n" '{ v[NR] = $1 } END {
		if (NR == 0) exit 1
		if (NR % 2) printf f, v[(NR + 1) / 2]
		else printf f, (v[NR / 2] + v[NR / 2 + 1]) / 2
	}'
}

log "warm-up: ${WARMUP} each, direct, proxied and rproxy"
run_wrk "$TMP/warmup-direct.txt" "$WARMUP" "$DIRECT_URL"
run_wrk "$TMP/warmup-proxied.txt" "$WARMUP" "$PROXY_URL" -H "Host: $ROUTE"
run_wrk "$TMP/warmup-rproxy.txt" "$WARMUP" "$RPROXY_URL"

: >"$TMP/results.txt"
printf '\n%-6s %-8s %12s %10s %10s %8s\n' round target 'req/s' 'p50(ms)' 'p99(ms)' errors
for ((r = 1; r <= ROUNDS; r++)); do
	for target in direct proxied rproxy; do
		out="$TMP/wrk-$target-$r.txt"
		case $target in
		direct) run_wrk "$out" "$DURATION" "$DIRECT_URL" ;;
		proxied) run_wrk "$out" "$DURATION" "$PROXY_URL" -H "Host: $ROUTE" ;;
		rproxy) run_wrk "$out" "$DURATION" "$RPROXY_URL" ;;
		esac
		alive "$ROUTER_PID" router
		res=$(parse_wrk "$out") || { cat "$out" >&2; die "cannot parse wrk output ($out)"; }
		read -r rps p50 p99 errs <<<"$res"
		echo "$target $rps $p50 $p99 $errs" >>"$TMP/results.txt"
		printf '%-6s %-8s %12s %10s %10s %8s\n' "$r" "$target" "$rps" "$p50" "$p99" "$errs"
	done
done

col() { awk -v t="$1" -v c="$2" '$1 == t { print $c }' "$TMP/results.txt"; }
printf '\nmedians over %d round(s), wrk -t%s -c%s -d%s:\n' "$ROUNDS" "$THREADS" "$CONNS" "$DURATION"
printf '%-8s %12s %10s %10s\n' target 'req/s' 'p50(ms)' 'p99(ms)'
for target in direct proxied rproxy; do
	printf '%-8s %12s %10s %10s\n' "$target" \
		"$(col "$target" 2 | median %.2f)" "$(col "$target" 3 | median)" "$(col "$target" 4 | median)"
done
direct_rps=$(col direct 2 | median)
proxied_rps=$(col proxied 2 | median)
rproxy_rps=$(col rproxy 2 | median)
awk -v p="$proxied_rps" -v d="$direct_rps" -v b="$rproxy_rps" 'BEGIN {
	if (d > 0) printf "ratio proxied/direct (median req/s): %.3f\n", p / d; else print "ratio proxied/direct: n/a (direct req/s is 0)"
	if (d > 0) printf "ratio rproxy/direct (stdlib ReverseProxy baseline): %.3f\n", b / d
	if (b > 0) printf "ratio proxied/rproxy (minicf router vs bare ReverseProxy): %.2f\n", p / b
}'

total_errs=$(awk '{ s += $5 } END { print s + 0 }' "$TMP/results.txt")
if ((total_errs > 0)); then
	echo "WARNING: $total_errs non-2xx/3xx responses or socket errors across runs (see errors column)" >&2
fi

# ---- router resources ------------------------------------------------------
if [[ -r /proc/$ROUTER_PID/status ]]; then
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$ROUTER_PID/status")
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$ROUTER_PID/status")
	printf 'router RSS: %.1f MiB (peak %.1f MiB)\n' "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" \
		"$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')"
else
	echo "router RSS: $(ps -o rss= -p "$ROUTER_PID" 2>/dev/null || echo '?') KiB"
fi
if [[ -f $TMP/access.log ]]; then
	echo "router access log: $(wc -l <"$TMP/access.log") lines"
else
	echo "WARNING: router access log $TMP/access.log was not written" >&2
fi
