#!/usr/bin/env bash
# bench/routes100k.sh: route table scale. Registers N (default 100,000)
# routes over NATS as fast as one client can publish (bench/register100k:
# one router.register per route, each to its own 10.x.y.z:8080, then a
# flush), polls the router's /metrics minicf_router_total_routes until all
# are there, and reports: time to register, the router's RSS before/after
# (bytes per route), lookup latency (curl -w '%{time_total}') before and
# after for a routed request to a real backend (200) and an unknown host
# (404), and dropped registrations (route count, /routes, and
# minicf_router_nats_dropped_messages_total).
#
# Usage: bench/routes100k.sh
# Environment:
#   N          routes to register                    (default 100000)
#   TIMEOUT    seconds to wait for all routes        (default 100; under the
#              120 s stale threshold, so pruning cannot eat routes)
#   CURLS      curls per latency measurement         (default 20)
#   MINICF_BIN use this prebuilt minicf binary instead of building bin/minicf
#   KEEP_TMP=1 keep the temp dir
# Results: bench/results/routes100k-<date>-<hostname>.txt
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export LC_ALL=C
export PATH="/usr/local/go/bin:$PATH"

N=${N:-100000}
TIMEOUT=${TIMEOUT:-100}
CURLS=${CURLS:-20}
ROUTE=bench.apps.localhost

