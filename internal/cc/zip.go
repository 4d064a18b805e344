package cc

import (
	"archive/zip"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// A package's bits arrive as a zip (the cf CLI's package.zip). Before it
// is kept, it is unpacked into a fresh directory through an os.Root (so no
// write can leave it, whatever an entry's name or a link says), checked,
// and packed again: what cells download is a clean zip with the same
// files, directories, modes and links.

// errTooLarge is a package past its size bound (answered 413).
type errTooLarge struct{ msg string }

func (e *errTooLarge) Error() string { return e.msg }

// errInvalid is a package whose content cannot be kept (answered 422).
type errInvalid struct{ msg string }

func (e *errInvalid) Error() string { return e.msg }

// zipLimits bound unpacking.
type zipLimits struct {
	maxBytes   int64 // total of all files, uncompressed
	maxEntries int   // files, directories and links
}

// maxLinkTarget bounds a symlink target.
const maxLinkTarget = 4096

// cleanEntryName turns an entry name into a slash path inside the
// destination ("" for the destination itself), or says why it cannot be.
func cleanEntryName(name string) (string, error) {
	if name == "" {
		return "", errors.New("an entry has an empty name")
	}
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("entry %q has a NUL in its name", name)
	}
	n := strings.ReplaceAll(name, `\`, "/")
	if strings.HasPrefix(n, "/") || filepath.IsAbs(name) || (len(n) >= 2 && n[1] == ':') {
		return "", fmt.Errorf("entry %q has an absolute path", name)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q climbs out of the app directory with '..'", name)
		}
	}
	n = path.Clean(n)
	if n == "." {
		return "", nil
	}
	return n, nil
}

// checkLinkTarget refuses a link at name whose target is absolute or
// leaves the directory.
func checkLinkTarget(name, target string) error {
	switch {
	case target == "":
		return fmt.Errorf("link %q has an empty target", name)
	case len(target) > maxLinkTarget:
		return fmt.Errorf("link %q has a target longer than %d bytes", name, maxLinkTarget)
	case strings.ContainsRune(target, 0):
		return fmt.Errorf("link %q has a NUL in its target", name)
	case strings.HasPrefix(target, "/") || strings.HasPrefix(target, `\`) || filepath.IsAbs(target):
		return fmt.Errorf("link %q points to the absolute path %q", name, target)
	}
	joined := path.Join(path.Dir(name), strings.ReplaceAll(target, `\`, "/"))
	if joined == ".." || strings.HasPrefix(joined, "../") {
		return fmt.Errorf("link %q points outside the app directory (%q)", name, target)
	}
	return nil
}

// unpackZip unpacks the zip at src into the directory dst (which must
// exist): regular files with their permission bits (no setuid), directories,
// and symbolic links that stay inside dst. Anything else is refused.
func unpackZip(src, dst string, lim zipLimits) error {
	zr, err := zip.OpenReader(src)
	if err != nil {
		return fmt.Errorf("it is not a valid zip archive: %v", err)
	}
	defer zr.Close()
	if len(zr.File) > lim.maxEntries {
		return fmt.Errorf("it holds %d entries, more than the %d allowed", len(zr.File), lim.maxEntries)
	}
	var declared uint64
	for _, f := range zr.File {
		declared += f.UncompressedSize64
		if declared > uint64(lim.maxBytes) {
			return &errTooLarge{fmt.Sprintf("it unpacks to more than the %d bytes allowed", lim.maxBytes)}
		}
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &zipUnpacker{root: root, max: lim.maxBytes}
	for _, f := range zr.File {
		if err := u.entry(f); err != nil {
			return err
		}
	}
	return nil
}

type zipUnpacker struct {
	root    *os.Root
	max     int64
	written int64
}

func (u *zipUnpacker) mkdirAll(name string, perm fs.FileMode) error {
	if name == "" || name == "." {
		return nil
	}
	if err := u.root.MkdirAll(name, perm|0o700); err != nil {
		return fmt.Errorf("cannot create directory %q: %v", name, err)
	}
	return nil
}

func (u *zipUnpacker) entry(f *zip.File) error {
	name, err := cleanEntryName(f.Name)
	if err != nil {
		return err
	}
	mode := f.Mode()
	switch {
	case mode.IsDir():
		return u.mkdirAll(name, mode.Perm())
	case mode&fs.ModeSymlink != 0:
		if name == "" {
			return fmt.Errorf("entry %q is a link without a name", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("entry %q: %v", f.Name, err)
		}
		target, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
		rc.Close()
		if err != nil {
			return fmt.Errorf("entry %q: %v", f.Name, err)
		}
		if err := checkLinkTarget(name, string(target)); err != nil {
			return err
		}
		if err := u.mkdirAll(path.Dir(name), 0o755); err != nil {
			return err
		}
		if err := u.root.Symlink(string(target), name); err != nil {
			return fmt.Errorf("cannot create link %q: %v", name, err)
		}
		return nil
	case mode.IsRegular():
		if name == "" {
			return fmt.Errorf("entry %q is a file without a name", f.Name)
		}
		if err := u.mkdirAll(path.Dir(name), 0o755); err != nil {
			return err
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("entry %q: %v", f.Name, err)
		}
		defer rc.Close()
		out, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm()|0o600)
		if err != nil {
			return fmt.Errorf("cannot write %q: %v", name, err)
		}
		n, err := io.Copy(out, io.LimitReader(rc, u.max-u.written+1))
		u.written += n
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("cannot unpack %q: %v", f.Name, err)
		}
		if u.written > u.max {
			return &errTooLarge{fmt.Sprintf("it unpacks to more than the %d bytes allowed", u.max)}
		}
		// The umask may have taken bits the archive gave (0755 for run.sh).
		if err := u.root.Chmod(name, mode.Perm()|0o600); err != nil {
			return fmt.Errorf("cannot set the mode of %q: %v", name, err)
		}
		return nil
	}
	return fmt.Errorf("entry %q is a %s, which an app may not hold", f.Name, mode.Type())
}

// zipEpoch is the modification time of every packed entry, so the same
// files always pack the same.
var zipEpoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// packDir writes the tree at dir as a zip to dst, and returns its SHA-1
// and SHA-256 (hex).
func packDir(dir, dst string) (sum1, sum256 string, err error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(dst)
		}
	}()
	h1, h256 := sha1.New(), sha256.New()
	zw := zip.NewWriter(io.MultiWriter(out, h1, h256))
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, werr error) error {
		if werr != nil {
			return werr
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &zip.FileHeader{Name: name, Modified: zipEpoch}
		switch {
		case d.IsDir():
			hdr.Name += "/"
			hdr.SetMode(fs.ModeDir | info.Mode().Perm())
			_, err = zw.CreateHeader(hdr)
			return err
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			// Checked again where the link really is: a link reached
			// through another link may sit elsewhere than its entry name.
			if err := checkLinkTarget(name, filepath.ToSlash(target)); err != nil {
				return &errInvalid{err.Error()}
			}
			hdr.SetMode(fs.ModeSymlink | 0o777)
			w, err := zw.CreateHeader(hdr)
			if err != nil {
				return err
			}
			_, err = io.WriteString(w, filepath.ToSlash(target))
			return err
		case info.Mode().IsRegular():
			hdr.Method = zip.Deflate
			hdr.SetMode(info.Mode().Perm())
			w, err := zw.CreateHeader(hdr)
			if err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, f)
			return err
		}
		return fmt.Errorf("%q is a %s", name, info.Mode().Type())
	})
	if err != nil {
		return "", "", err
	}
	if err = zw.Close(); err != nil {
		return "", "", err
	}
	if err = out.Close(); err != nil {
		return "", "", err
	}
	return hex.EncodeToString(h1.Sum(nil)), hex.EncodeToString(h256.Sum(nil)), nil
}
