package netin_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/netin"
	"github.com/minicf/minicf/internal/netin/netintest"
	"github.com/minicf/minicf/internal/testutil"
)

// newFakeManager returns a Manager on a fake whose first (full) sync has
// already run, so each test sees steady-state calls.
func newFakeManager(t *testing.T) (*netin.Manager, *netintest.Fake, *logBuffer) {
	t.Helper()
	fake := netintest.New()
	logger, logs := newLogger()
	m := netin.NewManager(fake, cellIP, logger)
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m, fake, logs
}

func restoresSince(fake *netintest.Fake, n int) []string {
	var out []string
	for _, r := range fake.Restores()[n:] {
		out = append(out, string(r))
	}
	return out
}

func TestManagerFirstCallRebuildsAndDeletesLeftovers(t *testing.T) {
	ctx := context.Background()
	fake := netintest.New()
	// A crashed run left a chain behind.
	if err := fake.Apply("-N netin--crashed", "-A netin--crashed -d 10.244.0.11/32 -p tcp -m tcp --dport 61007 -j DNAT --to-destination 10.244.1.7:8080", "-A PREROUTING -j netin--crashed"); err != nil {
		t.Fatal(err)
	}
	m := netin.NewManager(fake, cellIP, nil)
	if err := m.Add(ctx, containerA); err != nil {
		t.Fatal(err)
	}
	if fake.Saves() != 1 || len(fake.Restores()) != 1 {
		t.Fatalf("first Add: %d saves, %d restores; want one of each (a full rebuild)", fake.Saves(), len(fake.Restores()))
	}
	if strings.Contains(fake.Dump(), "netin--crashed") {
		t.Fatalf("leftover chain survived the first rebuild:\n%s", fake.Dump())
	}
	runPacketFlowTests(t, fake, []packetFlowTest{
		{name: "to a", dst: cellIP, port: 61001, output: "10.244.1.2:8080"},
		{name: "to the crashed run's port", dst: cellIP, port: 61007, output: "none"},
	})
}

func TestManagerAddAndRemove(t *testing.T) {
	ctx := context.Background()
	m, fake, logs := newFakeManager(t)
	n := len(fake.Restores())
	saves := fake.Saves()

	if err := m.Add(ctx, containerA); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(ctx, containerB); err != nil {
		t.Fatal(err)
	}
	// One restore per Add, each holding only its container, and no Save:
	// the steady state trusts the table (Sync checks it).
	assertText(t, "restores", strings.Join([]string{dedent(`
		*nat
		:netin--a0d2b217-fa7d-4ac1-65 - [0:0]
		-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.244.1.2:8080
		-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61002 -j DNAT --to-destination 10.244.1.2:61001
		-A PREROUTING -j netin--a0d2b217-fa7d-4ac1-65
		COMMIT
		`), dedent(`
		*nat
		:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
		-A netin--b7e3c9a1-0c4f-4d2e-7a -d 10.244.0.11/32 -p tcp -m tcp --dport 61003 -j DNAT --to-destination 10.244.1.3:61001
		-A PREROUTING -j netin--b7e3c9a1-0c4f-4d2e-7a
		COMMIT
		`)}, "|"), strings.Join(restoresSince(fake, n), "|"))
	if fake.Saves() != saves {
		t.Errorf("Add called Save %d times", fake.Saves()-saves)
	}
	// B5 #38: N mappings, exactly N DNAT rules in our chains.
	if got := dnatTargets(fake.Dump()); len(got) != 3 {
		t.Errorf("DNAT rules %v, want 3", got)
	}
	runPacketFlowTests(t, fake, []packetFlowTest{
		{name: "to a's app port", dst: cellIP, port: 61001, output: "10.244.1.2:8080"},
		{name: "to a's envoy port", dst: cellIP, port: 61002, output: "10.244.1.2:61001"},
		{name: "to b", dst: cellIP, port: 61003, output: "10.244.1.3:61001"},
		{name: "to an unmapped port", dst: cellIP, port: 61004, output: "none"},
		{name: "to a's port on another cell", dst: "10.244.0.12", port: 61001, output: "none"},
		{name: "from a container", src: "10.244.1.3", dst: cellIP, port: 61001, output: "10.244.1.2:8080"},
	})

	n = len(fake.Restores())
	if err := m.Remove(ctx, handleA); err != nil {
		t.Fatal(err)
	}
	assertText(t, "remove restore", dedent(`
		*nat
		:netin--a0d2b217-fa7d-4ac1-65 - [0:0]
		-D PREROUTING -j netin--a0d2b217-fa7d-4ac1-65
		-X netin--a0d2b217-fa7d-4ac1-65
		COMMIT
		`), strings.Join(restoresSince(fake, n), "|"))
	assertText(t, "nat table", dedent(`
		*nat
		:PREROUTING ACCEPT [0:0]
		:INPUT ACCEPT [0:0]
		:OUTPUT ACCEPT [0:0]
		:POSTROUTING ACCEPT [0:0]
		:netin--+conntrack - [0:0]
		:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
		-A PREROUTING -j netin--+conntrack
		-A PREROUTING -j netin--b7e3c9a1-0c4f-4d2e-7a
		-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
		-A netin--b7e3c9a1-0c4f-4d2e-7a -d 10.244.0.11/32 -p tcp -m tcp --dport 61003 -j DNAT --to-destination 10.244.1.3:61001
		COMMIT
		`), fake.Dump())
	runPacketFlowTests(t, fake, []packetFlowTest{
		{name: "to removed a", dst: cellIP, port: 61001, output: "none"},
		{name: "to b", dst: cellIP, port: 61003, output: "10.244.1.3:61001"},
	})
	if d := m.Desired(); len(d) != 1 || d[0].Handle != handleB {
		t.Errorf("Desired() = %+v, want only b", d)
	}

	// Removing an unknown handle is a no-op, as CNI DEL is idempotent.
	n = len(fake.Restores())
	if err := m.Remove(ctx, handleA); err != nil {
		t.Fatal(err)
	}
	if len(fake.Restores()) != n {
		t.Error("removing an unknown handle called Restore")
	}

	applied := logs.events("netin-rules-applied")
	if len(applied) != 4 { // first sync, two adds, one remove
		t.Fatalf("%d netin-rules-applied events, want 4", len(applied))
	}
	last := applied[3]
	if last["op"] != "remove" || last["full"] != false || last["handle"] != handleA || last["duration"] == "" {
		t.Errorf("last netin-rules-applied event %v", last)
	}
	if m.Failures() != 0 {
		t.Errorf("Failures() = %d", m.Failures())
	}
}

