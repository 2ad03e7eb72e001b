package sandbox

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Sandboxes see their own /proc/meminfo, /proc/cpuinfo, /proc/stat,
// /proc/uptime, /proc/diskstats and /proc/swaps: the files of an lxcfs
// (Debian's, a FUSE filesystem that answers each read from the reader's
// cgroups: MemTotal is the memory limit, the CPUs are the CFS quota's,
// uptime is the sandbox's), bind-mounted over the kernel's. Runtimes that
// size themselves from /proc (a JVM without container support, Go's
// GOMAXPROCS readers, a Python pool sized by os.cpu_count's files, `free`)
// then see the function's memory and vCPU share, not the host's.
//
// The manager runs its own lxcfs, mounted in the state dir, and keeps it
// running: if it dies it is started again (sandboxes made meanwhile read
// the kernel's files; those made on the dead mount get ENOTCONN from
// those six files until they are replaced). Where lxcfs or /dev/fuse is
// missing, the sandboxes read the kernel's files, and the manager warns
// once.

// procViewsDirName is where the manager's lxcfs is mounted, in StateDir.
const procViewsDirName = "procviews"

// procViewFiles are the /proc files lxcfs answers and runc lets be mounted
// over.
var procViewFiles = []string{"meminfo", "cpuinfo", "stat", "uptime", "diskstats", "swaps"}

// procViews runs one lxcfs.
type procViews struct {
	dir  string
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	ready bool // mounted and answering
	proc  *os.Process
}

// startProcViews starts lxcfs at stateDir/procviews and waits until it
// answers. It returns nil (and says why, once) where it cannot.
func startProcViews(stateDir string, log *slog.Logger) *procViews {
	bin, err := exec.LookPath("lxcfs")
	if err != nil {
		log.Warn("sandboxes see the host's /proc/meminfo and /proc/cpuinfo: lxcfs is not installed (scripts/install-deps.sh installs Debian's)")
		return nil
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		log.Warn("sandboxes see the host's /proc/meminfo and /proc/cpuinfo: no /dev/fuse for lxcfs", "err", err)
		return nil
	}
	p := &procViews{dir: filepath.Join(stateDir, procViewsDirName), log: log, stop: make(chan struct{}), done: make(chan struct{})}
	_ = unix.Unmount(p.dir, unix.MNT_DETACH) // an earlier agent's
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		log.Warn("sandboxes see the host's /proc/meminfo and /proc/cpuinfo", "err", err)
		return nil
	}
	started := make(chan struct{})
	go p.run(bin, started)
	<-started
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if p.answering() {
			p.mu.Lock()
			p.ready = true
			p.mu.Unlock()
			return p
		}
	}
	log.Warn("sandboxes see the host's /proc/meminfo and /proc/cpuinfo: lxcfs did not answer within 5 s")
	p.close()
	return nil
}

// answering reports whether the mount serves meminfo.
func (p *procViews) answering() bool {
	b, err := os.ReadFile(filepath.Join(p.dir, "proc", "meminfo"))
	return err == nil && len(b) > 0
}

// run starts lxcfs, and again whenever it dies, until close. It holds its
// OS thread for good: lxcfs is started with a parent-death signal, which
// the kernel sends when the thread that started it ends, and Go ends
// threads that goroutines locked and left (libcontainer does).
func (p *procViews) run(bin string, started chan struct{}) {
	defer close(p.done)
	runtime.LockOSThread()
	first := true
	for {
		cmd := exec.Command(bin, "--foreground", "--enable-cfs", "--disable-swap",
			"--pidfile", filepath.Join(filepath.Dir(p.dir), procViewsDirName+".pid"), p.dir)
		cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL, Setpgid: true}
		err := cmd.Start()
		if err == nil {
			p.mu.Lock()
			p.proc = cmd.Process
			p.mu.Unlock()
		}
		if first {
			close(started)
			first = false
		}
		if err == nil {
			err = cmd.Wait()
		}
		p.mu.Lock()
		p.proc, p.ready = nil, false
		p.mu.Unlock()
		_ = unix.Unmount(p.dir, unix.MNT_DETACH)
		select {
		case <-p.stop:
			return
		default:
		}
		p.log.Error("lxcfs ended; starting it again", "err", err)
		select {
		case <-p.stop:
			return
		case <-time.After(time.Second):
		}
		go p.markReady()
	}
}

// markReady waits for a restarted lxcfs to answer.
func (p *procViews) markReady() {
	for i := 0; i < 500; i++ {
		if p.answering() {
			p.mu.Lock()
			p.ready = p.proc != nil
			p.mu.Unlock()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// files are the host paths of the views a new sandbox mounts over its
// /proc, by /proc name; none while lxcfs is down.
func (p *procViews) files() map[string]string {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	ready := p.ready
	p.mu.Unlock()
	if !ready {
		return nil
	}
	out := make(map[string]string, len(procViewFiles))
	for _, f := range procViewFiles {
		src := filepath.Join(p.dir, "proc", f)
		if _, err := os.Stat(src); err == nil {
			out[f] = src
		}
	}
	return out
}

// close stops lxcfs and unmounts it. Sandboxes still alive then read
// ENOTCONN from their views; the manager closes after its sandboxes.
func (p *procViews) close() {
	if p == nil {
		return
	}
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	p.mu.Lock()
	if p.proc != nil {
		_ = p.proc.Signal(unix.SIGTERM)
	}
	p.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.mu.Lock()
		if p.proc != nil {
			_ = p.proc.Kill()
		}
		p.mu.Unlock()
		<-p.done
	}
	if err := unix.Unmount(p.dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		p.log.Debug("lxcfs mount not removed", "err", err)
	}
	_ = os.Remove(p.dir)
	_ = os.Remove(filepath.Join(filepath.Dir(p.dir), procViewsDirName+".pid"))
}
