package lifecycle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/testutil"
)

// The launcher test runs this test binary as the launcher.
const launcherEnv = "LIFECYCLE_TEST_RUN_LAUNCHER"

func TestMain(m *testing.M) {
	if os.Getenv(launcherEnv) == "1" {
		err := RunLauncher(os.Args[1:])
		fmt.Fprintln(os.Stderr, "launcher:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// goEnv keeps go build offline and quick, as the Cloud Controller's
// staging environment does.
func goEnv(t *testing.T) {
	t.Setenv("GOPROXY", "off")
	t.Setenv("GOFLAGS", "-mod=mod")
	t.Setenv("GOTOOLCHAIN", "local")
	t.Setenv("CGO_ENABLED", "0")
}

type built struct {
	res    *Result
	err    error
	stdout string
	stderr string
	out    string // the droplet's directory
}

func build(t *testing.T, appDir, command string) built {
	t.Helper()
	return buildWith(t, BuilderConfig{AppDir: appDir, Command: command})
}

// buildWith stages cfg (its output paths, Stdout and Stderr filled in).
func buildWith(t *testing.T, cfg BuilderConfig) built {
	t.Helper()
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	cfg.OutputDroplet, cfg.Result, cfg.Stdout, cfg.Stderr = filepath.Join(out, "droplet.tgz"), filepath.Join(out, "result.json"), &stdout, &stderr
	res, err := Build(context.Background(), cfg)
	t.Logf("staged in %v", time.Since(start).Round(time.Millisecond))
	return built{res, err, stdout.String(), stderr.String(), out}
}

// staged is the lifecycle metadata of an app staged by the buildpacks
// keys (the last one staged it, finding output).
func staged(output string, keys ...string) LifecycleMetadata {
	m := LifecycleMetadata{BuildpackKey: keys[len(keys)-1], DetectedBuildpack: output}
	for _, k := range keys {
		m.Buildpacks = append(m.Buildpacks, BuildpackMetadata{Key: k, Name: strings.TrimSuffix(k, "_buildpack")})
	}
	return m
}

// entry is one tar entry, as the tests compare them.
type entry struct {
	typ  byte
	mode int64
	link string
	body string
}

func readDroplet(t *testing.T, p string) map[string]entry {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]entry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if _, dup := out[h.Name]; dup {
			t.Errorf("%s is in the droplet twice", h.Name)
		}
		out[h.Name] = entry{typ: h.Typeflag, mode: h.Mode & 0o7777, link: h.Linkname, body: string(body)}
	}
}

func readResult(t *testing.T, dir string) Result {
	t.Helper()
	return readResultFile(t, filepath.Join(dir, "result.json"))
}

func readResultFile(t *testing.T, p string) Result {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("result %s: %v", data, err)
	}
	return r
}

const helloGo = `package main

import "fmt"

func main() { fmt.Println("hello from the droplet") }
`

