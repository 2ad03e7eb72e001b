package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"nimbus/rpc"
)

// The sandbox's PID 1 is a small init of ours: the nimbus binary itself,
// bind-mounted read-only at initPath and started as `sandbox-init` (the
// runtime's argv and environment come later, on its start pipe, when the
// sandbox is claimed: shell_linux.go), as the sandbox's host uid (uids_linux.go). It is C that runs before the Go
// runtime would start (pid1init_linux.go): it starts the runtime in a user
// namespace of its own that maps uid 993 and gid 990 to that host uid and
// gid, with the seccomp filter the agent hands it (seccomp_linux.go)
// installed just before the runtime is executed, so that the runtime
// inherits the filter and can never remove it. PID 1 forwards the signals a
// runtime expects to receive (a PID 1 would ignore SIGTERM without a
// handler), reaps every orphan so none piles up as a zombie, and when the
// runtime exits writes its wait status to fd 3 (the agent reads it) and
// exits, which ends the sandbox's pid namespace. It never runs code of the
// function's itself.
//
// The runtime holds every capability in its user namespace only until it
// executes the bootstrap (as uid 993, so the kernel clears them then), and
// the namespace owns no other namespace: it gains nothing over the
// sandbox's mounts, network or processes.

const (
	// initPath is where the agent's binary is mounted in every sandbox.
	initPath = "/.nimbus/init"
	// initArg is the subcommand PID 1 runs as (the C constructor in
	// pid1init_linux.go matches the same name).
	initArg = "sandbox-init"
	// statusFD is the pipe PID 1 reports the runtime's end on; the seccomp
	// program comes on the descriptor after it.
	statusFD = 3
)

// filterProgram is the seccomp program as bytes, built once.
var filterProgram = sync.OnceValues(func() ([]byte, error) {
	prog, err := seccompProgram()
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(prog)*int(unsafe.Sizeof(prog[0]))), nil
})

// seccompPipe returns the read end of a pipe holding the seccomp program,
// whole, for PID 1 to read (fd 4).
func seccompPipe() (*os.File, error) {
	b, err := filterProgram()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if _, err := w.Write(b); err != nil { // far below a pipe's capacity
		r.Close()
		return nil, err
	}
	return r, nil
}

// execFailure turns what PID 1 reported after "error" ("errno N",
// "userns N", "seccomp N", or words of its own) into the error text Go
// gives for the same failure of path.
func execFailure(msg, path string) string {
	kind, num, _ := strings.Cut(msg, " ")
	n, err := strconv.Atoi(num)
	switch {
	case msg == "":
		return ""
	case err != nil:
		return "cannot start the runtime: " + msg
	case kind == "seccomp":
		return "cannot install the sandbox's seccomp filter: " + syscall.Errno(n).Error()
	case kind == "userns":
		return "cannot make the runtime's user namespace: " + syscall.Errno(n).Error()
	case kind != "errno":
		return "cannot start the runtime: " + msg
	}
	return (&os.PathError{Op: "fork/exec", Path: path, Err: syscall.Errno(n)}).Error()
}

// pid1Status is how the runtime ended, as PID 1 reported it.
type pid1Status struct {
	reported bool
	signal   unix.Signal // non-zero if killed by a signal
	code     int
	execErr  string // the runtime could not be started
}

// parsePID1Status reads what PID 1 wrote on its status pipe about the
// runtime at path. Anything else (nothing at all: PID 1 itself was killed)
// is not reported.
func parsePID1Status(b []byte, path string) pid1Status {
	s := strings.TrimSpace(string(b))
	kind, rest, _ := strings.Cut(s, " ")
	switch kind {
	case "exit":
		if n, err := strconv.Atoi(rest); err == nil {
			return pid1Status{reported: true, code: n}
		}
	case "signal":
		if n, err := strconv.Atoi(rest); err == nil && n > 0 && n < 65 {
			return pid1Status{reported: true, signal: unix.Signal(n)}
		}
	case "error":
		if rest != "" {
			return pid1Status{reported: true, execErr: execFailure(rest, path)}
		}
	}
	return pid1Status{}
}

// description is the reason Lambda gives when a runtime exits.
func (s pid1Status) description() string {
	switch {
	case s.execErr != "":
		return s.execErr
	case s.signal != 0:
		return "signal: " + s.signal.String()
	}
	return fmt.Sprintf("exit status %d", s.code)
}

// extensionFailure is an external extension's failure as PID 1 reports it
// (pid1init_linux.go): "extension KIND N NAME".
type extensionFailure struct {
	name string
	// launch: it could not be executed (n is the errno); else it ended
	// before the runtime, with exit status n, or signal n when signaled.
	launch, signaled bool
	n                int
}

// parseExtensionFailure reads one record of PID 1's status pipe; ok is
// false for any other record.
func parseExtensionFailure(line []byte) (extensionFailure, bool) {
	f := strings.SplitN(strings.TrimSuffix(string(line), "\n"), " ", 4)
	if len(f) != 4 || f[0] != "extension" || f[3] == "" {
		return extensionFailure{}, false
	}
	n, err := strconv.Atoi(f[2])
	if err != nil || n < 0 {
		return extensionFailure{}, false
	}
	e := extensionFailure{name: f[3], n: n}
	switch f[1] {
	case "error":
		e.launch = true
	case "signal":
		e.signaled = true
	case "exit":
	default:
		return extensionFailure{}, false
	}
	return e, true
}

// errType and message are the error Lambda gives for the failure:
// Extension.LaunchError or Extension.Crash.
func (e extensionFailure) errType() string {
	if e.launch {
		return rpc.ErrTypeExtensionLaunch
	}
	return rpc.ErrTypeExtensionCrash
}

func (e extensionFailure) message() string {
	switch {
	case e.launch:
		return fmt.Sprintf("Extension %s could not be started: %s", e.name, unix.Errno(e.n).Error())
	case e.signaled:
		return fmt.Sprintf("Extension %s exited: signal: %s", e.name, unix.Signal(e.n).String())
	}
	return fmt.Sprintf("Extension %s exited: exit status %d", e.name, e.n)
}

func (e extensionFailure) outcome() outcome { return functionError(e.errType(), e.message()) }
