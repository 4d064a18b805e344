package garden

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The foundation network of namespace mode (DESIGN.md, "Network layout"):
//
//	root namespace          cell namespace <p>-cell-N              container namespace <p>-cN-<handle>
//	bridge <p>0 a.b.0.1/16 ─ veth <p>-cN ─ eth0 a.b.0.(10+N)/16   eth0 a.b.N.k/24 (default via a.b.N.1)
//	route a.b.N.0/24 via     bridge cbr0 a.b.N.1/24 ─ veth v<hash> ─┘
//	  a.b.0.(10+N)           ip_forward=1, nat PREROUTING → netin--<handle>
//
// Everything is named from a prefix (default "mcf"), so that several
// foundations (a developer's, each test's) never touch each other's parts,
// and `minicf down` can find what a crashed run left behind by name alone.
// The root namespace gets the range on its bridge (an on-link /16, so no
// packet for the range can take the default route) and one /24 route per
// cell; IP forwarding is switched on inside cell namespaces only.

// Defaults of the foundation network.
const (
	DefaultPrefix       = "mcf"
	DefaultNetworkRange = "10.244.0.0/16"
	// MaxCells is the highest cell number: cell N's address is a.b.0.(10+N).
	MaxCells = 244
	// CellBridge is the bridge inside each cell namespace.
	CellBridge = "cbr0"
	// NetnsDir is where `ip netns` keeps named namespaces.
	NetnsDir = "/run/netns"
	// RangeFlag is the flag that changes the range, named in CheckRange's errors.
	RangeFlag = "--network-range"
)

// Network is a foundation network: a prefix for every name and a /16
// range for every address.
type Network struct {
	Prefix string
	Range  netip.Prefix
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

// NewNetwork checks prefix and range. The prefix is 1 to 8 lowercase
// letters and digits, starting with a letter (link names stay within 15
// characters); the range is a private IPv4 /16.
func NewNetwork(prefix, cidr string) (*Network, error) {
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("network: the prefix %q must be 1 to 8 lowercase letters or digits, starting with a letter", prefix)
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("network: the range %q is not a CIDR (%s, e.g. %s): %v", cidr, RangeFlag, DefaultNetworkRange, err)
	}
	if !p.Addr().Is4() || p.Bits() != 16 || p.Masked() != p {
		return nil, fmt.Errorf("network: the range %s must be an IPv4 /16 such as %s (%s): cells take x.y.0.0/24, cell N's containers x.y.N.0/24",
			cidr, DefaultNetworkRange, RangeFlag)
	}
	if !p.Addr().IsPrivate() {
		return nil, fmt.Errorf("network: the range %s is not a private (RFC 1918) range; choose one with %s, e.g. %s",
			cidr, RangeFlag, DefaultNetworkRange)
	}
	return &Network{Prefix: prefix, Range: p}, nil
}

func (n *Network) addr(c, d byte) netip.Addr {
	a := n.Range.Addr().As4()
	a[2], a[3] = c, d
	return netip.AddrFrom4(a)
}

func validCell(i int) error {
	if i < 1 || i > MaxCells {
		return fmt.Errorf("network: cell number %d is not between 1 and %d", i, MaxCells)
	}
	return nil
}

// BridgeName is the foundation bridge in the root namespace.
func (n *Network) BridgeName() string { return n.Prefix + "0" }

// BridgeIP is the root namespace's address on the bridge: x.y.0.1.
func (n *Network) BridgeIP() netip.Addr { return n.addr(0, 1) }

// CellNS is cell i's network namespace.
func (n *Network) CellNS(i int) string { return n.Prefix + "-cell-" + strconv.Itoa(i) }

// CellVeth is the root side of cell i's link to the bridge.
func (n *Network) CellVeth(i int) string { return n.Prefix + "-c" + strconv.Itoa(i) }

// CellIP is cell i's address (its eth0): x.y.0.(10+i).
func (n *Network) CellIP(i int) netip.Addr { return n.addr(0, byte(10+i)) }

