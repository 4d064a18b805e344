package garden

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// populate puts the source's files into dst (the container's app/).
// Every write goes through an os.Root on dst, so nothing lands outside it,
// whatever the archive holds; names that try (absolute, "..", links that
// point out) are refused with a message saying which entry.
func (g *Garden) populate(ctx context.Context, handle, source, dst string) error {
	if source == "" {
		return nil
	}
	fail := func(err error) error {
		return fmt.Errorf("garden: container %s: source %s: %w", handle, redact(source), err)
	}
	local := source
	if u, err := url.Parse(source); err == nil && u.Scheme != "" && len(u.Scheme) > 1 {
		switch u.Scheme {
		case "file":
			if u.Host != "" && u.Host != "localhost" {
				return fail(fmt.Errorf("a file:// URL must name a local file, not one on %q", u.Host))
			}
			local = u.Path
		case "http", "https":
			tmp, err := g.download(ctx, source, filepath.Join(filepath.Dir(dst), "tmp"))
			if err != nil {
				return fail(err)
			}
			defer os.Remove(tmp)
			local = tmp
		default:
			return fail(fmt.Errorf("the scheme %q is not supported (a path, file://, http:// or https://)", u.Scheme))
		}
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return fail(err)
	}
	defer root.Close()
	u := &unpacker{root: root, max: g.cfg.MaxSourceBytes, ctx: ctx}
	fi, err := os.Stat(local)
	if err != nil {
		return fail(err)
	}
	switch {
	case fi.IsDir():
		err = u.copyDir(local)
	case fi.Mode().IsRegular():
		err = u.file(local)
	default:
		err = fmt.Errorf("%s is neither a directory nor a regular file", local)
	}
	if err != nil {
		return fail(err)
	}
	return nil
}

// redact drops credentials from a URL before it goes into an error.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

