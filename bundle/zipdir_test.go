package bundle

import (
	"archive/zip"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// writeTree makes a tree of files, dirs and links under root.
func writeTree(t *testing.T, root string) {
	t.Helper()
	for _, e := range []ent{
		exe("bootstrap", "#!/bin/sh\n"),
		ent{"private", 0o600, "p"},
		ent{"lib/", fs.ModeDir | 0o750, ""},
		file("lib/b.txt", "b"),
		file("lib/a.txt", "a"),
		file("lib.txt", "sorts before lib/"),
		dir("empty/"),
		link("current", "lib/a.txt"),
	} {
		p := filepath.Join(root, filepath.FromSlash(e.name))
		var err error
		switch e.mode.Type() {
		case fs.ModeDir:
			if err = os.MkdirAll(p, 0o755); err == nil {
				err = os.Chmod(p, e.mode.Perm())
			}
		case fs.ModeSymlink:
			err = os.Symlink(e.body, p)
		default:
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				if err = os.WriteFile(p, []byte(e.body), 0o600); err == nil {
					err = os.Chmod(p, e.mode.Perm())
				}
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestZipDirDeterministic(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	writeTree(t, a)
	writeTree(t, b)
	// Different times must not matter.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type() != fs.ModeSymlink {
			os.Chtimes(p, old, old)
		}
		return err
	})
	za1, err := ZipDir(a)
	if err != nil {
		t.Fatal(err)
	}
	za2, _ := ZipDir(a)
	zb, _ := ZipDir(b)
	if Digest(za1) != Digest(za2) || Digest(za1) != Digest(zb) {
		t.Fatalf("digests differ: %s %s %s", Digest(za1), Digest(za2), Digest(zb))
	}
	if err := Check(za1, true); err != nil {
		t.Fatalf("Check(ZipDir) = %v", err)
	}

	// A symlink given as the dir is followed.
	ln := filepath.Join(t.TempDir(), "ln")
	if err := os.Symlink(a, ln); err != nil {
		t.Fatal(err)
	}
	if zl, err := ZipDir(ln); err != nil || !bytes.Equal(zl, za1) {
		t.Fatalf("ZipDir(link to dir) differs: %v", err)
	}

	// Any change to the tree changes the digest, a mode as much as content.
	if err := os.Chmod(filepath.Join(b, "lib", "a.txt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if zb, _ := ZipDir(b); Digest(zb) == Digest(za1) {
		t.Fatal("a mode change left the digest as it was")
	}
}

func TestZipDirEntries(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	writeTree(t, root)
	z, err := ZipDir(root)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		mode fs.FileMode
	}{
		{"bootstrap", 0o755},
		{"current", fs.ModeSymlink | 0o777},
		{"empty/", fs.ModeDir | 0o755},
		{"lib.txt", 0o644},
		{"lib/", fs.ModeDir | 0o750},
		{"lib/a.txt", 0o644},
		{"lib/b.txt", 0o644},
		{"private", 0o600},
	}
	if len(zr.File) != len(want) {
		t.Fatalf("%d entries, want %d", len(zr.File), len(want))
	}
	names := make([]string, len(zr.File))
	for i, f := range zr.File {
		names[i] = f.Name
		if f.Name != want[i].name || f.Mode() != want[i].mode {
			t.Errorf("entry %d: %s %v, want %s %v", i, f.Name, f.Mode(), want[i].name, want[i].mode)
		}
		if !f.Modified.Equal(zipEpoch) {
			t.Errorf("%s: modified %v", f.Name, f.Modified)
		}
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("names not sorted: %v", names)
	}

	// Round trip: what Extract writes is what was zipped.
	dst := filepath.Join(t.TempDir(), "x")
	if err := Extract(z, dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(filepath.Join(dst, "current")); got != "lib/a.txt" {
		t.Errorf("current -> %q", got)
	}
	if fi, err := os.Stat(filepath.Join(dst, "bootstrap")); err != nil || fi.Mode() != 0o755 {
		t.Errorf("bootstrap: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "empty")); err != nil || !fi.IsDir() {
		t.Errorf("empty dir: %v %v", fi, err)
	}
}

func TestZipDirMissing(t *testing.T) {
	t.Parallel()
	if _, err := ZipDir(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ZipDir = %v, want fs.ErrNotExist", err)
	}
}