// CellSubnet is the /24 of cell i's containers: x.y.i.0/24.
func (n *Network) CellSubnet(i int) netip.Prefix { return netip.PrefixFrom(n.addr(byte(i), 0), 24) }

// CellGateway is cell i's address on its container bridge: x.y.i.1.
func (n *Network) CellGateway(i int) netip.Addr { return n.addr(byte(i), 1) }

// ContainerNS is the network namespace of a container on cell i.
func (n *Network) ContainerNS(i int, handle string) string {
	return n.Prefix + "-c" + strconv.Itoa(i) + "-" + handle
}

// ContainerVeth is the cell side of a container's link: v + 12 hex digits
// of the handle's hash (link names have at most 15 characters).
func ContainerVeth(handle string) string {
	sum := sha256.Sum256([]byte(handle))
	return "v" + hex.EncodeToString(sum[:6])
}

func (n *Network) cellNSRE() *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(n.Prefix) + `-cell-([0-9]+)$`)
}

func (n *Network) containerNSRE() *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(n.Prefix) + `-c([0-9]+)-([A-Za-z0-9_.-]+)$`)
}

func (n *Network) cellVethRE() *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(n.Prefix) + `-c([0-9]+)$`)
}

// ours says whether a root-namespace link is this network's.
func (n *Network) ours(link string) bool {
	return link == n.BridgeName() || n.cellVethRE().MatchString(link)
}

// HostRoute is a route of the host (root namespace).
type HostRoute struct {
	Dst   netip.Prefix
	Dev   string
	Table int
}

// HostAddr is an address of the host.
type HostAddr struct {
	Prefix netip.Prefix
	Dev    string
}

// HostNetwork is what CheckRange checks a range against.
type HostNetwork struct {
	Routes    []HostRoute
	Addresses []HostAddr
	// Resolvers are the DNS servers (nameserver lines of /etc/resolv.conf
	// and, where systemd-resolved runs, of its upstream list).
	Resolvers []netip.Addr
	// ResolverFiles say where Resolvers came from, for the message.
	ResolverFiles []string
}

// ResolvConfFiles are read for nameservers.
var ResolvConfFiles = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}

// ReadHostNetwork reads the root namespace's IPv4 routes (every table),
// addresses and DNS resolvers.
func ReadHostNetwork() (HostNetwork, error) {
	var h HostNetwork
	links, err := retryDump(func() ([]netlink.Link, error) { return netlink.LinkList() })
	if err != nil {
		return h, fmt.Errorf("network: cannot list the host's links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return h, fmt.Errorf("network: cannot list the host's routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // a default route
		}
		p, ok := ipNetPrefix(r.Dst)
		if !ok || p.Bits() == 0 {
			continue
		}
		h.Routes = append(h.Routes, HostRoute{Dst: p, Dev: names[r.LinkIndex], Table: r.Table})
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return h, fmt.Errorf("network: cannot list the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := ipNetPrefix(a.IPNet); ok {
			h.Addresses = append(h.Addresses, HostAddr{Prefix: p, Dev: names[a.LinkIndex]})
		}
	}
	for _, f := range ResolvConfFiles {
		ips, err := readResolvers(f)
		if err != nil {
			continue
		}
		h.Resolvers = append(h.Resolvers, ips...)
		for range ips {
			h.ResolverFiles = append(h.ResolverFiles, f)
		}
	}
	return h, nil
}

func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	var out []T
	var err error
	for range 5 {
		out, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}

func ipNetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	if !a.Is4() {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones), true
}

func readResolvers(path string) ([]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(strings.SplitN(fields[1], "%", 2)[0]); err == nil && a.Unmap().Is4() {
				out = append(out, a.Unmap())
			}
		}
	}
	return out, sc.Err()
}

