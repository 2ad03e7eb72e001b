package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"nimbus/rpc"
)

// A sandbox starts as a shell: a container of a runtime's image with no
// function yet. Its network namespace and Runtime API listener, cgroups,
// mounts (the image, the runtime's shim, the agent's binary, /proc, /dev,
// /tmp, its cgroups) and PID 1 are made, and PID 1 waits on its start
// pipe. Claiming the shell for a function mounts the function's code at
// /var/task and its layers at /opt (detached copies of their overlays,
// moved into the shell's mount namespace by a thread that joins it), sets
// the memory limit, and writes the runtime's argv and environment to PID 1,
// which starts the runtime.
//
// Making a shell is most of a cold start's cost (libcontainer's init is a
// Go start of the whole agent binary in the new namespaces); claiming one
// is a few mounts and writes. So the manager keeps up to Config.ShellPool
// shells ready per runtime that has had a cold start, made off the invoke
// path after each claim; with none ready, a cold start makes its shell
// itself.

// poolShellMemoryMB is a pooled shell's memory limit until it is claimed.
const poolShellMemoryMB = 128

// makeShell starts the container of a sandbox of runtime rt on the image
// at root, as hostUID, limited to memoryMB until claimed.
func (m *Manager) makeShell(rt *Runtime, root, id string, hostUID, memoryMB int) (_ *sandbox, err error) {
	ns, err := newNetns()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			ns.close()
		}
	}()
	logs, err := newLogPipe("", m.cfg.Logs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			logs.r.Close()
			logs.w.Close()
		}
	}()
	status, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer statusW.Close() // the container holds its own copy once started
	defer func() {
		if err != nil {
			status.Close()
		}
	}()
	filter, err := seccompPipe()
	if err != nil {
		return nil, fmt.Errorf("cannot make the sandbox's seccomp filter: %w", err)
	}
	defer filter.Close()
	startR, startW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer startR.Close()
	defer func() {
		if err != nil {
			startW.Close()
		}
	}()
	// Every host folder through an overlay of its own (overlays_linux.go).
	var overlaid []string
	defer func() {
		if err != nil {
			for _, src := range overlaid {
				m.overlays.release(src)
			}
		}
	}()
	spec := containerSpec{netnsPath: ns.path(), cgroupPath: m.cfg.CgroupParent + "/" + id, memoryMB: memoryMB, hostname: sandboxHostname}
	var initDir string
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&spec.rootfs, root}, {&spec.runtimeDir, m.runtimeDir(rt)}, {&initDir, filepath.Dir(m.initBinary)},
	} {
		if f.src == "" {
			continue
		}
		if *f.dst, err = m.overlays.acquire(f.src); err != nil {
			return nil, err
		}
		overlaid = append(overlaid, f.src)
	}
	spec.initBinary = filepath.Join(initDir, filepath.Base(m.initBinary))
	spec.procViews = m.procViews.files()
	ctr, err := libcontainer.Create(m.cfg.StateDir, id, containerConfig(spec))
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	sb := &sandbox{
		id: id, hostUID: hostUID, overlaid: overlaid, ctr: ctr, ns: ns, logs: logs,
		api:      newRuntimeAPI(),
		exited:   make(chan struct{}),
		pid1Done: make(chan struct{}),
		memoryMB: memoryMB,
		start:    startW,
	}
	sb.api.conns = &m.apiConns
	extra := []*os.File{statusW, filter, startR} // fds 3, 4 and 5 in PID 1
	if m.initHelper != nil {
		extra = append(extra, m.initHelper) // fd 6, initHelperFD
	}
	sb.proc = &libcontainer.Process{
		Args:       []string{initPath, initArg},
		ExtraFiles: extra,
		Env:        []string{"PATH=/usr/bin:/bin"}, // the runtime's own comes on the start pipe
		UID:        hostUID,                        // 993 to the runtime, in its user namespace
		GID:        hostUID,
		Cwd:        "/",
		Stdout:     logs.w,
		Stderr:     logs.w,
		Init:       true,
	}
	go sb.api.serve(ns.ln)
	if err := ctr.Run(sb.proc); err != nil {
		sb.api.close()
		_ = ctr.Destroy()
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	logs.w.Close() // the container holds the only write end now
	// The mount namespace is held from now on: a claim joins it through
	// this descriptor, never through a pid that may have died and been
	// given to another process since.
	if pid, perr := sb.proc.Pid(); perr == nil {
		sb.mntns, err = os.Open("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
	} else {
		err = perr
	}
	if err != nil {
		_ = ctr.Signal(unix.SIGKILL)
		_, _ = sb.proc.Wait()
		sb.api.close()
		_ = ctr.Destroy()
		logs.r.Close()
		return nil, fmt.Errorf("the sandbox's mount namespace: %w", err)
	}
	// The runtime has ended once PID 1 reports it (with external
	// extensions it reports before it exits itself) or once PID 1 has
	// exited. pid1Done closes when PID 1 has.
	var endOnce sync.Once
	end := func() { endOnce.Do(func() { close(sb.exited) }) }
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		// Records of PID 1's, a line each: external extensions' failures,
		// then the runtime's end; EOF or the deadline below otherwise.
		r := bufio.NewReaderSize(status, 1024)
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return // EOF, the deadline, or a record longer than PID 1 writes
			}
			if ext, ok := parseExtensionFailure(line); ok {
				sb.extensionFailed(ext)
				continue
			}
			sb.pid1Report = bytes.Clone(line)
			end()
			return
		}
	}()
	go func() {
		st, err := sb.proc.Wait()
		// Whatever PID 1 wrote is in the pipe by now.
		_ = status.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		<-reported
		status.Close()
		sb.waitMu.Lock()
		sb.exitState, sb.exitErr = st, err
		sb.waitMu.Unlock()
		close(sb.pid1Done)
		end()
	}()
	if st, err := ctr.State(); err == nil {
		sb.cgroups = cgroupFiles{
			freezer: st.CgroupPaths["freezer"],
			memory:  st.CgroupPaths["memory"],
			cpu:     st.CgroupPaths["cpu"],
			pids:    st.CgroupPaths["pids"],
		}
		sb.cgroups.maxUsage, _ = os.Open(filepath.Join(sb.cgroups.memory, "memory.max_usage_in_bytes"))
		sb.cgroups.pidsCur, _ = os.Open(filepath.Join(sb.cgroups.pids, "pids.current"))
		sb.cgroups.usage, _ = os.Open(filepath.Join(sb.cgroups.memory, "memory.usage_in_bytes"))
	}
	sb.freezeTimer = time.AfterFunc(time.Hour, sb.freeze)
	sb.freezeTimer.Stop()
	return sb, nil
}

