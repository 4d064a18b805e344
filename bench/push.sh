#!/usr/bin/env bash
# bench/push.sh: issues 6 and 8's benchmark. Runs `minicf up` (the whole
# foundation in one process) in a temp MINICF_HOME on free ports, pushes
# examples/hello once as "warmup" (the first build, which fills the Go build
# cache) and keeps it running, then:
#   (1) ROUTE_REPEAT cycles on that running app, each with a fresh hostname rN:
#       `minicf map-route warmup apps.localhost --hostname rN` to the first 200
#       on rN.apps.localhost, then `minicf unmap-route ...` to the first 404,
#       each from the command's start and from its return;
#   (2) REPEAT rounds of `minicf push benchN -p examples/hello`: its wall time,
#       push start and push return → the first 200 through the router, the
#       instance's RUNNING (its since in the BBS) → that first 200, where the
#       push's time goes; then `minicf delete benchN -f -r`.
# Prints a table per cycle and per round, and p50/p90/p99/max and n per
# measure against the goals:
#   push start → first 200             < 3 s (after the first build)
#   map-route → first 200              < 250 ms
#   unmap-route → first 404            < 250 ms
# and writes it all to bench/results/push-<date>-<hostname>.txt.
#
# Every command is run by bench/probe (built here), which starts polling the
# router when it starts the command, over one keep-alive connection, every
# POLL (PUSH_POLL while a push runs), and says when the wanted status first
# came back. The "window" columns are its resolution: from the last probe
# that still saw the old answer being sent to the first new answer arriving.
#
# Timing (2 cores shared with other work at load 5-7, 2026-11-26): a push
# round takes 2.1-2.4 s (push ~1.8 s, the phases' look-ups and the delete
# ~0.4 s), a map/unmap cycle ~0.1 s, `minicf up` and the warm-up ~10 s: the
# defaults take 2-2.5 minutes, which leaves bench/run.sh (everything else
# too, ~5 minutes in all) well inside its 600 s.
# The delete does not wait for the instance to leave the BBS (WAIT_GONE=1
# does): every stop waits the rep's ProxyReloadWait (5 s, Diego's
# containers.proxy.configuration_reload_duration) before it destroys the
# container, which would triple a round; the stopping instances of earlier
# rounds (each cell has 8 GiB, an instance 256 MiB) are destroyed meanwhile,
# ~50 ms of CPU inside a later round.
#
# Usage: bench/push.sh
# Environment:
#   REPEAT        measured pushes                                   (default 50)
#   ROUTE_REPEAT  map-route/unmap-route cycles                      (default 50)
#   MODE          process or namespace (default: namespace when root and ip and
#                 iptables are there, else process)
#   POLL          pause between two probes, a Go duration           (default 1ms)
#   PUSH_POLL     pause between two probes while a push runs, when the route
#                 cannot be there yet: a probe every ms would take CPU from
#                 staging                                           (default 5ms)
#   ROUTE_TIMEOUT seconds to wait for a 200 / 404 after a command returned (default 30)
#   READY_TIMEOUT seconds to wait for `minicf up` to be ready        (default 120)
#   WAIT_GONE=1   after each delete, wait until the instance left the BBS, and
#                 report delete → gone (~5 s: the ProxyReloadWait above)
#   APP_DIR       the app to push                                  (default examples/hello)
#   COLD_CACHE=1  stage with an empty Go build cache (GOCACHE=<tmp>/gocache for
#                 minicf up), so the warm-up is a real first build; by default
#                 staging uses the host's GOCACHE, already warm where minicf was built.
#                 In namespace mode add PUSH_ARGS="-m 1G": the staging Task gets the
#                 app's memory limit (256M by default) and a cold `go build` is
#                 OOM-killed in that memory cgroup
#   PUSH_ARGS     extra flags for every push, e.g. "-m 1G"            (default none)
#   TRACE=off     run minicf up with --trace off (where the binary has the flag;
#                 default: the trace API on a free port)
#   RESULTS_FILE  where to write the results (default bench/results/push-<date>-<host>.txt)
#   KEEP_TMP=1    keep the temp dir (MINICF_HOME, logs, command outputs, probe lines)
#   MINICF_BIN    use this prebuilt minicf binary instead of building bin/minicf
#   PROBE_BIN     use this prebuilt bench/probe instead of building one
#
# Percentiles are nearest-rank: pP of n values is the ceil(P/100 * n)-th
# smallest, so p99 is the max for n <= 100 (p90 of 50 values is the 45th).
# Times of the push's phases come from the CLI's own output lines (stamped
# as they arrive), the staging log (`minicf logs --recent`, 10 ms
# resolution) and the BBS (`cfdot actual-lrps`: the instance's RUNNING
# since, in ns on this host's clock, which is the clock of the probe's
# time stamps too).
#
# Every PID it starts is recorded and killed on exit; in namespace mode the
# foundation's namespaces and links (its own --prefix) are removed with
# `minicf down` at the end.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export LC_ALL=C # $EPOCHREALTIME with a '.'

REPEAT=${REPEAT:-50}
ROUTE_REPEAT=${ROUTE_REPEAT:-50}
POLL=${POLL:-1ms}
PUSH_POLL=${PUSH_POLL:-5ms}
WAIT_GONE=${WAIT_GONE:-0}
ROUTE_TIMEOUT=${ROUTE_TIMEOUT:-30}
READY_TIMEOUT=${READY_TIMEOUT:-120}
DOMAIN=apps.localhost
PUSH_GOAL_MS=3000
ROUTE_GOAL_MS=250

