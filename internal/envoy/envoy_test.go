package envoy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/envoy"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/testutil"
)

const guid = "5b0a9e6c-9d4e-4a0c-7f1e-3c1d"

// fixture is an instance identity on disk, as the executor writes it.
type fixture struct {
	ca                *identity.CA
	cred              *identity.Credential
	dir               string
	certPath, keyPath string
	logs              *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, _, err := identity.New("test instance identity CA")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, dir: t.TempDir(), logs: &syncBuffer{}}
	f.cred = f.issue(t)
	f.certPath, f.keyPath, err = identity.WriteCredential(f.dir, "instance", f.cred)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("envoy logs:\n%s", f.logs.String())
		}
	})
	return f
}

func (f *fixture) issue(t *testing.T) *identity.Credential {
	t.Helper()
	cred, err := f.ca.IssueInstance(identity.InstanceRequest{
		InstanceGUID:       guid,
		IPs:                []net.IP{net.ParseIP("127.0.0.1")},
		OrganizationalUnit: []string{"app:a1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func (f *fixture) config(appAddr string) envoy.Config {
	return envoy.Config{
		Listeners: []envoy.Listener{{Name: "listener-8080-61001", Listen: "127.0.0.1:0", AppAddr: appAddr}},
		CertFile:  f.certPath, KeyFile: f.keyPath,
		AdminListen: "127.0.0.1:0",
		Logger:      slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// start runs a proxy in front of appAddr and stops it when the test ends.
func (f *fixture) start(t *testing.T, appAddr string, mutate func(*envoy.Config)) *envoy.Proxy {
	t.Helper()
	cfg := f.config(appAddr)
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := envoy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return p
}

// clientTLS verifies the envoy as the router does: the instance guid as
// SAN, chained to the instance identity CA.
func (f *fixture) clientTLS() *tls.Config {
	return &tls.Config{ServerName: guid, RootCAs: f.ca.Pool(), MinVersion: tls.VersionTLS12}
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func appServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the app: %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func hostPort(u string) string { return strings.TrimPrefix(u, "http://") }

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: content type %q", url, ct)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

func getText(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func clusters(t *testing.T, p *envoy.Proxy) []envoy.ClusterStats {
	var cs []envoy.ClusterStats
	getJSON(t, "http://"+p.AdminAddr()+"/clusters", &cs)
	return cs
}

func TestHTTPThroughTLSReachesAppWithInstanceIdentity(t *testing.T) {
	f := newFixture(t)
	app := appServer(t)
	p := f.start(t, hostPort(app.URL), nil)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: f.clientTLS()}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + p.Addrs()[0] + "/some/path")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from the app: GET /some/path" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	leaf := resp.TLS.PeerCertificates[0]
	if leaf.Subject.CommonName != guid || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != guid {
		t.Fatalf("presented CN %q DNS SANs %v, want the instance guid", leaf.Subject.CommonName, leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Fatalf("IP SANs %v", leaf.IPAddresses)
	}
	if resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("TLS version %x", resp.TLS.Version)
	}

	// ALPN as Diego offers it: h2 first, then http/1.1.
	cfg := f.clientTLS()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	if got := dialTLS(t, p.Addrs()[0], cfg).ConnectionState().NegotiatedProtocol; got != "h2" {
		t.Fatalf("ALPN chose %q, want h2", got)
	}
	cfg.NextProtos = []string{"http/1.1"}
	if got := dialTLS(t, p.Addrs()[0], cfg).ConnectionState().NegotiatedProtocol; got != "http/1.1" {
		t.Fatalf("ALPN chose %q, want http/1.1", got)
	}
	// TLS 1.1 is refused.
	old := f.clientTLS()
	old.MaxVersion = tls.VersionTLS11
	if c, err := tls.Dial("tcp", p.Addrs()[0], old); err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}

func TestWrongServerNameOrCAFailsVerification(t *testing.T) {
	f := newFixture(t)
	app := appServer(t)
	p := f.start(t, hostPort(app.URL), nil)

	cfg := f.clientTLS()
	cfg.ServerName = "another-instance-guid"
	_, err := tls.Dial("tcp", p.Addrs()[0], cfg)
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("a wrong ServerName gave %v, want a certificate verification error", err)
	}

	other, _, err := identity.New("another foundation")
	if err != nil {
		t.Fatal(err)
	}
	cfg = f.clientTLS()
	cfg.RootCAs = other.Pool()
	if _, err := tls.Dial("tcp", p.Addrs()[0], cfg); !errors.As(err, &verr) {
		t.Fatalf("an untrusted CA gave %v, want a certificate verification error", err)
	}
}

func TestKeepAliveTwoRequestsOneConnection(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	newConns := 0
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "path=%s", r.URL.Path)
	}))
	app.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			newConns++
			mu.Unlock()
		}
	}
	app.Start()
	t.Cleanup(app.Close)
	p := f.start(t, hostPort(app.URL), nil)

	c := dialTLS(t, p.Addrs()[0], f.clientTLS())
	br := bufio.NewReader(c)
	for _, path := range []string{"/one", "/two"} {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: myapp.apps.localhost\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "path="+path || resp.Close {
			t.Fatalf("%s: %d %q close=%v", path, resp.StatusCode, body, resp.Close)
		}
	}
	mu.Lock()
	n := newConns
	mu.Unlock()
	if n != 1 {
		t.Fatalf("the app saw %d connections, want 1 (keep-alive through the proxy)", n)
	}
	cs := clusters(t, p)
	if cs[0].TotalConnections != 1 || cs[0].ActiveConnections != 1 {
		t.Fatalf("clusters %+v, want 1 total and 1 active", cs)
	}
}

