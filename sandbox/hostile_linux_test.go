package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hostile functions: each case asserts the function is contained, the
// caller gets a clear answer, and a normal invocation succeeds right after.

func openFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

// A thousand Runtime API connections held open: the agent keeps at most
// apiMaxConns of them, and the function and others still run.
func TestHostileConnectionHoard(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{})
	fn := fnConfig("hoarder", 1)
	fn.MemoryMB = 512
	dir := codeDir(t, gofnBin)
	invoke(t, m, fn, dir, `{"do":"hello"}`)
	before := openFDs()
	res := invoke(t, m, fn, dir, `{"do":"hoard"}`)
	var p struct{ Dialed, Open int }
	if err := json.Unmarshal(res.Payload, &p); err != nil || res.ErrorType != "" {
		t.Fatalf("hoard: %s", res.Payload)
	}
	if p.Open > apiMaxConns {
		t.Errorf("the function holds %d Runtime API connections (dialed %d), want at most %d", p.Open, p.Dialed, apiMaxConns)
	}
	// The manager's counts say so (the metrics read them): the refused
	// connections, and no more open than the limit.
	if st := m.Stats(); st.RuntimeAPIRefused < uint64(p.Dialed-apiMaxConns) || st.RuntimeAPIConns > apiMaxConns || st.RuntimeAPIConns < 1 {
		t.Errorf("Stats: %d Runtime API connections open, %d refused; the function dialed %d", st.RuntimeAPIConns, st.RuntimeAPIRefused, p.Dialed)
	}
	// Other tests run in parallel and open descriptors too: allow for them,
	// but not for a thousand.
	if after := openFDs(); after-before > 100 {
		t.Errorf("the agent holds %d more descriptors during the hoard", after-before)
	}
	if r := invoke(t, m, fn, dir, `{"do":"hello"}`); r.ErrorType != "" {
		t.Fatalf("the hoarder's next invocation: %s", r.Payload)
	}
	if r := invoke(t, m, fnConfig("bystander", 1), codeDir(t, script("echo.sh")), `1`); r.ErrorType != "" {
		t.Fatalf("another function after the hoard: %s", r.Payload)
	}
}

// A function trying the kernel's wider doors (a user namespace by clone
// and by unshare, io_uring, the keyring, bpf, ptrace) is refused each with
// EPERM by the seccomp filter, cannot dump core, and still forks, execs and
// answers; a normal invocation runs right after.
func TestHostileSeccomp(t *testing.T) {
	t.Parallel()
	if runtime.GOARCH != "amd64" {
		t.Skip("testdata/gofn's system call numbers are amd64's")
	}
	m, _ := newTestManager(t, Config{})
	fn := fnConfig("escaper", 1)
	dir := codeDir(t, gofnBin)
	res := invoke(t, m, fn, dir, `{"do":"escape"}`)
	var got map[string]any
	if err := json.Unmarshal(res.Payload, &got); err != nil || res.ErrorType != "" {
		t.Fatalf("escape: %s", res.Payload)
	}
	for _, k := range []string{"clone_newuser", "unshare_newuser", "io_uring_setup", "keyctl", "bpf", "ptrace"} {
		if got[k] != "operation not permitted" {
			t.Errorf("%s: %q, want operation not permitted", k, got[k])
		}
	}
	if got["seccomp"] != "2" || got["core_hard"] != float64(0) || got["fork_exec"] != "" {
		t.Errorf("seccomp mode %v, core limit %v, fork/exec %q: want 2, 0 and success", got["seccomp"], got["core_hard"], got["fork_exec"])
	}
	if r := invoke(t, m, fn, dir, `{"do":"hello"}`); r.ErrorType != "" {
		t.Fatalf("a normal invocation after: %s", r.Payload)
	}
}

