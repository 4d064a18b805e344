package rep

import (
	"reflect"
	"strings"
	"testing"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
)

// In namespace mode a container has a network of its own: only the proxy
// port is mapped (cf-deployment), the app keeps its real port, and the
// rep checks and the sidecar use the container's address and real ports.
func TestNamespaceModePortsAreCFDeployments(t *testing.T) {
	plan, err := planPorts([]uint32{8080}, true)
	if err != nil {
		t.Fatal(err)
	}
	netIn, local := plan.containerPorts(true)
	if !reflect.DeepEqual(netIn, []garden.NetIn{{ContainerPort: 61001}}) || !reflect.DeepEqual(local, []uint32{8080, 61002}) {
		t.Fatalf("namespace mode asks for NetIn %v and local ports %v", netIn, local)
	}
	// Process mode maps the app port too (its process listens on a host port anyway).
	netIn, local = plan.containerPorts(false)
	if !reflect.DeepEqual(netIn, []garden.NetIn{{ContainerPort: 8080}, {ContainerPort: 61001}}) || !reflect.DeepEqual(local, []uint32{61002}) {
		t.Fatalf("process mode asks for NetIn %v and local ports %v", netIn, local)
	}
	// What Garden's namespace mode answers: the cell's and the overlay
	// address, host port 61000 for 61001, identity bind ports.
	info := garden.ContainerInfo{Mode: garden.ModeNamespace, ExternalIP: "10.244.0.11", ContainerIP: "10.244.1.2",
		MappedPorts: []garden.PortMapping{{ContainerPort: 61001, HostPort: 61000}},
		BindPorts:   map[uint32]uint32{61001: 61001, 8080: 8080, 61002: 61002}}
	ni := plan.netInfo(info)
	want := bbs.ActualLRPNetInfo{Address: "10.244.0.11", InstanceAddress: "10.244.1.2", PreferredAddress: "HOST",
		Ports: []bbs.PortMapping{{ContainerPort: 8080, HostPort: 0, ContainerTLSProxyPort: 61001, HostTLSProxyPort: 61000}}}
	if !reflect.DeepEqual(ni, want) {
		t.Fatalf("net info %+v, want %+v", ni, want)
	}
	args := strings.Join(plan.sidecarArgs(info, "c.crt", "c.key", ""), " ")
	if !strings.Contains(args, "--listen listener-8080-61001=0.0.0.0:61001=127.0.0.1:8080") || !strings.Contains(args, "--admin 127.0.0.1:61002") {
		t.Fatalf("sidecar args %s", args)
	}
	env := strings.Join(appEnv(&bbs.DesiredLRP{ProcessGUID: "pg"}, bbs.ActualLRPKey{}, "guid", info, plan, ni, "c.crt", "c.key"), "\n")
	for _, w := range []string{"\nPORT=8080\n", "\nCF_INSTANCE_IP=10.244.0.11\n", "\nCF_INSTANCE_INTERNAL_IP=10.244.1.2\n",
		`CF_INSTANCE_PORTS=[{"external":0,"internal":8080,"external_tls_proxy":61000,"internal_tls_proxy":61001}]`} {
		if !strings.Contains(env, w) {
			t.Errorf("the app's environment lacks %q:\n%s", w, env)
		}
	}
	// The start checks dial the container's address at the real ports.
	c := &lrpContainer{info: info, plan: plan, sidecar: fakeProcess{}}
	checks := (&Rep{}).checks(c, nil)
	if len(checks) != 2 || checks[0].port != 8080 || checks[1].port != 61001 {
		t.Fatalf("checks %+v", checks)
	}

	// Without route integrity the app port itself is mapped.
	plain, _ := planPorts([]uint32{8080}, false)
	netIn, local = plain.containerPorts(true)
	if !reflect.DeepEqual(netIn, []garden.NetIn{{ContainerPort: 8080}}) || len(local) != 0 {
		t.Fatalf("namespace mode without route integrity asks for NetIn %v and local ports %v", netIn, local)
	}
}

// fakeProcess stands for a running sidecar.
type fakeProcess struct{ garden.Process }
