package sandbox

// libcontainer starts each container's init by executing the program that
// calls it, so in the agent every sandbox start paid for the Go start and
// the package initialisers of the whole agent (its Raft, NATS, Prometheus,
// gob...), about 24 ms of CPU on a 2-core VM, for an init that only runs
// containerinit. nimbus-init is that package alone (about 11 ms). The
// agent copies it into a sealed memfd once, passes the memfd to every
// container init as an extra file (fd 6 there), and the C constructor
// below, which runs before libcontainer's nsenter constructor and the Go
// runtime, executes it in place of the agent's binary. Nothing has joined
// a namespace yet at that point: nimbus-init's own nsenter does all of it,
// and the process that enters the container runs from a sealed copy, as
// libcontainer's protection against CVE-2019-5736 requires. The memfd
// reaches PID 1 as fd 6 too (libcontainer passes a process's extra files
// on), which closes it first thing (pid1init_linux.go).
//
// The helper is used only if its fingerprint (containerinit.Fingerprint:
// the libcontainer and cgroups versions, whose two halves speak a private
// protocol) is the agent's; otherwise, or when it is not installed, the
// agent is its own container init as before, and says so once.

/*
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NIMBUS_HELPER_FD 6
#define NIMBUS_HELPER_LINK "/memfd:runc_cloned:nimbus-init (deleted)"
#define NIMBUS_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

// Priority 101 runs it before every constructor without one, nsenter's
// among them.
__attribute__((constructor(101))) static void nimbus_init_helper(int argc, char **argv, char **envp) {
	if (argc < 2 || strcmp(argv[1], "init") != 0) {
		return;
	}
	int seals = fcntl(NIMBUS_HELPER_FD, F_GET_SEALS);
	if (seals < 0 || (seals & NIMBUS_SEALS) != NIMBUS_SEALS) {
		return; // no helper: this binary is the init
	}
	char link[sizeof NIMBUS_HELPER_LINK + 1];
	ssize_t n = readlink("/proc/self/fd/6", link, sizeof link);
	if (n != (ssize_t)(sizeof NIMBUS_HELPER_LINK - 1) || memcmp(link, NIMBUS_HELPER_LINK, (size_t)n) != 0) {
		return;
	}
	syscall(SYS_execveat, NIMBUS_HELPER_FD, "", argv, envp, AT_EMPTY_PATH);
	// The agent checked the helper when it started; if it cannot be
	// executed now, fail this sandbox's start rather than hide the cost.
	_exit(126);
}
*/
import "C"

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer/exeseal"

	"nimbus/sandbox/containerinit"
)

// InitHelperName is the container init's binary, installed beside the
// agent's.
const InitHelperName = "nimbus-init"

// initHelperFD is the helper's descriptor in the container init and in
// PID 1: after the three of PID 1's own (shell_linux.go).
const initHelperFD = 6

// openInitHelper returns the sealed copy of the container init helper to
// pass to every sandbox start, or nil to have this program be its own.
// path "" looks beside selfPath; "off" uses none.
func openInitHelper(path, self, stateDir string, log *slog.Logger) *os.File {
	if path == "off" {
		return nil
	}
	explicit := path != ""
	if !explicit {
		path = filepath.Join(filepath.Dir(self), InitHelperName)
	}
	f, err := sealInitHelper(path, stateDir)
	if err != nil {
		if explicit || !os.IsNotExist(err) {
			log.Warn("the sandboxes' container init runs from the agent's own binary, costing each sandbox start about twice the CPU", "helper", path, "err", err)
		} else {
			log.Info("no "+InitHelperName+" beside the agent: the sandboxes' container init runs from the agent's own binary, costing each sandbox start about twice the CPU; install it beside nimbus", "looked_for", path)
		}
		return nil
	}
	log.Debug("sandboxes' container init", "helper", path)
	return f
}

func sealInitHelper(path, stateDir string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	sealed, err := exeseal.CloneBinary(src, st.Size(), InitHelperName, stateDir)
	if err != nil {
		return nil, err
	}
	if !exeseal.IsCloned(sealed) {
		// Not a sealed memfd (no memfd support): the constructor would
		// not take it, and an unsealed copy is no protection.
		sealed.Close()
		return nil, fmt.Errorf("cannot seal a copy of %s in memory", path)
	}
	// The copy, not the file on disk (which may change), is what runs.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/proc/self/fd/3", "fingerprint")
	cmd.ExtraFiles = []*os.File{sealed}
	out, err := cmd.Output()
	if err != nil {
		sealed.Close()
		return nil, fmt.Errorf("%s fingerprint: %w", path, err)
	}
	// A program without module information (a test binary) cannot
	// tell, and takes a helper that names its versions.
	if want := containerinit.Fingerprint(); len(bytes.TrimSpace(out)) == 0 || want != "" && !bytes.Equal(out, []byte(want)) {
		sealed.Close()
		return nil, fmt.Errorf("%s is built from other versions of libcontainer than the agent (%q, the agent's %q)", path, out, want)
	}
	return sealed, nil
}
