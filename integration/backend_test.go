package integration

import (
	"crypto/tls"
	"testing"

	"github.com/minicf/minicf/integration/harness"
)

// backend is an app instance: a harness.Backend, registered under its own
// name.
type backend struct{ *harness.Backend }

func newBackend(t testing.TB, name string) *backend {
	return newBackendWith(t, name, harness.BackendOptions{})
}

func newTLSBackend(t testing.TB, name string, cert tls.Certificate) *backend {
	return newBackendWith(t, name, harness.BackendOptions{Cert: &cert})
}

func newBackendWith(t testing.TB, name string, o harness.BackendOptions) *backend {
	t.Helper()
	return &backend{harness.NewBackend(t, name, o)}
}

// reg is a plaintext registration of b for uri.
func (b *backend) reg(uri string) harness.RegistryMessage {
	return harness.RegistryMessage{Host: "127.0.0.1", Port: b.Port(), URIs: []string{uri},
		App: "app-" + b.Name, PrivateInstanceID: "instance-" + b.Name, PrivateInstanceIndex: "0"}
}

// tlsReg is a registration of b on its TLS port, with the SAN the router must
// find in b's certificate.
func (b *backend) tlsReg(uri, san string) harness.RegistryMessage {
	return harness.RegistryMessage{Host: "127.0.0.1", TLSPort: b.Port(), URIs: []string{uri},
		App: "app-" + b.Name, PrivateInstanceID: san, PrivateInstanceIndex: "0", ServerCertDomainSAN: san}
}