func TestManagerAddReplacesMappings(t *testing.T) {
	ctx := context.Background()
	m, fake, _ := newFakeManager(t)
	if err := m.Add(ctx, containerA); err != nil {
		t.Fatal(err)
	}
	n := len(fake.Restores())
	changed := netin.Container{Handle: handleA, Mappings: []netin.Mapping{{HostPort: 61005, ContainerIP: "10.244.1.2", ContainerPort: 61001}}}
	if err := m.Add(ctx, changed); err != nil {
		t.Fatal(err)
	}
	// Declaring the chain flushes it; the jump exists already.
	assertText(t, "restore", dedent(`
		*nat
		:netin--a0d2b217-fa7d-4ac1-65 - [0:0]
		-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61005 -j DNAT --to-destination 10.244.1.2:61001
		COMMIT
		`), strings.Join(restoresSince(fake, n), "|"))
	runPacketFlowTests(t, fake, []packetFlowTest{
		{name: "old port", dst: cellIP, port: 61001, output: "none"},
		{name: "new port", dst: cellIP, port: 61005, output: "10.244.1.2:61001"},
	})
	if strings.Count(fake.Dump(), "-A PREROUTING -j "+chainA) != 1 {
		t.Errorf("want one jump:\n%s", fake.Dump())
	}
	// The old host ports are free again for another container.
	reuse := netin.Container{Handle: handleB, Mappings: []netin.Mapping{{HostPort: 61001, ContainerIP: "10.244.1.3", ContainerPort: 8080}}}
	if err := m.Add(ctx, reuse); err != nil {
		t.Fatal(err)
	}
}