for c in curl python3 go; do command -v $c >/dev/null 2>&1 || die "$c not found"; done
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/minicf-routes.XXXXXX")
cleanup() {
	local rc=$?
	set +e
	stop_started 5
	if ((rc != 0)); then
		for f in "$TMP"/*.log; do [[ -f $f ]] && { echo "---- $(basename "$f") ----" >&2; tail -n 20 "$f" >&2; }; done
	fi
	remove_tmp
	exit "$rc"
}
on_exit cleanup
wait_for() { # wait_for DESC SECONDS CMD...
	local desc=$1 t=$2; shift 2
	local deadline=$((SECONDS + t))
	until "$@"; do ((SECONDS < deadline)) || die "timed out waiting for $desc"; sleep 0.1; done
}

if [[ -n ${MINICF_BIN:-} ]]; then MINICF=$MINICF_BIN; else
	log "building bin/minicf"; mkdir -p bin; go build -o bin/minicf ./cmd/minicf; MINICF=$ROOT/bin/minicf
fi
go build -o "$TMP/backend" ./bench/backend
go build -o "$TMP/register" ./bench/register
go build -o "$TMP/register100k" ./bench/register100k

read -r NATS_PORT ROUTER_PORT STATUS_PORT <<<"$(free_ports 3)"
NATS_URL="nats://nats:nats@127.0.0.1:$NATS_PORT"

start nats "$MINICF" nats --listen "127.0.0.1:$NATS_PORT" --user nats --password nats
wait_for "nats" 30 tcp_open 127.0.0.1 "$NATS_PORT"
start backend "$TMP/backend" -listen 127.0.0.1:0
wait_for "backend" 30 grep -qs '^listening on ' "$TMP/backend.log"
BACKEND_ADDR=$(sed -n 's/^listening on //p' "$TMP/backend.log" | head -n 1)
printf 'start_response_delay: 0s\n' >"$TMP/router.yml"
start router "$MINICF" router --nats "$NATS_URL" --listen "127.0.0.1:$ROUTER_PORT" \
	--status "127.0.0.1:$STATUS_PORT" --config "$TMP/router.yml"
ROUTER_PID=$LAST_PID
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" || true; }
wait_for "router /health" 30 eval '[[ $(code http://127.0.0.1:$STATUS_PORT/health) == 200 ]]'
"$TMP/register" -nats "$NATS_URL" -host 127.0.0.1 -port "${BACKEND_ADDR##*:}" -uri "$ROUTE" >/dev/null
wait_for "$ROUTE" 30 eval '[[ $(code -H "Host: $ROUTE" http://127.0.0.1:$ROUTER_PORT/) == 200 ]]'

metric() {
	curl -s --max-time 5 "http://127.0.0.1:$STATUS_PORT/metrics" |
		awk -v n="$1" '$1 == n || index($1, n "{") == 1 { print $2; exit }'
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$ROUTER_PID/status"; }
# latency HOST: median and max of CURLS curls' time_total, in ms, and the codes seen
latency() {
	local i
	for ((i = 0; i < CURLS; i++)); do
		curl -s -o /dev/null -w '%{time_total} %{http_code}\n' --max-time 5 -H "Host: $1" "http://127.0.0.1:$ROUTER_PORT/"
	done | sort -g | awk '{ t[NR] = $1 * 1000; c[$2]++ } END {
		codes = ""; for (k in c) codes = codes k "x" c[k] " "
		printf "p50 %.3f ms  max %.3f ms  (%s)", t[int((NR + 1) / 2)], t[NR], codes }'
}

sleep 1
RSS0=$(rss_kib)
LAT0_OK=$(latency "$ROUTE")
LAT0_404=$(latency "nope.apps.localhost")
ROUTES0=$(metric minicf_router_total_routes)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

log "registering $N routes"
T0=$(date +%s.%N)
"$TMP/register100k" -nats "$NATS_URL" -n "$N" -uri-fmt 'r%d.apps.localhost' -host spread -port 8080 -port-step 0 >"$TMP/register100k.log" 2>&1 ||
	die "register100k failed: $(cat "$TMP/register100k.log")"
T1=$(date +%s.%N)
WANT=$((ROUTES0 + N))
HAVE=0
deadline=$((SECONDS + TIMEOUT))
while :; do
	HAVE=$(metric minicf_router_total_routes); HAVE=${HAVE:-0}
	awk -v h="$HAVE" -v w="$WANT" 'BEGIN { exit !(h >= w) }' && break
	((SECONDS < deadline)) || break
	kill -0 "$ROUTER_PID" 2>/dev/null || die "router exited"
	sleep 0.05
done
T2=$(date +%s.%N)
sleep 1
RSS1=$(rss_kib)
HWM1=$(awk '/^VmHWM:/ { print $2 }' "/proc/$ROUTER_PID/status")
LAT1_OK=$(latency "$ROUTE")
LAT1_404=$(latency "nope.apps.localhost")
DROPPED=$(metric minicf_router_nats_dropped_messages_total)
ROUTES_JSON=$(curl -s --max-time 30 "http://127.0.0.1:$STATUS_PORT/routes" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo '?')
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

STAMP=$(date +%Y%m%d-%H%M%S)
HOST=$(hostname -s 2>/dev/null || hostname)
mkdir -p bench/results
RESULTS=bench/results/routes100k-$STAMP-$HOST.txt
{
	echo "# bench/routes100k.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "# host: $HOST  $(uname -srm)  cpus: $(nproc)  $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)  go: $(go version | cut -d' ' -f3)"
	echo "# load average before: $LOAD0  after: $LOAD1"
	echo "# N=$N (each route r<i>.apps.localhost -> its own 10.x.y.z:8080), TIMEOUT=${TIMEOUT}s, CURLS=$CURLS"
	printf '%-52s %s\n' "publish (register100k, incl. flush)" "$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f s", b - a }')  [$(cat "$TMP/register100k.log")]"
	printf '%-52s %s\n' "all routes in the table (from first publish)" "$(awk -v a="$T0" -v b="$T2" -v h="$HAVE" -v w="$WANT" -v n="$N" 'BEGIN { printf "%.2f s (%.0f routes/s)%s", b - a, n / (b - a), (h < w ? "  INCOMPLETE" : "") }')"
	printf '%-52s %s\n' "routes (minicf_router_total_routes)" "$HAVE of $WANT wanted (before: $ROUTES0)"
	printf '%-52s %s\n' "routes in /routes" "$ROUTES_JSON"
	printf '%-52s %s\n' "dropped (want - have)" "$((WANT - ${HAVE%.*}))"
	printf '%-52s %s\n' "minicf_router_nats_dropped_messages_total" "${DROPPED:-?}"
	printf '%-52s %s\n' "router RSS before / after (peak)" "$(awk -v a="$RSS0" -v b="$RSS1" -v h="$HWM1" 'BEGIN { printf "%.1f MiB / %.1f MiB (%.1f MiB)", a / 1024, b / 1024, h / 1024 }')"
	printf '%-52s %s\n' "RSS per route" "$(awk -v a="$RSS0" -v b="$RSS1" -v n="$N" 'BEGIN { printf "%.0f bytes", (b - a) * 1024 / n }')"
	printf '%-52s %s\n' "lookup+proxy $ROUTE, 1 route" "$LAT0_OK"
	printf '%-52s %s\n' "lookup+proxy $ROUTE, $N routes" "$LAT1_OK"
	printf '%-52s %s\n' "unknown host (404), 1 route" "$LAT0_404"
	printf '%-52s %s\n' "unknown host (404), $N routes" "$LAT1_404"
} | tee "$RESULTS"
echo "results: $RESULTS" >&2
awk -v h="$HAVE" -v w="$WANT" 'BEGIN { exit !(h >= w) }' || die "only $HAVE of $WANT routes arrived"
