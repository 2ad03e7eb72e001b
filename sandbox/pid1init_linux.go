package sandbox

// The sandbox's PID 1 is C that runs before the Go runtime starts (as
// libcontainer's nsenter does), so that it costs one exec of this binary
// and no Go runtime start or package initialisers. The agent starts it as
// `sandbox-init` with the seccomp program on fd 4 (a pipe the agent
// filled and closed) and a pipe on fd 3 for the runtime's end. The
// constructor reads the program, forks the runtime, and in the child makes
// a user namespace that maps uid 993 and gid 990 to this process's host
// uid and gid (a process may map its own ids), installs the filter (the
// child is single-threaded, so no thread synchronisation is needed), and
// executes the runtime. If the child cannot, it writes "errno N" (or "userns N",
// "seccomp N") on a pipe that closes on exec, and PID 1 passes the words
// on in its report. PID 1 then forwards the signals a runtime expects
// (a PID 1 ignores SIGTERM without a handler), reaps every orphan, and when
// the runtime ends writes "exit N", "signal N" or "error WORDS" on fd 3 and
// exits, which ends the sandbox's pid namespace. It never runs the
// function's code. In every other start of the binary the constructor
// returns at once. It takes argc, argv and envp as glibc passes them to
// constructors (the C library of every build here; musl passes none).
//
// PID 1 starts before the sandbox has a function (a shell, see
// shell_linux.go): until then it waits on fd 5 for the runtime's argv and
// environment, which the agent writes once it has mounted the function's
// code, as NUL-terminated strings: the arguments, an empty string, then
// the environment, up to startMax bytes, and closes. The runtime starts in
// /var/task.

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define NIMBUS_STATUS_FD 3
#define NIMBUS_FILTER_FD 4
#define NIMBUS_START_FD 5
#define NIMBUS_HELPER_FD 6
#define NIMBUS_MAX_FILTER 4096
#define NIMBUS_START_MAX (256 << 10)
#define NIMBUS_START_STRINGS 4096
#define NIMBUS_UID 993
#define NIMBUS_GID 990

static const int nimbus_forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};

// nimbus_report writes one record, a line, to the status pipe: the
// runtime's end (the last record), or an external extension's failure
// ("extension ...", before it).
static void nimbus_report(const char *s) {
	char line[600];
	size_t n = strlen(s);
	if (n > sizeof line - 1) {
		n = sizeof line - 1;
	}
	memcpy(line, s, n);
	line[n++] = '\n';
	if (write(NIMBUS_STATUS_FD, line, n) < 0) {
		// the agent is gone; nothing more to say
	}
}

static void nimbus_report_exit(const char *s, int code) {
	nimbus_report(s);
	_exit(code);
}

// In the child: say why the runtime could not be started and end.
static void nimbus_child_fail(int fd, const char *what, int err) {
	char msg[64];
	int n = snprintf(msg, sizeof msg, "%s %d", what, err);
	if (n > 0 && write(fd, msg, (size_t)n) < 0) {
		// PID 1 sees an empty pipe and the exit status
	}
	_exit(127);
}

static int nimbus_write_file(const char *path, const char *s) {
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		return -1;
	}
	ssize_t n = write(fd, s, strlen(s));
	int err = errno;
	close(fd);
	errno = err;
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

static struct sock_filter nimbus_filter[NIMBUS_MAX_FILTER];

static size_t nimbus_read_filter(void) {
	size_t got = 0;
	for (;;) {
		ssize_t n = read(NIMBUS_FILTER_FD, (char *)nimbus_filter + got, sizeof nimbus_filter - got);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			return 0;
		}
		if (n == 0) {
			break;
		}
		got += (size_t)n;
		if (got == sizeof nimbus_filter) {
			return 0;
		}
	}
	close(NIMBUS_FILTER_FD);
	if (got % sizeof nimbus_filter[0] != 0) {
		return 0;
	}
	return got / sizeof nimbus_filter[0];
}

static char nimbus_start[NIMBUS_START_MAX + 1];
static char *nimbus_strings[NIMBUS_START_STRINGS + 2];

// The external extensions started: their pids (0 once reaped) and the
// index of each one's name in nimbus_strings.
#define NIMBUS_MAX_EXTS 10
static pid_t nimbus_ext_pids[NIMBUS_MAX_EXTS];
static int nimbus_ext_names[NIMBUS_MAX_EXTS];
static int nimbus_ext_count = 0;

// nimbus_report_ext reports an external extension's failure: "extension
// KIND N NAME", KIND error (N an errno), exit (N its status) or signal.
static void nimbus_report_ext(const char *kind, int n, const char *name) {
	char msg[400];
	snprintf(msg, sizeof msg, "extension %s %d %s", kind, n, name);
	nimbus_report(msg);
}

