package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"nimbus/rpc"
)

// Manager runs invocations in sandboxes and keeps warm ones for reuse. Safe
// for concurrent use. mu guards idle, all and closed; each sandbox guards
// its own state.
type Manager struct {
	cfg        Config
	image      string // the default image, of the custom runtimes
	images     *ImageStore
	shimDir    string     // the embedded shims, written out: shimDir/<Runtime.Shim>
	initBinary string     // this program, mounted as every sandbox's PID 1
	initHelper *os.File   // nimbus-init, sealed; nil: this program is the container init
	procViews  *procViews // lxcfs for the sandboxes' /proc views (nil: none)
	id         string     // unique per manager: container ids and cgroups never clash
	uids       *uidPool
	overlays   *overlays  // of the host folders sandboxes mount
	scratch    *scratches // the sandboxes' /tmp
	log        *slog.Logger

	mu      sync.Mutex
	idle    map[string][]*sandbox // by function@revision, most recent last
	all     map[*sandbox]struct{}
	pool    map[string][]*sandbox // ready shells, by poolKey (shell_linux.go)
	filling map[string]int        // shells being made for the pool, by poolKey
	seq     uint64
	closed  bool

	stop chan struct{}
	wg   sync.WaitGroup

	apiConns apiConns // Runtime API connections of every sandbox
}

