package sandbox

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"
)

// Every container's init is this program, re-executed by libcontainer, and
// libcontainer seals it first so that a container cannot overwrite the
// host's binary (CVE-2019-5736): with a read-only overlay of the binary's
// folder when it can (about 0.2 ms), else by copying the whole binary into
// a sealed memfd, on every container start (tens of milliseconds and of
// CPU for the agent's 40 MB). The overlay cannot be made when the binary's
// folder and the container's state folder nest (a binary installed beside
// its data dir), and then every cold start paid for the copy. SealSelf
// makes that copy once: when the overlay cannot be made for stateDir, it
// re-executes the agent from the sealed copy, which libcontainer then uses
// as it is (an already sealed /proc/self/exe is not copied again).

// selfPathEnv carries the binary's path on disk across that re-execution:
// the sandboxes' PID 1 is mounted from it.
const selfPathEnv = "_NIMBUS_SEALED_FROM"

// SealSelf re-executes this program from a sealed copy in memory when
// libcontainer could not seal it cheaply for the containers kept in
// stateDir. It returns only when no re-execution is needed (or on an
// error, which leaves libcontainer copying at each start); call it first,
// before the program has started anything.
func SealSelf(stateDir string, log *slog.Logger) error {
	if exeseal.IsSelfExeCloned() {
		return nil // re-executed already
	}
	path, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	// What libcontainer does at each start: the overlay, or the copy.
	exe, err := exeseal.CloneSelfExe(stateDir)
	if err != nil {
		return err
	}
	if !exeseal.IsCloned(exe) {
		exe.Close() // the overlay works: nothing to do
		return nil
	}
	if log != nil {
		log.Info("the agent's binary and its state dir nest, so its sandboxes' init cannot be sealed by an overlay: running from a sealed copy in memory instead of copying it at every sandbox start",
			"binary", path, "state_dir", stateDir)
	}
	env := append(os.Environ(), selfPathEnv+"="+path)
	err = unix.Exec("/proc/self/fd/"+strconv.Itoa(int(exe.Fd())), os.Args, env)
	exe.Close()
	return fmt.Errorf("re-execute from the sealed copy: %w", err)
}

// selfPath is this program's path on disk: os.Executable, or where the
// sealed copy SealSelf runs from came from.
func selfPath() (string, error) {
	if exeseal.IsSelfExeCloned() {
		if p := os.Getenv(selfPathEnv); p != "" && filepath.IsAbs(p) {
			return p, nil
		}
	}
	return os.Executable()
}
