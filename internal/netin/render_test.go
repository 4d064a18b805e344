package netin_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/minicf/minicf/internal/netin"
	"github.com/minicf/minicf/internal/netin/netintest"
)

func TestChainName(t *testing.T) {
	for _, tc := range []struct{ handle, want string }{
		{"abc", "netin--abc"},
		{"123456789012345678901", "netin--123456789012345678901"},  // 28: kept whole
		{"1234567890123456789012", "netin--123456789012345678901"}, // 29: cut
		{handleA, chainA}, // the reference example
		{"6f1c0f5e-3d3b-4a3c-9b8e-6f1c0f5e3d3b", "netin--6f1c0f5e-3d3b-4a3c-9b"}, // a 36-character guid
	} {
		got := netin.ChainName(tc.handle)
		if got != tc.want || len(got) > netin.MaxChainNameLength {
			t.Errorf("ChainName(%q) = %q (%d chars), want %q", tc.handle, got, len(got), tc.want)
		}
		if !netin.IsChainName(got) {
			t.Errorf("IsChainName(%q) = false", got)
		}
	}
	if netin.IsChainName("KUBE-SERVICES") || netin.IsChainName("netin-x") {
		t.Error("IsChainName accepts a chain that is not ours")
	}
	if !netin.IsChainName(netin.ConntrackChain) || len(netin.ConntrackChain) > netin.MaxChainNameLength {
		t.Errorf("ConntrackChain %q is not a chain name netin owns", netin.ConntrackChain)
	}
}

// No container's chain can be ConntrackChain: a handle would need its '+',
// and handles with a '+' are refused.
func TestConntrackChainNameIsNoHandles(t *testing.T) {
	handle := strings.TrimPrefix(netin.ConntrackChain, netin.ChainPrefix)
	for _, h := range []string{handle, handle + "-x", handle[:1]} {
		_, err := netin.Render(cellIP, []netin.Container{{Handle: h}}, "")
		if !errors.Is(err, netin.ErrInvalid) || !strings.Contains(err.Error(), "is not allowed") {
			t.Errorf("Render with handle %q: %v, want ErrInvalid", h, err)
		}
	}
}

