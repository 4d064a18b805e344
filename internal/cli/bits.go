package cli

import (
	"archive/zip"
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// MaxPackageBytes bounds the app bits a push uploads (the Cloud
// Controller's default maximum package size is 1 GB).
const MaxPackageBytes int64 = 1 << 30

// maxFiles bounds how many files one push packs.
const maxFiles = 200000

// DefaultIgnores are the files a push never uploads, as the cf CLI's:
// version control directories, Finder droppings, the manifest and the
// ignore file itself.
var DefaultIgnores = []string{".cfignore", "/manifest.yml", "/manifest.yaml", ".gitignore", ".git", ".hg", ".svn", "_darcs", ".DS_Store"}

// Resource is one file of the app's bits, as POST /v3/resource_matches and
// the upload's resources field describe it.
type Resource struct {
	Path     string `json:"path"`
	Mode     string `json:"mode"` // octal permission bits, e.g. "755"
	Checksum struct {
		Value string `json:"value"` // SHA-1
	} `json:"checksum"`
	SizeInBytes int64 `json:"size_in_bytes"`

	mode fs.FileMode // full mode (type bits too)
	abs  string      // where to read it ("" for archive entries)
	zf   *zip.File   // the entry of a pushed archive
}

// Bits is what a push uploads: the files of a directory or of an archive.
type Bits struct {
	Resources []Resource // files, symlinks and directories, sorted by path
	Size      int64      // sum of the files' sizes
	archive   *zip.ReadCloser
}

// Close releases an opened archive.
func (b *Bits) Close() error {
	if b.archive != nil {
		return b.archive.Close()
	}
	return nil
}

// Files counts the regular files.
func (b *Bits) Files() int {
	n := 0
	for _, r := range b.Resources {
		if r.mode.IsRegular() {
			n++
		}
	}
	return n
}

// Matchable lists the non-empty regular files, which resource_matches is
// asked about.
func (b *Bits) Matchable() []Resource {
	out := []Resource{}
	for _, r := range b.Resources {
		if r.mode.IsRegular() && r.SizeInBytes > 0 {
			out = append(out, r)
		}
	}
	return out
}

// GatherBits collects the files under dir, applying DefaultIgnores and
// dir/.cfignore; a .zip, .jar or .war file is pushed as the archive's
// entries.
func GatherBits(dir string) (*Bits, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		switch strings.ToLower(filepath.Ext(dir)) {
		case ".zip", ".jar", ".war":
			return gatherArchive(dir)
		}
		return nil, fmt.Errorf("%s is neither a directory nor a .zip, .jar or .war archive", dir)
	}
	ign, err := LoadIgnore(dir)
	if err != nil {
		return nil, err
	}
	b := &Bits{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if ign.Ignored(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		r := Resource{Path: rel, mode: info.Mode(), abs: p}
		r.Mode = strconv.FormatUint(uint64(info.Mode().Perm()), 8)
		switch {
		case info.Mode().IsRegular():
			r.SizeInBytes = info.Size()
			b.Size += info.Size()
			if b.Size > MaxPackageBytes {
				return fmt.Errorf("the app's files are larger than %d bytes: push less (use .cfignore)", MaxPackageBytes)
			}
		case info.IsDir():
			r.Path += "/"
		case info.Mode()&fs.ModeSymlink != 0:
		default:
			return nil // sockets, devices, pipes: not app files
		}
		if len(b.Resources) >= maxFiles {
			return fmt.Errorf("%s holds more than %d files", dir, maxFiles)
		}
		b.Resources = append(b.Resources, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := b.checksum(); err != nil {
		return nil, err
	}
	return b, nil
}

func gatherArchive(path string) (*Bits, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := &Bits{archive: zr}
	for _, f := range zr.File {
		if len(b.Resources) >= maxFiles {
			zr.Close()
			return nil, fmt.Errorf("%s holds more than %d entries", path, maxFiles)
		}
		name := strings.TrimPrefix(f.Name, "./")
		if name == "" || strings.HasPrefix(name, "/") || strings.Contains("/"+name+"/", "/../") {
			zr.Close()
			return nil, fmt.Errorf("%s: unsafe entry name %q", path, f.Name)
		}
		mode := f.Mode()
		if strings.HasSuffix(name, "/") {
			mode = fs.ModeDir | mode.Perm()
		}
		r := Resource{Path: name, mode: mode, zf: f, Mode: strconv.FormatUint(uint64(mode.Perm()), 8)}
		if mode.IsRegular() {
			r.SizeInBytes = int64(f.UncompressedSize64)
			b.Size += r.SizeInBytes
			if f.UncompressedSize64 > uint64(MaxPackageBytes) || b.Size > MaxPackageBytes {
				zr.Close()
				return nil, fmt.Errorf("%s unpacks to more than %d bytes", path, MaxPackageBytes)
			}
		}
		b.Resources = append(b.Resources, r)
	}
	sort.Slice(b.Resources, func(i, j int) bool { return b.Resources[i].Path < b.Resources[j].Path })
	if err := b.checksum(); err != nil {
		zr.Close()
		return nil, err
	}
	return b, nil
}

func (r *Resource) open() (io.ReadCloser, error) {
	if r.zf != nil {
		return r.zf.Open()
	}
	return os.Open(r.abs)
}

// checksum computes the SHA-1 of every regular file.
func (b *Bits) checksum() error {
	for i := range b.Resources {
		r := &b.Resources[i]
		if !r.mode.IsRegular() {
			continue
		}
		f, err := r.open()
		if err != nil {
			return err
		}
		h := sha1.New()
		n, err := io.Copy(h, io.LimitReader(f, r.SizeInBytes+1))
		f.Close()
		if err != nil {
			return fmt.Errorf("reading %s: %w", r.Path, err)
		}
		if n != r.SizeInBytes {
			return fmt.Errorf("%s changed while it was read", r.Path)
		}
		r.Checksum.Value = hex.EncodeToString(h.Sum(nil))
	}
	return nil
}

// WriteZip writes the bits as a zip to w, leaving out the files in
// matched (by path and checksum). File modes go into the entries' external
// attributes; directories are entries ending in "/"; symlinks are entries
// holding their target. It returns how many files, and how many bytes of
// them, it wrote.
func (b *Bits) WriteZip(w io.Writer, matched []Resource) (files int, total int64, err error) {
	skip := map[string]string{}
	for _, m := range matched {
		skip[m.Path] = m.Checksum.Value
	}
	zw := zip.NewWriter(w)
	for i := range b.Resources {
		r := &b.Resources[i]
		if sum, ok := skip[r.Path]; ok && r.mode.IsRegular() && sum == r.Checksum.Value {
			continue
		}
		h := &zip.FileHeader{Name: r.Path}
		h.SetMode(r.mode)
		switch {
		case r.mode.IsDir():
			h.Method = zip.Store
			if _, err := zw.CreateHeader(h); err != nil {
				return 0, 0, err
			}
		case r.mode&fs.ModeSymlink != 0:
			target, err := r.linkTarget()
			if err != nil {
				return 0, 0, err
			}
			h.Method = zip.Store
			fw, err := zw.CreateHeader(h)
			if err != nil {
				return 0, 0, err
			}
			if _, err := io.WriteString(fw, target); err != nil {
				return 0, 0, err
			}
		default:
			h.Method = zip.Deflate
			fw, err := zw.CreateHeader(h)
			if err != nil {
				return 0, 0, err
			}
			f, err := r.open()
			if err != nil {
				return 0, 0, err
			}
			n, err := io.Copy(fw, io.LimitReader(f, r.SizeInBytes+1))
			f.Close()
			if err != nil {
				return 0, 0, fmt.Errorf("packing %s: %w", r.Path, err)
			}
			if n != r.SizeInBytes {
				return 0, 0, fmt.Errorf("%s changed while it was packed", r.Path)
			}
			total += n
			if total > MaxPackageBytes {
				return 0, 0, fmt.Errorf("the app's files are larger than %d bytes", MaxPackageBytes)
			}
			files++
		}
	}
	return files, total, zw.Close()
}

func (r *Resource) linkTarget() (string, error) {
	if r.zf == nil {
		return os.Readlink(r.abs)
	}
	f, err := r.zf.Open()
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	return string(b), err
}

// Ignore is a set of .cfignore rules (gitignore syntax): the last
// matching rule wins, "!" re-includes, a leading "/" anchors to the app's
// root, a trailing "/" matches directories only, "*", "?", "[...]" and "**"
// glob.
type Ignore struct {
	rules []ignoreRule
}

type ignoreRule struct {
	re      *regexp.Regexp
	negate  bool
	dirOnly bool
}

// LoadIgnore reads dir/.cfignore (if any) on top of DefaultIgnores.
func LoadIgnore(dir string) (*Ignore, error) {
	lines := append([]string(nil), DefaultIgnores...)
	f, err := os.Open(filepath.Join(dir, ".cfignore"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		defer f.Close()
		sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf(".cfignore: %w", err)
		}
	}
	return CompileIgnore(lines), nil
}

// CompileIgnore compiles gitignore-style lines; blank lines and comments
// are skipped, and so are patterns that cannot be compiled.
func CompileIgnore(lines []string) *Ignore {
	ig := &Ignore{}
	for _, line := range lines {
		line = strings.TrimRight(line, "\r")
		if !strings.HasSuffix(line, `\ `) {
			line = strings.TrimRight(line, " \t")
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var r ignoreRule
		if strings.HasPrefix(line, "!") {
			r.negate, line = true, line[1:]
		} else if strings.HasPrefix(line, `\!`) || strings.HasPrefix(line, `\#`) {
			line = line[1:]
		}
		if strings.HasSuffix(line, "/") {
			r.dirOnly, line = true, strings.TrimRight(line, "/")
		}
		if line == "" {
			continue
		}
		anchored := strings.Contains(line, "/")
		line = strings.TrimPrefix(line, "/")
		expr := globRegexp(line)
		if anchored {
			expr = "^" + expr + "$"
		} else {
			expr = "^(?:.*/)?" + expr + "$"
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			continue
		}
		r.re = re
		ig.rules = append(ig.rules, r)
	}
	return ig
}

// globRegexp translates a gitignore glob to a regular expression.
func globRegexp(g string) string {
	var b strings.Builder
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch {
		case strings.HasPrefix(g[i:], "**/") && (i == 0 || g[i-1] == '/'):
			b.WriteString("(?:.*/)?")
			i += 2
		case strings.HasPrefix(g[i:], "**") && i+2 == len(g) && (i == 0 || g[i-1] == '/'):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '\\' && i+1 < len(g):
			i++
			b.WriteString(regexp.QuoteMeta(string(g[i])))
		case c == '[':
			end := strings.IndexByte(g[i+1:], ']')
			if end < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := g[i+1 : i+1+end]
			if end == 0 { // "[]...]": a literal ] first
				if e2 := strings.IndexByte(g[i+2:], ']'); e2 >= 0 {
					class = g[i+1 : i+2+e2]
					end = e2 + 1
				}
			}
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			class = strings.ReplaceAll(class, `\`, `\\`)
			class = strings.ReplaceAll(class, `[`, `\[`)
			b.WriteString("(?:[" + class + "])")
			i += end + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return b.String()
}

// Ignored reports whether the slash-separated relative path is ignored.
func (ig *Ignore) Ignored(rel string, isDir bool) bool {
	ignored := false
	for _, r := range ig.rules {
		if r.dirOnly && !isDir {
			continue
		}
		if r.re.MatchString(rel) {
			ignored = !r.negate
		}
	}
	return ignored
}
