package sandbox

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// tmpInfo is what gofn's "tmp" says of the sandbox's /tmp.
type tmpInfo struct {
	Magic   string   `json:"magic"`
	SizeMB  int      `json:"sizeMB"`
	FreeMB  int      `json:"freeMB"`
	Entries []string `json:"entries"`
}

func probeTmp(t *testing.T, m *Manager, name string, tmpMB int, dir string) tmpInfo {
	t.Helper()
	fn := fnConfig(name, 1)
	fn.EphemeralStorageMB = tmpMB
	res := invoke(t, m, fn, dir, `{"do":"tmp"}`)
	var info tmpInfo
	if err := json.Unmarshal(res.Payload, &info); err != nil || res.ErrorType != "" {
		t.Fatalf("%s: %s %s", name, res.ErrorType, res.Payload)
	}
	return info
}

// loopsOf lists the loop devices whose backing file is under dir.
func loopsOf(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.HasPrefix(string(b), dir+"/") {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	return out
}

// /tmp is an ext4 of its own per sandbox, of the function's ephemeral
// storage size, empty and 1777 at the start, with nothing left on the host
// once its sandbox is gone: no image file in the scratch folder and no
// loop device.
func TestTmpIsADiskOfItsOwn(t *testing.T) {
	scratchDir := filepath.Join(t.TempDir(), "scratch")
	m, _ := newTestManager(t, Config{ScratchDir: scratchDir})
	dir := codeDir(t, gofnBin)

	def := probeTmp(t, m, "tmp-default", 0, dir)
	if def.Magic != "0xef53" { // EXT4_SUPER_MAGIC
		t.Fatalf("/tmp has filesystem magic %s, want ext4's 0xef53", def.Magic)
	}
	if def.FreeMB < 512 || def.SizeMB > 512+tmpExtraMB(512) || len(def.Entries) != 0 {
		t.Errorf("a default /tmp: %+v, want 512 MB free (up to %d MB more) and empty", def, tmpExtraMB(512))
	}
	big := probeTmp(t, m, "tmp-2g", 2048, dir)
	if big.FreeMB < 2048 || big.SizeMB > 2048+tmpExtraMB(2048) {
		t.Errorf("a 2048 MB /tmp: %+v, want 2048 MB free (up to %d MB more)", big, tmpExtraMB(2048))
	}
	if n := len(loopsOf(t, scratchDir)); n != 2 {
		t.Errorf("%d loop devices on the scratch folder with two sandboxes, want 2", n)
	}
	// Images are unlinked once on their device: only the templates stay.
	entries, _ := os.ReadDir(scratchDir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "template-") {
			t.Errorf("%s left in the scratch folder", e.Name())
		}
	}

	// A file written by one sandbox is not in the next one's /tmp.
	fn := fnConfig("tmp-default", 1)
	if r := invoke(t, m, fn, dir, `{"do":"fill"}`); r.ErrorType != "" {
		t.Fatalf("fill: %s", r.Payload)
	}
	// Their disks are reset and kept for the next sandboxes: the next one
	// of 512 MB gets the filled one's, empty.
	m.Retire("tmp-default", 0)
	m.Retire("tmp-2g", 0)
	waitFor(t, "the retired sandboxes' disks to be spare", func() bool {
		m.scratch.mu.Lock()
		defer m.scratch.mu.Unlock()
		return m.scratch.nspare == 2
	})
	if n := len(loopsOf(t, scratchDir)); n != 2 {
		t.Errorf("%d loop devices on the scratch folder with two spare disks, want 2", n)
	}
	if again := probeTmp(t, m, "tmp-default", 0, dir); len(again.Entries) != 0 || again.FreeMB < 512 {
		t.Errorf("a new sandbox's /tmp after the last one filled its own: %+v, want it empty", again)
	}
	m.scratch.mu.Lock()
	spare := len(m.scratch.spare[512])
	m.scratch.mu.Unlock()
	if spare != 0 {
		t.Errorf("%d spare 512 MB disks after a sandbox of that size started, want 0 (it took the spare)", spare)
	}
	m.Close()
	if l := loopsOf(t, scratchDir); len(l) != 0 {
		t.Errorf("loop devices left after Close: %v", l)
	}
}

// Beyond the node's disk budget for /tmp, a cold start fails with a clear
// error instead of promising disk that is not there; the budget comes back
// when sandboxes go.
func TestTmpBudget(t *testing.T) {
	m, _ := newTestManager(t, Config{ScratchMaxMB: 1024})
	dir := codeDir(t, gofnBin)
	probeTmp(t, m, "budget-a", 0, dir)
	fn := fnConfig("budget-b", 1)
	fn.EphemeralStorageMB = 1024
	_, err := m.Invoke(t.Context(), &Request{Function: fn, CodeDir: dir, Payload: []byte(`{"do":"tmp"}`)})
	if err == nil || !strings.Contains(err.Error(), "no disk left in this node's budget for /tmp") {
		t.Fatalf("a /tmp over the budget: %v", err)
	}
	m.Retire("budget-a", 0)
	waitFor(t, "the budget back", func() bool {
		_, err := m.Invoke(t.Context(), &Request{Function: fn, CodeDir: dir, Payload: []byte(`{"do":"tmp"}`)})
		return err == nil
	})
}

