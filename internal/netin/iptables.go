package netin

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// Iptables is netin's only seam to the kernel: one batch in, one dump out.
type Iptables interface {
	// Restore applies data as `iptables-restore --noflush --wait` does for
	// table nat: chains it declares are flushed (created when missing),
	// every other chain keeps its rules, and either the whole batch applies
	// or nothing does.
	Restore(ctx context.Context, data []byte) error
	// Save returns `iptables-save -t nat`.
	Save(ctx context.Context) (string, error)
}

// NamespaceIptables runs iptables-restore and iptables-save inside the
// network namespace netns (`ip netns exec <netns> ...`). An empty netns
// means the current namespace, which is right only for minicf running
// inside a cell namespace; tests never use it.
func NamespaceIptables(netns string) Iptables { return &execIptables{netns: netns} }

type execIptables struct{ netns string }

func (e *execIptables) command(ctx context.Context, args ...string) *exec.Cmd {
	if e.netns != "" {
		args = append([]string{"ip", "netns", "exec", e.netns}, args...)
	}
	return exec.CommandContext(ctx, args[0], args[1:]...)
}

func (e *execIptables) where() string {
	if e.netns == "" {
		return "current netns"
	}
	return "netns " + e.netns
}

// Restore runs iptables-restore with --noflush (chains not in data keep
// their rules), --wait (take the xtables lock rather than fail; a no-op
// with nf_tables) and -T nat (only the nat section of data is applied).
func (e *execIptables) Restore(ctx context.Context, data []byte) error {
	cmd := e.command(ctx, "iptables-restore", "--noflush", "--wait", "-T", "nat")
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables-restore in %s: %w: %s", e.where(), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func (e *execIptables) Save(ctx context.Context) (string, error) {
	cmd := e.command(ctx, "iptables-save", "-t", "nat")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("iptables-save in %s: %w: %s", e.where(), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// errorLine finds the input line an iptables-restore error names
// ("Error occurred at line: 3", "line 2: CHAIN_DEL failed"), or 0.
var errorLineRE = regexp.MustCompile(`line:? (\d+)`)

func errorLine(err error) int {
	m := errorLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// linesAround returns the input lines around line n (1-based), numbered,
// as kube-proxy logs them after a failed restore.
func linesAround(data []byte, n int) string {
	if n <= 0 {
		return ""
	}
	lines := strings.Split(string(data), "\n")
	var b strings.Builder
	for i := max(1, n-1); i <= min(len(lines), n+1); i++ {
		mark := "  "
		if i == n {
			mark = "> "
		}
		fmt.Fprintf(&b, "%s%d: %s\n", mark, i, lines[i-1])
	}
	return strings.TrimRight(b.String(), "\n")
}
