package sandbox

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The sandbox's PID 1 is a small init of ours: the nimbus binary itself,
// bind-mounted read-only at initPath and started as `sandbox-init <bootstrap>`,
// as the sandbox's host uid (uids_linux.go). It starts the runtime in a
// user namespace of its own that maps uid 993 and gid 990 to that host uid
// and gid, through the same binary once more (`sandbox-exec <bootstrap>`,
// C that runs before the Go runtime: execinit_linux.go), which installs the
// seccomp filter (seccomp_linux.go) and executes the runtime, which
// inherits the filter and can never remove it. PID 1 forwards
// the signals a runtime expects to receive (a PID 1 would ignore SIGTERM
// without a handler), reaps every orphan so none piles up as a zombie, and
// when the runtime exits writes its wait status to fd 3 (the agent reads it)
// and exits, which ends the sandbox's pid namespace. It never runs code of
// the function's itself.
//
// The runtime holds every capability in its user namespace only until it
// executes the bootstrap (as uid 993, so the kernel clears them then), and
// the namespace owns no other namespace: it gains nothing over the
// sandbox's mounts, network or processes.

const (
	// initPath is where the agent's binary is mounted in every sandbox.
	initPath = "/.nimbus/init"
	// initArg is the subcommand the program's init() hands to runPID1.
	initArg = "sandbox-init"
	// execArg is the subcommand that installs the filter and executes the
	// runtime (execinit_linux.go, C before the Go runtime; the names there
	// match these).
	execArg = "sandbox-exec"
	// statusFD is the pipe PID 1 reports the runtime's end on.
	statusFD = 3
)

// forwarded are the signals PID 1 passes on to the runtime.
var forwarded = []os.Signal{
	unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, unix.SIGCONT,
}

// runPID1 is the sandbox's init. args are the runtime's argv. It never
// returns.
func runPID1(args []string) {
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(400) // it allocates almost nothing; keep the collector quiet
	unix.CloseOnExec(statusFD)
	report := func(s string) {
		_, _ = unix.Write(statusFD, []byte(s))
	}
	if len(args) == 0 {
		report("error no runtime to start")
		os.Exit(127)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	errR, errW, err := os.Pipe()
	if err != nil {
		report("error " + err.Error())
		os.Exit(127)
	}
	filterR, err := seccompPipe()
	if err != nil {
		report("error cannot make the sandbox's seccomp filter: " + err.Error())
		os.Exit(127)
	}
	proc, err := os.StartProcess(initPath, append([]string{initPath, execArg}, args...), &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr, errW, filterR}, // fds 3 and 4 of sandbox-exec
		Sys: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: sandboxUID, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: sandboxGID, HostID: os.Getgid(), Size: 1}},
		},
	})
	errW.Close()
	filterR.Close()
	if err != nil {
		report("error " + err.Error())
		os.Exit(127)
	}
	// Until the runtime is executed (the pipe closes) or could not be.
	var buf [64]byte
	n, _ := io.ReadFull(errR, buf[:])
	errR.Close()
	execErr := execFailure(string(buf[:n]), args[0])
	child := proc.Pid
	go func() {
		for s := range sigs {
			_ = unix.Kill(child, s.(unix.Signal))
		}
	}()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil { // ECHILD: nothing left (cannot happen before child)
			report("exit 0")
			os.Exit(0)
		}
		if pid != child {
			continue // an orphan, reaped
		}
		if execErr != "" {
			report("error " + execErr)
			os.Exit(127)
		}
		if ws.Signaled() {
			report("signal " + strconv.Itoa(int(ws.Signal())))
			os.Exit(128 + int(ws.Signal()))
		}
		report("exit " + strconv.Itoa(ws.ExitStatus()))
		os.Exit(ws.ExitStatus())
	}
}

// seccompPipe returns the read end of a pipe holding the seccomp program,
// whole, for sandbox-exec to read.
func seccompPipe() (*os.File, error) {
	prog, err := seccompProgram()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	b := unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(prog)*int(unsafe.Sizeof(prog[0])))
	if _, err := w.Write(b); err != nil { // far below a pipe's capacity
		r.Close()
		return nil, err
	}
	return r, nil
}

// execFailure turns what sandbox-exec wrote ("errno N", "seccomp N", or
// nothing when the runtime was executed) into the error text Go gives for
// the same failure.
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

// parsePID1Status reads what PID 1 wrote on its status pipe. Anything else
// (nothing at all: PID 1 itself was killed) is not reported.
func parsePID1Status(b []byte) pid1Status {
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
		return pid1Status{reported: true, execErr: rest}
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