// TestRenderGolden walks one cell through its life: empty, one container,
// two, one removed. Each step renders against the fake's current dump,
// checks the restore input, applies it, and checks the whole table.
func TestRenderGolden(t *testing.T) {
	ctx := context.Background()
	fake := netintest.New()
	steps := []struct {
		name    string
		desired []netin.Container
		restore string
		dump    string
	}{
		{
			// With no container, netin still keeps its conntrack chain.
			name: "empty",
			restore: `
				*nat
				:netin--+conntrack - [0:0]
				-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
				-A PREROUTING -j netin--+conntrack
				COMMIT
				`,
			dump: `
				*nat
				:PREROUTING ACCEPT [0:0]
				:INPUT ACCEPT [0:0]
				:OUTPUT ACCEPT [0:0]
				:POSTROUTING ACCEPT [0:0]
				:netin--+conntrack - [0:0]
				-A PREROUTING -j netin--+conntrack
				-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
				COMMIT
				`,
		},
		{
			name:    "one container",
			desired: []netin.Container{containerA},
			restore: `
				*nat
				:netin--+conntrack - [0:0]
				:netin--a0d2b217-fa7d-4ac1-65 - [0:0]
				-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
				-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.244.1.2:8080
				-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61002 -j DNAT --to-destination 10.244.1.2:61001
				-A PREROUTING -j netin--a0d2b217-fa7d-4ac1-65
				COMMIT
				`,
			dump: `
				*nat
				:PREROUTING ACCEPT [0:0]
				:INPUT ACCEPT [0:0]
				:OUTPUT ACCEPT [0:0]
				:POSTROUTING ACCEPT [0:0]
				:netin--+conntrack - [0:0]
				:netin--a0d2b217-fa7d-4ac1-65 - [0:0]
				-A PREROUTING -j netin--+conntrack
				-A PREROUTING -j netin--a0d2b217-fa7d-4ac1-65
				-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
				-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.244.1.2:8080
				-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61002 -j DNAT --to-destination 10.244.1.2:61001
				COMMIT
				`,
		},
		{
			// Every chain is declared (a full rebuild flushes and refills
			// them); only b's jump is missing, so only b's is added.
			name:    "two containers",
			desired: []netin.Container{containerB, containerA},
			restore: `
				*nat
				:netin--+conntrack - [0:0]
				:netin--a0d2b217-fa7d-4ac1-65 - [0:0]
				:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
				-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
				-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.244.1.2:8080
				-A netin--a0d2b217-fa7d-4ac1-65 -d 10.244.0.11/32 -p tcp -m tcp --dport 61002 -j DNAT --to-destination 10.244.1.2:61001
				-A netin--b7e3c9a1-0c4f-4d2e-7a -d 10.244.0.11/32 -p tcp -m tcp --dport 61003 -j DNAT --to-destination 10.244.1.3:61001
				-A PREROUTING -j netin--b7e3c9a1-0c4f-4d2e-7a
				COMMIT
				`,
			dump: `
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
				`,
		},
		{
			// a's chain is declared (so flushed), its jump deleted, then
			// the chain deleted, in cni-wrapper-plugin's cleanup order.
			name:    "one removed",
			desired: []netin.Container{containerB},
			restore: `
				*nat
				:netin--+conntrack - [0:0]
				:netin--a0d2b217-fa7d-4ac1-65 - [0:0]
				:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
				-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
				-A netin--b7e3c9a1-0c4f-4d2e-7a -d 10.244.0.11/32 -p tcp -m tcp --dport 61003 -j DNAT --to-destination 10.244.1.3:61001
				-D PREROUTING -j netin--a0d2b217-fa7d-4ac1-65
				-X netin--a0d2b217-fa7d-4ac1-65
				COMMIT
				`,
			dump: `
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
				`,
		},
		{
			// The last container goes in the same batch that refills the
			// conntrack chain, which stays.
			name: "last removed",
			restore: `
				*nat
				:netin--+conntrack - [0:0]
				:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
				-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
				-D PREROUTING -j netin--b7e3c9a1-0c4f-4d2e-7a
				-X netin--b7e3c9a1-0c4f-4d2e-7a
				COMMIT
				`,
			dump: `
				*nat
				:PREROUTING ACCEPT [0:0]
				:INPUT ACCEPT [0:0]
				:OUTPUT ACCEPT [0:0]
				:POSTROUTING ACCEPT [0:0]
				:netin--+conntrack - [0:0]
				-A PREROUTING -j netin--+conntrack
				-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
				COMMIT
				`,
		},
	}
	for _, step := range steps {
		current, err := fake.Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		data, err := netin.Render(cellIP, step.desired, current)
		if err != nil {
			t.Fatalf("%s: Render: %v", step.name, err)
		}
		assertText(t, step.name+": restore input", dedent(step.restore), string(data))
		if err := fake.Restore(ctx, data); err != nil {
			t.Fatalf("%s: restore: %v", step.name, err)
		}
		assertText(t, step.name+": nat table", dedent(step.dump), fake.Dump())
	}
}

// foreignState is a cell whose nat table holds things that are not ours
// (a foreign rule first in PREROUTING, a foreign chain with its own DNAT),
// plus a stale netin chain, a duplicate jump and a jump from OUTPUT. Its
// filter and mangle tables hold a chain named like ours, which is not in
// the nat table and so not ours.
const foreignState = `
	# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 04:59:32 2026
	*filter
	:INPUT ACCEPT [0:0]
	:FORWARD DROP [0:0]
	:OUTPUT ACCEPT [0:0]
	:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
	-A FORWARD -j netin--b7e3c9a1-0c4f-4d2e-7a
	-A netin--b7e3c9a1-0c4f-4d2e-7a -d 10.244.1.3/32 -j ACCEPT
	COMMIT
	# Completed on Thu Nov 26 04:59:32 2026
	# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 04:59:32 2026
	*nat
	:PREROUTING ACCEPT [0:0]
	:INPUT ACCEPT [0:0]
	:OUTPUT ACCEPT [0:0]
	:POSTROUTING ACCEPT [0:0]
	:FOREIGN-DNAT - [0:0]
	:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
	:netin--stale - [0:0]
	-A PREROUTING -s 10.244.9.9/32 -m comment --comment "foreign rule" -j RETURN
	-A PREROUTING -j FOREIGN-DNAT
	-A PREROUTING -j netin--b7e3c9a1-0c4f-4d2e-7a
	-A PREROUTING -j netin--stale
	-A PREROUTING -j netin--b7e3c9a1-0c4f-4d2e-7a
	-A OUTPUT -j netin--b7e3c9a1-0c4f-4d2e-7a
	-A POSTROUTING -s 10.244.1.0/24 -j MASQUERADE
	-A FOREIGN-DNAT -d 10.244.9.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.9.11:8080
	-A netin--b7e3c9a1-0c4f-4d2e-7a -d 10.244.0.11/32 -p tcp -m tcp --dport 61003 -j DNAT --to-destination 10.244.1.3:9999
	-A netin--stale -d 10.244.0.11/32 -p tcp -m tcp --dport 61009 -j DNAT --to-destination 10.244.1.9:8080
	COMMIT
	# Completed on Thu Nov 26 04:59:32 2026
	*mangle
	:PREROUTING ACCEPT [0:0]
	:netin--stale - [0:0]
	-A PREROUTING -j netin--stale
	COMMIT
	`

