//go:build !linux

package rawio

import "net"

// Wrap returns c: raw system calls are made on Linux only.
func Wrap(c net.Conn) net.Conn { return c }

// WriteBuffers writes bufs to c as net.Buffers.
func WriteBuffers(c net.Conn, bufs [][]byte) (int64, error) {
	nb := append(net.Buffers(nil), bufs...)
	return nb.WriteTo(c)
}