// NewManager builds (or reuses) the default image, cleans up sandboxes left
// by an earlier run, and starts the idle reaper.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Logs == nil {
		return nil, errors.New("sandbox: Config.Logs is required")
	}
	if cfg.StateDir == "" || cfg.ImageDir == "" {
		return nil, errors.New("sandbox: StateDir and ImageDir are required")
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "/nimbus"
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.FreezeAfter == 0 {
		cfg.FreezeAfter = 50 * time.Millisecond
	}
	if cfg.InitTimeout == 0 {
		cfg.InitTimeout = 10 * time.Second
	}
	if cfg.SandboxUIDFirst == 0 {
		cfg.SandboxUIDFirst = defaultUIDFirst(cfg.StateDir)
	}
	if cfg.SandboxUIDCount == 0 {
		cfg.SandboxUIDCount = defaultSandboxUIDCount
	}
	if cfg.SandboxUIDFirst <= sandboxUID || cfg.SandboxUIDCount < 1 {
		return nil, errors.New("sandbox: SandboxUIDFirst must be above 993 and SandboxUIDCount positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	initOneProc()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	cleanupStale(cfg.StateDir, cfg.Logger)
	ovl, err := openOverlays(cfg.StateDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if cfg.ScratchDir == "" {
		cfg.ScratchDir = filepath.Join(cfg.StateDir, scratchDirName)
	}
	scratch, err := openScratches(cfg.ScratchDir, cfg.ScratchMaxMB, cfg.Logger)
	if err != nil {
		return nil, err
	}
	id := randomHex(4)
	removeOrphanCgroups(cfg.StateDir, cfg.CgroupParent, id, cfg.Logger)
	if err := limitParentPids(cfg.CgroupParent); err != nil {
		cfg.Logger.Warn("no pids limit on the sandboxes' parent cgroup", "err", err)
	}
	if err := limitParentMemory(cfg.CgroupParent); err != nil {
		cfg.Logger.Warn("no memory limit on the sandboxes' parent cgroup", "err", err)
	}
	if err := agentCgroups(cfg.CgroupParent); err != nil {
		return nil, fmt.Errorf("sandbox: the agent's own cgroups: %w", err)
	}
	image, err := EnsureImage(cfg.ImageDir)
	if err != nil {
		return nil, err
	}
	if cfg.RuntimeImageDir == "" {
		cfg.RuntimeImageDir = DefaultImageDir
	}
	images, err := OpenImageStore(cfg.RuntimeImageDir)
	if err != nil {
		return nil, err
	}
	shimDir, err := ensureShims(cfg.ImageDir)
	if err != nil {
		return nil, err
	}
	self, err := selfPath()
	if err != nil {
		return nil, fmt.Errorf("sandbox: find this program for the sandboxes' init: %w", err)
	}
	m := &Manager{
		cfg: cfg, image: image, images: images, shimDir: shimDir, initBinary: self, id: id, log: cfg.Logger,
		initHelper: openInitHelper(cfg.InitHelper, self, cfg.StateDir, cfg.Logger),
		procViews:  startProcViews(cfg.StateDir, cfg.Logger),
		uids:       newUIDPool(cfg.SandboxUIDFirst, cfg.SandboxUIDCount), overlays: ovl, scratch: scratch,
		idle: map[string][]*sandbox{},
		all:  map[*sandbox]struct{}{},
		pool: map[string][]*sandbox{}, filling: map[string]int{},
		stop: make(chan struct{}),
	}
	m.wg.Add(1)
	go m.reap()
	return m, nil
}

// cleanupStale destroys containers an earlier agent left in stateDir.
func cleanupStale(stateDir string, log *slog.Logger) {
	entries, _ := os.ReadDir(stateDir)
	for _, e := range entries {
		if e.Name() == managersFile || e.Name() == overlaysDir || e.Name() == scratchDirName ||
			e.Name() == procViewsDirName || e.Name() == procViewsDirName+".pid" {
			continue
		}
		c, err := libcontainer.Load(stateDir, e.Name())
		if err != nil {
			os.RemoveAll(filepath.Join(stateDir, e.Name()))
			continue
		}
		_ = c.Resume() // a frozen process cannot die
		_ = c.Signal(unix.SIGKILL)
		// Destroy refuses a container whose init still runs: wait for the
		// kill to land.
		for i := 0; i < 200; i++ {
			if st, err := c.Status(); err != nil || st == libcontainer.Stopped {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := c.Destroy(); err != nil {
			log.Warn("stale sandbox not destroyed", "id", e.Name(), "err", err)
		}
	}
}

// Invoke runs one invocation: on an idle warm sandbox of the function's
// revision if there is one, else on a new one (a cold start). It returns an
// error only for platform failures; ctx bounds only the wait for a cold start,
// never a running function, which runs to completion or its timeout.
func (m *Manager) Invoke(ctx context.Context, req *Request) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(req.Payload) > 0 && !json.Valid(req.Payload) {
		return nil, rpc.Errorf(rpc.CodeInvalidRequestContent, "Could not parse request body into json: the payload is not valid JSON")
	}
	if req.RequestID == "" {
		req.RequestID = NewRequestID()
	}
	sb, cold, err := m.get(req)
	var bad *entrypointError
	if errors.As(err, &bad) {
		return m.invalidEntrypoint(req, bad.err), nil
	}
	if err != nil {
		return nil, err
	}
	res, how := sb.run(m, req, cold, m.cfg.InitTimeout, false)
	refill := sb.takeRefill()
	m.put(sb)
	if how != initTimedOut || res != nil {
		refill()
		return res, nil
	}
	// The init outran Lambda's cap: retry it once in a new sandbox, as part
	// of this invocation and under the function's timeout (and only then
	// refill the pool, which would take the CPU the retry needs).
	sb, err = m.startCold(req)
	if err != nil {
		refill()
		return nil, err
	}
	timeout := time.Duration(req.Function.TimeoutSec) * time.Second
	res, _ = sb.run(m, req, true, timeout, true)
	refill2 := sb.takeRefill()
	m.put(sb)
	refill()
	refill2()
	return res, nil
}

// get returns an acquired sandbox for req.Function.
func (m *Manager) get(req *Request) (*sandbox, bool, error) {
	key := sandboxKey(req.Function)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, false, ErrClosed
	}
	for {
		stack := m.idle[key]
		if len(stack) == 0 {
			break
		}
		sb := stack[len(stack)-1]
		m.idle[key] = stack[:len(stack)-1]
		if sb.acquire() {
			m.mu.Unlock()
			return sb, false, nil
		}
		// Died while idle: discard.
		delete(m.all, sb)
		m.retire(sb)
	}
	m.mu.Unlock()
	sb, err := m.startCold(req)
	return sb, true, err
}

// startCold starts a new sandbox for req.Function and returns it acquired:
// a ready shell of its runtime claimed (shell_linux.go), or one made now.
func (m *Manager) startCold(req *Request) (*sandbox, error) {
	// Close waits for a start under way: the mounts it makes must be
	// undone before Close returns (and, in tests, before the data dir is
	// removed).
	m.mu.Lock()
	closed := m.closed
	if !closed {
		m.wg.Add(1)
	}
	m.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	defer m.wg.Done()
	rt, root, err := m.runtimeRoot(req.Function.Runtime)
	if err != nil {
		return nil, err
	}
	if rt.Command == nil {
		if err := checkEntrypoint(req.CodeDir, root); err != nil {
			return nil, &entrypointError{err}
		}
	}
	primeMB := 0
	exts := externalExtensions(req.OptDir)
	if primeable(req.Function, rt, req.CodeDir, req.OptDir, exts) {
		primeMB = req.Function.MemoryMB
	}
	sb := m.takeShell(poolKey(rt, primeMB))
	if sb != nil {
		if err := m.claim(sb, req, rt, exts); err != nil {
			// A pooled shell that cannot be claimed (its PID 1 died
			// since it was taken, say): retire it and make one.
			m.log.Warn("a pooled sandbox shell could not be claimed; starting another", "function", req.Function.Name, "err", err)
			m.retire(sb)
			sb = nil
		}
	}
	if sb == nil {
		if sb, err = m.newShellWithTmp(rt, root, req.Function.Name, req.Function.MemoryMB, req.Function.TmpSizeMB()); err == nil {
			err = m.claim(sb, req, rt, exts)
			if err != nil {
				m.retire(sb)
			}
		}
		if err != nil {
			m.refill(rt, root, primeMB)
			var re *rpc.Error
			if errors.As(err, &re) {
				return nil, err
			}
			return nil, rpc.Errorf(rpc.CodeService, "cannot start sandbox for %s: %v", req.Function.Name, err)
		}
	}
	sb.refill = func() { m.refill(rt, root, primeMB) }
	sb.acquire()
	m.mu.Lock()
	closed = m.closed
	if !closed {
		m.all[sb] = struct{}{}
	}
	m.mu.Unlock()
	if closed {
		sb.markDead()
		sb.destroy()
		m.released(sb)
		return nil, ErrClosed
	}
	return sb, nil
}

// runtimeRoot returns the runtime's row and the root its sandboxes run
// on: the default image, or the managed runtime's built image
// (ResourceNotReadyException when it is not built).
func (m *Manager) runtimeRoot(name string) (*Runtime, string, error) {
	if name == "" {
		name = rpc.RuntimeProvided
	}
	rt, ok := LookupRuntime(name)
	if !ok {
		return nil, "", rpc.Errorf(rpc.CodeInvalidParameterValue, "unknown runtime %q", name)
	}
	if rt.Image == nil {
		return rt, m.image, nil
	}
	root, _, err := m.images.Lookup(name)
	return rt, root, err
}

// Images returns the store of managed runtimes' images.
func (m *Manager) Images() *ImageStore { return m.images }

// entrypointError is a bootstrap that cannot be executed.
type entrypointError struct{ err error }

func (e *entrypointError) Error() string { return e.err.Error() }

// invalidEntrypoint is the result, and the log, of an invocation whose
// bootstrap cannot run: Runtime.InvalidEntrypoint with the cause.
func (m *Manager) invalidEntrypoint(req *Request, cause error) *Result {
	fn := req.Function
	msg := "RequestId: " + req.RequestID + " Error: " + cause.Error()
	o := functionError(rpc.ErrTypeInvalidEntrypoint, msg)
	res := &Result{RequestID: req.RequestID, Cold: true, Payload: o.payload, ErrorType: o.errType}
	now := time.Now().UnixMilli()
	lines := []string{startLine(req.RequestID, fn.VersionName()), msg, endLine(req.RequestID), reportLine(req.RequestID, fn, res, "error", o.errType)}
	events := make([]rpc.LogEvent, len(lines))
	var tail strings.Builder
	for i, l := range lines {
		events[i] = rpc.LogEvent{TimeMs: now, RequestID: req.RequestID, Line: l}
		tail.WriteString(l)
		tail.WriteByte('\n')
	}
	_ = m.cfg.Logs.Append(fn.Name, events...)
	if req.Tail {
		res.LogTail = tail.String()
	}
	return res
}

// put returns a sandbox after an invocation: healthy ones go back to the
// idle stack, dead ones are destroyed in the background.
func (m *Manager) put(sb *sandbox) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || !sb.release(m.cfg.FreezeAfter) {
		delete(m.all, sb)
		m.retire(sb)
		return
	}
	m.idle[sb.key] = append(m.idle[sb.key], sb)
}

// retire destroys sb in the background. The caller has removed it from idle
// and all.
func (m *Manager) retire(sb *sandbox) {
	sb.markDead()
	if sb.retired.Swap(true) {
		return // already on its way (Close, and then the invocation that held it)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		sb.destroy()
		m.released(sb)
	}()
}

// released gives back what a destroyed sandbox held: its host uid, its
// /tmp's disk and its overlays.
func (m *Manager) released(sb *sandbox) {
	m.uids.give(sb.hostUID)
	m.scratch.give(sb.tmp)
	sb.tmp = nil
	for _, src := range sb.overlaid {
		m.overlays.release(src)
	}
}

// Retire destroys the idle sandboxes of function name whose revision is not
// keep (keep 0: all of them, published versions' too; else only $LATEST's,
// since a published version never changes). Busy ones are destroyed when
// they come back.
func (m *Manager) Retire(name string, keep uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	stale := func(fn *rpc.FunctionConfig) bool {
		return fn.Name == name && fn.Revision != keep && (keep == 0 || fn.Version == "")
	}
	for key, stack := range m.idle {
		var kept []*sandbox
		for _, sb := range stack {
			if stale(sb.fn) {
				delete(m.all, sb)
				m.retire(sb)
				continue
			}
			kept = append(kept, sb)
		}
		m.idle[key] = kept
	}
	for sb := range m.all {
		if stale(sb.fn) {
			sb.retireWhenDone() // put destroys it when its invocation ends
		}
	}
}

// Stats reports how many sandboxes are idle and busy.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	var s Stats
	for _, stack := range m.idle {
		s.Idle += len(stack)
	}
	s.Busy = len(m.all) - s.Idle
	for _, stack := range m.pool {
		s.Ready += len(stack)
	}
	all := make([]*sandbox, 0, len(m.all))
	for sb := range m.all {
		all = append(all, sb)
	}
	m.mu.Unlock()
	// Each sandbox's state under its own lock, never while holding m.mu.
	for _, sb := range all {
		sb.mu.Lock()
		switch sb.state {
		case stateCold:
			s.Initializing++
		case stateBusy:
			s.Running++
		case stateIdle:
			s.Thawed++
		case stateFrozen:
			s.Frozen++
		}
		sb.mu.Unlock()
	}
	s.RuntimeAPIConns = m.apiConns.open.Load()
	s.RuntimeAPIRefused = m.apiConns.refused.Load()
	return s
}

// WarmKeys counts idle sandboxes by Key, for the worker's heartbeat.
func (m *Manager) WarmKeys() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.idle))
	for key, stack := range m.idle {
		if len(stack) > 0 {
			out[key] = len(stack)
		}
	}
	return out
}

