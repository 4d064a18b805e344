package faults

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashRE finds a Go runtime crash report in a process's output.
var crashRE = regexp.MustCompile(`(?m)^(panic|fatal error): `)

// logBuffer collects a process's stdout and stderr; the process writes while
// the test reads.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is one minicf process started by a test.
type proc struct {
	t    testing.TB
	name string
	args []string
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{} // closed once the process has exited and been reaped
}

// startProc runs minicf with args in its own process group. Cleanup stops it
// (SIGTERM, then SIGKILL to its group after 10 s), reaps it, fails the test
// if the race detector or a panic spoke, and dumps its output if the test
// failed.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(minicfBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = childEnv()
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start %s: %v", name, err)
	}
	p := &proc{t: t, name: name, args: args, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	// Registered first, so it runs after the stop below (cleanups are LIFO).
	t.Cleanup(func() {
		logs := p.logs()
		if strings.Contains(logs, "WARNING: DATA RACE") {
			t.Errorf("%s (pid %d): the race detector reported a data race", name, cmd.Process.Pid)
		}
		if crashRE.MatchString(logs) {
			t.Errorf("%s (pid %d): the process panicked", name, cmd.Process.Pid)
		}
		if t.Failed() || os.Getenv("FAULTS_LOGS") == "1" {
			t.Logf("----- %s (pid %d, %s) output -----\n%s----- end of %s output -----",
				name, cmd.Process.Pid, p.state(), logs, name)
		}
	})
	t.Cleanup(p.stop)
	return p
}

// respawn starts the same command again (after a kill), under the same
// name, owned by the same test as p (a case run as a subtest must not stop
// the world's processes when it ends).
func (p *proc) respawn(t testing.TB) *proc {
	t.Helper()
	if !p.exited() {
		t.Fatalf("%s (pid %d) is still running; kill it before starting it again", p.name, p.pid())
	}
	return startProc(p.t, p.name, p.args...)
}

// childEnv is the test's environment with the race runtime's exit pause cut
// from 1 s to 50 ms: every test stops several processes.
func childEnv() []string {
	env := os.Environ()
	gorace := os.Getenv("GORACE")
	if !strings.Contains(gorace, "atexit_sleep_ms") {
		env = append(env, strings.TrimSpace("GORACE="+gorace+" atexit_sleep_ms=50"))
	}
	return env
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) logs() string { return p.out.String() }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) state() string {
	if !p.exited() {
		return "running"
	}
	return p.cmd.ProcessState.String()
}

// exitCode is the exit status once the process has exited (-1 if killed).
func (p *proc) exitCode() int { return p.cmd.ProcessState.ExitCode() }

func (p *proc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("cannot send %v to %s: %v", sig, p.name, err)
	}
}

// kill SIGKILLs the process (not its group: what it started lives on, as
// after a crash) and waits until it is reaped.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s (pid %d) did not die after SIGKILL", p.name, p.pid())
	}
}

// stop ends the process the way an operator would: SIGTERM, and SIGKILL to
// its process group when it has not exited 10 s later.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(10 * time.Second):
	}
	p.t.Errorf("%s (pid %d) ignored SIGTERM for 10s; killing its process group", p.name, p.pid())
	syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// waitExit waits up to d for the process to exit on its own.
func (p *proc) waitExit(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// countMsg counts JSON log lines whose "msg" is msg.
func (p *proc) countMsg(msg string) int {
	return countLines(p.logs(), `"msg":"`+msg+`"`)
}

// linesWithMsg returns the JSON log lines whose "msg" is msg.
func (p *proc) linesWithMsg(msg string) []string {
	var out []string
	for _, l := range strings.Split(p.logs(), "\n") {
		if strings.Contains(l, `"msg":"`+msg+`"`) {
			out = append(out, l)
		}
	}
	return out
}

func countLines(logs, needle string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, needle) {
			n++
		}
	}
	return n
}

// waitForMsg polls the log until at least n lines with msg have appeared.
// t is the test (or subtest) that waits.
func (p *proc) waitForMsg(t testing.TB, msg string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if c := p.countMsg(msg); c >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: wanted %d %q log lines within %v, got %d", p.name, n, msg, within, p.countMsg(msg))
		}
		if p.exited() {
			t.Fatalf("%s exited (%s) while waiting for %q", p.name, p.state(), msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive fails the test when p has exited or panicked: the bad-input cases
// check that no component crashes.
func (p *proc) alive(t testing.TB) {
	t.Helper()
	if p.exited() {
		t.Errorf("%s exited (%s)", p.name, p.state())
	}
	if crashRE.MatchString(p.logs()) {
		t.Errorf("%s panicked", p.name)
	}
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}
