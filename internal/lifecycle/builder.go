// Package lifecycle is minicf's buildpack app lifecycle: the builder, which
// stages an app's files into a droplet, and the launcher, which runs a
// droplet's start command.
//
// Cloud Foundry's twin is the buildpack app lifecycle
// (code.cloudfoundry.org/buildpackapplifecycle): Diego cells download its
// builder and launcher into containers at /tmp/lifecycle. A minicf cell
// runs them as hidden verbs of its own binary instead (`minicf builder`,
// `minicf launcher`; the rep maps the paths /tmp/lifecycle/builder and
// /tmp/lifecycle/launcher to them, and container paths to the container's
// directories).
//
// The builder's contract is the Cloud Controller's (internal/cc/staging.go):
//
//	minicf builder --app-dir DIR --output-droplet FILE --result FILE [--command CMD]
//
// It stages this way:
//
//   - DIR with a go.mod is a Go app: `go build -o DIR/NAME .` (NAME is the
//     module path's last element, else "app"), with the environment the
//     Task gives (GOCACHE, GOMODCACHE, GOPROXY=off, ...). Its start command
//     is ./NAME unless --command is given.
//   - Otherwise the start command is --command, else the web: line of
//     DIR/Procfile; with neither, staging fails ("no start command: push
//     with -c or add a Procfile with a web: line").
//   - The droplet is a gzip'd tar of DIR's content (the root of the tar is
//     the app directory), modes kept; symbolic links are stored as links,
//     never followed (one pointing out of DIR is kept as it is, and its
//     target is not read).
//   - The result is JSON: {"process_types":{"web":CMD,...},
//     "lifecycle_type":"buildpack","execution_metadata":"",
//     "detected_buildpack":"go|binary|procfile"}; the other lines of a
//     Procfile add process types.
//   - Progress goes to stdout ("-----> Go app detected", the compiler's
//     output, "-----> Droplet created (N bytes)"), errors to stderr; a
//     failure exits non-zero.
//
// The launcher's (Cloud Foundry's launcher takes the same arguments):
//
//	minicf launcher APP_DIR START_COMMAND METADATA
//
// changes to APP_DIR, sets HOME to APP_DIR's parent (/home/vcap, as Cloud
// Foundry's does) and replaces itself with /bin/bash -c START_COMMAND
// (/bin/sh where there is no bash), so that the app gets the container's
// signals itself: bash runs a lone command in its own place, as it does
// under Cloud Foundry's launcher. METADATA (the droplet's
// execution metadata) is accepted and not used.
package lifecycle

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Detected buildpacks, as the result names them.
const (
	BuildpackGo       = "go"
	BuildpackBinary   = "binary"
	BuildpackProcfile = "procfile"
)

// ErrNoStartCommand is staging's failure when nothing says how to start the app.
var ErrNoStartCommand = errors.New("no start command: push with -c or add a Procfile with a web: line")

// Result is what the builder writes to --result.
type Result struct {
	ProcessTypes      map[string]string `json:"process_types"`
	LifecycleType     string            `json:"lifecycle_type"`
	ExecutionMetadata string            `json:"execution_metadata"`
	DetectedBuildpack string            `json:"detected_buildpack"`
}

// BuilderConfig is one staging run.
type BuilderConfig struct {
	AppDir        string // the app's files; the Go binary is built into it
	OutputDroplet string // where the droplet (.tgz) goes
	Result        string // where the result JSON goes
	Command       string // the start command given with push -c ("" for none)
	// Go is the go command (default: "go", looked up in PATH).
	Go     string
	Stdout io.Writer // progress (default: discarded)
	Stderr io.Writer // the compiler's errors and warnings (default: discarded)
}

