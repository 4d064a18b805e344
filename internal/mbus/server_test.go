package mbus

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNewServerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  ServerConfig
		want string
	}{
		{"no user", ServerConfig{Password: "p"}, "user and a password"},
		{"no password", ServerConfig{User: "u"}, "user and a password"},
		{"negative port", ServerConfig{User: "u", Password: "p", Port: -1}, "port -1"},
		{"port too big", ServerConfig{User: "u", Password: "p", Port: 65536}, "port 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewServer(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewServer(%+v) = %v, want an error mentioning %q", tc.cfg, err, tc.want)
			}
		})
	}
}

func TestServerAuthentication(t *testing.T) {
	t.Parallel()
	log, buf := newTestLogger()
	s, err := NewServer(ServerConfig{User: testUser, Password: testPassword, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != "" || s.URL() != "" {
		t.Fatalf("before Start: Addr=%q URL=%q, want both empty", s.Addr(), s.URL())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.URL() != "nats://"+s.Addr() {
		t.Fatalf("Addr=%q URL=%q", s.Addr(), s.URL())
	}
	if n := buf.count("nats-server-started"); n != 1 {
		t.Fatalf("nats-server-started logged %d times, want 1:\n%s", n, buf)
	}
	if !strings.Contains(buf.String(), "addr="+s.Addr()) {
		t.Fatalf("start log does not name the address %s:\n%s", s.Addr(), buf)
	}

	const wrong = "wrong-password"
	_, err = Connect(ClientConfig{URLs: []string{s.URL()}, User: testUser, Password: wrong, ConnectAttempts: 1, Logger: discardLogger()})
	if err == nil {
		t.Fatal("Connect with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), wrong) {
		t.Fatalf("error shows the password: %v", err)
	}
	if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("error does not say why: %v", err)
	}

	_, err = Connect(ClientConfig{URLs: []string{s.URL()}, ConnectAttempts: 1, Logger: discardLogger()})
	if err == nil {
		t.Fatal("Connect without credentials succeeded")
	}

	c, err := Connect(ClientConfig{URLs: []string{s.URL()}, User: testUser, Password: testPassword, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("Connect with the right password: %v", err)
	}
	c.Close()

	// Credentials embedded in the URL work as well as UserInfo.
	u := "nats://" + testUser + ":" + testPassword + "@" + s.Addr()
	c, err = Connect(ClientConfig{URLs: []string{u}, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("Connect with credentials in the URL: %v", err)
	}
	c.Close()

	if strings.Contains(buf.String(), testPassword) {
		t.Fatalf("server log shows the password:\n%s", buf)
	}
}

func TestServerStopIsIdempotent(t *testing.T) {
	t.Parallel()
	never, err := NewServer(ServerConfig{User: "u", Password: "p", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	never.Stop()
	never.Stop()
	if err := never.Start(); err == nil {
		t.Fatal("Start after Stop succeeded")
	}

	s := startServer(t, 0)
	if err := s.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	addr := s.Addr()
	s.Stop()
	s.Stop()
	// Stop waits for the listener to close, so the port is free at once.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still busy after Stop: %v", err)
	}
	l.Close()
}

func TestServerPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	s, err := NewServer(ServerConfig{Port: port, User: "u", Password: "p", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	start := time.Now()
	err = s.Start()
	if err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	want := "127.0.0.1:" + strconv.Itoa(port)
	t.Logf("busy port: %v", err)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
	// A bind failure is known at once; it must not wait for the ready timeout.
	if d := time.Since(start); d > serverReadyTimeout/2 {
		t.Fatalf("Start took %s to report a busy port", d)
	}
}
