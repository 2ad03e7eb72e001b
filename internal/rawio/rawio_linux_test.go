package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns a connected loopback pair: a (wrapped) and b (plain).
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	a, ok := Wrap(d).(*Conn)
	if !ok {
		t.Fatalf("Wrap of a TCP conn gave %T", Wrap(d))
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestReadWriteAndEOF(t *testing.T) {
	a, b := pair(t)
	if _, err := a.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
	if _, err := b.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if n, err := a.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
	b.Close()
	if n, err := a.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want io.EOF", n, err)
	}
}

// A write far larger than the socket buffers, in many buffers (more than
// one writev takes, some empty), to a peer that reads slowly: partial
// writes and waits for room, and every byte arrives in order.
func TestWriteBuffersWhole(t *testing.T) {
	a, b := pair(t)
	var bufs [][]byte
	var want bytes.Buffer
	for i := 0; i < 3000; i++ {
		blk := bytes.Repeat([]byte{byte(i)}, 1+i%4000)
		if i%7 == 0 {
			blk = nil
		}
		bufs = append(bufs, blk)
		want.Write(blk)
	}
	got := make(chan []byte, 1)
	go func() {
		var out bytes.Buffer
		chunk := make([]byte, 4096)
		for out.Len() < want.Len() {
			time.Sleep(50 * time.Microsecond)
			n, err := b.Read(chunk)
			out.Write(chunk[:n])
			if err != nil {
				break
			}
		}
		got <- out.Bytes()
	}()
	n, err := a.WriteBuffers(bufs)
	if err != nil || n != int64(want.Len()) {
		t.Fatalf("WriteBuffers: %d, %v; want %d", n, err, want.Len())
	}
	if g := <-got; !bytes.Equal(g, want.Bytes()) {
		t.Fatalf("the peer got %d bytes, not the %d written (or not in order)", len(g), want.Len())
	}
	for i, blk := range bufs {
		if len(blk) != 0 && len(blk) != 1+i%4000 {
			t.Fatalf("buffer %d was modified", i)
		}
	}
}

// Concurrent writes are each written whole.
func TestConcurrentWritesDoNotInterleave(t *testing.T) {
	a, b := pair(t)
	const writers, size = 8, 256 << 10
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := a.Write(bytes.Repeat([]byte{byte('a' + i)}, size)); err != nil {
				t.Error(err)
			}
		}(i)
	}
	all := make([]byte, writers*size)
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(b, all); done <- err }()
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(all); off += size {
		blk := all[off : off+size]
		if bytes.Count(blk, blk[:1]) != size {
			t.Fatalf("block at %d mixes writers", off)
		}
	}
}

func TestDeadlineAndClose(t *testing.T) {
	a, _ := pair(t)
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := a.Read(make([]byte, 8))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v; want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read error %#v; want a net.OpError for read", err)
	}
	a.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() { _, err := a.Read(make([]byte, 8)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed conn: %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read blocked in the poller did not end at Close")
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed conn: %v; want net.ErrClosed", err)
	}
}

// A peer that went away: the write fails with the socket's error.
func TestWriteToResetPeer(t *testing.T) {
	a, b := pair(t)
	b.(*net.TCPConn).SetLinger(0)
	b.Close()
	time.Sleep(20 * time.Millisecond)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = a.Write(make([]byte, 64<<10))
	}
	var se *os.SyscallError
	if err == nil || !errors.As(err, &se) {
		t.Fatalf("writes to a reset peer: %v; want a system call's error", err)
	}
}

type wrapper struct{ net.Conn }

func (w wrapper) NetConn() net.Conn { return w.Conn }

func TestWrapKinds(t *testing.T) {
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if Wrap(p1) != p1 {
		t.Fatal("a conn without a socket should come back as it is")
	}
	a, _ := pair(t)
	w := wrapper{a.Conn}
	if Wrap(w) != net.Conn(w) {
		t.Fatal("a wrapper (which may hold bytes of its own) should come back as it is")
	}
	if a.NetConn() == nil {
		t.Fatal("NetConn should return the conn given to Wrap")
	}
	// WriteBuffers goes through a wrapper that has the method, and as
	// net.Buffers through one that has not.
	for _, c := range []net.Conn{a, w} {
		if n, err := WriteBuffers(c, [][]byte{[]byte("ab"), nil, []byte("c")}); n != 3 || err != nil {
			t.Fatalf("WriteBuffers(%T): %d, %v", c, n, err)
		}
	}
}

func TestPread(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("123456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 32)
	for i := 0; i < 2; i++ { // from the start each time
		n, err := Pread(f, buf, 0)
		if err != nil || string(buf[:n]) != "123456\n" {
			t.Fatalf("Pread: %q, %v", buf[:n], err)
		}
	}
	if n, err := Pread(f, buf, 3); err != nil || string(buf[:n]) != "456\n" {
		t.Fatalf("Pread at 3: %q, %v", buf[:n], err)
	}
	f.Close()
	if _, err := Pread(f, buf, 0); err == nil {
		t.Fatal("Pread of a closed file succeeded")
	}
}

func TestReadFD(t *testing.T) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	buf := make([]byte, 8)
	if n, err := Read(uintptr(fds[0]), buf); n != -1 || err != unix.EAGAIN {
		t.Fatalf("read of an empty pipe: %d, %v; want -1, EAGAIN", n, err)
	}
	unix.Write(fds[1], []byte("abc"))
	if n, err := Read(uintptr(fds[0]), buf); n != 3 || err != nil || string(buf[:3]) != "abc" {
		t.Fatalf("read: %d %q, %v", n, buf[:n], err)
	}
	unix.Close(fds[1])
	if n, err := Read(uintptr(fds[0]), buf); n != 0 || err != nil {
		t.Fatalf("read at the end: %d, %v; want 0, nil", n, err)
	}
}
