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
//	               [--buildpack-order NAME,NAME... [--skip-detect]]
//
// Buildpacks. The builder carries minicf's admin buildpacks itself
// (AdminBuildpacks, in position order: go_buildpack, binary_buildpack);
// the Cloud Controller lists the same names and accepts no others, so a
// name the builder does not know is a broken contract and fails staging.
// The two flags are Cloud Foundry's builder's -buildpackOrder and
// -skipDetect, with the same meaning, because the same thing is at stake:
// an app that chose its buildpacks (push -b) must get exactly those, even
// when detection would pick another (a prebuilt binary pushed next to its
// go.mod must not be rebuilt), and an app that did not must keep working
// without saying anything.
//
//   - Without --skip-detect (the app chose none): the first buildpack of
//     --buildpack-order (default: all) that detects the app stages it.
//     go_buildpack detects a go.mod; binary_buildpack detects a start
//     command (--command or a Procfile web: line). When none does, staging
//     fails with ErrNoStartCommand (binary_buildpack was tried) or "no
//     buildpack detected the app".
//   - With --skip-detect (the app chose them): nothing is detected; every
//     buildpack but the last supplies (go_buildpack: Go for the next ones;
//     binary_buildpack cannot, so it must be last), and the last one
//     stages. A chosen buildpack that cannot stage the app fails with
//     what it needs rather than falling back to another one: that fallback
//     is the very surprise choosing a buildpack is meant to prevent.
//
// Staging by buildpack:
//
//   - go_buildpack: `go build -o DIR/NAME .` (NAME is the module path's
//     last element, else "app"), with the environment the Task gives
//     (GOCACHE, GOMODCACHE, GOPROXY=off, ...). Its start command is
//     --command, else the Procfile's web: line, else ./NAME (Cloud
//     Foundry's ranking). Without a go.mod it fails with
//     ErrNoGoModule.
//   - binary_buildpack: no compilation, whatever files the app has (a
//     go.mod included). The start command is --command, else the web: line
//     of DIR/Procfile; with neither, staging fails ("no start command:
//     push with -c or add a Procfile with a web: line").
//   - The droplet is a gzip'd tar of DIR's content (the root of the tar is
//     the app directory), modes kept; symbolic links are stored as links,
//     never followed (one pointing out of DIR is kept as it is, and its
//     target is not read).
//   - The result is JSON: {"process_types":{"web":CMD,...},
//     "lifecycle_type":"buildpack","execution_metadata":"",
//     "detected_buildpack":"go|binary|procfile",
//     "lifecycle_metadata":{"buildpack_key":"go_buildpack",
//     "detected_buildpack":"go","buildpacks":[{"key":"go_buildpack",
//     "name":"go"}]}}; the other lines of a Procfile add process types.
//     detected_buildpack is what the staging buildpack found (the Go
//     module, the -c command, the Procfile); lifecycle_metadata is Cloud
//     Foundry's builder's, naming the buildpacks that ran (the last one
//     staged), so that the droplet shows the buildpack actually used.
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
	"slices"
	"sort"
	"strings"
)

// The admin buildpacks, by the names the Cloud Controller lists (GET
// /v3/buildpacks) and apps choose (push -b): the builder carries them
// itself, as a Diego cell would have downloaded CF's.
const (
	GoBuildpack     = "go_buildpack"
	BinaryBuildpack = "binary_buildpack"
)

// AdminBuildpacks lists the admin buildpacks in position order, which is
// the order auto-detection tries them in. The Cloud Controller takes its
// list from here, so what it accepts is exactly what the builder runs.
func AdminBuildpacks() []string {
	out := make([]string, len(buildpacks))
	for i, bp := range buildpacks {
		out[i] = bp.key
	}
	return out
}

// Detect outputs (the result's detected_buildpack): what the buildpack
// that staged the app found in it.
const (
	BuildpackGo       = "go"
	BuildpackBinary   = "binary"
	BuildpackProcfile = "procfile"
)

// ErrNoStartCommand is staging's failure when nothing says how to start the app.
var ErrNoStartCommand = errors.New("no start command: push with -c or add a Procfile with a web: line")

// ErrNoGoModule is go_buildpack's failure, when it was chosen, on an app
// without a go.mod.
var ErrNoGoModule = errors.New("go_buildpack needs a Go module: the app has no go.mod in its root directory " +
	"(push the module's directory, or push a prebuilt binary with -b binary_buildpack -c CMD)")

// Result is what the builder writes to --result.
type Result struct {
	ProcessTypes      map[string]string `json:"process_types"`
	LifecycleType     string            `json:"lifecycle_type"`
	ExecutionMetadata string            `json:"execution_metadata"`
	DetectedBuildpack string            `json:"detected_buildpack"`
	LifecycleMetadata LifecycleMetadata `json:"lifecycle_metadata"`
}

