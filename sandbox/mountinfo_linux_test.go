package sandbox

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A sandbox's /proc/self/mountinfo names none of the host's folders: not
// the image's, the code's, the layers', the shim's or the agent binary's,
// nor the folder they are all under. While the sandbox lives, the host has
// one overlay per folder; after it, none.
func TestMountinfoNoHostPaths(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{})
	fn := fnConfig("mounts", 1)
	code := codeDir(t, gofnBin)
	opt := t.TempDir()
	res, err := m.Invoke(t.Context(), &Request{Function: fn, CodeDir: code, OptDir: opt, Payload: []byte(`{"do":"mountinfo"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Mountinfo string }
	if err := json.Unmarshal(res.Payload, &out); err != nil || res.ErrorType != "" || out.Mountinfo == "" {
		t.Fatalf("mountinfo: %s", res.Payload)
	}
	self, _ := os.Executable()
	for _, host := range []string{m.image, code, opt, filepath.Dir(self), m.cfg.StateDir} {
		if strings.Contains(out.Mountinfo, host) {
			t.Errorf("mountinfo names the host's %s:\n%s", host, out.Mountinfo)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(out.Mountinfo), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == "/" || f[4] == "/var/task" || f[4] == "/opt" || f[4] == initPath) && f[3] != "/" && f[3] != "/"+filepath.Base(self) {
			t.Errorf("%s is mounted from %s of its filesystem, not from an overlay's root", f[4], f[3])
		}
	}
	if n := len(overlaysNow(t, m)); n != 4 {
		t.Errorf("%d overlays on the host while the sandbox lives, want 4 (image, code, layers, the agent's binary)", n)
	}
	m.Retire(fn.Name, 0)
	waitFor(t, "the sandbox's overlays unmounted", func() bool { return len(overlaysNow(t, m)) == 0 })
}

// overlaysNow lists the overlays mounted under m's state dir, as this
// thread sees them (the process's main thread may be one libcontainer left
// in a container's mount namespace, and /proc/self shows its view).
func overlaysNow(t *testing.T, m *Manager) []string {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], m.overlays.dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}
