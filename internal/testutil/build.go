package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModuleRoot is the directory of minicf's go.mod, from `go env GOMOD` or,
// failing that, by walking up from the working directory.
func ModuleRoot() (string, error) {
	if out, err := exec.Command(GoTool(), "env", "GOMOD").Output(); err == nil {
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

// GoTool is the go command: from PATH, else under GOROOT.
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// Build runs `go build args...` from the module root and names the
// package in its error.
func Build(args ...string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command(GoTool(), append([]string{"build"}, args...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// BuildBlackBox builds what the black-box suites run, into dir: the minicf
// binary with the race detector, and the Diego test app (a directory
// holding the diegoapp binary, pushed as an LRP's files).
func BuildBlackBox(dir string) (minicfBin, appDir string, err error) {
	minicfBin = filepath.Join(dir, "minicf")
	if err := Build("-race", "-o", minicfBin, "github.com/minicf/minicf/cmd/minicf"); err != nil {
		return "", "", err
	}
	appDir = filepath.Join(dir, "diegoapp")
	if err := Build("-o", filepath.Join(appDir, "diegoapp"), "./integration/testdata/diegoapp"); err != nil {
		return "", "", err
	}
	return minicfBin, appDir, nil
}