export PATH="/usr/local/go/bin:$PATH"

need curl "apt-get install curl"
need python3 "apt-get install python3"
need go "install Go (expected at /usr/local/go)"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer, got '$REPEAT'"
[[ $ROUTE_REPEAT =~ ^[0-9]+$ ]] || die "ROUTE_REPEAT must be a number (0: no map/unmap cycles), got '$ROUTE_REPEAT'"
[[ $ROUTE_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "ROUTE_TIMEOUT must be a positive integer (seconds), got '$ROUTE_TIMEOUT'"
[[ $READY_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "READY_TIMEOUT must be a positive integer (seconds), got '$READY_TIMEOUT'"
[[ $POLL =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]] || die "POLL must be a Go duration such as 1ms or 500us, got '$POLL'"
[[ $PUSH_POLL =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]] || die "PUSH_POLL must be a Go duration such as 5ms, got '$PUSH_POLL'"
[[ $WAIT_GONE == [01] ]] || die "WAIT_GONE must be 0 or 1, got '$WAIT_GONE'"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash 5 or later is needed (\$EPOCHREALTIME)"

ns_ok() {
	[[ $(id -u) == 0 ]] || return 1
	local t
	for t in ip iptables iptables-restore iptables-save; do
		command -v "$t" >/dev/null 2>&1 || return 1
	done
}
if [[ -z ${MODE:-} ]]; then
	if ns_ok; then MODE=namespace; else MODE=process; fi
fi
case $MODE in
process) ;;
namespace) ns_ok || die "MODE=namespace needs root, ip and iptables (apt-get install iproute2 iptables); use MODE=process" ;;
*) die "MODE must be process or namespace, got '$MODE'" ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
APP_DIR=${APP_DIR:-$ROOT/examples/hello}
[[ -d $APP_DIR ]] || die "APP_DIR=$APP_DIR is not a directory"
APP_DIR=$(cd "$APP_DIR" && pwd)

STAMP=$(date +%Y%m%d-%H%M%S)
HOST=$(hostname -s 2>/dev/null || hostname)
RESULTS_FILE=${RESULTS_FILE:-$ROOT/bench/results/push-$STAMP-$HOST.txt}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/minicf-push.XXXXXX")
MCF_HOME=$TMP/home
REPORT=$TMP/report.txt
PREFIX=   # namespace mode: the foundation's name prefix, once chosen
MINICF=

cleanup() {
	local rc=$?
	set +e
	trap - INT TERM
	# minicf up stops its instances (each with its grace period) first: give it a minute.
	stop_started 60
	# Anything still running from our MINICF_HOME was started by our
	# foundation and outlived it: say so (it is a bug) and stop it.
	local left
	left=$(processes_under "$MCF_HOME")
	if [[ -n $left ]]; then
		echo "push.sh: WARNING: processes of the foundation outlived minicf up: $left" >&2
		ps -o pid,ppid,etime,args -p "${left// /,}" >&2
		kill -KILL $left 2>/dev/null
	fi
	if [[ -n $PREFIX && -n $MINICF ]]; then
		local out
		if ! out=$("$MINICF" down --prefix "$PREFIX" --home "$MCF_HOME" 2>&1); then
			echo "push.sh: minicf down --prefix $PREFIX failed:" >&2
			echo "$out" >&2
		elif [[ $out =~ (killed|namespaces|cgroups): ]]; then
			echo "push.sh: WARNING: minicf up left these behind (removed now by minicf down --prefix $PREFIX):" >&2
			echo "$out" >&2
		elif [[ $out != "nothing to remove" ]]; then
			echo "push.sh: minicf down --prefix $PREFIX removed the foundation's $(echo "$out" | tr '\n' ' ')" >&2
		fi
	fi
	if ((rc != 0)) && [[ -f $TMP/up.log ]]; then
		echo "---- last lines of minicf up's log ($TMP/up.log) ----" >&2
		tail -n 30 "$TMP/up.log" >&2
	fi
	remove_tmp "MINICF_HOME=$MCF_HOME"
	exit "$rc"
}
on_exit cleanup

# processes_under DIR: PIDs (space-separated) whose command line names DIR.
processes_under() {
	local p out=() cmd
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $p == "$$" || $p == "$BASHPID" ]] && continue
		cmd=$( { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) || continue
		[[ $cmd == *"$1"* ]] && out+=("$p")
	done
	echo "${out[*]}"
}

# now: microseconds since the epoch, without a fork.
now() { NOW=${EPOCHREALTIME/./}; }

# ms FROM TO: TO-FROM (microseconds) in milliseconds with one decimal.
ms() {
	local d=$(($2 - $1)) s=
	((d < 0)) && s=- && d=$((-d))
	printf '%s%d.%d' "$s" $((d / 1000)) $((d % 1000 / 100))
}

