//go:build !linux

package rawio

import (
	"net"
	"os"
)

// Wrap returns c: raw system calls are made on Linux only.
func Wrap(c net.Conn) net.Conn { return c }

// Pread is f.ReadAt here.
func Pread(f *os.File, b []byte, off int64) (int, error) { return f.ReadAt(b, off) }

// WriteBuffers writes bufs to c as net.Buffers.
func WriteBuffers(c net.Conn, bufs [][]byte) (int64, error) {
	nb := append(net.Buffers(nil), bufs...)
	return nb.WriteTo(c)
}
