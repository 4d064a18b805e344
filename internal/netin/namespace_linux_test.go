//go:build linux

package netin_test

// These tests run the Manager against the real kernel, inside network
// namespaces they create (mcf-test-<random>) and always delete. They never
// run iptables in the root namespace and never address anything outside
// 10.244.0.0/16. They need root and iptables: elsewhere they skip, except
// in CI (CI=true), where that is a failure.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/netin"
	"github.com/minicf/minicf/internal/netin/netintest"
	"github.com/minicf/minicf/internal/testutil"
)

const testNetnsPrefix = "mcf-test-"

// requireRootNetns skips (or, in CI, fails) unless namespaces and
// iptables can be used.
func requireRootNetns(tb testing.TB) {
	tb.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "not running as root")
	}
	for _, bin := range []string{"ip", "iptables", "iptables-restore", "iptables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" is not installed")
		}
	}
	if len(missing) > 0 {
		unavailable(tb, strings.Join(missing, ", "))
	}
}

func unavailable(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("netin namespace tests cannot run (%s): CI must run as root with iptables installed", why)
	}
	tb.Skipf("netin namespace tests skipped (%s); run as root with iptables installed", why)
}

// newNetns creates mcf-test-<random> and deletes it when the test ends,
// passed or failed.
func newNetns(tb testing.TB) string {
	tb.Helper()
	requireRootNetns(tb)
	var b [5]byte
	_, _ = rand.Read(b[:])
	name := testNetnsPrefix + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		unavailable(tb, fmt.Sprintf("ip netns add: %v: %s", err, strings.TrimSpace(string(out))))
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tb.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// inNS runs a command inside one of our test namespaces (never anywhere
// else) and returns its output.
func inNS(tb testing.TB, ns string, args ...string) string {
	tb.Helper()
	if !strings.HasPrefix(ns, testNetnsPrefix) {
		tb.Fatalf("refusing to run %v in namespace %q, which this test did not create", args, ns)
	}
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("ip netns exec %s %v: %v: %s", ns, args, err, out)
	}
	return string(out)
}

// kernelDump is the namespace's nat table without iptables-save's comment
// lines, comparable with the fake's Dump.
func kernelDump(tb testing.TB, ns string) string {
	tb.Helper()
	return stripComments(inNS(tb, ns, "iptables-save", "-t", "nat"))
}

// countingIptables counts restore calls, to check that a Sync without
// drift writes nothing.
type countingIptables struct {
	netin.Iptables
	restores atomic.Int64
}

func (c *countingIptables) Restore(ctx context.Context, data []byte) error {
	c.restores.Add(1)
	return c.Iptables.Restore(ctx, data)
}

func newNSManager(t *testing.T, ns string) (*netin.Manager, *countingIptables, *logBuffer) {
	t.Helper()
	ipt := &countingIptables{Iptables: netin.NamespaceIptables(ns)}
	logger, logs := newLogger()
	return netin.NewManager(ipt, cellIP, logger), ipt, logs
}

const twoContainersDump = `
	*nat
	:PREROUTING ACCEPT [0:0]
	:INPUT ACCEPT [0:0]
	:OUTPUT ACCEPT [0:0]
	:POSTROUTING ACCEPT [0:0]
	:netin--+conntrack - [0:0]
	:netin--a0d2b217-fa7d-4ac1-65 - [0:0]
	:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
	-A PREROUTING -j netin--+conntrack
	-A PREROUTING -j netin--a0d2b217-fa7d-4ac1-65
	-A PREROUTING -j netin--b7e3c9a1-0c4f-4d2e-7a
	-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
	-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.244.1.2:8080
	-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61002 -j DNAT --to-destination 10.244.1.2:61001
	-A netin--b7e3c9a1-0c4f-4d2e-7a -d 10.244.0.11/32 -p tcp -m tcp --dport 61003 -j DNAT --to-destination 10.244.1.3:61001
	COMMIT
	`