// A function flooding its output with 64 MB, with and without the tail:
// the rate limit drops what is over it and says how much, the tail stays
// 4 KB, and a normal invocation runs right after.
func TestHostileLogFlood(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{})
	fn := fnConfig("flood", 1)
	fn.MemoryMB = 1024
	fn.TimeoutSec = 60
	fn.Env = map[string]string{"FLOOD_MB": "64"}
	dir := codeDir(t, script("flood.sh"))
	for _, tail := range []bool{true, false} {
		res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: dir, Payload: []byte(`{}`), Tail: tail})
		if err != nil || res.ErrorType != "" || string(res.Payload) != `"flooded"` {
			t.Fatalf("flood (tail %v): %v %s", tail, err, res.Payload)
		}
		if len(res.LogTail) > tailBytes || (tail && !strings.Contains(res.LogTail, "REPORT RequestId: ")) {
			t.Errorf("tail of %d bytes: %q...", len(res.LogTail), res.LogTail[:min(80, len(res.LogTail))])
		}
		lines := sink.linesOf("flood", res.RequestID)
		var dropped int64
		kept := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "RequestId: "+res.RequestID+" Warning: ") {
				dropped, _ = strconv.ParseInt(strings.Fields(l)[3], 10, 64)
			} else {
				kept += len(l) + 1
			}
		}
		if dropped == 0 || kept > 64<<20/2 {
			t.Errorf("flood (tail %v): kept %d bytes, dropped %d: want most of 64 MB dropped and counted", tail, kept, dropped)
		}
	}
	if r := invoke(t, m, fnConfig("quiet", 1), codeDir(t, script("echo.sh")), `1`); r.ErrorType != "" {
		t.Fatalf("a normal function after the flood: %s", r.Payload)
	}
}

// A function that leaves hundreds of processes behind is not kept warm
// holding their pids: its sandbox is retired when it answers, the next
// invocation gets a fresh one, and all sandboxes together are held under a
// pids limit below the host's.
func TestHostileForkLeftovers(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{FreezeAfter: -1})
	fn := fnConfig("forker", 1)
	fn.MemoryMB = 1024
	fn.TimeoutSec = 60
	fn.Env = map[string]string{"FORKS": "400"}
	dir := codeDir(t, script("forkbomb.sh"))
	res := invoke(t, m, fn, dir, `{}`)
	if res.ErrorType != "" || string(res.Payload) != `{"started":400}` {
		t.Fatalf("forker: %s", res.Payload)
	}
	waitFor(t, "the forker's sandbox retired", func() bool { return m.Stats() == Stats{} })
	fn.Env = map[string]string{"FORKS": "0"}
	fn.Revision = 2
	if r := invoke(t, m, fn, dir, `{}`); r.ErrorType != "" || !r.Cold {
		t.Fatalf("after the leftovers: %s cold=%v", r.Payload, r.Cold)
	}
	got := readFile(filepath.Join(cgroupRoot, "pids", m.cfg.CgroupParent, "pids.max"))
	if n, err := strconv.ParseInt(got, 10, 64); err != nil || n != parentPidsLimit() || n >= 32768*4 {
		t.Errorf("parent pids.max = %q, want %d", got, parentPidsLimit())
	}
}

// Cgroups an earlier manager of the same state dir left behind are removed
// at start; another manager's are not touched.
func TestOrphanCgroupsRemoved(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	state := filepath.Join(t.TempDir(), "state")
	m1, _ := newTestManager(t, Config{StateDir: state})
	mine := m1.id
	m1.Close()
	foreign := randomHex(4)
	var made []string
	for _, ctrl := range []string{"pids", "memory", "freezer"} {
		for _, id := range []string{mine, foreign} {
			dir := filepath.Join(cgroupRoot, ctrl, m1.cfg.CgroupParent, id+"-leak-1")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			made = append(made, dir)
		}
	}
	t.Cleanup(func() {
		for _, d := range made {
			os.Remove(d)
		}
	})
	m2, _ := newTestManager(t, Config{StateDir: state})
	for _, d := range made {
		_, err := os.Stat(d)
		if strings.Contains(d, mine) && err == nil {
			t.Errorf("%s left by this state dir's earlier manager is still there", d)
		}
		if strings.Contains(d, foreign) && err != nil {
			t.Errorf("%s of another manager was removed", d)
		}
	}
	if r := invoke(t, m2, fnConfig("after-orphans", 1), codeDir(t, script("echo.sh")), `1`); r.ErrorType != "" {
		t.Fatalf("invoke after the cleanup: %s", r.Payload)
	}
}

// agentUsage is what the agent itself holds: descriptors, threads and
// resident memory.
type agentUsage struct {
	fds, threads int
	rssMB        int64
	sandboxes    int // the manager's, when measured
}

