package rpc

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"nimbus/internal/rawio"
)

var (
	errWriterClosed = errors.New("rpc: connection writer closed")
	// errWriterLast ends the loop after the frame of sendLast; whoever sent
	// it closes the connection.
	errWriterLast = errors.New("rpc: connection writer wrote its last frame")
)

// connWriter is the only writer of one connection. Senders hand it finished
// frames; a frame is written whole or the connection is given up: frames
// never interleave. Frames queued while a write is under way go out
// together in the next writev, so concurrent callers share system calls and
// nobody waits for another's write.
//
// Who writes depends on the side. On a server (direct), a sender whose
// frame finds nobody writing writes it itself, on its own goroutine, with
// what was queued before it: an answer leaves without a goroutine handoff.
// What others queue during that write is left to the loop goroutine, and
// so is a last frame (sendLast). A handler blocked by a peer that does not
// read is bounded by the write timeout. On a client, the loop goroutine
// writes, so that a caller returns at once and its context, not a blocked
// write, decides how long it waits.
//
// mu guards queue, writing, closed, closeNext and err. bufs, spare and the
// connection's write side belong to whoever set writing.
type connWriter struct {
	conn    net.Conn
	timeout time.Duration // write deadline per batch; 0 = none
	direct  bool          // senders write (a server's answers)

	mu        sync.Mutex
	queue     []*frameBuf
	writing   bool // someone is writing; it takes the queue before it stops
	closed    bool
	closeNext bool  // close after writing what is queued (sendLast)
	err       error // why the writer closed, for loop

	// onWritten, if set, is told the bytes of frames written or dropped, so
	// a server can count what it has queued. Set before the first send.
	onWritten func(n int64)

	wake chan struct{} // capacity 1, not direct: a token means "queue may be non-empty"
	stop chan struct{} // closed by close()

	epoch     time.Time    // creation time, for lastWrite (monotonic)
	lastWrite atomic.Int64 // end of the last write, in ns since epoch

	spare []*frameBuf
	bufs  [][]byte
}

func newConnWriter(conn net.Conn, timeout time.Duration, direct bool) *connWriter {
	w := &connWriter{
		conn:    conn,
		timeout: timeout,
		direct:  direct,
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

// send queues f for writing and takes ownership of it; a direct writer may
// write it (and frames queued by others) before it returns. It fails only
// when the writer is closed, in which case f is dropped. A write error
// closes the writer; loop returns it.
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
	if w.writing {
		w.mu.Unlock() // the writer takes it before it stops
		return nil
	}
	if !w.direct || last {
		// The last frame goes through the loop too, so that whoever sent
		// it (closing a connection) waits for it no longer than it chooses.
		first := len(w.queue) == 1
		w.mu.Unlock()
		// The queue only empties when the loop takes it, after taking a
		// token, so one token per empty-to-non-empty transition is enough.
		if first || last {
			w.wakeLoop()
		}
		return nil
	}
	w.writing = true
	w.drain(true)
	return nil
}

func (w *connWriter) wakeLoop() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// drain writes the queue until it is empty or the writer closes. Call with
// mu held and writing set; it returns with mu released and writing clear.
// A sender (once) writes one batch, the one with its own frame, and leaves
// what was queued meanwhile to the loop: under steady load it would
// otherwise go on writing others' answers, holding its handler's slot.
func (w *connWriter) drain(once bool) {
	for {
		// Double buffering: others append to the slice written last time.
		batch := w.queue
		w.queue = w.spare[:0]
		last := w.closeNext
		w.mu.Unlock()

		err := w.write(batch)
		if err == nil && last {
			// The peer is told why, then sees the end of the stream.
			if cw, ok := unwrapConn(w.conn).(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			err = errWriterLast
		}
		w.mu.Lock()
		w.spare = batch[:0]
		if err != nil || len(w.queue) == 0 || w.closed || once {
			more := err == nil && len(w.queue) > 0 && !w.closed
			w.writing = false
			w.mu.Unlock()
			if err != nil {
				w.fail(err)
			}
			if more {
				w.wakeLoop()
			}
			return
		}
	}
}

// loop runs until the writer closes and returns why: a write error,
// errWriterLast after sendLast's frame, or errWriterClosed. The caller then
// closes the connection. A writer that is not direct writes here.
func (w *connWriter) loop() error {
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.err != nil {
				return w.err
			}
			return errWriterClosed
		}
		w.mu.Lock()
		if w.closed || w.writing || len(w.queue) == 0 {
			w.mu.Unlock()
			continue
		}
		w.writing = true
		w.drain(false)
	}
}

// fail closes the writer for err.
func (w *connWriter) fail(err error) {
	w.mu.Lock()
	if w.err == nil && !w.closed {
		w.err = err
	}
	w.mu.Unlock()
	w.close()
}

// write writes batch in one writev and pools its frames.
func (w *connWriter) write(batch []*frameBuf) error {
	w.bufs = w.bufs[:0]
	for _, f := range batch {
		w.bufs = append(w.bufs, f.b)
	}
	if w.timeout > 0 {
		w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	_, err := rawio.WriteBuffers(w.conn, w.bufs) // one writev
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
	return err
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
