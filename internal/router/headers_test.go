package router

import (
	"strings"
	"testing"
)

func FuzzTraceparent(f *testing.F) {
	f.Add("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "11111111-2222-3333-4444-555555555555")
	f.Add("", "not a uuid")
	f.Add("00-00000000000000000000000000000000-b7ad6b7169203331-01", "")
	f.Add("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "ABCDEF00-2222-3333-4444-555555555555")
	// CI's fuzzing found that the nil UUID gave an all-zero trace id.
	f.Add("0", "00000000-0000-0000-0000-000000000000")
	f.Fuzz(func(t *testing.T, in, reqID string) {
		out := traceparent(in, reqID)
		if !validTraceparent(out) {
			t.Fatalf("traceparent(%q, %q) = %q is not valid", in, reqID, out)
		}
		if validTraceparent(in) && out[3:35] != in[3:35] {
			t.Fatalf("a valid trace id %q was not kept: %q", in, out)
		}
		if id := strings.ToLower(strings.ReplaceAll(reqID, "-", "")); !validTraceparent(in) && isUUID(reqID) &&
			strings.Trim(id, "0") != "" && out[3:35] != id {
			t.Fatalf("request id %q was not made the trace id: %q", reqID, out)
		}
		if len(out) != 55 {
			t.Fatalf("traceparent is %d bytes: %q", len(out), out)
		}
	})
}

func FuzzHostOnly(f *testing.F) {
	for _, s := range []string{"App.Localhost:8081", "[::1]:80", "::1", "h", "", "a:b:c", "[fe80::1%lo0]:443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := hostOnly(in)
		// Route keys are ASCII lower case, so the request's host must be too.
		if strings.IndexFunc(out, func(r rune) bool { return r >= 'A' && r <= 'Z' }) >= 0 {
			t.Fatalf("hostOnly(%q) = %q has upper case", in, out)
		}
		if !strings.ContainsAny(in, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") && len(out) > len(in) {
			t.Fatalf("hostOnly(%q) = %q grew", in, out)
		}
	})
}

func TestHostOnly(t *testing.T) {
	for in, want := range map[string]string{
		"App.Localhost:8081": "app.localhost",
		"app.localhost":      "app.localhost",
		"127.0.0.1:5000":     "127.0.0.1",
		"[::1]:80":           "::1",
		"::1":                "::1",
		"":                   "",
	} {
		if got := hostOnly(in); got != want {
			t.Errorf("hostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}
