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
#   ROUTES     routes in the table: the measured one plus ROUTES-1 dummy
#              routes to other hosts/ports                  (default 1)
#   TLS=1      the router reaches the app with TLS (tls_port, a cert for SAN
#              bench-instance signed by a CA made here, backends.ca_file);
#              direct runs use the same process's plain-HTTP port (default 0)
#   KEEPALIVE=0 every wrk request carries 'Connection: close' (default 1)
#   RPROXY=0   skip the stdlib ReverseProxy baseline        (default 1)
#   RESULTS_FILE append the summary table and a SUMMARY line to this file
#   KEEP_TMP=1 keep the temp dir (logs, wrk output) instead of deleting it
#   MINICF_BIN use this prebuilt minicf binary instead of building bin/minicf
#
# Starts: minicf nats, the bench backend, minicf router (access log on), and a
# route registrar. Every PID it starts is recorded and killed on exit.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
ROUTES=${ROUTES:-1}
TLS=${TLS:-0}
KEEPALIVE=${KEEPALIVE:-1}
RPROXY=${RPROXY:-1}
ROUTE=bench.apps.localhost
NATS_USER=nats
NATS_PASS=nats
READY_TIMEOUT=${READY_TIMEOUT:-30} # seconds, per readiness wait

export PATH="/usr/local/go/bin:$PATH"

need wrk "apt-get install wrk"
need curl "apt-get install curl"
need python3 "apt-get install python3"
need go "install Go (expected at /usr/local/go)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $ROUTES =~ ^[1-9][0-9]*$ ]] || die "ROUTES must be a positive integer, got '$ROUTES'"
[[ $TLS == 0 || $TLS == 1 ]] || die "TLS must be 0 or 1, got '$TLS'"
[[ $KEEPALIVE == 0 || $KEEPALIVE == 1 ]] || die "KEEPALIVE must be 0 or 1, got '$KEEPALIVE'"
[[ $RPROXY == 0 || $RPROXY == 1 ]] || die "RPROXY must be 0 or 1, got '$RPROXY'"
((TLS == 0)) || need openssl "apt-get install openssl"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/minicf-bench.XXXXXX")
WRK_PID=  # the wrk currently running, if any

