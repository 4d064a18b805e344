package garden

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/minicf/minicf/internal/netin"
	"github.com/minicf/minicf/internal/testutil"
)

// The tests below need root, `ip` and iptables: they make real namespaces,
// links and chains. Each test has a foundation of its own, named from a
// random prefix ("mct" + 4 hex digits) on a free /16 in 10.240-10.254 (never
// 10.255, where this kind of host keeps its resolver, nor 10.244, minicf's
// default), and leaves nothing
// behind: a cleanup runs Down for its prefix and fails the test if any of
// it remains.

// TestMain also runs the helper processes the tests start in containers.
func TestMain(m *testing.M) {
	switch os.Getenv("GARDEN_TEST_HELPER") {
	case "app":
		helperApp()
		return
	case "proxy":
		helperProxy()
		return
	}
	os.Exit(m.Run())
}

// helperApp answers every connection on $PORT with who it is and where it
// was reached.
func helperApp() {
	ln, err := net.Listen("tcp", ":"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("app listening on", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		fmt.Fprintf(c, "app %s local %s remote %s\n", os.Getenv("HANDLE"), c.LocalAddr(), c.RemoteAddr())
		c.Close()
	}
}

// helperProxy is an envoy-like TCP proxy: $LISTEN -> $TARGET.
func helperProxy() {
	ln, err := net.Listen("tcp", os.Getenv("LISTEN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("proxy listening on", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", os.Getenv("TARGET"))
			if err != nil {
				fmt.Fprintf(c, "proxy: %v\n", err)
				return
			}
			defer up.Close()
			go io.Copy(up, c)
			io.Copy(c, up)
		}()
	}
}

// requireNamespaces skips (fails, in CI) when namespace mode cannot run.
func requireNamespaces(t testing.TB) {
	t.Helper()
	if why := Preflight(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %s: the namespace tests must run in CI", why)
		}
		t.Skip(why)
	}
}

// testNetwork claims a foundation (bridge only) of the test's own.
func testNetwork(t testing.TB) *Network {
	t.Helper()
	requireNamespaces(t)
	prefix := fmt.Sprintf("mct%04x", rand.IntN(1<<16))
	var ranges []string
	for _, i := range rand.Perm(15) {
		if 240+i != 244 { // minicf's default: a developer's foundation
			ranges = append(ranges, fmt.Sprintf("10.%d.0.0/16", 240+i))
		}
	}
	n, err := ClaimFoundation(context.Background(), prefix, ranges)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rep, err := Down(context.Background(), prefix)
		if err != nil {
			t.Errorf("Down(%s): %v", prefix, err)
		}
		if left := Leftovers(prefix); len(left) > 0 {
			t.Errorf("Down(%s) left %v (report: %s)", prefix, left, rep)
		}
	})
	t.Logf("foundation %s on %s", prefix, n.Range)
	return n
}

