package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
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

// Config configures a Manager. Zero values take the defaults noted.
type Config struct {
	// StateDir holds libcontainer's state; it belongs on a tmpfs (/run).
	// Sandboxes left there by an earlier agent are destroyed at start.
	StateDir string
	// ImageDir is where the default image is built once and cached.
	ImageDir string
	// CgroupParent is the cgroup path sandboxes go under (default /nimbus).
	CgroupParent string
	// IdleTimeout is how long an unused warm sandbox is kept (default 10m).
	IdleTimeout time.Duration
	// FreezeAfter is how long an idle sandbox stays thawed before it is
	// frozen (default 50ms; negative: never freeze).
	FreezeAfter time.Duration
	// InitTimeout bounds a runtime's initialisation (default 10s, Lambda's).
	InitTimeout time.Duration
	// Region and AccountID appear in function ARNs and AWS_REGION.
	Region, AccountID string
	// Logs receives every function's log lines. Required.
	Logs   LogSink
	Logger *slog.Logger
}

// Request is one invocation to run.
type Request struct {
	Function  *rpc.FunctionConfig
	CodeDir   string // the function's extracted code, mounted at /var/task
	RequestID string // generated when empty
	Payload   []byte
	Tail      bool // return the last 4 KB of the invocation's log
}

// Result is an invocation's outcome. A function error (returned, crashed,
// out of memory, timed out) is a Result with ErrorType set, not an error.
type Result struct {
	RequestID    string
	Payload      []byte
	ErrorType    string // "" on success
	LogTail      string
	Cold         bool
	InitDuration time.Duration
	Duration     time.Duration
	MaxMemoryMB  int
}

// Stats counts the sandboxes a manager holds.
type Stats struct {
	Idle, Busy int
}

// Manager runs invocations in sandboxes and keeps warm ones for reuse. Safe
// for concurrent use. mu guards idle, all and closed; each sandbox guards
// its own state.
type Manager struct {
	cfg   Config
	image string
	id    string // unique per manager: container ids and cgroups never clash
	log   *slog.Logger

	mu     sync.Mutex
	idle   map[string][]*sandbox // by function@revision, most recent last
	all    map[*sandbox]struct{}
	seq    uint64
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// ErrClosed is returned by Invoke after Close.
var ErrClosed = errors.New("sandbox manager closed")

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
	if cfg.Region == "" {
		cfg.Region = "local"
	}
	if cfg.AccountID == "" {
		cfg.AccountID = "000000000000"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	cleanupStale(cfg.StateDir, cfg.CgroupParent, cfg.Logger)
	image, err := EnsureImage(cfg.ImageDir)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg: cfg, image: image, id: randomHex(4), log: cfg.Logger,
		idle: map[string][]*sandbox{},
		all:  map[*sandbox]struct{}{},
		stop: make(chan struct{}),
	}
	m.wg.Add(1)
	go m.reap()
	return m, nil
}

