package rep

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/minicf/minicf/internal/bbs"
)

func TestPlanPortsIsDiegos(t *testing.T) {
	for _, c := range []struct {
		ports []uint32
		proxy map[uint32]uint32
		admin uint32
	}{
		{[]uint32{8080, 2222}, map[uint32]uint32{8080: 61001, 2222: 61002}, 61003},
		{[]uint32{8080, 8080}, map[uint32]uint32{8080: 61001}, 61002},
		{[]uint32{61001, 8080}, map[uint32]uint32{61001: 61002, 8080: 61003}, 61004},
		{nil, map[uint32]uint32{}, 0},
	} {
		p, err := planPorts(c.ports, true)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p.proxyPorts, c.proxy) || p.adminPort != c.admin {
			t.Errorf("%v: proxy %v admin %d, want %v %d", c.ports, p.proxyPorts, p.adminPort, c.proxy, c.admin)
		}
	}
	// 61443 is skipped, and may not be an app port.
	many := []uint32{}
	for p := uint32(1000); p < 1443; p++ {
		many = append(many, p)
	}
	p, err := planPorts(many, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.proxyPorts[1441] != 61442 || p.proxyPorts[1442] != 61444 {
		t.Fatalf("around 61443: %d %d", p.proxyPorts[1441], p.proxyPorts[1442])
	}
	if _, err := planPorts([]uint32{61443}, true); err == nil {
		t.Fatal("61443 accepted as an app port")
	}
	if p, _ := planPorts([]uint32{8080}, false); len(p.proxyPorts) != 0 || p.adminPort != 0 || len(p.netIn()) != 1 {
		t.Fatalf("without route integrity: %+v", p)
	}
}

func TestContainerPath(t *testing.T) {
	for _, c := range []struct {
		in, setup, out string
		rel            bool
	}{
		{"", "", "app", true},
		{"/home/vcap/app", "", "app", true},
		{"/home/vcap/app/bin/start", "", "app/bin/start", true},
		{"/srv/app/x", "/srv/app", "app/x", true},
		{"bin/start", "", "app/bin/start", true},
		{"/usr/bin/env", "", "/usr/bin/env", false},
		{"/home/vcap/application", "", "/home/vcap/application", false},
	} {
		out, rel := containerPath(c.in, c.setup)
		if out != c.out || rel != c.rel {
			t.Errorf("containerPath(%q, %q) = %q %v, want %q %v", c.in, c.setup, out, rel, c.out, c.rel)
		}
	}
}

func TestVCAPApplicationKeepsTheCloudControllersFields(t *testing.T) {
	d := &bbs.DesiredLRP{ProcessGUID: "0b5a2f8e-4a4e-4c1b-9d1e-8e1c2d3f4a5b-6c7d8e9f-0a1b-4c2d-8e3f-4a5b6c7d8e9f", LogGUID: "app-guid",
		MemoryMB: 256, DiskMB: 1024}
	given := `{"application_id":"from-cc","space_name":"dev","limits":{"mem":999}}`
	var v map[string]any
	if err := json.Unmarshal([]byte(vcapApplication(given, d, "guid-1", 2, 61005)), &v); err != nil {
		t.Fatal(err)
	}
	if v["application_id"] != "from-cc" || v["space_name"] != "dev" || v["limits"].(map[string]any)["mem"] != 999.0 ||
		v["instance_id"] != "guid-1" || v["instance_index"] != 2.0 || v["port"] != 61005.0 || v["host"] != "0.0.0.0" ||
		v["process_id"] != "0b5a2f8e-4a4e-4c1b-9d1e-8e1c2d3f4a5b" {
		t.Fatalf("VCAP_APPLICATION %v", v)
	}
}

func TestLineWriterSplitsLines(t *testing.T) {
	var got []string
	w := &lineWriter{emit: func(l string) { got = append(got, l) }}
	w.Write([]byte("one\r\ntw"))
	w.Write([]byte("o\nthree"))
	if !reflect.DeepEqual(got, []string{"one", "two"}) {
		t.Fatalf("%q", got)
	}
}