func ensureCell(t testing.TB, n *Network, i int) netip.Addr {
	t.Helper()
	ip, err := n.EnsureCell(context.Background(), i)
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

func newNamespaceGarden(t testing.TB, n *Network, cell int, root string) *Garden {
	t.Helper()
	g, err := NewNamespaceGarden(NamespaceConfig{Root: root, Network: n, Cell: cell, AdoptPollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func natRules(t testing.TB, ns string) string {
	t.Helper()
	return run(t, "ip", "netns", "exec", ns, "iptables", "-t", "nat", "-S")
}

func readSysctl(t testing.TB, ns, key string) string {
	t.Helper()
	if ns == "" {
		data, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	return strings.TrimSpace(run(t, "ip", "netns", "exec", ns, "sysctl", "-n", key))
}

func TestNetworkFoundationRoutesTheRangeToTheBridge(t *testing.T) {
	n := testNetwork(t)
	rootForward := readSysctl(t, "", "net.ipv4.ip_forward")
	ip1, ip2 := ensureCell(t, n, 1), ensureCell(t, n, 2)
	if again := ensureCell(t, n, 1); again != ip1 { // idempotent
		t.Fatalf("cell 1 is %s, then %s", ip1, again)
	}
	if ip1 != n.CellIP(1) || ip2 != n.CellIP(2) {
		t.Fatalf("cell addresses %s %s", ip1, ip2)
	}
	// Any address of the range goes to the bridge, never the default route.
	for _, addr := range []netip.Addr{n.addr(0, 200), n.addr(200, 7), n.addr(255, 254)} {
		a := addr.String()
		out := run(t, "ip", "route", "get", a)
		if !strings.Contains(out, " dev "+n.BridgeName()+" ") {
			t.Errorf("ip route get %s: %s, want dev %s", a, strings.TrimSpace(out), n.BridgeName())
		}
	}
	// A cell's containers are reached via the cell.
	inCell1 := n.addr(1, 5).String()
	if out := run(t, "ip", "route", "get", inCell1); !strings.Contains(out, "via "+ip1.String()+" dev "+n.BridgeName()) {
		t.Errorf("ip route get %s: %s, want via %s dev %s", inCell1, strings.TrimSpace(out), ip1, n.BridgeName())
	}
	// Forwarding is on inside the cells and as it was in the root namespace.
	for _, i := range []int{1, 2} {
		if v := readSysctl(t, n.CellNS(i), "net.ipv4.ip_forward"); v != "1" {
			t.Errorf("cell %d: ip_forward %s", i, v)
		}
	}
	if v := readSysctl(t, "", "net.ipv4.ip_forward"); v != rootForward {
		t.Errorf("root ip_forward changed from %s to %s", rootForward, v)
	}
	// The root namespace reaches a cell (the cell answers on its address).
	out := run(t, "ip", "netns", "exec", n.CellNS(2), "ip", "-4", "-o", "addr", "show", "eth0")
	if !strings.Contains(out, ip2.String()+"/16") {
		t.Errorf("cell 2's eth0: %s", out)
	}
	exe, _ := os.Executable()
	listener := exec.Command("ip", "netns", "exec", n.CellNS(2), exe)
	listener.Env = append(os.Environ(), "GARDEN_TEST_HELPER=app", "PORT=7777", "HANDLE=cell-2")
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Process.Kill(); listener.Wait() })
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		line, err := dialLine(net.JoinHostPort(ip2.String(), "7777"))
		if err == nil && !strings.Contains(line, "local "+ip2.String()+":7777 remote "+n.BridgeIP().String()) {
			err = fmt.Errorf("answer %q", line)
		}
		return err
	})
	// Another foundation on the same range is refused, naming the clash.
	other, _ := NewNetwork("mcx"+n.Prefix[3:], n.Range.String())
	if err := other.EnsureFoundation(context.Background()); err == nil || !strings.Contains(err.Error(), n.BridgeName()) ||
		!strings.Contains(err.Error(), RangeFlag) {
		t.Errorf("a second foundation on %s: %v", n.Range, err)
	}

	// Teardown, cell by cell: the last one takes the bridge.
	rep, err := n.TeardownCell(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if netnsExists(n.CellNS(1)) || !netnsExists(n.CellNS(2)) || !slices.Contains(rep.Routes, n.CellSubnet(1).String()+" via "+ip1.String()) {
		t.Fatalf("after tearing cell 1 down: %s, left %v", rep, Leftovers(n.Prefix))
	}
	if out := run(t, "ip", "route", "get", inCell1); strings.Contains(out, "via") {
		t.Errorf("a route to cell 1's containers is left: %s", out)
	}
	if _, err := n.TeardownCell(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if left := Leftovers(n.Prefix); len(left) > 0 {
		t.Fatalf("after tearing every cell down: %v", left)
	}
	if _, err := n.TeardownCell(context.Background(), 2); err != nil { // idempotent
		t.Fatal(err)
	}
}

func TestNetworkDownCleansAHalfBuiltState(t *testing.T) {
	n := testNetwork(t)
	ensureCell(t, n, 1)
	ctx := context.Background()
	// A container namespace with a process in it, as a killed cell leaves it,
	// and its cgroup with a process of its own.
	ns := n.ContainerNS(1, "halfbuilt")
	run(t, "ip", "netns", "add", ns)
	inNS := exec.Command("ip", "netns", "exec", ns, "sleep", "300")
	if err := inNS.Start(); err != nil {
		t.Fatal(err)
	}
	var cgDir string
	var inCG *exec.Cmd
	if cg := detectCgroups(); cg != nil {
		var err error
		if cgDir, err = cg.create(n.Prefix, "halfbuilt", 64); err != nil {
			t.Fatal(err)
		}
		inCG = exec.Command("/bin/sh", "-c", `echo $$ > "$0" && exec sleep 300`, filepath.Join(cgDir, "cgroup.procs"))
		if err := inCG.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// A link of a cell whose namespace is gone.
	stale := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n.CellVeth(9)}, PeerName: n.CellVeth(8)}
	if err := netlink.LinkAdd(stale); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !slices.Contains(netnsPids(ns), inNS.Process.Pid) {
			return fmt.Errorf("pid %d is not in %s yet", inNS.Process.Pid, ns)
		}
		if inCG != nil && !slices.Contains(cgroupPids(cgDir), inCG.Process.Pid) {
			return fmt.Errorf("pid %d is not in %s yet", inCG.Process.Pid, cgDir)
		}
		return nil
	})

	rep, err := Down(ctx, n.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Down:\n%s", rep)
	if !slices.Contains(rep.Namespaces, ns) || !slices.Contains(rep.Namespaces, n.CellNS(1)) ||
		!slices.Contains(rep.Links, n.BridgeName()) || !slices.Contains(rep.Links, n.CellVeth(1)) ||
		!slices.Contains(rep.Links, n.CellVeth(9)) && !slices.Contains(rep.Links, n.CellVeth(8)) || // (one takes its peer)
		!slices.Contains(rep.Killed, inNS.Process.Pid) {
		t.Fatalf("Down's report: %s", rep)
	}
	if err := inNS.Wait(); err == nil {
		t.Error("the process in the namespace was not killed")
	}
	if inCG != nil {
		if err := inCG.Wait(); err == nil {
			t.Error("the process in the cgroup was not killed")
		}
		if !slices.Contains(rep.Cgroups, cgDir) {
			t.Errorf("Down did not report %s: %s", cgDir, rep)
		}
	}
	if left := Leftovers(n.Prefix); len(left) > 0 {
		t.Fatalf("left after Down: %v", left)
	}
	rep, err = Down(ctx, n.Prefix)
	if err != nil || !rep.Empty() {
		t.Fatalf("a second Down: %v, %s", err, rep)
	}
}

func helperProcess(t testing.TB, g *Garden, handle, kind string, env ...string) Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := g.Run(context.Background(), handle, ProcessSpec{Path: exe, LogName: kind,
		Env: append([]string{"GARDEN_TEST_HELPER=" + kind, "HANDLE=" + handle}, env...)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dialLine connects to addr and reads one line.
func dialLine(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestNamespaceGardenDNATReachesTheContainer(t *testing.T) {
	n := testNetwork(t)
	cellIP := ensureCell(t, n, 1)
	g := newNamespaceGarden(t, n, 1, t.TempDir())
	ctx := context.Background()
	h := "nsc-" + strconv.Itoa(rand.IntN(1e6))
	info, err := g.Create(ctx, ContainerSpec{Handle: h, MemoryMB: 256, NetIn: []NetIn{{ContainerPort: 61001}}, LocalPorts: []uint32{8080}})
	if err != nil {
		t.Fatal(err)
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			_ = g.Destroy(context.Background(), h, 0)
		}
	})
	ip, err := netip.ParseAddr(info.ContainerIP)
	if err != nil || !n.CellSubnet(1).Contains(ip) || ip == n.CellGateway(1) {
		t.Fatalf("container ip %q, want one in %s", info.ContainerIP, n.CellSubnet(1))
	}
	if info.Mode != ModeNamespace || info.ExternalIP != cellIP.String() || g.ExternalIP() != cellIP.String() ||
		len(info.MappedPorts) != 1 || info.MappedPorts[0] != (PortMapping{ContainerPort: 61001, HostPort: DefaultPortRangeStart}) ||
		info.BindPorts[61001] != 61001 || info.BindPorts[8080] != 8080 {
		t.Fatalf("container info %+v", info)
	}
	hostPort := info.MappedPorts[0].HostPort

	// The DNAT rule, exactly as cf-networking writes it.
	ns := n.ContainerNS(1, h)
	chain := netin.ChainName(h)
	rules := natRules(t, n.CellNS(1))
	for _, want := range []string{
		"-A PREROUTING -j " + chain,
		fmt.Sprintf("-A %s -d %s/32 -p tcp -m tcp --dport %d -j DNAT --to-destination %s:61001", chain, cellIP, hostPort, ip),
	} {
		if !strings.Contains(rules, want+"\n") {
			t.Fatalf("the cell's nat table lacks %q:\n%s", want, rules)
		}
	}
	// The container's own network: eth0 with its address, a default route via the cell.
	if out := run(t, "ip", "netns", "exec", ns, "ip", "-4", "-o", "addr", "show", "eth0"); !strings.Contains(out, ip.String()+"/24") {
		t.Fatalf("the container's eth0: %s", out)
	}
	if out := run(t, "ip", "netns", "exec", ns, "ip", "route", "show", "default"); !strings.Contains(out, "via "+n.CellGateway(1).String()) {
		t.Fatalf("the container's default route: %s", out)
	}

	app := helperProcess(t, g, h, "app", "PORT=8080")
	proxy := helperProcess(t, g, h, "proxy", "LISTEN=0.0.0.0:61001", "TARGET=127.0.0.1:8080")
	// Root namespace -> cell ip:host port -> DNAT -> proxy :61001 -> app :8080.
	var line string
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var err error
		line, err = dialLine(net.JoinHostPort(cellIP.String(), strconv.Itoa(int(hostPort))))
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "app "+h+" local 127.0.0.1:8080") {
			return fmt.Errorf("answer %q", line)
		}
		return nil
	})
	t.Logf("through %s:%d: %s", cellIP, hostPort, line)
	// The app itself listens at the real port on the overlay address (the
	// rep's health checks dial it from the root namespace).
	if line, err := dialLine(net.JoinHostPort(ip.String(), "8080")); err != nil || !strings.Contains(line, "local "+ip.String()+":8080") {
		t.Fatalf("%s:8080 answered %q, %v", ip, line, err)
	}
	// Nothing listens on the host port in the cell: it exists only as the
	// cell's DNAT rule. (Not checked in the root namespace: process-mode
	// containers of tests running alongside take loopback ports from 61000.)
	if out := run(t, "ip", "netns", "exec", n.CellNS(1), "ss", "-Hltn", fmt.Sprintf("sport = :%d", hostPort)); strings.TrimSpace(out) != "" {
		t.Fatalf("something listens on port %d in the cell: the host port must exist only as its DNAT rule:\n%s", hostPort, out)
	}
	// Both processes are in the namespace and in the cgroup, with its limit.
	pids := []int{app.PID(), proxy.PID()}
	inNS := netnsPids(ns)
	for _, pid := range pids {
		if !slices.Contains(inNS, pid) {
			t.Errorf("pid %d is not in %s (%v)", pid, ns, inNS)
		}
	}
	if cg := detectCgroups(); cg != nil {
		dir := cg.dir(n.Prefix, h)
		limit, err := MemoryLimit(dir)
		if err != nil || limit != 256<<20 {
			t.Errorf("memory limit of %s: %d, %v", dir, limit, err)
		}
		for _, pid := range pids {
			if !slices.Contains(cgroupPids(dir), pid) {
				t.Errorf("pid %d is not in %s", pid, dir)
			}
		}
	} else {
		t.Logf("no memory cgroups here: %s", cgroupUnavailable())
	}

	// Destroy leaves nothing: processes, namespace, link, cgroup, chain.
	if err := g.Destroy(ctx, h, time.Second); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if state, _, _, ok := procStat(pid); ok && state != 'Z' {
				t.Errorf("pid %d survived Destroy", pid)
			}
		}
	}
	if netnsExists(ns) {
		t.Errorf("namespace %s survived Destroy", ns)
	}
	// Only netin's conntrack chain stays, for flows still draining (see
	// package netin).
	if rules := natRules(t, n.CellNS(1)); strings.Contains(strings.ReplaceAll(rules, netin.ConntrackChain, ""), netin.ChainPrefix) {
		t.Errorf("chains survived Destroy:\n%s", rules)
	}
	if cg := detectCgroups(); cg != nil {
		if _, err := os.Stat(cg.dir(n.Prefix, h)); err == nil {
			t.Errorf("cgroup %s survived Destroy", cg.dir(n.Prefix, h))
		}
	}
	_ = inNetns(n.CellNS(1), func(hd *netlink.Handle) error {
		if _, err := hd.LinkByName(ContainerVeth(h)); err == nil {
			t.Errorf("link %s survived Destroy", ContainerVeth(h))
		}
		return nil
	})
	if _, err := dialLine(net.JoinHostPort(cellIP.String(), strconv.Itoa(int(hostPort)))); err == nil {
		t.Errorf("%s:%d still answers", cellIP, hostPort)
	}
	if list, _ := g.Containers(); len(list) != 0 {
		t.Errorf("containers left: %v", list)
	}
}