func TestManagerAddRefusesInvalid(t *testing.T) {
	ctx := context.Background()
	m, fake, _ := newFakeManager(t)
	if err := m.Add(ctx, containerA); err != nil {
		t.Fatal(err)
	}
	n := len(fake.Restores())
	for _, c := range []netin.Container{
		{Handle: handleB, Mappings: []netin.Mapping{{HostPort: 61002, ContainerIP: "10.244.1.3", ContainerPort: 8080}}}, // a's port
		{Handle: "bad handle"},
		{Handle: handleB, Mappings: []netin.Mapping{{HostPort: 61009, ContainerIP: "10.244.1.300", ContainerPort: 8080}}},
		{Handle: handleB, Mappings: []netin.Mapping{{HostPort: 70000, ContainerIP: "10.244.1.3", ContainerPort: 8080}}},
	} {
		err := m.Add(ctx, c)
		if !errors.Is(err, netin.ErrInvalid) {
			t.Errorf("Add(%+v) = %v, want ErrInvalid", c, err)
		}
	}
	if len(fake.Restores()) != n {
		t.Error("an invalid Add reached iptables")
	}
	if d := m.Desired(); len(d) != 1 {
		t.Errorf("Desired() = %+v", d)
	}
	if err := m.Remove(ctx, "bad/handle"); !errors.Is(err, netin.ErrInvalid) {
		t.Errorf("Remove(bad/handle) = %v", err)
	}
	bad := netin.NewManager(fake, "10.244.0", nil)
	if err := bad.Add(ctx, containerB); !errors.Is(err, netin.ErrInvalid) {
		t.Errorf("Add with a bad cell ip = %v", err)
	}
	if err := bad.Sync(ctx); !errors.Is(err, netin.ErrInvalid) {
		t.Errorf("Sync with a bad cell ip = %v", err)
	}
}

// A fresh Manager's first rebuild puts the conntrack chain in place, and
// that is installation, not drift; once in place, it is repaired like any
// chain of ours.
func TestManagerInstallsConntrackChain(t *testing.T) {
	ctx := context.Background()
	m, fake, logs := newFakeManager(t)
	if got := netinLines(fake.Dump()); !slices.Equal(got, conntrackOnly) {
		t.Fatalf("after the first Sync, netin's lines are %q, want %q", got, conntrackOnly)
	}
	if ev := logs.events("netin-drift-repaired"); len(ev) != 0 {
		t.Fatalf("installing the conntrack chain was logged as drift: %v", ev)
	}
	for _, break_ := range [][]string{
		{"-D PREROUTING -j " + netin.ConntrackChain},
		{"-F " + netin.ConntrackChain},
		{"-D PREROUTING -j " + netin.ConntrackChain, "-F " + netin.ConntrackChain, "-X " + netin.ConntrackChain},
	} {
		if err := fake.Apply(break_...); err != nil {
			t.Fatal(err)
		}
		before := len(logs.events("netin-drift-repaired"))
		if err := m.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got := netinLines(fake.Dump()); !slices.Equal(got, conntrackOnly) {
			t.Fatalf("after %q and Sync, netin's lines are %q", break_, got)
		}
		if len(logs.events("netin-drift-repaired")) != before+1 {
			t.Errorf("%q was not logged as drift", break_)
		}
	}
}

