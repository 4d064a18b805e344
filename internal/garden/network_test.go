package garden

import (
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestNetworkAddressPlan(t *testing.T) {
	n, err := NewNetwork("mcf", DefaultNetworkRange)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ got, want string }{
		{n.BridgeName(), "mcf0"},
		{n.BridgeIP().String(), "10.244.0.1"},
		{n.CellNS(3), "mcf-cell-3"},
		{n.CellVeth(3), "mcf-c3"},
		{n.CellIP(3).String(), "10.244.0.13"},
		{n.CellSubnet(3).String(), "10.244.3.0/24"},
		{n.CellGateway(3).String(), "10.244.3.1"},
		{n.CellIP(MaxCells).String(), "10.244.0.254"},
		{n.ContainerNS(3, "a0d2b217-fa7d-4ac1-65"), "mcf-c3-a0d2b217-fa7d-4ac1-65"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	v := ContainerVeth("a0d2b217-fa7d-4ac1-65")
	if len(v) != 13 || v[0] != 'v' || v == ContainerVeth("a0d2b217-fa7d-4ac1-66") {
		t.Errorf("container veth %q", v)
	}
	// The longest names stay within the kernel's 15 characters.
	long, _ := NewNetwork("abcdefgh", "10.240.0.0/16")
	if l := len(long.CellVeth(MaxCells)); l > 15 {
		t.Errorf("cell veth %q is %d characters", long.CellVeth(MaxCells), l)
	}
	if err := validCell(0); err == nil {
		t.Error("cell 0 accepted")
	}
	if err := validCell(MaxCells + 1); err == nil {
		t.Error("cell 245 accepted")
	}
	for _, bad := range []struct{ prefix, cidr string }{
		{"MCF", DefaultNetworkRange}, {"9mcf", DefaultNetworkRange}, {"mcf-x", DefaultNetworkRange}, {"abcdefghi", DefaultNetworkRange},
		{"mcf", "10.244.0.0/24"}, {"mcf", "10.244.1.0/16"}, {"mcf", "8.8.0.0/16"}, {"mcf", "fd00::/16"}, {"mcf", "nonsense"},
	} {
		if _, err := NewNetwork(bad.prefix, bad.cidr); err == nil {
			t.Errorf("NewNetwork(%q, %q) accepted", bad.prefix, bad.cidr)
		}
	}
	// Names of another prefix are never ours.
	if n.ours("mcf1") || n.ours("mcft0") || !n.ours("mcf-c12") || n.ours("mcf-c12x") || n.ours("eth0") {
		t.Error("ours() matches the wrong links")
	}
	if n.cellNSRE().MatchString("mcf-test-explore24639") || n.containerNSRE().MatchString("mcf-test-explore24639") {
		t.Error("a namespace that is not minicf's matches")
	}
	if !n.containerNSRE().MatchString("mcf-c2-a0d2b217-fa7d-4ac1-65") || n.containerNSRE().MatchString("mcfx-c2-abc") {
		t.Error("the container namespace pattern is wrong")
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// hostLikeThisOne is this machine's kind of network: the resolver lives in
// 10.255.0.0/16, the default route leaves by eth0.
func hostLikeThisOne() HostNetwork {
	return HostNetwork{
		Routes: []HostRoute{
			{Dst: pfx("192.0.2.0/24"), Dev: "eth0", Table: 254},
			{Dst: pfx("127.0.0.0/8"), Dev: "lo", Table: 255},
		},
		Addresses: []HostAddr{{Prefix: pfx("192.0.2.2/24"), Dev: "eth0"}, {Prefix: pfx("127.0.0.1/8"), Dev: "lo"}},
		Resolvers: []netip.Addr{netip.MustParseAddr("10.255.255.53")}, ResolverFiles: []string{"/etc/resolv.conf"},
	}
}

func TestCheckRange(t *testing.T) {
	check := func(cidr string, h HostNetwork) error {
		t.Helper()
		n, err := NewNetwork("mcf", cidr)
		if err != nil {
			t.Fatal(err)
		}
		return n.CheckRange(h)
	}
	h := hostLikeThisOne()
	// Cloud Foundry's own default range holds this host's resolver.
	err := check("10.255.0.0/16", h)
	if err == nil || !strings.Contains(err.Error(), "DNS resolver 10.255.255.53") || !strings.Contains(err.Error(), "--network-range") {
		t.Fatalf("10.255.0.0/16 with the resolver 10.255.255.53: %v", err)
	}
	if err := check(DefaultNetworkRange, h); err != nil {
		t.Fatalf("a free range is refused: %v", err)
	}
	// A route into the range (a VPN's, another foundation's bridge).
	h2 := hostLikeThisOne()
	h2.Routes = append(h2.Routes, HostRoute{Dst: pfx("10.244.128.0/17"), Dev: "tun0", Table: 254})
	err = check(DefaultNetworkRange, h2)
	if err == nil || !strings.Contains(err.Error(), "route 10.244.128.0/17 dev tun0") || !strings.Contains(err.Error(), "--network-range") {
		t.Fatalf("a clash with a route: %v", err)
	}
	// A wider route that holds the range.
	h3 := hostLikeThisOne()
	h3.Routes = append(h3.Routes, HostRoute{Dst: pfx("10.0.0.0/8"), Dev: "wg0", Table: 100})
	if err := check(DefaultNetworkRange, h3); err == nil || !strings.Contains(err.Error(), "table 100") {
		t.Fatalf("a clash with a /8 route in another table: %v", err)
	}
	// An address in the range.
	h4 := hostLikeThisOne()
	h4.Addresses = append(h4.Addresses, HostAddr{Prefix: pfx("10.244.7.3/24"), Dev: "eth1"})
	if err := check(DefaultNetworkRange, h4); err == nil || !strings.Contains(err.Error(), "address 10.244.7.3/24 on eth1") {
		t.Fatalf("a clash with an address: %v", err)
	}
	// The foundation's own bridge and cell links are not a clash; the same
	// range on another prefix's bridge is.
	h5 := hostLikeThisOne()
	h5.Routes = append(h5.Routes, HostRoute{Dst: pfx("10.244.0.0/16"), Dev: "mcf0", Table: 254},
		HostRoute{Dst: pfx("10.244.1.0/24"), Dev: "mcf0", Table: 254})
	h5.Addresses = append(h5.Addresses, HostAddr{Prefix: pfx("10.244.0.1/16"), Dev: "mcf0"})
	if err := check(DefaultNetworkRange, h5); err != nil {
		t.Fatalf("the foundation's own bridge is refused: %v", err)
	}
	n, _ := NewNetwork("mct1", DefaultNetworkRange)
	if err := n.CheckRange(h5); err == nil || !strings.Contains(err.Error(), "mcf0") {
		t.Fatalf("another foundation's bridge on the same range: %v", err)
	}
}

func TestReadResolvers(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/resolv.conf"
	data := "# comment\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nsearch example\nnameserver 192.0.2.53\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readResolvers(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].String() != "10.255.255.53" || got[1].String() != "192.0.2.53" {
		t.Fatalf("resolvers %v", got)
	}
}
