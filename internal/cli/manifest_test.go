package cli

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest([]byte(`---
version: 1
applications:
- name: myapp
  path: ./app
  command: ./run.sh
  instances: 2
  memory: 256M
  disk_quota: 1G
  buildpacks: [binary_buildpack]
  stack: cflinuxfs4
  env:
    GREETING: hello
    COUNT: 3
    DEBUG: true
  health-check-type: http
  health-check-http-endpoint: /health
  timeout: 60
  routes:
  - route: myapp.apps.localhost
  - route: api.apps.localhost/v1
    protocol: http2
    options: {loadbalancing: least-connection}
  default-route: true
- name: worker
  command: null
  no-route: true
  random-route: false
`))
	if err != nil {
		t.Fatal(err)
	}
	two, cmd := 2, "./run.sh"
	sixty := 60
	want := &Manifest{Version: 1, Applications: []Application{{
		Name: "myapp", Path: "./app", Command: &cmd, Instances: &two, Memory: "256M", DiskQuota: "1G",
		Buildpacks: []string{"binary_buildpack"}, Stack: "cflinuxfs4",
		Env:             map[string]string{"GREETING": "hello", "COUNT": "3", "DEBUG": "true"},
		HealthCheckType: "http", HealthCheckHTTPEndpoint: "/health", Timeout: &sixty,
		Routes: []ManifestRoute{{Route: "myapp.apps.localhost"}, {Route: "api.apps.localhost/v1", Protocol: "http2",
			Options: map[string]string{"loadbalancing": "least-connection"}}},
		DefaultRoute: true,
	}, {Name: "worker", Command: new(string), NoRoute: true}}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("parsed\n%#v\nwant\n%#v", m, want)
	}
	out, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseManifest(out)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(again, m) {
		t.Errorf("round trip changed the manifest:\n%s", out)
	}
}

func TestParseManifestErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"", "manifest: empty: it needs an applications: list"},
		{"# only a comment\n", "manifest: empty"},
		{"- a\n- b\n", "manifest line 1: must be a mapping with an applications: list, not a list"},
		{"applications: []\n", "manifest line 1: applications: the manifest lists no applications"},
		{"version: 2\napplications: [{name: a}]\n", "manifest line 1: version: unsupported version 2: only 1 is"},
		{"aplications:\n- name: a\n", `manifest line 1: "aplications": unknown key (did you mean "applications"?)`},
		{"applications:\n- name: a\n  instnaces: 2\n", `manifest line 3: applications[0]."instnaces": unknown key (did you mean "instances"?)`},
		{"applications:\n- name: a\n  host: foo\n", `manifest line 3: applications[0]."host": unknown key; known keys: buildpacks, command`},
		{"applications:\n- name: a\n  instances: two\n", `manifest line 3: applications[0].instances: must be a whole number, not str "two"`},
		{"applications:\n- name: a\n  instances: 1.5\n", `manifest line 3: applications[0].instances: must be a whole number, not float "1.5"`},
		{"applications:\n- name: a\n  instances: -1\n", `manifest line 3: applications[0].instances: must not be negative`},
		{"applications:\n- name: a\n  memory: 256\n", `manifest line 3: applications[0].memory: 256 needs a unit: 256M or 256G`},
		{"applications:\n- name: a\n  memory: lots\n", `manifest line 3: applications[0].memory: "lots" must be a number with a unit`},
		{"applications:\n- name: a\n  no-route: yes please\n", `manifest line 3: applications[0].no-route: must be true or false, not str "yes please"`},
		{"applications:\n- name: a\n  routes: a.example.com\n", `manifest line 3: applications[0].routes: must be a list of - route: HOST.DOMAIN[/PATH], not str "a.example.com"`},
		{"applications:\n- name: a\n  routes:\n  - a.example.com\n", `manifest line 4: applications[0].routes[0]: must be a mapping: - route: HOST.DOMAIN[/PATH], not str "a.example.com"`},
		{"applications:\n- name: a\n  routes:\n  - rout: a.example.com\n", `manifest line 4: applications[0].routes[0]."rout": unknown key (did you mean "route"?)`},
		{"applications:\n- name: a\n  routes:\n  - protocol: http2\n", `manifest line 4: applications[0].routes[0]: has no route: key`},
		{"applications:\n- name: a\n  routes:\n  - route: x\n    protocol: udp\n", `manifest line 5: applications[0].routes[0].protocol: "udp" is not one of http1, http2, tcp`},
		{"applications:\n- path: .\n", `manifest line 2: applications[0]: has no name`},
		{"applications:\n- name: ''\n", `manifest line 2: applications[0].name: must not be empty`},
		{"applications:\n- name: [a]\n", `manifest line 2: applications[0].name: must be a string, not a list`},
		{"applications:\n- name: a\n  name: b\n", `manifest line 3: applications[0].name: given twice (also on line 2)`},
		{"applications:\n- name: a\n- name: a\n", `manifest: applications[1].name: app "a" is listed twice (also applications[0])`},
		{"applications:\n- name: a\n  env: [A]\n", `manifest line 3: applications[0].env: must be a mapping of names to values, not a list`},
		{"applications:\n- name: a\n  env: {A: [1]}\n", `manifest line 3: applications[0].env.A: must be a string, not a list`},
		{"applications:\n- name: a\n  health-check-type: tcp\n", `applications[0].health-check-type: "tcp" is not one of port, http, process`},
		{"applications:\n- name: &a x\n  path: *a\n", `manifest line 3: applications[0].path: YAML aliases (*name) are not supported`},
		{"applications:\n- name: a\n---\napplications: []\n", `manifest line 3: holds more than one YAML document`},
		{"applications:\n- name: a\n\tinstances: 1\n", `manifest: invalid YAML: `},
		{"applications:\n- name: a\n  <<: {instances: 1}\n", `manifest line 3: applications[0]: merge keys (<<) are not supported`},
	} {
		_, err := ParseManifest([]byte(tc.yaml))
		if err == nil {
			t.Errorf("%q: no error, want %q", tc.yaml, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %q\nwant %q", tc.yaml, err, tc.want)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	for _, s := range []string{
		"applications:\n- name: myapp\n  instances: 2\n  routes:\n  - route: a.b/c\n",
		"version: 1\napplications:\n- name: a\n  command: null\n  env: {A: '1', B: 2}\n  buildpacks: []\n",
		"applications: [{name: x, no-route: true, random-route: true, default-route: false, memory: 1G, disk-quota: 512MB}]\n",
		"applications:\n- name: \"0x10\"\n  path: \"  spaced \"\n  command: \"a\\nb\"\n",
		"applications:\n- name: '123'\n  routes: []\n  env: {}\n  timeout: 1\n  health-check-type: none\n",
		"applications:\n- name: a\n  routes:\n  - route: x\n    protocol: tcp\n    options: {loadbalancing: round-robin}\n",
		"applications:\n- name: \"\\u00e9\\t\\x01\"\n",
		"",
		"- [",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a manifest", err)
			}
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := ParseManifest(out)
		if err != nil {
			t.Fatalf("re-parse of\n%s\nfailed: %v\n(input %q)", out, err, data)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed the manifest:\ninput %q\nfirst  %#v\nsecond %#v\nyaml:\n%s", data, m, again, out)
		}
	})
}
