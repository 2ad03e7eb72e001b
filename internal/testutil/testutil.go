// Package testutil holds what the tests of several packages share: the
// root check of tests that run real containers, and a log writer bound to a
// test. It is imported by _test.go files only.
package testutil

import (
	"os"
	"strings"
	"sync"
	"testing"
)

// RequireRoot skips a test that runs real containers (cgroups, namespaces,
// mounts) when not root, saying why. CI runs as root, so they run there.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs real runc containers (cgroups, namespaces, mounts)")
	}
}

// LogWriter carries log lines into a test's log until the test ends (t.Log
// after that panics; a node's goroutines may still log while it closes).
type LogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

// NewLogWriter returns a writer for t that stops at t's cleanup. Register it
// before anything that logs through it, so its cleanup runs last.
func NewLogWriter(t testing.TB) *LogWriter {
	w := &LogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
