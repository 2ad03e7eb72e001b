package sandbox

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"nimbus/internal/rawio"
	"nimbus/rpc"
)

// A sandbox is one container running one function revision's runtime.
//
//	         start
//	           │
//	           ▼
//	         cold ──(exit, init error, init timeout)──► dead
//	           │ init over (first /next), invocation runs
//	           ▼
//	┌──────── busy ◄──────────────────────┐
//	│ runtime back in /next               │ acquire (thaw)
//	▼                                     │
//	idle ──(FreezeAfter)──► frozen ───────┘
//	│ acquire
//	└──► busy
//	busy ──(timeout, OOM kill, crash, exit after answering)──► dead
//	idle, frozen ──(IdleTimeout, retire, Close)──► dead
//
// Fields set in start are immutable afterwards. mu guards the fields below
// it; state changes only through to, which refuses what the diagram does not
// allow. A sandbox serves one invocation at a time: the manager hands it to
// one caller and takes it back.
type sandbox struct {
	id      string
	key     string
	fn      *rpc.FunctionConfig
	hostUID int // its own, from the manager's range; the uid and gid of its processes on the host
	// overlaid are the host folders whose overlays it holds.
	overlaid []string
	ctr      *libcontainer.Container
	proc     *libcontainer.Process
	ns       *netns
	api      *runtimeAPI
	logs     *logPipe
	cgroups  cgroupFiles
	started  time.Time

	// endReason is the SHUTDOWN reason its extensions get when it is
	// destroyed ("" for spindown); set before it is marked dead.
	endReason   string
	exited      chan struct{} // the runtime has ended (PID 1 reported it, or PID 1 exited)
	pid1Done    chan struct{} // PID 1 has exited: every process of the sandbox has ended
	waitMu      sync.Mutex
	exitState   *os.ProcessState // PID 1's; under waitMu
	exitErr     error
	pid1Report  []byte   // what PID 1 wrote about the runtime's end; set before exited is closed
	argv0       string   // the runtime's program, set when the sandbox is claimed
	memoryMB    int      // its memory limit now
	start       *os.File // PID 1's start pipe, closed once (startOnce): at the claim, at the go, or at its end
	startOnce   sync.Once
	primed      bool        // its shim was started before its function was known (shell_linux.go)
	refill      func()      // makes its runtime's pool whole again, once its first invocation is over
	mntns       *os.File    // its mount namespace, held from its start (claims join it)
	tmp         *scratch    // its /tmp (scratch_linux.go): made ahead for a pooled shell, moved in at the claim
	logsRunning bool        // its log pipe's reader was started (at the claim)
	retired     atomic.Bool // retire ran: destroy only once
	// extFailed is an external extension's failure after the init: the
	// sandbox is not used again (Lambda resets such an environment).
	extFailed atomic.Pointer[extensionFailure]
	extStuck  atomic.Bool // an extension outlived the wait for it (awaitExtensions)

	initDone     bool          // only the caller holding the sandbox touches it
	initDuration time.Duration // reported on the first invocation only
	// peakMB is the most memory it had used when it last answered: written
	// by the caller holding it, read by the reaper under mu once idle
	// (release, under mu, orders the two).
	peakMB int
	// residentMB is the peak resident memory of its processes, read at
	// residentAt (residentPeakMB); only the caller holding it touches them.
	residentMB int
	residentAt time.Time

	mu          sync.Mutex
	state       sbState
	retiring    bool // destroy when the invocation in flight ends
	lastUsed    time.Time
	freezeTimer *time.Timer
}

// sbState is a sandbox's place in the lifecycle above.
type sbState uint8

const (
	stateCold sbState = iota
	stateBusy
	stateIdle
	stateFrozen
	stateDead
)

var stateNames = [...]string{"cold", "busy", "idle", "frozen", "dead"}

func (s sbState) String() string { return stateNames[s] }

// allowed reports whether the lifecycle has an edge from s to next.
func (s sbState) allowed(next sbState) bool {
	switch s {
	case stateCold:
		return next == stateBusy || next == stateDead
	case stateBusy:
		return next == stateIdle || next == stateDead
	case stateIdle:
		return next == stateBusy || next == stateFrozen || next == stateDead
	case stateFrozen:
		return next == stateBusy || next == stateDead
	}
	return false
}

// to moves the sandbox to next if the lifecycle allows it. The caller holds
// mu.
func (sb *sandbox) to(next sbState) bool {
	if !sb.state.allowed(next) {
		return false
	}
	sb.state = next
	return true
}

