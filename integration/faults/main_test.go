// Package faults is issue 8's fault suite: the failures of
// code-and-reliability-anchors.md B1 and B5, each played against the real
// minicf binary, real NATS and real cells (namespace mode as root, process
// mode otherwise), with timers shortened through flags and config.
//
// Every case runs a steady request load through the router while the fault
// happens, counts every response (sent, ok, failed, misrouted), prints the
// figures with t.Logf and asserts on them. A case that finds a bug fails; it
// is never skipped.
//
// The helpers are adapted from integration/*_test.go (test files cannot be
// imported across packages).
package faults

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// minicfBin is the race-enabled binary TestMain builds once; appDir holds
// the test app (integration/testdata/diegoapp) the Diego cases run as LRPs.
var minicfBin, appDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "minicf-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	minicfBin = filepath.Join(dir, "minicf")
	build := exec.Command(goTool(), "build", "-race", "-o", minicfBin, "github.com/minicf/minicf/cmd/minicf")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "faults: building minicf failed: %v\n%s", err, out)
		return 1
	}
	appDir = filepath.Join(dir, "diegoapp")
	buildApp := exec.Command(goTool(), "build", "-o", filepath.Join(appDir, "diegoapp"), "./integration/testdata/diegoapp")
	buildApp.Dir = root
	if out, err := buildApp.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "faults: building the test app failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// moduleRoot is the directory of go.mod, from `go env GOMOD` or, failing
// that, by walking up from the working directory.
func moduleRoot() (string, error) {
	if out, err := exec.Command(goTool(), "env", "GOMOD").Output(); err == nil {
		if p := strings.TrimSpace(string(out)); p != "" && p != os.DevNull {
			return filepath.Dir(p), nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", errors.New("no go.mod above " + wd)
		}
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}