// claim gives shell sb to req's function: its code and layers, its memory,
// and its runtime started, with the external extensions exts (of
// req.OptDir) unless the shell is primed. On error the shell is of no
// further use.
func (m *Manager) claim(sb *sandbox, req *Request, rt *Runtime, exts []string) error {
	fn := req.Function
	binds := []bindMount{{src: req.CodeDir, dst: "/var/task"}}
	if req.OptDir != "" {
		binds = append(binds, bindMount{src: req.OptDir, dst: "/opt"})
	}
	for i := range binds {
		p, err := m.overlays.acquire(binds[i].src)
		if err != nil {
			return err
		}
		sb.overlaid = append(sb.overlaid, binds[i].src)
		binds[i].src = p
	}
	if sb.tmp == nil || sb.tmp.sizeMB != fn.TmpSizeMB() {
		m.scratch.give(sb.tmp)
		sb.tmp = nil
		tmp, err := m.scratch.make(fn.TmpSizeMB())
		if err != nil {
			return err
		}
		sb.tmp = tmp
	}
	err := mountInto(sb.mntns, binds, detachedMount{fd: sb.tmp.mnt, dst: "/tmp"})
	sb.tmp.close() // moved into the sandbox, or of no use
	if err != nil {
		return err
	}
	if fn.MemoryMB != sb.memoryMB {
		if err := sb.cgroups.setMemoryLimit(sb.memoryMB, fn.MemoryMB); err != nil {
			return fmt.Errorf("memory limit: %w", err)
		}
		sb.memoryMB = fn.MemoryMB
	}
	argv := rt.Command
	if argv == nil {
		argv = []string{bootstrapPath}
	}
	var blob []byte
	if sb.primed {
		// Its shim runs already and waits for the environment.
		exts = nil
		blob, err = envBlob(m.environment(fn, rt, sb.id))
	} else {
		blob, err = startBlob(argv, m.environment(fn, rt, sb.id), exts)
		// PID 1 starts them, then the runtime once they have registered.
		sb.api.expectExtensions(exts, sb.startRuntime)
	}
	if err != nil {
		return err
	}
	sb.fn, sb.key, sb.argv0 = fn, sandboxKey(fn), argv[0]
	version := fn.Version
	if version == "" {
		version = rpc.LatestVersion
	}
	sb.api.setFunction(fn.Name, version, fn.Handler)
	sb.logs.function = fn.Name
	sb.logsRunning = true
	go sb.logs.run()
	sb.logs.collectTail(req.Tail) // a failed init's lines are in the invocation's tail
	sb.logs.emit(initStartLine(fn.Runtime))
	sb.started = time.Now()
	if sb.primed {
		sb.api.givePrime(blob)
		return nil
	}
	_, err = sb.start.Write(blob) // PID 1 reads it whole; a pipe holds 64 KB, PID 1 drains the rest
	if len(exts) == 0 || err != nil {
		sb.closeStart()
	}
	return err
}

