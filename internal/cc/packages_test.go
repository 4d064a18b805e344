package cc

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/minicf/minicf/internal/cc/ccapi"
)

func testPackageUpload(t *testing.T, e *env) {
	a := e.createApp("bits")
	var matches map[string][]any
	e.mustJSON("POST", "/v3/resource_matches", map[string]any{"resources": []any{map[string]any{"path": "run.sh", "mode": "0755",
		"checksum": map[string]string{"value": "da39a3ee5e6b4b0d3255bfef95601890afd80709"}, "size_in_bytes": 10}}}, 201, &matches)
	if m, ok := matches["resources"]; !ok || len(m) != 0 {
		t.Errorf("resource_matches %v", matches)
	}
	p := e.createPackage(a.GUID)
	if p.State != ccapi.PackageAwaitingUpload || p.Type != "bits" || p.Links["upload"].Method != "POST" {
		t.Errorf("new package %+v", p)
	}
	e.wantError("POST", "/v3/packages", map[string]any{"type": "bits", "relationships": map[string]any{"app": map[string]any{"data": map[string]string{"guid": "nope"}}}},
		422, "CF-UnprocessableEntity", "App is invalid. Ensure it exists and you have access to it.")
	e.wantError("GET", "/v3/packages/nope", nil, 404, "CF-NotFound", "Package not found")

	bits := makeZip(t,
		zipEntry{name: "run.sh", mode: 0o755, body: "#!/bin/sh\necho hi\n", method: zip.Deflate},
		zipEntry{name: "sub/", mode: 0o755}, // as the cf CLI writes directories: regular-file bits and a trailing /
		zipEntry{name: "sub/data.txt", mode: 0o644, body: "data"},
		zipEntry{name: "empty", mode: 0o600},
		zipEntry{name: "link", mode: fs.ModeSymlink | 0o777, body: "sub/data.txt"},
		zipEntry{name: "sub/up", mode: fs.ModeSymlink | 0o777, body: "../run.sh"},
	)
	code, data := e.upload(p.GUID, "[]", bits)
	if code != 200 {
		t.Fatalf("upload: %d %s", code, data)
	}
	e.mustJSON("GET", "/v3/packages/"+p.GUID, nil, 200, &p)
	if p.State != ccapi.PackageReady {
		t.Fatalf("package %s after upload", p.State)
	}
	if sum, _ := p.Data["checksum"].(map[string]any); sum == nil || sum["type"] != "sha256" || len(sum["value"].(string)) != 64 {
		t.Errorf("checksum %v", p.Data["checksum"])
	}

	// What a cell downloads: the same files, modes and links.
	code, zipped := e.internalDo("GET", "/internal/v4/packages/"+p.GUID+"/download", nil)
	if code != 200 {
		t.Fatalf("download: %d %s", code, zipped)
	}
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		body, _ := io.ReadAll(rc)
		rc.Close()
		got[f.Name] = f.Mode().String() + " " + string(body)
	}
	want := map[string]string{
		"run.sh":       "-rwxr-xr-x #!/bin/sh\necho hi\n",
		"sub/":         "drwxr-xr-x ",
		"sub/data.txt": "-rw-r--r-- data",
		"empty":        "-rw------- ",
		"link":         "Lrwxrwxrwx sub/data.txt",
		"sub/up":       "Lrwxrwxrwx ../run.sh",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("download %s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("download holds %v", got)
	}

	code, data = e.upload(p.GUID, "[]", bits)
	checkError(t, "second upload", code, data, 400, "CF-PackageBitsAlreadyUploaded", "Bits may be uploaded only once. Create a new package to upload different bits.")

	// Only resources, no bits part: an empty package (every file matched).
	p2 := e.createPackage(a.GUID)
	if code, data := e.upload(p2.GUID, "[]", nil); code != 200 {
		t.Errorf("upload without bits: %d %s", code, data)
	}
	p3 := e.createPackage(a.GUID)
	code, data = e.upload(p3.GUID, `[{"fn":"x","sha1":"y","size":1,"mode":"644"}]`, nil)
	checkError(t, "matched resources", code, data, 422, "CF-AppBitsUploadInvalid", "The app upload is invalid: minicf keeps no resource cache…")

	var list ccapi.List[ccapi.Package]
	e.clock.Add(1)
	e.mustJSON("GET", "/v3/packages?app_guids="+a.GUID+"&order_by=-created_at&page=1&per_page=1", nil, 200, &list)
	if list.Pagination.TotalResults != 3 || len(list.Resources) != 1 {
		t.Errorf("packages of the app: %+v", list.Pagination)
	}
	e.mustJSON("GET", "/v3/packages?states=READY&app_guids="+a.GUID, nil, 200, &list)
	if len(list.Resources) != 2 {
		t.Errorf("READY packages: %d", len(list.Resources))
	}
}

