package rpc

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Streamed answers. A method registered with HandleStream sends parts of
// its answer as they come (a function's streamed response), then its
// answer as any method does. On the wire every frame of a stream carries
// the request's seq and a kind, the header's sixth element:
//
//	kindPart   server → client: one part; more parts or the answer follow
//	kindCredit client → server: body is a uint, bytes of parts the caller
//	           has taken (frames counted whole, with their length prefix)
//	kindCancel client → server: the caller gave up; the handler's context ends
//
// Flow control is by credit: a stream has at most streamWindow bytes of
// parts sent and not yet taken by the caller, so a slow reader slows its
// own stream down (back to the function's writes) and no one else's: the
// client's reader never waits for a caller, and the server never queues
// more than the window for one stream.
const (
	kindPart   = 1
	kindCredit = 2
	kindCancel = 3
)

// streamWindow is the most bytes of parts one stream has in flight.
const streamWindow = 1 << 20

// MaxStreamPart is the largest part a Stream sends in one frame; larger
// ones are split.
const MaxStreamPart = 256 << 10

// errStreamGone ends a Send whose caller cancelled or whose connection closed.
var errStreamGone = errors.New("rpc: the caller of the stream is gone")

// Stream sends the parts of one streamed answer. Its methods are for the
// handler's goroutine only.
type Stream struct {
	sc     *serverConn
	seq    uint64
	cancel context.CancelFunc
	room   chan struct{} // capacity 1: credit arrived

	mu      sync.Mutex
	unacked int64 // bytes of parts sent and not yet credited

	// released: the handler gave up its slot of the connection's
	// MaxInflight while it waits for credit (the handler's goroutine's).
	released bool
}

type streamKey struct{}

// HandleStream registers fn for method as a streamed method: fn sends parts
// with out.Send while it runs, then returns its answer as with Handle. A
// client calls it with CallStream.
func HandleStream[Req, Resp any](s *Server, method string, fn func(ctx context.Context, req *Req, out *Stream) (*Resp, error)) {
	handleStream(s, method, false, fn)
}

// HandlePeerStream is HandleStream for a node-to-node method.
func HandlePeerStream[Req, Resp any](s *Server, method string, fn func(ctx context.Context, req *Req, out *Stream) (*Resp, error)) {
	handleStream(s, method, true, fn)
}

func handleStream[Req, Resp any](s *Server, method string, peerOnly bool, fn func(ctx context.Context, req *Req, out *Stream) (*Resp, error)) {
	handle(s, method, handler{peerOnly: peerOnly, stream: true}, func(ctx context.Context, req *Req) (*Resp, error) {
		st, _ := ctx.Value(streamKey{}).(*Stream)
		if st == nil {
			return nil, Errorf(CodeService, "rpc: %s is a streamed method", method)
		}
		return fn(ctx, req, st)
	})
}

// openStream makes the Stream of request seq, whose handler runs under ctx.
func (sc *serverConn) openStream(ctx context.Context, seq uint64) (context.Context, *Stream) {
	ctx, cancel := context.WithCancel(ctx)
	st := &Stream{sc: sc, seq: seq, cancel: cancel, room: make(chan struct{}, 1)}
	sc.streamMu.Lock()
	if sc.streams == nil {
		sc.streams = make(map[uint64]*Stream)
	}
	sc.streams[seq] = st
	sc.streamMu.Unlock()
	return context.WithValue(ctx, streamKey{}, st), st
}

func (sc *serverConn) closeStream(st *Stream) {
	sc.streamMu.Lock()
	if sc.streams[st.seq] == st {
		delete(sc.streams, st.seq)
	}
	sc.streamMu.Unlock()
	st.cancel()
}

// control takes a client's credit or cancel frame for one of its streams.
// Frames for streams that have ended are ignored.
func (sc *serverConn) control(h header, body []byte) {
	sc.streamMu.Lock()
	st := sc.streams[h.seq]
	sc.streamMu.Unlock()
	if st == nil {
		return
	}
	switch h.kind {
	case kindCredit:
		var n uint64
		if decodeBody(body, &n) != nil {
			return
		}
		st.mu.Lock()
		st.unacked = max(st.unacked-int64(min(n, streamWindow*4)), 0)
		st.mu.Unlock()
		select {
		case st.room <- struct{}{}:
		default:
		}
	case kindCancel:
		st.cancel()
	}
}