// startRuntime tells PID 1, which has started the external extensions and
// waits, that they have all registered: it starts the runtime.
func (sb *sandbox) startRuntime() {
	sb.startOnce.Do(func() {
		_, _ = sb.start.Write([]byte{'g'})
		sb.start.Close()
	})
}

// closeStart closes PID 1's start pipe if the claim or startRuntime has
// not (without the go byte, PID 1 then ends).
func (sb *sandbox) closeStart() {
	sb.startOnce.Do(func() {
		if sb.start != nil {
			sb.start.Close()
		}
	})
}

// Primed shells. A managed runtime's interpreter starting and loading its
// shim is most of its cold start (tens to hundreds of milliseconds), and
// none of it depends on the function but its environment. So the pool of
// a runtime whose row is Primed holds shells whose shim runs already: PID
// 1 started it with primeEnv, it loaded itself and waits in GET pathPrime;
// the claim mounts the code and answers that GET with the function's
// environment, which the shim puts in place of its own before it loads
// the handler. What the interpreter reads only as it starts must then be
// the same for every function: a function that sets a variable of its
// runtime's StartEnv (or startEnvCommon) to its own value, or has external
// extensions (started by PID 1 before the runtime), gets a shell that
// starts its runtime the plain way. The heap of some runtimes is sized at
// their start from the memory limit, so primed shells are pooled per
// runtime and memory size.

// primeable reports whether fn can run in a primed shell of rt, with its
// code at codeDir and its layers at optDir, whose external extensions are
// exts.
func primeable(fn *rpc.FunctionConfig, rt *Runtime, codeDir, optDir string, exts []string) bool {
	if !rt.Primed || len(exts) > 0 {
		return false
	}
	for _, paths := range []struct {
		dir   string
		names []string
	}{{codeDir, rt.PlainIfCode}, {optDir, rt.PlainIfOpt}} {
		for _, p := range paths.names {
			if paths.dir == "" {
				continue
			}
			if _, err := os.Stat(filepath.Join(paths.dir, p)); err == nil {
				return false
			}
		}
	}
	for k, v := range fn.Env {
		if rpc.IsReservedEnvKey(k) || !rt.startVar(k) {
			continue
		}
		if d, ok := rt.defaultEnv(k); !ok || d != v {
			return false
		}
	}
	return true
}

// defaultEnv returns the value a function of rt gets for k unless it sets
// its own.
func (rt *Runtime) defaultEnv(k string) (string, bool) {
	for _, kv := range rt.Env {
		if kv[0] == k {
			return kv[1], true
		}
	}
	for _, kv := range defaultEnv {
		if kv[0] == k {
			return kv[1], true
		}
	}
	return "", false
}

// primeVar is set in a primed shim's first environment: it asks for its
// function's before it loads anything of the function's.
const primeVar = "_NIMBUS_PRIME=1"

// primeEnv is what a primed shell's shim starts with: the defaults and the
// runtime's variables, the platform's that name no function, and primeVar.
func primeEnv(rt *Runtime) []string {
	env := make([]string, 0, len(defaultEnv)+len(rt.Env)+5)
	for _, kv := range defaultEnv {
		env = append(env, kv[0]+"="+kv[1])
	}
	for _, kv := range rt.Env {
		env = append(env, kv[0]+"="+kv[1])
	}
	return append(env,
		"AWS_EXECUTION_ENV=AWS_Lambda_"+rt.Name,
		"AWS_LAMBDA_RUNTIME_API="+RuntimeAPIAddr,
		"LAMBDA_TASK_ROOT=/var/task",
		"LAMBDA_RUNTIME_DIR=/var/runtime",
		primeVar,
	)
}