// nimbus_reap_ext reaps the extensions that have ended, reporting each
// (they ended before the runtime: Extension.Crash).
static void nimbus_reap_ext(void) {
	for (;;) {
		int ws;
		pid_t pid = waitpid(-1, &ws, WNOHANG);
		if (pid < 0 && errno == EINTR) {
			continue;
		}
		if (pid <= 0) {
			return;
		}
		for (int e = 0; e < nimbus_ext_count; e++) {
			if (nimbus_ext_pids[e] != pid) {
				continue;
			}
			nimbus_ext_pids[e] = 0;
			if (WIFSIGNALED(ws)) {
				nimbus_report_ext("signal", WTERMSIG(ws), nimbus_strings[nimbus_ext_names[e]]);
			} else {
				nimbus_report_ext("exit", WEXITSTATUS(ws), nimbus_strings[nimbus_ext_names[e]]);
			}
		}
	}
}

// nimbus_await_go waits, with the external extensions started, for the
// agent's byte on the start pipe: every extension has registered, and the
// runtime may start (Lambda's init starts the runtime after the
// extensions' registration). An extension that ends meanwhile is reported;
// the pipe's end without the byte (the agent gave up) ends PID 1.
static void nimbus_await_go(const sigset_t *handled) {
	int sfd = signalfd(-1, handled, SFD_CLOEXEC);
	if (sfd < 0) {
		nimbus_report_exit("error signalfd", 127);
	}
	for (;;) {
		struct pollfd fds[2] = {{.fd = NIMBUS_START_FD, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
		if (poll(fds, 2, -1) < 0) {
			continue; // EINTR
		}
		if (fds[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si && si.ssi_signo == SIGCHLD) {
				nimbus_reap_ext();
			}
			// Any other signal has no runtime to go to yet: dropped.
		}
		if (fds[0].revents & (POLLERR | POLLNVAL)) {
			_exit(127);
		}
		if (fds[0].revents & (POLLIN | POLLHUP)) {
			char go;
			ssize_t n = read(NIMBUS_START_FD, &go, 1);
			if (n < 0 && errno == EINTR) {
				continue;
			}
			close(NIMBUS_START_FD);
			close(sfd);
			if (n != 1) {
				_exit(127);
			}
			return;
		}
	}
}

// nimbus_exts is the index in nimbus_strings of the first external
// extension's name (a NULL-ended list), or -1 for none.
static int nimbus_exts = -1;

// nimbus_read_start reads the runtime's argv and environment from fd 5 into
// nimbus_strings: argv, NULL, envp, NULL, and when a second empty string
// follows the environment, the external extensions' names, NULL. It
// returns the index of the environment's first string, or -1 (nothing,
// over a bound, or no arguments).
// nimbus_start_open: fd 5 is still open after the blob (it has external
// extensions, and the agent writes the go byte there).
static int nimbus_start_open = 1;

static int nimbus_read_start(void) {
	size_t got = 0;
	int empties = 0; // empty strings read so far: the third ends the blob
	for (;;) {
		ssize_t n = read(NIMBUS_START_FD, nimbus_start + got, NIMBUS_START_MAX - got);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			return -1;
		}
		if (n == 0) {
			close(NIMBUS_START_FD); // no extensions: the blob ends with the pipe
			nimbus_start_open = 0;
			break;
		}
		for (size_t i = got; i < got + (size_t)n; i++) {
			if (nimbus_start[i] == 0 && (i == 0 || nimbus_start[i - 1] == 0)) {
				empties++;
			}
		}
		got += (size_t)n;
		if (empties >= 3) {
			// With extensions the pipe stays open: the agent writes one byte
			// more once they have registered (nimbus_await_go).
			got--; // the terminator
			break;
		}
		if (got == NIMBUS_START_MAX) {
			return -1;
		}
	}
	if (got == 0 || nimbus_start[got - 1] != 0) {
		return -1;
	}
	int count = 0, env = -1;
	for (size_t i = 0; i < got;) {
		size_t len = strlen(nimbus_start + i);
		if (count >= NIMBUS_START_STRINGS) {
			return -1;
		}
		if (len == 0 && env < 0) {
			nimbus_strings[count++] = NULL;
			env = count;
		} else if (len == 0 && nimbus_exts < 0) {
			nimbus_strings[count++] = NULL;
			nimbus_exts = count;
		} else if (len == 0) {
			return -1;
		} else {
			nimbus_strings[count++] = nimbus_start + i;
		}
		i += len + 1;
	}
	nimbus_strings[count] = NULL;
	if (env <= 1) {
		return -1; // no end of the arguments, or no arguments
	}
	return env;
}

static void nimbus_start_runtime(int errfd, size_t filter_len, const sigset_t *mask, char **argv, char **envp) {
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	for (size_t i = 0; i < sizeof nimbus_forwarded / sizeof nimbus_forwarded[0]; i++) {
		sigaction(nimbus_forwarded[i], &dfl, NULL);
	}
	sigaction(SIGPIPE, &dfl, NULL);
	sigaction(SIGCHLD, &dfl, NULL);
	if (sigprocmask(SIG_SETMASK, mask, NULL) != 0) {
		nimbus_child_fail(errfd, "errno", errno);
	}
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (unshare(CLONE_NEWUSER) != 0) {
		nimbus_child_fail(errfd, "userns", errno);
	}
	char map[64];
	if (nimbus_write_file("/proc/self/setgroups", "deny") != 0) {
		nimbus_child_fail(errfd, "userns", errno);
	}
	snprintf(map, sizeof map, "%d %u 1", NIMBUS_UID, (unsigned)uid);
	if (nimbus_write_file("/proc/self/uid_map", map) != 0) {
		nimbus_child_fail(errfd, "userns", errno);
	}
	snprintf(map, sizeof map, "%d %u 1", NIMBUS_GID, (unsigned)gid);
	if (nimbus_write_file("/proc/self/gid_map", map) != 0) {
		nimbus_child_fail(errfd, "userns", errno);
	}
	if (chdir("/var/task") != 0) {
		nimbus_child_fail(errfd, "errno", errno);
	}
	struct sock_fprog prog = {.len = (unsigned short)filter_len, .filter = nimbus_filter};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
		nimbus_child_fail(errfd, "seccomp", errno);
	}
	execve(argv[0], argv, envp);
	nimbus_child_fail(errfd, "errno", errno);
}

