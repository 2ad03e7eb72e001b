package sandbox

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// What PID 1 (C) writes on its status pipe becomes the words Go would give.
func TestParsePID1Status(t *testing.T) {
	const path = "/var/task/bootstrap"
	for _, c := range []struct {
		in   string
		want pid1Status
	}{
		{"exit 0", pid1Status{reported: true}},
		{"exit 3", pid1Status{reported: true, code: 3}},
		{"signal 11", pid1Status{reported: true, signal: unix.SIGSEGV}},
		{"error errno 2", pid1Status{reported: true, execErr: "fork/exec /var/task/bootstrap: no such file or directory"}},
		{"error errno 8", pid1Status{reported: true, execErr: "fork/exec /var/task/bootstrap: exec format error"}},
		{"error seccomp 22", pid1Status{reported: true, execErr: "cannot install the sandbox's seccomp filter: invalid argument"}},
		{"error userns 1", pid1Status{reported: true, execErr: "cannot make the runtime's user namespace: operation not permitted"}},
		{"error no runtime to start", pid1Status{reported: true, execErr: "cannot start the runtime: no runtime to start"}},
		{"", pid1Status{}},
		{"signal 0", pid1Status{}},
		{"signal 99", pid1Status{}},
		{"exit x", pid1Status{}},
		{"error", pid1Status{}},
		{"garbage", pid1Status{}},
	} {
		if got := parsePID1Status([]byte(c.in), path); got != c.want {
			t.Errorf("%q: got %+v, want %+v", c.in, got, c.want)
		}
	}
}

// PID 1's extension records: the three kinds parse, anything else is not
// one (and is then read as the runtime's end, as before).
func TestParseExtensionFailure(t *testing.T) {
	for line, want := range map[string]extensionFailure{
		"extension error 2 my ext\n": {name: "my ext", launch: true, n: 2},
		"extension exit 3 quitter\n": {name: "quitter", n: 3},
		"extension signal 9 k\n":     {name: "k", signaled: true, n: 9},
	} {
		got, ok := parseExtensionFailure([]byte(line))
		if !ok || got != want {
			t.Errorf("%q: %+v %v, want %+v", line, got, ok, want)
		}
	}
	for _, line := range []string{"exit 0\n", "extension exit x name\n", "extension exit 1\n", "extension boom 1 n\n", "extension exit -1 n\n"} {
		if _, ok := parseExtensionFailure([]byte(line)); ok {
			t.Errorf("%q parsed as an extension's failure", line)
		}
	}
}

// FuzzExtensionFailure: any record (PID 1's pipe carries names from the
// function's layers) parses or not without panicking, and what parses
// gives a message naming the extension.
func FuzzExtensionFailure(f *testing.F) {
	f.Add([]byte("extension error 2 badext\n"))
	f.Add([]byte("extension signal 11 x\n"))
	f.Add([]byte("exit 0\n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, ok := parseExtensionFailure(line)
		if ok && (!strings.Contains(e.message(), e.name) || e.outcome().errType == "") {
			t.Fatalf("%q: %+v gives %q", line, e, e.message())
		}
	})
}