// HasWarm reports whether an idle sandbox of fn's revision is waiting.
func (m *Manager) HasWarm(fn *rpc.FunctionConfig) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.idle[sandboxKey(fn)]) > 0
}

// reap destroys sandboxes idle for longer than IdleTimeout, idle ones
// holding far more memory than they used while running, and idle or
// pooled ones that can no longer serve (checked every 5 s at least).
func (m *Manager) reap() {
	defer m.wg.Done()
	every := m.cfg.IdleTimeout / 4
	if every > 5*time.Second {
		every = 5 * time.Second
	}
	if every < 10*time.Millisecond {
		every = 10 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-m.cfg.IdleTimeout)
		m.mu.Lock()
		pruneStacks(m.idle, func(sb *sandbox) bool {
			// Also those whose runtime ended while idle, or whose external
			// extension crashed: PID 1 would hold the extensions left (frozen
			// with it) until the next acquire found it dead.
			if last, idle := sb.idleSince(); idle && last.Before(cutoff) || sb.idleMemoryOver() || sb.broken() {
				delete(m.all, sb)
				m.retire(sb)
				return true
			}
			return false
		})
		// Shells pooled that long: a runtime no longer used gives back what
		// its shells hold.
		pruneStacks(m.pool, func(sb *sandbox) bool {
			if sb.lastUsed.Before(cutoff) || sb.broken() {
				m.retire(sb)
				return true
			}
			return false
		})
		m.mu.Unlock()
	}
}