// The kernel's dump is the golden text the fake produces, and a Sync right
// after finds no drift: our rules are rendered exactly as iptables-save
// prints them.
func TestNamespaceRulesMatchGolden(t *testing.T) {
	ctx := context.Background()
	ns := newNetns(t)
	m, ipt, logs := newNSManager(t, ns)
	fm, fake, _ := newFakeManager(t)
	for _, c := range []netin.Container{containerA, containerB} {
		if err := m.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := fm.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	assertText(t, "kernel nat table", dedent(twoContainersDump), kernelDump(t, ns))
	assertText(t, "fake and kernel", fake.Dump(), kernelDump(t, ns))

	n := ipt.restores.Load()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ipt.restores.Load() != n || len(logs.events("netin-drift-repaired")) != 0 {
		t.Fatalf("Sync right after Add found drift: %v", logs.events("netin-drift-repaired"))
	}

	if err := m.Remove(ctx, handleA); err != nil {
		t.Fatal(err)
	}
	if err := fm.Remove(ctx, handleA); err != nil {
		t.Fatal(err)
	}
	assertText(t, "kernel after remove", fake.Dump(), kernelDump(t, ns))
	if strings.Contains(kernelDump(t, ns), chainA) {
		t.Fatal("a's chain survived Remove")
	}
	if m.Failures() != 0 {
		t.Errorf("Failures() = %d", m.Failures())
	}
}

// The fake is only worth its tests if it accepts and refuses what the
// kernel does, with the same result: run the same batches through both.
func TestNamespaceFakeAgreesWithKernel(t *testing.T) {
	ctx := context.Background()
	ns := newNetns(t)
	kernel := netin.NamespaceIptables(ns)
	fake := netintest.New()
	for i, batch := range []string{
		"*nat\n:netin--a - [0:0]\n:OTHER - [0:0]\n-A PREROUTING -s 10.244.9.9/32 -m comment --comment foreign -j RETURN\n-A PREROUTING -j netin--a\n" +
			"-A netin--a -d 10.244.0.11/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.244.1.2:8080\n-A OTHER -j RETURN\nCOMMIT\n",
		"*nat\n:PREROUTING ACCEPT [0:0]\n:netin--a - [0:0]\n-A netin--a -d 10.244.0.11/32 -p tcp --dport 61002 -j DNAT --to-destination 10.244.1.2:61001\nCOMMIT\n",
		"*nat\n:netin--b - [0:0]\n-A netin--b -j DNAT --to-destination 10.244.1.3:8080\nCOMMIT\n", // port without protocol
		"*nat\n:netin--b - [0:0]\n-D PREROUTING -j netin--b\nCOMMIT\n",                            // missing rule
		"*nat\n-A PREROUTING -j netin--zzz\nCOMMIT\n",                                             // missing chain
		"*nat\n-F netin--a\n-X netin--a\nCOMMIT\n",                                                // still referenced
		"*nat\n-X OTHER\nCOMMIT\n",                               // still has rules
		"*nat\n:netin--0123456789012345678901 - [0:0]\nCOMMIT\n", // 29 characters
		"*nat\n:netin--012345678901234567890 - [0:0]\nCOMMIT\n",  // 28 characters
		"*nat\n-A PREROUTING -d 10.244.9.1/32 -j DROP\nCOMMIT\n", // DROP in nat
		"*nat\n:netin--c - [0:0]\n",                              // no COMMIT
		"*filter\n:netin--f - [0:0]\nCOMMIT\n*nat\n-I PREROUTING 1 -s 10.244.9.8 -m comment --comment \"two words\" -j RETURN\nCOMMIT\n",
		"*nat\n-D PREROUTING -s 10.244.9.8/32 -m comment --comment \"two words\" -j RETURN\nCOMMIT\n",
		"*nat\n:netin--a - [0:0]\n-D PREROUTING -j netin--a\n-X netin--a\n-X netin--012345678901234567890\nCOMMIT\n",
		"*nat\n-F\nCOMMIT\n",
		// netin's conntrack chain: its name, its comment and its match.
		"*nat\n:netin--+conntrack - [0:0]\n-A netin--+conntrack -m comment --comment \"netin: keeps conntrack on\" -m conntrack --ctstate DNAT -j RETURN\n-A PREROUTING -j netin--+conntrack\nCOMMIT\n",
		"*nat\n-A PREROUTING -m conntrack --ctstate dnat,Established,NEW,untracked,SNAT,related,INVALID -j RETURN\nCOMMIT\n",
		"*nat\n-A PREROUTING -m conntrack --ctstate BOGUS -j RETURN\nCOMMIT\n",
		"*nat\n:netin--+conntrack - [0:0]\n-D PREROUTING -j netin--+conntrack\n-X netin--+conntrack\nCOMMIT\n",
	} {
		kerr := kernel.Restore(ctx, []byte(batch))
		ferr := fake.Restore(ctx, []byte(batch))
		if (kerr == nil) != (ferr == nil) {
			t.Fatalf("batch %d:\n%s\nkernel: %v\nfake:   %v", i, batch, kerr, ferr)
		}
		assertText(t, fmt.Sprintf("batch %d (kernel error %v)", i, kerr), kernelDump(t, ns), fake.Dump())
	}
}

// B5 #42: a rule in a chain that is not ours survives 100 of our rebuilds.
func TestNamespaceForeignRuleSurvives100Syncs(t *testing.T) {
	ctx := context.Background()
	ns := newNetns(t)
	foreign := "-A PREROUTING -s 10.244.9.9/32 -m comment --comment foreign -j RETURN"
	inNS(t, ns, "iptables", "-t", "nat", "-I", "PREROUTING", "1", "-s", "10.244.9.9/32", "-m", "comment", "--comment", "foreign", "-j", "RETURN")
	inNS(t, ns, "iptables", "-t", "nat", "-N", "FOREIGN-DNAT")
	inNS(t, ns, "iptables", "-t", "nat", "-A", "FOREIGN-DNAT", "-d", "10.244.9.10/32", "-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", "10.244.9.11:8080")
	m, ipt, _ := newNSManager(t, ns)
	for _, c := range []netin.Container{containerA, containerB} {
		if err := m.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		// Break something of ours each time, so every Sync rebuilds.
		inNS(t, ns, "iptables", "-t", "nat", "-F", chainA)
		n := ipt.restores.Load()
		if err := m.Sync(ctx); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		if ipt.restores.Load() != n+1 {
			t.Fatalf("sync %d did not rebuild", i)
		}
	}
	dump := kernelDump(t, ns)
	prerouting := []string{}
	for _, l := range strings.Split(dump, "\n") {
		if strings.HasPrefix(l, "-A PREROUTING") {
			prerouting = append(prerouting, l)
		}
	}
	if len(prerouting) != 4 || prerouting[0] != foreign {
		t.Fatalf("PREROUTING after 100 syncs: %q, want the foreign rule first and our three jumps", prerouting)
	}
	if !strings.Contains(dump, ":FOREIGN-DNAT - [0:0]") || !strings.Contains(dump, "-A FOREIGN-DNAT -d 10.244.9.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.9.11:8080") {
		t.Fatalf("foreign chain lost:\n%s", dump)
	}
	if m.Failures() != 0 {
		t.Errorf("Failures() = %d", m.Failures())
	}
}

// B5 #40: a chain flushed and a jump deleted by hand are restored within
// one sync period.
func TestNamespaceSyncRestoresFlushedChain(t *testing.T) {
	ns := newNetns(t)
	m, _, logs := newNSManager(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, c := range []netin.Container{containerA, containerB} {
		if err := m.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	want := dedent(twoContainersDump)

	inNS(t, ns, "iptables", "-t", "nat", "-F", chainA)
	if !strings.Contains(kernelDump(t, ns), ":"+chainA) || len(dnatTargets(kernelDump(t, ns))) != 1 {
		t.Fatal("the flush did not happen")
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	assertText(t, "after Sync", want, kernelDump(t, ns))

	const period = 100 * time.Millisecond
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx, period) }()
	inNS(t, ns, "iptables", "-t", "nat", "-D", "PREROUTING", "-j", chainB)
	inNS(t, ns, "iptables", "-t", "nat", "-F", chainB)
	start := time.Now()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := kernelDump(t, ns); got != want {
			return fmt.Errorf("not repaired yet:\n%s", got)
		}
		return nil
	})
	t.Logf("repaired %v after the break (period %v)", time.Since(start).Round(time.Millisecond), period)
	cancel()
	<-done
	if len(logs.events("netin-drift-repaired")) < 2 {
		t.Errorf("want two netin-drift-repaired events, got %v", logs.events("netin-drift-repaired"))
	}
}

