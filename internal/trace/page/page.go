// Package page is the flow page of `minicf up`: one HTML page, served by
// the trace API at /, that draws flow 1 (CLI → Cloud Controller → BBS →
// auctioneer → cell → route emitter → NATS → router → user) as a diagram
// and animates each trace event as it happens, beside the router's route
// table and the cells' ActualLRPs.
//
// The page is plain HTML, CSS and JavaScript embedded in the binary: no
// build step, and nothing fetched from anywhere but the trace API itself
// (/api/steps, /api/events, /api/stream, /api/state). Cloud Foundry has no
// such page; it is what a person learning route propagation would draw on
// a whiteboard.
package page

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// contentTypes are set explicitly rather than from the host's mime tables,
// which can map .js to text/plain.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// CSP keeps the page to its own origin: scripts, styles, images and
// connections (fetch, EventSource) may only go to the trace API.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type file struct {
	data []byte
	ct   string
}

// Handler serves the page: / is index.html, and /app.js, /app.css and
// /favicon.svg its assets. Anything else is 404; methods other than GET
// and HEAD are 405.
func Handler() http.Handler {
	files := map[string]file{}
	fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		files["/"+strings.TrimPrefix(p, "static/")] = file{data: data, ct: contentTypes[path.Ext(p)]}
		return nil
	})
	files["/"] = files["/index.html"]
	modTime := time.Now()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		f, ok := files[r.URL.Path]
		if !ok || f.data == nil {
			http.Error(w, "not found: the flow page is at /, the trace API at /api/", http.StatusNotFound)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ct)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", CSP)
		http.ServeContent(w, r, "", modTime, bytes.NewReader(f.data))
	})
}
