package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestIgnoreRules(t *testing.T) {
	ig := CompileIgnore(append(append([]string(nil), DefaultIgnores...),
		"# comment", "", "*.log", "!keep.log", "secret/", "docs/*.md", "**/tmp", "a/**/b", "build/**", "[abc].txt", "?.c", `\#hash`, "trailing   "))
	for _, tc := range []struct {
		path string
		dir  bool
		want bool
	}{
		{".git", true, true},
		{"sub/.git", true, true},
		{".gitignore", false, true},
		{".cfignore", false, true},
		{".DS_Store", false, true},
		{"x/.DS_Store", false, true},
		{"manifest.yml", false, true},
		{"sub/manifest.yml", false, false},
		{"app.log", false, true},
		{"x/y/app.log", false, true},
		{"keep.log", false, false},
		{"secret", true, true},
		{"secret", false, false},
		{"docs/a.md", false, true},
		{"x/docs/a.md", false, false},
		{"docs/sub/a.md", false, false},
		{"tmp", true, true},
		{"a/b/tmp", false, true},
		{"a/b", false, true},
		{"a/x/y/b", false, true},
		{"build", true, false},
		{"build/x/y", false, true},
		{"a.txt", false, true},
		{"d.txt", false, false},
		{"x.c", false, true},
		{"xy.c", false, false},
		{"#hash", false, true},
		{"trailing", false, true},
		{"main.go", false, false},
	} {
		if got := ig.Ignored(tc.path, tc.dir); got != tc.want {
			t.Errorf("Ignored(%q, dir=%v) = %v, want %v", tc.path, tc.dir, got, tc.want)
		}
	}
}

func TestGatherBits(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"run.sh*":           "#!/bin/sh",
		"lib/a.txt":         "a",
		"node_modules/x.js": "x",
		".cfignore":         "node_modules/\n",
		"empty":             "",
	})
	if err := os.Symlink("lib/a.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "emptydir"), 0o750); err != nil {
		t.Fatal(err)
	}
	b, err := GatherBits(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range b.Resources {
		got = append(got, r.Path+" "+r.Mode)
	}
	diffLines(t, "resources", got, []string{"empty 644", "emptydir/ 750", "lib/ 755", "lib/a.txt 644", "link 777", "run.sh 755"})
	if b.Files() != 3 || b.Size != 10 {
		t.Errorf("Files %d Size %d", b.Files(), b.Size)
	}
	var matchable []string
	for _, r := range b.Matchable() {
		matchable = append(matchable, r.Path)
	}
	diffLines(t, "matchable", matchable, []string{"lib/a.txt", "run.sh"})
	if b.Resources[3].Checksum.Value != "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8" { // sha1("a")
		t.Errorf("sha1 of lib/a.txt: %s", b.Resources[3].Checksum.Value)
	}

	// Matched files are left out of the zip.
	var buf bytes.Buffer
	files, size, err := b.WriteZip(&buf, []Resource{b.Resources[3]})
	if err != nil {
		t.Fatal(err)
	}
	entries := zipEntries(t, buf.Bytes())
	var names []string
	for n, v := range entries {
		names = append(names, n+" "+v)
	}
	sort.Strings(names)
	diffLines(t, "zip", names, []string{
		`empty -rw-r--r-- ""`,
		`emptydir/ drwxr-x--- ""`,
		`lib/ drwxr-xr-x ""`,
		`link Lrwxrwxrwx "lib/a.txt"`,
		`run.sh -rwxr-xr-x "#!/bin/sh"`,
	})
	if files != 2 || size != 9 {
		t.Errorf("WriteZip: %d files, %d bytes", files, size)
	}
	if _, err := GatherBits(filepath.Join(dir, "run.sh")); err == nil || !strings.Contains(err.Error(), "neither a directory nor") {
		t.Errorf("a plain file: %v", err)
	}
}
