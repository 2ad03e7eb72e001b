package rpc

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"nimbus/internal/rawio"
)

// Limits on what untrusted callers may make a server hold. Every one of
// them is checked before the memory or the file descriptor is spent, and a
// caller over a limit is refused with a ServiceException that says which
// limit, never left to grow the server.
const (
	DefaultMaxConns          = 4096
	DefaultMaxConnsPerSource = 256
	DefaultMaxInflight       = 256       // per client connection
	peerMaxInflight          = 4096      // per peer connection: one carries a whole node's calls
	DefaultMaxReadBytes      = 256 << 20 // request frames read and not yet decoded, server-wide
	DefaultMaxWriteBytes     = 256 << 20 // answers encoded and not yet written, server-wide
	DefaultMaxConnWriteBytes = 16 << 20  // the same, per connection
	defaultFirstFrameTimeout = 10 * time.Second
	maxRefusing              = 64 // connections being told why they are refused, at once
)

// ConnLimiter admits accepted connections: at most Max in all and
// PerSource from one IP address. A node whose port is split by a mux
// admits there, before the first byte is read, and the rpc server serves
// what it admitted. It is safe for concurrent use.
type ConnLimiter struct {
	max, perSource int
	log            *rateLog

	mu       sync.Mutex
	total    int
	bySource map[string]int
	refusing atomic.Int32
	refused  atomic.Uint64
}

// NewConnLimiter returns a limiter; zero values take the defaults. log may
// be nil.
func NewConnLimiter(max, perSource int, log *slog.Logger) *ConnLimiter {
	if max <= 0 {
		max = DefaultMaxConns
	}
	if perSource <= 0 {
		perSource = DefaultMaxConnsPerSource
	}
	return &ConnLimiter{max: max, perSource: perSource, log: newRateLog(log), bySource: map[string]int{}}
}