func usageNow(m *Manager) agentUsage {
	s := m.Stats()
	// The /tmp disks' descriptors (the loop device and the image of each,
	// the mount of a spare one) are not counted: spare disks outlive their
	// sandboxes by design (at most spareDisks of them), and a retired
	// sandbox's disk is given only once its destroy is over.
	m.scratch.resets.Wait()
	m.scratch.mu.Lock()
	diskFDs := 2*m.scratch.live + m.scratch.nspare
	m.scratch.mu.Unlock()
	u := agentUsage{fds: openFDs() - diskFDs, sandboxes: s.Idle + s.Busy}
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Threads:":
			u.threads = int(n)
		case "VmRSS:":
			u.rssMB = n >> 10
		}
	}
	return u
}

// nearBaseline fails t unless the agent is back near what it held before
// a hostile function ran, once the sandboxes of the functions named are
// gone (each live sandbox holds a few descriptors of the agent's). Go keeps
// the threads it started, and the heap the collector has not returned yet:
// the margins allow for that, not for a leak per process, connection or
// byte of the function's.
func nearBaseline(t *testing.T, m *Manager, before agentUsage, retire ...string) {
	t.Helper()
	for _, name := range retire {
		m.Retire(name, 0)
	}
	waitFor(t, "the hostile sandboxes gone", func() bool { s := m.Stats(); return s.Idle+s.Busy == before.sandboxes })
	// A retired sandbox leaves the stats at once, but its destroy (kill,
	// wait, unmount, then its pipes, namespaces and cgroup files closed)
	// runs in the background, slower on a loaded machine: give it time.
	var after agentUsage
	for deadline := time.Now().Add(10 * time.Second); ; {
		runtime.GC()
		after = usageNow(m)
		near := after.fds <= before.fds+16 && after.threads <= before.threads+32 && after.rssMB <= before.rssMB+64
		if near || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if after.fds > before.fds+16 || after.threads > before.threads+32 || after.rssMB > before.rssMB+64 {
		t.Errorf("the agent holds %d descriptors, %d threads, %d MB resident; before: %d, %d, %d MB",
			after.fds, after.threads, after.rssMB, before.fds, before.threads, before.rssMB)
	}
}

// An inotify hog holds every inotify instance the kernel gives one user;
// a second function beside it still gets its own, because each sandbox is
// a host uid of its own (uid 993 inside, with no capability). Not
// parallel: the agent's baseline is its own.
func TestHostileInotifyHog(t *testing.T) {
	m, _ := newTestManager(t, Config{})
	limit, err := strconv.Atoi(readFile("/proc/sys/fs/inotify/max_user_instances"))
	if err != nil || limit > nofileLimit-64 {
		t.Skipf("max_user_instances %d: the descriptor limit would stop the hog first", limit)
	}
	dir := codeDir(t, gofnBin)
	invoke(t, m, fnConfig("bystander", 1), dir, `{"do":"hello"}`)
	before := usageNow(m)
	var hog struct {
		Held  int
		Error string
	}
	res := invoke(t, m, fnConfig("inotify-hog", 1), dir, `{"do":"inotify","n":`+strconv.Itoa(limit+1)+`}`)
	if err := json.Unmarshal(res.Payload, &hog); err != nil || res.ErrorType != "" {
		t.Fatalf("hog: %s", res.Payload)
	}
	if hog.Held != limit || hog.Error != "too many open files" {
		t.Fatalf("the hog holds %d inotify instances (%q), want the per-user limit %d", hog.Held, hog.Error, limit)
	}
	// The hog stays warm, holding them, while the other function asks.
	var other struct {
		Held  int
		Error string
	}
	res = invoke(t, m, fnConfig("bystander", 1), dir, `{"do":"inotify","n":8}`)
	if err := json.Unmarshal(res.Payload, &other); err != nil || res.ErrorType != "" || other.Held != 8 {
		t.Fatalf("beside the hog, another function got %d of 8 inotify instances (%q): %s", other.Held, other.Error, res.Payload)
	}
	var ids struct {
		UID, GID int
		UIDMap   string `json:"uid_map"`
		CapEff   string `json:"cap_eff"`
	}
	res = invoke(t, m, fnConfig("bystander", 1), dir, `{"do":"ids"}`)
	if err := json.Unmarshal(res.Payload, &ids); err != nil {
		t.Fatalf("ids: %s", res.Payload)
	}
	f := strings.Fields(ids.UIDMap)
	if ids.UID != sandboxUID || ids.GID != sandboxGID || ids.CapEff != "0000000000000000" || len(f) != 3 || f[0] != "993" || f[2] != "1" {
		t.Errorf("inside: uid %d gid %d, capabilities %s, uid map %q; want 993, 990, none, one uid mapped", ids.UID, ids.GID, ids.CapEff, ids.UIDMap)
	}
	if host, _ := strconv.Atoi(at(f, 1)); host < m.cfg.SandboxUIDFirst || host >= m.cfg.SandboxUIDFirst+m.cfg.SandboxUIDCount {
		t.Errorf("host uid %d is outside the manager's range from %d", host, m.cfg.SandboxUIDFirst)
	}
	if r := invoke(t, m, fnConfig("after-hog", 1), codeDir(t, script("echo.sh")), `1`); r.ErrorType != "" {
		t.Fatalf("a normal function after the hog: %s", r.Payload)
	}
	nearBaseline(t, m, before, "inotify-hog", "after-hog")
}

// A function that answers and then takes 200 MB while idle is retired
// early, long before its idle timeout; one beside it that holds what it
// used while running stays warm.
func TestHostileIdleMemoryGrowth(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{FreezeAfter: -1})
	dir := codeDir(t, gofnBin)
	calm := fnConfig("calm", 1)
	if r := invoke(t, m, calm, dir, `{"do":"hello"}`); r.ErrorType != "" {
		t.Fatalf("calm: %s", r.Payload)
	}
	grower := fnConfig("grower", 1)
	grower.MemoryMB = 512
	if r := invoke(t, m, grower, dir, `{"do":"grow","n":200}`); r.ErrorType != "" {
		t.Fatalf("grower: %s", r.Payload)
	}
	waitFor(t, "the grower retired", func() bool { return !m.HasWarm(grower) })
	if !m.HasWarm(calm) {
		t.Fatal("the function that did not grow was retired too")
	}
	if r := invoke(t, m, grower, dir, `{"do":"hello"}`); r.ErrorType != "" || !r.Cold {
		t.Fatalf("the grower's next invocation: %s (cold %v), want a fresh sandbox", r.Payload, r.Cold)
	}
}

