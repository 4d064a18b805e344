package auctioneer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/testutil"
)

func TestMalformedAndOversizedBodiesGetTypedErrors(t *testing.T) {
	b, reps := &fakeBBS{}, newFakeReps()
	h := startHarness(t, Config{}, b, reps)
	tests := []struct {
		name       string
		method     string
		path       string
		body       []byte
		wantStatus int
		wantType   string
		wantInMsg  string
	}{
		{"truncated JSON", http.MethodPost, PathLRPs, []byte(`[{"process_guid":`), 400, bbs.ErrTypeInvalidRequest, "JSON list"},
		{"not JSON", http.MethodPost, PathLRPs, []byte(`hello`), 400, bbs.ErrTypeInvalidRequest, "JSON list"},
		{"an object, not a list", http.MethodPost, PathLRPs, []byte(`{"process_guid":"web"}`), 400, bbs.ErrTypeInvalidRequest, "JSON list"},
		{"trailing garbage", http.MethodPost, PathLRPs, []byte(`[] []`), 400, bbs.ErrTypeInvalidRequest, "JSON list"},
		{"empty body", http.MethodPost, PathLRPs, nil, 400, bbs.ErrTypeInvalidRequest, "JSON list"},
		{"no process guid", http.MethodPost, PathLRPs, []byte(`[{"domain":"cf-apps","indices":[0]}]`), 400, bbs.ErrTypeInvalidRequest, "process_guid"},
		{"no domain", http.MethodPost, PathLRPs, []byte(`[{"process_guid":"web","indices":[0]}]`), 400, bbs.ErrTypeInvalidRequest, "domain"},
		{"no indices", http.MethodPost, PathLRPs, []byte(`[{"process_guid":"web","domain":"cf-apps"}]`), 400, bbs.ErrTypeInvalidRequest, "indices"},
		{"a negative index", http.MethodPost, PathLRPs, []byte(`[{"process_guid":"web","domain":"cf-apps","indices":[-1]}]`), 400, bbs.ErrTypeInvalidRequest, "index -1"},
		{"negative memory", http.MethodPost, PathLRPs, []byte(`[{"process_guid":"web","domain":"cf-apps","indices":[0],"resource":{"memory_mb":-1}}]`), 400, bbs.ErrTypeInvalidRequest, "negative"},
		{"oversized", http.MethodPost, PathLRPs, append(append([]byte(`[{"process_guid":"`), bytes.Repeat([]byte("a"), MaxRequestBytes)...), `"}]`...), 413, bbs.ErrTypeRequestTooLarge, "larger than"},
		{"GET", http.MethodGet, PathLRPs, nil, 405, bbs.ErrTypeInvalidRequest, "POST"},
		{"unknown path", http.MethodPost, "/v1/nothing", []byte(`[]`), 404, bbs.ErrTypeResourceNotFound, "/v1/nothing"},
		{"tasks: not a list", http.MethodPost, PathTasks, []byte(`{"task_guid":"t"}`), 400, bbs.ErrTypeInvalidRequest, "Task start requests"},
		{"tasks: no guid", http.MethodPost, PathTasks, []byte(`[{"domain":"cf-tasks"}]`), 400, bbs.ErrTypeInvalidRequest, "task_guid"},
		{"tasks: no domain", http.MethodPost, PathTasks, []byte(`[{"task_guid":"t"}]`), 400, bbs.ErrTypeInvalidRequest, "domain"},
		{"tasks: negative disk", http.MethodPost, PathTasks, []byte(`[{"task_guid":"t","domain":"d","resource":{"disk_mb":-1}}]`), 400, bbs.ErrTypeInvalidRequest, "negative"},
		{"tasks: oversized", http.MethodPost, PathTasks, append(append([]byte(`[{"task_guid":"`), bytes.Repeat([]byte("a"), MaxRequestBytes)...), `"}]`...), 413, bbs.ErrTypeRequestTooLarge, "larger than"},
		{"tasks: GET", http.MethodGet, PathTasks, nil, 405, bbs.ErrTypeInvalidRequest, "POST"},
		{"tasks: an empty list", http.MethodPost, PathTasks, []byte(`[]`), 202, "", ""},
		{"an empty list", http.MethodPost, PathLRPs, []byte(`[]`), 202, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, e := h.rawPost(t, tc.method, tc.path, tc.body)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (error %v)", status, tc.wantStatus, e)
			}
			if tc.wantType == "" {
				if e != nil {
					t.Fatalf("unexpected error %v", e)
				}
				return
			}
			if e == nil || e.Type != tc.wantType || !strings.Contains(e.Message, tc.wantInMsg) {
				t.Fatalf("error %v, want type %s mentioning %q", e, tc.wantType, tc.wantInMsg)
			}
		})
	}
	if n := b.failures(); len(n) != 0 {
		t.Fatalf("rejected requests reached the auction: %v", n)
	}
}

func TestClientReturnsTheServersTypedError(t *testing.T) {
	h := startHarness(t, Config{}, &fakeBBS{}, newFakeReps())
	err := h.client.RequestLRPStarts(context.Background(), []bbs.LRPStartRequest{{ProcessGUID: "web", Domain: bbs.DomainCFApps}})
	var e *bbs.Error
	if !errors.As(err, &e) || !errors.Is(err, bbs.ErrInvalidRequest) || !strings.Contains(e.Message, "indices") {
		t.Fatalf("err %v, want an InvalidRequest about indices", err)
	}
	if err := h.client.RequestLRPStarts(context.Background(), nil); err != nil {
		t.Fatalf("an empty list: %v", err)
	}
}

func TestOnlyClientsOfTheFoundationGetIn(t *testing.T) {
	h := startHarness(t, Config{}, &fakeBBS{}, newFakeReps())
	post := func(cfg *tls.Config) error {
		return NewClient("https://"+h.a.Addr(), cfg).RequestLRPStarts(context.Background(), []bbs.LRPStartRequest{start("web", 256, 0)})
	}
	noCert := &tls.Config{RootCAs: h.pki.ca.Pool(), MinVersion: tls.VersionTLS12}
	if err := post(noCert); err == nil {
		t.Fatal("a client without a certificate was let in")
	}
	stranger := newPKI(t) // another foundation's CA and certificate
	strangerCfg := stranger.client.Clone()
	strangerCfg.RootCAs = h.pki.ca.Pool()
	if err := post(strangerCfg); err == nil {
		t.Fatal("a client certified by another CA was let in")
	}
	if err := post(h.pki.client); err != nil {
		t.Fatalf("a client of the foundation: %v", err)
	}
}

func TestClientSplitsAListTooLargeForOneRequest(t *testing.T) {
	h := startHarness(t, Config{BatchWindow: time.Hour}, &fakeBBS{}, newFakeReps())
	var reqs []bbs.LRPStartRequest
	for i := range 4000 {
		reqs = append(reqs, start(fmt.Sprintf("%0250d", i), 256, 0))
	}
	if err := h.client.RequestLRPStarts(context.Background(), reqs); err != nil {
		t.Fatalf("RequestLRPStarts: %v", err)
	}
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		h.a.mu.Lock()
		n := len(h.a.order)
		h.a.mu.Unlock()
		if n != len(reqs) {
			return fmt.Errorf("%d instances pending, want %d", n, len(reqs))
		}
		return nil
	})
}
