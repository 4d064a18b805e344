package cc

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/testutil"
)

// TestListeners runs a CC the way minicf runs it: both listeners, the
// internal one behind mutual TLS with the foundation CA, the log
// subscription and the sync loop.
func TestListeners(t *testing.T) {
	ca, _, err := identity.New("test foundation CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fb, bus := newFakeBBS(), &fakeBus{}
	c, err := New(Config{Listen: "127.0.0.1:0", InternalListen: "127.0.0.1:0", StateDir: dir, SyncInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, fb, bus, ca)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(context.Background())
	if err := c.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
	if _, err := filepath.Glob(filepath.Join(dir, "cc.db")); err != nil {
		t.Error(err)
	}

	resp, err := http.Get(c.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /: %d", resp.StatusCode)
	}
	if want := "https://" + c.InternalAddr(); c.InternalURL() != want {
		t.Errorf("internal URL %q, want %q", c.InternalURL(), want)
	}

	// The internal API wants a client certificate of the foundation.
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	if resp, err := anon.Get(c.InternalURL() + "/internal/v4/packages/x/download"); err == nil {
		resp.Body.Close()
		t.Errorf("the internal API answered a client without a certificate: %d", resp.StatusCode)
	}
	cred, err := ca.IssueComponent("rep-cell-1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, _ := ca.ClientTLS(cred)
	cell := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS}}
	resp, err = cell.Get(c.InternalURL() + "/internal/v4/packages/x/download")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(body), "Package not found") {
		t.Errorf("internal API with a cell's certificate: %d %s", resp.StatusCode, body)
	}

	// The sync runs at once and then every SyncInterval.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		fb.mu.Lock()
		defer fb.mu.Unlock()
		n := 0
		for _, call := range fb.calls {
			if call == "upsert-domain cf-apps 2m0s" {
				n++
			}
		}
		if n < 2 {
			return errorf("%d syncs so far", n)
		}
		return nil
	})
	bus.mu.Lock()
	subjects := bus.subjects
	bus.mu.Unlock()
	if len(subjects) != 1 || subjects[0] != "minicf.logs.>" {
		t.Errorf("subscribed to %v", subjects)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Errorf("stop: %v", err)
	}
	if _, err := http.Get(c.URL() + "/"); err == nil {
		t.Error("the API still answers after Stop")
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Errorf("a second stop: %v", err)
	}
}
