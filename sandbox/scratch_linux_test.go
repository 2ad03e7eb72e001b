package sandbox

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	m.Retire("tmp-default", 0)
	m.Retire("tmp-2g", 0)
	waitFor(t, "the retired sandboxes' loop devices to go", func() bool { return len(loopsOf(t, scratchDir)) == 0 })
	if again := probeTmp(t, m, "tmp-default", 0, dir); len(again.Entries) != 0 || again.FreeMB < 512 {
		t.Errorf("a new sandbox's /tmp after the last one filled its own: %+v, want it empty", again)
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

// BenchmarkScratchMake is the cost of a new 512 MB /tmp: the template's
// copy, the loop device and the mount (a cold start outside the pool pays
// it).
func BenchmarkScratchMake(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	s, err := openScratches(b.TempDir(), 0, slog.Default())
	if err != nil {
		b.Fatal(err)
	}
	defer s.remove()
	for b.Loop() {
		sc, err := s.make(512)
		if err != nil {
			b.Fatal(err)
		}
		if !sc.disk {
			b.Fatal("no disk here")
		}
		s.give(sc)
	}
}
