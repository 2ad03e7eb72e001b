package sandbox

import (
	"encoding/json"
	"os"
	"runtime"
	"testing"
)

// Hostile functions: each case asserts the function is contained, the
// caller gets a clear answer, and a normal invocation succeeds right after.

func openFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

// A thousand Runtime API connections held open: the agent keeps at most
// apiMaxConns of them, and the function and others still run.
func TestHostileConnectionHoard(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{})
	fn := fnConfig("hoarder", 1)
	fn.MemoryMB = 512
	dir := codeDir(t, gofnBin)
	invoke(t, m, fn, dir, `{"do":"hello"}`)
	before := openFDs()
	res := invoke(t, m, fn, dir, `{"do":"hoard"}`)
	var p struct{ Dialed, Open int }
	if err := json.Unmarshal(res.Payload, &p); err != nil || res.ErrorType != "" {
		t.Fatalf("hoard: %s", res.Payload)
	}
	if p.Open > apiMaxConns {
		t.Errorf("the function holds %d Runtime API connections (dialed %d), want at most %d", p.Open, p.Dialed, apiMaxConns)
	}
	// Other tests run in parallel and open descriptors too: allow for them,
	// but not for a thousand.
	if after := openFDs(); after-before > 100 {
		t.Errorf("the agent holds %d more descriptors during the hoard", after-before)
	}
	if r := invoke(t, m, fn, dir, `{"do":"hello"}`); r.ErrorType != "" {
		t.Fatalf("the hoarder's next invocation: %s", r.Payload)
	}
	if r := invoke(t, m, fnConfig("bystander", 1), codeDir(t, script("echo.sh")), `1`); r.ErrorType != "" {
		t.Fatalf("another function after the hoard: %s", r.Payload)
	}
}

// A function trying the kernel's wider doors (a user namespace by clone
// and by unshare, io_uring, the keyring, bpf, ptrace) is refused each with
// EPERM by the seccomp filter, cannot dump core, and still forks, execs and
// answers; a normal invocation runs right after.
func TestHostileSeccomp(t *testing.T) {
	t.Parallel()
	if runtime.GOARCH != "amd64" {
		t.Skip("testdata/gofn's system call numbers are amd64's")
	}
	m, _ := newTestManager(t, Config{})
	fn := fnConfig("escaper", 1)
	dir := codeDir(t, gofnBin)
	res := invoke(t, m, fn, dir, `{"do":"escape"}`)
	var got map[string]any
	if err := json.Unmarshal(res.Payload, &got); err != nil || res.ErrorType != "" {
		t.Fatalf("escape: %s", res.Payload)
	}
	for _, k := range []string{"clone_newuser", "unshare_newuser", "io_uring_setup", "keyctl", "bpf", "ptrace"} {
		if got[k] != "operation not permitted" {
			t.Errorf("%s: %q, want operation not permitted", k, got[k])
		}
	}
	if got["seccomp"] != "2" || got["core_hard"] != float64(0) || got["fork_exec"] != "" {
		t.Errorf("seccomp mode %v, core limit %v, fork/exec %q: want 2, 0 and success", got["seccomp"], got["core_hard"], got["fork_exec"])
	}
	if r := invoke(t, m, fn, dir, `{"do":"hello"}`); r.ErrorType != "" {
		t.Fatalf("a normal invocation after: %s", r.Payload)
	}
}