// Send sends v (msgpack-encoded as a body is) as the next part. It waits
// while the stream's window is full, and fails once ctx ends, the caller
// cancels or the connection closes: the caller will not see this part.
func (st *Stream) Send(ctx context.Context, v any) error {
	f := getBuf()
	startFrameKind(f, st.seq, kindPart, nil)
	if err := encodeResponse(f, v); err != nil {
		putBuf(f)
		return Errorf(CodeService, "rpc: encode a part: %v", err)
	}
	if err := finishFrame(f, st.sc.s.opts.MaxFrameSize); err != nil {
		putBuf(f)
		return Errorf(CodeService, "rpc: part too large: %v", err)
	}
	n := int64(len(f.b))
	if err := st.await(ctx, n); err != nil {
		putBuf(f)
		return err
	}
	st.sc.writes.add(n)
	st.sc.s.writes.add(n)
	if st.sc.w.send(f) != nil {
		return errStreamGone
	}
	return nil
}

// await waits until n more bytes fit the stream's window and the
// connection's unwritten answers are under their limit, and takes them
// from the window. While it waits for credit the handler does not hold its
// slot of the connection's MaxInflight: the reader, blocked for a slot,
// would otherwise never read the credit that frees it.
func (st *Stream) await(ctx context.Context, n int64) error {
	if st.released {
		if err := st.reacquire(ctx); err != nil {
			return err
		}
	}
	for {
		st.mu.Lock()
		fits := st.unacked == 0 || st.unacked+n <= streamWindow
		if fits {
			st.unacked += n
		}
		st.mu.Unlock()
		if fits {
			break
		}
		if !st.released {
			<-st.sc.sem
			st.released = true
		}
		select {
		case <-st.room:
		case <-ctx.Done():
			return ctx.Err()
		case <-st.sc.ctx.Done():
			return errStreamGone
		}
	}
	if st.released {
		if err := st.reacquire(ctx); err != nil {
			return err
		}
	}
	// Unwritten answers of this connection (a caller that credits but
	// does not read its socket): wait for them to drain below the limit.
	w := st.sc.writes
	if !w.over() {
		return nil
	}
	w.waiters.Add(1)
	defer w.waiters.Add(-1)
	for {
		ch := w.changed()
		if !w.over() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-st.sc.ctx.Done():
			return errStreamGone
		}
	}
}

// reacquire takes back the handler's slot.
func (st *Stream) reacquire(ctx context.Context) error {
	select {
	case st.sc.sem <- struct{}{}:
		st.released = false
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-st.sc.ctx.Done():
		return errStreamGone
	}
}

// CallStream calls a streamed method: onPart is given each part, decoded
// into a new Part, in order and on the caller's goroutine, before the
// answer is decoded into resp. An error from onPart cancels the stream
// (the handler's context ends) and is returned. A slow onPart slows the
// handler's Sends down, and no other call.
func CallStream[Part any](c *Client, ctx context.Context, method string, req, resp any, onPart func(*Part) error) error {
	return c.callStream(ctx, method, req, resp, func(body []byte) error {
		p := new(Part)
		if err := decodeBody(body, p); err != nil {
			return fmt.Errorf("rpc: decode a part of %s: %w", method, err)
		}
		return onPart(p)
	})
}

func (c *Client) callStream(ctx context.Context, method string, req, resp any, onPart func([]byte) error) error {
	cc, timeoutMs, deadlineMs, err := c.begin(ctx, method)
	if err != nil {
		return err
	}
	return cc.callStream(ctx, method, timeoutMs, deadlineMs, req, resp, onPart)
}

// streamParts are the parts the reader has taken for one streamed call.
type streamParts struct {
	ready chan struct{} // capacity 1: parts has grown
	parts []*frameBuf   // guarded by the connection's mu
	bytes int64
}

