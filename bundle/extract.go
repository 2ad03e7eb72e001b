package bundle

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Extract writes the zip's tree under dst, which must not exist yet: it
// creates dst (and its parents). The zip is validated as by Check (without
// the bootstrap rule) before anything is written, and the bytes actually
// inflated are counted while writing. Files are written 0644, or 0755 when
// the entry has any x bit; dirs 0755; all owned by the caller. On error,
// dst is removed.
//
// No write ever follows a symlink: entries never lie below a symlink (parse
// refuses that), dirs are made first, then files with O_EXCL, and symlinks
// last; and every call goes through an os.Root opened on dst, so even a
// race with another writer in dst cannot lead outside it.
func Extract(data []byte, dst string) (err error) {
	t, left, err := parse(data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("bundle: extract: %w", err)
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return fmt.Errorf("bundle: extract: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dst)
		}
	}()
	root, err := os.OpenRoot(dst)
	if err != nil {
		return fmt.Errorf("bundle: extract: %w", err)
	}
	defer root.Close()
	// Modes are set explicitly, whatever the umask.
	if err := root.Chmod(".", 0o755); err != nil {
		return fmt.Errorf("bundle: extract: %w", err)
	}
	for _, d := range t.dirs() {
		if err := root.Mkdir(d.name, 0o755); err != nil {
			return fmt.Errorf("bundle: extract: %w", err)
		}
		if err := root.Chmod(d.name, 0o755); err != nil {
			return fmt.Errorf("bundle: extract: %w", err)
		}
	}
	for _, n := range t.files {
		if err := writeFile(root, n, &left); err != nil {
			return err
		}
	}
	for _, l := range t.links {
		if err := root.Symlink(l.target, l.name); err != nil {
			return fmt.Errorf("bundle: extract: %w", err)
		}
	}
	return nil
}

func writeFile(root *os.Root, n *node, left *int64) error {
	perm := fs.FileMode(0o644)
	if n.exec {
		perm = 0o755
	}
	f, err := root.OpenFile(n.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("bundle: extract: %w", err)
	}
	if err := inflate(f, n.file, left); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("bundle: extract: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bundle: extract: %w", err)
	}
	return nil
}
