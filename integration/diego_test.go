package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/testutil"
)

// diego is a BBS, an auctioneer and cells, each its own minicf process.
type diego struct{ *harness.Diego }

// cellTimers are the cells' timers, shortened.
var cellTimers = []string{"--heartbeat-interval", "500ms", "--poll-interval", "2s", "--grace-period", "2s",
	"--proxy-reload-wait", "0s", "--stop-instances"}

// startDiego starts a diego with process-mode cells, each on its own host
// port range.
func startDiego(t testing.TB, cells ...string) *diego {
	t.Helper()
	return &diego{suite.StartDiego(t, harness.DiegoSpec{
		Cells:   cells,
		BBSArgs: []string{"--converge-interval", "1s", "--cell-ttl", "3s"},
		CellArgs: func(i int, _ string) []string {
			return append([]string{"--port-range-start", strconv.Itoa(42000 + i*500)}, cellTimers...)
		},
	})}
}

func (d *diego) actuals(t *testing.T, guid string) []*bbs.ActualLRP {
	t.Helper()
	list, err := d.Client.ActualLRPs(context.Background(), bbs.ActualLRPsRequest{ProcessGUID: guid})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// waitRunning waits until exactly n instances run, and returns them.
func (d *diego) waitRunning(t *testing.T, guid string, n int, within time.Duration) []*bbs.ActualLRP {
	t.Helper()
	var running []*bbs.ActualLRP
	testutil.CheckFor(t, within, 50*time.Millisecond, func() error {
		all := d.actuals(t, guid)
		running = running[:0]
		var states []string
		for _, a := range all {
			states = append(states, fmt.Sprintf("%d:%s@%s%s", a.Index, a.State, a.CellID, a.PlacementError))
			if a.State == bbs.StateRunning {
				running = append(running, a)
			}
		}
		if len(running) != n || len(all) != n {
			return fmt.Errorf("want %d running and nothing else, have %v", n, states)
		}
		return nil
	})
	return running
}

// viaSidecar sends GET path to an instance through its envoy TLS port,
// checking the certificate is the instance's identity.
func (d *diego) viaSidecar(a *bbs.ActualLRP, path string) (string, *tls.ConnectionState, error) {
	if len(a.Ports) == 0 || a.Ports[0].HostTLSProxyPort == 0 {
		return "", nil, fmt.Errorf("instance %s has no TLS proxy port: %+v", a.InstanceGUID, a.Ports)
	}
	addr := net.JoinHostPort(a.Address, strconv.Itoa(int(a.Ports[0].HostTLSProxyPort)))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.CA.Pool(), ServerName: a.InstanceGUID}, DisableKeepAlives: true}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := c.Get("https://" + addr + path)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.TLS, err
}

// TestDiego_LRPLifecycleAcrossTwoCells is issue 3's end-to-end case: desire
// two instances, see them run on different cells behind their sidecars,
// crash one and see it restarted, scale 3 and back to 1, remove the LRP and
// find nothing left behind.
func TestDiego_LRPLifecycleAcrossTwoCells(t *testing.T) {
	d := startDiego(t, "cell-1", "cell-2")
	ctx := context.Background()
	desired := time.Now()
	if err := d.Client.DesireLRP(ctx, suite.DiegoApp("web", 2)); err != nil {
		t.Fatal(err)
	}
	running := d.waitRunning(t, "web", 2, 60*time.Second)
	t.Logf("desire → 2 instances RUNNING behind their sidecars: %v", time.Since(desired).Round(time.Millisecond))
	if running[0].CellID == running[1].CellID {
		t.Fatalf("both instances on %s: the auctioneer should spread them", running[0].CellID)
	}
	seenPorts := map[string]bool{}
	for _, a := range running {
		body, state, err := d.viaSidecar(a, "/")
		if err != nil {
			t.Fatalf("instance %d through its sidecar: %v", a.Index, err)
		}
		if want := fmt.Sprintf("instance %s index %d", a.InstanceGUID, a.Index); !strings.Contains(body, want) {
			t.Fatalf("instance %d answered %q, want %q", a.Index, body, want)
		}
		leaf := state.PeerCertificates[0]
		if leaf.Subject.CommonName != a.InstanceGUID || len(leaf.DNSNames) == 0 || leaf.DNSNames[0] != a.InstanceGUID {
			t.Fatalf("sidecar certificate CN %q SANs %v, want the instance guid %s", leaf.Subject.CommonName, leaf.DNSNames, a.InstanceGUID)
		}
		if len(a.InstanceGUID) != 28 || a.Address == "" || a.InstanceAddress == "" || a.Ports[0].ContainerPort != 8080 {
			t.Fatalf("instance %d net info %+v guid %q", a.Index, a.ActualLRPNetInfo, a.InstanceGUID)
		}
		for _, p := range a.Ports {
			seenPorts[net.JoinHostPort(a.Address, strconv.Itoa(int(p.HostTLSProxyPort)))] = true
			if p.HostPort != 0 {
				seenPorts[net.JoinHostPort(a.Address, strconv.Itoa(int(p.HostPort)))] = true
			}
		}
	}

	// Kill one app process: the cell reports the crash and the BBS restarts it.
	victim := running[0]
	crashed := time.Now()
	d.viaSidecar(victim, "/crash")
	testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		for _, a := range d.actuals(t, "web") {
			if a.Index == victim.Index {
				if a.State == bbs.StateRunning && a.InstanceGUID != victim.InstanceGUID && a.CrashCount == 1 {
					return nil
				}
				return fmt.Errorf("instance %d: %s crash_count %d guid %s", a.Index, a.State, a.CrashCount, a.InstanceGUID)
			}
		}
		return fmt.Errorf("instance %d is gone", victim.Index)
	})
	t.Logf("crash → replacement RUNNING: %v", time.Since(crashed).Round(time.Millisecond))

	// Scale to 3 and back to 1.
	three, one := int32(3), int32(1)
	if err := d.Client.UpdateDesiredLRP(ctx, "web", &bbs.DesiredLRPUpdate{Instances: &three}); err != nil {
		t.Fatal(err)
	}
	for _, a := range d.waitRunning(t, "web", 3, 60*time.Second) {
		for _, p := range a.Ports {
			seenPorts[net.JoinHostPort(a.Address, strconv.Itoa(int(p.HostTLSProxyPort)))] = true
		}
		if _, _, err := d.viaSidecar(a, "/"); err != nil {
			t.Fatalf("instance %d after scaling up: %v", a.Index, err)
		}
	}
	if err := d.Client.UpdateDesiredLRP(ctx, "web", &bbs.DesiredLRPUpdate{Instances: &one}); err != nil {
		t.Fatal(err)
	}
	if left := d.waitRunning(t, "web", 1, 60*time.Second); left[0].Index != 0 {
		t.Fatalf("scaling down kept index %d", left[0].Index)
	}

	if err := d.Client.RemoveDesiredLRP(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := len(d.actuals(t, "web")); n != 0 {
			return fmt.Errorf("%d instances left", n)
		}
		return nil
	})
	// Nothing left behind: no container directory, no listening port, no process.
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		for id := range d.Cells {
			entries, _ := os.ReadDir(filepath.Join(d.Home, "cells", id, "containers"))
			if len(entries) > 0 {
				return fmt.Errorf("%s still has %d container directories", id, len(entries))
			}
		}
		for addr := range seenPorts {
			if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
				c.Close()
				return fmt.Errorf("%s still accepts connections", addr)
			}
		}
		if pids := harness.ProcessesUnder(d.Home); len(pids) > 0 {
			return fmt.Errorf("processes still running from the cells: %v", pids)
		}
		return nil
	})
}
