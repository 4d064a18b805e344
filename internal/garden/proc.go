package garden

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// procStat reads the fields of /proc/<pid>/stat that matter here: state,
// process group and start time (in clock ticks since boot). ok is false
// when /proc has no such process or cannot be read.
func procStat(pid int) (state byte, pgrp int, start uint64, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, false
	}
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields after it start after the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, 0, 0, false
	}
	f := strings.Fields(s[i+2:])
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
	if len(f) < 20 {
		return 0, 0, 0, false
	}
	pgrp, _ = strconv.Atoi(f[2])
	start, _ = strconv.ParseUint(f[19], 10, 64)
	return f[0][0], pgrp, start, true
}

func haveProc() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// startTicks is the process's start time, 0 when it cannot be read.
func startTicks(pid int) uint64 {
	_, _, start, ok := procStat(pid)
	if !ok {
		return 0
	}
	return start
}

// alive reports whether the recorded process still runs: it exists, is no
// zombie, and (where /proc tells) started when the record says, so that a
// recycled pid does not pass for it.
func alive(rec processRecord) bool {
	if rec.PID <= 0 {
		return false
	}
	if err := syscall.Kill(rec.PID, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	state, _, start, ok := procStat(rec.PID)
	if !ok {
		return !haveProc() // no /proc: kill(pid, 0) is all we have
	}
	if state == 'Z' || state == 'X' {
		return false
	}
	return rec.StartTicks == 0 || start == rec.StartTicks
}

// groupAlive reports whether any live (non-zombie) process is in the group.
func groupAlive(pgid int) bool {
	if pgid <= 0 {
		return false
	}
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	if !haveProc() {
		return true
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(filepath.Base(e.Name()))
		if err != nil {
			continue
		}
		state, pgrp, _, ok := procStat(pid)
		if ok && pgrp == pgid && state != 'Z' && state != 'X' {
			return true
		}
	}
	return false
}
