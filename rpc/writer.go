package rpc

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

var errWriterClosed = errors.New("rpc: connection writer closed")

// connWriter is the only writer of one connection. Senders hand it finished
// frames and return at once; its loop goroutine writes everything queued in
// one writev, so concurrent callers share system calls and nobody blocks on
// another's write. A frame is written whole or the connection is given up:
// frames never interleave.
//
// mu guards queue and closed. bufs, spare and the connection's write side
// belong to the loop goroutine.
type connWriter struct {
	conn    net.Conn
	timeout time.Duration // write deadline per batch; 0 = none

	mu     sync.Mutex
	queue  []*frameBuf
	closed bool

	wake chan struct{} // capacity 1: a token means "queue may be non-empty"
	stop chan struct{} // closed by close()

	epoch     time.Time    // creation time, for lastWrite (monotonic)
	lastWrite atomic.Int64 // end of the last write, in ns since epoch

	spare []*frameBuf
	bufs  net.Buffers
	wbufs net.Buffers
}

func newConnWriter(conn net.Conn, timeout time.Duration) *connWriter {
	w := &connWriter{
		conn:    conn,
		timeout: timeout,
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	w.epoch = time.Now()
	return w
}

// lastWriteTime returns when the last write ended (creation if none).
func (w *connWriter) lastWriteTime() time.Time {
	return w.epoch.Add(time.Duration(w.lastWrite.Load()))
}

// send queues f for writing and takes ownership of it. It fails only when the
// writer is closed, in which case f is dropped.
func (w *connWriter) send(f *frameBuf) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		putBuf(f)
		return errWriterClosed
	}
	w.queue = append(w.queue, f)
	first := len(w.queue) == 1
	w.mu.Unlock()
	// The queue only empties when the loop takes it, after taking a token, so
	// one token per empty-to-non-empty transition is enough.
	if first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// loop writes queued frames until close or a write error, which it returns.
// The caller then closes the connection.
func (w *connWriter) loop() error {
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			return errWriterClosed
		}
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return errWriterClosed
		}
		if len(w.queue) == 0 {
			w.mu.Unlock()
			continue
		}
		// Double buffering: senders append to the slice written last time.
		batch := w.queue
		w.queue = w.spare[:0]
		w.mu.Unlock()

		w.bufs = w.bufs[:0]
		for _, f := range batch {
			w.bufs = append(w.bufs, f.b)
		}
		if w.timeout > 0 {
			w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
		}
		w.wbufs = w.bufs // WriteTo consumes its receiver
		_, err := w.wbufs.WriteTo(w.conn)
		w.lastWrite.Store(int64(time.Since(w.epoch)))
		for i, f := range batch {
			putBuf(f)
			batch[i] = nil
		}
		clear(w.bufs)
		w.spare = batch[:0]
		if err != nil {
			w.close()
			return err
		}
	}
}

// close stops the loop and drops unsent frames. It does not close the
// connection. It is idempotent.
func (w *connWriter) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	close(w.stop)
	for _, f := range q {
		putBuf(f)
	}
}