// B5 #44: removing a cell's last container must not switch conntrack off,
// so the batch that deletes the last DNAT rule is a full rebuild, which
// puts the conntrack chain back even when someone removed it by hand.
// Other removals stay partial.
func TestManagerLastRemoveKeepsConntrackChain(t *testing.T) {
	ctx := context.Background()
	m, fake, logs := newFakeManager(t)
	for _, c := range []netin.Container{containerA, containerB} {
		if err := m.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := fake.Apply("-D PREROUTING -j "+netin.ConntrackChain, "-F "+netin.ConntrackChain, "-X "+netin.ConntrackChain); err != nil {
		t.Fatal(err)
	}
	n, saves := len(fake.Restores()), fake.Saves()
	if err := m.Remove(ctx, handleA); err != nil {
		t.Fatal(err)
	}
	if r := restoresSince(fake, n); len(r) != 1 || strings.Contains(r[0], netin.ConntrackChain) || fake.Saves() != saves {
		t.Fatalf("removing a while b stays: restores %q, %d saves; want one partial restore", r, fake.Saves()-saves)
	}

	n = len(fake.Restores())
	if err := m.Remove(ctx, handleB); err != nil {
		t.Fatal(err)
	}
	assertText(t, "last remove", dedent(`
		*nat
		:netin--+conntrack - [0:0]
		:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
		-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
		-A PREROUTING -j netin--+conntrack
		-D PREROUTING -j netin--b7e3c9a1-0c4f-4d2e-7a
		-X netin--b7e3c9a1-0c4f-4d2e-7a
		COMMIT
		`), strings.Join(restoresSince(fake, n), "|"))
	if got := netinLines(fake.Dump()); !slices.Equal(got, conntrackOnly) {
		t.Fatalf("after the last Remove, netin's lines are %q, want %q", got, conntrackOnly)
	}
	applied := logs.events("netin-rules-applied")
	if last := applied[len(applied)-1]; last["op"] != "remove" || last["full"] != true || last["handle"] != handleB {
		t.Errorf("last netin-rules-applied event %v", last)
	}

	// Removing it again, or any unknown handle, is still a no-op.
	n = len(fake.Restores())
	if err := m.Remove(ctx, handleB); err != nil || len(fake.Restores()) != n {
		t.Errorf("removing an unknown handle: %v, %d restores", err, len(fake.Restores())-n)
	}
	if m.Failures() != 0 {
		t.Errorf("Failures() = %d", m.Failures())
	}
}

// B5 #40: what someone else breaks by hand, Sync repairs in one call.
func TestManagerSyncRepairsDrift(t *testing.T) {
	ctx := context.Background()
	m, fake, logs := newFakeManager(t)
	for _, c := range []netin.Container{containerA, containerB} {
		if err := m.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	want := fake.Dump()

	// In sync: Sync reads and writes nothing.
	n := len(fake.Restores())
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(fake.Restores()) != n {
		t.Fatalf("Sync with no drift called Restore:\n%s", restoresSince(fake, n))
	}

	for _, tc := range []struct {
		name     string
		break_   []string
		reorders bool // -D deletes the first of two equal jumps, so a's moves after b's
	}{
		{"chain flushed", []string{"-F " + chainA}, false},
		{"jump deleted", []string{"-D PREROUTING -j " + chainB}, false},
		{"rule changed", []string{"-D " + chainB + " 1", "-A " + chainB + " -d 10.244.0.11/32 -p tcp -m tcp --dport 61003 -j DNAT --to-destination 10.244.1.99:61001"}, false},
		{"stale chain added", []string{"-N netin--ghost", "-A netin--ghost -d 10.244.0.11/32 -p tcp -m tcp --dport 61008 -j DNAT --to-destination 10.244.1.8:8080", "-I PREROUTING 1 -j netin--ghost"}, false},
		{"whole table flushed", []string{"-F"}, false},
		{"jump duplicated", []string{"-A PREROUTING -j " + chainA}, true},
	} {
		if err := fake.Apply(tc.break_...); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		before := len(logs.events("netin-drift-repaired"))
		n := len(fake.Restores())
		if err := m.Sync(ctx); err != nil {
			t.Fatalf("%s: Sync: %v", tc.name, err)
		}
		if got := len(fake.Restores()) - n; got != 1 {
			t.Errorf("%s: Sync made %d restore calls, want 1", tc.name, got)
		}
		if len(logs.events("netin-drift-repaired")) != before+1 {
			t.Errorf("%s: no netin-drift-repaired event", tc.name)
		}
		if tc.reorders {
			assertText(t, tc.name+": repaired table (sorted)", sortedLines(want), sortedLines(fake.Dump()))
		} else {
			assertText(t, tc.name+": repaired table", want, fake.Dump())
		}
		runPacketFlowTests(t, fake, []packetFlowTest{
			{name: tc.name + ": to a", dst: cellIP, port: 61001, output: "10.244.1.2:8080"},
			{name: tc.name + ": to b", dst: cellIP, port: 61003, output: "10.244.1.3:61001"},
			{name: tc.name + ": to the ghost", dst: cellIP, port: 61008, output: "none"},
		})
	}
	ev := logs.events("netin-drift-repaired")[0]
	if !strings.Contains(fmt.Sprint(ev["details"]), "chain "+chainA+" has 0 rules") {
		t.Errorf("drift event details = %v", ev["details"])
	}
	if m.Failures() != 0 {
		t.Errorf("Failures() = %d", m.Failures())
	}
}

// B5 #39: a failed restore changes nothing, is counted, and the next call
// rebuilds everything from the desired state.
func TestManagerFullRebuildAfterFailure(t *testing.T) {
	ctx := context.Background()
	m, fake, logs := newFakeManager(t)
	if err := m.Add(ctx, containerA); err != nil {
		t.Fatal(err)
	}
	before := fake.Dump()

	fake.FailNextRestore(errors.New("iptables-restore: exit status 4: line 3: CHAIN_ADD failed (Cannot allocate memory)"))
	if err := m.Add(ctx, containerB); err == nil {
		t.Fatal("Add succeeded through a failing restore")
	}
	if m.Failures() != 1 {
		t.Fatalf("Failures() = %d, want 1", m.Failures())
	}
	assertText(t, "table after the failed restore", before, fake.Dump())
	runPacketFlowTests(t, fake, []packetFlowTest{
		{name: "old target still reached", dst: cellIP, port: 61001, output: "10.244.1.2:8080"},
		{name: "failed container not reached", dst: cellIP, port: 61003, output: "none"},
	})
	if d := m.Desired(); len(d) != 1 || d[0].Handle != handleA {
		t.Fatalf("a failed Add left Desired() = %+v", d)
	}
	failed := logs.events("netin-restore-failed")
	if len(failed) != 1 || failed[0]["failures"] != float64(1) || !strings.Contains(failed[0]["input"].(string), "> 3: -A netin--b7e3c9a1-0c4f-4d2e-7a -d 10.244.0.11/32") {
		t.Fatalf("netin-restore-failed events %v", failed)
	}

	// The table is in sync, yet the next Sync rebuilds everything: after
	// an error, incremental state is not trusted.
	n := len(fake.Restores())
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	assertText(t, "rebuild", dedent(`
		*nat
		:netin--+conntrack - [0:0]
		:netin--a0d2b217-fa7d-4ac1-65 - [0:0]
		-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
		-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.244.1.2:8080
		-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61002 -j DNAT --to-destination 10.244.1.2:61001
		COMMIT
		`), strings.Join(restoresSince(fake, n), "|"))
	if len(logs.events("netin-drift-repaired")) != 0 {
		t.Error("a rebuild without drift was logged as drift")
	}

	// Trusted again: the next Add is partial.
	n = len(fake.Restores())
	if err := m.Add(ctx, containerB); err != nil {
		t.Fatal(err)
	}
	if r := restoresSince(fake, n); len(r) != 1 || strings.Contains(r[0], chainA) {
		t.Fatalf("Add after the rebuild was not partial: %q", r)
	}

	// A failed Add is followed by a full Add.
	fake.FailNextRestore(errors.New("injected"))
	c := netin.Container{Handle: "c", Mappings: []netin.Mapping{{HostPort: 61004, ContainerIP: "10.244.1.4", ContainerPort: 8080}}}
	if err := m.Add(ctx, c); err == nil {
		t.Fatal("want error")
	}
	n = len(fake.Restores())
	if err := m.Add(ctx, c); err != nil {
		t.Fatal(err)
	}
	if r := restoresSince(fake, n); len(r) != 1 || !strings.Contains(r[0], ":"+chainA) || !strings.Contains(r[0], ":"+chainB) {
		t.Fatalf("Add after a failure was not a full rebuild: %q", r)
	}
	if m.Failures() != 2 {
		t.Errorf("Failures() = %d, want 2", m.Failures())
	}
	runPacketFlowTests(t, fake, []packetFlowTest{
		{name: "a", dst: cellIP, port: 61001, output: "10.244.1.2:8080"},
		{name: "b", dst: cellIP, port: 61003, output: "10.244.1.3:61001"},
		{name: "c", dst: cellIP, port: 61004, output: "10.244.1.4:8080"},
	})
}

// A real (not injected) kernel refusal: the jump was deleted by hand, so
// Remove's -D fails and the whole batch with it. The container is no
// longer desired, so the next Sync finishes the removal.
func TestManagerRemoveFailsThenSyncFinishes(t *testing.T) {
	ctx := context.Background()
	m, fake, _ := newFakeManager(t)
	for _, c := range []netin.Container{containerA, containerB} {
		if err := m.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := fake.Apply("-D PREROUTING -j " + chainA); err != nil {
		t.Fatal(err)
	}
	err := m.Remove(ctx, handleA)
	if err == nil || !strings.Contains(err.Error(), "Bad rule") {
		t.Fatalf("Remove = %v, want the kernel's Bad rule error", err)
	}
	if !strings.Contains(fake.Dump(), ":"+chainA) {
		t.Fatal("the failed batch changed the table")
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fake.Dump(), chainA) {
		t.Fatalf("Sync left a's chain:\n%s", fake.Dump())
	}
	runPacketFlowTests(t, fake, []packetFlowTest{
		{name: "b", dst: cellIP, port: 61003, output: "10.244.1.3:61001"},
		{name: "a", dst: cellIP, port: 61001, output: "none"},
	})
	if m.Failures() != 1 {
		t.Errorf("Failures() = %d", m.Failures())
	}
}

func TestManagerSyncSaveFailure(t *testing.T) {
	ctx := context.Background()
	m, fake, logs := newFakeManager(t)
	fake.SetSaveError(errors.New("iptables-save: exit status 1"))
	if err := m.Sync(ctx); err == nil {
		t.Fatal("Sync succeeded without a dump")
	}
	if len(logs.events("netin-save-failed")) != 1 {
		t.Error("no netin-save-failed event")
	}
	fake.SetSaveError(nil)
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// B5 #41 and #42 on the fake: 100 create/destroy cycles leave nothing of
// ours but the conntrack chain, and a foreign rule survives them and 100
// syncs.
func TestManagerCyclesLeaveNoOrphans(t *testing.T) {
	ctx := context.Background()
	m, fake, _ := newFakeManager(t)
	if err := fake.Apply("-I PREROUTING 1 -s 10.244.9.9/32 -m comment --comment foreign -j RETURN"); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		c := netin.Container{Handle: fmt.Sprintf("cycle-%03d", i), Mappings: []netin.Mapping{
			{HostPort: uint32(61000 + i), ContainerIP: fmt.Sprintf("10.244.1.%d", 2+i), ContainerPort: 8080},
		}}
		if err := m.Add(ctx, c); err != nil {
			t.Fatal(err)
		}
		if got := fake.Trace(routerIP, cellIP, uint32(61000+i)); got != fmt.Sprintf("10.244.1.%d:8080", 2+i) {
			t.Fatalf("cycle %d: trace %q", i, got)
		}
		if err := m.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m.Remove(ctx, c.Handle); err != nil {
			t.Fatal(err)
		}
	}
	dump := fake.Dump()
	if !slices.Equal(netinLines(dump), conntrackOnly) || len(dnatTargets(dump)) != 0 {
		t.Fatalf("orphans after 100 cycles:\n%s", dump)
	}
	if !strings.Contains(dump, "-A PREROUTING -s 10.244.9.9/32 -m comment --comment foreign -j RETURN") {
		t.Fatalf("foreign rule lost:\n%s", dump)
	}
	if m.Failures() != 0 {
		t.Errorf("Failures() = %d", m.Failures())
	}
}

func TestManagerRun(t *testing.T) {
	m, fake, logs := newFakeManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Add(ctx, containerA); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, 5*time.Millisecond)
	}()
	if err := fake.Apply("-F " + chainA); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := fake.Trace(routerIP, cellIP, 61001); got != "10.244.1.2:8080" {
			return fmt.Errorf("trace %q", got)
		}
		return nil
	})
	if len(logs.events("netin-drift-repaired")) == 0 {
		t.Error("no netin-drift-repaired event")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// Add, Remove and Sync from many goroutines (run with -race): the table
// ends exactly as the desired state says.
func TestManagerConcurrentUse(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, fake, _ := newFakeManager(t)
	go m.Run(ctx, time.Millisecond)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				c := netin.Container{Handle: fmt.Sprintf("w%d-%d", w, i), Mappings: []netin.Mapping{
					{HostPort: uint32(61000 + w*100 + i), ContainerIP: fmt.Sprintf("10.244.1.%d", 2+w*25+i), ContainerPort: 8080},
				}}
				if err := m.Add(ctx, c); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := m.Remove(ctx, c.Handle); err != nil {
						t.Error(err)
						return
					}
				}
				_ = m.Desired()
			}
		}()
	}
	wg.Wait()
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	want, err := netin.Render(cellIP, m.Desired(), "")
	if err != nil {
		t.Fatal(err)
	}
	check := netintest.New()
	if err := check.Restore(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	// The jumps' order depends on the interleaving; compare as sets.
	assertText(t, "table (sorted)", sortedLines(check.Dump()), sortedLines(fake.Dump()))
	if len(m.Desired()) != 8*12 || m.Failures() != 0 {
		t.Errorf("%d desired, %d failures", len(m.Desired()), m.Failures())
	}
}

func TestManagerAddRefusesSharedChain(t *testing.T) {
	m, _, _ := newFakeManager(t)
	if err := m.Add(context.Background(), netin.Container{Handle: handleA + "-x"}); err != nil {
		t.Fatal(err)
	}
	err := m.Add(context.Background(), netin.Container{Handle: handleA + "-y"})
	if !errors.Is(err, netin.ErrInvalid) || !strings.Contains(err.Error(), "share chain "+chainA) {
		t.Fatalf("err = %v", err)
	}
}
