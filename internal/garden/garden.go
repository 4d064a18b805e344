// Package garden is minicf's Garden, process mode: a container is a working
// directory, a process group and loopback ports.
//
// Cloud Foundry's Garden (guardian) gives each container its own root
// filesystem, cgroups and network namespace, and garden-external-networker
// maps a host port on the cell to each container port the executor asks for
// (NetIn). Process mode keeps the shape of that API where namespaces are not
// available (not root, not Linux):
//
//   - a container is a directory, <Root>/containers/<handle>, holding the
//     app's files (app/), logs (logs/), a tmp/ directory and container.json,
//     the metadata a restarted rep reads back (Containers, Adopt);
//   - every process runs in its own process group, so a signal reaches a
//     shell's children too; Destroy signals every group (SIGTERM, then
//     SIGKILL after the grace period);
//   - every NetIn gets a free loopback port from PortRangeStart (61000, as
//     Garden's networker) upward. There is no DNAT: a process in the
//     container listens on the host port itself, which is why ContainerInfo
//     carries BindPorts (container port -> the port to listen on).
//
// What process mode does not do: it enforces no memory or disk limit (they
// are recorded), it isolates no filesystem (a process sees the host's), and
// a process that leaves its process group (setsid) escapes Destroy.
//
// Namespace mode (NewNamespaceGarden, namespace.go) keeps this API and adds
// what Garden and silk do on a Diego cell: each container is a network
// namespace on its cell's network with an overlay address, a memory cgroup,
// and a DNAT rule in the cell per NetIn (package netin). The foundation
// network itself (bridge, cell namespaces, routes) is network.go's.
package garden

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/minicf/minicf/internal/trace"
)

// Defaults of ProcessConfig.
const (
	DefaultPortRangeStart = 61000 // garden-external-networker's default
	DefaultPortRangeEnd   = 65535
	DefaultMaxSourceBytes = 1 << 30 // Cloud Controller's default package size limit
	// MaxSourceEntries bounds the files, directories and links of a source.
	MaxSourceEntries = 200_000
	// MetadataFile is the container's metadata, in its directory.
	MetadataFile = "container.json"
	// LoopbackIP is ExternalIP and ContainerIP in process mode.
	LoopbackIP = "127.0.0.1"
)

// NetIn asks for a host port that reaches ContainerPort. The host port is
// always allocated by Garden (Diego always asks for host port 0).
type NetIn struct {
	ContainerPort uint32 `json:"container_port"`
}

// ContainerSpec describes a container to create.
type ContainerSpec struct {
	Handle string // the instance guid
	// Source holds the app's files, copied into <dir>/app: a directory, a
	// file (a .tgz, .tar or .zip is unpacked, anything else copied as is),
	// either as a path or a file:// URL, or an http(s) URL of an archive.
	// "" for none.
	Source   string
	MemoryMB int32
	DiskMB   int32
	NetIn    []NetIn
	// LocalPorts are container ports only processes in the container use
	// (the envoy admin port): no host mapping. Process mode still has to
	// pick a free loopback port for each; BindPorts says which.
	LocalPorts []uint32
	// Properties are kept with the container (process guid, index, ...) so
	// a restarted rep can recognise it.
	Properties map[string]string
}

// PortMapping is a host port that reaches a container port.
type PortMapping struct {
	ContainerPort uint32 `json:"container_port"`
	HostPort      uint32 `json:"host_port"`
}

// ContainerInfo describes a container.
type ContainerInfo struct {
	Handle      string
	Mode        string        // ModeProcess or ModeNamespace
	Dir         string        // the container's root directory on the host
	ExternalIP  string        // the cell's address (process mode: 127.0.0.1)
	ContainerIP string        // the instance address (process mode: 127.0.0.1)
	MappedPorts []PortMapping // host port per NetIn, in NetIn order
	// BindPorts maps a container port (NetIn or LocalPorts) to the port a
	// process in the container must listen on: in process mode the host
	// port; in namespace mode the container port itself.
	BindPorts  map[uint32]uint32
	Properties map[string]string
	MemoryMB   int32
	DiskMB     int32
	CreatedAt  time.Time
	// Processes are the processes Run started, alive or not.
	Processes []ProcessInfo
}

// ProcessInfo is a process Run started in a container.
type ProcessInfo struct {
	ID        string
	PID       int
	LogName   string
	StartedAt time.Time
}

