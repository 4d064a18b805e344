package faults

import (
	"testing"

	"github.com/minicf/minicf/integration/harness"
)

// backend is an app instance in the test process: a harness.Backend,
// registered under the route's name.
type backend struct{ *harness.Backend }

func newBackend(t testing.TB, name string, o harness.BackendOptions) *backend {
	t.Helper()
	return &backend{harness.NewBackend(t, name, o)}
}

// reg is a plaintext registration of b for uri.
func (b *backend) reg(uri, instance string) harness.RegistryMessage {
	return harness.RegistryMessage{Host: "127.0.0.1", Port: b.Port(), URIs: []string{uri},
		App: "app-" + uri, PrivateInstanceID: instance, PrivateInstanceIndex: "0"}
}

// tlsReg is a registration of b on its TLS port, with the SAN the router
// must find in b's certificate.
func (b *backend) tlsReg(uri, san string) harness.RegistryMessage {
	return harness.RegistryMessage{Host: "127.0.0.1", TLSPort: b.Port(), URIs: []string{uri},
		App: "app-" + uri, PrivateInstanceID: san, PrivateInstanceIndex: "0", ServerCertDomainSAN: san}
}
