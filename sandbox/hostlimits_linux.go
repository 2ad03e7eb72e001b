package sandbox

import (
	"bufio"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// What a manager does for the host: a pids limit on the parent cgroup of
// all sandboxes, below the host's, so fork bombs in many sandboxes at once
// cannot starve the agent of threads; and at start, the removal of cgroups
// that earlier managers of the same state dir left behind (a SIGKILL during
// a cold start leaves empty ones). Other agents' and other state dirs'
// cgroups under the same parent are never touched: a manager records its
// id in its state dir, and only cgroups named after recorded ids are ours.

// cgroupRoot is where the cgroup v1 controllers are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// managersFile, in the state dir, lists the ids of managers that used it.
const managersFile = "managers"

// idlePidsLimit: a sandbox that goes idle with more processes than this is
// retired instead of kept warm (a fork bomb's leftovers would hold their
// pids while frozen).
const idlePidsLimit = 256

// parentPidsLimit is the pids limit of all sandboxes together: half of
// what the host allows.
func parentPidsLimit() int64 {
	limit := int64(32768)
	for _, f := range []string{"/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"} {
		if b, err := os.ReadFile(f); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n < limit*4 {
				limit = min(limit, n)
			}
		}
	}
	return limit / 2
}

// limitParentPids creates the parent's pids cgroup if needed and sets its
// limit. Several managers under one parent write the same value.
func limitParentPids(parent string) error {
	dir := filepath.Join(cgroupRoot, "pids", parent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.FormatInt(parentPidsLimit(), 10)), 0)
}

// removeOrphanCgroups removes, in every controller, the cgroups under
// parent named after a manager id recorded in stateDir, then records only
// self. A cgroup with processes left is thawed and its processes killed
// first.
func removeOrphanCgroups(stateDir, parent, self string, log *slog.Logger) {
	path := filepath.Join(stateDir, managersFile)
	var ids []string
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if id := strings.TrimSpace(sc.Text()); len(id) == 8 {
				ids = append(ids, id)
			}
		}
		f.Close()
	}
	controllers, _ := os.ReadDir(cgroupRoot)
	for _, id := range ids {
		for _, c := range controllers {
			matches, _ := filepath.Glob(filepath.Join(cgroupRoot, c.Name(), parent, id+"-*"))
			for _, dir := range matches {
				if err := removeCgroup(dir); err != nil {
					log.Warn("cgroup left by an earlier agent not removed", "dir", dir, "err", err)
				}
			}
		}
	}
	_ = os.WriteFile(path, []byte(self+"\n"), 0o600)
}

// removeCgroup empties a cgroup directory and removes it, trying for a
// while: a killed process leaves its cgroup only once the kernel reaped it.
func removeCgroup(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0)
		if b, rerr := os.ReadFile(filepath.Join(dir, "cgroup.procs")); rerr == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, perr := strconv.Atoi(f); perr == nil {
					_ = killPid(pid)
				}
			}
		}
		if err = os.Remove(dir); err == nil || os.IsNotExist(err) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// pidsCurrent is the number of processes in the sandbox.
func (c cgroupFiles) pidsCurrent() int64 { return preadInt(c.pidsCur) }
