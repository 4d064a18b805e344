package page_test

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/minicf/minicf/internal/trace"
	"github.com/minicf/minicf/internal/trace/page"
)

func get(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// The page as the trace API serves it (ServerConfig.Page), beside the API.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	s := trace.NewServer(trace.ServerConfig{Recorder: trace.NewRecorder(10), Page: page.Handler()})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func TestPageServesIndexAndAssets(t *testing.T) {
	ts := newServer(t)
	for _, c := range []struct{ path, ct, want string }{
		{"/", "text/html; charset=utf-8", `<svg id="diagram"`},
		{"/index.html", "text/html; charset=utf-8", `<tbody id="steps">`},
		{"/app.js", "text/javascript; charset=utf-8", "new EventSource("},
		{"/app.css", "text/css; charset=utf-8", "#diagram"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
	} {
		resp, body := get(t, "GET", ts.URL+c.path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", c.path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != c.ct {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, ct, c.ct)
		}
		if !strings.Contains(body, c.want) {
			t.Errorf("GET %s: the body lacks %q", c.path, c.want)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", c.path)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q does not keep the page to its origin", c.path, csp)
		}
	}

	// The API is still the API.
	resp, body := get(t, "GET", ts.URL+"/api/steps")
	var steps []trace.StepInfo
	if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &steps) != nil || len(steps) != len(trace.Flow) {
		t.Fatalf("/api/steps beside the page: %s %s", resp.Header.Get("Content-Type"), body)
	}
	if resp, _ := get(t, "GET", ts.URL+"/api/nothing"); resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/api/nothing: %d %s, want the API's JSON 404", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/nothing.js", http.StatusNotFound},
		{"GET", "/static/app.js", http.StatusNotFound},
		{"GET", "/../go.mod", http.StatusNotFound},
		{"POST", "/", http.StatusMethodNotAllowed},
		{"DELETE", "/app.js", http.StatusMethodNotAllowed},
	} {
		if resp, _ := get(t, c.method, ts.URL+c.path); resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
	}
	resp, body = get(t, "HEAD", ts.URL+"/")
	if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("HEAD /: %d, %d bytes, %q", resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
	}
}

// Every file the HTML names is served.
func TestPageReferencesResolve(t *testing.T) {
	ts := newServer(t)
	_, html := get(t, "GET", ts.URL+"/")
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(html, -1)
	if len(refs) < 3 {
		t.Fatalf("the page names %d files, want the script, the style sheet and the icon", len(refs))
	}
	for _, m := range refs {
		if resp, _ := get(t, "GET", ts.URL+m[1]); resp.StatusCode != http.StatusOK {
			t.Errorf("the page names %s, which answers %d", m[1], resp.StatusCode)
		}
	}
	// The elements the script looks up by id are in the page.
	_, js := get(t, "GET", ts.URL+"/app.js")
	for _, m := range regexp.MustCompile(`\$\('#([A-Za-z0-9_-]+)'\)`).FindAllStringSubmatch(js, -1) {
		if !strings.Contains(html, `id="`+m[1]+`"`) {
			t.Errorf("app.js looks up #%s, which index.html lacks", m[1])
		}
	}
}

// svgNS is the one URL the files may hold: the SVG namespace, a name that
// nothing fetches.
const svgNS = "http://www.w3.org/2000/svg"

// Nothing in the page reaches outside the trace API: no absolute or
// protocol-relative URL, no CSS import or url() but a fragment (an SVG
// marker), and every fetch and EventSource goes to /api/.
func TestPageHasNoExternalURLs(t *testing.T) {
	h := page.Handler()
	files := map[string]string{}
	for _, p := range []string{"/", "/app.js", "/app.css", "/favicon.svg"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		files[p] = rec.Body.String()
	}
	external := regexp.MustCompile(`(?i:\b(?:https?|wss?|ftp|file):\/\/)|(?:src|href|action|srcset)\s*=\s*["']?\/\/|\burl\(\s*["']?[^#\s"')]|@import`)
	for p, body := range files {
		b := strings.ReplaceAll(body, svgNS, "")
		for _, m := range external.FindAllStringIndex(b, -1) {
			t.Errorf("%s: external reference at %d: %q", p, m[0], b[max(0, m[0]-40):min(len(b), m[1]+40)])
		}
	}
	calls := regexp.MustCompile("(?:fetch|getJSON|EventSource)\\(\\s*['\"`]([^'\"`]*)").FindAllStringSubmatch(files["/app.js"], -1)
	if len(calls) < 4 {
		t.Fatalf("found %d fetch/EventSource calls in app.js, want those of /api/steps, /api/events, /api/stream, /api/state", len(calls))
	}
	for _, m := range calls {
		if !strings.HasPrefix(m[1], "/api/") {
			t.Errorf("app.js fetches %q, outside /api/", m[1])
		}
	}
	// Every embedded file is one the handler serves (nothing unreferenced
	// or unserved hides in the binary).
	n := 0
	fs.WalkDir(page.Static(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if n != len(files) {
		t.Errorf("%d files embedded, %d served", n, len(files))
	}
}
