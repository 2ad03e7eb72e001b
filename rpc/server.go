package rpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"nimbus/internal/rawio"
)

const (
	defaultIdleTimeout  = 2 * time.Minute
	defaultFrameTimeout = 30 * time.Second
	readBufferSize      = 32 << 10
	// workerIdle is how long an idle handler goroutine waits for more work.
	workerIdle = 10 * time.Second
	// smallFrame is the largest request frame not charged to the read
	// budgets.
	smallFrame = 64 << 10
)

var errIdle = errors.New("rpc: idle timeout")

// ServerOptions configures a Server. The zero value is usable.
type ServerOptions struct {
	// MaxFrameSize bounds a frame's payload in both directions; 0 means
	// DefaultMaxFrameSize. A request announcing more is refused without
	// allocating it and its connection is closed. A response that would be
	// larger is replaced by a ServiceException.
	MaxFrameSize int
	// IdleTimeout closes a connection with no request in flight and no bytes
	// in either direction for this long; 0 means 5 minutes.
	IdleTimeout time.Duration
	// FrameTimeout is how long the rest of a frame may take once its first
	// byte has arrived, and how long a batch of responses may take to write;
	// 0 means 30 seconds.
	FrameTimeout time.Duration
	// FirstFrameTimeout is how long a new connection may take to send the
	// first byte of its first frame; 0 means 10 seconds.
	FirstFrameTimeout time.Duration
	// Limiter admits connections (how many in all and from one address);
	// nil means one of the server's own with the defaults. Admitted says
	// that the listeners given to Serve and ServePeers hand over
	// connections Limiter already admitted (a mux in front admits them).
	Limiter  *ConnLimiter
	Admitted bool
	// MaxInflight caps the requests one client connection may have running;
	// past it the server reads no more of that connection until one
	// finishes, which pushes back through TCP. 0 means 256. Peer
	// connections, which carry a whole node's calls, may have 4096.
	MaxInflight int
	// MaxReadBytes bounds the bytes of request frames over 64 KiB being read
	// or read and not yet decoded, for the whole server; 0 means 256 MiB
	// (at least MaxFrameSize). Such a frame waits for room up to half of
	// FrameTimeout, and its connection is then closed with a
	// ServiceException. One connection may hold at most MaxFrameSize of it.
	// Smaller frames are bounded by the connection count: at most
	// MaxConns x 64 KiB are read at once.
	MaxReadBytes int64
	// MaxWriteBytes and MaxConnWriteBytes bound the bytes of answers
	// encoded and not yet written, for the server and per connection; 0
	// means 256 MiB and 16 MiB. Past its own limit a connection gets no new
	// request read until its answers drain; past the server's, neither does
	// a client connection holding more than 256 KiB of them.
	MaxWriteBytes     int64
	MaxConnWriteBytes int64
	// Observe, if set, is told every answered request of a registered
	// method: its method, its error (nil on success) and how long the
	// handler took. It runs on the handler's goroutine: keep it cheap.
	Observe func(method string, err error, took time.Duration)
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger
}

// handler is a registered method. peerOnly methods are served only on
// connections that passed the peer handshake (ServePeers).
type handler struct {
	fn       handlerFunc
	peerOnly bool
	stream   bool // registered with HandleStream: its context has a *Stream
}

// handlerFunc decodes the body (f.b[off:]), releases f, and runs the handler.
type handlerFunc func(ctx context.Context, f *frameBuf, off int) (any, error)

// Server serves registered handlers on any number of listeners.
//
// handlers is copy-on-write: Handle stores a new map, readers load it without
// a lock. mu guards listeners, conns and closed.
type Server struct {
	opts     ServerOptions
	log      *slog.Logger
	handlers atomic.Pointer[map[string]handler]
	handleMu sync.Mutex // serialises Handle
	work     chan job   // unbuffered: idle workers receive here
	limiter  *ConnLimiter
	reads    *budget // request bytes read, not yet decoded
	writes   *budget // answer bytes encoded, not yet written
	warn     *rateLog

	ctx    context.Context // cancelled by Close; parent of every handler context
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	wg        sync.WaitGroup // connection goroutines
}

