package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

type tarEnt struct {
	name, link, body string
	typ              byte
	mode             int64
}

func mktar(t testing.TB, ents ...tarEnt) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return b.Bytes()
}

// An export unpacks to a tree with the same digest; unsafe tars are
// refused and write nothing outside the root.
func TestImageTarRoundTrip(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(src, "usr/bin/tool"), []byte("#!/bin/sh\n"), 0o4755)
	os.Symlink("usr/bin", filepath.Join(src, "bin"))
	os.MkdirAll(filepath.Join(src, "tmp"), 0o1777)
	os.Chmod(filepath.Join(src, "tmp"), 0o1777)
	want, _, _, err := treeDigest(src)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := writeTar(&b, src); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "root")
	if err := readTar(context.Background(), &b, dst); err != nil {
		t.Fatal(err)
	}
	if got, _, _, _ := treeDigest(dst); got != want {
		t.Fatalf("unpacked tree hashes to %s, want %s", got, want)
	}
	bad := map[string][]byte{
		"dotdot":          mktar(t, tarEnt{name: "../x", typ: tar.TypeReg, body: "x", mode: 0o644}),
		"absolute":        mktar(t, tarEnt{name: "/etc/x", typ: tar.TypeReg, body: "x", mode: 0o644}),
		"through symlink": mktar(t, tarEnt{name: "l", typ: tar.TypeSymlink, link: "/"}, tarEnt{name: "l/escaped", typ: tar.TypeReg, body: "x", mode: 0o644}),
		"device":          mktar(t, tarEnt{name: "dev/null", typ: tar.TypeChar, mode: 0o666}),
		"hard link":       mktar(t, tarEnt{name: "a", typ: tar.TypeReg, body: "x", mode: 0o644}, tarEnt{name: "b", typ: tar.TypeLink, link: "a"}),
	}
	for name, data := range bad {
		parent := t.TempDir()
		if err := readTar(context.Background(), bytes.NewReader(data), filepath.Join(parent, "root")); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if entries, _ := os.ReadDir(parent); len(entries) != 1 {
			t.Errorf("%s: wrote beside the root: %v", name, entries)
		}
	}
}

// FuzzReadTar: a peer's bytes never write outside the root nor panic.
func FuzzReadTar(f *testing.F) {
	f.Add(mktar(f, tarEnt{name: "a/", typ: tar.TypeDir, mode: 0o755}, tarEnt{name: "a/b", typ: tar.TypeReg, body: "hi", mode: 0o644}))
	f.Add(mktar(f, tarEnt{name: "l", typ: tar.TypeSymlink, link: "../.."}, tarEnt{name: "l/x", typ: tar.TypeReg, body: "x", mode: 0o644}))
	f.Add(mktar(f, tarEnt{name: "x/../../y", typ: tar.TypeReg, body: "y", mode: 0o644}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		_ = readTar(context.Background(), bytes.NewReader(data), filepath.Join(parent, "root"))
		entries, _ := os.ReadDir(parent)
		if len(entries) != 1 || entries[0].Name() != "root" {
			t.Fatalf("wrote beside the root: %v", entries)
		}
	})
}
