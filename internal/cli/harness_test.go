package cli

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// testToken is a JWT (unsigned here: the CLI never verifies it) whose
// user_name is admin.
var testToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." +
	base64.RawURLEncoding.EncodeToString([]byte(`{"user_name":"admin","user_id":"u-1","origin":"uaa","client_id":"cf","exp":4102444800}`)) +
	".c2lnbmF0dXJl"

// testNow is the clock of the tests: instances with 90 s uptime started at
// 2026-11-26T04:08:56Z.
var testNow = time.Date(2026, 11, 26, 4, 10, 26, 0, time.UTC)

type harness struct {
	t    *testing.T
	cc   *fakeCC
	home string
	dir  string
	cfg  *Config
	// stdin answers prompts.
	stdin string
	// exit, when set, is Options.Exit.
	exit func(int)
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, cc: newFakeCC(t), home: t.TempDir(), dir: t.TempDir()}
	h.cfg = &Config{API: h.cc.srv.URL, AccessToken: testToken, OrganizationGUID: "org-guid", SpaceGUID: "space-guid",
		OrganizationName: "myorg", SpaceName: "dev", Router: "127.0.0.1:8081"}
	if err := SaveConfig(h.home, h.cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) saveConfig() {
	h.t.Helper()
	if err := SaveConfig(h.home, h.cfg); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) options() Options {
	return Options{
		Home:         h.home,
		Dir:          h.dir,
		Stdin:        strings.NewReader(h.stdin),
		Now:          func() time.Time { return testNow },
		Location:     time.UTC,
		PollInterval: time.Millisecond,
		Exit:         h.exit,
	}
}

// run runs one verb as `minicf ARGS...` and returns its stdout and stderr.
func (h *harness) run(args ...string) (stdout, stderr string, err error) {
	h.t.Helper()
	root := &cobra.Command{Use: "minicf", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(Commands(h.options())...)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.Execute()
	if h.cc != nil {
		// Wait for the fake's handlers to finish, so the test may read its state.
		h.cc.mu.Lock()
		h.cc.mu.Unlock()
	}
	return out.String(), errb.String(), err
}

// mustRun runs a verb that must succeed.
func (h *harness) mustRun(args ...string) string {
	h.t.Helper()
	out, errOut, err := h.run(args...)
	if err != nil {
		h.t.Fatalf("minicf %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// writeFiles creates files under dir: name -> content; a name ending in
// "*" is made executable (the star is dropped).
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "*") {
			name, mode = strings.TrimSuffix(name, "*"), 0o755
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// squash drops log-cache reads and collapses repeated requests (polls) so
// the order of a verb's requests can be compared.
func squash(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		if strings.Contains(r, "/api/v1/read/") {
			continue
		}
		if len(out) > 0 && out[len(out)-1] == r {
			continue
		}
		out = append(out, r)
	}
	return out
}

func diffLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func wantContains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, got)
		}
	}
}
