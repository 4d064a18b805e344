package mbus

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test to share, since
// nats.go calls back on its own goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count reports how many log lines carry the event name as their message.
func (b *syncBuffer) count(event string) int {
	return strings.Count(b.String(), "msg="+event+" ") + strings.Count(b.String(), "msg="+event+"\n")
}

func newTestLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func discardLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

const (
	testUser     = "nats"
	testPassword = "s3cret-nats-password"
)

// startServer starts an authenticated server on port (0 for any) and stops
// it when the test ends.
func startServer(t *testing.T, port int) *Server {
	t.Helper()
	s, err := NewServer(ServerConfig{Port: port, User: testUser, Password: testPassword, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// connect dials s with the right credentials and closes the client when the
// test ends.
func connect(t *testing.T, s *Server, cfg ClientConfig) *Client {
	t.Helper()
	cfg.URLs = []string{s.URL()}
	if cfg.User == "" {
		cfg.User, cfg.Password = testUser, testPassword
	}
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	c, err := Connect(cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}