func TestBuilderGoApp(t *testing.T) {
	goEnv(t)
	app := t.TempDir()
	writeFiles(t, app, map[string]string{"go.mod": "module example.com/apps/hello/v2\n\ngo 1.22\n", "main.go": helloGo,
		"Procfile": "worker: ./hello --work\n"})
	b := build(t, app, "")
	if b.err != nil {
		t.Fatalf("%v\n%s%s", b.err, b.stdout, b.stderr)
	}
	for _, want := range []string{"-----> Go app detected\n", "-----> Running go build (hello)\n", "-----> Start command: ./hello\n",
		"-----> Process types: web, worker\n", "-----> Droplet created ("} {
		if !strings.Contains(b.stdout, want) {
			t.Errorf("the progress lacks %q:\n%s", want, b.stdout)
		}
	}
	want := Result{ProcessTypes: map[string]string{"web": "./hello", "worker": "./hello --work"}, LifecycleType: "buildpack",
		DetectedBuildpack: "go", LifecycleMetadata: staged("go", GoBuildpack)}
	if got := readResult(t, b.out); !reflect.DeepEqual(got, want) || !reflect.DeepEqual(*b.res, want) {
		t.Fatalf("result %+v, want %+v", got, want)
	}
	fi, err := os.Stat(filepath.Join(app, "hello"))
	if err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Fatalf("the binary in the app directory: %v %v", fi, err)
	}
	entries := readDroplet(t, filepath.Join(b.out, "droplet.tgz"))
	bin, ok := entries["hello"]
	if !ok || bin.typ != tar.TypeReg || bin.mode&0o111 == 0 || len(bin.body) < 1000 {
		t.Fatalf("the droplet's binary: %v (mode %o)", ok, bin.mode)
	}
	if entries["main.go"].body != helloGo || entries["go.mod"].typ != tar.TypeReg {
		t.Fatalf("the droplet lacks the app's files: %v", keys(entries))
	}
	size, _, _ := strings.Cut(strings.SplitN(b.stdout, "Droplet created (", 2)[1], " bytes)")
	if fi, _ := os.Stat(filepath.Join(b.out, "droplet.tgz")); strconv.FormatInt(fi.Size(), 10) != size {
		t.Fatalf("progress says %s bytes, the droplet has %d", size, fi.Size())
	}
	// The droplet's binary runs.
	run := filepath.Join(t.TempDir(), "hello")
	os.WriteFile(run, []byte(bin.body), 0o755)
	if out, err := exec.Command(run).CombinedOutput(); err != nil || string(out) != "hello from the droplet\n" {
		t.Fatalf("the built binary: %q %v", out, err)
	}
}

func keys(m map[string]entry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestBuilderGoAppWithCommandAndFailures(t *testing.T) {
	goEnv(t)
	app := t.TempDir()
	writeFiles(t, app, map[string]string{"go.mod": "module hello\n", "main.go": helloGo})
	b := build(t, app, "./hello --port $PORT")
	if b.err != nil {
		t.Fatalf("%v\n%s", b.err, b.stderr)
	}
	if r := readResult(t, b.out); r.ProcessTypes["web"] != "./hello --port $PORT" || r.DetectedBuildpack != "go" {
		t.Fatalf("result %+v", r)
	}

	// A Procfile's web: line outranks the built binary, and -c outranks both.
	withProcfile := t.TempDir()
	writeFiles(t, withProcfile, map[string]string{"go.mod": "module hello\n", "main.go": helloGo, "Procfile": "web: ./hello --from-procfile\n"})
	b = build(t, withProcfile, "")
	if b.err != nil {
		t.Fatalf("%v\n%s", b.err, b.stderr)
	}
	if r := readResult(t, b.out); r.ProcessTypes["web"] != "./hello --from-procfile" || r.DetectedBuildpack != "go" {
		t.Fatalf("Go app with a Procfile: result %+v", r)
	}
	b = build(t, withProcfile, "./hello --from-c")
	if b.err != nil {
		t.Fatalf("%v\n%s", b.err, b.stderr)
	}
	if r := readResult(t, b.out); r.ProcessTypes["web"] != "./hello --from-c" {
		t.Fatalf("Go app with a Procfile and -c: result %+v", r)
	}

	// A compile error fails staging, with the compiler's output on stderr.
	broken := t.TempDir()
	writeFiles(t, broken, map[string]string{"go.mod": "module broken\n", "main.go": "package main\n\nfunc main() { undefinedThing() }\n"})
	b = build(t, broken, "")
	if b.err == nil || !strings.Contains(b.err.Error(), "go build failed") || !strings.Contains(b.stderr, "undefined: undefinedThing") {
		t.Fatalf("a broken Go app: %v\nstderr: %s", b.err, b.stderr)
	}
	if _, err := os.Stat(filepath.Join(b.out, "droplet.tgz")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed staging left a droplet: %v", err)
	}
}

func TestBuilderProcfileCommandAndNoStartCommand(t *testing.T) {
	for _, tc := range []struct {
		name, command string
		files         map[string]string
		want          Result
		progress      string
	}{
		{"procfile", "", map[string]string{"Procfile": "# the app\nweb: ./run.sh --port $PORT\n\nclock:  ./clock\n", "run.sh": "#!/bin/sh\n"},
			Result{ProcessTypes: map[string]string{"web": "./run.sh --port $PORT", "clock": "./clock"}, LifecycleType: "buildpack", DetectedBuildpack: "procfile",
				LifecycleMetadata: staged("procfile", BinaryBuildpack)},
			"-----> Procfile detected\n"},
		{"command", "python3 -m http.server $PORT", map[string]string{"index.html": "hi"},
			Result{ProcessTypes: map[string]string{"web": "python3 -m http.server $PORT"}, LifecycleType: "buildpack", DetectedBuildpack: "binary",
				LifecycleMetadata: staged("binary", BinaryBuildpack)},
			"-----> No Go app detected"},
		{"command wins over the Procfile", "./other", map[string]string{"Procfile": "web: ./run\n"},
			Result{ProcessTypes: map[string]string{"web": "./other"}, LifecycleType: "buildpack", DetectedBuildpack: "binary",
				LifecycleMetadata: staged("binary", BinaryBuildpack)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := t.TempDir()
			writeFiles(t, app, tc.files)
			b := build(t, app, tc.command)
			if b.err != nil {
				t.Fatal(b.err)
			}
			if got := readResult(t, b.out); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("result %+v, want %+v", got, tc.want)
			}
			if !strings.Contains(b.stdout, tc.progress) {
				t.Fatalf("progress %q lacks %q", b.stdout, tc.progress)
			}
		})
	}
	t.Run("no start command", func(t *testing.T) {
		app := t.TempDir()
		writeFiles(t, app, map[string]string{"index.html": "hi", "Procfile": "worker: ./work\n"})
		b := build(t, app, "")
		if !errors.Is(b.err, ErrNoStartCommand) || b.err.Error() != "no start command: push with -c or add a Procfile with a web: line" {
			t.Fatalf("got %v", b.err)
		}
		for _, f := range []string{"droplet.tgz", "result.json"} {
			if _, err := os.Stat(filepath.Join(b.out, f)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s was written: %v", f, err)
			}
		}
	})
	t.Run("malformed Procfile", func(t *testing.T) {
		app := t.TempDir()
		writeFiles(t, app, map[string]string{"Procfile": "web ./run\n"})
		if b := build(t, app, ""); b.err == nil || !strings.Contains(b.err.Error(), "Procfile line 1") {
			t.Fatalf("got %v", b.err)
		}
	})
}

