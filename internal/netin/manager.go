package netin

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Manager keeps one cell's netin chains equal to the containers it was
// told about. Add and Remove apply one container's change in one
// iptables-restore call. After any failed restore the next Add, Remove or
// Sync rebuilds everything from the desired state instead (kube-proxy's
// needFullSync), and Sync, run periodically, repairs chains or jumps that
// someone else flushed or deleted. All methods are safe for concurrent use.
type Manager struct {
	ipt     Iptables
	cellIP  string // canonical, or the raw value when cellErr is set
	cellErr error
	logger  *slog.Logger

	mu       sync.Mutex
	desired  map[string]Container // by handle
	needFull bool                 // the kernel state is not trusted: rebuild on the next call
	built    bool                 // a full rebuild has succeeded: ConntrackChain was put in place
	failures int                  // failed restores since start
}

// NewManager returns a Manager for the cell whose DNAT rules match
// destination cellIP. It starts untrusting: its first Add, Remove or Sync
// rebuilds the table from scratch, so chains left by a crashed run are
// deleted. An invalid cellIP makes every call fail with ErrInvalid.
func NewManager(ipt Iptables, cellIP string, logger *slog.Logger) *Manager {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{ipt: ipt, cellIP: cellIP, logger: logger, desired: map[string]Container{}, needFull: true}
	if ip, err := parseIPv4("cell ip", cellIP); err != nil {
		m.cellErr = err
	} else {
		m.cellIP = ip
	}
	return m
}

// Failures returns how many restores have failed since the Manager started
// (kube-proxy's IptablesRestoreFailuresTotal).
func (m *Manager) Failures() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failures
}

// Desired returns the containers the Manager keeps rules for, sorted by
// chain name, as deep copies.
func (m *Manager) Desired() []Container {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.desiredLocked()
}

func (m *Manager) desiredLocked() []Container {
	out := make([]Container, 0, len(m.desired))
	for _, c := range m.desired {
		out = append(out, Container{Handle: c.Handle, Mappings: slices.Clone(c.Mappings)})
	}
	return sortedContainers(out)
}

// Add installs (or replaces) c's chain, DNAT rules and PREROUTING jump in
// one iptables-restore call. It refuses invalid containers and host ports
// another container already maps. When it fails, c is not desired.
func (m *Manager) Add(ctx context.Context, c Container) error {
	if m.cellErr != nil {
		return m.cellErr
	}
	c = Container{Handle: c.Handle, Mappings: slices.Clone(c.Mappings)}
	m.mu.Lock()
	defer m.mu.Unlock()

	if err := m.validateAddLocked(c); err != nil {
		return err
	}
	prev, existed := m.desired[c.Handle]
	m.desired[c.Handle] = c
	var err error
	if m.needFull {
		err = m.fullSyncLocked(ctx, "add", nil, "handle", c.Handle)
	} else {
		err = m.restoreLocked(ctx, "add", false, renderAdd(m.cellIP, c, !existed), "handle", c.Handle, "mappings", len(c.Mappings))
	}
	if err != nil {
		if existed {
			m.desired[c.Handle] = prev
		} else {
			delete(m.desired, c.Handle)
		}
		return fmt.Errorf("netin: add %s: %w", c.Handle, err)
	}
	return nil
}

// validateAddLocked checks c alone and against the other desired
// containers (the same rules as Render's, without re-checking them all).
func (m *Manager) validateAddLocked(c Container) error {
	if err := validateContainer(c); err != nil {
		return err
	}
	chain := ChainName(c.Handle)
	ports := make(map[uint32]bool, len(c.Mappings))
	for _, mp := range c.Mappings {
		ports[mp.HostPort] = true
	}
	for h, o := range m.desired {
		if h == c.Handle {
			continue
		}
		if ChainName(h) == chain {
			return invalidf("containers %q and %q share chain %s (handles are cut to %d characters)",
				h, c.Handle, chain, MaxChainNameLength-len(ChainPrefix))
		}
		for _, mp := range o.Mappings {
			if ports[mp.HostPort] {
				return invalidf("host port %d is mapped by both %q and %q", mp.HostPort, h, c.Handle)
			}
		}
	}
	return nil
}

