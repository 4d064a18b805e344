package garden

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/testutil"
)

// newGarden makes a Garden on a fresh root, with ports from a random place
// in a band of its own (other packages' tests run at the same time), and
// checks when the test ends that no container, process or port is left.
func newGarden(t *testing.T) *Garden {
	t.Helper()
	root := t.TempDir()
	g, err := NewProcessGarden(ProcessConfig{Root: root, PortRangeStart: 62000 + rand.IntN(1500), AdoptPollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroyAll(t, g) })
	return g
}

// destroyAll destroys what a test left and checks that nothing remains.
func destroyAll(t *testing.T, g *Garden) {
	t.Helper()
	infos, err := g.Containers()
	if err != nil {
		t.Error(err)
		return
	}
	var pids []int
	for _, info := range infos {
		for _, p := range info.Processes {
			pids = append(pids, p.PID)
		}
		if err := g.Destroy(context.Background(), info.Handle, 0); err != nil {
			t.Error(err)
		}
	}
	assertGone(t, g, pids)
}

func assertGone(t *testing.T, g *Garden, pids []int) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(g.Root(), "containers"))
	if err != nil {
		t.Error(err)
	}
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
	for _, pid := range pids {
		if groupAlive(pid) {
			t.Errorf("process group %d is still alive", pid)
		}
	}
	reserved.Lock()
	defer reserved.Unlock()
	for p, o := range reserved.m {
		if strings.HasPrefix(o, g.Root()+"\x00") {
			t.Errorf("port %d still reserved for %q", p, o)
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCreateFromDirectory(t *testing.T) {
	g := newGarden(t)
	src := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(src, "sub", "deep"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "sub", "deep", "data.txt"), []byte("data"), 0o644))
	must(t, os.Symlink("sub/deep/data.txt", filepath.Join(src, "link")))

	for i, source := range []string{src, "file://" + src} {
		h := "dir-" + strconv.Itoa(i)
		info, err := g.Create(ctxT(t), ContainerSpec{Handle: h, Source: source, MemoryMB: 64,
			NetIn: []NetIn{{ContainerPort: 8080}}, Properties: map[string]string{"process_guid": "pg", "index": "0"}})
		if err != nil {
			t.Fatal(err)
		}
		app := filepath.Join(info.Dir, "app")
		if b, err := os.ReadFile(filepath.Join(app, "link")); err != nil || string(b) != "data" {
			t.Fatalf("link through the copy: %q, %v", b, err)
		}
		fi, err := os.Stat(filepath.Join(app, "run.sh"))
		if err != nil || fi.Mode().Perm()&0o100 == 0 {
			t.Fatalf("run.sh lost its mode: %v %v", fi, err)
		}
		if info.ExternalIP != "127.0.0.1" || info.ContainerIP != "127.0.0.1" {
			t.Fatalf("addresses: %+v", info)
		}
		if len(info.MappedPorts) != 1 || info.MappedPorts[0].ContainerPort != 8080 || info.BindPorts[8080] != info.MappedPorts[0].HostPort {
			t.Fatalf("ports: %+v %+v", info.MappedPorts, info.BindPorts)
		}
		got, err := g.Info(h)
		if err != nil || got.Properties["process_guid"] != "pg" || got.MemoryMB != 64 {
			t.Fatalf("Info: %+v %v", got, err)
		}
		if _, err := os.Stat(filepath.Join(info.Dir, MetadataFile)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.Create(ctxT(t), ContainerSpec{Handle: "dir-0"}); err == nil || !strings.Contains(err.Error(), "dir-0 already exists") {
		t.Fatalf("second create: %v", err)
	}
}

func TestCreateWithoutSourceAndBadHandles(t *testing.T) {
	g := newGarden(t)
	if _, err := g.Create(ctxT(t), ContainerSpec{Handle: "empty"}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"", "..", "a/b", ".hidden", "x y"} {
		if _, err := g.Create(ctxT(t), ContainerSpec{Handle: h}); err == nil {
			t.Errorf("handle %q accepted", h)
		}
	}
	if _, err := g.Info("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Info of nothing: %v", err)
	}
}

type entry struct {
	name, body, link string
	typ              byte
}

func makeTar(t *testing.T, gz bool, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var zw *gzip.Writer
	var tw *tar.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	} else {
		tw = tar.NewWriter(&buf)
	}
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		must(t, tw.WriteHeader(hdr))
		if typ == tar.TypeReg {
			_, err := tw.Write([]byte(e.body))
			must(t, err)
		}
	}
	must(t, tw.Close())
	if zw != nil {
		must(t, zw.Close())
	}
	return buf.Bytes()
}