// The sandboxes' parent cgroup is held under the host's memory, and the
// agent's own memory and pids cgroups are not under it.
func TestAgentCgroupsApart(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{})
	parent := m.cfg.CgroupParent
	got, err := strconv.ParseInt(readFile(filepath.Join(cgroupRoot, "memory", parent, "memory.limit_in_bytes")), 10, 64)
	if total := hostMemoryBytes(); err != nil || got != parentMemoryLimit() || got >= total || got < total/2 {
		t.Errorf("parent memory.limit_in_bytes %d, want %d: below the host's %d", got, parentMemoryLimit(), total)
	}
	own := readFile("/proc/self/cgroup")
	for _, ctrl := range []string{"memory", "pids"} {
		path, ok := cgroupOf(own, ctrl)
		if !ok {
			t.Fatalf("no %s cgroup in %q", ctrl, own)
		}
		if path == "/" || path == parent || strings.HasPrefix(path, parent+"/") {
			t.Errorf("the agent's %s cgroup is %s: not one of its own apart from %s", ctrl, path, parent)
		}
	}
}

// Fork bombs in four sandboxes at once: each is held to its own pids
// limit (the kernel refuses its next fork), the parent's limit is never
// what stops them, every sandbox is retired rather than kept warm holding
// its processes, and a normal function runs right after with the agent
// back near its baseline. Not parallel: the agent's baseline and the
// parent cgroup's count are its own.
func TestHostileForkBombs(t *testing.T) {
	m, _ := newTestManager(t, Config{FreezeAfter: -1})
	dir := codeDir(t, gofnBin)
	invoke(t, m, fnConfig("warmup", 1), dir, `{"do":"hello"}`)
	before := usageNow(m)
	const bombs = 4
	type bomb struct {
		Started int
		Error   string
	}
	results := make([]bomb, bombs)
	errs := make([]error, bombs)
	var wg sync.WaitGroup
	for i := range bombs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn := fnConfig("bomb-"+strconv.Itoa(i), 1)
			fn.MemoryMB = 1024
			fn.TimeoutSec = 60
			res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: dir, Payload: []byte(`{"do":"forkbomb"}`)})
			if err == nil && res.ErrorType != "" {
				err = fmt.Errorf("%s: %s", res.ErrorType, res.Payload)
			}
			if err == nil {
				err = json.Unmarshal(res.Payload, &results[i])
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("bomb %d: %v", i, errs[i])
		}
		// The runtime and PID 1 hold a few of the sandbox's pids too.
		if r.Error != "resource temporarily unavailable" || r.Started >= pidsLimit || r.Started < pidsLimit-64 {
			t.Errorf("bomb %d started %d processes before %q, want its own limit of %d to stop it", i, r.Started, r.Error, pidsLimit)
		}
	}
	waitFor(t, "the bombs' sandboxes retired", func() bool { return !m.HasWarm(fnConfig("bomb-0", 1)) && m.Stats().Idle == 1 })
	parent := filepath.Join(cgroupRoot, "pids", m.cfg.CgroupParent)
	waitFor(t, "the bombs' processes gone", func() bool {
		n, _ := strconv.Atoi(readFile(filepath.Join(parent, "pids.current")))
		return n < pidsLimit/4
	})
	if r := invoke(t, m, fnConfig("after-bombs", 1), codeDir(t, script("echo.sh")), `1`); r.ErrorType != "" {
		t.Fatalf("a normal function after the bombs: %s", r.Payload)
	}
	nearBaseline(t, m, before, "after-bombs")
}