// noFiles fails unless none of files is in dir.
func noFiles(t *testing.T, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was written: %v", f, err)
		}
	}
}

// TestBuilderChosenBuildpacks: buildpacks the app chose (--skip-detect)
// run as they are, even when detection would pick another one.
func TestBuilderChosenBuildpacks(t *testing.T) {
	goEnv(t)
	noGo := filepath.Join(t.TempDir(), "no-go-here") // a go build would fail
	goApp := func(t *testing.T, extra map[string]string) string {
		app := t.TempDir()
		files := map[string]string{"go.mod": "module hello\n", "main.go": helloGo, "run.sh": "#!/bin/sh\n"}
		for k, v := range extra {
			files[k] = v
		}
		writeFiles(t, app, files)
		return app
	}
	binary := []string{BinaryBuildpack}

	t.Run("binary_buildpack with a go.mod runs the command", func(t *testing.T) {
		app := goApp(t, nil)
		b := buildWith(t, BuilderConfig{AppDir: app, Command: "./run.sh", BuildpackOrder: binary, SkipDetect: true, Go: noGo})
		if b.err != nil {
			t.Fatalf("%v\n%s%s", b.err, b.stdout, b.stderr)
		}
		want := Result{ProcessTypes: map[string]string{"web": "./run.sh"}, LifecycleType: "buildpack", DetectedBuildpack: "binary",
			LifecycleMetadata: staged("binary", BinaryBuildpack)}
		if got := readResult(t, b.out); !reflect.DeepEqual(got, want) {
			t.Fatalf("result %+v, want %+v", got, want)
		}
		for _, want := range []string{"-----> Buildpacks chosen for the app (detection skipped): binary_buildpack\n",
			"-----> binary_buildpack does not compile", "-----> Start command: ./run.sh\n"} {
			if !strings.Contains(b.stdout, want) {
				t.Errorf("the progress lacks %q:\n%s", want, b.stdout)
			}
		}
		if strings.Contains(b.stdout, "Go app detected") || strings.Contains(b.stdout, "Running go build") {
			t.Errorf("binary_buildpack built the app:\n%s", b.stdout)
		}
		noFiles(t, app, "hello", "app")
		if entries := readDroplet(t, filepath.Join(b.out, "droplet.tgz")); entries["go.mod"].typ != tar.TypeReg || entries["run.sh"].typ != tar.TypeReg {
			t.Errorf("the droplet lacks the app's files: %v", keys(entries))
		}
	})
	t.Run("binary_buildpack with a go.mod runs the Procfile's web line", func(t *testing.T) {
		b := buildWith(t, BuilderConfig{AppDir: goApp(t, map[string]string{"Procfile": "web: ./run.sh\n"}), BuildpackOrder: binary, SkipDetect: true, Go: noGo})
		if b.err != nil {
			t.Fatal(b.err)
		}
		if r := readResult(t, b.out); r.ProcessTypes["web"] != "./run.sh" || r.DetectedBuildpack != "procfile" || r.LifecycleMetadata.BuildpackKey != BinaryBuildpack {
			t.Fatalf("result %+v", r)
		}
	})
	t.Run("binary_buildpack without a start command", func(t *testing.T) {
		b := buildWith(t, BuilderConfig{AppDir: goApp(t, nil), BuildpackOrder: binary, SkipDetect: true, Go: noGo})
		if !errors.Is(b.err, ErrNoStartCommand) || b.err.Error() != "no start command: push with -c or add a Procfile with a web: line" {
			t.Fatalf("got %v", b.err)
		}
		noFiles(t, b.out, "droplet.tgz", "result.json")
	})
	t.Run("go_buildpack without a go.mod", func(t *testing.T) {
		app := t.TempDir()
		writeFiles(t, app, map[string]string{"run.sh": "#!/bin/sh\n", "Procfile": "web: ./run.sh\n"})
		b := buildWith(t, BuilderConfig{AppDir: app, Command: "./run.sh", BuildpackOrder: []string{GoBuildpack}, SkipDetect: true})
		if !errors.Is(b.err, ErrNoGoModule) || !strings.Contains(b.err.Error(), "go_buildpack needs a Go module") || !strings.Contains(b.err.Error(), "no go.mod") {
			t.Fatalf("got %v", b.err)
		}
		noFiles(t, b.out, "droplet.tgz", "result.json")
	})
	t.Run("go_buildpack supplies, binary_buildpack stages", func(t *testing.T) {
		app := goApp(t, nil)
		b := buildWith(t, BuilderConfig{AppDir: app, Command: "./run.sh", BuildpackOrder: []string{GoBuildpack, BinaryBuildpack}, SkipDetect: true})
		if b.err != nil {
			t.Fatalf("%v\n%s", b.err, b.stdout)
		}
		want := Result{ProcessTypes: map[string]string{"web": "./run.sh"}, LifecycleType: "buildpack", DetectedBuildpack: "binary",
			LifecycleMetadata: staged("binary", GoBuildpack, BinaryBuildpack)}
		if got := readResult(t, b.out); !reflect.DeepEqual(got, want) {
			t.Fatalf("result %+v, want %+v", got, want)
		}
		if !strings.Contains(b.stdout, "-----> go_buildpack supplies Go") {
			t.Errorf("progress:\n%s", b.stdout)
		}
		noFiles(t, app, "hello")
	})
	t.Run("binary_buildpack cannot supply", func(t *testing.T) {
		b := buildWith(t, BuilderConfig{AppDir: goApp(t, nil), Command: "./run.sh", BuildpackOrder: []string{BinaryBuildpack, GoBuildpack}, SkipDetect: true})
		if b.err == nil || b.err.Error() != "binary_buildpack cannot supply dependencies to the buildpacks after it: it can only be the last buildpack" {
			t.Fatalf("got %v", b.err)
		}
	})
	t.Run("unknown buildpack", func(t *testing.T) {
		for _, skip := range []bool{true, false} {
			b := buildWith(t, BuilderConfig{AppDir: goApp(t, nil), Command: "./run.sh", BuildpackOrder: []string{"nonsense_buildpack"}, SkipDetect: skip})
			if b.err == nil || b.err.Error() != `unknown buildpack "nonsense_buildpack": the admin buildpacks are go_buildpack, binary_buildpack` {
				t.Fatalf("skip-detect %v: got %v", skip, b.err)
			}
			noFiles(t, b.out, "droplet.tgz", "result.json")
		}
	})
	t.Run("skip-detect without buildpacks", func(t *testing.T) {
		b := buildWith(t, BuilderConfig{AppDir: goApp(t, nil), Command: "./run.sh", SkipDetect: true})
		if b.err == nil || !strings.Contains(b.err.Error(), "--skip-detect needs --buildpack-order") {
			t.Fatalf("got %v", b.err)
		}
	})
	t.Run("detection within the order", func(t *testing.T) {
		// Only binary_buildpack to detect from: a Go app with a command is not built.
		app := goApp(t, nil)
		b := buildWith(t, BuilderConfig{AppDir: app, Command: "./run.sh", BuildpackOrder: binary, Go: noGo})
		if b.err != nil || b.res.LifecycleMetadata.BuildpackKey != BinaryBuildpack || !strings.Contains(b.stdout, "No Go app detected") {
			t.Fatalf("%v %+v\n%s", b.err, b.res, b.stdout)
		}
		noFiles(t, app, "hello")
		// Only go_buildpack: an app without a go.mod is detected by none.
		plain := t.TempDir()
		writeFiles(t, plain, map[string]string{"run.sh": "#!/bin/sh\n"})
		b = buildWith(t, BuilderConfig{AppDir: plain, Command: "./run.sh", BuildpackOrder: []string{GoBuildpack}})
		if b.err == nil || b.err.Error() != "no buildpack detected the app (tried go_buildpack)" {
			t.Fatalf("got %v", b.err)
		}
	})
}

