package router

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/mbus"
)

// discardWriter is the least a ResponseWriter can be, so that the
// benchmarks below count the proxy's own work and allocations.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Flush()                      {}
func (w *discardWriter) reset()                      { clear(w.h); w.status = 0 }

// benchProxy is a router (built with New, as in production, with an access
// log and per-app RTR lines) whose table holds routes routes, one of them,
// bench.apps.localhost, pointing at a real HTTP backend on loopback.
func benchProxy(b *testing.B, routes int) *Proxy {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("hello from the backend\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })

	cfg := DefaultFileConfig()
	rt, err := New(newFakeBus(), Options{
		Config:    cfg,
		AccessLog: io.Discard,
		AppLogs:   func(string, []byte) {},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.access.Close() })
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	now := time.Now()
	rt.reg.Register(&mbus.RegistryMessage{Host: host, Port: uint16(p), URIs: []string{"bench.apps.localhost"},
		App: "app-guid", PrivateInstanceID: "instance-guid", PrivateInstanceIndex: "0"}, now)
	for i := 1; i < routes; i++ {
		rt.reg.Register(&mbus.RegistryMessage{Host: "10.0.0.1", Port: uint16(1000 + i%60000),
			URIs: []string{"r" + strconv.Itoa(i) + ".apps.localhost"}}, now)
	}
	return rt.proxy
}

func benchmarkProxy(b *testing.B, routes int) {
	p := benchProxy(b, routes)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: make(http.Header)}
		for pb.Next() {
			r, _ := http.NewRequest(http.MethodGet, "http://bench.apps.localhost/", nil)
			r.RequestURI = "/"
			r.RemoteAddr = "127.0.0.1:50000"
			w.reset()
			p.ServeHTTP(w, r)
			if w.status != http.StatusOK {
				b.Fatalf("status %d", w.status)
			}
		}
	})
}

// The whole proxy path (lookup, pick, pooled backend connection, headers,
// response copy, access log, metrics) against a loopback backend.
func BenchmarkProxy1Route(b *testing.B)     { benchmarkProxy(b, 1) }
func BenchmarkProxy100kRoutes(b *testing.B) { benchmarkProxy(b, 100_000) }
