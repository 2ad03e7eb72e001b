package bundle

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExtract(t *testing.T) {
	t.Parallel()
	data := mkzip(t,
		exe("bootstrap", "#!/bin/sh\necho hi\n"),
		ent{"secret", 0o600, "s"},
		ent{"tool", 0o700, "t"},
		ent{"ro", 0o444, "r"},
		ent{"private/", fs.ModeDir | 0o700, ""},
		file("lib/deep/a.txt", "a"), // parents not listed
		link("lib/cur", "deep/a.txt"),
		link("top", "lib"),
		dir("empty/"),
	)
	dst := filepath.Join(t.TempDir(), "not", "yet", "there")
	if err := Extract(data, dst); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		mode fs.FileMode
		body string // content or link target
	}{
		".":              {fs.ModeDir | 0o755, ""},
		"bootstrap":      {0o755, "#!/bin/sh\necho hi\n"},
		"secret":         {0o644, "s"},
		"tool":           {0o755, "t"},
		"ro":             {0o644, "r"},
		"private":        {fs.ModeDir | 0o755, ""},
		"lib":            {fs.ModeDir | 0o755, ""},
		"lib/deep":       {fs.ModeDir | 0o755, ""},
		"lib/deep/a.txt": {0o644, "a"},
		"lib/cur":        {fs.ModeSymlink, "deep/a.txt"},
		"top":            {fs.ModeSymlink, "lib"},
		"empty":          {fs.ModeDir | 0o755, ""},
	}
	seen := 0
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		w, ok := want[filepath.ToSlash(rel)]
		if !ok {
			t.Errorf("unexpected %s", rel)
			return nil
		}
		seen++
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case w.mode&fs.ModeSymlink != 0:
			if fi.Mode().Type() != fs.ModeSymlink {
				t.Errorf("%s: mode %v, want a symlink", rel, fi.Mode())
			} else if got, _ := os.Readlink(p); got != w.body {
				t.Errorf("%s -> %q, want %q", rel, got, w.body)
			}
		case fi.Mode() != w.mode:
			t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), w.mode)
		case fi.Mode().IsRegular():
			if b, _ := os.ReadFile(p); string(b) != w.body {
				t.Errorf("%s holds %q, want %q", rel, b, w.body)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(want) {
		t.Errorf("saw %d paths, want %d", seen, len(want))
	}
	if b, err := os.ReadFile(filepath.Join(dst, "top", "cur")); err != nil || string(b) != "a" {
		t.Errorf("through links: %q, %v", b, err)
	}
}

func TestExtractRefuses(t *testing.T) {
	t.Parallel()
	bomb, crc := zeroDeflate(t, 300)
	tests := []struct {
		name string
		zip  []byte
		want error
	}{
		{"corrupt", []byte("not a zip"), ErrNotZip},
		{"dot-dot", mkzip(t, file("ok", "x"), file("../evil", "x")), ErrUnsafePath},
		{"absolute", mkzip(t, file("/tmp/evil", "x")), ErrUnsafePath},
		{"symlink out then write through it", mkzip(t, link("l", "../.."), file("l/evil", "x")), ErrUnsafePath},
		{"write through a symlink inside", mkzip(t, dir("d/"), link("l", "d"), file("l/f", "x")), ErrUnsafePath},
		{"symlink outside", mkzip(t, file("a", "x"), link("l", "../../etc/passwd")), ErrUnsafeSymlink},
		{"fifo", mkzip(t, ent{"p", fs.ModeNamedPipe | 0o644, ""}), ErrSpecialFile},
		{"bomb with lying headers", rawzip(t, zipHeader("zeros", crc, len(bomb), 1<<20), bomb), ErrNotZip},
		{"corrupt data after good files", func() []byte {
			return corruptEntry(t, mkzip(t, file("a", "aaaa"), file("b", strings.Repeat("payload ", 100))), 1)
		}(), ErrNotZip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			dst := filepath.Join(parent, "dst")
			err := Extract(tt.zip, dst)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Extract = %v, want %v", err, tt.want)
			}
			if err := Check(tt.zip, false); !errors.Is(err, tt.want) {
				t.Errorf("Check = %v, want %v as Extract", err, tt.want)
			}
			entries, _ := os.ReadDir(parent)
			if len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}

func TestExtractNeedsFreshDst(t *testing.T) {
	t.Parallel()
	dst := t.TempDir()
	keep := filepath.Join(dst, "keep")
	if err := os.WriteFile(keep, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Extract(mkzip(t, file("a", "x")), dst)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Extract into existing dir = %v, want fs.ErrExist", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("existing content touched: %v", err)
	}
}

// A failure while writing (not a fault of the zip) is not an *Error, so it
// crosses the wire as a ServiceException.
func TestExtractWriteFailure(t *testing.T) {
	t.Parallel()
	parent := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(parent, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := Extract(mkzip(t, file("a", "x")), filepath.Join(parent, "dst"))
	var e *Error
	if err == nil || errors.As(err, &e) {
		t.Fatalf("Extract below a file = %v, want a plain error", err)
	}
}
