package sandbox

import (
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