// cleanupStale destroys containers an earlier agent left in stateDir, and
// the cgroups named after them: an agent killed during a cold start leaves
// a state directory libcontainer cannot load, and cgroups that no
// container owns any more.
func cleanupStale(stateDir, cgroupParent string, log *slog.Logger) {
	entries, _ := os.ReadDir(stateDir)
	for _, e := range entries {
		if c, err := libcontainer.Load(stateDir, e.Name()); err == nil {
			_ = c.Resume() // a frozen process cannot die
			_ = c.Signal(unix.SIGKILL)
			// Destroy refuses a container whose init still runs: wait for
			// the kill to land.
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
		if err := removeCgroups(cgroupParent, e.Name()); err != nil {
			log.Warn("stale sandbox cgroups not removed", "id", e.Name(), "err", err)
		}
		os.RemoveAll(filepath.Join(stateDir, e.Name()))
	}
}

// removeCgroups removes the cgroup parent/id in every hierarchy mounted
// under /sys/fs/cgroup (each v1 controller, and the unified one), killing
// what is left in it first (thawed, since a frozen task cannot die).
func removeCgroups(parent, id string) error {
	if id == "" || id == "." || id == ".." || filepath.Base(id) != id {
		return fmt.Errorf("bad sandbox id %q", id)
	}
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent, id))
	if d := filepath.Join("/sys/fs/cgroup", parent, id); dirExists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		_ = os.WriteFile(filepath.Join(d, "freezer.state"), []byte("THAWED"), 0)
		_ = os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0)
		if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
	}
	var errs []error
	for _, d := range dirs {
		var err error
		for i := 0; i < 100; i++ { // the killed tasks leave in a moment
			if err = os.Remove(d); err == nil || errors.Is(err, fs.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// Invoke runs one invocation: on an idle warm sandbox of the function's
// revision if there is one, else on a new one (a cold start). It returns an
// error only for platform failures; ctx bounds only the wait for a cold start,
// never a running function, which runs to completion or its timeout.
func (m *Manager) Invoke(ctx context.Context, req *Request) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.RequestID == "" {
		req.RequestID = NewRequestID()
	}
	sb, cold, err := m.get(req)
	if err != nil {
		return nil, err
	}
	res := sb.run(m, req, cold)
	m.put(sb)
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
	m.seq++
	id := m.id + "-" + req.Function.Name + "-" + strconv.FormatUint(m.seq, 10)
	m.mu.Unlock()

	sb, err := m.startSandbox(req.Function, req.CodeDir, id)
	if err != nil {
		return nil, false, rpc.Errorf(rpc.CodeService, "cannot start sandbox for %s: %v", req.Function.Name, err)
	}
	sb.acquire()
	m.mu.Lock()
	closed := m.closed
	if !closed {
		m.all[sb] = struct{}{}
	}
	m.mu.Unlock()
	if closed {
		sb.markDead()
		sb.destroy()
		return nil, false, ErrClosed
	}
	return sb, true, nil
}

// put returns a sandbox after an invocation: healthy ones go back to the
// idle stack, dead ones are destroyed in the background.
func (m *Manager) put(sb *sandbox) {
	sb.mu.Lock()
	dead := sb.dead
	sb.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if dead || m.closed {
		delete(m.all, sb)
		m.retire(sb)
		return
	}
	sb.release(m.cfg.FreezeAfter)
	m.idle[sb.key] = append(m.idle[sb.key], sb)
}

// retire destroys sb in the background. The caller has removed it from idle
// and all.
func (m *Manager) retire(sb *sandbox) {
	sb.markDead()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		sb.destroy()
	}()
}

// Retire destroys the idle sandboxes of function name whose revision is not
// keep (keep 0: all of them). Busy ones are destroyed when they come back.
func (m *Manager) Retire(name string, keep uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, stack := range m.idle {
		var kept []*sandbox
		for _, sb := range stack {
			if sb.fn.Name == name && sb.fn.Revision != keep {
				delete(m.all, sb)
				m.retire(sb)
				continue
			}
			kept = append(kept, sb)
		}
		m.idle[key] = kept
	}
	for sb := range m.all {
		if sb.fn.Name == name && sb.fn.Revision != keep {
			sb.mu.Lock()
			sb.dead = true // put destroys it when its invocation ends
			sb.mu.Unlock()
		}
	}
}

// Stats reports how many sandboxes are idle and busy.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s Stats
	for _, stack := range m.idle {
		s.Idle += len(stack)
	}
	s.Busy = len(m.all) - s.Idle
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

// reap destroys sandboxes idle for longer than IdleTimeout.
func (m *Manager) reap() {
	defer m.wg.Done()
	every := m.cfg.IdleTimeout / 4
	if every > 30*time.Second {
		every = 30 * time.Second
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
		for key, stack := range m.idle {
			kept := stack[:0]
			for _, sb := range stack {
				if last, idle := sb.idleSince(); idle && last.Before(cutoff) {
					delete(m.all, sb)
					m.retire(sb)
					continue
				}
				kept = append(kept, sb)
			}
			if len(kept) == 0 {
				delete(m.idle, key)
			} else {
				m.idle[key] = kept
			}
		}
		m.mu.Unlock()
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
	m.idle = map[string][]*sandbox{}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

func (m *Manager) functionARN(name string) string {
	return fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", m.cfg.Region, m.cfg.AccountID, name)
}

// NewRequestID returns a random UUID (version 4), Lambda's request id form.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func newTraceID() string {
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), randomHex(12), randomHex(8))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