func serve(t *testing.T, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/app.tgz" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/app.tgz"
}

func TestCreateFromTGZOverHTTP(t *testing.T) {
	g := newGarden(t)
	tgz := makeTar(t, true,
		entry{name: "./", typ: tar.TypeDir},
		entry{name: "./bin/", typ: tar.TypeDir},
		entry{name: "./bin/start", body: "#!/bin/sh\n"},
		entry{name: "./lib/x/y.txt", body: "nested, no dir entry"},
		entry{name: "./current", link: "bin/start", typ: tar.TypeSymlink},
		entry{name: "./hard", link: "./bin/start", typ: tar.TypeLink},
	)
	url := serve(t, tgz)
	info, err := g.Create(ctxT(t), ContainerSpec{Handle: "tgz", Source: url})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"bin/start": "#!/bin/sh\n", "lib/x/y.txt": "nested, no dir entry", "current": "#!/bin/sh\n", "hard": "#!/bin/sh\n"} {
		b, err := os.ReadFile(filepath.Join(info.Dir, "app", name))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q %v", name, b, err)
		}
	}
	// No download left in tmp/.
	if entries, _ := os.ReadDir(filepath.Join(info.Dir, "tmp")); len(entries) != 0 {
		t.Errorf("tmp/ holds %v", entries)
	}
	// A 404 names the container and the problem.
	_, err = g.Create(ctxT(t), ContainerSpec{Handle: "missing", Source: strings.TrimSuffix(url, "app.tgz") + "nope.tgz"})
	if err == nil || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404: %v", err)
	}
	// The same archive as a local file, plain tar, and zip.
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "app.tgz"), tgz, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "app.tar"), makeTar(t, false, entry{name: "a.txt", body: "tar"}), 0o644))
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("z/b.txt")
	w.Write([]byte("zip"))
	must(t, zw.Close())
	must(t, os.WriteFile(filepath.Join(dir, "app.zip"), zbuf.Bytes(), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "server"), []byte("a binary"), 0o755))
	for h, c := range map[string][2]string{
		"local-tgz": {filepath.Join(dir, "app.tgz"), "bin/start"},
		"local-tar": {"file://" + filepath.Join(dir, "app.tar"), "a.txt"},
		"local-zip": {filepath.Join(dir, "app.zip"), "z/b.txt"},
		"one-file":  {filepath.Join(dir, "server"), "server"},
	} {
		info, err := g.Create(ctxT(t), ContainerSpec{Handle: h, Source: c[0]})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(info.Dir, "app", c[1])); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
}

func TestCreateRefusesEscapingEntries(t *testing.T) {
	g := newGarden(t)
	outside := t.TempDir()
	cases := map[string][]entry{
		"dotdot":         {{name: "../../../../" + filepath.Base(outside) + "/evil", body: "x"}},
		"dotdot-inside":  {{name: "a/../../evil", body: "x"}},
		"absolute":       {{name: filepath.Join(outside, "evil"), body: "x"}},
		"symlink-abs":    {{name: "l", link: outside, typ: tar.TypeSymlink}, {name: "l/evil", body: "x"}},
		"symlink-up":     {{name: "l", link: "../..", typ: tar.TypeSymlink}},
		"symlink-nested": {{name: "d/l", link: "../../x", typ: tar.TypeSymlink}},
		"hardlink-out":   {{name: "h", link: "../../etc/passwd", typ: tar.TypeLink}},
		"device":         {{name: "dev", typ: tar.TypeChar}},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "app.tgz")
			must(t, os.WriteFile(src, makeTar(t, true, entries...), 0o644))
			_, err := g.Create(ctxT(t), ContainerSpec{Handle: "bad-" + name, Source: src, NetIn: []NetIn{{ContainerPort: 8080}}})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "bad-"+name) {
				t.Errorf("the error does not name the container: %v", err)
			}
			t.Log(err)
			if _, err := os.Stat(filepath.Join(g.Root(), "containers", "bad-"+name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the failed container's directory is left: %v", err)
			}
		})
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("written outside: %v", entries)
	}
	// A directory source with a link pointing out is refused too.
	src := t.TempDir()
	must(t, os.Symlink("/etc", filepath.Join(src, "etc")))
	if _, err := g.Create(ctxT(t), ContainerSpec{Handle: "dir-link", Source: src}); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("dir with an escaping link: %v", err)
	}
}

