package rpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"nimbus/internal/rawio"
)

const defaultDialTimeout = 5 * time.Second

// ErrConnClosed is wrapped by every error that means the node could not be
// reached or the connection to it broke: a failed dial, a call pending when
// the connection dropped, a call on a closed Client. Test for it with
// errors.Is to tell "node unreachable" from a platform error (*Error).
//
// A call that fails this way may or may not have run on the node.
var ErrConnClosed = errors.New("rpc: connection closed")

// connError is a transport failure: it matches ErrConnClosed and its cause.
type connError struct {
	msg   string
	cause error
}

func (e *connError) Error() string {
	if e.cause == nil {
		return e.msg
	}
	return e.msg + ": " + e.cause.Error()
}

func (e *connError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrConnClosed}
	}
	return []error{ErrConnClosed, e.cause}
}

// ClientOptions configures a Client. The zero value is usable.
type ClientOptions struct {
	// DialTimeout bounds each connection attempt; 0 means 5 seconds.
	DialTimeout time.Duration
	// MaxFrameSize bounds a frame's payload in both directions; 0 means
	// DefaultMaxFrameSize. A request that would be larger fails locally
	// with RequestTooLargeException; a larger response breaks the connection.
	MaxFrameSize int
	// DeadPeerTimeout, if set, breaks the connection when the peer stops
	// acknowledging: sent bytes unacknowledged for this long
	// (TCP_USER_TIMEOUT), or no answer to keepalive probes sent after a
	// third of it idle. Between nodes this turns a cut link into an error
	// within seconds instead of TCP's many minutes of retransmissions, and
	// drops what was still queued for the peer, so a request cannot reach
	// it long after its caller gave up.
	DeadPeerTimeout time.Duration
	// SendDeadline sends the caller's deadline as an absolute time, and the
	// server refuses a request that arrives after it (ServiceException)
	// instead of running it late. Meant for calls between nodes of a
	// cluster, whose clocks agree (NTP); a client with a skewed clock would
	// see its requests refused.
	SendDeadline bool
	// Peer, when set, makes every connection a peer connection: it starts
	// with the peer handshake, and reaches the node-to-node methods. Only
	// nodes of the cluster hold its key.
	Peer *PeerAuth
}

// Client calls one node over one TCP connection, which any number of
// goroutines share: each call carries a sequence number and answers are
// routed back by it, in whatever order they come.
//
// When the connection breaks, the calls pending on it fail with ErrConnClosed
// (they are not retried: they may have run); the next call dials again.
//
// cur is replaced only while holding the dialing token (a value in dialing).
type Client struct {
	addr    string
	opts    ClientOptions
	cur     atomic.Pointer[clientConn]
	dialing chan struct{} // capacity 1: holding a value means dialing
	closed  atomic.Bool
}

// Dial connects to the node at addr ("host:port"). The error of a failed
// dial wraps ErrConnClosed.
func Dial(ctx context.Context, addr string, opts ClientOptions) (*Client, error) {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = defaultDialTimeout
	}
	if opts.MaxFrameSize <= 0 {
		opts.MaxFrameSize = DefaultMaxFrameSize
	}
	c := &Client{addr: addr, opts: opts, dialing: make(chan struct{}, 1)}
	cc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.cur.Store(cc)
	return c, nil
}

// Addr returns the address the client dials.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection. Pending and later calls fail with
// ErrConnClosed.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	// Wait out a dial in progress so that its connection is closed too.
	c.dialing <- struct{}{}
	defer func() { <-c.dialing }()
	if cc := c.cur.Load(); cc != nil {
		cc.fail(&connError{msg: "rpc: client closed"})
	}
	return nil
}

// Call sends req to method and decodes the answer into resp (a pointer, or
// nil to discard it). It is safe for concurrent use.
//
// The time left until ctx's deadline travels with the request and becomes
// the handler's deadline. When ctx ends first Call returns ctx's error at
// once and the late answer is discarded. A platform error from the node is
// returned as *Error; a transport failure wraps ErrConnClosed.
func (c *Client) Call(ctx context.Context, method string, req, resp any) error {
	cc, timeoutMs, deadlineMs, err := c.begin(ctx, method)
	if err != nil {
		return err
	}
	return cc.call(ctx, method, timeoutMs, deadlineMs, req, resp)
}

