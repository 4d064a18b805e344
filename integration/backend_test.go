package integration

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
)

// backend is an app instance: an httptest server in the test process that
// answers with its own name and counts the requests its handler saw.
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	method string
	host   string
	header http.Header
	body   []byte
}

type backendOpts struct {
	cert    *tls.Certificate // serve TLS with this certificate
	handler http.HandlerFunc // replaces the name-echo reply; the request is recorded first
}

func newBackend(t testing.TB, name string) *backend {
	return newBackendWith(t, name, backendOpts{})
}

func newTLSBackend(t testing.TB, name string, cert tls.Certificate) *backend {
	return newBackendWith(t, name, backendOpts{cert: &cert})
}

func newBackendWith(t testing.TB, name string, o backendOpts) *backend {
	t.Helper()
	b := &backend{name: name}
	h := func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		var body []byte
		if r.Header.Get("Upgrade") == "" {
			body, _ = io.ReadAll(r.Body)
		}
		b.mu.Lock()
		b.seen = append(b.seen, seenRequest{method: r.Method, host: r.Host, header: r.Header.Clone(), body: body})
		b.mu.Unlock()
		if o.handler != nil {
			o.handler(w, r)
			return
		}
		w.Header().Set("X-Backend", name)
		io.WriteString(w, name)
	}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(h))
	// TLS handshake failures are what several tests provoke; keep them quiet.
	b.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if o.cert != nil {
		b.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*o.cert}}
		b.srv.StartTLS()
	} else {
		b.srv.Start()
	}
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) port() uint16 { return uint16(b.srv.Listener.Addr().(*net.TCPAddr).Port) }

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// requests returns copies of what the handler has seen so far.
func (b *backend) requests() []seenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seenRequest(nil), b.seen...)
}

func (b *backend) last() seenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		return seenRequest{}
	}
	return b.seen[len(b.seen)-1]
}

// reg is a plaintext registration of b for uri.
func (b *backend) reg(uri string) registryMessage {
	return registryMessage{Host: "127.0.0.1", Port: b.port(), URIs: []string{uri},
		App: "app-" + b.name, PrivateInstanceID: "instance-" + b.name, PrivateInstanceIndex: "0"}
}

// tlsReg is a registration of b on its TLS port, with the SAN the router must
// find in b's certificate.
func (b *backend) tlsReg(uri, san string) registryMessage {
	return registryMessage{Host: "127.0.0.1", TLSPort: b.port(), URIs: []string{uri},
		App: "app-" + b.name, PrivateInstanceID: san, PrivateInstanceIndex: "0", ServerCertDomainSAN: san}
}
