package garden

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Memory cgroups of namespace mode: <root>/<prefix>/<handle>, where root
// is the memory controller's mount (cgroup v1: /sys/fs/cgroup/memory) or
// the unified hierarchy (cgroup v2: /sys/fs/cgroup, when its memory
// controller is enabled for children). The limit is the container's memory
// (memory.limit_in_bytes or memory.max); a process joins the cgroup before
// it execs (see Garden.Run), so its children are in it too.

// CgroupMount is where cgroup hierarchies are mounted.
var CgroupMount = "/sys/fs/cgroup"

type cgroupFS struct {
	v2   bool
	root string // the memory hierarchy's root directory
}

// detectCgroups finds the memory controller, or returns nil.
func detectCgroups() *cgroupFS {
	v1 := filepath.Join(CgroupMount, "memory")
	if _, err := os.Stat(filepath.Join(v1, "memory.limit_in_bytes")); err == nil {
		return &cgroupFS{root: v1}
	}
	ctrl, err := os.ReadFile(filepath.Join(CgroupMount, "cgroup.subtree_control"))
	if err == nil && hasWord(string(ctrl), "memory") {
		return &cgroupFS{v2: true, root: CgroupMount}
	}
	return nil
}

// cgroupUnavailable says why there is no memory cgroup, for the log.
func cgroupUnavailable() string {
	if _, err := os.Stat(filepath.Join(CgroupMount, "cgroup.controllers")); err == nil {
		return "cgroup v2 without the memory controller enabled for children at " + CgroupMount
	}
	return "no memory cgroup controller is mounted at " + CgroupMount
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

func (c *cgroupFS) dir(prefix, handle string) string {
	return filepath.Join(c.root, prefix, handle)
}

// create makes the container's cgroup with its memory limit (none when
// memoryMB <= 0) and returns the directory.
func (c *cgroupFS) create(prefix, handle string, memoryMB int32) (string, error) {
	parent := filepath.Join(c.root, prefix)
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("cgroup %s: %w", parent, err)
	}
	if c.v2 {
		ctrl, _ := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
		if !hasWord(string(ctrl), "memory") {
			if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0o644); err != nil {
				return "", fmt.Errorf("cgroup %s: cannot enable the memory controller: %w", parent, err)
			}
		}
	}
	dir := c.dir(prefix, handle)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if memoryMB > 0 {
		file, value := "memory.limit_in_bytes", strconv.FormatInt(int64(memoryMB)<<20, 10)
		if c.v2 {
			file = "memory.max"
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0o644); err != nil {
			_ = os.Remove(dir)
			return "", fmt.Errorf("cgroup %s: cannot set %s to %s: %w", dir, file, value, err)
		}
	}
	return dir, nil
}

// MemoryLimit reads a cgroup directory's memory limit in bytes (-1: none).
func MemoryLimit(dir string) (int64, error) {
	for _, f := range []string{"memory.limit_in_bytes", "memory.max"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(data))
		if s == "max" {
			return -1, nil
		}
		return strconv.ParseInt(s, 10, 64)
	}
	return 0, fmt.Errorf("cgroup %s has no memory limit file", dir)
}

func cgroupPids(dir string) []int {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// removeDir kills what is left in a cgroup (every process in it is a
// container's) and removes it. A missing directory is fine.
func removeCgroupDir(dir string) (killed []int, err error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	deadline := time.Now().Add(10 * time.Second)
	seen := map[int]bool{}
	for {
		pids := cgroupPids(dir)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return killed, fmt.Errorf("cgroup %s: processes %v survive SIGKILL", dir, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			if !seen[pid] {
				seen[pid] = true
				killed = append(killed, pid)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A cgroup whose last process just exited may be busy for a moment.
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return killed, nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return killed, fmt.Errorf("cgroup %s: cannot remove it: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *cgroupFS) remove(prefix, handle string) error {
	_, err := removeCgroupDir(c.dir(prefix, handle))
	return err
}

func (c *cgroupFS) removeInto(prefix, handle string, rep *Report) {
	dir := c.dir(prefix, handle)
	if _, err := os.Stat(dir); err != nil {
		return
	}
	killed, err := removeCgroupDir(dir)
	rep.Killed = append(rep.Killed, killed...)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return
	}
	rep.Cgroups = append(rep.Cgroups, dir)
}

// removePrefixDir removes <root>/<prefix> if it is empty.
func (c *cgroupFS) removePrefixDir(prefix string, rep *Report) {
	dir := filepath.Join(c.root, prefix)
	if err := syscall.Rmdir(dir); err == nil {
		rep.Cgroups = append(rep.Cgroups, dir)
	}
}

// removePrefix removes every container cgroup under <root>/<prefix>, and it.
func (c *cgroupFS) removePrefix(prefix string, rep *Report) {
	parent := filepath.Join(c.root, prefix)
	entries, err := os.ReadDir(parent)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return
	}
	for _, e := range entries {
		if e.IsDir() && validHandle(e.Name()) == nil {
			c.removeInto(prefix, e.Name(), rep)
		}
	}
	if _, err := removeCgroupDir(parent); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return
	}
	rep.Cgroups = append(rep.Cgroups, parent)
}