func testPackageUploadRejected(t *testing.T, e0 *env) {
	e := newEnv(t, testSQLiteDSN(t), func(c *Config) { c.MaxPackageBytes = 64 << 10; c.MaxPackageFiles = 10 })
	a := e.createApp("bad")
	random := make([]byte, 100<<10)
	rand.Read(random)
	many := []zipEntry{}
	for i := 0; i < 11; i++ {
		many = append(many, zipEntry{name: "f" + string(rune('a'+i)), mode: 0o644})
	}
	cases := []struct {
		name   string
		bits   []byte
		status int
		title  string
		detail string
	}{
		{"oversized upload", random, 413, "CF-RequestEntityTooLarge", "The package is larger than the 65536 bytes allowed (max package size)."},
		{"zip bomb", makeZip(t, zipEntry{name: "zeros", mode: 0o644, body: strings.Repeat("\x00", 1<<20), method: zip.Deflate}), 413,
			"CF-RequestEntityTooLarge", "The package is too large: it unpacks to more than the 65536 bytes allowed."},
		{"zip slip", makeZip(t, zipEntry{name: "../evil", mode: 0o644, body: "x"}), 422, "CF-AppBitsUploadInvalid",
			`The app upload is invalid: entry "../evil" climbs out of the app directory with '..'`},
		{"deep zip slip", makeZip(t, zipEntry{name: "a/../../evil", mode: 0o644, body: "x"}), 422, "CF-AppBitsUploadInvalid",
			`The app upload is invalid: entry "a/../../evil" climbs out of the app directory with '..'`},
		{"absolute path", makeZip(t, zipEntry{name: "/tmp/evil", mode: 0o644, body: "x"}), 422, "CF-AppBitsUploadInvalid",
			`The app upload is invalid: entry "/tmp/evil" has an absolute path`},
		{"link out", makeZip(t, zipEntry{name: "evil", mode: fs.ModeSymlink | 0o777, body: "../../etc"}), 422, "CF-AppBitsUploadInvalid",
			`The app upload is invalid: link "evil" points outside the app directory ("../../etc")`},
		{"absolute link", makeZip(t, zipEntry{name: "evil", mode: fs.ModeSymlink | 0o777, body: "/etc/passwd"}), 422, "CF-AppBitsUploadInvalid",
			`The app upload is invalid: link "evil" points to the absolute path "/etc/passwd"`},
		{"link through a link", makeZip(t,
			zipEntry{name: "sub/", mode: fs.ModeDir | 0o755},
			zipEntry{name: "sub/deep", mode: fs.ModeSymlink | 0o777, body: "."},
			zipEntry{name: "sub/deep/up", mode: fs.ModeSymlink | 0o777, body: "../.."}), 422, "CF-AppBitsUploadInvalid",
			`The app upload is invalid: link "sub/up" points outside the app directory ("../..")`},
		{"write through a link out", makeZip(t,
			zipEntry{name: "out", mode: fs.ModeSymlink | 0o777, body: "."},
			zipEntry{name: "out/../../evil", mode: 0o644, body: "x"}), 422, "CF-AppBitsUploadInvalid",
			`The app upload is invalid: entry "out/../../evil" climbs out of the app directory with '..'`},
		{"too many entries", makeZip(t, many...), 422, "CF-AppBitsUploadInvalid", "The app upload is invalid: it holds 11 entries, more than the 10 allowed"},
		{"not a zip", []byte("just text"), 422, "CF-AppBitsUploadInvalid", "The app upload is invalid: it is not a valid zip archive…"},
		{"a fifo", makeZip(t, zipEntry{name: "pipe", mode: fs.ModeNamedPipe | 0o644}), 422, "CF-AppBitsUploadInvalid", `The app upload is invalid: entry "pipe" is a p…`},
	}
	p := e.createPackage(a.GUID)
	for _, c := range cases {
		code, data := e.upload(p.GUID, "[]", c.bits)
		checkError(t, c.name, code, data, c.status, c.title, c.detail)
	}
	var after ccapi.Package
	e.mustJSON("GET", "/v3/packages/"+p.GUID, nil, 200, &after)
	if after.State != ccapi.PackageAwaitingUpload {
		t.Errorf("package %s after refused uploads", after.State)
	}
	for _, dir := range []string{"packages", "tmp"} {
		if files := listFiles(t, filepath.Join(e.stateDir, dir)); len(files) != 0 {
			t.Errorf("%s holds %v after refused uploads", dir, files)
		}
	}
	for _, dir := range []string{e.stateDir, filepath.Dir(e.stateDir)} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "evil" {
				t.Errorf("%s was written", p)
			}
			return nil
		})
	}
	// The content type must be multipart.
	e.wantError("POST", "/v3/packages/"+p.GUID+"/upload", []byte("x"), 400, "CF-InvalidRequest", "The upload must be multipart/form-data with the field resources and the file bits")
	// Still good for a proper upload afterwards.
	if code, data := e.upload(p.GUID, "[]", makeZip(t, zipEntry{name: "ok", mode: 0o644, body: "ok"})); code != 200 {
		t.Errorf("good upload after refused ones: %d %s", code, data)
	}
}