// NewServer returns a Server with no handlers.
func NewServer(opts ServerOptions) *Server {
	if opts.MaxFrameSize <= 0 {
		opts.MaxFrameSize = DefaultMaxFrameSize
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = defaultIdleTimeout
	}
	if opts.FrameTimeout <= 0 {
		opts.FrameTimeout = defaultFrameTimeout
	}
	if opts.FirstFrameTimeout <= 0 {
		opts.FirstFrameTimeout = defaultFirstFrameTimeout
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = DefaultMaxInflight
	}
	if opts.MaxReadBytes <= 0 {
		opts.MaxReadBytes = DefaultMaxReadBytes
	}
	opts.MaxReadBytes = max(opts.MaxReadBytes, int64(opts.MaxFrameSize))
	if opts.MaxWriteBytes <= 0 {
		opts.MaxWriteBytes = DefaultMaxWriteBytes
	}
	if opts.MaxConnWriteBytes <= 0 {
		opts.MaxConnWriteBytes = DefaultMaxConnWriteBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lim := opts.Limiter
	if lim == nil {
		lim = NewConnLimiter(0, 0, log)
	}
	s := &Server{
		opts:      opts,
		log:       log,
		limiter:   lim,
		reads:     newBudget(opts.MaxReadBytes),
		writes:    newBudget(opts.MaxWriteBytes),
		warn:      newRateLog(log),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*serverConn]struct{}),
		work:      make(chan job),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	empty := map[string]handler{}
	s.handlers.Store(&empty)
	return s
}

// Handle registers fn for method, replacing any earlier handler. Requests
// are msgpack-decoded into a new Req; a body that does not decode is answered
// with InvalidParameterValueException and the connection stays up. An error
// returned by fn is sent as AsError(err), so a *Error anywhere in its chain
// keeps its code and anything else becomes a ServiceException. A panic in fn
// is recovered, logged and answered as a ServiceException.
//
// fn runs in its own goroutine with a context that carries the caller's
// deadline and is cancelled when the connection or the server closes.
func Handle[Req, Resp any](s *Server, method string, fn func(ctx context.Context, req *Req) (*Resp, error)) {
	handle(s, method, handler{}, fn)
}

// HandlePeer registers fn for method as a node-to-node method: it is served
// only on peer connections (ServePeers); a client calling it gets
// AccessDeniedException. CallerFrom(ctx).Peer names the calling node.
func HandlePeer[Req, Resp any](s *Server, method string, fn func(ctx context.Context, req *Req) (*Resp, error)) {
	handle(s, method, handler{peerOnly: true}, fn)
}

