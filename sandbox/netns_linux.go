package sandbox

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// netns is a fresh network namespace with only loopback, up, and the Runtime
// API listener already bound inside it. The agent serves the listener from
// its own process: no proxy, no socket file in the rootfs.
type netns struct {
	file *os.File     // the namespace, kept open so it outlives any process
	ln   net.Listener // bound to RuntimeAPIAddr inside the namespace
}

// path is how libcontainer joins the namespace.
func (n *netns) path() string {
	return "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(n.file.Fd()))
}

func (n *netns) close() {
	n.ln.Close()
	n.file.Close()
}

// newNetns creates the namespace on a locked OS thread: unshare, bring lo
// up, listen, then return the thread to the agent's own namespace. If the
// thread cannot be returned it stays locked, so Go retires it with the
// goroutine instead of reusing a thread in the wrong namespace.
func newNetns() (*netns, error) {
	type result struct {
		ns  *netns
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ns, restored, err := newNetnsOnThread()
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{ns, err}
	}()
	r := <-ch
	return r.ns, r.err
}

func newNetnsOnThread() (_ *netns, restored bool, err error) {
	tid := unix.Gettid()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", tid))
	if err != nil {
		return nil, true, err
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("unshare netns: %w", err)
	}
	var ns *netns
	err = func() error {
		if err := loopbackUp(); err != nil {
			return err
		}
		f, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", tid))
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp4", RuntimeAPIAddr)
		if err != nil {
			f.Close()
			return fmt.Errorf("listen in sandbox netns: %w", err)
		}
		ns = &netns{file: f, ln: ln}
		return nil
	}()
	if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
		if ns != nil {
			ns.close()
		}
		return nil, false, fmt.Errorf("return to agent netns: %w", serr)
	}
	if err != nil {
		return nil, true, err
	}
	return ns, true, nil
}

// loopbackUp sets IFF_UP on "lo" in the calling thread's namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}