// begin is what every call does first: it checks ctx, works out the
// header's timeout and (with SendDeadline) deadline, and finds a live
// connection.
func (c *Client) begin(ctx context.Context, method string) (cc *clientConn, timeoutMs, deadlineMs uint64, err error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, 0, fmt.Errorf("rpc: %s: %w", method, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, 0, 0, fmt.Errorf("rpc: %s: %w", method, context.DeadlineExceeded)
		}
		timeoutMs = uint64((left + time.Millisecond - 1) / time.Millisecond)
		if c.opts.SendDeadline {
			deadlineMs = uint64(dl.UnixMilli())
		}
	}
	cc, err = c.conn(ctx)
	return cc, timeoutMs, deadlineMs, err
}

// conn returns a live connection, dialing if the last one broke.
func (c *Client) conn(ctx context.Context) (*clientConn, error) {
	if cc := c.cur.Load(); cc != nil && !cc.broken.Load() {
		return cc, nil
	}
	if c.closed.Load() {
		return nil, &connError{msg: "rpc: client closed"}
	}
	select {
	case c.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.dialing }()
	if c.closed.Load() {
		return nil, &connError{msg: "rpc: client closed"}
	}
	if cc := c.cur.Load(); cc != nil && !cc.broken.Load() {
		return cc, nil // another caller redialed while we waited
	}
	cc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.cur.Store(cc)
	return cc, nil
}

func (c *Client) dial(ctx context.Context) (*clientConn, error) {
	d := net.Dialer{Timeout: c.opts.DialTimeout}
	if t := c.opts.DeadPeerTimeout; t > 0 {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: t / 3, Interval: t / 3, Count: 2}
		d.Control = userTimeout(t)
	}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, &connError{msg: "rpc: dial " + c.addr, cause: err}
	}
	conn = rawio.Wrap(conn) // reads and writes the scheduler need not see
	if c.opts.Peer != nil {
		if _, err := c.opts.Peer.dialHandshake(ctx, conn); err != nil {
			conn.Close()
			return nil, &connError{msg: "rpc: peer handshake with " + c.addr, cause: err}
		}
	}
	cc := &clientConn{
		addr:     c.addr,
		conn:     conn,
		br:       bufio.NewReaderSize(conn, readBufferSize),
		w:        newConnWriter(conn, 0, false),
		maxFrame: c.opts.MaxFrameSize,
		pending:  make(map[uint64]*call),
	}
	go cc.readLoop()
	go func() { cc.fail(cc.w.loop()) }()
	return cc, nil
}

// clientConn is one connection of a Client. mu guards pending and err; once
// err is set (and broken is true) pending is nil and nothing is added.
type clientConn struct {
	addr     string
	conn     net.Conn
	br       *bufio.Reader // owned by readLoop
	w        *connWriter
	maxFrame int
	seq      atomic.Uint64
	broken   atomic.Bool

	mu      sync.Mutex
	pending map[uint64]*call
	err     error
}