// CheckRange refuses the range when it overlaps a route, an address or a
// DNS resolver of the host. The network's own bridge and cell links (of an
// earlier run, or of another cell) are not a clash.
func (n *Network) CheckRange(h HostNetwork) error {
	r := n.Range
	var clashes []string
	for i, a := range h.Resolvers {
		if r.Contains(a) {
			src := "/etc/resolv.conf"
			if i < len(h.ResolverFiles) {
				src = h.ResolverFiles[i]
			}
			clashes = append(clashes, fmt.Sprintf("the DNS resolver %s (%s)", a, src))
		}
	}
	for _, a := range h.Addresses {
		if n.ours(a.Dev) {
			continue
		}
		if a.Prefix.Overlaps(r) {
			clashes = append(clashes, fmt.Sprintf("the address %s on %s", a.Prefix, a.Dev))
		}
	}
	for _, rt := range h.Routes {
		if n.ours(rt.Dev) {
			continue
		}
		if rt.Dst.Overlaps(r) {
			dev := rt.Dev
			if dev == "" {
				dev = "no device"
			}
			table := ""
			if rt.Table != 0 && rt.Table != unix.RT_TABLE_MAIN {
				table = " in table " + strconv.Itoa(rt.Table)
			}
			clashes = append(clashes, fmt.Sprintf("the route %s dev %s%s", rt.Dst, dev, table))
		}
	}
	if len(clashes) == 0 {
		return nil
	}
	sort.Strings(clashes)
	return fmt.Errorf("network: the foundation range %s clashes with %s on this host; choose a free range with %s",
		r, strings.Join(dedup(clashes), ", "), RangeFlag)
}

func dedup(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// Preflight says why namespace mode cannot run here ("" when it can):
// it needs Linux, root, `ip` and iptables (iptables-restore and -save).
func Preflight() string {
	if runtime.GOOS != "linux" {
		return "namespace mode needs Linux (this is " + runtime.GOOS + ")"
	}
	if os.Geteuid() != 0 {
		return "namespace mode needs root"
	}
	for _, tool := range []string{"ip", "iptables", "iptables-restore", "iptables-save"} {
		if _, err := lookTool(tool); err != nil {
			return "namespace mode needs " + tool + ": " + err.Error()
		}
	}
	return ""
}

// lookTool finds a tool in PATH or in the sbin directories root's PATH
// usually has.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (not in PATH nor in /usr/sbin, /sbin)", name)
}

