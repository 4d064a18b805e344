package garden

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessSpec describes a process to run in a container.
type ProcessSpec struct {
	Path string
	Args []string
	// Dir is the working directory: "" is <dir>/app, a relative path is
	// taken inside the container's directory. Process mode has no root
	// filesystem of its own, so an absolute path is used as it is.
	Dir string
	// Env is the whole environment (nothing is inherited from the rep);
	// PATH gets a default when it is missing.
	Env []string
	// Stdout and Stderr, when set, receive the process's output as it is
	// written. The process itself writes into <dir>/logs/<LogName>.stdout.log
	// and .stderr.log, never into a pipe of ours: a restarted rep must not
	// leave it writing into a closed pipe.
	Stdout, Stderr io.Writer
	// LogName names the log files and, if no other process of the container
	// has it yet, the process (its ID). Letters, digits, '-', '_' and '.'.
	LogName string
}

// Process is a process running in a container.
type Process interface {
	// ID names the process within its container.
	ID() string
	PID() int
	// Wait blocks until the process exits and returns its exit status
	// (128+n for a process killed by signal n, as a shell reports it). For
	// an adopted process, which is not our child, the status cannot be
	// known: Wait returns -1 and ErrExitStatusUnknown.
	Wait() (exitStatus int, err error)
	// Signal sends sig to the process's group: the process and its
	// children (a shell's command included).
	Signal(os.Signal) error
}

// ErrExitStatusUnknown is what Wait of an adopted process returns.
var ErrExitStatusUnknown = errors.New("the exit status of a process started by an earlier run cannot be known")

// DefaultPath is PATH for a process whose environment has none.
const DefaultPath = "PATH=/usr/local/bin:/usr/bin:/bin"

func validLogName(s string) bool {
	if s == "" || len(s) > 100 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Run starts a process in the container, in a process group of its own,
// and records its pid in the metadata so that a restarted rep can adopt it.
// ctx bounds only the start: the process lives until it exits, is
// signalled or the container is destroyed.
func (g *Garden) Run(ctx context.Context, handle string, ps ProcessSpec) (Process, error) {
	if err := validHandle(handle); err != nil {
		return nil, err
	}
	if ps.Path == "" {
		return nil, fmt.Errorf("garden: container %s: the process has no path", handle)
	}
	if ps.LogName != "" && !validLogName(ps.LogName) {
		return nil, fmt.Errorf("garden: container %s: log name %q may hold only letters, digits, '-', '_' and '.'", handle, ps.LogName)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("garden: container %s: %w", handle, err)
	}
	dir := g.dir(handle)

	// The lock is held from the check to the record, so Destroy either
	// refuses us or sees the process.
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.destroying[handle] != nil || g.creating[handle] {
		return nil, fmt.Errorf("garden: container %s is being created or destroyed", handle)
	}
	m, err := g.readMetadata(handle)
	if err != nil {
		return nil, err
	}
	if m.State != stateActive {
		return nil, fmt.Errorf("garden: container %s is not ready (%s)", handle, m.State)
	}
	used := map[string]bool{}
	for _, p := range m.Processes {
		used[p.ID] = true
	}
	// The ID (and the log files' name) is LogName, or LogName-2, -3... when
	// another process of the container has it; "process-N" without one.
	id := ps.LogName
	if id == "" {
		id = "process-1"
		for n := 2; used[id]; n++ {
			id = "process-" + strconv.Itoa(n)
		}
	} else {
		for n := 2; used[id]; n++ {
			id = ps.LogName + "-" + strconv.Itoa(n)
		}
	}
	logName := id

	workDir := filepath.Join(dir, "app")
	if ps.Dir != "" {
		if filepath.IsAbs(ps.Dir) {
			workDir = ps.Dir
		} else {
			workDir = filepath.Join(dir, ps.Dir)
		}
	}
	stdoutPath := filepath.Join(dir, "logs", logName+".stdout.log")
	stderrPath := filepath.Join(dir, "logs", logName+".stderr.log")
	outFile, err := os.OpenFile(stdoutPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("garden: container %s: cannot open the log file: %w", handle, err)
	}
	defer outFile.Close()
	errFile, err := os.OpenFile(stderrPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("garden: container %s: cannot open the log file: %w", handle, err)
	}
	defer errFile.Close()
	outStart, _ := outFile.Seek(0, io.SeekEnd)
	errStart, _ := errFile.Seek(0, io.SeekEnd)

	env := append([]string(nil), ps.Env...)
	hasPath := false
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append(env, DefaultPath)
	}
	path, args := g.wrap(m, ps.Path, ps.Args)
	cmd := exec.Command(path, args...)
	cmd.Dir = workDir
	cmd.Env = env
	cmd.Stdout = outFile
	cmd.Stderr = errFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("garden: container %s: cannot start %s: %w", handle, ps.Path, err)
	}
	pid := cmd.Process.Pid
	rec := processRecord{ID: id, PID: pid, PGID: pid, LogName: logName, StartTicks: startTicks(pid),
		StartedAt: time.Now().UTC(), Path: ps.Path}
	m.Processes = append(m.Processes, rec)
	if err := g.writeMetadata(m); err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, err
	}
	p := &childProcess{id: id, pid: pid, done: make(chan struct{})}
	var tails sync.WaitGroup
	stop := make(chan struct{})
	if ps.Stdout != nil {
		tails.Add(1)
		go func() { defer tails.Done(); tail(stdoutPath, outStart, ps.Stdout, stop) }()
	}
	if ps.Stderr != nil {
		tails.Add(1)
		go func() { defer tails.Done(); tail(stderrPath, errStart, ps.Stderr, stop) }()
	}
	go func() {
		err := cmd.Wait()
		p.status, p.err = exitStatus(cmd.ProcessState, err)
		close(stop)
		tails.Wait()
		close(p.done)
	}()
	if g.procs[handle] == nil {
		g.procs[handle] = map[string]Process{}
	}
	g.procs[handle][id] = p
	g.log.Info("process-started", "handle", handle, "process", id, "pid", pid, "path", ps.Path, "dir", workDir)
	return p, nil
}

