package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ensureImageChild, when set in a child's environment, makes the test binary
// build the image in that folder and exit (see TestEnsureImageConcurrent).
const ensureImageChild = "NIMBUS_TEST_ENSURE_IMAGE_DIR"

// TestEnsureImageConcurrent: many goroutines and two other processes build
// the image into one empty folder at once. Everyone gets the same complete
// image, it is built once, and a sandbox started on it as soon as the first
// caller returns keeps running while the others return.
func TestEnsureImageConcurrent(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "images")

	// Two other processes sharing the folder, as two agents or two test
	// binaries would.
	var procs []*exec.Cmd
	for i := 0; i < 2; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), ensureImageChild+"="+dir)
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
	}

	const n = 8
	roots := make([]string, n)
	errs := make([]error, n)
	first := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			roots[i], errs[i] = EnsureImage(dir)
			first <- i
		}()
	}
	i := <-first
	if errs[i] != nil {
		t.Fatalf("EnsureImage: %v", errs[i])
	}
	// A sandbox on the image while the other callers are still returning.
	m, _ := newTestManager(t, Config{ImageDir: dir})
	if m.image != roots[i] {
		t.Fatalf("manager image %s, caller got %s", m.image, roots[i])
	}
	fn := fnConfig("early", 1)
	res := invoke(t, m, fn, codeDir(t, script("echo.sh")), `{"n":1}`)
	if res.ErrorType != "" || string(res.Payload) != `{"echo":{"n":1}}` {
		t.Fatalf("sandbox on the fresh image: %s (%s)", res.Payload, res.ErrorType)
	}
	wg.Wait()
	for _, cmd := range procs {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("other process: %v\n%s", err, cmd.Stdout)
		}
	}
	for j := range roots {
		if errs[j] != nil {
			t.Fatalf("caller %d: %v", j, errs[j])
		}
		if roots[j] != roots[i] {
			t.Fatalf("caller %d got %s, caller %d got %s", j, roots[j], i, roots[i])
		}
	}
	if !imageComplete(roots[i]) {
		t.Fatalf("%s is not a complete image", roots[i])
	}
	// Nothing but the image, the manager's shims and the lock is left: no
	// build folders.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != imageVersion && e.Name() != ".lock" && !strings.HasPrefix(e.Name(), "shims-") {
			t.Errorf("left in the image folder: %s", e.Name())
		}
	}
	// The warm sandbox still runs on the image after every caller returned.
	res = invoke(t, m, fn, codeDir(t, script("echo.sh")), `{"n":2}`)
	if res.ErrorType != "" || string(res.Payload) != `{"echo":{"n":2}}` {
		t.Fatalf("sandbox after the others returned: %s (%s)", res.Payload, res.ErrorType)
	}
}

// TestEnsureImageReplacesOnlyIncomplete: a folder a builder left without its
// stamp (it died) is rebuilt; a complete image is returned as it is, its
// files untouched.
func TestEnsureImageReplacesOnlyIncomplete(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "images")
	root := filepath.Join(dir, imageVersion)
	if err := os.MkdirAll(filepath.Join(root, "half"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".build-dead"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := EnsureImage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != root || !imageComplete(root) {
		t.Fatalf("got %s complete=%v", got, imageComplete(root))
	}
	for _, p := range []string{filepath.Join(root, "half"), filepath.Join(dir, ".build-dead")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s survived the rebuild", p)
		}
	}
	st, err := os.Stat(filepath.Join(root, imageStamp))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureImage(dir); err != nil {
		t.Fatal(err)
	}
	st2, err := os.Stat(filepath.Join(root, imageStamp))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(st, st2) { // a rebuild renames a new tree into place
		t.Fatal("a complete image was rebuilt")
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