// B5 #39 on the kernel: a batch the kernel refuses changes nothing, is
// counted, and the next Sync rebuilds.
func TestNamespaceFailedRestoreChangesNothing(t *testing.T) {
	ctx := context.Background()
	ns := newNetns(t)
	m, _, logs := newNSManager(t, ns)
	for _, c := range []netin.Container{containerA, containerB} {
		if err := m.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	inNS(t, ns, "iptables", "-t", "nat", "-D", "PREROUTING", "-j", chainA)
	before := kernelDump(t, ns)
	err := m.Remove(ctx, handleA) // its -D now fails in the kernel
	if err == nil {
		t.Fatal("Remove succeeded without its jump")
	}
	assertText(t, "after the failed restore", before, kernelDump(t, ns))
	if m.Failures() != 1 || len(logs.events("netin-restore-failed")) != 1 {
		t.Fatalf("Failures() = %d, events %v", m.Failures(), logs.events("netin-restore-failed"))
	}
	t.Logf("kernel error: %v; logged input: %v", err, logs.events("netin-restore-failed")[0]["input"])
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if dump := kernelDump(t, ns); strings.Contains(dump, chainA) || !strings.Contains(dump, "-A PREROUTING -j "+chainB) {
		t.Fatalf("after Sync:\n%s", dump)
	}
}

// B5 #41: 100 create/destroy cycles leave no chain and no jump of ours but
// the conntrack chain.
func TestNamespace100AddRemoveCycles(t *testing.T) {
	ctx := context.Background()
	ns := newNetns(t)
	m, _, _ := newNSManager(t, ns)
	if err := m.Add(ctx, containerA); err != nil { // stays: cycles run next to a live container
		t.Fatal(err)
	}
	for i := range 100 {
		c := netin.Container{Handle: fmt.Sprintf("cycle-%03d", i), Mappings: []netin.Mapping{
			{HostPort: uint32(62000 + i), ContainerIP: fmt.Sprintf("10.244.1.%d", 10+i), ContainerPort: 8080},
			{HostPort: uint32(63000 + i), ContainerIP: fmt.Sprintf("10.244.1.%d", 10+i), ContainerPort: 61001},
		}}
		if err := m.Add(ctx, c); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := m.Remove(ctx, c.Handle); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	if err := m.Remove(ctx, handleA); err != nil {
		t.Fatal(err)
	}
	dump := kernelDump(t, ns)
	if !slices.Equal(netinLines(dump), conntrackOnly) || len(dnatTargets(dump)) != 0 {
		t.Fatalf("left behind after 100 cycles:\n%s", dump)
	}
	if m.Failures() != 0 {
		t.Errorf("Failures() = %d", m.Failures())
	}
}

// setnsTrap is setns(2)'s number; package syscall lacks it on amd64.
var setnsTrap = map[string]uintptr{"amd64": 308, "arm64": 268, "riscv64": 268, "loong64": 268}

// inNetns runs f on a fresh OS thread moved into namespace ns. Sockets f
// creates stay in ns. The thread is never unlocked, so it dies with its
// goroutine and nothing else ever runs in ns.
func inNetns(tb testing.TB, ns string, f func() error) error {
	tb.Helper()
	trap, ok := setnsTrap[runtime.GOARCH]
	if !ok {
		tb.Skipf("setns number unknown on %s", runtime.GOARCH)
	}
	fd, err := os.Open("/run/netns/" + ns)
	if err != nil {
		tb.Fatal(err)
	}
	defer fd.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if _, _, e := syscall.RawSyscall(trap, fd.Fd(), syscall.CLONE_NEWNET, 0); e != 0 {
			errc <- fmt.Errorf("setns %s: %w", ns, e)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// The rules carry real packets: router namespace → cell namespace (DNAT) →
// container namespace, and B5 #44: an established connection survives the
// removal of its mapping while a new one is refused, also when it was the
// cell's last mapping.
//
//	mcf-test-…(router) 10.244.0.1 ─veth─ 10.244.0.11 mcf-test-…(cell) 10.244.1.1 ─veth─ 10.244.1.2 mcf-test-…(container) :8080 echo
func TestNamespaceTrafficThroughDNAT(t *testing.T) {
	ctx := context.Background()
	router, cell, ctr := newNetns(t), newNetns(t), newNetns(t)
	// Links are created inside our namespaces, never in the root one.
	inNS(t, cell, "ip", "link", "add", "mcf-c0", "type", "veth", "peer", "name", "mcf-r0", "netns", router)
	inNS(t, cell, "ip", "link", "add", "mcf-h0", "type", "veth", "peer", "name", "eth0", "netns", ctr)
	for _, cmd := range [][]string{
		{router, "ip", "addr", "add", "10.244.0.1/24", "dev", "mcf-r0"},
		{router, "ip", "link", "set", "mcf-r0", "up"},
		{cell, "ip", "addr", "add", "10.244.0.11/24", "dev", "mcf-c0"},
		{cell, "ip", "link", "set", "mcf-c0", "up"},
		{cell, "ip", "addr", "add", "10.244.1.1/24", "dev", "mcf-h0"},
		{cell, "ip", "link", "set", "mcf-h0", "up"},
		{cell, "sysctl", "-qw", "net.ipv4.ip_forward=1"}, // this namespace's own setting
		{ctr, "ip", "addr", "add", "10.244.1.2/24", "dev", "eth0"},
		{ctr, "ip", "link", "set", "eth0", "up"},
		{ctr, "ip", "route", "add", "10.244.0.0/24", "via", "10.244.1.1"},
	} {
		inNS(t, cmd[0], cmd[1:]...)
	}

	var ln net.Listener
	if err := inNetns(t, ctr, func() (err error) { ln, err = net.Listen("tcp", "10.244.1.2:8080"); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	dial := func() (net.Conn, error) {
		var c net.Conn
		err := inNetns(t, router, func() (err error) { c, err = net.DialTimeout("tcp", "10.244.0.11:61001", 3*time.Second); return })
		return c, err
	}
	echo := func(c net.Conn, msg string) error {
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("echo %q, want %q", buf, msg)
		}
		return nil
	}

	refused := func(when string) {
		t.Helper()
		if c, err := dial(); !errors.Is(err, syscall.ECONNREFUSED) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("%s: new connection: %v, want connection refused\n%s", when, err, kernelDump(t, cell))
		}
	}

	refused("before Add")
	m, _, _ := newNSManager(t, cell)
	// Another app's container stays on the cell throughout (see the end).
	other := netin.Container{Handle: "other", Mappings: []netin.Mapping{{HostPort: 61009, ContainerIP: "10.244.1.9", ContainerPort: 8080}}}
	c := netin.Container{Handle: "traffic", Mappings: []netin.Mapping{{HostPort: 61001, ContainerIP: "10.244.1.2", ContainerPort: 8080}}}
	for _, x := range []netin.Container{other, c} {
		if err := m.Add(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := dial()
	if err != nil {
		t.Fatalf("after Add: %v\n%s", err, kernelDump(t, cell))
	}
	defer conn.Close()
	if err := echo(conn, "through the DNAT\n"); err != nil {
		t.Fatal(err)
	}

	// Someone flushes the chain: new connections are refused, the
	// established one keeps its conntrack binding; Sync brings new ones back.
	inNS(t, cell, "iptables", "-t", "nat", "-F", netin.ChainName(c.Handle))
	refused("after an external flush")
	if err := echo(conn, "after the flush\n"); err != nil {
		t.Fatalf("established connection broken by the flush: %v", err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	conn2, err := dial()
	if err != nil {
		t.Fatalf("after Sync: %v", err)
	}
	if err := echo(conn2, "after the repair\n"); err != nil {
		t.Fatal(err)
	}
	conn2.Close()

	// B5 #44.
	if err := m.Remove(ctx, c.Handle); err != nil {
		t.Fatal(err)
	}
	if err := echo(conn, "still there after Remove\n"); err != nil {
		t.Fatalf("established connection broken by Remove: %v", err)
	}
	refused("after Remove")

	// B5 #44 when the cell's last mapping goes (its last instance stops
	// while its sidecar drains). With nf_tables, conntrack runs in a
	// namespace only while some rule needs it, and the nat table alone
	// does not: without netin's conntrack chain, removing the last DNAT
	// rule would reset this connection.
	if err := m.Remove(ctx, other.Handle); err != nil {
		t.Fatal(err)
	}
	if dnat := dnatTargets(kernelDump(t, cell)); len(dnat) != 0 {
		t.Fatalf("DNAT rules left after the last Remove: %v", dnat)
	}
	if err := echo(conn, "still there after the cell's last DNAT rule went\n"); err != nil {
		t.Fatalf("established connection broken by the removal of the cell's last mapping: %v\n%s", err, kernelDump(t, cell))
	}
	refused("after the last Remove")
	if err := echo(conn, "and after a refused connection\n"); err != nil {
		t.Fatalf("established connection broken after the refused dial: %v", err)
	}
	// A Sync with nothing desired keeps the chain, and so the flow.
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := echo(conn, "after a Sync with no container\n"); err != nil {
		t.Fatalf("established connection broken by a Sync with no container: %v", err)
	}
}

// BenchmarkAddWith1000Containers times Add (and Remove) of one container
// on a cell whose nat table already holds 1000 containers' chains. The
// goal is under 100 ms per apply. Run it with
//
//	go test -run '^$' -bench AddWith1000 ./internal/netin
func BenchmarkAddWith1000Containers(b *testing.B) {
	ctx := context.Background()
	ns := newNetns(b)
	m := netin.NewManager(netin.NamespaceIptables(ns), cellIP, nil)
	container := func(i int) netin.Container {
		return netin.Container{Handle: fmt.Sprintf("bench-%04d", i), Mappings: []netin.Mapping{
			{HostPort: uint32(40000 + 2*i), ContainerIP: fmt.Sprintf("10.244.%d.%d", 1+i/250, 2+i%250), ContainerPort: 8080},
			{HostPort: uint32(40001 + 2*i), ContainerIP: fmt.Sprintf("10.244.%d.%d", 1+i/250, 2+i%250), ContainerPort: 61001},
		}}
	}
	start := time.Now()
	for i := range 1000 {
		if err := m.Add(ctx, container(i)); err != nil {
			b.Fatal(err)
		}
	}
	setup := time.Since(start)
	// 1000 containers' jumps, and the one to the conntrack chain.
	dump := kernelDump(b, ns)
	if n := strings.Count(dump, "-A PREROUTING -j netin--"); n != 1001 || !strings.Contains(dump, "-A PREROUTING -j "+netin.ConntrackChain+"\n") {
		b.Fatalf("%d jumps after setup, want 1000 and the conntrack chain's", n)
	}
	b.Logf("setup: 1000 Adds in %v (%v each)", setup.Round(time.Millisecond), (setup / 1000).Round(time.Microsecond))

	extra := container(1000)
	var add, remove time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := m.Add(ctx, extra); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := m.Remove(ctx, extra.Handle); err != nil {
			b.Fatal(err)
		}
		add += t1.Sub(t0)
		remove += time.Since(t1)
	}
	b.ReportMetric(add.Seconds()*1000/float64(b.N), "add-ms/op")
	b.ReportMetric(remove.Seconds()*1000/float64(b.N), "remove-ms/op")

	// One full rebuild at this size, for comparison.
	inNS(b, ns, "iptables", "-t", "nat", "-F", netin.ChainName(container(0).Handle))
	t0 := time.Now()
	if err := m.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(t0).Seconds()*1000, "sync-rebuild-ms")
	if m.Failures() != 0 {
		b.Fatalf("Failures() = %d", m.Failures())
	}
}
