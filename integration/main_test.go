// Package integration runs the real minicf binary the way gorouter's
// integration suite runs gorouter: one build per test run, each test starts
// its own processes on loopback ports, talks to them over NATS and HTTP only,
// and asserts on status codes, headers, backend hit counters and log lines.
package integration

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
// the test app (diegoapp) the Diego tests run as an LRP.
var minicfBin, appDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "minicf-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	minicfBin = filepath.Join(dir, "minicf")
	build := exec.Command(goTool(), "build", "-race", "-o", minicfBin, "github.com/minicf/minicf/cmd/minicf")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: building minicf failed: %v\n%s", err, out)
		return 1
	}
	appDir = filepath.Join(dir, "diegoapp")
	buildApp := exec.Command(goTool(), "build", "-o", filepath.Join(appDir, "diegoapp"), "./integration/testdata/diegoapp")
	buildApp.Dir = root
	if out, err := buildApp.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: building the test app failed: %v\n%s", err, out)
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
