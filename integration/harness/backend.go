package harness

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/testutil"
)

// Backend is an app instance in the test process: an httptest server that
// answers with its name (in the body and in X-Backend) and records the
// requests its handler saw.
type Backend struct {
	Name string
	Srv  *httptest.Server
	Hits atomic.Int64

	mu   sync.Mutex
	seen []SeenRequest
}

// SeenRequest is a request as a Backend's handler saw it.
type SeenRequest struct {
	Method string
	Host   string
	Path   string
	Header http.Header
	Body   []byte // read before the handler runs, except on an Upgrade
}

// BackendOptions change a Backend.
type BackendOptions struct {
	Cert    *tls.Certificate // serve TLS with this certificate
	Handler http.HandlerFunc // replaces the name-echo reply; the request is recorded first
	Addr    string           // listen here (default 127.0.0.1:0)
}

// NewBackend starts a backend named name; it is closed when the test ends.
func NewBackend(t testing.TB, name string, o BackendOptions) *Backend {
	t.Helper()
	b := &Backend{Name: name}
	h := func(w http.ResponseWriter, r *http.Request) {
		b.Hits.Add(1)
		var body []byte
		if r.Header.Get("Upgrade") == "" {
			body, _ = io.ReadAll(r.Body)
		}
		b.mu.Lock()
		b.seen = append(b.seen, SeenRequest{Method: r.Method, Host: r.Host, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		b.mu.Unlock()
		if o.Handler != nil {
			o.Handler(w, r)
			return
		}
		w.Header().Set("X-Backend", name)
		io.WriteString(w, name)
	}
	b.Srv = httptest.NewUnstartedServer(http.HandlerFunc(h))
	if o.Addr != "" {
		b.Srv.Listener.Close()
		var ln net.Listener
		var err error
		// The address was freed a moment ago; the kernel may need a moment.
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			ln, err = net.Listen("tcp", o.Addr)
			return err
		})
		b.Srv.Listener = ln
	}
	// TLS handshake failures are what several tests provoke; keep them quiet.
	b.Srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if o.Cert != nil {
		b.Srv.TLS = &tls.Config{Certificates: []tls.Certificate{*o.Cert}}
		b.Srv.StartTLS()
	} else {
		b.Srv.Start()
	}
	t.Cleanup(b.Srv.Close)
	return b
}

// Port is the backend's loopback port.
func (b *Backend) Port() uint16 { return uint16(b.Srv.Listener.Addr().(*net.TCPAddr).Port) }

// Addr is the backend's host:port.
func (b *Backend) Addr() string { return b.Srv.Listener.Addr().String() }

// Requests returns copies of what the handler has seen so far.
func (b *Backend) Requests() []SeenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]SeenRequest(nil), b.seen...)
}

// Last is the last request the handler saw (zero before any).
func (b *Backend) Last() SeenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		return SeenRequest{}
	}
	return b.seen[len(b.seen)-1]
}

// HitsFor counts the requests the handler saw for host.
func (b *Backend) HitsFor(host string) int {
	return b.count(func(r SeenRequest) bool { return r.Host == host })
}

// HitsForPath counts the requests the handler saw for path.
func (b *Backend) HitsForPath(path string) int {
	return b.count(func(r SeenRequest) bool { return r.Path == path })
}

func (b *Backend) count(match func(SeenRequest) bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, r := range b.seen {
		if match(r) {
			n++
		}
	}
	return n
}