# free_ranges: the private /16s 10.240-254 (not 10.244, the default) that
# overlap no route, address or DNS resolver of this host, shuffled.
free_ranges() {
	{
		ip -4 -o route show table all
		ip -4 -o addr show
	} | python3 -c '
import ipaddress, random, re, sys
used = []
for line in sys.stdin:
    for tok in line.split():
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+(/\d+)?", tok):
            try:
                used.append(ipaddress.ip_network(tok, strict=False))
            except ValueError:
                pass
for path in ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"):
    try:
        for l in open(path):
            f = l.split()
            if len(f) >= 2 and f[0] == "nameserver" and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", f[1]):
                used.append(ipaddress.ip_network(f[1] + "/32"))
    except OSError:
        pass
free = []
for b in range(240, 255):
    if b == 244:
        continue
    n = ipaddress.ip_network("10.%d.0.0/16" % b)
    if not any(n.overlaps(u) for u in used if u.prefixlen > 0):
        free.append(str(n))
random.shuffle(free)
print(" ".join(free))
'
}

# cli VERB ARGS...: the minicf CLI against our foundation.
cli() { MINICF_HOME=$MCF_HOME "$MINICF" "$@"; }

# stamp: prefix each line of stdin with the microsecond it arrived.
stamp() {
	local line
	while IFS= read -r line; do
		printf '%s %s\n' "${EPOCHREALTIME/./}" "$line"
	done
}

# probed NAME HOST WANT BODY INTERVAL_DURING CMD...: run CMD under bench/probe,
# which polls HOST through the router from CMD's start until it answers WANT
# (with BODY in the body, unless BODY is empty). CMD's output, each line
# stamped as it arrives, goes to $TMP/NAME.out; the probe's fields to PR_*
# (see bench/probe: PR_wall_ms, PR_start_to_want_ms, PR_return_to_want_ms,
# PR_already, PR_probes, PR_first_status, PR_window_ms, PR_rtt_ms, PR_start_us,
# PR_return_us, PR_want_us, ...). Dies when CMD fails or WANT never comes.
probed() {
	local name=$1 host=$2 want=$3 body=$4 during=$5 rc=0 kv f
	shift 5
	rm -f "$TMP/$name.probe"
	MINICF_HOME=$MCF_HOME "$PROBE" --router "127.0.0.1:$ROUTER_PORT" --host "$host" --want "$want" \
		${body:+--body-contains "$body"} --interval "$POLL" --interval-during "$during" \
		--timeout "${ROUTE_TIMEOUT}s" --result "$TMP/$name.probe" -- "$@" 2>&1 | stamp >"$TMP/$name.out" || rc=$?
	if ((rc != 0)); then
		sed 's/^[0-9]* //' "$TMP/$name.out" >&2
		alive "$UP_PID" "minicf up"
		case $rc in
		3) die "$* failed (its output is above)" ;;
		*) die "$host did not answer $want through the router within ${ROUTE_TIMEOUT}s of minicf $2's return (bench/probe exit $rc; above)" ;;
		esac
	fi
	read -r -a f <"$TMP/$name.probe" || die "bench/probe wrote no result for $name"
	for kv in "${f[@]:1}"; do
		printf -v "PR_${kv%%=*}" '%s' "${kv#*=}"
	done
}

# route_now HOST: for a message, what HOST answers now and what the
# router's table holds for it.
route_now() {
	printf '\n---- GET / with Host: %s now ----\n' "$1"
	curl -s -i --max-time 2 -H "Host: $1" "$ROUTER_URL/" | head -c 600
	printf '\n---- the router'"'"'s /routes entries for %s ----\n' "$1"
	curl -s --max-time 2 "http://127.0.0.1:$STATUS_PORT/routes" | python3 -c '
import json, sys
try:
    t = json.load(sys.stdin)
except ValueError:
    sys.exit("(not JSON)")
host = sys.argv[1]
hit = {k: v for k, v in t.items() if k.split("/")[0] == host} if isinstance(t, dict) else {}
print(json.dumps(hit, indent=1) if hit else "(none; %d routes in the table: %s)" % (len(t), " ".join(sorted(t)[:20])))
' "$1" 2>&1 | head -c 1500
}

# us_ms FROM_US TO_US: TO-FROM (microseconds) in milliseconds, 3 decimals.
us_ms() {
	local d=$(($2 - $1)) s=
	((d < 0)) && s=- && d=$((-d))
	printf '%s%d.%03d' "$s" $((d / 1000)) $((d % 1000))
}