// prime starts rt's shim in shell sb, before any function is known: it
// loads itself and waits for the claim.
func (m *Manager) prime(sb *sandbox, rt *Runtime) error {
	blob, err := startBlob(rt.Command, primeEnv(rt), nil)
	if err != nil {
		return err
	}
	sb.api.expectPrime()
	sb.primed = true
	_, err = sb.start.Write(blob)
	sb.closeStart()
	return err
}

// maxPrimedShells bounds the primed shells pooled (and being made) in
// all: a primed shell holds its interpreter's memory (10 to 50 MB), which
// the worker's memory offer does not count, and there is a pool per
// runtime and memory size.
const maxPrimedShells = 8

// primedShells counts the primed shells pooled and being made. The caller
// holds m.mu.
func (m *Manager) primedShells() int {
	n := 0
	for key, stack := range m.pool {
		if strings.Contains(key, "@") {
			n += len(stack)
		}
	}
	for key, k := range m.filling {
		if strings.Contains(key, "@") {
			n += k
		}
	}
	return n
}

// evictPrimed retires the primed shell pooled longest outside the pool
// named keep, and reports whether there was one. The caller holds m.mu.
func (m *Manager) evictPrimed(keep string) bool {
	var oldest *sandbox
	var from string
	for key, stack := range m.pool {
		if key == keep || !strings.Contains(key, "@") || len(stack) == 0 {
			continue
		}
		// Stacks are pushed in time order: the first is the oldest.
		if oldest == nil || stack[0].lastUsed.Before(oldest.lastUsed) {
			oldest, from = stack[0], key
		}
	}
	if oldest == nil {
		return false
	}
	m.pool[from] = m.pool[from][1:]
	m.retire(oldest)
	return true
}

// poolKey names the pool of rt's shells: primed ones (primeMB > 0) per
// memory size.
func poolKey(rt *Runtime, primeMB int) string {
	if primeMB == 0 {
		return rt.Name
	}
	return rt.Name + "@" + strconv.Itoa(primeMB)
}

// externalExtensions are the function's external extensions: the
// executable regular files in its layers' /opt/extensions (optDir on the
// host), by name, at most maxExtensions, as Lambda starts them.
func externalExtensions(optDir string) []string {
	if optDir == "" {
		return nil
	}
	ents, err := os.ReadDir(filepath.Join(optDir, "extensions"))
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 ||
			strings.ContainsFunc(e.Name(), func(r rune) bool { return r < ' ' || r == 0x7f }) {
			continue // (a control character would break PID 1's status records)
		}
		names = append(names, e.Name())
		if len(names) == maxExtensions {
			break
		}
	}
	return names
}

// startMax and startStrings bound what PID 1 reads on its start pipe
// (pid1init_linux.go's NIMBUS_START_MAX and NIMBUS_START_STRINGS); Lambda's
// environment is at most 4 KB.
const (
	startMax     = 256 << 10
	startStrings = 4096
)

// startBlob is what PID 1 reads on its start pipe: argv's strings, an empty
// one, then env's, each NUL-terminated, and when there are external
// extensions to start before the runtime, another empty string, their
// names (executables in /opt/extensions) and a last empty string. A string holding a NUL (it would
// split into two, the second past the reserved-key check), an empty
// argument, or more than PID 1 reads is refused; empty environment strings
// are dropped.
func startBlob(argv, env, exts []string) ([]byte, error) {
	if len(argv) == 0 || len(argv)+len(env)+len(exts)+2 > startStrings {
		return nil, fmt.Errorf("the runtime's arguments and environment: %d strings, at most %d", len(argv)+len(env), startStrings-1)
	}
	var b bytes.Buffer
	for _, s := range argv {
		if s == "" || strings.IndexByte(s, 0) >= 0 {
			return nil, fmt.Errorf("the runtime's argument %q is empty or holds a NUL byte", s)
		}
		b.WriteString(s)
		b.WriteByte(0)
	}
	b.WriteByte(0)
	if err := appendEnv(&b, env); err != nil {
		return nil, err
	}
	if len(exts) > 0 {
		b.WriteByte(0)
		for _, e := range exts {
			if e == "" || strings.ContainsAny(e, "/\x00") {
				return nil, fmt.Errorf("the extension name %q is empty or holds a slash or NUL", e)
			}
			b.WriteString(e)
			b.WriteByte(0)
		}
		b.WriteByte(0) // the end: the pipe stays open for the go (startRuntime)
	}
	if b.Len() >= startMax {
		return nil, fmt.Errorf("the runtime's arguments and environment: %d bytes, at most %d", b.Len(), startMax-1)
	}
	return b.Bytes(), nil
}