// cgroupFiles are the cgroup (v1) directories the sandbox reads and writes
// directly on the hot path, bypassing libcontainer's state bookkeeping.
type cgroupFiles struct {
	freezer, memory, cpu, pids string
	// maxUsage is memory.max_usage_in_bytes, kept open: it is read after
	// every invocation, and pread on an open file costs a fraction of an
	// open/read/close of a cgroupfs path.
	maxUsage *os.File
	// pidsCur is pids.current, read as each invocation ends; kept open too.
	pidsCur *os.File
	// usage is memory.usage_in_bytes, read by the reaper while idle.
	usage *os.File
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
	v := preadInt(c.maxUsage)
	return int((v + (1<<20 - 1)) >> 20)
}

// maxMemoryMB is the REPORT's Max Memory Used: the memory cgroup's peak, or
// the peak resident memory of the sandbox's processes when that is more,
// up to the function's memory size. The second counts the file-backed
// pages of the runtime (its binary and libraries), whose page cache is
// charged to whoever read the file first, often not this sandbox.
func (sb *sandbox) maxMemoryMB(limitMB int) (report, cgroup int) {
	cgroup = sb.cgroups.maxMemoryMB()
	report = max(cgroup, min(sb.residentPeakMB(), limitMB))
	return report, cgroup
}

// residentInterval is how often residentPeakMB reads /proc: an open and a
// read per process, too much to do after every warm invocation.
const residentInterval = time.Second

// residentPeakMB sums the processes' VmHWM, at most once per
// residentInterval (the first invocation always reads it).
func (sb *sandbox) residentPeakMB() int {
	if !sb.residentAt.IsZero() && time.Since(sb.residentAt) < residentInterval {
		return sb.residentMB
	}
	sb.residentAt = time.Now()
	procs, err := os.ReadFile(filepath.Join(sb.cgroups.memory, "cgroup.procs"))
	if err != nil {
		return sb.residentMB
	}
	var kb int64
	for pid := range strings.FieldsSeq(string(procs)) {
		kb += statusKB("/proc/"+pid+"/status", "VmHWM:")
	}
	sb.residentMB = max(sb.residentMB, int((kb+1023)/1024))
	return sb.residentMB
}

// statusKB reads one "Name:   N kB" field of a /proc status file (0 when
// it is not there).
func statusKB(path, field string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	i := bytes.Index(b, []byte("\n"+field))
	if i < 0 {
		return 0
	}
	rest := b[i+1+len(field):]
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(rest)), "kB")), 10, 64)
	return n
}

// preadInt reads the number in an open cgroup file from its start.
func preadInt(f *os.File) int64 {
	if f == nil {
		return 0
	}
	// One pread reads a cgroup file's value whole (os.File.ReadAt would
	// read again to meet the end of the file), two of which are made
	// after every invocation; a raw one, since it never blocks.
	var buf [32]byte
	n, err := rawio.Pread(f, buf[:], 0)
	if err != nil || n <= 0 {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(buf[:n])), 10, 64)
	return v
}

// startSandbox creates and starts a container running fn's bootstrap. It
// returns once the bootstrap process runs; the caller waits for api.ready.
func (m *Manager) environment(fn *rpc.FunctionConfig, rt *Runtime, id string) []string {
	env := make([]string, 0, len(fn.Env)+24)
	for k, v := range fn.Env {
		// _NIMBUS_* are the platform's own with its shims (primeVar).
		if !rpc.IsReservedEnvKey(k) && !strings.HasPrefix(k, "_NIMBUS_") {
			env = append(env, k+"="+v)
		}
	}
	for _, kv := range defaultEnv {
		if _, set := fn.Env[kv[0]]; !set {
			env = append(env, kv[0]+"="+kv[1])
		}
	}
	for _, kv := range rt.Env {
		if _, set := fn.Env[kv[0]]; !set {
			env = append(env, kv[0]+"="+kv[1])
		}
	}
	if rt.Image != nil {
		env = append(env, "AWS_EXECUTION_ENV=AWS_Lambda_"+rt.Name)
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
		"AWS_LAMBDA_FUNCTION_VERSION="+fn.VersionName(),
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/"+fn.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME="+logStreamName(time.Now(), fn.VersionName(), id),
		"AWS_REGION="+m.cfg.ARNs.AWSRegion(),
		"AWS_DEFAULT_REGION="+m.cfg.ARNs.AWSRegion(),
	)
	// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN are
	// left unset until access control gives a function credentials of its
	// own: an empty key would stop the SDKs' search for other credentials.
	return env
}