func exitStatus(st *os.ProcessState, err error) (int, error) {
	if st == nil {
		return -1, err
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return st.ExitCode(), nil
}

// childProcess is a process this Garden started.
type childProcess struct {
	id     string
	pid    int
	done   chan struct{}
	status int
	err    error
}

func (p *childProcess) ID() string { return p.id }
func (p *childProcess) PID() int   { return p.pid }
func (p *childProcess) Wait() (int, error) {
	<-p.done
	return p.status, p.err
}
func (p *childProcess) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("garden: process %s (pid %d) has exited", p.id, p.pid)
	default:
	}
	return signalGroup(p.pid, sig)
}

func signalGroup(pgid int, sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("garden: %v is not a signal of this system", sig)
	}
	if err := syscall.Kill(-pgid, s); err != nil {
		return fmt.Errorf("garden: cannot signal process group %d: %w", pgid, err)
	}
	return nil
}

// adoptedProcess is a process a previous run started: not our child, so
// Wait polls.
type adoptedProcess struct {
	id    string
	rec   processRecord
	every time.Duration
	once  sync.Once
	done  chan struct{}
}

func (p *adoptedProcess) ID() string { return p.id }
func (p *adoptedProcess) PID() int   { return p.rec.PID }
func (p *adoptedProcess) Wait() (int, error) {
	p.once.Do(func() {
		go func() {
			t := time.NewTicker(p.every)
			defer t.Stop()
			for range t.C {
				if !alive(p.rec) {
					close(p.done)
					return
				}
			}
		}()
	})
	<-p.done
	return -1, ErrExitStatusUnknown
}
func (p *adoptedProcess) Signal(sig os.Signal) error {
	if !alive(p.rec) {
		return fmt.Errorf("garden: process %s (pid %d) has exited", p.id, p.rec.PID)
	}
	return signalGroup(p.rec.PGID, sig)
}

// Adopt returns the processes of a container that are still alive: those
// this Garden started, and those an earlier run started (whose Wait polls).
func (g *Garden) Adopt(handle string) ([]Process, error) {
	if err := validHandle(handle); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m, err := g.readMetadata(handle)
	if err != nil {
		return nil, err
	}
	var out []Process
	for _, rec := range m.Processes {
		if p := g.procs[handle][rec.ID]; p != nil {
			if cp, ok := p.(*childProcess); ok {
				select {
				case <-cp.done:
					continue
				default:
				}
			} else if !alive(rec) {
				continue
			}
			out = append(out, p)
			continue
		}
		if !alive(rec) {
			continue
		}
		p := &adoptedProcess{id: rec.ID, rec: rec, every: g.cfg.AdoptPollInterval, done: make(chan struct{})}
		if g.procs[handle] == nil {
			g.procs[handle] = map[string]Process{}
		}
		g.procs[handle][rec.ID] = p
		out = append(out, p)
	}
	if len(out) > 0 {
		g.log.Info("container-adopted", "handle", handle, "processes", len(out))
	}
	return out, nil
}

// tail copies what is appended to the file from offset into w, until stop
// is closed, and then what is left.
func tail(path string, offset int64, w io.Writer, stop <-chan struct{}) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return
	}
	buf := make([]byte, 32<<10)
	idle := 10 * time.Millisecond
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				w = io.Discard
			}
			idle = 10 * time.Millisecond
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return
		}
		select {
		case <-stop:
			// The process has exited: copy the rest, then end.
			_, _ = io.Copy(w, f)
			return
		case <-time.After(idle):
			if idle < 200*time.Millisecond {
				idle *= 2
			}
		}
	}
}