cleanup() {
	local rc=$?
	set +e
	[[ -n ${WRK_PID:-} ]] && kill -TERM "$WRK_PID" 2>/dev/null && wait "$WRK_PID" 2>/dev/null
	# Stop in reverse start order; TERM first, KILL after a grace period.
	stop_started 5
	if ((rc != 0)); then
		local f
		for f in "$TMP"/*.log; do
			[[ -f $f && $(basename "$f") != access.log ]] || continue
			echo "---- last lines of $(basename "$f") ----" >&2
			tail -n 20 "$f" >&2
		done
	fi
	remove_tmp
	exit "$rc"
}
on_exit cleanup

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
go build -o "$TMP/register100k" ./bench/register100k || die "go build ./bench/register100k failed"
((TLS == 0)) || go build -o "$TMP/tlsbackend" ./bench/tlsbackend || die "go build ./bench/tlsbackend failed"
CONFIG="routes=$ROUTES tls=$TLS keepalive=$KEEPALIVE"

PORTS=$(free_ports 3) || die "python3 could not find free ports"
read -r NATS_PORT ROUTER_PORT STATUS_PORT <<<"$PORTS"
NATS_URL="nats://$NATS_USER:$NATS_PASS@127.0.0.1:$NATS_PORT"

# ---- nats ----------------------------------------------------------------
log "starting minicf nats on 127.0.0.1:$NATS_PORT"
start nats "$MINICF" nats --listen "127.0.0.1:$NATS_PORT" --user "$NATS_USER" --password "$NATS_PASS"
NATS_PID=$LAST_PID
wait_until "NATS on port $NATS_PORT" "$NATS_PID" nats tcp_open 127.0.0.1 "$NATS_PORT"

# ---- backend -------------------------------------------------------------
SAN=bench-instance
if ((TLS == 1)); then
	log "making a CA and a backend certificate for SAN $SAN"
	(
		cd "$TMP"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
			-subj "/CN=minicf bench CA" -addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign"
		openssl req -newkey rsa:2048 -nodes -keyout backend.key -out backend.csr -subj "/CN=$SAN"
		printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' "$SAN" >backend.ext
		openssl x509 -req -in backend.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
			-extfile backend.ext -out backend.pem
	) >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; die "openssl failed"; }
	log "starting TLS bench backend"
	start backend "$TMP/tlsbackend" -listen 127.0.0.1:0 -tls-listen 127.0.0.1:0 \
		-cert "$TMP/backend.pem" -key "$TMP/backend.key"
	BACKEND_PID=$LAST_PID
	wait_until "backend to print its TLS address" "$BACKEND_PID" backend \
		grep -qs '^tls listening on ' "$TMP/backend.log"
	BACKEND_TLS_ADDR=$(sed -n 's/^tls listening on //p' "$TMP/backend.log" | head -n 1)
	BACKEND_TLS_PORT=${BACKEND_TLS_ADDR##*:}
else
	log "starting bench backend"
	start backend "$TMP/backend" -listen 127.0.0.1:0
	BACKEND_PID=$LAST_PID
fi
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
((TLS == 0)) || printf 'backends:\n  ca_file: %s\n' "$TMP/ca.pem" >>"$TMP/router.yml"
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
if ((TLS == 1)); then
	log "registering $ROUTE -> 127.0.0.1 tls_port $BACKEND_TLS_PORT (SAN $SAN)"
	start register "$TMP/register100k" -nats "$NATS_URL" -n 1 -uri-fmt "$ROUTE" -host 127.0.0.1 \
		-port "$BACKEND_PORT" -tls-port "$BACKEND_TLS_PORT" -san "$SAN" -app bench-app -interval 10s
else
	log "registering $ROUTE -> $BACKEND_ADDR"
	start register "$TMP/register" -nats "$NATS_URL" -host 127.0.0.1 -port "$BACKEND_PORT" \
		-uri "$ROUTE" -app bench-app -id bench-1 -interval 10s
fi
REGISTER_PID=$LAST_PID
metric() { # metric NAME: its value on the router's /metrics (first sample)
	curl -s --max-time 2 "http://127.0.0.1:$STATUS_PORT/metrics" |
		awk -v n="$1" '$1 == n || index($1, n "{") == 1 { print $2; exit }'
}
if ((ROUTES > 1)); then
	# Dummy routes to ports nothing listens on (never dialled), on 127.0.0.2
	# so they cannot collide with the backend.
	log "registering $((ROUTES - 1)) dummy routes"
	start dummies "$TMP/register100k" -nats "$NATS_URL" -n "$((ROUTES - 1))" \
		-uri-fmt 'dummy-%d.apps.localhost' -host 127.0.0.2 -port 30000 -app dummy -interval 10s
	DUMMIES_PID=$LAST_PID
	routes_ok() { local n; n=$(metric minicf_router_total_routes); [[ -n $n ]] && awk -v n="$n" -v w="$ROUTES" 'BEGIN { exit !(n >= w) }'; }
	wait_until "router to hold $ROUTES routes" "$ROUTER_PID" router routes_ok
	alive "$DUMMIES_PID" dummies
fi
route_ok() { [[ $(http_code -H "Host: $ROUTE" "http://127.0.0.1:$ROUTER_PORT/") == 200 ]]; }
wait_until "router to proxy $ROUTE with 200" "$ROUTER_PID" router route_ok
alive "$REGISTER_PID" register

log "router holds $(metric minicf_router_total_routes) routes"

# ---- calibration: Go's bare httputil.ReverseProxy ------------------------
TARGETS="direct proxied"
if ((RPROXY == 1)); then
	TARGETS="direct proxied rproxy"
	log "starting the stdlib ReverseProxy baseline"
	start rproxy "$TMP/rproxy" -listen 127.0.0.1:0 -backend "http://$BACKEND_ADDR"
	RPROXY_PID=$LAST_PID
	wait_until "rproxy to print its address" "$RPROXY_PID" rproxy \
		grep -qs '^listening on ' "$TMP/rproxy.log"
	RPROXY_ADDR=$(sed -n 's/^listening on //p' "$TMP/rproxy.log" | head -n 1)
else
	RPROXY_ADDR=none
fi
WRK_EXTRA=()
((KEEPALIVE == 1)) || WRK_EXTRA=(-H 'Connection: close')

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
	wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency ${WRK_EXTRA[@]+"${WRK_EXTRA[@]}"} "$@" "$url" >"$out" 2>&1 &
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

log "warm-up: ${WARMUP} each: $TARGETS ($CONFIG)"
run_wrk "$TMP/warmup-direct.txt" "$WARMUP" "$DIRECT_URL"
run_wrk "$TMP/warmup-proxied.txt" "$WARMUP" "$PROXY_URL" -H "Host: $ROUTE"
((RPROXY == 0)) || run_wrk "$TMP/warmup-rproxy.txt" "$WARMUP" "$RPROXY_URL"

: >"$TMP/results.txt"
printf '\n%-6s %-8s %12s %10s %10s %8s\n' round target 'req/s' 'p50(ms)' 'p99(ms)' errors
for ((r = 1; r <= ROUNDS; r++)); do
	for target in $TARGETS; do
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
{
printf '\nmedians over %d round(s), wrk -t%s -c%s -d%s%s, %s:\n' "$ROUNDS" "$THREADS" "$CONNS" "$DURATION" \
	"$( ((KEEPALIVE == 1)) || echo " -H 'Connection: close'")" "$CONFIG"
printf '%-8s %12s %10s %10s\n' target 'req/s' 'p50(ms)' 'p99(ms)'
for target in $TARGETS; do
	printf '%-8s %12s %10s %10s\n' "$target" \
		"$(col "$target" 2 | median %.2f)" "$(col "$target" 3 | median)" "$(col "$target" 4 | median)"
done
direct_rps=$(col direct 2 | median)
proxied_rps=$(col proxied 2 | median)
rproxy_rps=0
((RPROXY == 0)) || rproxy_rps=$(col rproxy 2 | median)
awk -v p="$proxied_rps" -v d="$direct_rps" -v b="$rproxy_rps" 'BEGIN {
	if (d > 0) printf "ratio proxied/direct (median req/s): %.3f\n", p / d; else print "ratio proxied/direct: n/a (direct req/s is 0)"
	if (d > 0 && b > 0) printf "ratio rproxy/direct (stdlib ReverseProxy baseline): %.3f\n", b / d
	if (b > 0) printf "ratio proxied/rproxy (minicf router vs bare ReverseProxy): %.2f\n", p / b
}'
# One machine-readable line for bench/router-matrix.sh:
# SUMMARY routes tls keepalive direct_rps router_rps ratio router_p50 router_p99 errors
awk -v c="$ROUTES $TLS $KEEPALIVE" -v p="$proxied_rps" -v d="$direct_rps" \
	-v p50="$(col proxied 3 | median)" -v p99="$(col proxied 4 | median)" \
	-v e="$(awk '{ s += $5 } END { print s + 0 }' "$TMP/results.txt")" \
	'BEGIN { printf "SUMMARY %s %.2f %.2f %.3f %.3f %.3f %d\n", c, d, p, (d > 0 ? p / d : 0), p50, p99, e }'
} | tee -a "${RESULTS_FILE:-/dev/null}"

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