func TestCreateBoundsUnpackedSize(t *testing.T) {
	root := t.TempDir()
	g, err := NewProcessGarden(ProcessConfig{Root: root, PortRangeStart: 62000 + rand.IntN(1500), MaxSourceBytes: 1000})
	must(t, err)
	t.Cleanup(func() { destroyAll(t, g) })
	// Compresses to far less than 1000 bytes, unpacks to far more.
	tgz := makeTar(t, true, entry{name: "zeros", body: strings.Repeat("\x00", 100_000)})
	if len(tgz) > 1000 {
		t.Fatalf("the archive is %d bytes", len(tgz))
	}
	src := filepath.Join(t.TempDir(), "bomb.tgz")
	must(t, os.WriteFile(src, tgz, 0o644))
	_, err = g.Create(ctxT(t), ContainerSpec{Handle: "bomb", Source: src})
	if err == nil || !strings.Contains(err.Error(), "more than the 1000 bytes") {
		t.Fatalf("bomb: %v", err)
	}
	// Over HTTP the download itself is bounded.
	_, err = g.Create(ctxT(t), ContainerSpec{Handle: "big", Source: serve(t, make([]byte, 5000))})
	if err == nil || !strings.Contains(err.Error(), "1000") {
		t.Fatalf("big download: %v", err)
	}
}

func TestPortsAreDistinctAndBindable(t *testing.T) {
	g := newGarden(t)
	seen := map[uint32]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := fmt.Sprintf("ports-%d", i)
			info, err := g.Create(ctxT(t), ContainerSpec{Handle: h,
				NetIn: []NetIn{{ContainerPort: 8080}, {ContainerPort: 61001}}, LocalPorts: []uint32{61002}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if len(info.BindPorts) != 3 || len(info.MappedPorts) != 2 {
				t.Errorf("%s: %+v", h, info)
			}
			for _, p := range info.BindPorts {
				if other, dup := seen[p]; dup {
					t.Errorf("port %d given to %s and %s", p, other, h)
				}
				seen[p] = h
			}
		}()
	}
	wg.Wait()
	var lns []net.Listener
	for p := range seen {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p))))
		if err != nil {
			t.Fatalf("port %d is not bindable: %v", p, err)
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		ln.Close()
	}
	// A port someone listens on is skipped.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer busy.Close()
	bp := busy.Addr().(*net.TCPAddr).Port
	g2, err := NewProcessGarden(ProcessConfig{Root: t.TempDir(), PortRangeStart: bp, PortRangeEnd: min(bp+50, 65535)})
	must(t, err)
	t.Cleanup(func() { destroyAll(t, g2) })
	info, err := g2.Create(ctxT(t), ContainerSpec{Handle: "busy", NetIn: []NetIn{{ContainerPort: 8080}}})
	must(t, err)
	if info.MappedPorts[0].HostPort == uint32(bp) {
		t.Fatalf("the busy port %d was handed out", bp)
	}
}