// runtimeDir is the host folder mounted at /var/runtime for rt ("" for
// none).
func (m *Manager) runtimeDir(rt *Runtime) string {
	if rt.Shim == "" {
		return ""
	}
	return filepath.Join(m.shimDir, rt.Shim)
}

// logStreamName is Lambda's log stream name of a sandbox:
// YYYY/MM/DD/[VERSION] and 32 hex digits that name the sandbox.
func logStreamName(now time.Time, version, sandboxID string) string {
	h := sha256.Sum256([]byte(sandboxID))
	return now.UTC().Format("2006/01/02") + "/[" + version + "]" + hex.EncodeToString(h[:16])
}

// acquire marks a cold, idle or frozen sandbox busy, thawing it. It fails
// if the sandbox died or is being retired.
func (sb *sandbox) acquire() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.retiring || sb.extFailed.Load() != nil {
		return false
	}
	select {
	case <-sb.exited:
		return false
	default:
	}
	sb.freezeTimer.Stop()
	if sb.state == stateFrozen {
		if err := sb.cgroups.write(sb.cgroups.freezer, "freezer.state", "THAWED"); err != nil {
			return false
		}
	}
	return sb.to(stateBusy)
}

// release returns a busy sandbox whose runtime waits in /next to idle and
// arms its freeze timer. It reports false if the sandbox cannot be reused.
func (sb *sandbox) release(freezeAfter time.Duration) bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if e := sb.extFailed.Load(); e != nil {
		sb.logs.emit(extensionCrashLine(*e))
		return false
	}
	if sb.retiring || sb.extStuck.Load() || sb.cgroups.pidsCurrent() > idlePidsLimit || !sb.to(stateIdle) {
		return false
	}
	sb.lastUsed = time.Now()
	if freezeAfter > 0 {
		sb.freezeTimer.Reset(freezeAfter)
	}
	return true
}

// extensionPoll is how often a freeze that waits for extensions looks
// again.
const extensionPoll = 20 * time.Millisecond

// freeze freezes an idle sandbox, once the extensions that had its last
// INVOKE are back in /event/next (their work after the response, a flush
// say, is part of the invocation, as on Lambda), or the function's timeout
// after it went idle.
func (sb *sandbox) freeze() {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.state != stateIdle {
		return
	}
	if sb.api.extensionsBusy() && sb.fn != nil && time.Since(sb.lastUsed) < time.Duration(sb.fn.TimeoutSec)*time.Second {
		sb.freezeTimer.Reset(extensionPoll)
		return
	}
	if sb.cgroups.write(sb.cgroups.freezer, "freezer.state", "FROZEN") == nil {
		sb.to(stateFrozen)
	}
}

// idleSince reports when an idle or frozen sandbox was last used, and false
// if it is in any other state.
func (sb *sandbox) idleSince() (time.Time, bool) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.lastUsed, sb.state == stateIdle || sb.state == stateFrozen
}

// isDead reports whether the sandbox cannot serve again.
func (sb *sandbox) isDead() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.state == stateDead || sb.retiring
}

// retireWhenDone marks the sandbox to be destroyed instead of reused.
func (sb *sandbox) retireWhenDone() {
	sb.mu.Lock()
	sb.retiring = true
	sb.mu.Unlock()
}

// markDead makes the sandbox unusable; it returns false if it already was.
func (sb *sandbox) markDead() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	wasFrozen := sb.state == stateFrozen
	if !sb.to(stateDead) {
		return false
	}
	sb.freezeTimer.Stop()
	if wasFrozen {
		_ = sb.cgroups.write(sb.cgroups.freezer, "freezer.state", "THAWED")
	}
	return true
}

// destroy kills every process of the sandbox and removes its container,
// cgroups and namespace. Call after markDead. It tries again, thawing
// first each time, until the container is gone or a minute has passed: a
// thaw that failed (descriptors exhausted) must not leave a frozen sandbox
// with its SIGKILL pending forever.
func (sb *sandbox) destroy() {
	sb.closeStart() // a PID 1 still waiting for its extensions to register exits at once
	sb.shutdown()
	sb.api.close()
	var err error
	for attempt, wait := 0, 20*time.Millisecond; attempt < 12; attempt, wait = attempt+1, min(2*wait, 10*time.Second) {
		if attempt > 0 {
			time.Sleep(wait)
		}
		if sb.cgroups.freezer != "" {
			_ = sb.cgroups.write(sb.cgroups.freezer, "freezer.state", "THAWED")
		}
		_ = sb.ctr.Signal(unix.SIGKILL)
		select {
		case <-sb.pid1Done:
		case <-time.After(5 * time.Second):
			continue
		}
		if err = sb.ctr.Destroy(); err == nil {
			break
		}
	}
	sb.ns.close()
	if sb.mntns != nil {
		sb.mntns.Close()
	}
	if !sb.logsRunning { // its reader, which closes the pipe, never started
		sb.logs.r.Close()
	}
	if sb.cgroups.maxUsage != nil {
		sb.cgroups.maxUsage.Close()
	}
	if sb.cgroups.pidsCur != nil {
		sb.cgroups.pidsCur.Close()
	}
	if sb.cgroups.usage != nil {
		sb.cgroups.usage.Close()
	}
}