func (cc *clientConn) callStream(ctx context.Context, method string, timeoutMs, deadlineMs uint64, req, resp any, onPart func([]byte) error) error {
	seq := cc.seq.Add(1)
	f, err := cc.requestFrame(seq, method, timeoutMs, deadlineMs, req)
	if err != nil {
		return err
	}
	sp := &streamParts{ready: make(chan struct{}, 1)}
	cl := &call{done: make(chan struct{}, 1), stream: sp}
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		putBuf(f)
		return err
	}
	cc.pending[seq] = cl
	cc.mu.Unlock()
	cc.w.send(f)

	// giveUp tells the server, and forgets the call.
	giveUp := func() {
		cc.mu.Lock()
		mine := cc.pending[seq] == cl
		delete(cc.pending, seq)
		parts := sp.parts
		sp.parts = nil
		cc.mu.Unlock()
		for _, p := range parts {
			putBuf(p)
		}
		if mine {
			cc.control(seq, kindCancel, nil)
		}
	}
	// take hands the parts received so far to onPart, crediting each.
	take := func() error {
		cc.mu.Lock()
		parts := sp.parts
		sp.parts = nil
		sp.bytes = 0
		cc.mu.Unlock()
		for i, p := range parts {
			_, off, _ := parseHeader(p.b)
			n := uint64(len(p.b) + lenPrefix)
			err := onPart(p.b[off:])
			putBuf(p)
			if err != nil {
				for _, q := range parts[i+1:] {
					putBuf(q)
				}
				return err
			}
			cc.control(seq, kindCredit, n)
		}
		return nil
	}
	for {
		select {
		case <-sp.ready:
			if err := take(); err != nil {
				giveUp()
				return err
			}
			continue
		case <-cl.done:
		case <-ctx.Done():
			giveUp()
			select {
			case <-cl.done: // answered meanwhile: its frame is pooled below
				if cl.f != nil {
					putBuf(cl.f)
				}
			default:
			}
			return fmt.Errorf("rpc: %s: %w", method, ctx.Err())
		}
		break
	}
	// The answer came after every part: take the last ones first.
	if err := take(); err != nil {
		if cl.f != nil {
			putBuf(cl.f)
		}
		return err
	}
	if cl.err != nil {
		return cl.err
	}
	defer putBuf(cl.f)
	if cl.rerr != nil {
		return cl.rerr
	}
	if resp == nil {
		return nil
	}
	if err := decodeBody(cl.f.b[cl.off:], resp); err != nil {
		return fmt.Errorf("rpc: decode %s response: %w", method, err)
	}
	return nil
}

// control sends a stream's credit or cancel frame.
func (cc *clientConn) control(seq, kind uint64, v any) {
	f := getBuf()
	startFrameKind(f, seq, kind, nil)
	if encodeBody(f, v) != nil || finishFrame(f, cc.maxFrame) != nil {
		putBuf(f)
		return
	}
	cc.w.send(f)
}

// part files a part frame the reader got for a streamed call. A server
// that sends far past the window breaks the connection.
func (cc *clientConn) part(h header, f *frameBuf) error {
	cc.mu.Lock()
	cl := cc.pending[h.seq]
	if cl == nil || cl.stream == nil {
		// The caller gave up, or called a streamed method with Call: it
		// wants the answer alone (credited, so that the stream goes on).
		cc.mu.Unlock()
		n := uint64(len(f.b) + lenPrefix)
		putBuf(f)
		if cl != nil {
			cc.control(h.seq, kindCredit, n)
		}
		return nil
	}
	sp := cl.stream
	sp.bytes += int64(len(f.b) + lenPrefix)
	if sp.bytes > 2*streamWindow+int64(cc.maxFrame) {
		cc.mu.Unlock()
		putBuf(f)
		return errors.New("rpc: a stream sent past its window")
	}
	sp.parts = append(sp.parts, f)
	cc.mu.Unlock()
	select {
	case sp.ready <- struct{}{}:
	default:
	}
	return nil
}