func runIP(ctx context.Context, args ...string) error {
	ip, err := lookTool("ip")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ip, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// LockFile serialises the network changes of every minicf on this host
// (several cells, test packages in parallel). It is not /run/netns, which
// iproute2 itself flocks while it adds a namespace.
var LockFile = "/run/lock/minicf-network.lock"

// lockNetwork takes LockFile's exclusive flock.
func lockNetwork() (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(LockFile), 0o755); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	f, err := os.OpenFile(LockFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("network: cannot lock %s: %w", LockFile, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join(NetnsDir, name))
	return err == nil
}

func addNetns(ctx context.Context, name string) error {
	if netnsExists(name) {
		return nil
	}
	return runIP(ctx, "netns", "add", name)
}

func delNetns(ctx context.Context, name string) error {
	if !netnsExists(name) {
		return nil
	}
	if err := runIP(ctx, "netns", "del", name); err != nil && netnsExists(name) {
		return err
	}
	return nil
}

func listNetns() []string {
	entries, err := os.ReadDir(NetnsDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// netnsPids lists the processes in a named namespace: those whose
// /proc/<pid>/ns/net is the namespace (what `ip netns pids` does).
func netnsPids(name string) []int {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join(NetnsDir, name), &want); err != nil {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/"+e.Name()+"/ns/net", &st); err != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			out = append(out, pid)
		}
	}
	return out
}

// killNetns SIGKILLs every process in the namespace and waits (up to 10s)
// until none is left. It returns the pids it signalled.
func killNetns(name string) ([]int, error) {
	var killed []int
	seen := map[int]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := livePids(netnsPids(name))
		if len(pids) == 0 {
			return killed, nil
		}
		if time.Now().After(deadline) {
			return killed, fmt.Errorf("network: processes %v in namespace %s survive SIGKILL", pids, name)
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
}

// livePids drops zombies (dead, waiting for their parent).
func livePids(pids []int) []int {
	var out []int
	for _, pid := range pids {
		if state, _, _, ok := procStat(pid); ok && state != 'Z' && state != 'X' {
			out = append(out, pid)
		}
	}
	return out
}

// inNetns runs f with a netlink handle in the named namespace; the calling
// thread never changes namespace.
func inNetns(name string, f func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("network: namespace %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("network: namespace %s: %w", name, err)
	}
	defer h.Close()
	return f(h)
}

// sysctlIn writes a sysctl of the named namespace, from a shell run in it
// (/proc/sys/net is the writer's namespace's). No thread of ours ever
// joins the namespace: a Go thread that did, if it were the main thread,
// would leave the whole process listed in the namespace.
func sysctlIn(name, key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	err := runIP(context.Background(), "netns", "exec", name, "/bin/sh", "-c", `echo "$1" > "$0"`, path, value)
	if err != nil {
		return fmt.Errorf("network: namespace %s: sysctl %s=%s: %w", name, key, value, err)
	}
	return nil
}

func hostNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

// EnsureFoundation checks the range against the host and creates the
// bridge (with x.y.0.1/16) if it is missing. Calling it again is harmless.
func (n *Network) EnsureFoundation(ctx context.Context) error {
	unlock, err := lockNetwork()
	if err != nil {
		return err
	}
	defer unlock()
	return n.ensureFoundation()
}

func (n *Network) ensureFoundation() error {
	h, err := ReadHostNetwork()
	if err != nil {
		return err
	}
	if err := n.CheckRange(h); err != nil {
		return err
	}
	name := n.BridgeName()
	link, err := netlink.LinkByName(name)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("network: bridge %s: %w", name, err)
	}
	if link != nil {
		if _, ok := link.(*netlink.Bridge); !ok {
			return fmt.Errorf("network: %s exists and is a %s, not a bridge; remove it or choose another --prefix", name, link.Type())
		}
	} else {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("network: cannot create the bridge %s: %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("network: bridge %s: %w", name, err)
		}
	}
	want := netip.PrefixFrom(n.BridgeIP(), 16)
	if have, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(link, netlink.FAMILY_V4) }); err == nil {
		for _, a := range have {
			if p, ok := ipNetPrefix(a.IPNet); ok && p != want {
				return fmt.Errorf("network: the bridge %s already has %s, from a foundation on another range; "+
					"run `minicf down --prefix %s` first, or keep its range with %s", name, p, n.Prefix, RangeFlag)
			}
		}
	}
	addr := &netlink.Addr{IPNet: hostNet(want)}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("network: bridge %s: cannot add %s: %w", name, addr.IPNet, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("network: bridge %s: cannot set it up: %w", name, err)
	}
	return nil
}

// EnsureCell makes sure the foundation and cell i exist (see the package
// picture) and returns the cell's address. Calling it again repairs what
// is missing and leaves what is there, containers included.
func (n *Network) EnsureCell(ctx context.Context, i int) (netip.Addr, error) {
	if err := validCell(i); err != nil {
		return netip.Addr{}, err
	}
	unlock, err := lockNetwork()
	if err != nil {
		return netip.Addr{}, err
	}
	defer unlock()
	if err := n.ensureFoundation(); err != nil {
		return netip.Addr{}, err
	}
	if err := n.ensureCell(ctx, i); err != nil {
		return netip.Addr{}, fmt.Errorf("network: cell %d: %w", i, err)
	}
	return n.CellIP(i), nil
}

