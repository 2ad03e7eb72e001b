package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"nimbus/rpc"
)

// A sandbox is one container running one function revision's runtime.
//
//	         start
//	           │
//	           ▼
//	     initialising ──(exit, init error, init timeout)──► dead
//	           │ first /next
//	           ▼
//	┌───────► idle ──(FreezeAfter)──► frozen
//	│          │ acquire                │ acquire (thaw)
//	│          ▼                        │
//	└─ ok ── busy ◄─────────────────────┘
//	           │ timeout, OOM kill, crash
//	           ▼
//	         dead   (also from idle/frozen on IdleTimeout or retire)
//
// Fields set in start are immutable afterwards. mu guards the state below it.
// A sandbox serves one invocation at a time: the manager hands it to one
// caller and takes it back.
type sandbox struct {
	id      string
	key     string
	fn      *rpc.FunctionConfig
	ctr     *libcontainer.Container
	proc    *libcontainer.Process
	ns      *netns
	api     *runtimeAPI
	logs    *logPipe
	cgroups cgroupFiles
	started time.Time

	exited    chan struct{}
	exitState *os.ProcessState // set before exited is closed
	exitErr   error

	initDone     bool          // only the caller holding the sandbox touches it
	initDuration time.Duration // reported on the first invocation only

	mu          sync.Mutex
	frozen      bool
	busy        bool
	dead        bool
	lastUsed    time.Time
	freezeTimer *time.Timer
}

// cgroupFiles are the cgroup (v1) directories the sandbox reads and writes
// directly on the hot path, bypassing libcontainer's state bookkeeping.
type cgroupFiles struct {
	freezer, memory, cpu string
	// maxUsage is memory.max_usage_in_bytes, kept open: it is read after
	// every invocation, and pread on an open file costs a fraction of an
	// open/read/close of a cgroupfs path.
	maxUsage *os.File
}

func (c cgroupFiles) write(dir, file, value string) error {
	if dir == "" {
		return errors.New("cgroup controller not mounted")
	}
	return os.WriteFile(filepath.Join(dir, file), []byte(value), 0)
}

func (c cgroupFiles) readInt(dir, file string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// oomKills reads the kernel's count of OOM kills in the sandbox.
func (c cgroupFiles) oomKills() int64 {
	b, err := os.ReadFile(filepath.Join(c.memory, "memory.oom_control"))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func (c cgroupFiles) maxMemoryMB() int {
	if c.maxUsage == nil {
		return 0
	}
	var buf [32]byte
	n, err := c.maxUsage.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(buf[:n])), 10, 64)
	return int((v + (1<<20 - 1)) >> 20)
}

// startSandbox creates and starts a container running fn's bootstrap. It
// returns once the bootstrap process runs; the caller waits for api.ready.
func (m *Manager) startSandbox(fn *rpc.FunctionConfig, codeDir, id string) (_ *sandbox, err error) {
	ns, err := newNetns()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			ns.close()
		}
	}()
	logs, err := newLogPipe(fn.Name, m.cfg.Logs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			logs.r.Close()
			logs.w.Close()
		}
	}()
	cfg := containerConfig(containerSpec{
		rootfs:     m.image,
		codeDir:    codeDir,
		netnsPath:  ns.path(),
		cgroupPath: m.cfg.CgroupParent + "/" + id,
		memoryMB:   fn.MemoryMB,
		hostname:   "sandbox",
	})
	ctr, err := libcontainer.Create(m.cfg.StateDir, id, cfg)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	sb := &sandbox{
		id: id, key: sandboxKey(fn), fn: fn, ctr: ctr, ns: ns, logs: logs,
		api:    newRuntimeAPI(),
		exited: make(chan struct{}),
	}
	sb.proc = &libcontainer.Process{
		Args:   []string{"/var/task/bootstrap"},
		Env:    m.environment(fn, id),
		UID:    sandboxUID,
		GID:    sandboxGID,
		Cwd:    "/var/task",
		Stdout: logs.w,
		Stderr: logs.w,
		Init:   true,
	}
	go sb.api.serve(ns.ln)
	sb.started = time.Now()
	if err := ctr.Run(sb.proc); err != nil {
		sb.api.close()
		_ = ctr.Destroy()
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	logs.w.Close() // the container holds the only write end now
	go logs.run()
	go func() {
		sb.exitState, sb.exitErr = sb.proc.Wait()
		close(sb.exited)
	}()
	if st, err := ctr.State(); err == nil {
		sb.cgroups = cgroupFiles{
			freezer: st.CgroupPaths["freezer"],
			memory:  st.CgroupPaths["memory"],
			cpu:     st.CgroupPaths["cpu"],
		}
		sb.cgroups.maxUsage, _ = os.Open(filepath.Join(sb.cgroups.memory, "memory.max_usage_in_bytes"))
	}
	sb.freezeTimer = time.AfterFunc(time.Hour, sb.freeze)
	sb.freezeTimer.Stop()
	return sb, nil
}