// echoApp echoes every byte as it arrives and, once the client has
// half-closed, writes "bye" and half-closes in turn.
func echoApp(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.Copy(c, c); err != nil {
					return
				}
				io.WriteString(c, "bye")
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c) // until the proxy closes
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestStreamingAndHalfClose(t *testing.T) {
	f := newFixture(t)
	p := f.start(t, echoApp(t), nil)

	c := dialTLS(t, p.Addrs()[0], f.clientTLS())
	sent := 0
	for i := range 5 {
		msg := strings.Repeat(fmt.Sprint(i), 1000*(i+1))
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if string(got) != msg {
			t.Fatalf("round %d: echo differs", i)
		}
		sent += len(msg)
	}
	// Half-close: the app sees EOF and answers after it.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading after the half-close: %v", err)
	}
	if string(rest) != "bye" {
		t.Fatalf("after the half-close got %q, want bye", rest)
	}
	c.Close()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		cs := clusters(t, p)
		if cs[0].BytesIn != int64(sent) || cs[0].BytesOut != int64(sent+3) || cs[0].ActiveConnections != 0 {
			return fmt.Errorf("clusters %+v, want bytes_in %d, bytes_out %d, none active", cs, sent, sent+3)
		}
		return nil
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestAppDownClosesAfterHandshake(t *testing.T) {
	f := newFixture(t)
	appAddr := freeAddr(t)
	p := f.start(t, appAddr, nil)

	c := dialTLS(t, p.Addrs()[0], f.clientTLS()) // the handshake succeeds
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	n, err := c.Read(make([]byte, 1))
	if err == nil || n != 0 {
		t.Fatalf("read %d bytes, err %v; want the connection closed", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the proxy kept the connection open: %v", err)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		cs := clusters(t, p)
		if cs[0].ConnectFailures != 1 || cs[0].TotalConnections != 1 || cs[0].AppAddress != appAddr {
			return fmt.Errorf("clusters %+v, want one connect failure to %s", cs, appAddr)
		}
		return nil
	})
	if !strings.Contains(f.logs.String(), `"msg":"envoy-upstream-connect-failed"`) {
		t.Fatalf("no envoy-upstream-connect-failed in the logs:\n%s", f.logs.String())
	}
}

