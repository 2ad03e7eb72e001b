package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStartRemovesStaleCgroups: an agent killed during a cold start leaves
// a state directory libcontainer cannot load and cgroups no container owns,
// one with a process in it. The next manager on that state dir removes both.
func TestStartRemovesStaleCgroups(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	parent := "/nimbus-test-" + randomHex(4)
	const id = "deadbeef-fn-1"
	stateDir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(filepath.Join(stateDir, id), 0o700); err != nil {
		t.Fatal(err)
	}
	var made []string
	for _, ctl := range []string{"memory", "pids", "freezer", "cpu"} {
		d := filepath.Join("/sys/fs/cgroup", ctl, parent, id)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Skipf("no cgroup v1 %s here: %v", ctl, err)
		}
		made = append(made, d)
	}
	t.Cleanup(func() {
		for _, d := range made {
			os.Remove(d)
			os.Remove(filepath.Dir(d))
		}
	})
	newTestManager(t, Config{StateDir: stateDir, CgroupParent: parent})
	for _, d := range made {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("stale cgroup %s survived the start", d)
		}
	}
	if _, err := os.Stat(filepath.Join(stateDir, id)); err == nil {
		t.Error("the stale state directory survived the start")
	}
}
