package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"nimbus/rpc"
)

// requireRoot skips tests that need real containers when not root. CI runs
// as root, so they run there.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs real containers (cgroups, namespaces)")
	}
}

// memSink is a LogSink that keeps lines in memory.
type memSink struct {
	mu     sync.Mutex
	events map[string][]rpc.LogEvent
}

func (s *memSink) Append(fn string, evs ...rpc.LogEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.events == nil {
		s.events = map[string][]rpc.LogEvent{}
	}
	s.events[fn] = append(s.events[fn], evs...)
	return nil
}

func (s *memSink) lines(fn string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events[fn] {
		out = append(out, e.Line)
	}
	return out
}

// sharedImage is built once per test binary under a fixed dir.
func imageDir(t testing.TB) string {
	dir := filepath.Join(os.TempDir(), "nimbus-test-image")
	return dir
}

func newTestManager(t testing.TB, cfg Config) (*Manager, *memSink) {
	t.Helper()
	requireRoot(t)
	sink := &memSink{}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(t.TempDir(), "state")
	}
	cfg.ImageDir = imageDir(t)
	cfg.Logs = sink
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, sink
}

// codeDir makes a function code folder whose bootstrap is the named script
// in testdata.
func codeDir(t testing.TB, script string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("testdata", script))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func fnConfig(name string, rev uint64) *rpc.FunctionConfig {
	return &rpc.FunctionConfig{Name: name, Runtime: "provided", Handler: "bootstrap", MemoryMB: 128, TimeoutSec: 3, Revision: rev}
}

func TestShellRuntimeEcho(t *testing.T) {
	m, sink := newTestManager(t, Config{})
	dir := codeDir(t, "echo.sh")
	fn := fnConfig("echo", 1)
	res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: dir, Payload: []byte(`{"a":1}`), Tail: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("result %+v payload=%s", res, res.Payload)
	t.Logf("logs %q", sink.lines("echo"))
}
