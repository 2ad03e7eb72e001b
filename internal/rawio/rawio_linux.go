package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs is how many buffers one writev takes (the kernel's IOV_MAX).
const maxIovecs = 1024

// Conn is a TCP connection whose Read, Write and WriteBuffers are raw
// system calls. Everything else is the wrapped connection's.
type Conn struct {
	net.Conn
	rc syscall.RawConn

	rmu    sync.Mutex // one read at a time: rbuf, rn, rerr
	rbuf   []byte
	rn     int
	rerr   syscall.Errno
	readFn func(uintptr) bool

	wmu     sync.Mutex // one write at a time, written whole: the fields below
	wbufs   [][]byte
	one     [1][]byte
	iov     []unix.Iovec
	wn      int64
	werr    syscall.Errno
	writeFn func(uintptr) bool
}

// Wrap returns c with raw reads and writes when c is a *net.TCPConn;
// otherwise c itself. Only the socket itself: a wrapper may hold bytes of
// its own (a peeked prefix, a TLS record), which reads from its socket
// would skip. Wrap a connection first, then put wrappers around it. The
// result's NetConn returns c.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &Conn{Conn: c, rc: rc}
	rw.readFn = rw.doRead
	rw.writeFn = rw.doWrite
	return rw
}

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Read reads like net.Conn's Read: at most len(p) bytes, io.EOF at the
// end of the stream.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerr
	c.rbuf = nil
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// doRead is one read; false asks the poller to wait for data.
func (c *Conn) doRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			c.rn = int(n)
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			c.rerr = e
		}
		return true
	}
}

// Write writes p whole, or fails, like net.Conn's Write.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.one[0] = p
	n, err := c.writeLocked(c.one[:])
	c.one[0] = nil
	return int(n), err
}

// WriteBuffers writes bufs whole, in as few writev calls as the socket
// allows, or fails; concurrent writes do not interleave with it. bufs is
// not modified.
func (c *Conn) WriteBuffers(bufs [][]byte) (int64, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(bufs)
}

func (c *Conn) writeLocked(bufs [][]byte) (int64, error) {
	c.wbufs, c.wn, c.werr = bufs, 0, 0
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werr
	c.wbufs = nil
	clear(c.iov[:cap(c.iov)]) // hold no caller's buffer
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("writev", errno))
	}
	return n, nil
}

// doWrite writes what is left of wbufs; false asks the poller to wait for
// room. Progress is kept in c across calls.
func (c *Conn) doWrite(fd uintptr) bool {
	for {
		// Skip what is written already (wn bytes from the start).
		skip := c.wn
		c.iov = c.iov[:0]
		for _, b := range c.wbufs {
			if int64(len(b)) <= skip {
				skip -= int64(len(b))
				continue
			}
			b = b[skip:]
			skip = 0
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			c.iov = append(c.iov, v)
			if len(c.iov) == maxIovecs {
				break
			}
		}
		if len(c.iov) == 0 {
			return true
		}
		n, _, e := syscall.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.iov[0])), uintptr(len(c.iov)))
		switch e {
		case 0:
			c.wn += int64(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
}

// opError describes err as the net package would, with op for the raw
// conn's "raw-read" and "raw-write".
func (c *Conn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		e := *oe
		e.Op = op
		return &e
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Pread reads from f at off with one raw pread: for files that never
// block, such as cgroup files.
func Pread(f *os.File, b []byte, off int64) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n uintptr
	var e syscall.Errno
	if err := rc.Read(func(fd uintptr) bool {
		for {
			n, _, e = syscall.RawSyscall6(unix.SYS_PREAD64, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(off), 0, 0)
			if e != unix.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	if e != 0 {
		return 0, os.NewSyscallError("pread", e)
	}
	return int(n), nil
}

// Read is one raw read(2) of fd, which must be non-blocking (a pipe or
// socket inside its syscall.RawConn's Read or Control): what unix.Read
// returns, without the scheduler's system-call state.
func Read(fd uintptr, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, e := syscall.RawSyscall(unix.SYS_READ, fd, uintptr(p), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// WriteBuffers writes bufs to c: with c's own WriteBuffers when it has one
// (a Conn, or a wrapper that passes writes through), else as net.Buffers.
func WriteBuffers(c net.Conn, bufs [][]byte) (int64, error) {
	if bw, ok := c.(interface {
		WriteBuffers([][]byte) (int64, error)
	}); ok {
		return bw.WriteBuffers(bufs)
	}
	nb := append(net.Buffers(nil), bufs...) // WriteTo consumes its receiver
	return nb.WriteTo(c)
}
