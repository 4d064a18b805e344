package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

func TestQuery(t *testing.T) {
	got := query("/v3/routes", "domain_guids", "d1", "hosts", "h", "paths", "", "names", "a,b", "label_selector", "x in (y)")
	want := "/v3/routes?domain_guids=d1&hosts=h&paths=&names=a,b&label_selector=x+in+%28y%29"
	if got != want {
		t.Errorf("query = %q, want %q", got, want)
	}
}

func TestResolveKeepsTokenOnAPIHost(t *testing.T) {
	base, _ := url.Parse("http://127.0.0.1:9022")
	for _, tc := range []struct{ in, want string }{
		{"/v3/apps?page=2", "http://127.0.0.1:9022/v3/apps?page=2"},
		{"http://127.0.0.1:9022/v3/jobs/j1", "http://127.0.0.1:9022/v3/jobs/j1"},
		// Another host (a CC that builds links from its bind address, or
		// a hostile one): only the path and query are followed, on the API.
		{"http://evil.example:9022/v3/apps?page=2", "http://127.0.0.1:9022/v3/apps?page=2"},
		{"https://127.0.0.1:9022/v3/jobs/j1", "http://127.0.0.1:9022/v3/jobs/j1"},
	} {
		u, err := resolve(base, tc.in)
		if err != nil || u.String() != tc.want {
			t.Errorf("resolve(%q) = %v, %v; want %s", tc.in, u, err, tc.want)
		}
	}
}

func TestClientBoundsAndPagination(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"resources":["`+strings.Repeat("x", MaxResponseBytes)+`"]}`)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"pagination":{"next":{"href":"/loop"}},"resources":[]}`)
	})
	mux.HandleFunc("/nokey", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c, err := NewClient(&Config{API: srv.URL}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := getAll[string](ctx, c, "/big"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized response: %v", err)
	}
	if _, err := getAll[string](ctx, c, "/loop"); err == nil || !strings.Contains(err.Error(), "pagination does not end") {
		t.Errorf("pagination loop: %v", err)
	}
	var app ccapi.App
	if err := c.get(ctx, "/nokey", &app); err != nil {
		t.Errorf("204: %v", err)
	}
	if _, err := NewClient(&Config{API: "ftp://x"}, nil, ""); err == nil {
		t.Error("ftp API accepted")
	}
}

func TestTokenUser(t *testing.T) {
	if u := tokenUser(testToken); u != "admin" {
		t.Errorf("user %q", u)
	}
	if u := tokenUser("opaque"); u != "" {
		t.Errorf("opaque token user %q", u)
	}
}
