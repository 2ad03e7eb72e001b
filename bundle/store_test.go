package bundle

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"nimbus/rpc"
)

func openStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	s, dir := openStore(t)
	data := mkzip(t, exe("bootstrap", "#!/bin/sh\n"), file("lib/a", "a"))
	sha, size, err := s.Put(data)
	if err != nil {
		t.Fatal(err)
	}
	if sha != Digest(data) || size != int64(len(data)) {
		t.Fatalf("Put = %s %d, want %s %d", sha, size, Digest(data), len(data))
	}
	if _, err := os.Stat(filepath.Join(dir, "zips", sha+".zip")); err != nil {
		t.Fatalf("layout: %v", err)
	}
	if sha2, _, err := s.Put(data); err != nil || sha2 != sha {
		t.Fatalf("second Put = %s, %v", sha2, err)
	}
	if !s.Has(sha) {
		t.Fatal("Has = false after Put")
	}
	got, err := s.Get(sha)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %d bytes, %v", len(got), err)
	}
	tree, err := s.Tree(sha)
	if err != nil {
		t.Fatal(err)
	}
	if tree != filepath.Join(dir, "trees", sha) {
		t.Fatalf("Tree = %s", tree)
	}
	if b, err := os.ReadFile(filepath.Join(tree, "lib", "a")); err != nil || string(b) != "a" {
		t.Fatalf("tree content: %q, %v", b, err)
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Fatalf("tmp not cleaned: %v", tmp)
	}

	if err := s.Delete(sha); err != nil {
		t.Fatal(err)
	}
	if s.Has(sha) {
		t.Fatal("Has = true after Delete")
	}
	if _, err := os.Stat(tree); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("tree after Delete: %v", err)
	}
	if _, err := s.Get(sha); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Get after Delete = %v, want fs.ErrNotExist", err)
	}
	if _, err := s.Tree(sha); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Tree after Delete = %v, want fs.ErrNotExist", err)
	}
	if err := s.Delete(sha); err != nil {
		t.Fatalf("second Delete = %v", err)
	}
}

func TestStoreTreeOnce(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	var ents []ent
	for i := range 200 {
		ents = append(ents, file("d/"+strconv.Itoa(i%10)+"/f"+strconv.Itoa(i), strings.Repeat("data", 1000)))
	}
	sha, _, err := s.Put(mkzip(t, ents...))
	if err != nil {
		t.Fatal(err)
	}
	const n = 32
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { paths[i], errs[i] = s.Tree(sha) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || paths[i] != paths[0] {
			t.Fatalf("caller %d: %s, %v", i, paths[i], errs[i])
		}
	}
	if got := s.extractions.Load(); got != 1 {
		t.Fatalf("%d extractions, want 1", got)
	}
	if _, err := s.Tree(sha); err != nil || s.extractions.Load() != 1 {
		t.Fatalf("Tree again: %v, %d extractions", err, s.extractions.Load())
	}
}

func TestStoreRejectsMalformedSHA(t *testing.T) {
	t.Parallel()
	s, dir := openStore(t)
	good := Digest([]byte("x"))
	for _, sha := range []string{
		"",
		"../../etc/passwd",
		good[:63],
		good + "0",
		strings.ToUpper(good),
		good[:62] + "/a",
		good[:62] + "..",
		"g" + good[1:],
		good[:63] + "\x00",
		strings.Repeat("z", 1000),
	} {
		if s.Has(sha) {
			t.Errorf("Has(%q) = true", sha)
		}
		_, errGet := s.Get(sha)
		_, errTree := s.Tree(sha)
		errDelete := s.Delete(sha)
		for name, err := range map[string]error{"Get": errGet, "Tree": errTree, "Delete": errDelete} {
			if !errors.Is(err, ErrBadDigest) || !errors.Is(err, rpc.ErrInvalidParameterValue) {
				t.Errorf("%s(%q) = %v, want ErrBadDigest", name, sha, err)
			}
		}
	}
	for _, d := range []string{"zips", "trees", "tmp"} {
		if e, _ := os.ReadDir(filepath.Join(dir, d)); len(e) != 0 {
			t.Errorf("%s holds %v", d, e)
		}
	}
}

func TestStoreGetVerifies(t *testing.T) {
	t.Parallel()
	s, dir := openStore(t)
	sha, _, err := s.Put(mkzip(t, file("a", "a")))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zips", sha+".zip"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(sha); !errors.Is(err, ErrCorrupt) || !errors.Is(err, rpc.ErrService) {
		t.Fatalf("Get = %v, want ErrCorrupt", err)
	}
	if _, err := s.Tree(sha); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Tree = %v, want ErrCorrupt", err)
	}
	// Put of the right bytes repairs it.
	if _, _, err := s.Put(mkzip(t, file("a", "a"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(sha); err != nil {
		t.Fatalf("Get after repair = %v", err)
	}
}

func TestStoreTreeOfBadZip(t *testing.T) {
	t.Parallel()
	s, dir := openStore(t)
	sha, _, err := s.Put(mkzip(t, file("../evil", "x"))) // Put does not validate
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tree(sha); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("Tree = %v, want ErrUnsafePath", err)
	}
	for _, d := range []string{"trees", "tmp"} {
		if e, _ := os.ReadDir(filepath.Join(dir, d)); len(e) != 0 {
			t.Errorf("%s holds %v", d, e)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "evil")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("evil written: %v", err)
	}
}

func TestOpenStoreClearsTmp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stale := filepath.Join(dir, "tmp", "tree-123", "t")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stale tmp kept: %v", err)
	}
}