func TestNamespaceGardenSecondGardenAdopts(t *testing.T) {
	n := testNetwork(t)
	ensureCell(t, n, 1)
	root := t.TempDir()
	g1 := newNamespaceGarden(t, n, 1, root)
	ctx := context.Background()
	info, err := g1.Create(ctx, ContainerSpec{Handle: "adopt-me", NetIn: []NetIn{{ContainerPort: 8080}}, Properties: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g1.Destroy(context.Background(), "adopt-me", 0) })
	app := helperProcess(t, g1, "adopt-me", "app", "PORT=8080")

	// A restarted rep's Garden: same container, same address and port,
	// the process adopted, the DNAT rule still there.
	g2 := newNamespaceGarden(t, n, 1, root)
	list, err := g2.Containers()
	if err != nil || len(list) != 1 || list[0].ContainerIP != info.ContainerIP || list[0].MappedPorts[0] != info.MappedPorts[0] ||
		list[0].Properties["k"] != "v" || list[0].Mode != ModeNamespace {
		t.Fatalf("the second Garden sees %+v, %v", list, err)
	}
	procs, err := g2.Adopt("adopt-me")
	if err != nil || len(procs) != 1 || procs[0].PID() != app.PID() {
		t.Fatalf("adopted %v, %v", procs, err)
	}
	addr := net.JoinHostPort(info.ExternalIP, strconv.Itoa(int(info.MappedPorts[0].HostPort)))
	if line, err := dialLine(addr); err != nil || !strings.HasPrefix(line, "app adopt-me") {
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			line, err := dialLine(addr)
			if err == nil && !strings.HasPrefix(line, "app adopt-me") {
				err = fmt.Errorf("answer %q", line)
			}
			return err
		})
	}
	// A new container does not take the adopted one's address or port.
	info2, err := g2.Create(ctx, ContainerSpec{Handle: "newcomer", NetIn: []NetIn{{ContainerPort: 8080}}})
	if err != nil {
		t.Fatal(err)
	}
	if info2.ContainerIP == info.ContainerIP || info2.MappedPorts[0].HostPort == info.MappedPorts[0].HostPort {
		t.Fatalf("the newcomer got %s:%d, the adopted container has %s:%d", info2.ContainerIP, info2.MappedPorts[0].HostPort,
			info.ContainerIP, info.MappedPorts[0].HostPort)
	}
	for _, h := range []string{"adopt-me", "newcomer"} {
		if err := g2.Destroy(ctx, h, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := procs[0].Wait(); err != ErrExitStatusUnknown {
		t.Fatalf("Wait of the adopted process: %v", err)
	}
	if left := n.ContainerNetns(1); len(left) > 0 {
		t.Fatalf("container namespaces left: %v", left)
	}
}

// BenchmarkNamespaceContainers creates 100 containers (each with a NetIn,
// so a namespace, a link, a cgroup and a DNAT chain) and destroys them.
func BenchmarkNamespaceContainers(b *testing.B) {
	n := testNetwork(b)
	ensureCell(b, n, 1)
	g := newNamespaceGarden(b, n, 1, b.TempDir())
	ctx := context.Background()
	const count = 100
	var create, destroy time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		for j := range count {
			if _, err := g.Create(ctx, ContainerSpec{Handle: fmt.Sprintf("bench-%d-%d", i, j), MemoryMB: 64,
				NetIn: []NetIn{{ContainerPort: 61001}}}); err != nil {
				b.Fatal(err)
			}
		}
		mid := time.Now()
		for j := range count {
			if err := g.Destroy(ctx, fmt.Sprintf("bench-%d-%d", i, j), 0); err != nil {
				b.Fatal(err)
			}
		}
		create += mid.Sub(start)
		destroy += time.Since(mid)
		if total := time.Since(start); total > 20*time.Second {
			b.Fatalf("creating and destroying %d containers took %v, more than 20s", count, total)
		}
	}
	b.ReportMetric(float64(create.Milliseconds())/float64(b.N*count), "create-ms/container")
	b.ReportMetric(float64(destroy.Milliseconds())/float64(b.N*count), "destroy-ms/container")
	b.ReportMetric(float64((create+destroy).Milliseconds())/float64(b.N)/1000, "s/100-containers")
}
