package identity

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreateKeepsTheCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	ca1, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(ca1.CertPEM()) != string(ca2.CertPEM()) {
		t.Fatal("a second LoadOrCreate made a new CA")
	}
	if fi, _ := os.Stat(filepath.Join(dir, CAKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v, want 0600", fi.Mode().Perm())
	}
	os.Remove(filepath.Join(dir, CAKeyFile))
	if _, err := LoadOrCreate(dir); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("a CA without its key was accepted or replaced: %v", err)
	}
}

func TestInstanceCertificate(t *testing.T) {
	ca, _, err := New("test CA")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := ca.IssueInstance(InstanceRequest{
		InstanceGUID: "a0d2b217-fa7d-4ac1-65a2-7b19", IPs: []net.IP{net.ParseIP("10.244.1.2")},
		OrganizationalUnit: []string{"app:app-guid"}, Validity: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	leaf := cred.Leaf
	if leaf.Subject.CommonName != "a0d2b217-fa7d-4ac1-65a2-7b19" || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != leaf.Subject.CommonName {
		t.Fatalf("CN %q DNS %v", leaf.Subject.CommonName, leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("10.244.1.2")) || leaf.Subject.OrganizationalUnit[0] != "app:app-guid" {
		t.Fatalf("IPs %v OU %v", leaf.IPAddresses, leaf.Subject.OrganizationalUnit)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "a0d2b217-fa7d-4ac1-65a2-7b19"}); err != nil {
		t.Fatalf("does not verify for its guid: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "another-instance"}); err == nil {
		t.Fatal("verifies for another instance's guid")
	}
	if got := RenewAt(leaf); !got.Before(leaf.NotAfter) || got.Before(leaf.NotAfter.Add(-time.Hour/8-time.Minute)) {
		t.Fatalf("RenewAt %v for a cert ending %v", got, leaf.NotAfter)
	}
	if !strings.Contains(string(cred.CertPEM), string(ca.CertPEM())) {
		t.Fatal("the chain does not end with the CA, as Diego writes it")
	}
}

func TestMutualTLS(t *testing.T) {
	ca, _, _ := New("ca")
	other, _, _ := New("other")
	serverCred, _ := ca.IssueComponent("bbs", []string{"127.0.0.1"}, 0)
	clientCred, _ := ca.IssueComponent("rep-cell-1", nil, 0)
	strangerCred, _ := other.IssueComponent("stranger", nil, 0)

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	var err error
	srv.TLS, err = ca.ServerTLS(serverCred)
	if err != nil {
		t.Fatal(err)
	}
	srv.StartTLS()
	defer srv.Close()

	get := func(cred *Credential) (string, error) {
		cfg, _ := ca.ClientTLS(cred)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	if who, err := get(clientCred); err != nil || who != "rep-cell-1" {
		t.Fatalf("a client of the foundation: %q %v", who, err)
	}
	if _, err := get(strangerCred); err == nil {
		t.Fatal("a client certified by another CA was let in")
	}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	if _, err := noCert.Get(srv.URL); err == nil {
		t.Fatal("a client without a certificate was let in")
	}
}