// withMounted attaches sc's detached mount at a folder in a mount namespace
// of its own (a thread's, which ends with it: nothing reaches the host's
// mounts) and calls f there with the folder and the mount's line of
// mountinfo. sc's mount is moved: it goes when f returns.
func withMounted(t *testing.T, sc *scratch, f func(dir, mountinfo string)) {
	t.Helper()
	dir := t.TempDir()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread and its namespace end with this goroutine
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			done <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			done <- err
			return
		}
		if err := unix.MoveMount(sc.mnt, "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			done <- err
			return
		}
		sc.close()
		var line string
		for _, l := range strings.Split(readFile("/proc/thread-self/mountinfo"), "\n") {
			if fields := strings.Fields(l); len(fields) > 4 && fields[4] == dir {
				line = l
			}
		}
		f(dir, line)
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("mount the /tmp disk at %s: %v", dir, err)
	}
}

// A /tmp disk is an ext4 of its size, mounted nosuid, nodev, discard and
// without barriers (nothing on it need survive a crash, so it never waits
// for the host's disk to flush), 1777 and empty. A given disk is reset and
// made again for the next sandbox: the same loop device, with nothing of
// what the sandbox before wrote, neither its files nor their bytes on the
// image, and all its space free again.
func TestScratchDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
	t.Parallel()
	dir := t.TempDir()
	s, err := openScratches(dir, 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.remove() }) // after a failure too: no loop device left
	secret := []byte("what the sandbox before wrote, 0123456789abcdef")
	var lastDev string
	for i := 0; i < 3; i++ {
		sc, err := s.make(512)
		if err != nil {
			t.Fatal(err)
		}
		if !sc.disk {
			t.Skip("no /tmp disks here (no loop devices or mkfs.ext4): tmpfs")
		}
		if i > 0 && sc.dev.Name() != lastDev {
			t.Errorf("disk %d is on %s, not the reset %s", i, sc.dev.Name(), lastDev)
		}
		lastDev = sc.dev.Name()
		if i > 0 && imageHolds(t, sc.img, secret) {
			t.Errorf("disk %d: the image still holds what the sandbox before wrote", i)
		}
		withMounted(t, sc, func(tmp, mountinfo string) {
			for _, opt := range []string{" ext4 ", "nosuid", "nodev", "discard", "nobarrier"} {
				if !strings.Contains(mountinfo, opt) {
					t.Errorf("disk %d: %q not in its mountinfo: %s", i, opt, mountinfo)
				}
			}
			var st unix.Statfs_t
			if err := unix.Statfs(tmp, &st); err != nil {
				t.Fatal(err)
			}
			if free := st.Bavail * uint64(st.Bsize) >> 20; free < 512 {
				t.Errorf("disk %d: %d MB free, want 512", i, free)
			}
			if fi, err := os.Stat(tmp); err != nil || fi.Mode()&os.ModePerm != 0o777 || fi.Mode()&os.ModeSticky == 0 {
				t.Errorf("disk %d: root %v %v, want 1777", i, fi.Mode(), err)
			}
			if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
				t.Errorf("disk %d is not empty: %v", i, entries)
			}
			// Files, a folder, a big file and one deleted (its blocks
			// discarded), each holding the secret.
			big := make([]byte, 0, 64<<20)
			for len(big) < 64<<20 {
				big = append(big, secret...)
			}
			if err := os.Mkdir(filepath.Join(tmp, "d"), 0o700); err != nil {
				t.Fatal(err)
			}
			for name, data := range map[string][]byte{"secret": secret, "d/big": big, "gone": secret} {
				f, err := os.Create(filepath.Join(tmp, name))
				if err == nil {
					_, err = f.Write(data)
				}
				if err == nil {
					err = f.Sync() // onto the image, through the loop device
				}
				if err == nil {
					err = f.Close()
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			os.Remove(filepath.Join(tmp, "gone"))
		})
		s.give(sc)
		s.resets.Wait()
		s.mu.Lock()
		spare := s.nspare
		s.mu.Unlock()
		if spare != 1 {
			t.Fatalf("after disk %d was given: %d spare disks, want 1", i, spare)
		}
	}
	if err := s.remove(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the disks' loop devices to go", func() bool { return len(loopsOf(t, dir)) == 0 })
}

// imageHolds reports whether the image's data holds b (or its first 16
// bytes, which a block boundary cannot split off b in the big file).
func imageHolds(t *testing.T, img *os.File, b []byte) bool {
	t.Helper()
	st, err := img.Stat()
	if err != nil {
		t.Fatal(err)
	}
	data, err := dataExtents(img, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range data {
		buf := make([]byte, e.end-e.off)
		if _, err := img.ReadAt(buf, e.off); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(buf, b[:16]) {
			return true
		}
	}
	return false
}

// BenchmarkScratchMake is the cost of a new 512 MB /tmp disk and of its
// release: the template's copy, the loop device, the mount, the unmount
// and the loop device's clearing (a cold start pays the first half when
// no spare disk is ready).
func BenchmarkScratchMake(b *testing.B) {
	s := benchScratches(b)
	for b.Loop() {
		sc, err := s.makeDisk(512)
		if err != nil {
			b.Fatal(err)
		}
		sc.release()
	}
}

// BenchmarkScratchReuse is the cost of a 512 MB /tmp taken from spare and
// given back, with its reset in the background waited for: what each
// sandbox costs once spare disks are there (the take itself is a few
// hundred nanoseconds).
func BenchmarkScratchReuse(b *testing.B) {
	s := benchScratches(b)
	for b.Loop() {
		sc, err := s.make(512)
		if err != nil {
			b.Fatal(err)
		}
		sc.close() // the unmount a sandbox's end does
		s.give(sc)
		s.resets.Wait()
	}
}

func benchScratches(b *testing.B) *scratches {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	s, err := openScratches(b.TempDir(), 0, slog.Default())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.remove() })
	sc, err := s.make(512) // the template, made once
	if err != nil {
		b.Fatal(err)
	}
	if !sc.disk {
		b.Skip("no /tmp disks here: tmpfs")
	}
	s.give(sc)
	s.resets.Wait()
	return s
}