// RunBuilder parses the builder's flags and stages.
func RunBuilder(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("builder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg BuilderConfig
	fs.StringVar(&cfg.AppDir, "app-dir", "", "the app's files (/home/vcap/app)")
	fs.StringVar(&cfg.OutputDroplet, "output-droplet", "", "where the droplet goes (/tmp/droplet.tgz)")
	fs.StringVar(&cfg.Result, "result", "", "where the result JSON goes (/tmp/result.json)")
	fs.StringVar(&cfg.Command, "command", "", "the start command (push -c)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("builder: unexpected arguments %q", fs.Args())
	}
	cfg.Stdout, cfg.Stderr = stdout, stderr
	_, err := Build(ctx, cfg)
	return err
}

// Build stages cfg.AppDir: it builds a Go app, finds the start command,
// writes the droplet and the result.
func Build(ctx context.Context, cfg BuilderConfig) (*Result, error) {
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	for _, f := range []struct{ flag, v string }{{"--app-dir", cfg.AppDir}, {"--output-droplet", cfg.OutputDroplet}, {"--result", cfg.Result}} {
		if f.v == "" {
			return nil, fmt.Errorf("builder: %s is required", f.flag)
		}
	}
	appDir, err := filepath.Abs(cfg.AppDir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(appDir); err != nil {
		return nil, fmt.Errorf("the app directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("the app directory %s is not a directory", appDir)
	}
	procfile, err := readProcfile(filepath.Join(appDir, "Procfile"))
	if err != nil {
		return nil, err
	}
	res := &Result{ProcessTypes: map[string]string{}, LifecycleType: "buildpack"}
	for t, c := range procfile {
		res.ProcessTypes[t] = c
	}
	web := ""
	if fi, err := os.Lstat(filepath.Join(appDir, "go.mod")); err == nil && fi.Mode().IsRegular() {
		fmt.Fprintln(cfg.Stdout, "-----> Go app detected")
		name, err := goBinaryName(appDir)
		if err != nil {
			return nil, err
		}
		if err := goBuild(ctx, cfg, appDir, name); err != nil {
			return nil, err
		}
		res.DetectedBuildpack = BuildpackGo
		web = "./" + name
		if cfg.Command != "" {
			web = cfg.Command
		}
	} else if cfg.Command != "" {
		fmt.Fprintln(cfg.Stdout, "-----> No Go app detected: the app runs the start command given with push -c")
		res.DetectedBuildpack = BuildpackBinary
		web = cfg.Command
	} else if c := procfile["web"]; c != "" {
		fmt.Fprintln(cfg.Stdout, "-----> Procfile detected")
		res.DetectedBuildpack = BuildpackProcfile
		web = c
	} else {
		return nil, ErrNoStartCommand
	}
	res.ProcessTypes["web"] = web
	fmt.Fprintf(cfg.Stdout, "-----> Start command: %s\n", web)
	if len(res.ProcessTypes) > 1 {
		fmt.Fprintf(cfg.Stdout, "-----> Process types: %s\n", strings.Join(sortedTypes(res.ProcessTypes), ", "))
	}

	n, err := writeDropletFile(appDir, cfg.OutputDroplet, cfg.Result)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Stdout, "-----> Droplet created (%d bytes)\n", n)
	data, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(cfg.Result, data, 0o644); err != nil {
		return nil, fmt.Errorf("cannot write the result: %w", err)
	}
	return res, nil
}

var (
	moduleLine  = regexp.MustCompile(`^\s*module\s+("([^"]+)"|(\S+))`)
	majorSuffix = regexp.MustCompile(`^v[0-9]+$`)
	safeName    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$`)
)

// goBinaryName is the name of the binary: the module path's last element
// (a major version suffix skipped), else "app"; never an existing
// directory of the app.
func goBinaryName(appDir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(appDir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("cannot read go.mod: %w", err)
	}
	name := ""
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		if m := moduleLine.FindStringSubmatch(sc.Text()); m != nil {
			mod := m[2] + m[3]
			parts := strings.Split(strings.Trim(mod, "/"), "/")
			name = parts[len(parts)-1]
			if majorSuffix.MatchString(name) && len(parts) > 1 {
				name = parts[len(parts)-2]
			}
			break
		}
	}
	candidates := []string{"app", "app-bin"}
	if safeName.MatchString(name) {
		candidates = append([]string{name}, candidates...)
	}
	for _, c := range candidates {
		if fi, err := os.Lstat(filepath.Join(appDir, c)); err != nil || !fi.IsDir() {
			return c, nil
		}
	}
	return "", errors.New("no name is free for the app's binary (app and app-bin are directories)")
}

func goBuild(ctx context.Context, cfg BuilderConfig, appDir, name string) error {
	goCmd := cfg.Go
	if goCmd == "" {
		goCmd = "go"
	}
	path, err := exec.LookPath(goCmd)
	if err != nil {
		return fmt.Errorf("cannot build the Go app: the go command is not on this cell (PATH=%s): %w", os.Getenv("PATH"), err)
	}
	fmt.Fprintf(cfg.Stdout, "-----> Running go build (%s)\n", name)
	cmd := exec.CommandContext(ctx, path, "build", "-buildvcs=false", "-o", filepath.Join(appDir, name), ".")
	cmd.Dir = appDir
	cmd.Stdout = cfg.Stdout
	cmd.Stderr = cfg.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build failed: %w", err)
	}
	return nil
}

var processType = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// readProcfile reads "type: command" lines; a missing Procfile is none.
func readProcfile(p string) (map[string]string, error) {
	out := map[string]string{}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the Procfile: %w", err)
	}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		t, c, ok := strings.Cut(line, ":")
		t, c = strings.TrimSpace(t), strings.TrimSpace(c)
		if !ok || !processType.MatchString(t) || c == "" {
			return nil, fmt.Errorf("Procfile line %d is not \"type: command\": %q", n+1, line)
		}
		out[t] = c
	}
	return out, nil
}

// writeDropletFile writes the droplet of appDir to out (atomically) and
// returns its size; out and the files in exclude are left out of it.
func writeDropletFile(appDir, out string, exclude ...string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".droplet-*.tgz")
	if err != nil {
		return 0, fmt.Errorf("cannot write the droplet: %w", err)
	}
	defer os.Remove(tmp.Name())
	skip := map[string]bool{}
	for _, p := range append([]string{tmp.Name(), out}, exclude...) {
		if abs, err := filepath.Abs(p); err == nil {
			skip[abs] = true
		}
	}
	cw := &countingWriter{w: tmp}
	err = writeDroplet(cw, appDir, skip)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot write the droplet: %w", err)
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeDroplet writes a gzip'd tar of appDir's content: directories,
// regular files (modes kept) and symbolic links (as links, their targets
// as they are, never followed). Paths in skip (absolute) are left out;
// other kinds of files (sockets, devices) too.
func writeDroplet(w io.Writer, appDir string, skip map[string]bool) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(appDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == appDir || skip[p] {
			return nil
		}
		rel, err := filepath.Rel(appDir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		fi, err := d.Info() // Lstat: a link is a link
		if err != nil {
			return err
		}
		link := ""
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.IsDir(), fi.Mode().IsRegular():
		default:
			return nil // not something a droplet holds
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = name
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func writeFileAtomic(p string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".result-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// sortedTypes lists a result's process types (for messages).
func sortedTypes(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