func sandboxKey(fn *rpc.FunctionConfig) string {
	return fn.Name + "@" + strconv.FormatUint(fn.Revision, 10) + "@" + fn.CodeSHA256
}

// Key is how warm sandboxes are keyed: function name, revision and code
// digest, so a sandbox only ever serves the code it was started with. The
// scheduler places invocations on workers with an idle sandbox of the key.
func Key(fn *rpc.FunctionConfig) string { return sandboxKey(fn) }

func (m *Manager) environment(fn *rpc.FunctionConfig, id string) []string {
	env := make([]string, 0, len(fn.Env)+16)
	for k, v := range fn.Env {
		env = append(env, k+"="+v)
	}
	handler := fn.Handler
	if handler == "" {
		handler = "bootstrap"
	}
	env = append(env,
		"AWS_LAMBDA_RUNTIME_API="+RuntimeAPIAddr,
		"_HANDLER="+handler,
		"LAMBDA_TASK_ROOT=/var/task",
		"LAMBDA_RUNTIME_DIR=/var/runtime",
		"AWS_LAMBDA_FUNCTION_NAME="+fn.Name,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE="+strconv.Itoa(fn.MemoryMB),
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/"+fn.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME="+time.Now().UTC().Format("2006/01/02")+"/[$LATEST]"+id,
		"AWS_REGION="+m.cfg.Region,
		"AWS_DEFAULT_REGION="+m.cfg.Region,
		"TZ=:UTC",
		"LANG=en_US.UTF-8",
		"PATH=/usr/local/bin:/usr/bin/:/bin:/opt/bin",
		"LD_LIBRARY_PATH=/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
	)
	return env
}

// acquire marks the sandbox busy and thaws it. It fails if the sandbox died.
func (sb *sandbox) acquire() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.dead || sb.busy {
		return false
	}
	select {
	case <-sb.exited:
		return false
	default:
	}
	sb.freezeTimer.Stop()
	if sb.frozen {
		if err := sb.cgroups.write(sb.cgroups.freezer, "freezer.state", "THAWED"); err != nil {
			return false
		}
		sb.frozen = false
	}
	sb.busy = true
	return true
}

// release returns a healthy sandbox to idle and arms its freeze timer.
func (sb *sandbox) release(freezeAfter time.Duration) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	sb.busy = false
	sb.lastUsed = time.Now()
	if freezeAfter > 0 {
		sb.freezeTimer.Reset(freezeAfter)
	}
}

func (sb *sandbox) freeze() {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.busy || sb.frozen || sb.dead {
		return
	}
	if sb.cgroups.write(sb.cgroups.freezer, "freezer.state", "FROZEN") == nil {
		sb.frozen = true
	}
}

// idleSince reports when an idle sandbox was last used, and false if it is
// busy or dead.
func (sb *sandbox) idleSince() (time.Time, bool) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.lastUsed, !sb.busy && !sb.dead
}

// markDead makes the sandbox unusable; it returns false if it already was.
func (sb *sandbox) markDead() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.dead {
		return false
	}
	sb.dead = true
	sb.freezeTimer.Stop()
	if sb.frozen {
		_ = sb.cgroups.write(sb.cgroups.freezer, "freezer.state", "THAWED")
		sb.frozen = false
	}
	return true
}

// destroy kills every process of the sandbox and removes its container,
// cgroups and namespace. Call after markDead.
func (sb *sandbox) destroy() {
	sb.api.close()
	_ = sb.ctr.Signal(unix.SIGKILL)
	select {
	case <-sb.exited:
	case <-time.After(5 * time.Second):
	}
	if err := sb.ctr.Destroy(); err != nil {
		// A process that outlived init (it cannot, in its own pid
		// namespace) or a busy cgroup: try once more after a moment.
		time.Sleep(50 * time.Millisecond)
		_ = sb.ctr.Destroy()
	}
	sb.ns.close()
	if sb.cgroups.maxUsage != nil {
		sb.cgroups.maxUsage.Close()
	}
}

// exitDescription is the reason Lambda gives when a runtime exits.
const killSignal = unix.SIGKILL

func (sb *sandbox) exitDescription() string {
	st := sb.exitState
	if st == nil {
		if sb.exitErr != nil {
			return sb.exitErr.Error()
		}
		return "unknown"
	}
	if ws, ok := st.Sys().(unix.WaitStatus); ok && ws.Signaled() {
		return "signal: " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(st.ExitCode())
}