// zipSeeds are archives the fuzzer starts from.
func zipSeeds(t testing.TB) [][]byte {
	return [][]byte{
		makeZip(t, zipEntry{name: "run.sh", mode: 0o755, body: "#!/bin/sh\n"}, zipEntry{name: "d/", mode: fs.ModeDir | 0o755}),
		makeZip(t, zipEntry{name: "../x", mode: 0o644, body: "x"}),
		makeZip(t, zipEntry{name: "l", mode: fs.ModeSymlink | 0o777, body: "../x"}),
		makeZip(t, zipEntry{name: "l", mode: fs.ModeSymlink | 0o777, body: "."}, zipEntry{name: "l/f", mode: 0o644, body: "f"}),
		makeZip(t, zipEntry{name: "s/", mode: fs.ModeDir | 0o755}, zipEntry{name: "s/d", mode: fs.ModeSymlink | 0o777, body: "."},
			zipEntry{name: "s/d/u", mode: fs.ModeSymlink | 0o777, body: "../.."}, zipEntry{name: "s/d/u/evil", mode: 0o644, body: "x"}),
		makeZip(t, zipEntry{name: `a\..\..\x`, mode: 0o644, body: "x"}, zipEntry{name: "C:/x", mode: 0o644}),
	}
}

// FuzzPackageZip: whatever the archive, unpacking never writes outside its
// directory, and what is accepted packs into a zip that unpacks the same.
func FuzzPackageZip(f *testing.F) {
	for _, s := range zipSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		src := filepath.Join(root, "in.zip")
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, "app")
		if err := os.Mkdir(dst, 0o700); err != nil {
			t.Fatal(err)
		}
		lim := zipLimits{maxBytes: 1 << 20, maxEntries: 200}
		uerr := unpackZip(src, dst, lim)
		entries, _ := os.ReadDir(root)
		var names []string
		for _, en := range entries {
			names = append(names, en.Name())
		}
		sort.Strings(names)
		if !equalStrings(names, []string{"app", "in.zip"}) {
			t.Fatalf("unpacking wrote outside its directory: %v", names)
		}
		if uerr != nil {
			return
		}
		out := filepath.Join(root, "out.zip")
		if _, _, err := packDir(dst, out); err != nil {
			return // a link that points out through another link: refused
		}
		again := filepath.Join(root, "again")
		os.Mkdir(again, 0o700)
		if err := unpackZip(out, again, lim); err != nil {
			t.Fatalf("a packed package does not unpack: %v", err)
		}
		if a, b := listFiles(t, dst), listFiles(t, again); !equalStrings(a, b) {
			t.Fatalf("repacking changed the files: %v vs %v", a, b)
		}
	})
}
