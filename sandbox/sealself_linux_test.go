package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sealSelfChild, when set in a child's environment (a JSON sealChildArgs),
// makes the test binary call SealSelf, start a sandbox and print what it
// ran from (runSealChild), instead of running tests.
const sealSelfChild = "NIMBUS_TEST_SEAL_SELF"

type sealChildArgs struct {
	StateDir, ImageDir, CodeDir string
}

type sealChildResult struct {
	Exe, Self, Payload, Err string
}

// runSealChild is the child's side; its result goes to stdout as JSON.
func runSealChild(raw string) int {
	var a sealChildArgs
	res := sealChildResult{}
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(res) }()
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		res.Err = err.Error()
		return 1
	}
	if err := SealSelf(a.StateDir, nil); err != nil {
		res.Err = "SealSelf: " + err.Error()
		return 1
	}
	res.Exe, _ = os.Readlink("/proc/self/exe")
	res.Self, _ = selfPath()
	m, err := NewManager(Config{StateDir: a.StateDir, ImageDir: a.ImageDir, Logs: &memSink{},
		SandboxUIDFirst: defaultSandboxUIDFirst + 1000*1024, SandboxUIDCount: 1024})
	if err != nil {
		res.Err = "NewManager: " + err.Error()
		return 1
	}
	defer m.Close()
	out, err := m.Invoke(context.Background(), &Request{Function: fnConfig("sealed", 1), CodeDir: a.CodeDir, Payload: []byte(`{"k":1}`)})
	if err != nil {
		res.Err = "Invoke: " + err.Error()
		return 1
	}
	res.Payload = string(out.Payload)
	return 0
}

// An agent installed in the same folder as its state dir cannot have its
// binary sealed by an overlay at each container start: SealSelf re-executes
// it from a sealed copy in memory, which libcontainer then uses as it is,
// and its sandboxes still run (their PID 1 mounted from the binary on
// disk). Installed elsewhere, it is left as it is.
func TestSealSelf(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	code := codeDir(t, script("echo.sh"))
	run := func(bin, stateDir string) sealChildResult {
		t.Helper()
		args, _ := json.Marshal(sealChildArgs{StateDir: stateDir, ImageDir: imageDir, CodeDir: code})
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), sealSelfChild+"="+string(args))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var res sealChildResult
		if jerr := json.Unmarshal(out, &res); jerr != nil {
			t.Fatalf("the child: %v %s\n%s", err, out, stderr.String())
		}
		if res.Err != "" || err != nil {
			t.Fatalf("the child: %v %s\n%s", err, res.Err, stderr.String())
		}
		return res
	}

	// Installed beside its state: the binary's folder holds the state dir.
	dir := t.TempDir()
	bin := filepath.Join(dir, "nimbus.test")
	if err := copyFile(self, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	res := run(bin, filepath.Join(dir, "data", "containers"))
	if !strings.HasPrefix(res.Exe, "/memfd:") || res.Self != bin || !strings.Contains(res.Payload, `"echo":{"k":1}`) {
		t.Errorf("nested: ran from %s (own path %s), answered %s; want a memfd, %s, the echo", res.Exe, res.Self, res.Payload, bin)
	}

	// Elsewhere: no re-execution.
	res = run(bin, filepath.Join(t.TempDir(), "containers"))
	if res.Exe != bin || res.Self != bin || !strings.Contains(res.Payload, `"echo":{"k":1}`) {
		t.Errorf("apart: ran from %s (own path %s), answered %s; want %s itself and the echo", res.Exe, res.Self, res.Payload, bin)
	}
}
