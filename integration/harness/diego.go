package harness

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/testutil"
)

// DiegoSpec is what a test asks of its Diego.
type DiegoSpec struct {
	// Home is the foundation's home directory; empty is a new t.TempDir().
	Home string
	// Cells are the ids of the cells, started in this order.
	Cells []string
	// BBSArgs are more flags for `minicf bbs` (its timers).
	BBSArgs []string
	// CellArgs returns more flags for cells[i] (its mode, ports and timers).
	CellArgs func(i int, id string) []string
	// Identity names the test's client certificate; empty is the suite's
	// name + "-test".
	Identity string
}

// Diego is a BBS, an auctioneer and cells, each its own minicf process,
// talking mutual TLS with certificates from one foundation CA, and the
// test's BBS client.
type Diego struct {
	Home       string
	BBSURL     string
	CA         *identity.CA
	ClientTLS  *tls.Config // the test's client certificate
	Client     *bbs.Client
	BBS        *Proc
	Auctioneer *Proc
	Cells      map[string]*Proc
}

// StartDiego starts a BBS and an auctioneer on free loopback ports and the
// cells, and returns once every cell has registered with the BBS.
func (s *Suite) StartDiego(t testing.TB, spec DiegoSpec) *Diego {
	t.Helper()
	home := spec.Home
	if home == "" {
		home = t.TempDir()
	}
	bbsAddr, aucAddr := "127.0.0.1:"+FreePort(t), "127.0.0.1:"+FreePort(t)
	d := &Diego{Home: home, BBSURL: "https://" + bbsAddr, Cells: map[string]*Proc{}}
	d.BBS = s.StartProc(t, "bbs", append([]string{"bbs", "--home", home, "--listen", bbsAddr,
		"--auctioneer", "https://" + aucAddr}, spec.BBSArgs...)...)
	d.BBS.WaitForMsg(t, "bbs-listening", 1, 20*time.Second)
	d.Auctioneer = s.StartProc(t, "auctioneer", "auctioneer", "--home", home, "--listen", aucAddr, "--bbs", d.BBSURL)
	d.Auctioneer.WaitForMsg(t, "auctioneer-started", 1, 20*time.Second)
	for i, id := range spec.Cells {
		args := []string{"cell", "--id", id, "--home", home, "--listen", "127.0.0.1:0", "--bbs", d.BBSURL,
			"--root", filepath.Join(home, "cells", id)}
		if spec.CellArgs != nil {
			args = append(args, spec.CellArgs(i, id)...)
		}
		d.Cells[id] = s.StartProc(t, id, args...)
	}
	ca, err := identity.LoadOrCreate(filepath.Join(home, "identity"))
	if err != nil {
		t.Fatal(err)
	}
	d.CA = ca
	name := spec.Identity
	if name == "" {
		name = s.Name + "-test"
	}
	cred, err := ca.IssueComponent(name, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if d.ClientTLS, err = ca.ClientTLS(cred); err != nil {
		t.Fatal(err)
	}
	d.Client = bbs.NewClient(d.BBSURL, d.ClientTLS)
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		got, err := d.Client.Cells(context.Background())
		if err != nil {
			return err
		}
		if len(got) != len(spec.Cells) {
			return fmt.Errorf("%d of %d cells registered", len(got), len(spec.Cells))
		}
		return nil
	})
	return d
}

// CACertFile is the foundation CA's certificate, as routers take it
// (--backend-ca).
func (d *Diego) CACertFile() string {
	return filepath.Join(d.Home, "identity", identity.CACertFile)
}

// DiegoApp is the test app (diegoapp, from AppDir) as an LRP of guid with
// instances instances, a health check on port 8080 and the route
// guid.apps.localhost.
func (s *Suite) DiegoApp(guid string, instances int32) *bbs.DesiredLRP {
	return &bbs.DesiredLRP{
		ProcessGUID: guid, Domain: bbs.DomainCFApps, Instances: instances, Ports: []uint32{8080},
		LogGUID: "app-" + guid, MemoryMB: 64, DiskMB: 64,
		Setup:           &bbs.DownloadAction{From: s.AppDir, To: "/home/vcap/app"},
		Action:          &bbs.RunAction{Path: "/home/vcap/app/diegoapp", Dir: "/home/vcap/app"},
		CheckDefinition: &bbs.CheckDefinition{Checks: []bbs.Check{{HTTPCheck: &bbs.HTTPCheck{Port: 8080, Path: "/"}}}},
		Routes:          bbs.Routes{}.SetCFRoutes([]bbs.CFRoute{{Hostnames: []string{guid + ".apps.localhost"}, Port: 8080}}),
		StartTimeoutMs:  30000,
	}
}

// ProcessesUnder lists the pids of what runs from home's cells: processes
// whose working directory is inside them (the containers' apps and
// sidecars run from there) or whose command line names a container there.
// The cells themselves are not among them.
func ProcessesUnder(home string) []int {
	cells := filepath.Join(home, "cells") + "/"
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.HasPrefix(cwd, cells) || strings.Contains(string(cmd), cells) && strings.Contains(string(cmd), "/containers/") {
			out = append(out, pid)
		}
	}
	return out
}

// RequireNetns is for the tests where namespace mode is the point: they
// skip without root (and ip, iptables) outside CI and fail in CI.
func RequireNetns(t *testing.T) {
	t.Helper()
	if why := garden.Preflight(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %s: this test needs namespace mode and must run in CI", why)
		}
		t.Skip("needs namespace mode (root, Linux, ip and iptables): " + why)
	}
}

// ClaimNetns claims a foundation network (the bridge) of its own for the
// test: prefix stem and 4 random hex digits, on a free /16 in
// 10.240-10.254 (never 10.244, minicf's default, nor 10.255, where this
// kind of host keeps its resolver). Its cleanup, registered first, runs
// after every process the test starts later has stopped: it runs Down for
// the prefix and fails the test if anything of it is left.
func ClaimNetns(t *testing.T, stem string) *garden.Network {
	t.Helper()
	prefix := fmt.Sprintf("%s%04x", stem, rand.IntN(1<<16))
	var ranges []string
	for _, i := range rand.Perm(15) {
		if 240+i != 244 {
			ranges = append(ranges, fmt.Sprintf("10.%d.0.0/16", 240+i))
		}
	}
	nw, err := garden.ClaimFoundation(context.Background(), prefix, ranges)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		report, err := garden.Down(context.Background(), prefix)
		if err != nil {
			t.Errorf("Down(%s): %v", prefix, err)
		}
		if left := garden.Leftovers(prefix); len(left) > 0 {
			t.Errorf("left behind by the test: %v (Down: %s)", left, report)
		}
	})
	t.Logf("foundation network %s on %s", prefix, nw.Range)
	return nw
}