// envBlob is env as a primed shim reads it: each string NUL-terminated.
func envBlob(env []string) ([]byte, error) {
	var b bytes.Buffer
	if err := appendEnv(&b, env); err != nil {
		return nil, err
	}
	if b.Len() >= startMax {
		return nil, fmt.Errorf("the runtime's environment: %d bytes, at most %d", b.Len(), startMax-1)
	}
	return b.Bytes(), nil
}

// appendEnv writes env's strings to b, each NUL-terminated, the empty ones
// dropped. A string holding a NUL (it would split into two, the second
// past the reserved-key check) is refused.
func appendEnv(b *bytes.Buffer, env []string) error {
	for _, s := range env {
		if strings.IndexByte(s, 0) >= 0 {
			k, _, _ := strings.Cut(s, "=")
			return rpc.Errorf(rpc.CodeInvalidParameterValue, "the environment variable %s holds a NUL byte", k)
		}
		if s == "" {
			continue
		}
		b.WriteString(s)
		b.WriteByte(0)
	}
	return nil
}

// bindMount is a host folder (an overlay's mount) to show at dst in a
// sandbox.
type bindMount struct{ src, dst string }

// detachedMount is a mount made with fsmount (a sandbox's /tmp), not yet
// attached anywhere, to move to dst in a sandbox.
type detachedMount struct {
	fd  int
	dst string
}

// mountInto mounts each bind's src read-only at its dst in the mount
// namespace ns (a container's, held open since it started), and moves each
// of detached to its dst there. Detached copies of the
// sources are made here, in the agent's namespace, then moved into the
// sandbox's by a thread that joins it and ends with its goroutine (a
// thread's mount namespace cannot be left again once it shares nothing).
func mountInto(ns *os.File, binds []bindMount, detached ...detachedMount) error {
	trees := make([]int, 0, len(binds))
	defer func() {
		for _, fd := range trees {
			unix.Close(fd)
		}
	}()
	for _, b := range binds {
		fd, err := unix.OpenTree(unix.AT_FDCWD, b.src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return fmt.Errorf("open_tree %s: %w", b.src, err)
		}
		trees = append(trees, fd)
		attr := unix.MountAttr{
			Attr_set:    unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV,
			Propagation: unix.MS_PRIVATE, // no event of the agent's mounts reaches the sandbox's copy
		}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("mount_setattr %s: %w", b.src, err)
		}
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- fmt.Errorf("unshare CLONE_FS: %w", err)
			return
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
			done <- fmt.Errorf("join the sandbox's mount namespace: %w", err)
			return
		}
		for i, b := range binds {
			detached = append(detached, detachedMount{fd: trees[i], dst: b.dst})
		}
		for _, d := range detached {
			if err := unix.MoveMount(d.fd, "", unix.AT_FDCWD, d.dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				done <- fmt.Errorf("move_mount %s: %w", d.dst, err)
				return
			}
		}
		done <- nil
	}()
	return <-done
}

// setMemoryLimit moves the sandbox's memory limit (and its memory+swap
// limit, no swap) from oldMB to newMB. Cgroup v1 wants memory+swap never
// below memory, so the order depends on the direction.
func (c cgroupFiles) setMemoryLimit(oldMB, newMB int) error {
	v := strconv.FormatInt(int64(newMB)<<20, 10)
	files := []string{"memory.limit_in_bytes"}
	if memswSupported {
		if newMB > oldMB {
			files = []string{"memory.memsw.limit_in_bytes", "memory.limit_in_bytes"}
		} else {
			files = append(files, "memory.memsw.limit_in_bytes")
		}
	}
	for _, f := range files {
		if err := c.write(c.memory, f, v); err != nil {
			return err
		}
	}
	return nil
}

// takeRefill returns what makes the shells that replace the one sb was
// made from (nothing for a sandbox already past its first invocation), to
// run once that first invocation is over: a shell made during the cold
// start it serves would take the CPU that start needs. The caller holds
// sb.
func (sb *sandbox) takeRefill() func() {
	f := sb.refill
	sb.refill = nil
	if f == nil {
		return func() {}
	}
	return f
}

