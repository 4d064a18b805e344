package harness

import (
	"bytes"
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

// Proc is one minicf process started by a test.
type Proc struct {
	Name  string     // what the test's messages call it
	t     testing.TB // the test that owns the process: its cleanup stops it
	suite *Suite
	args  []string
	cmd   *exec.Cmd
	out   *logBuffer
	done  chan struct{} // closed once the process has exited and been reaped
}

// StartProc runs `minicf args...` in its own process group, named name in
// the test's messages. Cleanup stops it (SIGTERM, then SIGKILL to its group
// after StopGrace), reaps it, fails the test if the race detector or a
// panic spoke, and prints its output if the test failed (or ShowLogs).
func (s *Suite) StartProc(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(s.Bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = ChildEnv()
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start %s: %v", name, err)
	}
	p := &Proc{Name: name, t: t, suite: s, args: args, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	// Registered first, so it runs after the stop below (cleanups are LIFO).
	t.Cleanup(func() {
		logs := p.Logs()
		if strings.Contains(logs, "WARNING: DATA RACE") {
			t.Errorf("%s (pid %d): the race detector reported a data race", name, cmd.Process.Pid)
		}
		if crashRE.MatchString(logs) {
			t.Errorf("%s (pid %d): the process panicked", name, cmd.Process.Pid)
		}
		if t.Failed() || s.ShowLogs {
			t.Logf("----- %s (pid %d, %s) output -----\n%s----- end of %s output -----",
				name, cmd.Process.Pid, p.State(), logs, name)
		}
	})
	t.Cleanup(p.Stop)
	return p
}

// Respawn starts the same command again (after a kill), under the same
// name, owned by the same test as p (a case run as a subtest must not stop
// the processes of its parent when it ends).
func (p *Proc) Respawn(t testing.TB) *Proc {
	t.Helper()
	if !p.Exited() {
		t.Fatalf("%s (pid %d) is still running; kill it before starting it again", p.Name, p.PID())
	}
	return p.suite.StartProc(p.t, p.Name, p.args...)
}

// PID is the process id; its process group has the same id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Logs is everything the process has written to stdout and stderr so far.
func (p *Proc) Logs() string { return p.out.String() }

// Exited tells whether the process has exited and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// State is "running" or how the process exited.
func (p *Proc) State() string {
	if !p.Exited() {
		return "running"
	}
	return p.cmd.ProcessState.String()
}

// ExitCode is the exit status once the process has exited (-1 if killed).
func (p *Proc) ExitCode() int { return p.cmd.ProcessState.ExitCode() }

// Signal sends sig to the process; t is the test (or subtest) that sends it.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("cannot send %v to %s: %v", sig, p.Name, err)
	}
}

// Kill SIGKILLs the process (not its group: what it started lives on, as
// after a crash) and waits until it is reaped.
func (p *Proc) Kill(t testing.TB) {
	t.Helper()
	if p.Exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s (pid %d) did not die after SIGKILL", p.Name, p.PID())
	}
}

// Stop ends the process the way an operator would: SIGTERM, and SIGKILL to
// its process group when it has not exited StopGrace later, which fails the
// test that owns it.
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	grace := p.suite.StopGrace
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.t.Errorf("%s (pid %d) ignored SIGTERM for %v; killing its process group", p.Name, p.PID(), grace)
	syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.done
}

// WaitExit waits up to d for the process to exit on its own.
func (p *Proc) WaitExit(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// CountMsg counts JSON log lines whose "msg" is msg.
func (p *Proc) CountMsg(msg string) int {
	return countLines(p.Logs(), `"msg":"`+msg+`"`)
}

// LinesWithMsg returns the JSON log lines whose "msg" is msg.
func (p *Proc) LinesWithMsg(msg string) []string {
	var out []string
	for _, l := range strings.Split(p.Logs(), "\n") {
		if strings.Contains(l, `"msg":"`+msg+`"`) {
			out = append(out, l)
		}
	}
	return out
}

// countLines counts the lines of logs that contain needle.
func countLines(logs, needle string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, needle) {
			n++
		}
	}
	return n
}

// WaitForMsg polls the log until at least n lines with msg have appeared,
// and fails t (the test or subtest that waits) after within or as soon as
// the process exits.
func (p *Proc) WaitForMsg(t testing.TB, msg string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if c := p.CountMsg(msg); c >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: wanted %d %q log lines within %v, got %d", p.Name, n, msg, within, p.CountMsg(msg))
		}
		if p.Exited() {
			t.Fatalf("%s exited (%s) while waiting for %q", p.Name, p.State(), msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Alive fails the test when p has exited or panicked.
func (p *Proc) Alive(t testing.TB) {
	t.Helper()
	if p.Exited() {
		t.Errorf("%s exited (%s)", p.Name, p.State())
	}
	if crashRE.MatchString(p.Logs()) {
		t.Errorf("%s panicked", p.Name)
	}
}
