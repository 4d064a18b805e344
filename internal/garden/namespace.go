package garden

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/minicf/minicf/internal/netin"
	"github.com/minicf/minicf/internal/trace"
)

// Namespace mode: a container is, besides its directory (as in process
// mode), a network namespace on its cell's network, a memory cgroup and a
// netin chain in the cell:
//
//   - the namespace <prefix>-c<N>-<handle>, its eth0 the end of a veth
//     pair whose other end (v<hash>) hangs on the cell's bridge cbr0, with
//     the next free address of the cell's /24 (round-robin, as host-local
//     IPAM) and a default route via the cell;
//   - the cgroup <memory root>/<prefix>/<handle> with the container's
//     memory limit (where the host has a memory controller; otherwise the
//     Garden logs it once and goes on without limits);
//   - per NetIn a host port of the cell (61000 upward, first free, as
//     garden-external-networker) and a DNAT rule in the cell's chain
//     netin--<handle>: cell ip:host port -> overlay ip:container port;
//   - processes run in the namespace at the real ports (BindPorts is the
//     identity: PORT=8080, envoy on 61001), through
//     `sh -c 'echo $$ > <cgroup>/cgroup.procs && exec "$@"' ip netns exec <ns> <path> <args>`:
//     the shell joins the cgroup and execs, so the pid the Garden records is
//     the process's own, and every child is in the cgroup from the start.
//
// Processes see the host's filesystem (no root filesystem of their own),
// as in process mode.

// Modes of a Garden, as ContainerInfo.Mode and Garden.Mode report them.
const (
	ModeProcess   = "process"
	ModeNamespace = "namespace"
)

// PortForwarder maps host ports of the cell to containers: netin's Manager.
type PortForwarder interface {
	Add(ctx context.Context, c netin.Container) error
	Remove(ctx context.Context, handle string) error
}

// NamespaceConfig configures a namespace-mode Garden: one per cell.
type NamespaceConfig struct {
	// Root is the Garden's directory, as in ProcessConfig.
	Root string
	// Network is the foundation network; Cell the cell's number on it. The
	// cell must exist (Network.EnsureCell).
	Network *Network
	Cell    int
	// PortRangeStart and PortRangeEnd bound the cell's host ports (default
	// 61000-65535).
	PortRangeStart, PortRangeEnd int
	// Netin applies the DNAT rules (default: a netin.Manager on the cell's
	// nat table, see Garden.Netin).
	Netin PortForwarder
	// NoCgroups switches the memory cgroups off.
	NoCgroups bool

	MaxSourceBytes    int64
	HTTPClient        *http.Client
	AdoptPollInterval time.Duration
	Trace             trace.Emitter // see ProcessConfig.Trace
	Logger            *slog.Logger
}

// nsState is a namespace-mode Garden's network: the cell and its pools.
type nsState struct {
	net     *Network
	cell    int
	cellIP  netip.Addr
	netin   PortForwarder
	manager *netin.Manager // when the Garden made it
	cg      *cgroupFS      // nil: no memory limits
	ipTool  string

	// Guarded by Garden.mu.
	ips    map[netip.Addr]string // overlay address -> handle
	lastIP netip.Addr
	ports  map[uint32]string // host port -> handle
}

