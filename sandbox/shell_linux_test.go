package sandbox

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func (m *Manager) pooled(runtime string) []*sandbox {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*sandbox(nil), m.pool[runtime]...)
}

// A cold start after the first of a runtime claims a ready shell: the
// function gets its own code, layers and memory limit, shows no host path,
// and the pool fills again. A pooled shell whose PID 1 died is not handed
// out, and Close leaves no container behind.
func TestShellPool(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "state")
	m, _ := newTestManager(t, Config{ShellPool: 2, FreezeAfter: -1, StateDir: state})
	const provided = "provided"
	if res := invoke(t, m, fnConfig("first", 1), codeDir(t, script("echo.sh")), `1`); res.ErrorType != "" || !res.Cold {
		t.Fatalf("first: %s cold %v", res.Payload, res.Cold)
	}
	waitFor(t, "two shells in the pool", func() bool { return len(m.pooled(provided)) == 2 })
	if st := m.Stats(); st.Ready != 2 || st.Idle != 1 {
		t.Errorf("stats %+v, want 2 ready shells and 1 idle sandbox", st)
	}

	fn := fnConfig("pooled", 1)
	fn.MemoryMB = 512
	code := codeDir(t, gofnBin)
	opt := t.TempDir()
	if err := os.WriteFile(filepath.Join(opt, "layer.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := m.Invoke(t.Context(), &Request{Function: fn, CodeDir: code, OptDir: opt, Payload: []byte(`{"do":"mountinfo"}`)})
	if err != nil || res.ErrorType != "" || !res.Cold {
		t.Fatalf("pooled: %v %s", err, res.Payload)
	}
	m.mu.Lock()
	sb := m.idle[sandboxKey(fn)][0]
	m.mu.Unlock()
	if !strings.Contains(sb.id, "-pool-") {
		t.Errorf("the second cold start ran in %s, not a pooled shell", sb.id)
	}
	for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"} {
		if f == "memory.memsw.limit_in_bytes" && !memswSupported {
			continue
		}
		if got := readFile(filepath.Join(sb.cgroups.memory, f)); got != strconv.Itoa(512<<20) {
			t.Errorf("%s = %s, want the function's 512 MB", f, got)
		}
	}
	var out struct{ Mountinfo string }
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	mounted := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out.Mountinfo), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		mounted[f[4]] = true
		if (f[4] == "/var/task" || f[4] == "/opt") && (f[3] != "/" || !strings.HasPrefix(f[5], "ro,")) {
			t.Errorf("%s: root %s options %s, want an overlay's root, read-only", f[4], f[3], f[5])
		}
	}
	if !mounted["/var/task"] || !mounted["/opt"] {
		t.Errorf("no /var/task or /opt mount in\n%s", out.Mountinfo)
	}
	for _, host := range []string{m.image, code, opt, filepath.Dir(self), m.cfg.StateDir} {
		if strings.Contains(out.Mountinfo, host) {
			t.Errorf("mountinfo names the host's %s", host)
		}
	}
	waitFor(t, "the pool filled again", func() bool { return len(m.pooled(provided)) == 2 })

	// A shell whose PID 1 died while pooled is discarded, not claimed.
	for _, sb := range m.pooled(provided) {
		pid, err := sb.proc.Pid()
		if err != nil {
			t.Fatal(err)
		}
		_ = unix.Kill(pid, unix.SIGKILL)
		<-sb.exited
	}
	after := fnConfig("after-dead-shells", 1)
	if res := invoke(t, m, after, codeDir(t, script("echo.sh")), `2`); res.ErrorType != "" || string(res.Payload) != `{"echo":2}` {
		t.Fatalf("after the pool's shells died: %s", res.Payload)
	}

	waitFor(t, "the pool filled again", func() bool { return len(m.pooled(provided)) == 2 })
	m.Close()
	entries, _ := os.ReadDir(state)
	for _, e := range entries {
		if e.IsDir() && e.Name() != overlaysDir {
			t.Errorf("container %s left in the state dir after Close", e.Name())
		}
	}
}

// The start pipe's contents: argv, an empty string, the environment; and
// what PID 1 could not read back as sent is refused.
func TestStartBlob(t *testing.T) {
	got, err := startBlob([]string{"/var/task/bootstrap", "-x"}, []string{"A=1", "B=", ""}, nil)
	if want := "/var/task/bootstrap\x00-x\x00\x00A=1\x00B=\x00"; err != nil || string(got) != want {
		t.Errorf("got %q (%v), want %q", got, err, want)
	}
	got, err = startBlob([]string{"/var/task/bootstrap"}, []string{"A=1"}, []string{"ext-a", "ext-b"})
	if want := "/var/task/bootstrap\x00\x00A=1\x00\x00ext-a\x00ext-b\x00\x00"; err != nil || string(got) != want {
		t.Errorf("with extensions: got %q (%v), want %q", got, err, want)
	}
	if _, err := startBlob([]string{"/b"}, nil, []string{"../escape"}); err == nil {
		t.Error("an extension name with a slash was accepted")
	}
	many := make([]string, startStrings)
	for i := range many {
		many[i] = "K=v"
	}
	for name, c := range map[string]struct{ argv, env []string }{
		"no argv":            {nil, []string{"A=1"}},
		"empty argument":     {[]string{"/bootstrap", ""}, nil},
		"NUL in an argument": {[]string{"/boot\x00strap"}, nil},
		"NUL in a value":     {[]string{"/bootstrap"}, []string{"A=x\x00AWS_LAMBDA_RUNTIME_API=evil"}},
		"too many strings":   {[]string{"/bootstrap"}, many},
		"too many bytes":     {[]string{"/bootstrap"}, []string{"A=" + strings.Repeat("x", startMax)}},
	} {
		if b, err := startBlob(c.argv, c.env, nil); err == nil {
			t.Errorf("%s: accepted (%d bytes)", name, len(b))
		}
	}
}

// waitPool waits a little for the pool to fill.
func waitPool(*Manager) { time.Sleep(5 * time.Millisecond) }