func (n *Network) ensureCell(ctx context.Context, i int) error {
	nsName, vethName := n.CellNS(i), n.CellVeth(i)
	if err := addNetns(ctx, nsName); err != nil {
		return err
	}
	br, err := netlink.LinkByName(n.BridgeName())
	if err != nil {
		return err
	}
	hasEth0 := false
	_ = inNetns(nsName, func(h *netlink.Handle) error {
		_, err := h.LinkByName("eth0")
		hasEth0 = err == nil
		return nil
	})
	veth, err := netlink.LinkByName(vethName)
	if err != nil && !isNotFound(err) {
		return err
	}
	if veth == nil || !hasEth0 {
		// Half of a pair (or none): start the pair again.
		if veth != nil {
			if err := netlink.LinkDel(veth); err != nil && !isNotFound(err) {
				return fmt.Errorf("cannot remove the stale link %s: %w", vethName, err)
			}
		}
		if hasEth0 {
			_ = inNetns(nsName, func(h *netlink.Handle) error {
				if l, err := h.LinkByName("eth0"); err == nil {
					return h.LinkDel(l)
				}
				return nil
			})
		}
		ns, err := netns.GetFromName(nsName)
		if err != nil {
			return err
		}
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: vethName, MasterIndex: br.Attrs().Index},
			PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
		err = netlink.LinkAdd(v)
		ns.Close()
		if err != nil {
			return fmt.Errorf("cannot create the link %s: %w", vethName, err)
		}
		if veth, err = netlink.LinkByName(vethName); err != nil {
			return err
		}
	} else if veth.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMaster(veth, br); err != nil {
			return fmt.Errorf("cannot attach %s to %s: %w", vethName, n.BridgeName(), err)
		}
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("cannot set %s up: %w", vethName, err)
	}
	err = inNetns(nsName, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(lo); err != nil {
			return err
		}
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := h.AddrReplace(eth0, &netlink.Addr{IPNet: hostNet(netip.PrefixFrom(n.CellIP(i), 16))}); err != nil {
			return fmt.Errorf("eth0: cannot add %s/16: %w", n.CellIP(i), err)
		}
		if err := h.LinkSetUp(eth0); err != nil {
			return err
		}
		if err := h.RouteReplace(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: n.BridgeIP().AsSlice()}); err != nil {
			return fmt.Errorf("cannot add the default route via %s: %w", n.BridgeIP(), err)
		}
		cbr, err := h.LinkByName(CellBridge)
		if err != nil {
			if !isNotFound(err) {
				return err
			}
			if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: CellBridge}}); err != nil {
				return fmt.Errorf("cannot create %s: %w", CellBridge, err)
			}
			if cbr, err = h.LinkByName(CellBridge); err != nil {
				return err
			}
		}
		if err := h.AddrReplace(cbr, &netlink.Addr{IPNet: hostNet(netip.PrefixFrom(n.CellGateway(i), 24))}); err != nil {
			return fmt.Errorf("%s: cannot add %s/24: %w", CellBridge, n.CellGateway(i), err)
		}
		return h.LinkSetUp(cbr)
	})
	if err != nil {
		return fmt.Errorf("namespace %s: %w", nsName, err)
	}
	if err := sysctlIn(nsName, "net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	route := &netlink.Route{LinkIndex: br.Attrs().Index, Dst: hostNet(n.CellSubnet(i)), Gw: n.CellIP(i).AsSlice()}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("cannot route %s via %s: %w", n.CellSubnet(i), n.CellIP(i), err)
	}
	return nil
}

// CellReady checks that cell i's namespace and container bridge exist.
func (n *Network) CellReady(i int) error {
	if err := validCell(i); err != nil {
		return err
	}
	if !netnsExists(n.CellNS(i)) {
		return fmt.Errorf("network: cell %d has no namespace %s (EnsureCell makes it)", i, n.CellNS(i))
	}
	return inNetns(n.CellNS(i), func(h *netlink.Handle) error {
		if _, err := h.LinkByName(CellBridge); err != nil {
			return fmt.Errorf("network: cell %d has no %s: %w", i, CellBridge, err)
		}
		return nil
	})
}

