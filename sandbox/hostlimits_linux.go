package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// What a manager does for the host: a pids limit on the parent cgroup of
// all sandboxes, below the host's, so fork bombs in many sandboxes at once
// cannot starve the agent of threads; a memory limit on it, below the
// host's memory, so sandboxes together cannot bring the host's own OOM
// killer to the agent (the kernel kills within the parent instead); the
// agent in cgroups of its own, apart from its sandboxes' (agentCgroups);
// idle sandboxes retired early when they hold far more memory than they
// used while running; and at start, the removal of cgroups
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

// Memory left outside the sandboxes' parent limit, for the agent and the
// host: an eighth of the host's memory, at least 512 MiB.
const minAgentReserveMB = 512

// An idle sandbox is retired early when it holds more than twice the
// memory it had used at most when it answered, and idleMemorySlackMB more.
const idleMemorySlackMB = 64

// parentMemoryLimit is the memory limit of all sandboxes together, in
// bytes (0 when the host's memory is unknown).
func parentMemoryLimit() int64 {
	total := hostMemoryBytes()
	if total == 0 {
		return 0
	}
	reserve := max(total/8, minAgentReserveMB<<20)
	page := int64(os.Getpagesize()) // the kernel keeps whole pages
	return max(total-reserve, total/2) / page * page
}

// hostMemoryBytes is MemTotal from /proc/meminfo.
func hostMemoryBytes() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// limitParentMemory creates the parent's memory cgroup if needed and sets
// its limit (and its memory+swap limit, where there is one: no swap).
func limitParentMemory(parent string) error {
	limit := parentMemoryLimit()
	if limit == 0 {
		return errors.New("the host's memory is unknown")
	}
	dir := filepath.Join(cgroupRoot, "memory", parent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	v := []byte(strconv.FormatInt(limit, 10))
	// memsw must stay at or above the memory limit: raise it first when
	// the memory limit grows, lower it after when it shrinks.
	memsw := filepath.Join(dir, "memory.memsw.limit_in_bytes")
	if memswSupported {
		_ = os.WriteFile(memsw, []byte("-1"), 0)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), v, 0); err != nil {
		return err
	}
	if memswSupported {
		return os.WriteFile(memsw, v, 0)
	}
	return nil
}

// agentCgroups puts the agent in cgroups of its own, apart from its
// sandboxes, for the controllers that limit them (memory, pids): where the
// agent is in a hierarchy's root cgroup (a plain root process), it moves
// itself to parent+"-agent", with no limit, so what it uses is counted
// apart from what its sandboxes use and the sandboxes' limits never apply
// to it. Under systemd (or any manager that gave it a cgroup) it stays
// where it was put: the unit is its cgroup. It refuses a cgroup under the
// sandboxes' parent, whose limits are theirs.
func agentCgroups(parent string) error {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	for _, ctrl := range []string{"memory", "pids"} {
		path, ok := cgroupOf(string(own), ctrl)
		if !ok {
			continue
		}
		if path == parent || strings.HasPrefix(path, parent+"/") {
			return fmt.Errorf("the agent runs in %s, under its sandboxes' parent cgroup %s", path, parent)
		}
		if path != "/" {
			continue
		}
		dir := filepath.Join(cgroupRoot, ctrl, parent+"-agent")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return err
		}
	}
	return nil
}

// cgroupOf finds controller ctrl's cgroup in the text of /proc/<pid>/cgroup.
func cgroupOf(procCgroup, ctrl string) (string, bool) {
	for _, l := range strings.Split(procCgroup, "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == ctrl {
				return parts[2], true
			}
		}
	}
	return "", false
}

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

// memoryMB is the memory the sandbox holds now.
func (c cgroupFiles) memoryMB() int { return int(preadInt(c.usage) >> 20) }

// idleMemoryOver reports whether an idle or frozen sandbox holds far more
// memory than it had used at most when it last answered: what grew after
// (a background process, files in /tmp) is not kept warm.
func (sb *sandbox) idleMemoryOver() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.state != stateIdle && sb.state != stateFrozen {
		return false
	}
	now := sb.cgroups.memoryMB()
	return now > 2*sb.peakMB && now > sb.peakMB+idleMemorySlackMB
}