// NewNamespaceGarden makes a namespace-mode Garden for cell cfg.Cell on
// cfg.Root. Containers already on disk keep their addresses and ports, and
// their DNAT rules are applied again.
func NewNamespaceGarden(cfg NamespaceConfig) (*Garden, error) {
	if why := Preflight(); why != "" {
		return nil, errors.New("garden: " + why)
	}
	if cfg.Network == nil {
		return nil, errors.New("garden: namespace mode needs the foundation Network")
	}
	if err := cfg.Network.CellReady(cfg.Cell); err != nil {
		return nil, fmt.Errorf("garden: %w", err)
	}
	ipTool, err := lookTool("ip")
	if err != nil {
		return nil, fmt.Errorf("garden: %w", err)
	}
	g, err := openGarden(ProcessConfig{Root: cfg.Root, PortRangeStart: cfg.PortRangeStart, PortRangeEnd: cfg.PortRangeEnd,
		MaxSourceBytes: cfg.MaxSourceBytes, HTTPClient: cfg.HTTPClient, AdoptPollInterval: cfg.AdoptPollInterval, Trace: cfg.Trace, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	n := cfg.Network
	st := &nsState{net: n, cell: cfg.Cell, cellIP: n.CellIP(cfg.Cell), netin: cfg.Netin, ipTool: ipTool,
		ips: map[netip.Addr]string{}, ports: map[uint32]string{}}
	if st.netin == nil {
		st.manager = netin.NewManager(netin.NamespaceIptables(n.CellNS(cfg.Cell)), st.cellIP.String(),
			g.log.With("cell_ns", n.CellNS(cfg.Cell)))
		st.netin = st.manager
	}
	if !cfg.NoCgroups {
		if st.cg = detectCgroups(); st.cg == nil {
			g.log.Warn("cgroups-unavailable", "reason", cgroupUnavailable(), "consequence", "containers run without memory limits")
		}
	}
	g.ns = st
	infos, err := g.Containers()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, info := range infos {
		m, err := g.readMetadata(info.Handle)
		if err != nil || m.Network == nil {
			continue // Destroy copes with it
		}
		if ip, err := netip.ParseAddr(m.Network.ContainerIP); err == nil {
			st.ips[ip] = m.Handle
		}
		for _, pm := range m.MappedPorts {
			st.ports[pm.HostPort] = m.Handle
		}
		if m.State == stateActive && netnsExists(m.Network.Netns) {
			if err := st.netin.Add(ctx, st.netinContainer(m)); err != nil {
				g.log.Warn("container-netin-restore-failed", "handle", m.Handle, "error", err.Error())
			}
		}
	}
	g.log.Info("namespace-garden-started", "cell", cfg.Cell, "cell_ns", n.CellNS(cfg.Cell), "cell_ip", st.cellIP.String(),
		"subnet", n.CellSubnet(cfg.Cell).String(), "containers", len(infos), "memory_cgroups", st.cg != nil)
	return g, nil
}

// Mode is ModeProcess or ModeNamespace.
func (g *Garden) Mode() string {
	if g.ns != nil {
		return ModeNamespace
	}
	return ModeProcess
}

// Netin is the netin Manager the Garden made for its cell (nil in process
// mode or when NamespaceConfig.Netin was given): run its Run loop to
// repair drift.
func (g *Garden) Netin() *netin.Manager {
	if g.ns == nil {
		return nil
	}
	return g.ns.manager
}

// networkRecord is what container.json keeps of a namespace container.
type networkRecord struct {
	Prefix      string `json:"prefix"`
	Cell        int    `json:"cell"`
	Netns       string `json:"netns"`
	Veth        string `json:"veth"`
	ContainerIP string `json:"container_ip"`
	ExternalIP  string `json:"external_ip"`
	Cgroup      string `json:"cgroup,omitempty"`
}

// record is a new container's networkRecord, without its address yet.
func (st *nsState) record(handle string) *networkRecord {
	r := &networkRecord{Prefix: st.net.Prefix, Cell: st.cell, Netns: st.net.ContainerNS(st.cell, handle),
		Veth: ContainerVeth(handle), ExternalIP: st.cellIP.String()}
	if st.cg != nil {
		r.Cgroup = st.cg.dir(st.net.Prefix, handle)
	}
	return r
}

func (st *nsState) netinContainer(m *metadata) netin.Container {
	c := netin.Container{Handle: m.Handle}
	for _, pm := range m.MappedPorts {
		c.Mappings = append(c.Mappings, netin.Mapping{HostPort: pm.HostPort, ContainerIP: m.Network.ContainerIP, ContainerPort: pm.ContainerPort})
	}
	return c
}

// allocateLocked takes the next free overlay address (after the last one
// handed out, as host-local IPAM) and n free host ports (lowest first).
func (st *nsState) allocateLocked(handle string, n, portStart, portEnd int) (netip.Addr, []uint32, error) {
	subnet := st.net.CellSubnet(st.cell)
	first, last := subnet.Addr().Next().Next(), st.net.addr(byte(st.cell), 254) // .2 - .254
	var ip netip.Addr
	cand := st.lastIP
	for range 253 {
		if !cand.IsValid() || cand == last || !subnet.Contains(cand) {
			cand = first
		} else {
			cand = cand.Next()
		}
		if _, taken := st.ips[cand]; !taken {
			ip = cand
			break
		}
	}
	if !ip.IsValid() {
		return netip.Addr{}, nil, fmt.Errorf("garden: container %s: no address is left in %s", handle, subnet)
	}
	var ports []uint32
	for p := portStart; p <= portEnd && len(ports) < n; p++ {
		if _, taken := st.ports[uint32(p)]; !taken {
			ports = append(ports, uint32(p))
		}
	}
	if len(ports) < n {
		return netip.Addr{}, nil, fmt.Errorf("garden: container %s: only %d of the %d host ports it needs are free in %d-%d",
			handle, len(ports), n, portStart, portEnd)
	}
	st.ips[ip] = handle
	st.lastIP = ip
	for _, p := range ports {
		st.ports[p] = handle
	}
	return ip, ports, nil
}

func (st *nsState) releaseLocked(handle string) {
	for ip, h := range st.ips {
		if h == handle {
			delete(st.ips, ip)
		}
	}
	for p, h := range st.ports {
		if h == handle {
			delete(st.ports, p)
		}
	}
}

// createNetwork gives the container its ports, address, namespace, link,
// cgroup and DNAT rules, recording each in m before making it.
func (g *Garden) createNetwork(ctx context.Context, m *metadata, spec ContainerSpec) error {
	st := g.ns
	h := m.Handle
	g.mu.Lock()
	ip, ports, err := st.allocateLocked(h, len(spec.NetIn), g.cfg.PortRangeStart, g.cfg.PortRangeEnd)
	g.mu.Unlock()
	if err != nil {
		return err
	}
	if m.Network == nil {
		m.Network = st.record(h)
	}
	m.Network.ContainerIP = ip.String()
	m.BindPorts = map[uint32]uint32{}
	for i, n := range spec.NetIn {
		m.MappedPorts = append(m.MappedPorts, PortMapping{ContainerPort: n.ContainerPort, HostPort: ports[i]})
		m.BindPorts[n.ContainerPort] = n.ContainerPort
	}
	for _, p := range spec.LocalPorts {
		m.BindPorts[p] = p
	}
	// Recorded before anything is made: a crash from here on leaves a
	// container that Destroy (or Down) can take apart.
	if err := g.writeMetadata(m); err != nil {
		return err
	}
	if err := st.net.addContainer(ctx, st.cell, h, ip); err != nil {
		return fmt.Errorf("garden: container %s: %w", h, err)
	}
	g.traceCreated(m)
	if st.cg != nil {
		if _, err := st.cg.create(st.net.Prefix, h, m.MemoryMB); err != nil {
			return fmt.Errorf("garden: container %s: %w", h, err)
		}
	}
	if len(m.MappedPorts) > 0 {
		if err := st.netin.Add(ctx, st.netinContainer(m)); err != nil {
			return fmt.Errorf("garden: container %s: %w", h, err)
		}
		g.traceDNAT(m, st.netinContainer(m))
	}
	return nil
}

// destroyNetwork takes apart what createNetwork made (or any part of it):
// the DNAT rules, every process left in the namespace or the cgroup, the
// link, the namespace and the cgroup. It is also right for a container
// whose metadata is lost: every name follows from the handle.
func (g *Garden) destroyNetwork(ctx context.Context, handle string) error {
	st := g.ns
	var errs []error
	if err := st.netin.Remove(ctx, handle); err != nil {
		errs = append(errs, err)
	}
	if err := st.net.removeContainer(ctx, st.cell, handle); err != nil {
		errs = append(errs, err)
	}
	if st.cg != nil {
		if err := st.cg.remove(st.net.Prefix, handle); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("garden: container %s: %w", handle, err)
	}
	g.mu.Lock()
	st.releaseLocked(handle)
	g.mu.Unlock()
	return nil
}

// wrap turns a process into the command that runs it in the container's
// namespace and cgroup.
func (g *Garden) wrap(m *metadata, path string, args []string) (string, []string) {
	if g.ns == nil || m.Network == nil {
		return path, args
	}
	cmd := append([]string{g.ns.ipTool, "netns", "exec", m.Network.Netns, path}, args...)
	if m.Network.Cgroup == "" {
		return cmd[0], cmd[1:]
	}
	procs := filepath.Join(m.Network.Cgroup, "cgroup.procs")
	return "/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, procs}, cmd...)
}

// addContainer makes the container's namespace and its link to cell i's
// bridge, with ip/24 and a default route via the cell.
func (n *Network) addContainer(ctx context.Context, i int, handle string, ip netip.Addr) error {
	nsName := n.ContainerNS(i, handle)
	if err := addNetns(ctx, nsName); err != nil {
		return err
	}
	vethName := ContainerVeth(handle)
	err := inNetns(n.CellNS(i), func(cell *netlink.Handle) error {
		br, err := cell.LinkByName(CellBridge)
		if err != nil {
			return fmt.Errorf("cell %d has no %s: %w", i, CellBridge, err)
		}
		if old, err := cell.LinkByName(vethName); err == nil {
			_ = cell.LinkDel(old) // of a container whose creation was cut short
		}
		return inNetnsFd(nsName, func(fd int, ctr *netlink.Handle) error {
			v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: vethName, MasterIndex: br.Attrs().Index},
				PeerName: "eth0", PeerNamespace: netlink.NsFd(fd)}
			if err := cell.LinkAdd(v); err != nil {
				return fmt.Errorf("cannot create the link %s: %w", vethName, err)
			}
			veth, err := cell.LinkByName(vethName)
			if err != nil {
				return err
			}
			if err := cell.LinkSetUp(veth); err != nil {
				return err
			}
			lo, err := ctr.LinkByName("lo")
			if err != nil {
				return err
			}
			if err := ctr.LinkSetUp(lo); err != nil {
				return err
			}
			eth0, err := ctr.LinkByName("eth0")
			if err != nil {
				return err
			}
			if err := ctr.AddrReplace(eth0, &netlink.Addr{IPNet: hostNet(netip.PrefixFrom(ip, 24))}); err != nil {
				return fmt.Errorf("eth0: cannot add %s/24: %w", ip, err)
			}
			if err := ctr.LinkSetUp(eth0); err != nil {
				return err
			}
			gw := n.CellGateway(i)
			if err := ctr.RouteReplace(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
				return fmt.Errorf("cannot add the default route via %s: %w", gw, err)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("namespace %s: %w", nsName, err)
	}
	return nil
}

// removeContainer kills what runs in the container's namespace, deletes
// its link in the cell (both ends go) and the namespace.
func (n *Network) removeContainer(ctx context.Context, i int, handle string) error {
	nsName := n.ContainerNS(i, handle)
	var errs []error
	if _, err := killNetns(nsName); err != nil {
		errs = append(errs, err)
	}
	if netnsExists(n.CellNS(i)) {
		err := inNetns(n.CellNS(i), func(cell *netlink.Handle) error {
			l, err := cell.LinkByName(ContainerVeth(handle))
			if err != nil {
				return nil
			}
			if err := cell.LinkDel(l); err != nil && !isNotFound(err) {
				return fmt.Errorf("cannot delete the link %s: %w", ContainerVeth(handle), err)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := delNetns(ctx, nsName); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ContainerNetns lists the container namespaces of cell i, sorted.
func (n *Network) ContainerNetns(i int) []string {
	re := n.containerNSRE()
	var out []string
	for _, ns := range listNetns() {
		if m := re.FindStringSubmatch(ns); m != nil && (i == 0 || m[1] == fmt.Sprint(i)) {
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

// Leftovers lists what of the foundation named prefix exists: namespaces,
// root-namespace links and cgroup directories. Empty after Down.
func Leftovers(prefix string) []string {
	n := &Network{Prefix: prefix}
	var out []string
	cre, ore := n.cellNSRE(), n.containerNSRE()
	for _, ns := range listNetns() {
		if cre.MatchString(ns) || ore.MatchString(ns) {
			out = append(out, "netns "+ns)
		}
	}
	links, _ := retryDump(func() ([]netlink.Link, error) { return netlink.LinkList() })
	for _, l := range links {
		if n.ours(l.Attrs().Name) {
			out = append(out, "link "+l.Attrs().Name)
		}
	}
	if cg := detectCgroups(); cg != nil {
		if _, err := os.Stat(filepath.Join(cg.root, prefix)); err == nil {
			out = append(out, "cgroup "+filepath.Join(cg.root, prefix))
		}
	}
	sort.Strings(out)
	return out
}

// RemoveNamespaceContainers removes the directories of the namespace-mode
// containers of the foundation named prefix under a Garden root (what
// `minicf down --home` does for each cell after Down). It reads only
// container.json; process-mode containers and other prefixes' are left.
func RemoveNamespaceContainers(root, prefix string) ([]string, error) {
	dir := filepath.Join(root, "containers")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || validHandle(e.Name()) != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), MetadataFile))
		if err != nil {
			continue
		}
		var m metadata
		if json.Unmarshal(data, &m) != nil || m.Mode != ModeNamespace || m.Network == nil || m.Network.Prefix != prefix {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, filepath.Join(dir, e.Name()))
	}
	return removed, errors.Join(errs...)
}
