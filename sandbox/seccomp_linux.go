package sandbox

import (
	"errors"
	"runtime"

	"golang.org/x/sys/unix"
)

// The sandbox's seccomp filter: a classic BPF program of our own, built
// once by the agent, handed to each sandbox's PID 1 on a pipe and installed
// by the runtime's process (C in pid1init_linux.go, single-threaded), in
// the runtime's user namespace, just before it executes the runtime, which inherits it with
// every descendant and can never remove it. It allows everything but what a function has no use
// for and what widens the kernel reachable from a sandbox, in the spirit of
// Docker's default profile:
//
//   - new namespaces: unshare and setns, and clone with any CLONE_NEW* flag
//     (no user namespace, so no capability set inside one); clone3 answers
//     ENOSYS, so the C library and Go fall back to clone, whose flags a
//     classic filter can read (clone3's are behind a pointer);
//   - io_uring, the kernel keyring, bpf, perf events, userfaultfd;
//   - kernel modules, kexec, reboot, swap, mounts of every kind, quotas,
//     acct, syslog, vhangup;
//   - ptrace, process_vm_readv/writev and kcmp: no looking into others;
//   - open_by_handle_at, lookup_dcookie;
//   - every other architecture's system calls (i386 through int 0x80, x32)
//     kill the process: their numbers are not the ones checked here.
//
// Refused calls fail with EPERM, as they would without the privilege.
// libcontainer's own seccomp support needs cgo with libseccomp's headers and
// a build tag in every build; the filter here needs neither.

// deniedSyscalls fail with EPERM.
var deniedSyscalls = []uintptr{
	unix.SYS_UNSHARE, unix.SYS_SETNS,
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_REBOOT,
	unix.SYS_SWAPON, unix.SYS_SWAPOFF,
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_MOUNT_SETATTR,
	unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOVE_MOUNT, unix.SYS_OPEN_TREE,
	unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD, unix.SYS_ACCT, unix.SYS_SYSLOG, unix.SYS_VHANGUP,
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV, unix.SYS_KCMP,
	unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_LOOKUP_DCOOKIE,
}

// cloneNewFlags are clone's flags that make a namespace.
const cloneNewFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
	unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP

// auditArch is the AUDIT_ARCH of the system calls this build knows.
var auditArch = map[string]uint32{"amd64": unix.AUDIT_ARCH_X86_64, "arm64": unix.AUDIT_ARCH_AARCH64}

// x32SyscallBit marks x32 system calls on amd64.
const x32SyscallBit = 0x40000000

// Offsets in struct seccomp_data.
const (
	seccompNR   = 0
	seccompArch = 4
	seccompArg0 = 16 // low 32 bits on little-endian machines
)

const (
	bpfLD   = 0x00
	bpfW    = 0x00
	bpfABS  = 0x20
	bpfJMP  = 0x05
	bpfJEQ  = 0x10
	bpfJGE  = 0x30
	bpfJSET = 0x40
	bpfK    = 0x00
	bpfRET  = 0x06
)

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

var (
	retAllow  = stmt(bpfRET|bpfK, unix.SECCOMP_RET_ALLOW)
	retEPERM  = stmt(bpfRET|bpfK, unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM))
	retENOSYS = stmt(bpfRET|bpfK, unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS))
	retKill   = stmt(bpfRET|bpfK, unix.SECCOMP_RET_KILL_PROCESS)
)

// errNoFilterArch is returned where no filter is defined for the machine.
var errNoFilterArch = errors.New("seccomp: no filter for this architecture")

// seccompProgram is the filter, for the architecture this binary runs on.
func seccompProgram() ([]unix.SockFilter, error) {
	arch, ok := auditArch[runtime.GOARCH]
	if !ok {
		return nil, errNoFilterArch
	}
	p := []unix.SockFilter{
		stmt(bpfLD|bpfW|bpfABS, seccompArch),
		jump(bpfJMP|bpfJEQ|bpfK, arch, 1, 0),
		retKill,
		stmt(bpfLD|bpfW|bpfABS, seccompNR),
	}
	if runtime.GOARCH == "amd64" {
		p = append(p, jump(bpfJMP|bpfJGE|bpfK, x32SyscallBit, 0, 1), retKill)
	}
	// clone: refuse namespace flags (the accumulator is reloaded after).
	p = append(p,
		jump(bpfJMP|bpfJEQ|bpfK, unix.SYS_CLONE, 0, 4),
		stmt(bpfLD|bpfW|bpfABS, seccompArg0),
		jump(bpfJMP|bpfJSET|bpfK, cloneNewFlags, 0, 1),
		retEPERM,
		retAllow,
		jump(bpfJMP|bpfJEQ|bpfK, unix.SYS_CLONE3, 0, 1),
		retENOSYS,
	)
	for _, nr := range deniedSyscalls {
		p = append(p, jump(bpfJMP|bpfJEQ|bpfK, uint32(nr), 0, 1), retEPERM)
	}
	return append(p, retAllow), nil
}
