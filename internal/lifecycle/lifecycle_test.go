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
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	res, err := Build(context.Background(), BuilderConfig{AppDir: appDir, OutputDroplet: filepath.Join(out, "droplet.tgz"),
		Result: filepath.Join(out, "result.json"), Command: command, Stdout: &stdout, Stderr: &stderr})
	t.Logf("staged in %v", time.Since(start).Round(time.Millisecond))
	return built{res, err, stdout.String(), stderr.String(), out}
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
		DetectedBuildpack: "go"}
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
			Result{ProcessTypes: map[string]string{"web": "./run.sh --port $PORT", "clock": "./clock"}, LifecycleType: "buildpack", DetectedBuildpack: "procfile"},
			"-----> Procfile detected\n"},
		{"command", "python3 -m http.server $PORT", map[string]string{"index.html": "hi"},
			Result{ProcessTypes: map[string]string{"web": "python3 -m http.server $PORT"}, LifecycleType: "buildpack", DetectedBuildpack: "binary"},
			"-----> No Go app detected"},
		{"command wins over the Procfile", "./other", map[string]string{"Procfile": "web: ./run\n"},
			Result{ProcessTypes: map[string]string{"web": "./other"}, LifecycleType: "buildpack", DetectedBuildpack: "binary"}, ""},
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		if strings.TrimSpace(string(comm)) == "sleep" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the launcher's process is %q, want sleep", comm)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