// roundTrip sends a request over a fresh TLS connection and reads the answer.
func roundTrip(addr string, cfg *tls.Config) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /mtls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestClientCertificateRequiredWithClientCA(t *testing.T) {
	f := newFixture(t)
	app := appServer(t)
	caFile := filepath.Join(f.dir, "client-ca.crt")
	if err := os.WriteFile(caFile, f.ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	p := f.start(t, hostPort(app.URL), func(c *envoy.Config) { c.ClientCAFile = caFile })

	// No client certificate: TLS 1.3 reports it on the first read.
	if body, err := roundTrip(p.Addrs()[0], f.clientTLS()); err == nil {
		t.Fatalf("without a client certificate the app answered %q", body)
	}

	// A certificate from another CA is refused too.
	other, _, err := identity.New("another foundation")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.IssueComponent("gorouter.service.cf.internal", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.clientTLS()
	sc, _ := stranger.TLSCertificate()
	cfg.Certificates = []tls.Certificate{sc}
	if body, err := roundTrip(p.Addrs()[0], cfg); err == nil {
		t.Fatalf("with a foreign client certificate the app answered %q", body)
	}

	// The router's certificate from the trusted CA gets through.
	router, err := f.ca.IssueComponent("gorouter.service.cf.internal", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg = f.clientTLS()
	rc, _ := router.TLSCertificate()
	cfg.Certificates = []tls.Certificate{rc}
	body, err := roundTrip(p.Addrs()[0], cfg)
	if err != nil || body != "hello from the app: GET /mtls" {
		t.Fatalf("with the router's certificate: %q, %v", body, err)
	}

	// TLS 1.2 clients are checked during the handshake itself.
	cfg = f.clientTLS()
	cfg.MaxVersion = tls.VersionTLS12
	if c, err := tls.Dial("tcp", p.Addrs()[0], cfg); err == nil {
		c.Close()
		t.Fatal("a TLS 1.2 handshake without a client certificate succeeded")
	}
	var dump map[string]any
	getJSON(t, "http://"+p.AdminAddr()+"/config_dump", &dump)
	if dump["require_client_certificate"] != true {
		t.Fatalf("config_dump require_client_certificate = %v", dump["require_client_certificate"])
	}
}

func servedSerial(t *testing.T, addr string, cfg *tls.Config) *big.Int {
	t.Helper()
	c := dialTLS(t, addr, cfg)
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

func TestCertificateRotation(t *testing.T) {
	f := newFixture(t)
	app := appServer(t)
	p := f.start(t, hostPort(app.URL), nil)
	addr := p.Addrs()[0]

	if got := servedSerial(t, addr, f.clientTLS()); got.Cmp(f.cred.Leaf.SerialNumber) != 0 {
		t.Fatalf("serving serial %x, want %x", got, f.cred.Leaf.SerialNumber)
	}
	// A connection made before the rotation keeps working after it.
	before := dialTLS(t, addr, f.clientTLS())

	next := f.issue(t)
	if next.Leaf.SerialNumber.Cmp(f.cred.Leaf.SerialNumber) == 0 {
		t.Fatal("the CA issued the same serial twice")
	}
	if _, _, err := identity.WriteCredential(f.dir, "instance", next); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		c, err := tls.Dial("tcp", addr, f.clientTLS())
		if err != nil {
			return err
		}
		defer c.Close()
		if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(next.Leaf.SerialNumber) != 0 {
			return fmt.Errorf("new handshakes present serial %x, want %x", got, next.Leaf.SerialNumber)
		}
		return nil
	})
	if got := p.Certificate().Serial; got != next.Leaf.SerialNumber.Text(16) {
		t.Fatalf("config_dump serial %s, want %x", got, next.Leaf.SerialNumber)
	}
	if !strings.Contains(f.logs.String(), `"msg":"envoy-certificate-rotated"`) {
		t.Fatal("no envoy-certificate-rotated in the logs")
	}
	io.WriteString(before, "GET /still-here HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(before), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the connection made before the rotation: %v", err)
	}
	resp.Body.Close()

	// A broken file is refused and the current certificate stays.
	rejected := p.Stats()["sds.id-cert-and-key.update_rejected"] // a poll between the key and cert writes may have counted one
	if err := os.WriteFile(f.certPath, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if n := p.Stats()["sds.id-cert-and-key.update_rejected"]; n <= rejected {
			return fmt.Errorf("update_rejected = %d, want more than %d", n, rejected)
		}
		return nil
	})
	if got := servedSerial(t, addr, f.clientTLS()); got.Cmp(next.Leaf.SerialNumber) != 0 {
		t.Fatalf("after a broken file the serial is %x, want %x", got, next.Leaf.SerialNumber)
	}
}

