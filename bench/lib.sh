# bench/lib.sh: the helpers the bench scripts share. Source it right after
# `set -euo pipefail`:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Messages are prefixed with the script's name. start writes to $TMP/NAME.log,
# so the script sets TMP before its first start.
# shellcheck shell=bash

BENCH_NAME=$(basename "$0")
PIDS=()  # every PID the script started, in start order
NAMES=() # matching human-readable names
LAST_PID=

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

# need CMD HINT: die unless CMD is on PATH, saying how to get it.
need() {
	command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

# on_exit FUNC: run FUNC on exit, and exit (so FUNC runs) on INT and TERM.
on_exit() {
	trap "$1" EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

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
	kill -0 "$1" 2>/dev/null || die "$2 (pid $1) exited early; see the end of its log below"
}

# stop_started SECONDS: stop every PID start recorded, by its pid, in reverse
# start order: TERM to all, then to each SECONDS to exit before KILL.
stop_started() {
	local i pid tries=$(($1 * 10))
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[i]}" 2>/dev/null
	done
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		for _ in $(seq "$tries"); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "$BENCH_NAME: ${NAMES[i]} (pid $pid) did not stop within ${1}s of SIGTERM, sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null
	done
	return 0
}

# remove_tmp [NOTE]: remove $TMP, or with KEEP_TMP=1 keep it and say where.
remove_tmp() {
	if [[ ${KEEP_TMP:-0} == 1 ]]; then
		echo "$BENCH_NAME: kept $TMP${1:+ ($1)}" >&2
	else
		rm -rf "$TMP"
	fi
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# free_ports N: print N distinct free TCP ports on 127.0.0.1.
free_ports() {
	python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
