// Package identity is minicf's instance-identity CA, as Diego's executor
// and credential manager use it: one foundation CA, created once and kept
// in the state directory; short-lived instance certificates whose CN and DNS
// SAN are the instance guid and whose IP SAN is the instance's address (the
// identity the router checks on every connection); and component
// certificates for mutual TLS between the BBS, the auctioneer and the reps.
package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// File names of the CA in the state directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// DefaultInstanceValidity is Diego's default instance identity lifetime.
const DefaultInstanceValidity = 24 * time.Hour

// CA signs instance and component certificates.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	pool    *x509.CertPool
	now     func() time.Time
	mu      sync.Mutex
}

// LoadOrCreate reads the CA from dir, or creates it there (0700 directory,
// 0600 key) when there is none. A half-written CA (one file of two) is an
// error rather than silently replaced: certificates signed by it may be in use.
func LoadOrCreate(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		return Parse(certPEM, keyPEM)
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return nil, fmt.Errorf("cannot read the foundation CA: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return nil, fmt.Errorf("cannot read the foundation CA key: %w", keyErr)
	default:
		return nil, fmt.Errorf("the foundation CA in %s is incomplete (one of %s and %s is missing); remove both to make a new one", dir, CACertFile, CAKeyFile)
	}
	ca, keyPEM, err := New("minicf instance identity CA")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the state directory: %w", err)
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, ca.certPEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// New makes a fresh CA in memory and returns its key as PEM too.
func New(commonName string) (*CA, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"minicf"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	ca, err := Parse(certPEM, keyPEM)
	return ca, keyPEM, err
}

// Parse builds a CA from PEM.
func Parse(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("the CA certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the CA certificate cannot be parsed: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("the CA certificate is not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("the CA key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the CA key cannot be parsed: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("the CA key cannot sign")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, key: signer, certPEM: certPEM, pool: pool, now: time.Now}, nil
}

// CertPEM is the CA certificate, for anyone who must trust it.
func (c *CA) CertPEM() []byte { return c.certPEM }

// Pool is a pool holding only the CA.
func (c *CA) Pool() *x509.CertPool { return c.pool }

// Credential is an issued certificate chain (leaf, then CA) and its key.
type Credential struct {
	CertPEM []byte // leaf followed by the CA, as Diego writes it
	KeyPEM  []byte
	Leaf    *x509.Certificate
}

// TLSCertificate turns the credential into a tls.Certificate.
func (c *Credential) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(c.CertPEM, c.KeyPEM)
}

// InstanceRequest describes an app instance to certify.
type InstanceRequest struct {
	InstanceGUID       string
	IPs                []net.IP // the instance address (IP SAN)
	OrganizationalUnit []string // organization:<g>, space:<g>, app:<g>
	Validity           time.Duration
}

// IssueInstance makes an instance identity certificate: CN and DNS SAN are
// the instance guid, IP SAN the instance address, usable for server and
// client auth, signed by the CA.
func (c *CA) IssueInstance(r InstanceRequest) (*Credential, error) {
	if r.InstanceGUID == "" {
		return nil, errors.New("an instance certificate needs an instance guid")
	}
	if r.Validity <= 0 {
		r.Validity = DefaultInstanceValidity
	}
	return c.issue(pkix.Name{CommonName: r.InstanceGUID, OrganizationalUnit: r.OrganizationalUnit},
		[]string{r.InstanceGUID}, r.IPs, r.Validity)
}

// IssueComponent makes a certificate for a component (bbs, auctioneer,
// rep-<cell>, cfdot, router), valid for the given host names and IPs, usable
// as both server and client in mutual TLS.
func (c *CA) IssueComponent(name string, hosts []string, validity time.Duration) (*Credential, error) {
	if validity <= 0 {
		validity = 365 * 24 * time.Hour
	}
	var dns []string
	var ips []net.IP
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			dns = append(dns, h)
		}
	}
	dns = append(dns, name)
	return c.issue(pkix.Name{CommonName: name, Organization: []string{"minicf"}}, dns, ips, validity)
}

func (c *CA) issue(subject pkix.Name, dns []string, ips []net.IP, validity time.Duration) (*Credential, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := c.now()
	notAfter := now.Add(validity)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    now.Add(-5 * time.Minute), // clocks of two processes on one host still differ a little
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	c.mu.Lock()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), c.certPEM...)
	return &Credential{CertPEM: certPEM, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), Leaf: leaf}, nil
}

// RenewAt is when a certificate of this validity should be replaced, with
// Diego's rule: 30 minutes before expiry for long-lived ones, an eighth of
// the validity before expiry for short ones.
func RenewAt(leaf *x509.Certificate) time.Time {
	validity := leaf.NotAfter.Sub(leaf.NotBefore)
	if validity > 4*time.Hour {
		return leaf.NotAfter.Add(-30 * time.Minute)
	}
	return leaf.NotAfter.Add(-validity / 8)
}

// ServerTLS is a server config for mutual TLS: clients must present a
// certificate signed by this CA.
func (c *CA) ServerTLS(cred *Credential) (*tls.Config, error) {
	cert, err := cred.TLSCertificate()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    c.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// ClientTLS is a client config for mutual TLS: it presents cred and trusts
// only servers certified by this CA.
func (c *CA) ClientTLS(cred *Credential) (*tls.Config, error) {
	cert, err := cred.TLSCertificate()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      c.pool,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// WriteCredential writes cred as name.crt and name.key (0600) into dir.
func WriteCredential(dir, name string, cred *Credential) (certPath, keyPath string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := writeFileAtomic(keyPath, cred.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(certPath, cred.CertPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// writeFileAtomic writes through a temporary file and a rename, so a reader
// (the envoy watching its certificate) never sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}
