package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/netin"
	"github.com/minicf/minicf/internal/testutil"
)

// Namespace mode, end to end (issue 4): cells are network namespaces on a
// foundation bridge, containers namespaces of their own, host ports DNAT
// rules in the cells. These tests need root, `ip` and iptables; outside CI
// they skip without, in CI (CI=true) they fail. Each test has a foundation
// of its own: a random prefix ("mci" + 4 hex digits) on a free /16 in
// 10.240-10.254 (never 10.255, where this kind of host keeps its DNS
// resolver, nor minicf's default 10.244), and a cleanup that runs Down for
// the prefix and fails the test if anything of it is left.

// claimNetns claims a foundation (the bridge) for the test, or skips it
// without namespace mode (fails it in CI). Its cleanup, registered first,
// runs after every process of the test has stopped.
func claimNetns(t *testing.T) *garden.Network {
	t.Helper()
	harness.RequireNetns(t)
	return harness.ClaimNetns(t, "mci")
}

// startNetnsDiego is startDiego with namespace-mode cells: cell-N is
// number N on nw.
func startNetnsDiego(t *testing.T, nw *garden.Network, routeIntegrity bool, cells ...string) *diego {
	t.Helper()
	return &diego{suite.StartDiego(t, harness.DiegoSpec{
		Cells:   cells,
		BBSArgs: []string{"--converge-interval", "1s", "--cell-ttl", "3s"},
		CellArgs: func(i int, _ string) []string {
			return append([]string{"--mode", "namespace", "--prefix", nw.Prefix, "--network-range", nw.Range.String(),
				"--index", strconv.Itoa(i + 1), "--route-integrity=" + strconv.FormatBool(routeIntegrity)}, cellTimers...)
		},
	})}
}

// cellNumber is cell-N's N.
func cellNumber(t *testing.T, id string) int {
	t.Helper()
	n, err := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
	if err != nil {
		t.Fatalf("cell id %q", id)
	}
	return n
}

func natTable(t *testing.T, cellNS string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", cellNS, "iptables", "-t", "nat", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec %s iptables -t nat -S: %v\n%s", cellNS, err, out)
	}
	return string(out)
}

// refuses checks that nothing answers at addr.
func refuses(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
		c.Close()
		t.Errorf("%s answers: an instance must be reachable only through cell ip:host port", addr)
	}
}