func TestAdminEndpoints(t *testing.T) {
	f := newFixture(t)
	app := appServer(t)
	appAddr := hostPort(app.URL)
	p := f.start(t, appAddr, func(c *envoy.Config) {
		c.Listeners = append(c.Listeners, envoy.Listener{Listen: "127.0.0.1:0", AppAddr: appAddr}) // as Diego's 61443
	})
	admin := "http://" + p.AdminAddr()
	if _, err := roundTrip(p.Addrs()[1], f.clientTLS()); err != nil {
		t.Fatal(err)
	}

	var listeners []map[string]any
	getJSON(t, admin+"/listeners", &listeners)
	want := []map[string]any{
		{"name": "listener-8080-61001", "address": p.Addrs()[0], "app_address": appAddr},
		{"name": "listener-" + strings.Split(appAddr, ":")[1] + "-0", "address": p.Addrs()[1], "app_address": appAddr},
	}
	if fmt.Sprint(listeners) != fmt.Sprint(want) {
		t.Fatalf("/listeners = %v, want %v", listeners, want)
	}

	var cs []map[string]any
	getJSON(t, admin+"/clusters", &cs)
	if len(cs) != 1 {
		t.Fatalf("/clusters = %v, want one cluster for the one app address", cs)
	}
	for _, k := range []string{"name", "app_address", "active_connections", "total_connections", "connect_failures", "bytes_in", "bytes_out"} {
		if _, ok := cs[0][k]; !ok {
			t.Fatalf("/clusters lacks %q: %v", k, cs[0])
		}
	}
	if cs[0]["app_address"] != appAddr || cs[0]["total_connections"] != 1.0 || cs[0]["bytes_in"].(float64) == 0 || cs[0]["bytes_out"].(float64) == 0 {
		t.Fatalf("/clusters = %v", cs)
	}
	if !strings.HasPrefix(cs[0]["name"].(string), "service-cluster-") {
		t.Fatalf("cluster name %v", cs[0]["name"])
	}

	var dump struct {
		Listeners []map[string]any `json:"listeners"`
		Clusters  []map[string]any `json:"clusters"`
		Cert      map[string]any   `json:"certificate"`
	}
	getJSON(t, admin+"/config_dump", &dump)
	if len(dump.Listeners) != 2 || len(dump.Clusters) != 1 || dump.Clusters[0]["connect_timeout"] != "250ms" {
		t.Fatalf("/config_dump listeners %v clusters %v", dump.Listeners, dump.Clusters)
	}
	leaf := f.cred.Leaf
	wantCert := map[string]any{
		"subject_cn": guid,
		"dns_sans":   []any{guid},
		"ip_sans":    []any{"127.0.0.1"},
		"not_before": leaf.NotBefore.UTC().Format(time.RFC3339),
		"not_after":  leaf.NotAfter.UTC().Format(time.RFC3339),
		"serial":     leaf.SerialNumber.Text(16),
		"issuer_cn":  "test instance identity CA",
	}
	if fmt.Sprint(dump.Cert) != fmt.Sprint(wantCert) {
		t.Fatalf("/config_dump certificate = %v\nwant %v", dump.Cert, wantCert)
	}

	if code, body := getText(t, admin+"/ready"); code != 200 || body != "LIVE\n" {
		t.Fatalf("/ready = %d %q", code, body)
	}
	code, stats := getText(t, admin+"/stats")
	if code != 200 {
		t.Fatalf("/stats = %d", code)
	}
	cname := cs[0]["name"].(string)
	for _, line := range []string{
		"cluster." + cname + ".upstream_cx_total: 1\n",
		"cluster." + cname + ".upstream_cx_connect_fail: 0\n",
		"listener.listener-8080-61001.downstream_cx_total: 0\n",
		"sds.id-cert-and-key.update_success: 1\n",
		"server.live: 1\n",
	} {
		if !strings.Contains(stats, line) {
			t.Fatalf("/stats lacks %q:\n%s", line, stats)
		}
	}
	resp, err := http.Post(admin+"/clusters", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /clusters = %d", resp.StatusCode)
	}
}

