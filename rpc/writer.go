package rpc

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

var (
	errWriterClosed = errors.New("rpc: connection writer closed")
	// errWriterLast ends the loop after the frame of sendLast; whoever sent
	// it closes the connection.
	errWriterLast = errors.New("rpc: connection writer wrote its last frame")
)

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

	mu        sync.Mutex
	queue     []*frameBuf
	closed    bool
	closeNext bool // close after writing what is queued (sendLast)

	// onWritten, if set, is told the bytes of frames written or dropped, so
	// a server can count what it has queued. Set before loop starts.
	onWritten func(n int64)

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
	return w.enqueue(f, false)
}

// sendLast queues f as the last frame: the writer closes once it is
// written. Later sends are dropped.
func (w *connWriter) sendLast(f *frameBuf) error { return w.enqueue(f, true) }

func (w *connWriter) enqueue(f *frameBuf, last bool) error {
	w.mu.Lock()
	if w.closed || w.closeNext {
		w.mu.Unlock()
		w.dropped(f)
		return errWriterClosed
	}
	w.queue = append(w.queue, f)
	w.closeNext = last
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
		last := w.closeNext
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
		var n int64
		for i, f := range batch {
			n += int64(len(f.b))
			putBuf(f)
			batch[i] = nil
		}
		if w.onWritten != nil {
			w.onWritten(n)
		}
		clear(w.bufs)
		w.spare = batch[:0]
		if err != nil {
			w.close()
			return err
		}
		if last {
			// The peer is told why, then sees the end of the stream.
			if cw, ok := unwrapConn(w.conn).(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			w.close()
			return errWriterLast
		}
	}
}

// dropped pools a frame that will not be written, and counts it.
func (w *connWriter) dropped(f *frameBuf) {
	if w.onWritten != nil {
		w.onWritten(int64(len(f.b)))
	}
	putBuf(f)
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
		w.dropped(f)
	}
}