func handle[Req, Resp any](s *Server, method string, hd handler, fn func(ctx context.Context, req *Req) (*Resp, error)) {
	h := func(ctx context.Context, f *frameBuf, off int) (any, error) {
		req := new(Req)
		err := decodeBody(f.b[off:], req)
		putBuf(f)
		if err != nil {
			return nil, Errorf(CodeInvalidParameterValue, "rpc: decode %s request: %v", method, err)
		}
		start := time.Now()
		resp, err := fn(ctx, req)
		if obs := s.opts.Observe; obs != nil {
			obs(method, err, time.Since(start))
		}
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
	s.handleMu.Lock()
	defer s.handleMu.Unlock()
	old := *s.handlers.Load()
	m := make(map[string]handler, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	hd.fn = h
	m[method] = hd
	s.handlers.Store(&m)
}

// Serve accepts client connections on ln until Close, then returns nil. It
// returns the listener's error if ln fails for another reason. ln is closed
// when Serve returns. Clients reach every method but the peer-only ones.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, nil) }

// ServePeers accepts peer connections on ln: each must pass the peer
// handshake with auth (its PeerMagic byte already read by whoever routed
// it here) before any frame is read, and then reaches every method.
func (s *Server) ServePeers(ln net.Listener, auth *PeerAuth) error {
	if err := auth.valid(); err != nil {
		ln.Close()
		return err
	}
	return s.serve(ln, auth)
}

func (s *Server) serve(ln net.Listener, auth *PeerAuth) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors, an aborted handshake: wait and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("rpc: accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		conn = rawio.Wrap(conn) // reads and writes the scheduler need not see
		if !s.opts.Admitted {
			if conn = s.limiter.Admit(conn); conn == nil {
				continue // refused, and told why
			}
		}
		sc := s.newConn(conn, auth)
		if sc == nil {
			conn.Close()
			return nil
		}
		go sc.serve()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops every listener, closes every connection and cancels every
// handler context. It waits for the connection goroutines, not for handlers
// (their answers are dropped). Calls on a closed Server's connections fail
// on the client with ErrConnClosed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for sc := range s.conns {
		sc.shutdown()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// serverConn is one accepted connection: a reader goroutine (serve) that
// parses frames and hands each request to a worker goroutine of its own
// (dispatch), and a connWriter that sends the answers in whatever order they
// finish. inflight counts requests read and not yet answered; sem bounds it.
type serverConn struct {
	s      *Server
	conn   net.Conn
	br     *bufio.Reader
	w      *connWriter
	auth   *PeerAuth       // set on peer connections, which must pass the handshake first
	peer   string          // the peer's authenticated name, once it has
	ctx    context.Context // cancelled when the connection closes; carries the Caller
	cancel context.CancelFunc
	sem    chan struct{} // one token per running handler

	reads  *budget // request bytes this connection holds (at most MaxFrameSize)
	writes *budget // answer bytes queued on this connection

	inflight  atomic.Int32
	lastDone  atomic.Int64 // when a handler last finished, ns since w.epoch
	closeOnce sync.Once

	streamMu sync.Mutex
	streams  map[uint64]*Stream // streamed answers under way, by seq
}

// newConn registers a connection, or returns nil if the server is closed.
func (s *Server) newConn(conn net.Conn, auth *PeerAuth) *serverConn {
	inflight := s.opts.MaxInflight
	if auth != nil {
		inflight = peerMaxInflight
	}
	sc := &serverConn{
		s:      s,
		conn:   conn,
		br:     bufio.NewReaderSize(conn, readBufferSize),
		w:      newConnWriter(conn, s.opts.FrameTimeout, true),
		auth:   auth,
		sem:    make(chan struct{}, inflight),
		reads:  newBudget(int64(s.opts.MaxFrameSize)),
		writes: newBudget(s.opts.MaxConnWriteBytes),
	}
	sc.w.onWritten = sc.written
	sc.ctx, sc.cancel = context.WithCancel(s.ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		sc.cancel()
		return nil
	}
	s.conns[sc] = struct{}{}
	s.wg.Add(2)
	return sc
}

// shutdown closes the connection, then cancels its handlers (in that order,
// so that no answer to a cancelled handler reaches the peer). Idempotent.
func (sc *serverConn) shutdown() {
	sc.closeOnce.Do(func() {
		sc.w.close()
		sc.conn.Close()
		sc.cancel()
	})
}

func (sc *serverConn) serve() {
	s := sc.s
	log := s.log.With("remote", sc.conn.RemoteAddr().String())
	go func() {
		defer s.wg.Done()
		err := sc.w.loop()
		if errors.Is(err, errWriterLast) {
			return // closeWithError closes the connection
		}
		if err != nil && !errors.Is(err, errWriterClosed) {
			log.Debug("rpc: write failed", "err", err)
		}
		sc.shutdown()
	}()
	defer func() {
		sc.shutdown()
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
		s.wg.Done()
	}()
	log.Debug("rpc: connection opened")
	if sc.auth != nil {
		name, err := sc.auth.acceptHandshake(sc.conn)
		if err != nil {
			s.warn.warn("peer-auth", "rpc: peer handshake failed", "remote", sc.conn.RemoteAddr().String(), "err", err)
			return
		}
		sc.peer = name
		log = log.With("peer", name)
	}
	sc.ctx = WithCaller(sc.ctx, Caller{Peer: sc.peer})

	first := true
	for {
		if err := sc.awaitWriteRoom(); err != nil {
			sc.logClose(log, err)
			return
		}
		idle := s.opts.IdleTimeout
		if first {
			idle = min(idle, s.opts.FirstFrameTimeout)
		}
		if err := sc.awaitFrame(idle); err != nil {
			sc.logClose(log, err)
			return
		}
		first = false
		frameStart := time.Now()
		if !frameBuffered(sc.br) {
			sc.conn.SetReadDeadline(frameStart.Add(s.opts.FrameTimeout))
		}
		n, err := peekFrameLen(sc.br, s.opts.MaxFrameSize)
		if err != nil {
			sc.logClose(log, err)
			return
		}
		f := getBuf()
		if n > smallFrame {
			// Large frames share the read budgets; small ones are bounded
			// by the connection count (one frame being read per
			// connection), so an upload stalled by its sender never holds
			// up an ordinary call.
			// It waits half of FrameTimeout for room: frames stalled by
			// their senders are evicted at FrameTimeout, so only a budget
			// kept full by a stream of new large frames refuses one.
			if err := takeBoth(sc.ctx, sc.reads, s.reads, n, frameStart.Add(s.opts.FrameTimeout/2)); err != nil {
				putBuf(f)
				if errors.Is(err, errBudgetTimeout) {
					e := Errorf(CodeService, "server busy: too many request bytes in flight (%d MiB); retry later", s.opts.MaxReadBytes>>20)
					s.warn.warn("read-budget", "rpc: closing connection over the read budget", "remote", sc.conn.RemoteAddr().String())
					sc.closeWithError(e)
				}
				return
			}
			f.owner, f.held = sc, n
		}
		if err := readFrame(sc.br, s.opts.MaxFrameSize, f); err != nil {
			putBuf(f)
			sc.logClose(log, err)
			return
		}
		h, off, err := parseHeader(f.b)
		if err != nil {
			putBuf(f)
			sc.logClose(log, err)
			return
		}
		if h.kind != 0 {
			// A caller's credit or cancel for one of its streams.
			sc.control(h, f.b[off:])
			putBuf(f)
			continue
		}
		hd, ok := (*s.handlers.Load())[string(h.method)]
		if !ok {
			e := Errorf(CodeInvalidParameterValue, "unknown method %s", h.method)
			putBuf(f)
			sc.reply(h.seq, nil, e)
			continue
		}
		if hd.peerOnly && sc.peer == "" {
			e := Errorf(CodeAccessDenied, "%s is a method between the nodes of a cluster: clients cannot call it", h.method)
			putBuf(f)
			sc.reply(h.seq, nil, e)
			continue
		}
		fn, stream := hd.fn, hd.stream
		if h.deadlineMs != 0 {
			if late := time.Now().UnixMilli() - int64(h.deadlineMs); late > 0 {
				// The caller has given up: running it now could undo what
				// happened since (a write delayed by a partition).
				e := Errorf(CodeService, "request %s arrived %d ms after its deadline; not run", h.method, late)
				putBuf(f)
				sc.reply(h.seq, nil, e)
				continue
			}
		}
		select {
		case sc.sem <- struct{}{}:
		case <-sc.ctx.Done():
			putBuf(f)
			return
		}
		sc.inflight.Add(1)
		s.dispatch(job{sc: sc, fn: fn, seq: h.seq, timeoutMs: h.timeoutMs, f: f, off: off, stream: stream})
	}
}

// job is one request for a worker.
type job struct {
	sc        *serverConn
	fn        handlerFunc
	seq       uint64
	timeoutMs uint64
	f         *frameBuf
	off       int
	stream    bool
}

// dispatch runs j on an idle worker goroutine, or on a new one if none is
// idle: every request runs concurrently with every other. Workers are reused
// because a fresh goroutine grows its stack for every request (msgpack and
// handlers run deep), which costs more than the rest of the dispatch.
func (s *Server) dispatch(j job) {
	select {
	case s.work <- j:
	default:
		go s.worker(j)
	}
}

// worker runs j, then jobs handed to it, until it has been idle for a whole
// workerIdle period or the server closes.
func (s *Server) worker(j job) {
	j.sc.handle(j)
	tick := time.NewTicker(workerIdle)
	defer tick.Stop()
	busy := false
	for {
		select {
		case j = <-s.work:
			j.sc.handle(j)
			busy = true
		case <-tick.C:
			if !busy {
				return
			}
			busy = false
		case <-s.ctx.Done():
			return
		}
	}
}

func (sc *serverConn) logClose(log *slog.Logger, err error) {
	switch {
	case sc.ctx.Err() != nil, errors.Is(err, net.ErrClosed):
		log.Debug("rpc: connection closed")
	case errors.Is(err, errIdle):
		log.Debug("rpc: closing idle connection")
	case isEOF(err), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		// A client that is done closes (the Go client resets on purpose).
		log.Debug("rpc: connection closed by peer", "err", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		sc.s.warn.warn("frame-timeout", "rpc: closing connection: a frame took too long", "remote", sc.conn.RemoteAddr().String())
	default:
		sc.s.warn.warn("protocol", "rpc: closing connection", "remote", sc.conn.RemoteAddr().String(), "err", err)
	}
}

// closeWithError sends a connection-level error (sequence 0: every call
// pending on the connection fails with it) and closes the connection once
// it is written, or after a second.
func (sc *serverConn) closeWithError(e *Error) {
	f := getBuf()
	startFrame(f, 0, "", 0, e)
	f.b = append(f.b, 0xc0)
	finishFrame(f, sc.s.opts.MaxFrameSize)
	sc.w.sendLast(f)
	select {
	case <-sc.w.stop:
	case <-time.After(time.Second):
	}
	// Read and drop what the caller still sends for a moment, so that
	// closing does not reset the connection before the error is read.
	sc.conn.SetReadDeadline(time.Now().Add(time.Second))
	var buf [4096]byte
	for i := 0; i < 256; i++ {
		if _, err := sc.br.Read(buf[:]); err != nil {
			break
		}
	}
}

// written is the writer's report of answer bytes written or dropped.
func (sc *serverConn) written(n int64) {
	sc.writes.give(n)
	sc.s.writes.give(n)
}

// fairShare is how many unwritten answer bytes a client connection may
// have and still be read while the server as a whole is over its answer
// budget.
const fairShare = 256 << 10

// roomToRead reports whether the reader may take another request: its own
// unwritten answers are under their limit, and, when the server's are over
// theirs, it holds no more than a fair share of them. A connection that
// reads its answers is never held up by one that does not; peer
// connections answer only to their own limit.
func (sc *serverConn) roomToRead() bool {
	if sc.writes.over() {
		return false
	}
	return sc.peer != "" || !sc.s.writes.over() || sc.writes.used.Load() <= fairShare
}

// awaitWriteRoom holds the reader until roomToRead: a caller that does not
// read its answers gets no more requests run.
func (sc *serverConn) awaitWriteRoom() error {
	if sc.roomToRead() {
		return nil
	}
	sc.writes.waiters.Add(1)
	sc.s.writes.waiters.Add(1)
	defer sc.writes.waiters.Add(-1)
	defer sc.s.writes.waiters.Add(-1)
	for {
		ca, cb := sc.writes.changed(), sc.s.writes.changed()
		if sc.roomToRead() {
			return nil
		}
		select {
		case <-ca:
		case <-cb:
		case <-sc.w.stop:
			return net.ErrClosed
		case <-sc.ctx.Done():
			return sc.ctx.Err()
		}
	}
}

// awaitFrame blocks until the next frame's first byte is readable. It fails
// with errIdle once the connection has had no request in flight and no bytes
// either way for idle.
func (sc *serverConn) awaitFrame(idle time.Duration) error {
	if sc.br.Buffered() > 0 {
		return nil
	}
	deadline := time.Now().Add(idle)
	for {
		sc.conn.SetReadDeadline(deadline)
		_, err := sc.br.Peek(1)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		now := time.Now()
		if sc.inflight.Load() > 0 {
			deadline = now.Add(idle)
			continue
		}
		last := sc.w.lastWriteTime()
		if done := sc.w.epoch.Add(time.Duration(sc.lastDone.Load())); done.After(last) {
			last = done
		}
		if last = last.Add(idle); last.After(now) {
			deadline = last
			continue
		}
		return errIdle
	}
}

func (sc *serverConn) handle(j job) {
	ctx := sc.ctx
	var cancel context.CancelFunc
	if j.timeoutMs > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(j.timeoutMs)*time.Millisecond)
	}
	var st *Stream
	if j.stream {
		ctx, st = sc.openStream(ctx, j.seq)
	}
	resp, err := sc.call(ctx, j.fn, j.f, j.off)
	if st != nil {
		sc.closeStream(st)
	}
	if cancel != nil {
		cancel()
	}
	sc.reply(j.seq, resp, err)
	// Before the decrement: awaitFrame, seeing inflight reach 0, must also
	// see that this answer is recent (its write may not have happened yet).
	sc.lastDone.Store(int64(time.Since(sc.w.epoch)))
	sc.inflight.Add(-1)
	if st == nil || !st.released {
		<-sc.sem
	}
}

func (sc *serverConn) call(ctx context.Context, fn handlerFunc, f *frameBuf, off int) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			sc.s.log.Error("rpc: handler panicked", "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, Errorf(CodeService, "rpc: internal error")
		}
	}()
	return fn(ctx, f, off)
}