// gatedApp answers each connection with "first\n", then waits for release
// (or the test's end) and answers "second\n" and closes.
func gatedApp(t *testing.T, release <-chan struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.WriteString(c, "first\n")
				select {
				case <-release:
					io.WriteString(c, "second\n")
				case <-done:
				}
			}()
		}
	}()
	t.Cleanup(func() {
		close(done)
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestStopDrainsOpenConnections(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	p := f.start(t, gatedApp(t, release), func(c *envoy.Config) { c.DrainTimeout = 10 * time.Second })
	addr, admin := p.Addrs()[0], "http://"+p.AdminAddr()

	c := dialTLS(t, addr, f.clientTLS())
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(context.Background()) }()

	// Draining: no new connections, the admin still answers and says so.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			nc.Close()
			return errors.New("the listener still accepts")
		}
		return nil
	})
	if code, body := getText(t, admin+"/ready"); code != http.StatusServiceUnavailable || body != "DRAINING\n" {
		t.Fatalf("/ready while draining = %d %q", code, body)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) with a connection open", err)
	default:
	}

	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("the draining connection ended with %q, %v", rest, err)
	}
	c.Close() // the app half-closed; the client closes its side, as the router does
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return after the last connection ended")
	}
	if nc, err := net.DialTimeout("tcp", strings.TrimPrefix(admin, "http://"), time.Second); err == nil {
		nc.Close()
		t.Fatal("the admin interface still listens after Stop")
	}
	if !strings.Contains(f.logs.String(), `"msg":"envoy-draining"`) || !strings.Contains(f.logs.String(), `"msg":"envoy-stopped"`) {
		t.Fatal("no envoy-draining and envoy-stopped in the logs")
	}
}

func TestStopClosesConnectionsAfterDrainTimeout(t *testing.T) {
	f := newFixture(t)
	p := f.start(t, gatedApp(t, nil), func(c *envoy.Config) { c.DrainTimeout = 200 * time.Millisecond })

	c := dialTLS(t, p.Addrs()[0], f.clientTLS())
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Stop took %v with a 200ms drain timeout", d)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the connection outlived Stop")
	}

	// A context ending first cuts the drain short and says so.
	p2 := f.start(t, gatedApp(t, nil), func(c *envoy.Config) { c.DrainTimeout = time.Minute })
	c2 := dialTLS(t, p2.Addrs()[0], f.clientTLS())
	if _, err := bufio.NewReader(c2).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p2.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop with an ended context = %v", err)
	}
}