__attribute__((constructor)) static void nimbus_sandbox_init(int argc, char **argv, char **envp) {
	if (argc < 2 || strcmp(argv[1], "sandbox-init") != 0) {
		return;
	}
	(void)argc;
	(void)argv;
	(void)envp;
	fcntl(NIMBUS_STATUS_FD, F_SETFD, FD_CLOEXEC);
	fcntl(NIMBUS_FILTER_FD, F_SETFD, FD_CLOEXEC);
	fcntl(NIMBUS_START_FD, F_SETFD, FD_CLOEXEC);
	// The container init's helper, when there is one (inithelper_linux.go),
	// has no business in the sandbox.
	close(NIMBUS_HELPER_FD);
	// Whatever PID 1 inherited, SIGCHLD must not be ignored: the runtime's
	// end would then never be seen.
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &dfl, NULL);
	size_t filter_len = nimbus_read_filter();
	if (filter_len == 0) {
		nimbus_report_exit("error seccomp 22", 127); // EINVAL: no usable program
	}
	// Every signal PID 1 handles is blocked from here and taken with
	// sigwaitinfo, so none is lost between the fork and the loop.
	sigset_t handled, old;
	sigemptyset(&handled);
	sigaddset(&handled, SIGCHLD);
	for (size_t i = 0; i < sizeof nimbus_forwarded / sizeof nimbus_forwarded[0]; i++) {
		sigaddset(&handled, nimbus_forwarded[i]);
	}
	sigprocmask(SIG_BLOCK, &handled, &old);
	int env = nimbus_read_start();
	if (env < 0) {
		nimbus_report_exit("error no runtime to start", 127);
	}
	// A signal sent while the shell waited had no runtime to go to: drop
	// it rather than hand it to the function's.
	struct timespec zero = {0, 0};
	while (sigtimedwait(&handled, NULL, &zero) > 0) {
	}
	// External extensions start first, as Lambda starts them, each as the
	// runtime is (its own user namespace, the filter) from
	// /opt/extensions; one that cannot is reaped like an orphan, and the
	// agent's init waits for the ones it expects to call /event/next.
	// One that cannot be executed fails the init (Extension.LaunchError);
	// one that exits before the runtime's end is reported
	// (Extension.Crash).
	if (nimbus_exts > 0) {
		static char path[512];
		for (int i = nimbus_exts; nimbus_strings[i] != NULL && nimbus_ext_count < NIMBUS_MAX_EXTS; i++) {
			snprintf(path, sizeof path, "/opt/extensions/%s", nimbus_strings[i]);
			char *ext_argv[] = {path, NULL};
			int ep[2];
			if (pipe2(ep, O_CLOEXEC) != 0) {
				nimbus_report_ext("error", errno, nimbus_strings[i]);
				_exit(127);
			}
			pid_t ext = fork();
			int fork_err = errno;
			if (ext == 0) {
				close(ep[0]);
				close(NIMBUS_STATUS_FD);
				close(NIMBUS_START_FD);
				nimbus_start_runtime(ep[1], filter_len, &old, ext_argv, nimbus_strings + env);
			}
			close(ep[1]);
			char why[64];
			ssize_t n;
			do {
				n = read(ep[0], why, sizeof why - 1);
			} while (n < 0 && errno == EINTR);
			close(ep[0]);
			if (ext < 0 || n > 0) {
				// "what errno" from nimbus_child_fail, or fork's errno.
				int err = fork_err;
				if (n > 0) {
					why[n] = 0;
					char *sp = strrchr(why, ' ');
					err = sp != NULL ? atoi(sp + 1) : 0;
				}
				nimbus_report_ext("error", err, nimbus_strings[i]);
				_exit(127); // the extensions started so far end with PID 1
			}
			nimbus_ext_pids[nimbus_ext_count] = ext;
			nimbus_ext_names[nimbus_ext_count] = i;
			nimbus_ext_count++;
		}
		if (nimbus_ext_count > 0 && nimbus_start_open) {
			nimbus_await_go(&handled);
		} else if (nimbus_start_open) {
			close(NIMBUS_START_FD);
		}
	}
	int errp[2];
	if (pipe2(errp, O_CLOEXEC) != 0) {
		char msg[64];
		snprintf(msg, sizeof msg, "error errno %d", errno);
		nimbus_report_exit(msg, 127);
	}
	pid_t child = fork();
	if (child == 0) {
		close(errp[0]);
		close(NIMBUS_STATUS_FD);
		nimbus_start_runtime(errp[1], filter_len, &old, nimbus_strings, nimbus_strings + env);
	}
	close(errp[1]);
	if (child < 0) {
		char msg[64];
		snprintf(msg, sizeof msg, "error errno %d", errno);
		nimbus_report_exit(msg, 127);
	}
	// Until the runtime is executed (the pipe closes) or could not be.
	char why[64];
	size_t got = 0;
	for (;;) {
		ssize_t n = read(errp[0], why + got, sizeof why - 1 - got);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;
		}
		got += (size_t)n;
		if (got == sizeof why - 1) {
			break;
		}
	}
	why[got] = 0;
	close(errp[0]);
	// After the runtime's end, with external extensions, PID 1 reports it
	// at once but stays until every other process has ended, so that the
	// extensions can finish their SHUTDOWN (the agent kills the sandbox
	// after the grace).
	int ended = 0, code = 0;
	for (;;) {
		siginfo_t info;
		int sig = sigwaitinfo(&handled, &info);
		if (sig < 0) {
			continue; // EINTR
		}
		if (sig != SIGCHLD) {
			if (!ended) {
				kill(child, sig);
			}
			continue;
		}
		for (;;) {
			int ws;
			pid_t pid = waitpid(-1, &ws, WNOHANG);
			if (pid < 0 && errno == EINTR) {
				continue;
			}
			if (pid < 0 && ended) {
				_exit(code); // ECHILD: the last process has ended
			}
			if (pid <= 0) {
				break; // none left to reap now (ECHILD cannot come before the runtime's end)
			}
			if (pid != child) {
				// An orphan, reaped; an extension that ends before the
				// runtime has crashed.
				for (int e = 0; e < nimbus_ext_count; e++) {
					if (nimbus_ext_pids[e] != pid) {
						continue;
					}
					nimbus_ext_pids[e] = 0;
					if (!ended) {
						if (WIFSIGNALED(ws)) {
							nimbus_report_ext("signal", WTERMSIG(ws), nimbus_strings[nimbus_ext_names[e]]);
						} else {
							nimbus_report_ext("exit", WEXITSTATUS(ws), nimbus_strings[nimbus_ext_names[e]]);
						}
					}
				}
				continue;
			}
			char msg[96];
			if (got > 0) {
				snprintf(msg, sizeof msg, "error %s", why);
				code = 127;
			} else if (WIFSIGNALED(ws)) {
				snprintf(msg, sizeof msg, "signal %d", WTERMSIG(ws));
				code = 128 + WTERMSIG(ws);
			} else {
				snprintf(msg, sizeof msg, "exit %d", WEXITSTATUS(ws));
				code = WEXITSTATUS(ws);
			}
			if (nimbus_exts < 0) {
				nimbus_report_exit(msg, code);
			}
			nimbus_report(msg);
			close(NIMBUS_STATUS_FD);
			ended = 1;
		}
	}
}
*/
import "C"