// LifecycleMetadata says which buildpacks staged the app, as Cloud
// Foundry's builder does: BuildpackKey is the last (the one that gave the
// start command), Buildpacks all of them in the order they ran.
type LifecycleMetadata struct {
	BuildpackKey      string              `json:"buildpack_key"`
	DetectedBuildpack string              `json:"detected_buildpack"`
	Buildpacks        []BuildpackMetadata `json:"buildpacks"`
}

// BuildpackMetadata is one buildpack that ran: Key is its admin name
// (go_buildpack), Name its own (go).
type BuildpackMetadata struct {
	Key     string `json:"key"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// BuilderConfig is one staging run.
type BuilderConfig struct {
	AppDir        string // the app's files; the Go binary is built into it
	OutputDroplet string // where the droplet (.tgz) goes
	Result        string // where the result JSON goes
	Command       string // the start command given with push -c ("" for none)
	// BuildpackOrder names the admin buildpacks to use, in order; none
	// means all of them (AdminBuildpacks).
	BuildpackOrder []string
	// SkipDetect runs BuildpackOrder as it is (the app chose them): all
	// but the last supply, the last one stages. Without it the first of
	// BuildpackOrder that detects the app stages it alone.
	SkipDetect bool
	// Go is the go command (default: "go", looked up in PATH).
	Go     string
	Stdout io.Writer // progress (default: discarded)
	Stderr io.Writer // the compiler's errors and warnings (default: discarded)
}

// ParseBuilderArgs reads the builder's flags (the staging Task's
// arguments) into a BuilderConfig; flag.ErrHelp after --help.
func ParseBuilderArgs(args []string, stderr io.Writer) (BuilderConfig, error) {
	fs := flag.NewFlagSet("builder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg BuilderConfig
	var order string
	fs.StringVar(&cfg.AppDir, "app-dir", "", "the app's files (/home/vcap/app)")
	fs.StringVar(&cfg.OutputDroplet, "output-droplet", "", "where the droplet goes (/tmp/droplet.tgz)")
	fs.StringVar(&cfg.Result, "result", "", "where the result JSON goes (/tmp/result.json)")
	fs.StringVar(&cfg.Command, "command", "", "the start command (push -c)")
	fs.StringVar(&order, "buildpack-order", "", "comma-separated admin buildpacks to use, in order (default: all, to detect from)")
	fs.BoolVar(&cfg.SkipDetect, "skip-detect", false, "run --buildpack-order as given (the app chose its buildpacks) instead of detecting")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("builder: unexpected arguments %q", fs.Args())
	}
	for _, name := range strings.Split(order, ",") {
		if name = strings.TrimSpace(name); name != "" {
			cfg.BuildpackOrder = append(cfg.BuildpackOrder, name)
		}
	}
	return cfg, nil
}

// RunBuilder parses the builder's flags and stages.
func RunBuilder(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := ParseBuilderArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg.Stdout, cfg.Stderr = stdout, stderr
	_, err = Build(ctx, cfg)
	return err
}

// stager is one staging run's state, as the buildpacks see it.
type stager struct {
	cfg      BuilderConfig
	appDir   string
	procfile map[string]string
	detected bool // the buildpack was detected, not chosen
}

func (s *stager) say(format string, args ...any) {
	fmt.Fprintf(s.cfg.Stdout, "-----> "+format+"\n", args...)
}

func (s *stager) hasGoMod() bool {
	fi, err := os.Lstat(filepath.Join(s.appDir, "go.mod"))
	return err == nil && fi.Mode().IsRegular()
}

// buildpack is one of the builder's admin buildpacks. The shape is Cloud
// Foundry's: detect says whether it applies (auto-detection only), supply
// runs when another buildpack comes after it (nil: it cannot, like CF's
// binary buildpack), finalize stages the app and gives the web start
// command and the detect output.
type buildpack struct {
	key, name string
	detect    func(s *stager) bool
	supply    func(ctx context.Context, s *stager) error
	finalize  func(ctx context.Context, s *stager) (web, output string, err error)
}

var buildpacks = []*buildpack{
	{key: GoBuildpack, name: "go",
		detect: (*stager).hasGoMod,
		supply: func(ctx context.Context, s *stager) error {
			path, err := goCommand(s.cfg)
			if err != nil {
				return err
			}
			s.say("go_buildpack supplies Go (%s) to the buildpacks after it", path)
			return nil
		},
		finalize: func(ctx context.Context, s *stager) (string, string, error) {
			if !s.hasGoMod() {
				return "", "", ErrNoGoModule
			}
			if s.detected {
				s.say("Go app detected")
			} else {
				s.say("go_buildpack: building the Go module")
			}
			name, err := goBinaryName(s.appDir)
			if err != nil {
				return "", "", err
			}
			if err := goBuild(ctx, s.cfg, s.appDir, name); err != nil {
				return "", "", err
			}
			// As Cloud Foundry ranks start commands: the push's -c, then the
			// Procfile's web: line, then what the buildpack built.
			web := "./" + name
			if s.procfile["web"] != "" {
				web = s.procfile["web"]
			}
			if s.cfg.Command != "" {
				web = s.cfg.Command
			}
			return web, BuildpackGo, nil
		}},
	{key: BinaryBuildpack, name: "binary",
		detect: func(s *stager) bool { return s.cfg.Command != "" || s.procfile["web"] != "" },
		finalize: func(ctx context.Context, s *stager) (string, string, error) {
			if !s.detected && s.hasGoMod() {
				s.say("binary_buildpack does not compile: the app's go.mod is left as it is (no go build)")
			}
			switch {
			case s.cfg.Command != "" && s.detected:
				s.say("No Go app detected: the app runs the start command given with push -c")
			case s.cfg.Command != "":
				s.say("binary_buildpack: the app runs the start command given with push -c")
			case s.procfile["web"] != "" && s.detected:
				s.say("Procfile detected")
			case s.procfile["web"] != "":
				s.say("binary_buildpack: the app runs the web: line of its Procfile")
			default:
				return "", "", ErrNoStartCommand
			}
			if s.cfg.Command != "" {
				return s.cfg.Command, BuildpackBinary, nil
			}
			return s.procfile["web"], BuildpackProcfile, nil
		}},
}

func lookupBuildpack(name string) *buildpack {
	for _, bp := range buildpacks {
		if bp.key == name {
			return bp
		}
	}
	return nil
}

// chooseBuildpacks resolves cfg's buildpack order: with SkipDetect, all
// of it (the app chose them); else the first that detects the app.
func chooseBuildpacks(s *stager) ([]*buildpack, error) {
	names := s.cfg.BuildpackOrder
	if s.cfg.SkipDetect && len(names) == 0 {
		return nil, errors.New("builder: --skip-detect needs --buildpack-order (the buildpacks the app chose)")
	}
	if len(names) == 0 {
		names = AdminBuildpacks()
	}
	var order []*buildpack
	for _, name := range names {
		bp := lookupBuildpack(name)
		if bp == nil {
			return nil, fmt.Errorf("unknown buildpack %q: the admin buildpacks are %s", name, strings.Join(AdminBuildpacks(), ", "))
		}
		order = append(order, bp)
	}
	if s.cfg.SkipDetect {
		for _, bp := range order[:len(order)-1] {
			if bp.supply == nil {
				return nil, fmt.Errorf("%s cannot supply dependencies to the buildpacks after it: it can only be the last buildpack", bp.key)
			}
		}
		s.say("Buildpacks chosen for the app (detection skipped): %s", strings.Join(names, ", "))
		return order, nil
	}
	for _, bp := range order {
		if bp.detect(s) {
			s.detected = true
			return []*buildpack{bp}, nil
		}
	}
	if slices.Contains(order, lookupBuildpack(BinaryBuildpack)) {
		// binary_buildpack detects any app that says how to start.
		return nil, ErrNoStartCommand
	}
	return nil, fmt.Errorf("no buildpack detected the app (tried %s)", strings.Join(names, ", "))
}

// Build stages cfg.AppDir with the chosen or detected buildpacks: it
// builds a Go app, finds the start command, writes the droplet and the
// result.
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
	s := &stager{cfg: cfg, appDir: appDir, procfile: procfile}
	order, err := chooseBuildpacks(s)
	if err != nil {
		return nil, err
	}
	res := &Result{ProcessTypes: map[string]string{}, LifecycleType: "buildpack"}
	for t, c := range procfile {
		res.ProcessTypes[t] = c
	}
	last := order[len(order)-1]
	for _, bp := range order[:len(order)-1] {
		if err := bp.supply(ctx, s); err != nil {
			return nil, err
		}
		res.LifecycleMetadata.Buildpacks = append(res.LifecycleMetadata.Buildpacks, BuildpackMetadata{Key: bp.key, Name: bp.name})
	}
	web, output, err := last.finalize(ctx, s)
	if err != nil {
		return nil, err
	}
	res.DetectedBuildpack = output
	res.LifecycleMetadata.BuildpackKey, res.LifecycleMetadata.DetectedBuildpack = last.key, output
	res.LifecycleMetadata.Buildpacks = append(res.LifecycleMetadata.Buildpacks, BuildpackMetadata{Key: last.key, Name: last.name})
	res.ProcessTypes["web"] = web
	s.say("Start command: %s", web)
	if len(res.ProcessTypes) > 1 {
		s.say("Process types: %s", strings.Join(sortedTypes(res.ProcessTypes), ", "))
	}

	n, err := writeDropletFile(appDir, cfg.OutputDroplet, cfg.Result)
	if err != nil {
		return nil, err
	}
	s.say("Droplet created (%d bytes)", n)
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
	path, err := goCommand(cfg)
	if err != nil {
		return err
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

// goCommand finds the go command the staging environment gives.
func goCommand(cfg BuilderConfig) (string, error) {
	goCmd := cfg.Go
	if goCmd == "" {
		goCmd = "go"
	}
	path, err := exec.LookPath(goCmd)
	if err != nil {
		return "", fmt.Errorf("cannot build the Go app: the go command is not on this cell (PATH=%s): %w", os.Getenv("PATH"), err)
	}
	return path, nil
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
