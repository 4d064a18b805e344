package lifecycle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Shells that may run the start command, the first present wins: bash, as
// Cloud Foundry's launcher uses (it replaces itself with a lone command, so
// that command gets the signals and its exit status is the instance's),
// else sh (dash stays the parent even of a lone command).
var Shells = []string{"/bin/bash", "/bin/sh"}

func shell() string {
	for _, s := range Shells {
		if fi, err := os.Stat(s); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return s
		}
	}
	return Shells[len(Shells)-1]
}

// RunLauncher takes the launcher's arguments (APP_DIR START_COMMAND
// [METADATA]) and launches; it returns only when it cannot.
func RunLauncher(args []string) error {
	if len(args) < 2 || len(args) > 3 {
		return fmt.Errorf("launcher: want APP_DIR START_COMMAND [METADATA], got %d arguments", len(args))
	}
	return Launch(args[0], args[1])
}

// Launch replaces this process with bash -c startCommand (sh where there is
// no bash) in appDir, with HOME set to appDir's parent, so that the
// container's signals reach the app itself. It returns only on failure.
func Launch(appDir, startCommand string) error {
	if strings.TrimSpace(startCommand) == "" {
		return errors.New("launcher: the start command is empty: push with -c or add a Procfile with a web: line, then restage")
	}
	abs, err := filepath.Abs(appDir)
	if err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	if err := os.Chdir(abs); err != nil {
		return fmt.Errorf("launcher: cannot change to the app directory: %w", err)
	}
	env := LaunchEnv(os.Environ(), abs)
	sh := shell()
	if err := syscall.Exec(sh, []string{sh, "-c", startCommand}, env); err != nil {
		return fmt.Errorf("launcher: cannot run %s: %w", sh, err)
	}
	return nil // not reached
}

// LaunchEnv is env with HOME set to appDir's parent (the app's /home/vcap).
func LaunchEnv(env []string, appDir string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "HOME=") {
			out = append(out, kv)
		}
	}
	return append(out, "HOME="+filepath.Dir(filepath.Clean(appDir)))
}