// A function writing /tmp full gets "no space left on device" once it has
// stored its ephemeral storage's size (512 MB by default), however little
// memory it has: /tmp is a disk of its own, not its memory
// (scratch_linux.go). The full sandbox still serves (a warm /tmp is the
// function's, as on Lambda), and a normal function runs right after with
// the agent near its baseline.
// Not parallel: the agent's baseline is its own.
func TestHostileTmpFill(t *testing.T) {
	m, _ := newTestManager(t, Config{})
	dir := codeDir(t, gofnBin)
	invoke(t, m, fnConfig("warmup", 1), dir, `{"do":"hello"}`)
	before := usageNow(m)

	for _, c := range []struct {
		name            string
		memoryMB, tmpMB int
	}{
		{"small-filler", 128, 0}, // the default, 512 MB
		{"big-filler", 1024, 640},
	} {
		fn := fnConfig(c.name, 1)
		fn.MemoryMB, fn.EphemeralStorageMB = c.memoryMB, c.tmpMB
		fn.TimeoutSec = 60
		var fill struct {
			Written int64
			Error   string
		}
		res := invoke(t, m, fn, dir, `{"do":"fill"}`)
		if err := json.Unmarshal(res.Payload, &fill); err != nil || res.ErrorType != "" {
			t.Fatalf("%s: %s %s", c.name, res.ErrorType, res.Payload)
		}
		want := int64(fn.TmpSizeMB()) << 20
		extra := int64(tmpExtraMB(fn.TmpSizeMB())) << 20
		if fill.Error != "no space left on device" || fill.Written < want || fill.Written > want+extra {
			t.Errorf("%s (%d MB of memory) wrote %d bytes to /tmp before %q, want %d MB (up to %d MB more) and no space left",
				c.name, c.memoryMB, fill.Written, fill.Error, fn.TmpSizeMB(), extra>>20)
		}
		if r := invoke(t, m, fn, dir, `{"do":"hello"}`); r.ErrorType != "" || r.Cold {
			t.Fatalf("%s's next invocation: %s (cold %v), want its warm sandbox", c.name, r.Payload, r.Cold)
		}
		m.Retire(fn.Name, 0)
	}
	if r := invoke(t, m, fnConfig("after-fill", 1), codeDir(t, script("echo.sh")), `1`); r.ErrorType != "" {
		t.Fatalf("a normal function after the fill: %s", r.Payload)
	}
	nearBaseline(t, m, before, "small-filler", "big-filler", "after-fill")
}