// pruneStacks removes from each stack the sandboxes drop reports, and the
// stacks left empty.
func pruneStacks(stacks map[string][]*sandbox, drop func(*sandbox) bool) {
	for key, stack := range stacks {
		kept := stack[:0]
		for _, sb := range stack {
			if !drop(sb) {
				kept = append(kept, sb)
			}
		}
		if len(kept) == 0 {
			delete(stacks, key)
		} else {
			stacks[key] = kept
		}
	}
}

// Close destroys every sandbox and waits for it. Invocations in flight end
// with a crashed-runtime error.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.stop)
	for sb := range m.all {
		delete(m.all, sb)
		m.retire(sb)
	}
	for _, stack := range m.pool {
		for _, sb := range stack {
			m.retire(sb)
		}
	}
	m.idle = map[string][]*sandbox{}
	m.pool = map[string][]*sandbox{}
	m.mu.Unlock()
	m.wg.Wait()
	m.procViews.close()
	if m.initHelper != nil {
		m.initHelper.Close()
	}
	return m.scratch.remove()
}

func (m *Manager) functionARN(name string) string {
	return m.cfg.ARNs.Function(name, "")
}

// invokedARN is the ARN the caller invoked: with its qualifier, if any.
func (m *Manager) invokedARN(name, qualifier string) string {
	return m.cfg.ARNs.Function(name, qualifier)
}

func newTraceID() string {
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), randomHex(12), randomHex(8))
}

// initOneProc starts libcontainer's container init with one P.
// libcontainer gives its init (this binary, re-executed in the sandbox's
// namespaces) no environment but the agent's GOMAXPROCS variable, and the
// init's first act is runtime.GOMAXPROCS(1): started with a P for every
// CPU, the Go runtime made each P's caches and threads only to stop the
// world and drop them again, a cost that grows with the machine's cores
// and is paid at every shell's start. An operator's own GOMAXPROCS is
// left as it is. The agent's own procs are set by then (the variable is
// read once, at the process's start).
func initOneProc() {
	if os.Getenv("GOMAXPROCS") == "" {
		_ = os.Setenv("GOMAXPROCS", "1")
	}
}