// TestNetns_TwoCellsDNATToTheSidecar is issue 4's case: two namespace
// cells, one instance on each; each cell's nat table has the DNAT rule for
// its instance; the root namespace reaches each app only through
// cell_ip:host_tls_proxy_port, with TLS whose SAN is the instance guid;
// removing the LRP leaves no chain, and the cells' shutdown no namespace
// or link.
func TestNetns_TwoCellsDNATToTheSidecar(t *testing.T) {
	nw := claimNetns(t)
	d := startNetnsDiego(t, nw, true, "cell-1", "cell-2")
	ctx := context.Background()
	lrp := suite.DiegoApp("netns-web", 2)
	lrp.MemoryMB = 256
	if err := d.Client.DesireLRP(ctx, lrp); err != nil {
		t.Fatal(err)
	}
	running := d.waitRunning(t, "netns-web", 2, 60*time.Second)
	if running[0].CellID == running[1].CellID {
		t.Fatalf("both instances on %s: the auctioneer should spread them", running[0].CellID)
	}
	for _, a := range running {
		n := cellNumber(t, a.CellID)
		cellIP := nw.CellIP(n).String()
		overlay, err := netip.ParseAddr(a.InstanceAddress)
		if a.Address != cellIP || err != nil || !nw.CellSubnet(n).Contains(overlay) || len(a.Ports) != 1 {
			t.Fatalf("instance %d on %s: address %s instance_address %s ports %+v; want %s and an address in %s",
				a.Index, a.CellID, a.Address, a.InstanceAddress, a.Ports, cellIP, nw.CellSubnet(n))
		}
		p := a.Ports[0]
		if p.ContainerPort != 8080 || p.HostPort != 0 || p.ContainerTLSProxyPort != 61001 || p.HostTLSProxyPort < garden.DefaultPortRangeStart {
			t.Fatalf("instance %d ports %+v: want 8080, host_port 0 (only the proxy port is mapped), 61001 and a host port from 61000", a.Index, p)
		}
		// The DNAT rule, shown as an operator would look at it.
		rules := natTable(t, nw.CellNS(n))
		chain := netin.ChainName(a.InstanceGUID)
		want := fmt.Sprintf("-A %s -d %s/32 -p tcp -m tcp --dport %d -j DNAT --to-destination %s:61001",
			chain, cellIP, p.HostTLSProxyPort, a.InstanceAddress)
		if !strings.Contains(rules, want+"\n") || !strings.Contains(rules, "-A PREROUTING -j "+chain+"\n") {
			t.Fatalf("ip netns exec %s iptables -t nat -S lacks %q:\n%s", nw.CellNS(n), want, rules)
		}
		t.Logf("ip netns exec %s iptables -t nat -S:\n%s", nw.CellNS(n), rules)

		// From the root namespace, through cell ip:host port, TLS with the instance identity.
		body, state, err := d.viaSidecar(a, "/")
		if err != nil {
			t.Fatalf("instance %d through %s:%d: %v", a.Index, cellIP, p.HostTLSProxyPort, err)
		}
		if want := fmt.Sprintf("instance %s index %d", a.InstanceGUID, a.Index); !strings.Contains(body, want) {
			t.Fatalf("instance %d answered %q, want %q", a.Index, body, want)
		}
		leaf := state.PeerCertificates[0]
		if leaf.Subject.CommonName != a.InstanceGUID || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != a.InstanceGUID ||
			len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != a.InstanceAddress {
			t.Fatalf("sidecar certificate CN %q DNS %v IP %v, want the instance guid %s and %s",
				leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses, a.InstanceGUID, a.InstanceAddress)
		}
		// Nowhere else: not on the host's loopback, not on the cell itself.
		refuses(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.HostTLSProxyPort))))
		refuses(t, net.JoinHostPort(cellIP, "8080"))
		refuses(t, net.JoinHostPort(cellIP, "61001"))
	}

	if err := d.Client.RemoveDesiredLRP(ctx, "netns-web"); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := len(d.actuals(t, "netns-web")); n != 0 {
			return fmt.Errorf("%d instances left", n)
		}
		return nil
	})
	testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		for _, id := range []string{"cell-1", "cell-2"} {
			n := cellNumber(t, id)
			// Only the chain that keeps conntrack on stays: it belongs to the
			// cell, not to a container.
			if rules := natTable(t, nw.CellNS(n)); strings.Contains(strings.ReplaceAll(rules, netin.ConntrackChain, ""), netin.ChainPrefix) {
				return fmt.Errorf("%s still has container netin chains:\n%s", nw.CellNS(n), rules)
			}
			if left := nw.ContainerNetns(n); len(left) > 0 {
				return fmt.Errorf("container namespaces left: %v", left)
			}
			entries, _ := os.ReadDir(filepath.Join(d.Home, "cells", id, "containers"))
			if len(entries) > 0 {
				return fmt.Errorf("%s still has %d container directories", id, len(entries))
			}
		}
		if pids := harness.ProcessesUnder(d.Home); len(pids) > 0 {
			return fmt.Errorf("processes still running from the cells: %v", pids)
		}
		return nil
	})
	// `minicf cell --stop-instances` takes its cell down on exit, and the
	// last cell the bridge.
	for _, id := range []string{"cell-1", "cell-2"} {
		d.Cells[id].Stop()
		if code := d.Cells[id].ExitCode(); code != 0 {
			t.Errorf("%s exited with %d", id, code)
		}
	}
	if left := garden.Leftovers(nw.Prefix); len(left) > 0 {
		t.Fatalf("after the cells stopped: %v", left)
	}
}