// ProcessConfig configures a process-mode Garden.
type ProcessConfig struct {
	// Root is a directory the Garden owns: containers live in
	// Root/containers. A second Garden on the same Root (a restarted rep)
	// finds them there.
	Root string
	// PortRangeStart is the first host port handed out (default 61000);
	// PortRangeEnd the last (default 65535). Each candidate is checked with
	// a real bind on 127.0.0.1.
	PortRangeStart, PortRangeEnd int
	// MaxSourceBytes bounds what a source may download and unpack to
	// (default 1 GiB).
	MaxSourceBytes int64
	// HTTPClient fetches http(s) sources (default: 5 minute timeout).
	HTTPClient *http.Client
	// AdoptPollInterval is how often Wait of an adopted process checks that
	// it is still alive (default 100ms).
	AdoptPollInterval time.Duration
	// Trace records flow 1's container-created and DNAT steps of LRP
	// containers; nil records nothing.
	Trace  trace.Emitter
	Logger *slog.Logger
}

// ErrNotFound is returned (wrapped) for a handle with no container.
var ErrNotFound = errors.New("no such container")

// Garden is a process-mode Garden. Its methods are safe for concurrent use.
type Garden struct {
	cfg           ProcessConfig
	containersDir string
	log           *slog.Logger

	mu sync.Mutex
	// busy holds the handles being created or destroyed: Run and a second
	// Create or Destroy of the same handle refuse (or wait) meanwhile.
	creating   map[string]bool
	destroying map[string]chan struct{}
	// procs are the processes this Garden started or adopted, by handle and
	// process id; their Wait gives the real exit status for our children.
	procs map[string]map[string]Process

	// ns is namespace mode's network state (nil in process mode).
	ns *nsState
}

// NewProcessGarden makes a process-mode Garden on cfg.Root, creating it if
// needed, and reserves the ports of the containers already there.
func NewProcessGarden(cfg ProcessConfig) (*Garden, error) {
	g, err := openGarden(cfg)
	if err != nil {
		return nil, err
	}
	infos, err := g.Containers()
	if err != nil {
		return nil, err
	}
	for _, info := range infos {
		for _, p := range info.BindPorts {
			reservePort(p, g.owner(info.Handle))
		}
	}
	return g, nil
}

// openGarden checks cfg, fills in its defaults and makes the containers
// directory.
func openGarden(cfg ProcessConfig) (*Garden, error) {
	if cfg.Root == "" {
		return nil, errors.New("garden: Root is empty: process mode needs a directory of its own")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("garden: Root %q: %w", cfg.Root, err)
	}
	cfg.Root = root
	if cfg.PortRangeStart == 0 {
		cfg.PortRangeStart = DefaultPortRangeStart
	}
	if cfg.PortRangeEnd == 0 {
		cfg.PortRangeEnd = DefaultPortRangeEnd
	}
	if cfg.PortRangeStart < 1 || cfg.PortRangeEnd > 65535 || cfg.PortRangeStart > cfg.PortRangeEnd {
		return nil, fmt.Errorf("garden: the port range %d-%d is not within 1-65535", cfg.PortRangeStart, cfg.PortRangeEnd)
	}
	if cfg.MaxSourceBytes <= 0 {
		cfg.MaxSourceBytes = DefaultMaxSourceBytes
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Minute}
	}
	if cfg.AdoptPollInterval <= 0 {
		cfg.AdoptPollInterval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Garden{
		cfg:           cfg,
		containersDir: filepath.Join(root, "containers"),
		log:           cfg.Logger,
		creating:      map[string]bool{},
		destroying:    map[string]chan struct{}{},
		procs:         map[string]map[string]Process{},
	}
	if err := os.MkdirAll(g.containersDir, 0o755); err != nil {
		return nil, fmt.Errorf("garden: cannot create %s: %w", g.containersDir, err)
	}
	return g, nil
}

// Root is the directory the Garden owns.
func (g *Garden) Root() string { return g.cfg.Root }

// ExternalIP is the cell's address, as containers report it.
func (g *Garden) ExternalIP() string {
	if g.ns != nil {
		return g.ns.cellIP.String()
	}
	return LoopbackIP
}

func (g *Garden) owner(handle string) string { return g.cfg.Root + "\x00" + handle }

func (g *Garden) dir(handle string) string { return filepath.Join(g.containersDir, handle) }