// call is one request waiting for its answer. Whoever removes it from
// pending (the reader, fail, or the caller giving up) owns its completion:
// the reader and fail fill it and signal done; the caller then reads it and
// returns it to the pool.
type call struct {
	done chan struct{} // capacity 1
	f    *frameBuf     // the answer frame
	off  int           // body offset in f.b
	rerr *Error        // the platform error in the answer's header
	err  error         // a transport failure
	// stream, for a streamed call (CallStream), holds the parts that came
	// before the answer.
	stream *streamParts
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func (cc *clientConn) call(ctx context.Context, method string, timeoutMs, deadlineMs uint64, req, resp any) error {
	seq := cc.seq.Add(1)
	f, err := cc.requestFrame(seq, method, timeoutMs, deadlineMs, req)
	if err != nil {
		return err
	}

	cl := callPool.Get().(*call)
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		putBuf(f)
		callPool.Put(cl)
		return err
	}
	cc.pending[seq] = cl
	cc.mu.Unlock()
	// If the writer is closed the connection is failing, and fail delivers
	// the error to cl like to every pending call.
	cc.w.send(f)

	select {
	case <-cl.done:
	case <-ctx.Done():
		cc.mu.Lock()
		mine := cc.pending[seq] == cl
		if mine {
			delete(cc.pending, seq)
		}
		cc.mu.Unlock()
		if mine {
			callPool.Put(cl)
			return fmt.Errorf("rpc: %s: %w", method, ctx.Err())
		}
		<-cl.done // the answer is being handed over right now; use it
	}

	f, off, rerr, err := cl.f, cl.off, cl.rerr, cl.err
	*cl = call{done: cl.done}
	callPool.Put(cl)
	if err != nil {
		return err
	}
	defer putBuf(f)
	if rerr != nil {
		return rerr
	}
	if resp == nil {
		return nil
	}
	if err := decodeBody(f.b[off:], resp); err != nil {
		return fmt.Errorf("rpc: decode %s response: %w", method, err)
	}
	return nil
}

// requestFrame encodes request seq of method into a frame ready to send.
func (cc *clientConn) requestFrame(seq uint64, method string, timeoutMs, deadlineMs uint64, req any) (*frameBuf, error) {
	f := getBuf()
	startFrameDeadline(f, seq, method, timeoutMs, nil, deadlineMs)
	if err := encodeBody(f, req); err != nil {
		putBuf(f)
		return nil, fmt.Errorf("rpc: encode %s request: %w", method, err)
	}
	if err := finishFrame(f, cc.maxFrame); err != nil {
		putBuf(f)
		return nil, &Error{Code: CodeRequestTooLarge, Message: fmt.Sprintf("%s request: %v", method, err)}
	}
	return f, nil
}

// readLoop routes answers to their calls until the connection fails.
func (cc *clientConn) readLoop() {
	for {
		f := getBuf()
		if err := readFrame(cc.br, cc.maxFrame, f); err != nil {
			putBuf(f)
			cc.fail(err)
			return
		}
		h, off, err := parseHeader(f.b)
		if err != nil {
			putBuf(f)
			cc.fail(err)
			return
		}
		if h.kind == kindPart {
			if err := cc.part(h, f); err != nil {
				cc.fail(err)
				return
			}
			continue
		}
		if h.seq == 0 {
			// A connection-level error: the server is closing the
			// connection and says why (a limit, say).
			putBuf(f)
			if h.err != nil {
				cc.fail(&connError{msg: "rpc: " + cc.addr + " closed the connection", cause: h.err})
				return
			}
			continue
		}
		cc.mu.Lock()
		cl := cc.pending[h.seq]
		if cl != nil {
			delete(cc.pending, h.seq)
		}
		cc.mu.Unlock()
		if cl == nil { // the caller gave up
			putBuf(f)
			continue
		}
		cl.f, cl.off, cl.rerr = f, off, h.err
		cl.done <- struct{}{}
	}
}

// fail breaks the connection: every pending call and every later call on it
// fails with an error wrapping ErrConnClosed. Only the first cause counts.
func (cc *clientConn) fail(cause error) {
	err := cause
	if !errors.Is(err, ErrConnClosed) {
		err = &connError{msg: "rpc: connection to " + cc.addr + " lost", cause: cause}
	}
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err = err
	cc.broken.Store(true)
	pending := cc.pending
	cc.pending = nil
	cc.mu.Unlock()

	cc.w.close()
	// An abortive close (RST): bytes still queued in the kernel for the
	// peer are dropped. A plain close would keep sending them, so a request
	// whose caller is told here that it failed could still reach the node
	// later, for instance when a partition heals, and run after newer
	// requests.
	if tc, ok := unwrapConn(cc.conn).(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	cc.conn.Close()
	for _, cl := range pending {
		cl.err = err
		cl.done <- struct{}{}
	}
}