// Report says what a teardown removed.
type Report struct {
	Killed     []int    // processes signalled (SIGKILL)
	Namespaces []string // network namespaces deleted
	Links      []string // root-namespace links deleted
	Routes     []string // root-namespace routes deleted
	Cgroups    []string // cgroup directories removed
	Errors     []string
}

func (r *Report) merge(o *Report) {
	r.Killed = append(r.Killed, o.Killed...)
	r.Namespaces = append(r.Namespaces, o.Namespaces...)
	r.Links = append(r.Links, o.Links...)
	r.Routes = append(r.Routes, o.Routes...)
	r.Cgroups = append(r.Cgroups, o.Cgroups...)
	r.Errors = append(r.Errors, o.Errors...)
}

// Empty says whether nothing was removed (and nothing failed).
func (r *Report) Empty() bool {
	return len(r.Killed)+len(r.Namespaces)+len(r.Links)+len(r.Routes)+len(r.Cgroups)+len(r.Errors) == 0
}

func (r *Report) err() error {
	if len(r.Errors) == 0 {
		return nil
	}
	return errors.New("network: " + strings.Join(r.Errors, "; "))
}

func (r *Report) String() string {
	var b strings.Builder
	line := func(what string, items []string) {
		if len(items) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", what, strings.Join(items, " "))
		}
	}
	var pids []string
	for _, p := range r.Killed {
		pids = append(pids, strconv.Itoa(p))
	}
	line("killed", pids)
	line("namespaces", r.Namespaces)
	line("links", r.Links)
	line("routes", r.Routes)
	line("cgroups", r.Cgroups)
	line("errors", r.Errors)
	if b.Len() == 0 {
		return "nothing to remove\n"
	}
	return b.String()
}

// removeNetns kills what runs in a namespace and deletes it.
func removeNetns(ctx context.Context, name string, rep *Report) {
	if !netnsExists(name) {
		return
	}
	killed, err := killNetns(name)
	rep.Killed = append(rep.Killed, killed...)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	if err := delNetns(ctx, name); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return
	}
	rep.Namespaces = append(rep.Namespaces, name)
}

// TeardownCell removes cell i: the processes and namespaces of its
// containers, their cgroups, the cell's namespace (with its iptables
// chains), its link and route in the root namespace. When no cell of the
// foundation is left, the bridge goes too. Idempotent.
func (n *Network) TeardownCell(ctx context.Context, i int) (*Report, error) {
	if err := validCell(i); err != nil {
		return nil, err
	}
	unlock, err := lockNetwork()
	if err != nil {
		return nil, err
	}
	defer unlock()
	rep := &Report{}
	cre := n.containerNSRE()
	cg := detectCgroups()
	for _, ns := range listNetns() {
		if m := cre.FindStringSubmatch(ns); m != nil && m[1] == strconv.Itoa(i) {
			removeNetns(ctx, ns, rep)
			if cg != nil {
				cg.removeInto(n.Prefix, m[2], rep)
			}
		}
	}
	removeNetns(ctx, n.CellNS(i), rep)
	if l, err := netlink.LinkByName(n.CellVeth(i)); err == nil {
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			rep.Errors = append(rep.Errors, fmt.Sprintf("cannot delete %s: %v", n.CellVeth(i), err))
		} else {
			rep.Links = append(rep.Links, n.CellVeth(i))
		}
	}
	if br, err := netlink.LinkByName(n.BridgeName()); err == nil {
		route := &netlink.Route{LinkIndex: br.Attrs().Index, Dst: hostNet(n.CellSubnet(i)), Gw: n.CellIP(i).AsSlice()}
		if err := netlink.RouteDel(route); err == nil {
			rep.Routes = append(rep.Routes, n.CellSubnet(i).String()+" via "+n.CellIP(i).String())
		} else if !errors.Is(err, unix.ESRCH) && !isNotFound(err) {
			rep.Errors = append(rep.Errors, fmt.Sprintf("cannot delete the route to %s: %v", n.CellSubnet(i), err))
		}
		if !n.anyCellLocked() {
			if err := netlink.LinkDel(br); err != nil && !isNotFound(err) {
				rep.Errors = append(rep.Errors, fmt.Sprintf("cannot delete %s: %v", n.BridgeName(), err))
			} else {
				rep.Links = append(rep.Links, n.BridgeName())
			}
			if cg != nil {
				cg.removePrefixDir(n.Prefix, rep)
			}
		}
	}
	return rep, rep.err()
}