func TestRunCapturesOutput(t *testing.T) {
	g := newGarden(t)
	info, err := g.Create(ctxT(t), ContainerSpec{Handle: "out"})
	must(t, err)
	var stdout, stderr syncBuffer
	p, err := g.Run(ctxT(t), "out", ProcessSpec{Path: "/bin/sh",
		Args:   []string{"-c", `echo "out $GREETING from $(pwd)"; echo err >&2; exit 3`},
		Env:    []string{"GREETING=hello"},
		Stdout: &stdout, Stderr: &stderr, LogName: "app"})
	must(t, err)
	if p.ID() != "app" || p.PID() <= 0 {
		t.Fatalf("id %q pid %d", p.ID(), p.PID())
	}
	status, err := p.Wait()
	if err != nil || status != 3 {
		t.Fatalf("Wait: %d %v", status, err)
	}
	want := "out hello from " + filepath.Join(info.Dir, "app") + "\n"
	if stdout.String() != want || stderr.String() != "err\n" {
		t.Fatalf("writers: %q %q", stdout.String(), stderr.String())
	}
	b, _ := os.ReadFile(filepath.Join(info.Dir, "logs", "app.stdout.log"))
	e, _ := os.ReadFile(filepath.Join(info.Dir, "logs", "app.stderr.log"))
	if string(b) != want || string(e) != "err\n" {
		t.Fatalf("log files: %q %q", b, e)
	}
	// A second process with the same log name gets its own ID and files;
	// a relative Dir is inside the container.
	p2, err := g.Run(ctxT(t), "out", ProcessSpec{Path: "/bin/sh", Args: []string{"-c", "pwd; kill -TERM $$"}, Dir: "tmp", LogName: "app"})
	must(t, err)
	if status, _ := p2.Wait(); status != 128+int(syscall.SIGTERM) {
		t.Fatalf("killed by TERM: status %d", status)
	}
	if p2.ID() != "app-2" {
		t.Fatalf("second id %q", p2.ID())
	}
	b, _ = os.ReadFile(filepath.Join(info.Dir, "logs", "app-2.stdout.log"))
	if string(b) != filepath.Join(info.Dir, "tmp")+"\n" {
		t.Fatalf("second log: %q", b)
	}
	got, _ := g.Info("out")
	if len(got.Processes) != 2 {
		t.Fatalf("processes: %+v", got.Processes)
	}
	if _, err := g.Run(ctxT(t), "nope", ProcessSpec{Path: "/bin/true"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("run in nothing: %v", err)
	}
	if _, err := g.Run(ctxT(t), "out", ProcessSpec{Path: "/does/not/exist"}); err == nil || !strings.Contains(err.Error(), "out") {
		t.Fatalf("bad path: %v", err)
	}
}

func TestDestroyStopsGracefullyAndIsIdempotent(t *testing.T) {
	g := newGarden(t)
	info, err := g.Create(ctxT(t), ContainerSpec{Handle: "calm", NetIn: []NetIn{{ContainerPort: 8080}}})
	must(t, err)
	var out syncBuffer
	p, err := g.Run(ctxT(t), "calm", ProcessSpec{Path: "/bin/sh", Stdout: &out,
		Args: []string{"-c", `trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done`}})
	must(t, err)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "ready") {
			return errors.New("not ready")
		}
		return nil
	})
	start := time.Now()
	must(t, g.Destroy(ctxT(t), "calm", 10*time.Second))
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a process that exits on TERM took %v", d)
	}
	if status, _ := p.Wait(); status != 0 || !strings.Contains(out.String(), "bye") {
		t.Fatalf("status %d, output %q", status, out.String())
	}
	if _, err := os.Stat(info.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir: %v", err)
	}
	must(t, g.Destroy(ctxT(t), "calm", 0))
	must(t, g.Destroy(ctxT(t), "never-was", 0))
	assertGone(t, g, []int{p.PID()})
}

func TestDestroyKillsAfterGrace(t *testing.T) {
	g := newGarden(t)
	info, err := g.Create(ctxT(t), ContainerSpec{Handle: "stubborn", NetIn: []NetIn{{ContainerPort: 8080}, {ContainerPort: 61001}}})
	must(t, err)
	var out syncBuffer
	// The shell and its sleeps ignore TERM (ignored signals are inherited).
	p, err := g.Run(ctxT(t), "stubborn", ProcessSpec{Path: "/bin/sh", Stdout: &out,
		Args: []string{"-c", `trap '' TERM; echo ready; while :; do sleep 0.05; done`}})
	must(t, err)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "ready") {
			return errors.New("not ready")
		}
		return nil
	})
	grace := 300 * time.Millisecond
	start := time.Now()
	must(t, g.Destroy(ctxT(t), "stubborn", grace))
	if d := time.Since(start); d < grace {
		t.Fatalf("killed after %v, before the grace period", d)
	}
	if status, _ := p.Wait(); status != 128+int(syscall.SIGKILL) {
		t.Fatalf("status %d", status)
	}
	if _, err := os.Stat(info.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir: %v", err)
	}
	assertGone(t, g, []int{p.PID()})
	// The ports are free again: bindable, and handed out anew.
	for _, m := range info.MappedPorts {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(m.HostPort))))
		if err != nil {
			t.Fatalf("port %d: %v", m.HostPort, err)
		}
		ln.Close()
	}
	again, err := g.Create(ctxT(t), ContainerSpec{Handle: "again", NetIn: []NetIn{{ContainerPort: 8080}}})
	must(t, err)
	if again.MappedPorts[0].HostPort != info.MappedPorts[0].HostPort {
		t.Fatalf("port %d not reused (got %d)", info.MappedPorts[0].HostPort, again.MappedPorts[0].HostPort)
	}
}