func TestNoGoroutineLeftAfterStop(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		f := newFixture(t)
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		defer app.Close()
		cfg := f.config(hostPort(app.URL))
		cfg.DrainTimeout = 300 * time.Millisecond // the idle connection below never ends by itself
		p, err := envoy.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		addrs, admin := p.Addrs(), p.AdminAddr()
		// Traffic of every kind: a finished request, an idle open
		// connection, a half-done handshake, and an admin request.
		if _, err := roundTrip(addrs[0], f.clientTLS()); err != nil {
			t.Fatal(err)
		}
		idle, err := tls.Dial("tcp", addrs[0], f.clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		raw, err := net.Dial("tcp", addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		getText(t, "http://"+admin+"/stats")

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		for _, a := range append(addrs, admin) {
			if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
				c.Close()
				t.Fatalf("%s still listens after Stop", a)
			}
		}
		if err := p.Start(); err == nil {
			t.Fatal("a stopped proxy started again")
		}
		if err := p.Stop(ctx); err != nil {
			t.Fatalf("a second Stop: %v", err)
		}
	}()
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			return fmt.Errorf("%d goroutines, %d before:\n%s", n, before, buf)
		}
		return nil
	})
}

func TestNewValidatesConfig(t *testing.T) {
	f := newFixture(t)
	base := func() envoy.Config { return f.config("127.0.0.1:8080") }
	cases := []struct {
		name   string
		mutate func(*envoy.Config)
		want   string
	}{
		{"no listeners", func(c *envoy.Config) { c.Listeners = nil }, "Listeners"},
		{"bad listen", func(c *envoy.Config) { c.Listeners[0].Listen = "61001" }, "Listeners[0].Listen"},
		{"bad app", func(c *envoy.Config) { c.Listeners[0].AppAddr = "127.0.0.1:0" }, "Listeners[0].AppAddr"},
		{"duplicate name", func(c *envoy.Config) {
			c.Listeners = append(c.Listeners, envoy.Listener{Name: c.Listeners[0].Name, Listen: "127.0.0.1:0", AppAddr: "127.0.0.1:8080"})
		}, "Listeners[1].Name"},
		{"no cert", func(c *envoy.Config) { c.CertFile = "" }, "CertFile"},
		{"no key", func(c *envoy.Config) { c.KeyFile = "" }, "KeyFile"},
		{"missing cert", func(c *envoy.Config) { c.CertFile = filepath.Join(f.dir, "nope.crt") }, "CertFile"},
		{"key of another cert", func(c *envoy.Config) {
			other := f.issue(t)
			_, kp, err := identity.WriteCredential(f.dir, "other", other)
			if err != nil {
				t.Fatal(err)
			}
			c.KeyFile = kp
		}, "CertFile/KeyFile"},
		{"bad client CA", func(c *envoy.Config) { c.ClientCAFile = f.keyPath }, "ClientCAFile"},
		{"bad admin", func(c *envoy.Config) { c.AdminListen = "localhost" }, "AdminListen"},
		{"negative drain", func(c *envoy.Config) { c.DrainTimeout = -time.Second }, "DrainTimeout"},
		{"negative connect", func(c *envoy.Config) { c.ConnectTimeout = -time.Second }, "ConnectTimeout"},
	}
	for _, tc := range cases {
		cfg := base()
		tc.mutate(&cfg)
		_, err := envoy.New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.want)
		}
	}
}

func TestStartErrorNamesTheAddress(t *testing.T) {
	f := newFixture(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := f.config("127.0.0.1:8080")
	cfg.Listeners = append(cfg.Listeners, envoy.Listener{Listen: busy.Addr().String(), AppAddr: "127.0.0.1:8080"})
	p, err := envoy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Start()
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("Start = %v, want an error naming %s", err, busy.Addr())
	}
	if p.Addrs() != nil {
		t.Fatalf("Addrs after a failed Start = %v", p.Addrs())
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestStopClosesIdleKeepAliveConnections: a router keeps keep-alive
// connections to every instance; a stopping sidecar must not wait its whole
// drain timeout for them when no request is in progress on them.
func TestStopClosesIdleKeepAliveConnections(t *testing.T) {
	f := newFixture(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer app.Close()
	p := f.start(t, app.Listener.Addr().String(), func(c *envoy.Config) { c.DrainTimeout = time.Minute })
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: f.clientTLS()}}
	resp, err := client.Get("https://" + p.Addrs()[0] + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close() // the connection stays in the client's idle pool
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop waited for an idle keep-alive connection (drain timeout 1 min)")
	}
}