// anyCellLocked says whether a cell of the foundation (namespace or link)
// remains.
func (n *Network) anyCellLocked() bool {
	cre, ore := n.cellNSRE(), n.containerNSRE()
	for _, ns := range listNetns() {
		if cre.MatchString(ns) || ore.MatchString(ns) {
			return true
		}
	}
	links, _ := retryDump(func() ([]netlink.Link, error) { return netlink.LinkList() })
	vre := n.cellVethRE()
	for _, l := range links {
		if vre.MatchString(l.Attrs().Name) {
			return true
		}
	}
	return false
}

// Down removes everything of the foundation named prefix, whatever state a
// crashed run left it in: the processes in its container and cell
// namespaces (SIGKILL, by the namespaces' pid lists), the namespaces (and
// with them the cells' iptables chains and container links), the bridge
// and cell links in the root namespace (and with them the routes), and the
// cgroups. It never touches a name that is not the prefix's own pattern.
// Idempotent: a second Down finds nothing.
func Down(ctx context.Context, prefix string) (*Report, error) {
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("network: the prefix %q must be 1 to 8 lowercase letters or digits, starting with a letter", prefix)
	}
	n := &Network{Prefix: prefix}
	unlock, err := lockNetwork()
	if err != nil {
		return nil, err
	}
	defer unlock()
	rep := &Report{}
	cre, ore := n.cellNSRE(), n.containerNSRE()
	var cells []string
	for _, ns := range listNetns() {
		switch {
		case ore.MatchString(ns):
			removeNetns(ctx, ns, rep) // containers first: their links hang on the cells
		case cre.MatchString(ns):
			cells = append(cells, ns)
		}
	}
	for _, ns := range cells {
		removeNetns(ctx, ns, rep)
	}
	links, err := retryDump(func() ([]netlink.Link, error) { return netlink.LinkList() })
	if err != nil {
		rep.Errors = append(rep.Errors, "cannot list links: "+err.Error())
	}
	for _, l := range links {
		name := l.Attrs().Name
		if !n.ours(name) {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			if !isNotFound(err) {
				rep.Errors = append(rep.Errors, fmt.Sprintf("cannot delete %s: %v", name, err))
			}
			continue // (a veth's peer goes with it)
		}
		rep.Links = append(rep.Links, name)
	}
	if cg := detectCgroups(); cg != nil {
		cg.removePrefix(prefix, rep)
	}
	return rep, rep.err()
}

// inNetnsFd is inNetns that also passes the namespace's file descriptor
// (to move a link into it).
func inNetnsFd(name string, f func(fd int, h *netlink.Handle) error) error {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("network: namespace %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("network: namespace %s: %w", name, err)
	}
	defer h.Close()
	return f(int(ns), h)
}

// ClaimFoundation picks the first of ranges that is free on this host and
// creates the foundation bridge on it, both under the network lock, so
// two callers (test packages running in parallel) never pick the same
// range. A foundation of the same prefix that already exists is reused
// when its range is among the candidates.
func ClaimFoundation(ctx context.Context, prefix string, ranges []string) (*Network, error) {
	unlock, err := lockNetwork()
	if err != nil {
		return nil, err
	}
	defer unlock()
	h, err := ReadHostNetwork()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, r := range ranges {
		n, err := NewNetwork(prefix, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := n.CheckRange(h); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := n.ensureFoundation(); err != nil {
			return nil, err
		}
		return n, nil
	}
	return nil, fmt.Errorf("network: no free range among %d candidates: %w", len(ranges), errors.Join(errs...))
}