func TestSecondGardenAdopts(t *testing.T) {
	g1 := newGarden(t)
	info, err := g1.Create(ctxT(t), ContainerSpec{Handle: "kept", NetIn: []NetIn{{ContainerPort: 8080}},
		Properties: map[string]string{"process_guid": "pg-1", "index": "2"}})
	must(t, err)
	p1, err := g1.Run(ctxT(t), "kept", ProcessSpec{Path: "/bin/sh", Args: []string{"-c", "exec sleep 30"}, LogName: "app"})
	must(t, err)
	_, err = g1.Run(ctxT(t), "kept", ProcessSpec{Path: "/bin/sh", Args: []string{"-c", "exit 0"}, LogName: "gone"})
	must(t, err)
	_, err = g1.Create(ctxT(t), ContainerSpec{Handle: "empty"})
	must(t, err)

	g2, err := NewProcessGarden(ProcessConfig{Root: g1.Root(), PortRangeStart: g1.cfg.PortRangeStart, AdoptPollInterval: 20 * time.Millisecond})
	must(t, err)
	// The second Garden does not hand out the first one's ports.
	other, err := g2.Create(ctxT(t), ContainerSpec{Handle: "other", NetIn: []NetIn{{ContainerPort: 8080}}})
	must(t, err)
	if other.MappedPorts[0].HostPort == info.MappedPorts[0].HostPort {
		t.Fatal("port handed out twice")
	}
	must(t, g2.Destroy(ctxT(t), "other", 0))

	infos, err := g2.Containers()
	must(t, err)
	if len(infos) != 2 || infos[1].Handle != "kept" || infos[1].Properties["index"] != "2" ||
		infos[1].MappedPorts[0] != info.MappedPorts[0] || len(infos[1].Processes) != 2 {
		t.Fatalf("Containers: %+v", infos)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		procs, err := g2.Adopt("kept")
		if err != nil {
			return err
		}
		if len(procs) != 1 || procs[0].ID() != "app" || procs[0].PID() != p1.PID() {
			return fmt.Errorf("adopted %v", procs)
		}
		return nil
	})
	procs, _ := g2.Adopt("kept")
	if none, err := g2.Adopt("empty"); err != nil || len(none) != 0 {
		t.Fatalf("empty: %v %v", none, err)
	}
	waited := make(chan error, 1)
	go func() {
		status, err := procs[0].Wait()
		if status != -1 {
			err = fmt.Errorf("status %d", status)
		}
		waited <- err
	}()
	must(t, procs[0].Signal(syscall.SIGTERM))
	select {
	case err := <-waited:
		if !errors.Is(err, ErrExitStatusUnknown) {
			t.Fatalf("Wait of an adopted process: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait of an adopted process did not return")
	}
	must(t, g2.Destroy(ctxT(t), "kept", time.Second))
	must(t, g2.Destroy(ctxT(t), "empty", time.Second))
	assertGone(t, g2, []int{p1.PID()})
}

func TestAdoptedProcessIsDestroyed(t *testing.T) {
	g1 := newGarden(t)
	_, err := g1.Create(ctxT(t), ContainerSpec{Handle: "h"})
	must(t, err)
	p, err := g1.Run(ctxT(t), "h", ProcessSpec{Path: "/bin/sh", Args: []string{"-c", "trap '' TERM; echo trapped; while :; do sleep 0.05; done"}})
	must(t, err)
	// SIGTERM must come after the trap, or the shell dies of it.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		out, _ := os.ReadFile(filepath.Join(g1.Root(), "containers", "h", "logs", p.ID()+".stdout.log"))
		if !strings.Contains(string(out), "trapped") {
			return errors.New("the shell has not set its trap yet")
		}
		return nil
	})
	g2, err := NewProcessGarden(ProcessConfig{Root: g1.Root(), PortRangeStart: g1.cfg.PortRangeStart})
	must(t, err)
	procs, err := g2.Adopt("h")
	must(t, err)
	if len(procs) != 1 {
		t.Fatalf("adopted %d", len(procs))
	}
	must(t, g2.Destroy(ctxT(t), "h", 100*time.Millisecond))
	if status, _ := p.Wait(); status != 128+int(syscall.SIGKILL) {
		t.Fatalf("status %d", status)
	}
	assertGone(t, g2, []int{p.PID()})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