// TestNetns_RouteIntegrityOff: no sidecar, the app port itself is mapped
// and the DNAT rule sends the host port to overlay ip:8080.
func TestNetns_RouteIntegrityOff(t *testing.T) {
	nw := claimNetns(t)
	d := startNetnsDiego(t, nw, false, "cell-1")
	if err := d.Client.DesireLRP(context.Background(), suite.DiegoApp("netns-plain", 1)); err != nil {
		t.Fatal(err)
	}
	a := d.waitRunning(t, "netns-plain", 1, 60*time.Second)[0]
	cellIP := nw.CellIP(1).String()
	if a.Address != cellIP || len(a.Ports) != 1 || a.Ports[0].ContainerPort != 8080 || a.Ports[0].HostPort < garden.DefaultPortRangeStart ||
		a.Ports[0].HostTLSProxyPort != 0 || a.Ports[0].ContainerTLSProxyPort != 0 {
		t.Fatalf("net info %+v", a.ActualLRPNetInfo)
	}
	hp := a.Ports[0].HostPort
	want := fmt.Sprintf("-A %s -d %s/32 -p tcp -m tcp --dport %d -j DNAT --to-destination %s:8080",
		netin.ChainName(a.InstanceGUID), cellIP, hp, a.InstanceAddress)
	if rules := natTable(t, nw.CellNS(1)); !strings.Contains(rules, want+"\n") {
		t.Fatalf("the cell's nat table lacks %q:\n%s", want, rules)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + net.JoinHostPort(cellIP, strconv.Itoa(int(hp))) + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "instance "+a.InstanceGUID) {
		t.Fatalf("answer %q", body)
	}
	if n := d.Cells["cell-1"].CountMsg("process-started"); n != 1 {
		t.Fatalf("%d processes started, want the app alone (no sidecar)", n)
	}
	refuses(t, net.JoinHostPort(cellIP, "61001"))
}

// TestNetns_DownAfterCrash SIGKILLs the cells and the BBS while instances
// run and another is being created, then `minicf down` must leave no
// namespace, link, cgroup or process of the prefix.
func TestNetns_DownAfterCrash(t *testing.T) {
	nw := claimNetns(t)
	d := startNetnsDiego(t, nw, true, "cell-1", "cell-2")
	ctx := context.Background()
	lrp := suite.DiegoApp("netns-crash", 2)
	lrp.MemoryMB = 256
	if err := d.Client.DesireLRP(ctx, lrp); err != nil {
		t.Fatal(err)
	}
	d.waitRunning(t, "netns-crash", 2, 60*time.Second)
	// Halfway: a third instance is being placed and created.
	three := int32(3)
	if err := d.Client.UpdateDesiredLRP(ctx, "netns-crash", &bbs.DesiredLRPUpdate{Instances: &three}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 20*time.Second, 5*time.Millisecond, func() error {
		if n := len(nw.ContainerNetns(0)); n < 3 {
			return fmt.Errorf("%d container namespaces", n)
		}
		return nil
	})
	for _, p := range []*harness.Proc{d.Cells["cell-1"], d.Cells["cell-2"], d.BBS, d.Auctioneer} {
		p.Kill(t)
	}
	apps := harness.ProcessesUnder(d.Home)
	if len(apps) == 0 || len(garden.Leftovers(nw.Prefix)) == 0 {
		t.Fatalf("the crash left nothing to clean up (processes %v): the test is not testing", apps)
	}
	t.Logf("after SIGKILL: processes %v, %v", apps, garden.Leftovers(nw.Prefix))

	down := func() string {
		t.Helper()
		cmd := exec.Command(suite.Bin, "down", "--prefix", nw.Prefix, "--home", d.Home)
		cmd.Env = harness.ChildEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "unknown command") {
				t.Fatalf("`minicf down` is not registered in cmd/minicf/main.go (add downCommand()): %s", out)
			}
			t.Fatalf("minicf down: %v\n%s", err, out)
		}
		return string(out)
	}
	out := down()
	t.Logf("minicf down --prefix %s:\n%s", nw.Prefix, out)
	if left := garden.Leftovers(nw.Prefix); len(left) > 0 {
		t.Fatalf("left after minicf down: %v", left)
	}
	for _, pid := range apps {
		if err := syscall.Kill(pid, 0); err == nil && !zombie(pid) {
			t.Errorf("process %d survived minicf down", pid)
		}
	}
	for _, id := range []string{"cell-1", "cell-2"} {
		entries, _ := os.ReadDir(filepath.Join(d.Home, "cells", id, "containers"))
		if len(entries) > 0 {
			t.Errorf("%s still has %d container directories", id, len(entries))
		}
	}
	if again := down(); !strings.Contains(again, "nothing to remove") {
		t.Fatalf("a second minicf down found something:\n%s", again)
	}
}

func zombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}
