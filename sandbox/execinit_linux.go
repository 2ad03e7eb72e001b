package sandbox

// sandbox-exec, the step between the sandbox's PID 1 and its runtime, is C
// that runs before the Go runtime starts (as libcontainer's nsenter does),
// so that starting the runtime costs one exec of this binary and no Go
// runtime start. PID 1 (Go) starts this binary as `sandbox-exec ARGV...`
// in the runtime's new user namespace with the seccomp program on fd 4 (a
// pipe, closed after it) and a pipe on fd 3 that closes when the runtime is
// executed. The constructor reads the program, installs it (the process is
// single-threaded here, so no thread synchronisation is needed), and
// executes ARGV; if it cannot, it writes "errno N" (or "seccomp N") on fd 3
// and exits 127, and PID 1 reports it. In every other start of the binary
// it returns at once. It takes argc, argv and envp as glibc passes them to
// constructors (the C library of every build here; musl passes none).

/*
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NIMBUS_EXEC_ERR_FD 3
#define NIMBUS_FILTER_FD 4
#define NIMBUS_MAX_FILTER 4096

static void nimbus_exec_fail(const char *what, int err) {
	char msg[64];
	int n = snprintf(msg, sizeof msg, "%s %d", what, err);
	if (n > 0 && write(NIMBUS_EXEC_ERR_FD, msg, (size_t)n) < 0) {
		// nothing more to say
	}
	_exit(127);
}

__attribute__((constructor)) static void nimbus_sandbox_exec(int argc, char **argv, char **envp) {
	if (argc < 3 || strcmp(argv[1], "sandbox-exec") != 0) {
		return;
	}
	static struct sock_filter filter[NIMBUS_MAX_FILTER];
	size_t got = 0;
	for (;;) {
		ssize_t n = read(NIMBUS_FILTER_FD, (char *)filter + got, sizeof filter - got);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			nimbus_exec_fail("seccomp", errno);
		}
		if (n == 0) {
			break;
		}
		got += (size_t)n;
		if (got == sizeof filter) {
			nimbus_exec_fail("seccomp", E2BIG);
		}
	}
	close(NIMBUS_FILTER_FD);
	if (got == 0 || got % sizeof filter[0] != 0) {
		nimbus_exec_fail("seccomp", EINVAL);
	}
	struct sock_fprog prog = {.len = (unsigned short)(got / sizeof filter[0]), .filter = filter};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
		nimbus_exec_fail("seccomp", errno);
	}
	if (fcntl(NIMBUS_EXEC_ERR_FD, F_SETFD, FD_CLOEXEC) != 0) {
		nimbus_exec_fail("errno", errno);
	}
	execve(argv[2], argv + 2, envp);
	nimbus_exec_fail("errno", errno);
}
*/
import "C"
