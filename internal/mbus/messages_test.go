package mbus

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// routeEmitterJSON is a registration as a real route-emitter sends it.
const routeEmitterJSON = `{"host":"10.0.16.7","port":61012,"tls_port":61013,"uris":["myapp.apps.localhost"],"app":"app-guid","private_instance_id":"inst-guid","private_instance_index":"0","server_cert_domain_san":"inst-guid","endpoint_updated_at_ns":1700000000000000000,"tags":{"component":"route-emitter"},"options":{"loadbalancing":"least-connection"}}`

func TestDecodeRegistryMessageRouteEmitter(t *testing.T) {
	t.Parallel()
	m, err := DecodeRegistryMessage([]byte(routeEmitterJSON))
	if err != nil {
		t.Fatal(err)
	}
	want := &RegistryMessage{
		Host:                 "10.0.16.7",
		Port:                 61012,
		TLSPort:              61013,
		URIs:                 []string{"myapp.apps.localhost"},
		App:                  "app-guid",
		PrivateInstanceID:    "inst-guid",
		PrivateInstanceIndex: "0",
		ServerCertDomainSAN:  "inst-guid",
		EndpointUpdatedAtNs:  1700000000000000000,
		Tags:                 map[string]string{"component": "route-emitter"},
		Options:              &RouteOptions{LoadBalancing: LBLeastConnection},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", m, want)
	}
	if m.EffectivePort() != 61013 || !m.TLS() || m.Address() != "10.0.16.7:61013" {
		t.Fatalf("EffectivePort=%d TLS=%v Address=%s", m.EffectivePort(), m.TLS(), m.Address())
	}
}

func TestDecodeRegistryMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		json    string
		wantErr string // empty: accepted
	}{
		{"route-emitter", routeEmitterJSON, ""},
		{"plain http", `{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost","b.apps.localhost/api"]}`, ""},
		{"tls only", `{"host":"10.0.0.1","tls_port":8443,"uris":["a.apps.localhost"]}`, ""},
		{"ipv6 host", `{"host":"fd00::1","port":8080,"uris":["a.apps.localhost"]}`, ""},
		{"unknown keys ignored", `{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost"],"future_field":{"x":[1,2]},"another":true}`, ""},
		{"https route service", `{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost"],"route_service_url":"https://rs.example.com"}`, ""},
		{"http2 and round robin", `{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost"],"protocol":"http2","options":{"loadbalancing":"round-robin"}}`, ""},
		{"wildcard uri", `{"host":"10.0.0.1","port":8080,"uris":["*.apps.localhost"]}`, ""},

		{"invalid json", `{"host":"10.0.0.1",`, "unexpected end of JSON"},
		{"not an object", `[1,2,3]`, "cannot unmarshal"},
		{"port as string", `{"host":"10.0.0.1","port":"8080","uris":["a.apps.localhost"]}`, "cannot unmarshal"},
		{"port out of range", `{"host":"10.0.0.1","port":70000,"uris":["a.apps.localhost"]}`, "cannot unmarshal"},
		{"empty host", `{"host":"","port":8080,"uris":["a.apps.localhost"]}`, "host is empty"},
		{"missing host", `{"port":8080,"uris":["a.apps.localhost"]}`, "host is empty"},
		{"host with space", `{"host":"10.0.0.1 x","port":8080,"uris":["a.apps.localhost"]}`, "not an IP address or hostname"},
		{"host with NUL", `{"host":"10.0.0.1\u0000","port":8080,"uris":["a.apps.localhost"]}`, "not an IP address or hostname"},
		{"host with slash", `{"host":"10.0.0.1/24","port":8080,"uris":["a.apps.localhost"]}`, "not an IP address or hostname"},
		{"host too long", `{"host":"` + strings.Repeat("a", 254) + `","port":8080,"uris":["a.apps.localhost"]}`, "not an IP address or hostname"},
		{"no port", `{"host":"10.0.0.1","uris":["a.apps.localhost"]}`, "neither port nor tls_port"},
		{"zero ports", `{"host":"10.0.0.1","port":0,"tls_port":0,"uris":["a.apps.localhost"]}`, "neither port nor tls_port"},
		{"http route service", `{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost"],"route_service_url":"http://rs.example.com"}`, "must use https"},
		{"no uris", `{"host":"10.0.0.1","port":8080}`, "uris is empty"},
		{"empty uris", `{"host":"10.0.0.1","port":8080,"uris":[]}`, "uris is empty"},
		{"empty uri", `{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost",""]}`, "route is empty"},
		{"uri with port", `{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost:443"]}`, "must not carry a port"},
		{"uri with scheme", `{"host":"10.0.0.1","port":8080,"uris":["https://a.apps.localhost"]}`, "must not start with a scheme"},
		{"uri with empty label", `{"host":"10.0.0.1","port":8080,"uris":["a..apps.localhost"]}`, "empty label"},
		{"uri with inner wildcard", `{"host":"10.0.0.1","port":8080,"uris":["a.*.localhost"]}`, "not allowed"},
		{"uri path only", `{"host":"10.0.0.1","port":8080,"uris":["/api"]}`, "no host name"},
		{"negative stale threshold", `{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost"],"stale_threshold_in_seconds":-1}`, "negative"},
		{"unknown protocol", `{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost"],"protocol":"http3"}`, "not http1 or http2"},
		{"unknown load balancing", `{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost"],"options":{"loadbalancing":"random"}}`, "options.loadbalancing"},
		{"oversized", `{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost"],"app":"` + strings.Repeat("x", MaxMessageBytes) + `"}`, "more than the 65536 allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeRegistryMessage([]byte(tc.json))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if m.EffectivePort() == 0 || len(m.URIs) == 0 {
					t.Fatalf("accepted an unusable message: %+v", m)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %+v, want an error containing %q", m, tc.wantErr)
			}
			if m != nil {
				t.Fatalf("returned a message with the error: %+v", m)
			}
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestDecodeRegistryMessageTruncatesEchoedInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1000)
	_, err := DecodeRegistryMessage([]byte(`{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost"],"protocol":"` + long + `"}`))
	if err == nil || strings.Contains(err.Error(), long) || !strings.Contains(err.Error(), "...") {
		t.Fatalf("error should echo a truncated value: %v", err)
	}
}

func TestRouterStartWireNames(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(RouterStart{ID: "router-1", Hosts: []string{"10.0.0.5"}, MinimumRegisterIntervalInSeconds: 20, PruneThresholdInSeconds: 120})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":"router-1","hosts":["10.0.0.5"],"minimumRegisterIntervalInSeconds":20,"pruneThresholdInSeconds":120}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func FuzzDecodeRegistryMessage(f *testing.F) {
	for _, seed := range []string{
		routeEmitterJSON,
		`{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost/api/v1?x=1"]}`,
		`{"host":"fd00::1","tls_port":8443,"uris":["*.apps.localhost"],"route_service_url":"https://rs"}`,
		`{"host":"h","port":1,"uris":["A.B/C/"],"protocol":"http1","options":{}}`,
		`{"host":"10.0.0.1","port":0,"uris":["a"]}`,
		`{"host":"10.0.0.1","port":8080,"uris":["a:1"]}`,
		`{"host":"","uris":null}`,
		`{`,
		`null`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeRegistryMessage(data)
		if err != nil {
			if m != nil {
				t.Fatalf("message returned with error %v", err)
			}
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
			}
			return
		}
		if m.EffectivePort() == 0 {
			t.Fatalf("accepted a message without a port: %+v", m)
		}
		if len(m.URIs) == 0 {
			t.Fatalf("accepted a message without uris: %+v", m)
		}
		for _, u := range m.URIs {
			if _, err := ParseRouteKey(u); err != nil {
				t.Fatalf("accepted uri %q does not re-parse: %v", u, err)
			}
		}
		_ = m.Address()
	})
}