// Lambda's shutdown phase: with an extension registered, the runtime gets
// SIGTERM and this long to exit before the SIGKILL; longer when an
// extension asked for the SHUTDOWN event (Lambda's 500 ms and 2 s).
const (
	shutdownGrace          = 500 * time.Millisecond
	shutdownGraceExtension = 2 * time.Second
)

// shutdown is Lambda's shutdown phase, for a sandbox whose runtime still
// runs and registered an extension (aws-lambda-go does for
// lambda.WithEnableSIGTERM): the SHUTDOWN event to the extensions that
// asked for it, SIGTERM to the runtime (PID 1 forwards it), and a wait for
// the runtime to exit, at most the grace. Without an extension the SIGKILL
// comes at once, as on Lambda.
// Lambda's SHUTDOWN reasons.
const (
	shutdownSpindown = "spindown"
	shutdownTimeout  = "timeout"
	shutdownFailure  = "failure"
)

func (sb *sandbox) shutdown() {
	anyExt, wantsEvent := sb.api.hasExtensions()
	if !anyExt {
		return
	}
	reason := sb.endReason
	select {
	case <-sb.exited:
		// The runtime has gone (crashed, or killed); external extensions
		// may still run, and hear why.
		if !sb.api.externalExtensions() {
			return
		}
		select {
		case <-sb.pid1Done:
			return
		default:
		}
		reason = shutdownFailure
	default:
	}
	if reason == "" {
		reason = shutdownSpindown
	}
	grace := shutdownGrace
	if wantsEvent {
		grace = shutdownGraceExtension
	}
	if sb.cgroups.freezer != "" {
		_ = sb.cgroups.write(sb.cgroups.freezer, "freezer.state", "THAWED")
	}
	sb.api.shutdownEvent(reason, time.Now().Add(grace))
	_ = sb.ctr.Signal(unix.SIGTERM)
	// With external extensions, PID 1 outlives the runtime until they
	// have finished their SHUTDOWN and ended.
	done := sb.exited
	if sb.api.externalExtensions() {
		done = sb.pid1Done
	}
	select {
	case <-done:
	case <-time.After(grace):
	}
}

// runtimeStatus is how PID 1 reported the runtime's end. Call after exited
// is closed.
func (sb *sandbox) runtimeStatus() pid1Status {
	return parsePID1Status(sb.pid1Report, sb.argv0)
}

// exitDescription is the reason Lambda gives when a runtime exits.
const killSignal = unix.SIGKILL

func (sb *sandbox) exitDescription() string {
	if st := sb.runtimeStatus(); st.reported {
		return st.description()
	}
	sb.waitMu.Lock()
	st, exitErr := sb.exitState, sb.exitErr
	sb.waitMu.Unlock()
	if st == nil {
		if exitErr != nil {
			return exitErr.Error()
		}
		return "unknown"
	}
	if ws, ok := st.Sys().(unix.WaitStatus); ok && ws.Signaled() {
		return "signal: " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(st.ExitCode())
}

func killPid(pid int) error { return unix.Kill(pid, unix.SIGKILL) }

// broken reports whether the sandbox can no longer serve: its runtime (or
// PID 1) has ended, or an external extension crashed after the init.
func (sb *sandbox) broken() bool {
	select {
	case <-sb.exited:
		return true
	default:
	}
	return sb.extFailed.Load() != nil
}

// extensionFailed handles an external extension's failure that PID 1
// reported: during the init it fails the init with Lambda's error; after
// it, the sandbox is not used again once the invocation in flight, if any,
// has ended (release and acquire refuse it).
func (sb *sandbox) extensionFailed(e extensionFailure) {
	if sb.api.failInit(e.outcome()) {
		return
	}
	sb.extFailed.CompareAndSwap(nil, &e)
}

// extensionCrashLine is the platform's log line for an extension that
// ended after the init.
func extensionCrashLine(e extensionFailure) string {
	return "EXTENSION\tName: " + e.name + "\tState: Crashed\tError Type: " + e.errType() + "\tError: " + e.message()
}