// takeShell returns a ready shell from the pool named name (poolKey), or
// nil.
func (m *Manager) takeShell(name string) *sandbox {
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		stack := m.pool[name]
		if len(stack) == 0 {
			return nil
		}
		sb := stack[len(stack)-1]
		m.pool[name] = stack[:len(stack)-1]
		select {
		case <-sb.exited: // its PID 1 died while it waited
			m.retire(sb)
		default:
			return sb
		}
	}
}

// refill makes shells of runtime rt in the background until the pool
// holds Config.ShellPool of them: primed shells of primeMB when that is
// not 0 (see primeable).
func (m *Manager) refill(rt *Runtime, root string, primeMB int) {
	if m.cfg.ShellPool <= 0 {
		return
	}
	key := poolKey(rt, primeMB)
	m.mu.Lock()
	need := m.cfg.ShellPool - len(m.pool[key]) - m.filling[key]
	if primeMB > 0 {
		// Room for them: the shells pooled longest in other primed pools
		// give theirs (a runtime or size no longer used would hold it
		// until the reaper's IdleTimeout).
		room := maxPrimedShells - m.primedShells()
		for ; room < need; room++ {
			if !m.evictPrimed(key) {
				break
			}
		}
		need = min(need, room)
	}
	if need <= 0 || m.closed {
		m.mu.Unlock()
		return
	}
	m.filling[key] += need
	m.wg.Add(1)
	m.mu.Unlock()
	memoryMB := poolShellMemoryMB
	if primeMB > 0 {
		memoryMB = primeMB
	}
	go func() {
		defer m.wg.Done()
		for ; need > 0; need-- {
			// Most functions keep the default /tmp: theirs is ready.
			sb, err := m.newShellWithTmp(rt, root, "pool", memoryMB, rpc.DefaultEphemeralStorageMB)
			if err == nil && primeMB > 0 {
				if err = m.prime(sb, rt); err != nil {
					m.retire(sb)
					sb = nil
				}
			}
			m.mu.Lock()
			m.filling[key]--
			closed := m.closed
			if err == nil && !closed {
				sb.lastUsed = time.Now() // pooled since; the reaper expires it like an idle sandbox
				m.pool[key] = append(m.pool[key], sb)
			}
			m.mu.Unlock()
			if err != nil {
				m.log.Warn("cannot make a sandbox shell for the pool", "runtime", rt.Name, "primed", primeMB > 0, "err", err)
			}
			if err != nil || closed {
				if sb != nil {
					sb.markDead()
					sb.destroy()
					m.released(sb)
				}
				m.mu.Lock()
				m.filling[key] -= need - 1
				m.mu.Unlock()
				return
			}
		}
	}()
}

// newShellWithTmp makes a shell as newShell does, with a /tmp of tmpMB
// made while the shell starts: both wait mostly on the kernel (a loop
// device and a mount; a container's start), and a refill made the disk
// after the shell, which kept the pool empty that much longer. On error
// nothing is left: a shell whose /tmp could not be made is retired.
func (m *Manager) newShellWithTmp(rt *Runtime, root, purpose string, memoryMB, tmpMB int) (*sandbox, error) {
	type madeTmp struct {
		sc  *scratch
		err error
	}
	tmpc := make(chan madeTmp, 1)
	go func() {
		sc, err := m.scratch.make(tmpMB)
		tmpc <- madeTmp{sc, err}
	}()
	sb, err := m.newShell(rt, root, purpose, memoryMB)
	t := <-tmpc
	if err != nil {
		m.scratch.give(t.sc)
		return nil, err
	}
	if t.err != nil {
		m.retire(sb)
		return nil, t.err
	}
	sb.tmp = t.sc
	return sb, nil
}

// newShell makes a shell with a new id (named after what it is for) and a
// host uid of its own.
func (m *Manager) newShell(rt *Runtime, root, purpose string, memoryMB int) (*sandbox, error) {
	m.mu.Lock()
	m.seq++
	id := m.id + "-" + purpose + "-" + strconv.FormatUint(m.seq, 10)
	m.mu.Unlock()
	uid, ok := m.uids.take()
	if !ok {
		return nil, fmt.Errorf("every sandbox uid of the node is in use")
	}
	sb, err := m.makeShell(rt, root, id, uid, memoryMB)
	if err != nil {
		m.uids.give(uid)
		return nil, err
	}
	return sb, nil
}