func TestRenderLeavesForeignStateAlone(t *testing.T) {
	ctx := context.Background()
	fake := netintest.New()
	if err := fake.Restore(ctx, []byte(dedent(foreignState))); err != nil {
		t.Fatal(err)
	}
	current, _ := fake.Save(ctx)
	// Render reads the real dump with the other tables too; both must give
	// the same batch.
	for _, cur := range []string{current, dedent(foreignState)} {
		data, err := netin.Render(cellIP, []netin.Container{containerB}, cur)
		if err != nil {
			t.Fatal(err)
		}
		// The conntrack chain is made and jumped to; b's chain is refilled
		// (its rule had drifted to port 9999), its first jump is kept and
		// the duplicate and OUTPUT jumps deleted; the stale chain is
		// flushed, unjumped and deleted. Nothing else is named, and
		// nothing outside the nat table.
		assertText(t, "restore input", dedent(`
			*nat
			:netin--+conntrack - [0:0]
			:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
			:netin--stale - [0:0]
			-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
			-A netin--b7e3c9a1-0c4f-4d2e-7a -d 10.244.0.11/32 -p tcp -m tcp --dport 61003 -j DNAT --to-destination 10.244.1.3:61001
			-A PREROUTING -j netin--+conntrack
			-D PREROUTING -j netin--stale
			-D PREROUTING -j netin--b7e3c9a1-0c4f-4d2e-7a
			-D OUTPUT -j netin--b7e3c9a1-0c4f-4d2e-7a
			-X netin--stale
			COMMIT
			`), string(data))
	}
	data, _ := netin.Render(cellIP, []netin.Container{containerB}, current)
	if err := fake.Restore(ctx, data); err != nil {
		t.Fatal(err)
	}
	assertText(t, "nat table", dedent(`
		*nat
		:PREROUTING ACCEPT [0:0]
		:INPUT ACCEPT [0:0]
		:OUTPUT ACCEPT [0:0]
		:POSTROUTING ACCEPT [0:0]
		:FOREIGN-DNAT - [0:0]
		:netin--+conntrack - [0:0]
		:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
		-A PREROUTING -s 10.244.9.9/32 -m comment --comment "foreign rule" -j RETURN
		-A PREROUTING -j FOREIGN-DNAT
		-A PREROUTING -j netin--b7e3c9a1-0c4f-4d2e-7a
		-A PREROUTING -j netin--+conntrack
		-A POSTROUTING -s 10.244.1.0/24 -j MASQUERADE
		-A FOREIGN-DNAT -d 10.244.9.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.9.11:8080
		-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
		-A netin--b7e3c9a1-0c4f-4d2e-7a -d 10.244.0.11/32 -p tcp -m tcp --dport 61003 -j DNAT --to-destination 10.244.1.3:61001
		COMMIT
		`), fake.Dump())
	runPacketFlowTests(t, fake, []packetFlowTest{
		{name: "to b", dst: cellIP, port: 61003, output: "10.244.1.3:61001"},
		{name: "to the deleted stale chain's port", dst: cellIP, port: 61009, output: "none"},
		{name: "to the foreign DNAT", dst: "10.244.9.10", port: 80, output: "10.244.9.11:8080"},
		{name: "from the source the foreign rule returns early", src: "10.244.9.9", dst: cellIP, port: 61003, output: "none"},
	})

	// Rendered again against the repaired table, only the refills remain.
	current, _ = fake.Save(ctx)
	data, _ = netin.Render(cellIP, []netin.Container{containerB}, current)
	assertText(t, "second restore input", dedent(`
		*nat
		:netin--+conntrack - [0:0]
		:netin--b7e3c9a1-0c4f-4d2e-7a - [0:0]
		-A netin--+conntrack -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules" -m conntrack --ctstate DNAT -j RETURN
		-A netin--b7e3c9a1-0c4f-4d2e-7a -d 10.244.0.11/32 -p tcp -m tcp --dport 61003 -j DNAT --to-destination 10.244.1.3:61001
		COMMIT
		`), string(data))
}