# f1 VALUE: a number with one decimal, or VALUE itself when it is not a number.
f1() {
	if [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then printf '%.1f' "$1"; else printf '%s' "$1"; fi
}

# wait_gone APP_GUID_PREFIX: wait (60s at most) until the BBS has no actual
# LRP left; sets GONE (microseconds).
wait_gone() {
	local deadline
	now
	deadline=$((NOW + 60000000))
	while :; do
		if [[ -z $(cli cfdot actual-lrps --bbs "$BBS_URL" 2>"$TMP/cfdot.err") ]]; then
			now
			GONE=$NOW
			return 0
		fi
		now
		((NOW < deadline)) || die "instances still in the BBS 60s after delete: $(cli cfdot actual-lrps --bbs "$BBS_URL" | head -c 400)"
		sleep 0.05
	done
}

# emit FMT ARGS...: print to stdout and to the report.
emit() {
	# shellcheck disable=SC2059
	printf "$@" | tee -a "$REPORT"
}

# ---- build -----------------------------------------------------------------
if [[ -n ${MINICF_BIN:-} ]]; then
	[[ -x $MINICF_BIN ]] || die "MINICF_BIN=$MINICF_BIN is not an executable"
	MINICF=$(cd "$(dirname "$MINICF_BIN")" && pwd)/$(basename "$MINICF_BIN")
	log "using $MINICF"
else
	log "building bin/minicf"
	mkdir -p bin
	go build -o bin/minicf ./cmd/minicf || die "go build ./cmd/minicf failed"
	MINICF=$ROOT/bin/minicf
fi
if [[ -n ${PROBE_BIN:-} ]]; then
	[[ -x $PROBE_BIN ]] || die "PROBE_BIN=$PROBE_BIN is not an executable"
	PROBE=$PROBE_BIN
else
	PROBE=$TMP/probe
	# No fallback to a curl per probe: a fork and a connection each, 15-40 ms
	# here, would be as long as the propagation it measures.
	go build -o "$PROBE" ./bench/probe ||
		die "go build ./bench/probe failed (output above): push.sh times every command with it; fix the build or set PROBE_BIN"
fi

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- minicf up ---------------------------------------------------------------
# start_up [NS_ARGS...]: start minicf up on fresh free ports; returns 0 when
# ready, 1 when it exited (its log says why), dies on a timeout.
start_up() {
	local ports extra=()
	ports=$(free_ports 8) || die "python3 could not find free ports"
	read -r ROUTER_PORT STATUS_PORT API_PORT API_INT_PORT NATS_PORT BBS_PORT AUC_PORT TRACE_PORT <<<"$ports"
	# Newer binaries also serve a trace API (default 127.0.0.1:8083): move it too.
	if "$MINICF" up --help 2>/dev/null | grep -q -- '--trace '; then
		if [[ ${TRACE:-} == off ]]; then extra=(--trace off); else extra=(--trace "127.0.0.1:$TRACE_PORT"); fi
	fi
	ROUTER_URL=http://127.0.0.1:$ROUTER_PORT
	BBS_URL=https://127.0.0.1:$BBS_PORT
	local cmd=("$MINICF" up --home "$MCF_HOME" --mode "$MODE" --log-level warn
		--router "127.0.0.1:$ROUTER_PORT" --router-status "127.0.0.1:$STATUS_PORT"
		--api "127.0.0.1:$API_PORT" --api-internal "127.0.0.1:$API_INT_PORT"
		--nats "127.0.0.1:$NATS_PORT" --bbs-listen "127.0.0.1:$BBS_PORT"
		--auctioneer-listen "127.0.0.1:$AUC_PORT" ${extra[@]+"${extra[@]}"} "$@")
	if [[ ${COLD_CACHE:-0} == 1 ]]; then
		mkdir -p "$TMP/gocache"
		cmd=(env GOCACHE="$TMP/gocache" "${cmd[@]}")
	fi
	UP_CMD="${cmd[*]}"
	start up "${cmd[@]}"
	UP_PID=$LAST_PID
	local deadline=$((SECONDS + READY_TIMEOUT))
	until grep -qs '^==> ready' "$TMP/up.log"; do
		if ! kill -0 "$UP_PID" 2>/dev/null; then
			wait "$UP_PID" 2>/dev/null || true
			return 1
		fi
		((SECONDS < deadline)) || die "minicf up was not ready within ${READY_TIMEOUT}s"
		sleep 0.1
	done
}

NS_RANGE=
if [[ $MODE == namespace ]]; then
	# A prefix of our own (mcb + 4 hex digits) that nothing on the host uses yet.
	for _ in $(seq 20); do
		p=$(printf 'mcb%04x' $((RANDOM * 2 + RANDOM % 2)))
		if ! ip link show "${p}0" >/dev/null 2>&1 && ! compgen -G "/run/netns/$p-*" >/dev/null; then
			PREFIX=$p
			break
		fi
	done
	[[ -n $PREFIX ]] || die "found no unused namespace prefix mcbXXXX"
	read -r -a RANGES <<<"$(free_ranges)"
	((${#RANGES[@]} > 0)) || die "no free /16 among 10.240.0.0/16-10.254.0.0/16 on this host (see ip -4 route show table all)"
	# Another foundation (a test) may claim the same range between our check
	# and minicf up's: then up refuses it, and we try the next one.
	ready=0
	for r in "${RANGES[@]:0:3}"; do
		log "starting minicf up (namespace mode, --prefix $PREFIX --network-range $r)"
		if start_up --prefix "$PREFIX" --network-range "$r"; then
			NS_RANGE=$r
			ready=1
			break
		fi
		grep -q 'clashes with' "$TMP/up.log" || die "minicf up exited before it was ready"
		log "$r was taken meanwhile; trying another range"
		cp "$TMP/up.log" "$TMP/up-$r.log" 2>/dev/null || true
		"$MINICF" down --prefix "$PREFIX" --home "$MCF_HOME" >/dev/null 2>&1 || true
	done
	((ready)) || die "minicf up refused 3 ranges in a row"
else
	log "starting minicf up (process mode)"
	start_up || die "minicf up exited before it was ready"
fi
log "foundation ready: router $ROUTER_URL, BBS $BBS_URL, MINICF_HOME=$MCF_HOME"

# ---- one push, measured ------------------------------------------------------
# reg_latency: "sum count" of the router's histogram of RUNNING (the
# registration's endpoint_updated_at_ns) → endpoint in its table.
reg_latency() {
	curl -s --max-time 2 "http://127.0.0.1:$STATUS_PORT/metrics" | awk '
		$1 == "minicf_router_route_registration_latency_seconds_sum" { s = $2 }
		$1 == "minicf_router_route_registration_latency_seconds_count" { c = $2 }
		END { printf "%.9f %d\n", s + 0, c + 0 }'
}

# push_app APP: push under bench/probe (the first 200 with APP's name in the
# body), and gather the phases. Sets P_T0 P_T1 P_200 (microseconds),
# P_WALL P_START200 P_RET200 P_ALREADY P_PROBES P_WINDOW P_RTT and PH_* (milliseconds).
push_app() {
	local app=$1 out=$TMP/push-$1.out reg0 reg1
	reg0=$(reg_latency)
	# shellcheck disable=SC2086 # PUSH_ARGS is split on purpose
	probed "push-$app" "$app.$DOMAIN" 200 "\"app\": \"$app\"" "$PUSH_POLL" \
		"$MINICF" push "$app" -p "$APP_DIR" ${PUSH_ARGS:-}
	P_T0=$PR_start_us P_T1=$PR_return_us P_200=$PR_want_us
	P_WALL=$PR_wall_ms P_START200=$PR_start_to_want_ms P_RET200=$PR_return_to_want_ms
	P_ALREADY=$PR_already P_PROBES=$PR_probes P_WINDOW=$PR_window_ms P_RTT=$PR_rtt_ms
	[[ $PR_first_status == 404 ]] || die "$app.$DOMAIN answered $PR_first_status before $app was pushed, want 404$(route_now "$app.$DOMAIN")"
	reg1=$(reg_latency)
	# Where the time went.
	cli logs "$app" --recent >"$TMP/logs-$app.txt" 2>&1 || true
	cli cfdot desired-lrps --bbs "$BBS_URL" >"$TMP/desired-$app.json" 2>/dev/null || true
	cli cfdot actual-lrps --bbs "$BBS_URL" >"$TMP/actual-$app.json" 2>/dev/null || true
	local phases
	phases=$(python3 - "$app" "$out" "$TMP/logs-$app.txt" "$TMP/desired-$app.json" "$TMP/actual-$app.json" \
		"$P_T0" "$P_T1" "$P_200" $reg0 $reg1 <<'EOF'
import datetime, json, re, sys
app, out, logs, desired, actual = sys.argv[1:6]
t0, t1, t200 = (int(x) for x in sys.argv[6:9])
s0, c0, s1, c1 = float(sys.argv[9]), int(sys.argv[10]), float(sys.argv[11]), int(sys.argv[12])
table = "-" if c1 <= c0 else "%.1f" % ((s1 - s0) / (c1 - c0) * 1000)
def first(pat):
    for l in open(out):
        ts, _, text = l.rstrip("\n").partition(" ")
        if re.search(pat, text):
            return int(ts)
    return None
def last(pat):
    r = None
    for l in open(out):
        ts, _, text = l.rstrip("\n").partition(" ")
        if re.search(pat, text):
            r = int(ts)
    return r
uploading = first(r"^Uploading ")
uploaded = first(r"^Uploaded \d+ files")
staging = first(r"^Staging app")
starting = first(r"^Starting app")
running = last(r"^(\d+) of \1 instances running$")
# Staging log lines: "   2026-11-26T05:53:31.00+0000 [STG/0] OUT text"
stg = []
for l in open(logs):
    m = re.match(r"\s*(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)([+-]\d{4}) \[(\S+)\] \S+ (.*)", l)
    if not m:
        continue
    ts = datetime.datetime.strptime(m.group(1) + m.group(2), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    stg.append((int(ts * 1e6), m.group(3), m.group(4)))
def log_at(src, pat, which=0):
    hits = [t for t, s, text in stg if s.startswith(src) and re.search(pat, text)]
    return hits[which] if hits else None
stg_first = log_at("STG", r".", 0)
stg_last = log_at("STG", r".", -1)
build0 = log_at("STG", r"Running go build|Running ")
build1 = log_at("STG", r"Start command")
dropped = log_at("STG", r"^Uploaded ")
cell0 = log_at("CELL", r"creating container")
healthy = log_at("CELL", r"became healthy")
pg = None
for l in open(desired):
    try:
        d = json.loads(l)
    except ValueError:
        continue
    if d.get("metric_tags", {}).get("app_name", {}).get("static") == app:
        pg = d.get("process_guid")
since = None
for l in open(actual):
    try:
        a = json.loads(l)
    except ValueError:
        continue
    if a.get("process_guid") == pg and a.get("state") == "RUNNING":
        since = a["since"] // 1000
def ms(a, b):
    return "-" if a is None or b is None else "%.1f" % ((b - a) / 1000)
print(" ".join([
    ms(t0, uploading),        # prep: CLI start, manifest, app create
    ms(uploading, uploaded),  # upload: resource match, package, bits
    ms(staging, starting),    # staging as the CLI sees it (build polled every 250 ms), droplet, restart
    ms(stg_first, stg_last),  # the staging task's own log span (10 ms resolution)
    ms(build0, build1),       # go build inside staging
    ms(build1, dropped),      # the droplet: tar + gzip + upload to the CC
    ms(starting, since),      # desire, auction, container, app up, health check → RUNNING
    ms(since, t1),            # RUNNING → push returns (the CLI polls stats every 250 ms)
    ms(since, t200),          # RUNNING → first 200 through the router (probed every PUSH_POLL during the push)
    table,                    # RUNNING → endpoint in the router's table (the router's histogram)
    ms(starting, cell0),      # "Starting app..." → the cell creates the container (desire, auction)
    ms(cell0, healthy),       # the app container: create → healthy (10 ms resolution)
]))
EOF
	) || die "cannot work out the phases of $app's push (outputs in $TMP)"
	read -r PH_PREP PH_UPLOAD PH_STAGE PH_STGTASK PH_BUILD PH_DROPLET PH_START PH_NOTICE PH_ROUTE PH_TABLE PH_PLACE PH_CELL <<<"$phases"
}


# delete_app APP: delete -f -r; sets D_WALL (ms), and with WAIT_GONE=1
# D_GONE (ms until its instance left the BBS; "-" otherwise).
delete_app() {
	local app=$1 t0 t1
	now
	t0=$NOW
	cli delete "$app" -f -r >"$TMP/delete-$app.txt" 2>&1 || { cat "$TMP/delete-$app.txt" >&2; die "minicf delete $app failed"; }
	now
	t1=$NOW
	D_WALL=$(ms "$t0" "$t1")
	D_GONE=-
	if [[ $WAIT_GONE == 1 ]]; then
		wait_gone
		D_GONE=$(ms "$t0" "$GONE")
	fi
}

: >"$REPORT"
T_START=$SECONDS

# ---- warm-up: the first build, and the app of the route cycles -------------
log "warm-up: pushing $APP_DIR as warmup (fills the staging Go build cache; it stays up for the map/unmap cycles)"
push_app warmup
W_WALL=$P_WALL
W_200=$P_START200
W_BUILD=$PH_BUILD
T_WARM=$((SECONDS - T_START))

# ---- map-route / unmap-route cycles --------------------------------------------
# On the running warmup app, a hostname per cycle that was never routed:
# map-route → first 200 from warmup, unmap-route → first 404.
: >"$TMP/routes.txt"
T0=$SECONDS
if ((ROUTE_REPEAT > 0)); then
	emit '\nmap-route / unmap-route on the running app warmup, per cycle (ms; * = the answer was there when the command returned):\n'
	emit '%-5s %-5s %8s %9s %9s %4s %7s | %8s %10s %9s %4s %7s\n' \
		cycle host map 'map->200' 'ret->200' '#' window unmap 'unmap->404' 'ret->404' '#' window
fi
for ((c = 1; c <= ROUTE_REPEAT; c++)); do
	host=r$c
	((c % 10 == 1)) && log "map/unmap cycles $c-$((c + 9 > ROUTE_REPEAT ? ROUTE_REPEAT : c + 9))/$ROUTE_REPEAT"
	probed "map-$host" "$host.$DOMAIN" 200 '"app": "warmup"' "$POLL" \
		"$MINICF" map-route warmup "$DOMAIN" --hostname "$host"
	[[ $PR_first_status == 404 ]] || die "$host.$DOMAIN answered $PR_first_status before map-route, want 404$(route_now "$host.$DOMAIN")"
	m=("$PR_wall_ms" "$PR_start_to_want_ms" "$PR_return_to_want_ms" "$PR_already" "$PR_probes" "$PR_window_ms" "$PR_rtt_ms")
	probed "unmap-$host" "$host.$DOMAIN" 404 '' "$POLL" \
		"$MINICF" unmap-route warmup "$DOMAIN" --hostname "$host"
	[[ $PR_first_status == 200 ]] || die "$host.$DOMAIN answered $PR_first_status before unmap-route, want 200$(route_now "$host.$DOMAIN")"
	u=("$PR_wall_ms" "$PR_start_to_want_ms" "$PR_return_to_want_ms" "$PR_already" "$PR_probes" "$PR_window_ms" "$PR_rtt_ms")
	echo "$c ${m[*]} ${u[*]}" >>"$TMP/routes.txt"
	mark_m= mark_u=
	[[ ${m[3]} == 1 ]] && mark_m='*'
	[[ ${u[3]} == 1 ]] && mark_u='*'
	emit '%-5s %-5s %8s %9s %9s %4s %7s | %8s %10s %9s %4s %7s\n' "$c" "$host" \
		"$(f1 "${m[0]}")" "$(f1 "${m[1]}")" "$(f1 "${m[2]}")$mark_m" "${m[4]}" "$(f1 "${m[5]}")" \
		"$(f1 "${u[0]}")" "$(f1 "${u[1]}")" "$(f1 "${u[2]}")$mark_u" "${u[4]}" "$(f1 "${u[5]}")"
done
T_ROUTES=$((SECONDS - T0))

# ---- measured pushes -----------------------------------------------------------
: >"$TMP/rows.txt"
: >"$TMP/phases.txt"
T0=$SECONDS
emit '\npushes, per round (ms; * = the 200 was there when push returned; see the legend below):\n'
emit '%-5s %8s %9s %9s %4s %7s %9s | %7s %7s\n' \
	round push 'push->200' 'ret->200' '#' window 'run->200' delete gone
for ((r = 1; r <= REPEAT; r++)); do
	app=bench$r
	((r % 10 == 1)) && log "pushes $r-$((r + 9 > REPEAT ? REPEAT : r + 9))/$REPEAT (push, first 200, delete)"
	push_app "$app"
	echo "$r $PH_PREP $PH_UPLOAD $PH_STAGE $PH_STGTASK $PH_BUILD $PH_DROPLET $PH_START $PH_NOTICE $PH_ROUTE $PH_TABLE $PH_PLACE $PH_CELL" >>"$TMP/phases.txt"
	delete_app "$app"
	row=("$r" "$P_WALL" "$P_START200" "$P_RET200" "$P_ALREADY" "$P_PROBES" "$P_WINDOW" "$PH_ROUTE" "$D_WALL" "$D_GONE" "$P_RTT")
	echo "${row[*]}" >>"$TMP/rows.txt"
	mark=
	[[ $P_ALREADY == 1 ]] && mark='*'
	emit '%-5s %8s %9s %9s %4s %7s %9s | %7s %7s\n' "$r" "$(f1 "$P_WALL")" "$(f1 "$P_START200")" \
		"$(f1 "$P_RET200")$mark" "$P_PROBES" "$(f1 "$P_WINDOW")" "$(f1 "$PH_ROUTE")" "$(f1 "$D_WALL")" "$(f1 "$D_GONE")"
done
T_PUSHES=$((SECONDS - T0))

emit '\nwhere the push goes, per round (ms; see the legend below):\n'
emit '%-5s %7s %7s %8s %8s %8s %8s %8s %8s %8s %7s %7s %7s\n' round prep upload staging 'stg-log' 'go-build' droplet starting notice route table place cell
while read -r -a f; do
	emit '%-5s %7s %7s %8s %8s %8s %8s %8s %8s %8s %7s %7s %7s\n' "${f[@]}"
done <"$TMP/phases.txt"

# ---- summary -------------------------------------------------------------
# stats FILE COL: "p50 p90 p99 max n" (nearest rank) of column COL, skipping "-".
stats() {
	awk -v c="$2" '$c != "-" { print $c }' "$1" | sort -g | awk '
		function rank(p,  i) { i = int(NR * p); if (i < NR * p) i++; return i < 1 ? 1 : i }
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "- - - - 0"; exit }
			printf "%.1f %.1f %.1f %.1f %d\n", v[rank(0.5)], v[rank(0.9)], v[rank(0.99)], v[NR], NR
		}'
}
# count FILE COL VALUE: how many rows have VALUE in column COL.
count() { awk -v c="$2" -v v="$3" '$c == v { n++ } END { print n + 0 }' "$1"; }
# summary_row NAME FILE COL GOAL_MS [NOTE]: one line of the summary table.
summary_row() {
	local name=$1 file=$2 col=$3 goal=$4 note=${5:-} p50 p90 p99 max n verdict=
	read -r p50 p90 p99 max n <<<"$(stats "$file" "$col")"
	if [[ $goal != - && $max != - ]]; then
		verdict=$(awk -v p="$p90" -v m="$max" -v g="$goal" 'BEGIN {
			if (m < g) print "ok (max)"; else if (p < g) print "p90 ok, max over"; else print "OVER" }')
	fi
	emit '%-26s %9s %9s %9s %9s %4s %7s  %s\n' "$name" "$p50" "$p90" "$p99" "$max" "$n" "$goal" "$verdict${note:+ ($note)}"
}

emit '\nsummary (ms; nearest-rank percentiles: p99 is the max when n <= 100):\n'
emit '%-26s %9s %9s %9s %9s %4s %7s  %s\n' measure p50 p90 p99 max n goal verdict
summary_row push_wall "$TMP/rows.txt" 2 -
summary_row push_start_to_200 "$TMP/rows.txt" 3 "$PUSH_GOAL_MS"
summary_row push_return_to_200 "$TMP/rows.txt" 4 - "0 = there at the return: $(count "$TMP/rows.txt" 5 1) of $REPEAT"
summary_row running_to_200 "$TMP/rows.txt" 8 -
summary_row push_probe_window "$TMP/rows.txt" 7 -
summary_row push_first_200_rtt "$TMP/rows.txt" 11 -
if ((ROUTE_REPEAT > 0)); then
	summary_row map_wall "$TMP/routes.txt" 2 -
	summary_row map_start_to_200 "$TMP/routes.txt" 3 "$ROUTE_GOAL_MS"
	summary_row map_return_to_200 "$TMP/routes.txt" 4 "$ROUTE_GOAL_MS" "0 = there at the return: $(count "$TMP/routes.txt" 5 1) of $ROUTE_REPEAT"
	summary_row map_probe_window "$TMP/routes.txt" 7 -
	summary_row map_first_200_rtt "$TMP/routes.txt" 8 -
	summary_row unmap_wall "$TMP/routes.txt" 9 -
	summary_row unmap_start_to_404 "$TMP/routes.txt" 10 "$ROUTE_GOAL_MS"
	summary_row unmap_return_to_404 "$TMP/routes.txt" 11 "$ROUTE_GOAL_MS" "0 = there at the return: $(count "$TMP/routes.txt" 12 1) of $ROUTE_REPEAT"
	summary_row unmap_probe_window "$TMP/routes.txt" 14 -
	summary_row unmap_first_404_rtt "$TMP/routes.txt" 15 -
fi
summary_row delete_wall "$TMP/rows.txt" 9 -
[[ $WAIT_GONE == 1 ]] && summary_row delete_to_instance_gone "$TMP/rows.txt" 10 -
summary_row phase_prep "$TMP/phases.txt" 2 -
summary_row phase_upload "$TMP/phases.txt" 3 -
summary_row phase_staging "$TMP/phases.txt" 4 -
summary_row phase_staging_task_log "$TMP/phases.txt" 5 -
summary_row phase_go_build "$TMP/phases.txt" 6 -
summary_row phase_droplet "$TMP/phases.txt" 7 -
summary_row phase_starting "$TMP/phases.txt" 8 -
summary_row phase_notice "$TMP/phases.txt" 9 -
summary_row phase_running_to_table "$TMP/phases.txt" 11 -
summary_row phase_place "$TMP/phases.txt" 12 -
summary_row phase_app_container "$TMP/phases.txt" 13 -
emit '\nfirst build (warm-up push, before the rest): push %s ms, push start → first 200 %s ms, go build %s ms\n' \
	"$(f1 "$W_WALL")" "$(f1 "$W_200")" "$W_BUILD"
emit 'wall time: warm-up %ds, %d map/unmap cycles %ds, %d pushes %ds (%s s a round), whole script %ds\n' \
	"$T_WARM" "$ROUTE_REPEAT" "$T_ROUTES" "$REPEAT" "$T_PUSHES" "$(awk -v t="$T_PUSHES" -v n="$REPEAT" 'BEGIN { printf "%.1f", t / n }')" "$SECONDS"

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- results file ----------------------------------------------------------
mkdir -p "$(dirname "$RESULTS_FILE")"
{
	echo "# bench/push.sh: push → first 200, map-route → first 200, unmap-route → first 404, RUNNING → first 200 (issues 6, 8)"
	echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "host:        $(uname -a)"
	echo "cpu:         $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "load avg:    $LOAD_START at the start, $LOAD_END at the end (1/5/15 min; the machine is shared)"
	echo "go:          $(go version)"
	echo "tree:        $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null ||
		echo " + uncommitted changes ($(git -C "$ROOT" diff --shortstat HEAD -- | sed 's/^ *//'))")"
	echo "minicf up:   ${UP_CMD//$TMP/\$TMP}"
	if [[ $MODE == namespace ]]; then
		echo "mode:        namespace (--prefix $PREFIX --network-range $NS_RANGE), 2 cells"
	else
		echo "mode:        process, 2 cells"
	fi
	echo "settings:    REPEAT=$REPEAT ROUTE_REPEAT=$ROUTE_REPEAT POLL=$POLL PUSH_POLL=$PUSH_POLL WAIT_GONE=$WAIT_GONE app=${APP_DIR#"$ROOT"/} PUSH_ARGS='${PUSH_ARGS:-}'"
	echo "             staging GOCACHE=$([[ ${COLD_CACHE:-0} == 1 ]] && echo 'empty at the start (COLD_CACHE=1)' || echo "the host's ($(go env GOCACHE))")"
	echo "goals:       push start → first 200 < ${PUSH_GOAL_MS} ms (after the first build); map-route → first 200 and"
	echo "             unmap-route → first 404 < ${ROUTE_GOAL_MS} ms, from the command's start and from its return"
	cat "$REPORT"
	cat <<'LEGEND'

legend (ms; every time comes from bench/probe, which starts probing with the command):
  map, unmap  the command's wall time              map->200, unmap->404  command start → first 200 / 404
  ret->200    command return → first 200 / 404; 0 and * when it was already there at the return
  #           probes sent (the wanted one included)
  window      the probe's resolution: from sending the last probe that got the old answer to the
              first new answer; the route changed inside it
  *_rtt       (summary) the first new answer's own round trip, the end of the window: a new route's
              first request may open the router's TLS connection to the instance's sidecar
  push        minicf push's wall time              push->200  push started → first 200 (with the app's name)
  run->200    the instance's RUNNING (its since in the BBS) → first 200 through the router; probes
              every PUSH_POLL during the push, so it is exact to a window
  delete      minicf delete -f -r's wall time      gone       delete started → no actual LRP left in the
              BBS (WAIT_GONE=1 only; ~5 s, the rep's ProxyReloadWait before it destroys the container)
  prep       push start → "Uploading" (CLI start, manifest, app, route); prep and upload are stamped when
             this script reads the CLI's lines: on a busy machine a few ms can move from one to the other
  upload     "Uploading" → "Uploaded N files" (resource match, package, bits)
  staging    "Staging app" → "Starting app..." (the build Task, polled by the CLI every 250 ms; droplet; restart)
  stg-log    the staging Task's own log, first to last STG line (10 ms resolution)
  go-build   STG "Running go build" → "Start command"
  droplet    STG "Start command" → "Uploaded /tmp/droplet.tgz" (tar + gzip of the droplet, upload to the CC)
  starting   "Starting app..." → the instance's RUNNING since in the BBS (desire, auction, container, app, health check)
  notice     RUNNING → push returns (the CLI polls instance stats every 250 ms, then prints the summary)
  route      RUNNING → first 200 through the router (= run->200)
  table      RUNNING → the endpoint in the router's table (the router's registration latency histogram:
             BBS event, route emitter, NATS, router), the part of "route" before the first request
  place      "Starting app..." → CELL "creating container" (desired LRP, auction, the cell claims it)
  cell       CELL "creating container" → "Container became healthy" of the app instance (10 ms resolution)
LEGEND
} >"$RESULTS_FILE"
log "results written to ${RESULTS_FILE#"$ROOT"/}"