// reply encodes and queues the answer to request seq.
func (sc *serverConn) reply(seq uint64, resp any, err error) {
	f := getBuf()
	if err == nil {
		startFrame(f, seq, "", 0, nil)
		err = encodeResponse(f, resp)
		if err != nil {
			err = Errorf(CodeService, "rpc: encode response: %v", err)
		} else if err = finishFrame(f, sc.s.opts.MaxFrameSize); err != nil {
			err = Errorf(CodeService, "rpc: response too large: %v", err)
		}
	}
	if err != nil {
		startFrame(f, seq, "", 0, AsError(err))
		f.b = append(f.b, 0xc0) // nil body
		if ferr := finishFrame(f, sc.s.opts.MaxFrameSize); ferr != nil {
			// Only an error message of ~MaxFrameSize gets here.
			startFrame(f, seq, "", 0, Errorf(CodeService, "rpc: error too large"))
			f.b = append(f.b, 0xc0)
			finishFrame(f, sc.s.opts.MaxFrameSize)
		}
	}
	n := int64(len(f.b))
	sc.writes.add(n)
	sc.s.writes.add(n)
	sc.w.send(f) // fails only once the connection is closing: drop the answer (the writer counts it)
}

// encodeResponse is encodeBody for a handler's response, whose type the
// handler chose: a panic in the encoder becomes an error.
func encodeResponse(f *frameBuf, resp any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return encodeBody(f, resp)
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