// Remove deletes the container's PREROUTING jump and flushes and deletes
// its chain in one iptables-restore call. When no container is left it
// rebuilds in full instead (one Save, one restore, on an almost empty
// table): that batch deletes the cell's last DNAT rule, and must not do it
// without ConntrackChain in place, or the cell's established flows would
// be reset (see the package doc). The container stops being desired even
// when the call fails, so the next Sync finishes the job (like CNI DEL,
// removal never gets stuck). Removing an unknown handle is a no-op unless
// a rebuild is pending.
func (m *Manager) Remove(ctx context.Context, handle string) error {
	if m.cellErr != nil {
		return m.cellErr
	}
	if err := validateHandle(handle); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, existed := m.desired[handle]
	delete(m.desired, handle)
	var err error
	switch {
	case m.needFull, existed && len(m.desired) == 0:
		err = m.fullSyncLocked(ctx, "remove", nil, "handle", handle)
	case existed:
		err = m.restoreLocked(ctx, "remove", false, renderRemove(handle), "handle", handle)
	}
	if err != nil {
		return fmt.Errorf("netin: remove %s: %w", handle, err)
	}
	return nil
}

// Sync reads the nat table and compares our chains and jumps with the
// desired state. On any difference (a flushed chain, a deleted jump, a
// stale chain) it logs netin-drift-repaired and rebuilds everything in one
// call; after a failed restore it rebuilds even without a difference.
func (m *Manager) Sync(ctx context.Context) error {
	if m.cellErr != nil {
		return m.cellErr
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	current, err := m.ipt.Save(ctx)
	if err != nil {
		m.logger.Warn("netin-save-failed", "error", err.Error())
		return fmt.Errorf("netin: sync: %w", err)
	}
	st, err := parseSave(current)
	if err != nil {
		return fmt.Errorf("netin: sync: %w", err)
	}
	a := analyze(st, m.cellIP, m.desiredLocked())
	if len(a.drift) == 0 && !m.needFull {
		return nil
	}
	drift := a.drift
	if !m.built {
		// A cell this Manager never rebuilt has no ConntrackChain yet (a
		// fresh cell, or one an older minicf managed): putting it there
		// is installation, not a repair worth a warning.
		drift = slices.DeleteFunc(slices.Clone(drift), func(d string) bool {
			return d == missingChain(ConntrackChain) || d == missingJump(ConntrackChain)
		})
	}
	if len(drift) > 0 {
		m.logger.Warn("netin-drift-repaired", "differences", len(drift), "details", firstN(drift, 10))
	}
	if err := m.fullSyncLocked(ctx, "sync", &current); err != nil {
		return fmt.Errorf("netin: sync: %w", err)
	}
	return nil
}

// Run calls Sync every interval until ctx is done, then returns. Errors
// are logged (and counted by Sync); the next tick retries.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Sync(ctx); err != nil && ctx.Err() == nil {
				m.logger.Warn("netin-sync-failed", "error", err.Error())
			}
		}
	}
}

// fullSyncLocked renders the whole desired state against the current
// table (read unless given) and applies it in one call; attrs are logged.
func (m *Manager) fullSyncLocked(ctx context.Context, op string, current *string, attrs ...any) error {
	var cur string
	if current != nil {
		cur = *current
	} else {
		var err error
		if cur, err = m.ipt.Save(ctx); err != nil {
			m.logger.Warn("netin-save-failed", "error", err.Error())
			return err
		}
	}
	want := m.desiredLocked()
	data, err := Render(m.cellIP, want, cur)
	if err != nil {
		return err
	}
	return m.restoreLocked(ctx, op, true, data, append(attrs, "containers", len(want))...)
}

// restoreLocked applies one batch, keeping the failure count and the
// needFull flag: a success after a full rebuild trusts the table again, a
// failure distrusts it.
func (m *Manager) restoreLocked(ctx context.Context, op string, full bool, data []byte, attrs ...any) error {
	start := time.Now()
	err := m.ipt.Restore(ctx, data)
	d := time.Since(start)
	attrs = append([]any{"op", op, "full", full}, attrs...)
	if err != nil {
		m.failures++
		m.needFull = true
		m.logger.Error("netin-restore-failed", append(attrs,
			"error", err.Error(), "duration", d.String(), "failures", m.failures,
			"input", linesAround(data, errorLine(err)))...)
		return err
	}
	if full {
		m.needFull, m.built = false, true
	}
	m.logger.Info("netin-rules-applied", append(attrs,
		"duration", d.String(), "lines", strings.Count(string(data), "\n"))...)
	return nil
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), fmt.Sprintf("... %d more", len(s)-n))
	}
	return s
}