func (g *Garden) download(ctx context.Context, src, tmpDir string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return "", err
	}
	resp, err := g.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the download answered %s", resp.Status)
	}
	if resp.ContentLength > g.cfg.MaxSourceBytes {
		return "", fmt.Errorf("the download is %d bytes, more than the %d allowed", resp.ContentLength, g.cfg.MaxSourceBytes)
	}
	f, err := os.CreateTemp(tmpDir, ".source-*")
	if err != nil {
		return "", err
	}
	n, err := io.Copy(f, io.LimitReader(resp.Body, g.cfg.MaxSourceBytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > g.cfg.MaxSourceBytes {
		err = fmt.Errorf("the download is more than the %d bytes allowed", g.cfg.MaxSourceBytes)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("cannot download: %w", err)
	}
	return f.Name(), nil
}

type unpacker struct {
	ctx     context.Context
	root    *os.Root
	max     int64
	written int64
	entries int
}

func (u *unpacker) count() error {
	u.entries++
	if u.entries > MaxSourceEntries {
		return fmt.Errorf("it holds more than %d entries", MaxSourceEntries)
	}
	if u.entries%256 == 0 {
		return u.ctx.Err()
	}
	return nil
}

// cleanName turns an archive entry name into a relative slash path inside
// the destination, or refuses it.
func cleanName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("entry %q has a NUL in its name", name)
	}
	n := strings.ReplaceAll(name, `\`, "/")
	if strings.HasPrefix(n, "/") || filepath.IsAbs(name) {
		return "", fmt.Errorf("entry %q has an absolute path", name)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q climbs out with '..'", name)
		}
	}
	n = path.Clean(n)
	if n == "." {
		return "", nil
	}
	return n, nil
}

// checkLink refuses a symlink at name whose target leaves the destination.
func checkLink(name, target string) error {
	if target == "" {
		return fmt.Errorf("link %q has an empty target", name)
	}
	if strings.HasPrefix(target, "/") || filepath.IsAbs(target) {
		return fmt.Errorf("link %q points to the absolute path %q", name, target)
	}
	joined := path.Join(path.Dir(name), target)
	if joined == ".." || strings.HasPrefix(joined, "../") {
		return fmt.Errorf("link %q points outside the app directory (%q)", name, target)
	}
	return nil
}

func (u *unpacker) mkdir(name string, mode fs.FileMode) error {
	if name == "" {
		return nil
	}
	if err := u.root.MkdirAll(name, mode.Perm()|0o700); err != nil {
		return fmt.Errorf("cannot create directory %q: %w", name, err)
	}
	return nil
}

// write copies r into name, counting against the size bound. Modes keep
// only the permission bits (no setuid), and the owner can always write.
func (u *unpacker) write(name string, mode fs.FileMode, r io.Reader) error {
	if dir := path.Dir(name); dir != "." {
		if err := u.mkdir(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm()|0o600)
	if err != nil {
		return fmt.Errorf("cannot write %q: %w", name, err)
	}
	left := u.max - u.written
	n, err := io.Copy(f, io.LimitReader(r, left+1))
	u.written += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot write %q: %w", name, err)
	}
	if u.written > u.max {
		return fmt.Errorf("it unpacks to more than the %d bytes allowed", u.max)
	}
	return nil
}

func (u *unpacker) symlink(name, target string) error {
	if err := checkLink(name, target); err != nil {
		return err
	}
	if dir := path.Dir(name); dir != "." {
		if err := u.mkdir(dir, 0o755); err != nil {
			return err
		}
	}
	if err := u.root.Symlink(target, name); err != nil {
		return fmt.Errorf("cannot create link %q: %w", name, err)
	}
	return nil
}

// copyDir copies a directory tree. Symbolic links are copied as links and
// must stay inside the tree; other special files are refused.
func (u *unpacker) copyDir(src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := u.count(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if name == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return u.mkdir(name, info.Mode())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return u.symlink(name, filepath.ToSlash(target))
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return u.write(name, info.Mode(), f)
		default:
			return fmt.Errorf("%q is a %s, which an app may not hold", name, info.Mode().Type())
		}
	})
}

// file unpacks an archive (gzip'd tar, tar or zip, told by its first bytes)
// or copies any other file as is.
func (u *unpacker) file(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bufio.NewReader(f))
		if err != nil {
			return fmt.Errorf("not a valid gzip file: %w", err)
		}
		defer zr.Close()
		return u.tar(zr)
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return u.tar(bufio.NewReader(f))
	case bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06")):
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		return u.zip(f, fi.Size())
	default:
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if err := u.count(); err != nil {
			return err
		}
		return u.write(filepath.Base(p), fi.Mode(), f)
	}
}

func (u *unpacker) tar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a valid tar archive: %w", err)
		}
		if err := u.count(); err != nil {
			return err
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := u.mkdir(name, mode); err != nil {
				return err
			}
		case tar.TypeReg, tar.TypeRegA:
			if name == "" {
				return fmt.Errorf("entry %q is a file without a name", hdr.Name)
			}
			if hdr.Size > u.max-u.written {
				return fmt.Errorf("it unpacks to more than the %d bytes allowed", u.max)
			}
			if err := u.write(name, mode, tr); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := u.symlink(name, hdr.Linkname); err != nil {
				return err
			}
		case tar.TypeLink:
			target, err := cleanName(hdr.Linkname)
			if err != nil || target == "" {
				return fmt.Errorf("hard link %q points outside the archive (%q)", hdr.Name, hdr.Linkname)
			}
			if err := u.root.Link(target, name); err != nil {
				return fmt.Errorf("cannot create hard link %q: %w", name, err)
			}
		case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			// metadata the reader has applied
		default:
			return fmt.Errorf("entry %q is a device, fifo or other special file, which an app may not hold", hdr.Name)
		}
	}
}

func (u *unpacker) zip(r io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return fmt.Errorf("not a valid zip archive: %w", err)
	}
	for _, zf := range zr.File {
		if err := u.count(); err != nil {
			return err
		}
		name, err := cleanName(zf.Name)
		if err != nil {
			return err
		}
		mode := zf.Mode()
		switch {
		case mode.IsDir():
			if err := u.mkdir(name, mode); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			rc, err := zf.Open()
			if err != nil {
				return err
			}
			target, err := io.ReadAll(io.LimitReader(rc, 4096))
			rc.Close()
			if err != nil {
				return err
			}
			if err := u.symlink(name, string(target)); err != nil {
				return err
			}
		case mode.IsRegular():
			if name == "" {
				return fmt.Errorf("entry %q is a file without a name", zf.Name)
			}
			rc, err := zf.Open()
			if err != nil {
				return fmt.Errorf("entry %q: %w", zf.Name, err)
			}
			err = u.write(name, mode, rc)
			rc.Close()
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q is a device, fifo or other special file, which an app may not hold", zf.Name)
		}
	}
	return nil
}