func TestParseBuilderArgs(t *testing.T) {
	cfg, err := ParseBuilderArgs([]string{"--app-dir", "/a", "--output-droplet", "/d", "--result", "/r", "--command", "./x",
		"--buildpack-order", "go_buildpack, binary_buildpack", "--skip-detect"}, io.Discard)
	want := BuilderConfig{AppDir: "/a", OutputDroplet: "/d", Result: "/r", Command: "./x",
		BuildpackOrder: []string{GoBuildpack, BinaryBuildpack}, SkipDetect: true}
	if err != nil || !reflect.DeepEqual(cfg, want) {
		t.Fatalf("%+v %v", cfg, err)
	}
	if cfg, err := ParseBuilderArgs([]string{"--app-dir", "/a"}, io.Discard); err != nil || cfg.BuildpackOrder != nil || cfg.SkipDetect {
		t.Fatalf("no buildpack flags: %+v %v", cfg, err)
	}
	if _, err := ParseBuilderArgs([]string{"extra"}, io.Discard); err == nil {
		t.Fatal("an argument was accepted")
	}
	if got := AdminBuildpacks(); !reflect.DeepEqual(got, []string{GoBuildpack, BinaryBuildpack}) {
		t.Fatalf("admin buildpacks %v", got)
	}
}