// metadata is container.json.
type metadata struct {
	Handle      string            `json:"handle"`
	Mode        string            `json:"mode"`
	State       string            `json:"state"` // creating, active
	CreatedAt   time.Time         `json:"created_at"`
	MemoryMB    int32             `json:"memory_mb"`
	DiskMB      int32             `json:"disk_mb"`
	NetIn       []NetIn           `json:"net_in,omitempty"`
	LocalPorts  []uint32          `json:"local_ports,omitempty"`
	MappedPorts []PortMapping     `json:"mapped_ports,omitempty"`
	BindPorts   map[uint32]uint32 `json:"bind_ports,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"`
	Processes   []processRecord   `json:"processes,omitempty"`
	// Network is namespace mode's: namespace, link, address, cgroup.
	Network *networkRecord `json:"network,omitempty"`
}

type processRecord struct {
	ID      string `json:"id"`
	PID     int    `json:"pid"`
	PGID    int    `json:"pgid"`
	LogName string `json:"log_name"`
	// StartTicks is the start time from /proc/<pid>/stat (0 = unknown): a
	// recycled pid does not pass for the process.
	StartTicks uint64    `json:"start_ticks,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	Path       string    `json:"path"`
}

const (
	stateCreating = "creating"
	stateActive   = "active"
)

func (g *Garden) readMetadata(handle string) (*metadata, error) {
	data, err := os.ReadFile(filepath.Join(g.dir(handle), MetadataFile))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(g.dir(handle)); serr == nil {
			return nil, fmt.Errorf("garden: container %s has no %s (its creation was cut short)", handle, MetadataFile)
		}
		return nil, fmt.Errorf("garden: container %s: %w", handle, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("garden: container %s: cannot read its metadata: %w", handle, err)
	}
	var m metadata
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("garden: container %s: %s is not valid: %w", handle, MetadataFile, err)
	}
	return &m, nil
}

func (g *Garden) writeMetadata(m *metadata) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	dir := g.dir(m.Handle)
	tmp, err := os.CreateTemp(dir, "."+MetadataFile+".*")
	if err != nil {
		return fmt.Errorf("garden: container %s: cannot write its metadata: %w", m.Handle, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("garden: container %s: cannot write its metadata: %w", m.Handle, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("garden: container %s: cannot write its metadata: %w", m.Handle, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, MetadataFile)); err != nil {
		return fmt.Errorf("garden: container %s: cannot write its metadata: %w", m.Handle, err)
	}
	return nil
}

func (g *Garden) info(m *metadata) ContainerInfo {
	info := ContainerInfo{
		Handle:      m.Handle,
		Mode:        ModeProcess,
		Dir:         g.dir(m.Handle),
		ExternalIP:  LoopbackIP,
		ContainerIP: LoopbackIP,
		MappedPorts: append([]PortMapping(nil), m.MappedPorts...),
		BindPorts:   map[uint32]uint32{},
		Properties:  map[string]string{},
		MemoryMB:    m.MemoryMB,
		DiskMB:      m.DiskMB,
		CreatedAt:   m.CreatedAt,
	}
	if m.Mode == ModeNamespace {
		info.Mode = ModeNamespace
		info.ExternalIP = g.ExternalIP()
		info.ContainerIP = ""
	}
	if m.Network != nil {
		info.ExternalIP, info.ContainerIP = m.Network.ExternalIP, m.Network.ContainerIP
	}
	for k, v := range m.BindPorts {
		info.BindPorts[k] = v
	}
	for k, v := range m.Properties {
		info.Properties[k] = v
	}
	for _, p := range m.Processes {
		info.Processes = append(info.Processes, ProcessInfo{ID: p.ID, PID: p.PID, LogName: p.LogName, StartedAt: p.StartedAt})
	}
	return info
}

// validHandle keeps a handle a single, harmless path component.
func validHandle(h string) error {
	if h == "" {
		return errors.New("garden: the container handle is empty")
	}
	if len(h) > 255 {
		return fmt.Errorf("garden: the container handle %.64q... is longer than 255 characters", h)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("garden: the container handle %q may hold only letters, digits, '-', '_' and '.'", h)
		}
	}
	if h == "." || h == ".." || h[0] == '.' {
		return fmt.Errorf("garden: the container handle %q may not start with '.'", h)
	}
	return nil
}

// Create makes a container: its directory, the app's files, its ports and
// its metadata. On error nothing of it is left.
func (g *Garden) Create(ctx context.Context, spec ContainerSpec) (info ContainerInfo, err error) {
	h := spec.Handle
	if err := validHandle(h); err != nil {
		return ContainerInfo{}, err
	}
	for _, n := range spec.NetIn {
		if n.ContainerPort == 0 || n.ContainerPort > 65535 {
			return ContainerInfo{}, fmt.Errorf("garden: container %s: NetIn container port %d is not between 1 and 65535", h, n.ContainerPort)
		}
	}
	for _, p := range spec.LocalPorts {
		if p == 0 || p > 65535 {
			return ContainerInfo{}, fmt.Errorf("garden: container %s: local port %d is not between 1 and 65535", h, p)
		}
	}
	dir := g.dir(h)
	g.mu.Lock()
	if g.creating[h] || g.destroying[h] != nil {
		g.mu.Unlock()
		return ContainerInfo{}, fmt.Errorf("garden: container %s is being created or destroyed", h)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		g.mu.Unlock()
		if errors.Is(err, os.ErrExist) {
			return ContainerInfo{}, fmt.Errorf("garden: container %s already exists", h)
		}
		return ContainerInfo{}, fmt.Errorf("garden: container %s: cannot create its directory: %w", h, err)
	}
	g.creating[h] = true
	g.mu.Unlock()
	start := time.Now()

	var ports []uint32
	defer func() {
		if err != nil && g.ns != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			if nerr := g.destroyNetwork(cctx, h); nerr != nil {
				g.log.Warn("container-cleanup-failed", "handle", h, "error", nerr.Error())
			}
			cancel()
		}
		if err != nil {
			releasePorts(ports, g.owner(h))
			if rerr := os.RemoveAll(dir); rerr != nil {
				g.log.Warn("container-cleanup-failed", "handle", h, "error", rerr.Error())
			}
		}
		g.mu.Lock()
		delete(g.creating, h)
		g.mu.Unlock()
	}()

	m := &metadata{
		Handle: h, Mode: g.Mode(), State: stateCreating, CreatedAt: time.Now().UTC(),
		MemoryMB: spec.MemoryMB, DiskMB: spec.DiskMB,
		NetIn: spec.NetIn, LocalPorts: spec.LocalPorts, Properties: spec.Properties,
	}
	if g.ns != nil {
		m.Network = g.ns.record(h)
	}
	// Written first, so that a container whose creation a crash cut short
	// is still listed (and so destroyed) by the next run.
	if err := g.writeMetadata(m); err != nil {
		return ContainerInfo{}, err
	}
	for _, sub := range []string{"app", "logs", "tmp", "etc"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			return ContainerInfo{}, fmt.Errorf("garden: container %s: cannot create %s/: %w", h, sub, err)
		}
	}
	if err := g.populate(ctx, h, spec.Source, filepath.Join(dir, "app")); err != nil {
		return ContainerInfo{}, err
	}
	if g.ns != nil {
		if err := g.createNetwork(ctx, m, spec); err != nil {
			return ContainerInfo{}, err
		}
	} else {
		need := len(spec.NetIn) + len(spec.LocalPorts)
		ports, err = g.allocatePorts(h, need)
		if err != nil {
			return ContainerInfo{}, err
		}
		m.BindPorts = map[uint32]uint32{}
		for i, n := range spec.NetIn {
			m.MappedPorts = append(m.MappedPorts, PortMapping{ContainerPort: n.ContainerPort, HostPort: ports[i]})
			if _, dup := m.BindPorts[n.ContainerPort]; !dup {
				m.BindPorts[n.ContainerPort] = ports[i]
			}
		}
		for i, p := range spec.LocalPorts {
			if _, dup := m.BindPorts[p]; !dup {
				m.BindPorts[p] = ports[len(spec.NetIn)+i]
			}
		}
	}
	m.State = stateActive
	if err := g.writeMetadata(m); err != nil {
		return ContainerInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ContainerInfo{}, fmt.Errorf("garden: container %s: creation abandoned: %w", h, err)
	}
	info = g.info(m)
	g.log.Info("container-created", "handle", h, "dir", dir, "mapped_ports", portsAttr(info.MappedPorts),
		"duration", time.Since(start).String())
	if g.ns == nil {
		g.traceCreated(m)
		g.traceNoDNAT(m)
	}
	return info, nil
}

func portsAttr(pm []PortMapping) string {
	b, _ := json.Marshal(pm)
	return string(b)
}

// Info describes one container, from its metadata on disk.
func (g *Garden) Info(handle string) (ContainerInfo, error) {
	if err := validHandle(handle); err != nil {
		return ContainerInfo{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m, err := g.readMetadata(handle)
	if err != nil {
		return ContainerInfo{}, err
	}
	return g.info(m), nil
}

// Containers lists the containers on disk, including those of a previous
// run, sorted by handle. A container whose metadata cannot be read is listed
// with only its Handle and Dir, so that the caller can destroy it.
func (g *Garden) Containers() ([]ContainerInfo, error) {
	entries, err := os.ReadDir(g.containersDir)
	if err != nil {
		return nil, fmt.Errorf("garden: cannot list the containers in %s: %w", g.containersDir, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []ContainerInfo
	for _, e := range entries {
		h := e.Name()
		if !e.IsDir() || validHandle(h) != nil || g.creating[h] {
			continue
		}
		m, err := g.readMetadata(h)
		if errors.Is(err, ErrNotFound) {
			continue // destroyed meanwhile
		}
		if err != nil {
			g.log.Warn("container-metadata-unreadable", "handle", h, "error", err.Error())
			out = append(out, ContainerInfo{Handle: h, Mode: g.Mode(), Dir: g.dir(h), ExternalIP: g.ExternalIP(), ContainerIP: LoopbackIP,
				BindPorts: map[uint32]uint32{}, Properties: map[string]string{}})
			continue
		}
		out = append(out, g.info(m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Handle < out[j].Handle })
	return out, nil
}

// Destroy ends a container: SIGTERM to every process group, SIGKILL to
// those left after grace (at once if ctx ends), then removes the directory
// and releases the ports. Destroying a container that does not exist is not
// an error; a Destroy already in progress for the handle is waited for.
func (g *Garden) Destroy(ctx context.Context, handle string, grace time.Duration) error {
	if err := validHandle(handle); err != nil {
		return err
	}
	g.mu.Lock()
	if ch := g.destroying[handle]; ch != nil {
		g.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("garden: container %s: waiting for its destruction: %w", handle, ctx.Err())
		}
	}
	if g.creating[handle] {
		g.mu.Unlock()
		return fmt.Errorf("garden: container %s is still being created", handle)
	}
	dir := g.dir(handle)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		g.mu.Unlock()
		releaseOwner(g.owner(handle))
		return nil
	}
	done := make(chan struct{})
	g.destroying[handle] = done
	m, merr := g.readMetadata(handle)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.destroying, handle)
		delete(g.procs, handle)
		g.mu.Unlock()
		close(done)
	}()
	start := time.Now()

	var groups []int
	if merr != nil {
		g.log.Warn("container-metadata-unreadable", "handle", handle, "error", merr.Error())
	} else {
		seen := map[int]bool{}
		for _, p := range m.Processes {
			if p.PGID > 0 && !seen[p.PGID] {
				seen[p.PGID] = true
				groups = append(groups, p.PGID)
			}
		}
	}
	killed, err := g.stopGroups(ctx, handle, groups, grace)
	if err != nil {
		return err
	}
	if g.ns != nil {
		// Also what left its process group, then the network and cgroup.
		if err := g.destroyNetwork(context.WithoutCancel(ctx), handle); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("garden: container %s: cannot remove %s: %w", handle, dir, err)
	}
	releaseOwner(g.owner(handle))
	g.log.Info("container-destroyed", "handle", handle, "killed_after_grace", killed, "duration", time.Since(start).String())
	return nil
}

// stopGroups signals the process groups with SIGTERM, then SIGKILL after
// grace, and waits until none is left. It reports whether SIGKILL was needed.
func (g *Garden) stopGroups(ctx context.Context, handle string, groups []int, grace time.Duration) (bool, error) {
	alive := func() []int {
		var out []int
		for _, pg := range groups {
			if groupAlive(pg) {
				out = append(out, pg)
			}
		}
		return out
	}
	left := alive()
	if len(left) == 0 {
		return false, nil
	}
	for _, pg := range left {
		_ = syscall.Kill(-pg, syscall.SIGTERM)
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-tick.C:
			if left = alive(); len(left) == 0 {
				return false, nil
			}
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	left = alive()
	for _, pg := range left {
		_ = syscall.Kill(-pg, syscall.SIGKILL)
	}
	// SIGKILL cannot be ignored; give the kernel (and the reaper) a moment.
	giveUp := time.Now().Add(10 * time.Second)
	for {
		if left = alive(); len(left) == 0 {
			return true, nil
		}
		if time.Now().After(giveUp) {
			return true, fmt.Errorf("garden: container %s: process groups %v survived SIGKILL", handle, left)
		}
		for _, pg := range left {
			_ = syscall.Kill(-pg, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