func TestRenderNeverNamesForeignChains(t *testing.T) {
	data, err := netin.Render(cellIP, nil, dedent(foreignState))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		switch {
		case line == "*nat" || line == "COMMIT":
		case strings.HasPrefix(line, ":netin--"), strings.HasPrefix(line, "-X netin--"), strings.HasPrefix(line, "-A netin--"):
		case line == "-A PREROUTING -j "+netin.ConntrackChain:
		case strings.HasPrefix(line, "-D ") && strings.HasSuffix(line, "-j "+chainB), strings.HasSuffix(line, "-j netin--stale"):
		default:
			t.Errorf("restore input names something that is not ours: %q", line)
		}
	}
}

func TestRenderRefusesInvalidInput(t *testing.T) {
	m := func(hp uint32, ip string, cp uint32) netin.Mapping {
		return netin.Mapping{HostPort: hp, ContainerIP: ip, ContainerPort: cp}
	}
	c := func(h string, ms ...netin.Mapping) netin.Container { return netin.Container{Handle: h, Mappings: ms} }
	ok := m(61001, "10.244.1.2", 8080)
	for _, tc := range []struct {
		name    string
		cell    string
		desired []netin.Container
		want    string
	}{
		{"empty handle", cellIP, []netin.Container{c("", ok)}, "empty container handle"},
		{"space in handle", cellIP, []netin.Container{c("a b", ok)}, `character ' ' at 1 is not allowed`},
		{"semicolon in handle", cellIP, []netin.Container{c("a;rm", ok)}, `character ';'`},
		{"slash in handle", cellIP, []netin.Container{c("a/b", ok)}, `character '/'`},
		{"newline in handle", cellIP, []netin.Container{c("a\n-X PREROUTING", ok)}, `character '\n'`},
		{"IPv6 container ip", cellIP, []netin.Container{c("a", m(61001, "fd00::2", 8080))}, `"fd00::2" is not an IPv4 address`},
		{"short container ip", cellIP, []netin.Container{c("a", m(61001, "10.244.1", 8080))}, `"10.244.1" is not an IPv4 address`},
		{"container ip with port", cellIP, []netin.Container{c("a", m(61001, "10.244.1.2:80", 8080))}, "not an IPv4 address"},
		{"unspecified container ip", cellIP, []netin.Container{c("a", m(61001, "0.0.0.0", 8080))}, "cannot be a DNAT address"},
		{"host port 0", cellIP, []netin.Container{c("a", m(0, "10.244.1.2", 8080))}, "host port 0 is not in 1..65535"},
		{"host port 65536", cellIP, []netin.Container{c("a", m(65536, "10.244.1.2", 8080))}, "host port 65536 is not in 1..65535"},
		{"container port 0", cellIP, []netin.Container{c("a", m(61001, "10.244.1.2", 0))}, "container port 0 is not in 1..65535"},
		{"host port twice in a container", cellIP, []netin.Container{c("a", ok, m(61001, "10.244.1.2", 2222))}, `"a" maps host port 61001 twice`},
		{"host port in two containers", cellIP, []netin.Container{c("a", ok), c("b", m(61001, "10.244.1.3", 8080))}, `host port 61001 is mapped by both "a" and "b"`},
		{"handle twice", cellIP, []netin.Container{c("a", ok), c("a")}, `container "a" is listed twice`},
		{"handles sharing a chain", cellIP, []netin.Container{c(handleA + "-x"), c(handleA + "-y")}, "share chain " + chainA},
		{"bad cell ip", "10.244.0", nil, `cell ip "10.244.0" is not an IPv4 address`},
		{"IPv6 cell ip", "::1", nil, "not an IPv4 address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := netin.Render(tc.cell, tc.desired, "")
			if err == nil {
				t.Fatalf("Render accepted %+v", tc.desired)
			}
			if !errors.Is(err, netin.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func TestRenderRefusesUnreadableDump(t *testing.T) {
	_, err := netin.Render(cellIP, nil, "*nat\n-A NOWHERE -j ACCEPT\nCOMMIT\n")
	if err == nil || !strings.Contains(err.Error(), "undeclared chain") {
		t.Fatalf("err = %v, want an undeclared-chain error", err)
	}
}