func TestDropletContentModesAndLinks(t *testing.T) {
	base := t.TempDir()
	app := filepath.Join(base, "app")
	secret := filepath.Join(base, "secret.txt")
	writeFiles(t, base, map[string]string{"secret.txt": "TOP SECRET"})
	writeFiles(t, app, map[string]string{"Procfile": "web: ./bin/run\n", "bin/run": "#!/bin/sh\necho run\n",
		"conf/private.key": "key", "data/readme": "r"})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(filepath.Join(app, "bin/run"), 0o755))
	must(os.Chmod(filepath.Join(app, "conf/private.key"), 0o600))
	must(os.Chmod(filepath.Join(app, "conf"), 0o750))
	must(os.Symlink("bin/run", filepath.Join(app, "start")))          // inside
	must(os.Symlink("../secret.txt", filepath.Join(app, "escape")))   // out of the app directory
	must(os.Symlink(secret, filepath.Join(app, "absolute")))          // absolute, out
	must(os.Symlink("../", filepath.Join(app, "data/up")))            // a directory out
	must(os.Symlink("nowhere", filepath.Join(app, "dangling")))       // to nothing
	must(syscall.Mkfifo(filepath.Join(app, "fifo"), 0o644))           // not droplet material
	must(os.WriteFile(filepath.Join(app, "droplet.tgz"), nil, 0o644)) // stands where the output goes

	res, err := Build(context.Background(), BuilderConfig{AppDir: app, OutputDroplet: filepath.Join(app, "droplet.tgz"),
		Result: filepath.Join(app, "result.json")})
	if err != nil {
		t.Fatal(err)
	}
	if res.ProcessTypes["web"] != "./bin/run" {
		t.Fatalf("result %+v", res)
	}
	got := readDroplet(t, filepath.Join(app, "droplet.tgz"))
	want := map[string]entry{
		"Procfile":         {typ: tar.TypeReg, mode: 0o644, body: "web: ./bin/run\n"},
		"bin/":             {typ: tar.TypeDir, mode: 0o755},
		"bin/run":          {typ: tar.TypeReg, mode: 0o755, body: "#!/bin/sh\necho run\n"},
		"conf/":            {typ: tar.TypeDir, mode: 0o750},
		"conf/private.key": {typ: tar.TypeReg, mode: 0o600, body: "key"},
		"data/":            {typ: tar.TypeDir, mode: 0o755},
		"data/readme":      {typ: tar.TypeReg, mode: 0o644, body: "r"},
		"data/up":          {typ: tar.TypeSymlink, mode: 0o777, link: "../"},
		"start":            {typ: tar.TypeSymlink, mode: 0o777, link: "bin/run"},
		"escape":           {typ: tar.TypeSymlink, mode: 0o777, link: "../secret.txt"},
		"absolute":         {typ: tar.TypeSymlink, mode: 0o777, link: secret},
		"dangling":         {typ: tar.TypeSymlink, mode: 0o777, link: "nowhere"},
	}
	if !reflect.DeepEqual(got, want) {
		for k, w := range want {
			if g, ok := got[k]; !ok || g != w {
				t.Errorf("%s: got %+v (present %v), want %+v", k, g, ok, w)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected entry %s: %+v", k, got[k])
			}
		}
	}
	for name, e := range got {
		if strings.Contains(e.body, "TOP SECRET") {
			t.Errorf("%s carries the content of a file outside the app directory", name)
		}
	}
}

func TestRunBuilderFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := RunBuilder(context.Background(), []string{"--app-dir", t.TempDir()}, &out, &errOut); err == nil ||
		!strings.Contains(err.Error(), "--output-droplet is required") {
		t.Fatalf("missing flags: %v", err)
	}
	if err := RunBuilder(context.Background(), []string{"--nope"}, &out, &errOut); err == nil {
		t.Fatal("an unknown flag was accepted")
	}
	if err := RunBuilder(context.Background(), []string{"--help"}, &out, &errOut); err != nil || !strings.Contains(errOut.String(), "-output-droplet") {
		t.Fatalf("--help: %v %q", err, errOut.String())
	}
	app, outDir := t.TempDir(), t.TempDir()
	writeFiles(t, app, map[string]string{"Procfile": "web: ./x\n"})
	args := []string{"--app-dir", app, "--output-droplet=" + filepath.Join(outDir, "d.tgz"), "--result", filepath.Join(outDir, "r.json")}
	if err := RunBuilder(context.Background(), args, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if r := readResultFile(t, filepath.Join(outDir, "r.json")); r.ProcessTypes["web"] != "./x" {
		t.Fatalf("result %+v", r)
	}
	// The staging Task's buildpack flags.
	err := RunBuilder(context.Background(), append(args, "--buildpack-order", "nonsense_buildpack", "--skip-detect"), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `unknown buildpack "nonsense_buildpack"`) {
		t.Fatalf("unknown buildpack: %v", err)
	}
	if err := RunBuilder(context.Background(), append(args, "--buildpack-order", "binary_buildpack", "--skip-detect"), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if r := readResultFile(t, filepath.Join(outDir, "r.json")); r.LifecycleMetadata.BuildpackKey != BinaryBuildpack || r.DetectedBuildpack != "procfile" {
		t.Fatalf("result %+v", r)
	}
}

func TestGoBinaryName(t *testing.T) {
	for _, tc := range []struct{ gomod, dir, want string }{
		{"module example.com/hello\n", "", "hello"},
		{"// comment\nmodule   example.com/x/api/v3 // trailing\n", "", "api"},
		{"module \"quoted.example/srv\"\n", "", "srv"},
		{"module v2\n", "", "v2"},
		{"go 1.22\n", "", "app"},
		{"module example.com/we!rd\n", "", "app"},
		{"module example.com/hello\n", "hello", "app"}, // a directory of the app has the name
	} {
		app := t.TempDir()
		writeFiles(t, app, map[string]string{"go.mod": tc.gomod})
		if tc.dir != "" {
			os.Mkdir(filepath.Join(app, tc.dir), 0o755)
		}
		got, err := goBinaryName(app)
		if err != nil || got != tc.want {
			t.Errorf("go.mod %q: %q %v, want %q", tc.gomod, got, err, tc.want)
		}
	}
}

func TestLauncherExecsTheStartCommandAndSignalsReachIt(t *testing.T) {
	home := t.TempDir()
	app := filepath.Join(home, "app")
	if err := os.Mkdir(app, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `trap 'echo "got TERM in $PWD home=$HOME"; exit 7' TERM; echo "ready $$ $PWD"; while :; do sleep 0.02; done`
	cmd := exec.Command(os.Args[0], app, script, `{"start_command":"x"}`)
	cmd.Env = append(os.Environ(), launcherEnv+"=1", "HOME=/somewhere/else")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the launcher's output ended; stderr: %s", stderr.String())
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("no output from the launcher; stderr: %s", stderr.String())
		}
		return ""
	}
	realApp, _ := filepath.EvalSymlinks(app)
	// The shell is the launcher's own process (exec, not a child).
	if l := next(); l != fmt.Sprintf("ready %d %s", cmd.Process.Pid, realApp) && l != fmt.Sprintf("ready %d %s", cmd.Process.Pid, app) {
		t.Fatalf("first line %q, want ready %d %s", l, cmd.Process.Pid, app)
	}
	t.Logf("the start command ran after %v", time.Since(start).Round(time.Millisecond))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if l := next(); !strings.HasPrefix(l, "got TERM in ") || !strings.HasSuffix(l, " home="+home) {
		t.Fatalf("after SIGTERM: %q, want the trap's line with home=%s", l, home)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("the launcher exited with %v, want the start command's status 7", err)
	}
}

func TestLauncherRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{{t.TempDir()}, {t.TempDir(), "   "}, {"a", "b", "c", "d"}, {filepath.Join(t.TempDir(), "missing"), "true"}} {
		if err := RunLauncher(args); err == nil {
			t.Errorf("RunLauncher(%q) succeeded", args)
		}
	}
	if got := LaunchEnv([]string{"A=1", "HOME=/x", "B=2"}, "/home/vcap/app/"); !reflect.DeepEqual(got, []string{"A=1", "B=2", "HOME=/home/vcap"}) {
		t.Fatalf("LaunchEnv: %q", got)
	}
}

// With bash, a lone start command replaces the shell too: the app is the
// launcher's own process, so its exit status is the instance's.
func TestLauncherALoneCommandIsTheProcessItself(t *testing.T) {
	if shell() != "/bin/bash" {
		t.Skip("no /bin/bash: sh stays the parent of a lone command")
	}
	cmd := exec.Command(os.Args[0], t.TempDir(), "sleep 30", "")
	cmd.Env = append(os.Environ(), launcherEnv+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		if c := strings.TrimSpace(string(comm)); c != "sleep" {
			return fmt.Errorf("the launcher's process is %q, want sleep", c)
		}
		return nil
	})
}
