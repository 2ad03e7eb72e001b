package bundle

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"nimbus/rpc"
)

func TestCheckSize(t *testing.T) {
	t.Parallel()
	n, err := CheckSize(mkzip(t, file("python/a.py", "12345"), link("python/b.py", "a.py"), dir("python/empty/")), false)
	if err != nil || n != 5+4 {
		t.Fatalf("CheckSize = %d, %v; want 9 (five bytes of file, four of link target)", n, err)
	}
	if _, err := CheckSize(mkzip(t, file("../x", "1")), false); !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("a layer with an unsafe path: %v", err)
	}
	if err := CheckTotalSize(MaxUnzippedSize-10, 10); err != nil {
		t.Fatalf("exactly the limit: %v", err)
	}
	err = CheckTotalSize(MaxUnzippedSize-10, 6, 5)
	if !errors.Is(err, ErrUnzippedTooLarge) || !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Fatalf("over the limit: %v", err)
	}
}

// Layers merge in order: a later layer's file replaces an earlier one's, a
// file replaces a directory and a directory a symlink, and what no later
// layer touches stays.
func TestStoreMerged(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	first := mkzip(t, file("python/lib.py", "first"), file("python/only1.py", "1"), dir("data/"), file("data/x", "x"), link("bin", "python"))
	second := mkzip(t, file("python/lib.py", "second"), file("data", "now a file"), file("bin/tool", "tool"))
	var shas []string
	for _, z := range [][]byte{first, second} {
		sha, _, err := s.Put(z)
		if err != nil {
			t.Fatal(err)
		}
		shas = append(shas, sha)
	}
	var wg sync.WaitGroup
	dirs := make([]string, 4)
	errs := make([]error, 4)
	for i := range dirs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			dirs[i], errs[i] = s.Merged(shas)
		}(i)
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Fatalf("caller %d: %s %v (caller 0: %s)", i, dirs[i], errs[i], dirs[0])
		}
	}
	if n := s.extractions.Load(); n != 1 {
		t.Fatalf("%d extractions, want 1", n)
	}
	want := map[string]string{"python/lib.py": "second", "python/only1.py": "1", "data": "now a file", "bin/tool": "tool"}
	for p, content := range want {
		b, err := os.ReadFile(filepath.Join(dirs[0], p))
		if err != nil || string(b) != content {
			t.Errorf("%s: %q %v, want %q", p, b, err, content)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dirs[0], "bin")); err != nil || !fi.IsDir() {
		t.Errorf("bin is %v %v, want the second layer's directory", fi, err)
	}
	// The other order is another tree.
	other, err := s.Merged([]string{shas[1], shas[0]})
	if err != nil || other == dirs[0] {
		t.Fatalf("reversed order: %s %v", other, err)
	}
	if b, _ := os.ReadFile(filepath.Join(other, "python/lib.py")); string(b) != "first" {
		t.Errorf("reversed order: lib.py is %q, want the later layer's", b)
	}
	if _, err := s.Merged([]string{"nothex"}); !errors.Is(err, ErrBadDigest) {
		t.Errorf("malformed digest: %v", err)
	}
}
