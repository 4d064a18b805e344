package mbus

import (
	"strings"
	"testing"
)

func TestParseRouteKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    RouteKey
		wantErr string // empty: accepted
	}{
		{in: "myapp.apps.localhost", want: RouteKey{Host: "myapp.apps.localhost"}},
		{in: "MyApp.Apps.LocalHost", want: RouteKey{Host: "myapp.apps.localhost"}},
		{in: "myapp.apps.localhost/", want: RouteKey{Host: "myapp.apps.localhost"}},
		{in: "myapp.apps.localhost/API/v1/", want: RouteKey{Host: "myapp.apps.localhost", Path: "/api/v1"}},
		{in: "myapp.apps.localhost/api?x=1", want: RouteKey{Host: "myapp.apps.localhost", Path: "/api"}},
		{in: "myapp.apps.localhost?x=/y", want: RouteKey{Host: "myapp.apps.localhost"}},
		{in: "*.apps.localhost", want: RouteKey{Host: "*.apps.localhost"}},
		{in: "my_app-1.apps.localhost", want: RouteKey{Host: "my_app-1.apps.localhost"}},
		{in: "a.b/caf%C3%A9/ünï", want: RouteKey{Host: "a.b", Path: "/caf%c3%a9/ünï"}},

		{in: "", wantErr: "route is empty"},
		{in: "/api", wantErr: "no host name"},
		{in: "?x", wantErr: "no host name"},
		{in: "a.apps.localhost:8080", wantErr: "must not carry a port"},
		{in: "a b.localhost", wantErr: "not allowed"},
		{in: "https://a.localhost", wantErr: "must not start with a scheme"},
		{in: "a.*.localhost", wantErr: "not allowed"},
		{in: "*a.localhost", wantErr: "not allowed"},
		{in: "*", wantErr: "not allowed"},
		{in: "*.", wantErr: "not allowed"},
		{in: ".a.localhost", wantErr: "empty label"},
		{in: "a.localhost.", wantErr: "empty label"},
		{in: "a..localhost", wantErr: "empty label"},
		{in: "a.localhost/x//y", wantErr: "empty segment"},
		{in: "a.localhost/x y", wantErr: "control character, space"},
		{in: "a.localhost/x\ty", wantErr: "control character, space"},
		{in: "a.localhost/x#y", wantErr: "'#'"},
		{in: "a.localhost/\xff", wantErr: "not valid UTF-8"},
		{in: strings.Repeat("a", 254), wantErr: "longer than 253"},
		{in: "a.localhost/" + strings.Repeat("x", MaxRouteLength), wantErr: "longer than 1024"},
		// Lower-casing U+023A takes 2 bytes to 3: within the limit as sent,
		// over it once normalised.
		{in: "a.localhost/" + strings.Repeat("\u023a", 400), wantErr: "longer than 1024"},
	} {
		got, err := ParseRouteKey(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseRouteKey(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRouteKey(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.want.Host+tc.want.Path {
			t.Errorf("String() = %q", got.String())
		}
	}
}

func FuzzParseRouteKey(f *testing.F) {
	for _, seed := range []string{
		"myapp.apps.localhost",
		"MyApp.Apps.LocalHost/API/v1/?x=1",
		"*.apps.localhost/",
		"a.b/c//",
		"a.b/\u023a\u023a",
		"a.b/\xff",
		"a:1",
		"*.",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		k, err := ParseRouteKey(in)
		if err != nil {
			return
		}
		if k.Host == "" {
			t.Fatalf("accepted %q with an empty host", in)
		}
		if k.Host != strings.ToLower(k.Host) {
			t.Fatalf("host %q of %q has upper case", k.Host, in)
		}
		again, err := ParseRouteKey(k.String())
		if err != nil {
			t.Fatalf("%q parsed to %q, which does not re-parse: %v", in, k.String(), err)
		}
		if again != k {
			t.Fatalf("%q parsed to %+v, re-parsed to %+v", in, k, again)
		}
	})
}