// Open returns the number of connections admitted and not yet closed.
func (l *ConnLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Admit counts c, or refuses it: then it tells the caller why (a
// connection-level ServiceException frame) and closes it, and Admit
// returns nil. An admitted connection is released when it is closed.
func (l *ConnLimiter) Admit(c net.Conn) net.Conn {
	src := sourceOf(c.RemoteAddr())
	l.mu.Lock()
	var e *Error
	switch {
	case l.total >= l.max:
		e = Errorf(CodeService, "too many connections: the node serves at most %d; retry later", l.max)
	case l.bySource[src] >= l.perSource:
		e = Errorf(CodeService, "too many connections from %s: at most %d; retry later", src, l.perSource)
	default:
		l.total++
		l.bySource[src]++
	}
	l.mu.Unlock()
	if e != nil {
		l.refused.Add(1)
		l.log.warn("refused", "rpc: connection refused", "remote", src, "err", e.Message)
		l.refuse(c, e)
		return nil
	}
	return &limitedConn{Conn: c, l: l, src: src}
}

// Refused returns how many connections it has refused.
func (l *ConnLimiter) Refused() uint64 { return l.refused.Load() }

func (l *ConnLimiter) release(src string) {
	l.mu.Lock()
	l.total--
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
	l.mu.Unlock()
}

// refuse tells c why it is refused and closes it, without blocking the
// caller. Few refusals run at once; past that c is closed at once.
func (l *ConnLimiter) refuse(c net.Conn, e *Error) {
	if l.refusing.Add(1) > maxRefusing {
		l.refusing.Add(-1)
		abort(c)
		return
	}
	go func() {
		defer l.refusing.Add(-1)
		closeWithError(c, e)
	}()
}

// closeWithError writes a connection-level error frame (sequence 0) to c,
// then closes it gracefully: the write side first, then whatever the caller
// was still sending is read and dropped for a moment, so the error reaches
// it rather than a reset.
func closeWithError(c net.Conn, e *Error) {
	f := getBuf()
	startFrame(f, 0, "", 0, e)
	f.b = append(f.b, 0xc0)
	if finishFrame(f, DefaultMaxFrameSize) == nil {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(f.b)
	}
	putBuf(f)
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := unwrapConn(c).(closeWriter); ok {
		cw.CloseWrite()
		c.SetReadDeadline(time.Now().Add(time.Second))
		var buf [4096]byte
		for i := 0; i < 256; i++ { // at most 1 MiB
			if _, err := c.Read(buf[:]); err != nil {
				break
			}
		}
	}
	c.Close()
}

// abort closes c with a reset, dropping whatever is queued.
func abort(c net.Conn) {
	if tc, ok := unwrapConn(c).(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// unwrapConn returns the connection under wrappers that expose NetConn.
func unwrapConn(c net.Conn) net.Conn {
	for i := 0; i < 8; i++ {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = u.NetConn()
	}
	return c
}

func sourceOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// limitedConn is an admitted connection; closing it frees its place.
type limitedConn struct {
	net.Conn
	l    *ConnLimiter
	src  string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src) })
	return err
}

// NetConn returns the connection under the limiter's wrapper.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }

// WriteBuffers passes a writev through to the connection.
func (c *limitedConn) WriteBuffers(bufs [][]byte) (int64, error) {
	return rawio.WriteBuffers(c.Conn, bufs)
}

// budget is a count of bytes with a limit that takers may wait on. give
// wakes every waiter; each then tries again. It is safe for concurrent use.
type budget struct {
	limit   int64
	used    atomic.Int64
	waiters atomic.Int32
	mu      sync.Mutex
	ch      chan struct{} // closed and replaced by give while waiters wait
}

func newBudget(limit int64) *budget { return &budget{limit: limit, ch: make(chan struct{})} }

// tryTake takes n if it fits under the limit. A taker that finds the budget
// empty always gets it, so one item larger than the limit still passes.
func (b *budget) tryTake(n int64) bool {
	for {
		u := b.used.Load()
		if u > 0 && u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// add counts n without checking the limit (bytes already spent).
func (b *budget) add(n int64) { b.used.Add(n) }

// over reports whether the budget is past its limit.
func (b *budget) over() bool { return b.used.Load() > b.limit }

func (b *budget) give(n int64) {
	if n == 0 {
		return
	}
	b.used.Add(-n)
	if b.waiters.Load() > 0 {
		b.mu.Lock()
		close(b.ch)
		b.ch = make(chan struct{})
		b.mu.Unlock()
	}
}

// changed returns a channel closed at the next give. Callers register with
// waiters first, then check their condition, then wait on it.
func (b *budget) changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

var errBudgetTimeout = errors.New("rpc: budget wait timed out")

// takeBoth takes n from a and then b, waiting until both fit, ctx ends or
// the deadline passes.
func takeBoth(ctx context.Context, a, b *budget, n int64, deadline time.Time) error {
	if a.tryTake(n) {
		if b.tryTake(n) {
			return nil
		}
		a.give(n)
	}
	a.waiters.Add(1)
	b.waiters.Add(1)
	defer a.waiters.Add(-1)
	defer b.waiters.Add(-1)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		ca, cb := a.changed(), b.changed()
		if a.tryTake(n) {
			if b.tryTake(n) {
				return nil
			}
			a.give(n)
		}
		select {
		case <-ca:
		case <-cb:
		case <-t.C:
			return errBudgetTimeout
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// rateLog logs a warning of one kind at most once a minute, with the count
// of the ones it held back.
type rateLog struct {
	log *slog.Logger
	mu  sync.Mutex
	by  map[string]*rateEntry
}

type rateEntry struct {
	last       time.Time
	suppressed int
}

func newRateLog(log *slog.Logger) *rateLog {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &rateLog{log: log, by: map[string]*rateEntry{}}
}

func (r *rateLog) warn(kind, msg string, args ...any) {
	now := time.Now()
	r.mu.Lock()
	e := r.by[kind]
	if e == nil {
		e = &rateEntry{}
		r.by[kind] = e
	}
	if !e.last.IsZero() && now.Sub(e.last) < time.Minute {
		e.suppressed++
		r.mu.Unlock()
		return
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_last_minute", n)
	}
	r.log.Warn(msg, args...)
}
