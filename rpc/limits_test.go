package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bad clients: each case pushes one limit, checks that the server holds
// no more than the limit allows and tells the caller why, and that an
// ordinary call succeeds right after.

const methodPeerOnly = "Test.PeerOnly"

type whoResp struct {
	Peer string `msgpack:"peer"`
}

func registerPeerOnly(s *Server) {
	HandlePeer(s, methodPeerOnly, func(ctx context.Context, req *echoReq) (*whoResp, error) {
		return &whoResp{Peer: CallerFrom(ctx).Peer}, nil
	})
}

// servePeers serves s's peer channel on a listener of its own, reading
// the PeerMagic byte as a node's mux does.
func servePeers(t *testing.T, s *Server, auth *PeerAuth) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServePeers(magicListener{ln}, auth)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// magicListener drops the first byte of each connection if it is
// PeerMagic, and closes the connection otherwise.
type magicListener struct{ net.Listener }

func (l magicListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil || b[0] != PeerMagic {
			c.Close()
			continue
		}
		c.SetReadDeadline(time.Time{})
		return c, nil
	}
}

func TestPeerMethodsRefusedToClients(t *testing.T) {
	t.Parallel()
	key := PeerKey([]byte("0123456789abcdef"))
	ts := startServer(t, ServerOptions{}, registerPeerOnly)
	peerAddr := servePeers(t, ts.Server, &PeerAuth{Key: key, Name: "leader"})

	// A client on the client port: refused, and the connection stays up.
	c := dialTest(t, ts.addr, ClientOptions{})
	err := c.Call(testCtx(t), methodPeerOnly, &echoReq{N: 1}, &whoResp{})
	if !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("client calling a peer method: %v, want AccessDeniedException", err)
	}
	mustEcho(t, c, 2)

	// A client that sends the peer handshake with the wrong key: the
	// handshake fails on its side, and nothing is served to it.
	_, err = Dial(testCtx(t), peerAddr, ClientOptions{Peer: &PeerAuth{Key: PeerKey([]byte("fedcba9876543210")), Name: "w1"}})
	if !errors.Is(err, ErrPeerAuth) {
		t.Fatalf("dial with a wrong key: %v, want ErrPeerAuth", err)
	}
	// Garbage instead of a handshake: closed, nothing served.
	raw := rawDial(t, peerAddr)
	garbage := append([]byte{PeerMagic}, frameBytes(t, 1, methodPeerOnly, 0, nil, &echoReq{})...)
	raw.Write(append(garbage, make([]byte, 100)...))
	expectClosed(t, raw)

	// A real peer reaches the method, under the name it authenticated.
	p := dialTest(t, peerAddr, ClientOptions{Peer: &PeerAuth{Key: key, Name: "w1"}})
	var who whoResp
	if err := p.Call(testCtx(t), methodPeerOnly, &echoReq{N: 3}, &who); err != nil {
		t.Fatalf("peer call: %v", err)
	}
	if who.Peer != "w1" {
		t.Fatalf("handler saw caller %q, want w1", who.Peer)
	}
	mustEcho(t, p, 4) // client methods too
}

// TestPeerHandshakeReplay: a recorded handshake is useless to someone who
// replays it, since the acceptor's nonce is new each time.
func TestPeerHandshakeReplay(t *testing.T) {
	t.Parallel()
	key := PeerKey([]byte("0123456789abcdef"))
	ts := startServer(t, ServerOptions{}, registerPeerOnly)
	peerAddr := servePeers(t, ts.Server, &PeerAuth{Key: key, Name: "leader"})

	// Record what a real peer sends.
	rec := &recordingConn{}
	c, err := net.Dial("tcp", peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	rec.Conn = c
	if _, err := (&PeerAuth{Key: key, Name: "w1"}).dialHandshake(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	c.Close()

	replay := rawDial(t, peerAddr)
	replay.Write(rec.sent())
	replay.Write(frameBytes(t, 1, methodPeerOnly, 0, nil, &echoReq{}))
	expectClosed(t, replay)
}

type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (r *recordingConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.buf = append(r.buf, p...)
	r.mu.Unlock()
	return r.Conn.Write(p)
}

func (r *recordingConn) sent() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf...)
}

// TestTooManyConnections: past the per-source limit a connection is told
// "too many connections" (its call fails with that ServiceException) and
// closed; silent connections are closed after FirstFrameTimeout, and then
// a new call succeeds.
func TestTooManyConnections(t *testing.T) {
	t.Parallel()
	const limit = 20
	ts := startServer(t, ServerOptions{
		Limiter:           NewConnLimiter(1000, limit, nil),
		FirstFrameTimeout: 300 * time.Millisecond,
	}, nil)
	var silent []net.Conn
	for i := 0; i < limit; i++ {
		silent = append(silent, rawDial(t, ts.addr))
	}
	waitFor(t, "the silent connections admitted", func() bool { return ts.limiter.Open() == limit })

	c, err := Dial(testCtx(t), ts.addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Call(testCtx(t), methodEcho, &echoReq{N: 1}, &echoResp{})
	if !errors.Is(err, ErrService) || !strings.Contains(err.Error(), "too many connections") {
		t.Fatalf("call over the limit: %v, want ServiceException too many connections", err)
	}
	if got := ts.limiter.Open(); got != limit {
		t.Fatalf("%d connections open, want %d", got, limit)
	}

	for _, s := range silent {
		expectClosed(t, s)
	}
	waitFor(t, "the silent connections released", func() bool { return ts.limiter.Open() == 0 })
	mustEcho(t, c, 2) // the client redials
}

// TestStalledLargeFramesBounded: connections that announce large frames
// and stall hold at most MaxReadBytes, the frame that finds no room is
// refused with a clear error after FrameTimeout, and small calls go on
// meanwhile.
func TestStalledLargeFramesBounded(t *testing.T) {
	t.Parallel()
	const frame = 1 << 20
	ts := startServer(t, ServerOptions{
		MaxFrameSize: 2 * frame,
		MaxReadBytes: 3 * (frame + lenPrefix),
		FrameTimeout: 2 * time.Second,
	}, nil)
	stall := func() net.Conn {
		c := rawDial(t, ts.addr)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], frame)
		c.Write(hdr[:])
		c.Write(make([]byte, frame/2)) // half of it, then nothing
		return c
	}
	var stalled []net.Conn
	for i := 0; i < 3; i++ {
		stalled = append(stalled, stall())
	}
	waitFor(t, "three stalled frames charged", func() bool { return ts.reads.used.Load() >= 3*frame })
	// A fourth finds no room: the server holds no more for it.
	fourth := stall()
	for i := 0; i < 5; i++ {
		mustEcho(t, dialTest(t, ts.addr, ClientOptions{}), i) // small calls are not held up
		if used := ts.reads.used.Load(); used > 3*(frame+lenPrefix) {
			t.Fatalf("server holds %d bytes of stalled frames, limit %d", used, 3*frame)
		}
	}
	// Past FrameTimeout every stalled connection is closed; the fourth
	// was told why.
	r := bufio.NewReader(fourth)
	fourth.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, _ := readAnswer(t, r, fourth)
	if h.seq != 0 || h.err == nil || h.err.Code != CodeService || !strings.Contains(h.err.Message, "busy") {
		t.Fatalf("refused frame's answer: seq %d err %v, want a connection-level ServiceException", h.seq, h.err)
	}
	for _, c := range stalled {
		expectClosed(t, c)
	}
	waitFor(t, "the read budget released", func() bool { return ts.reads.used.Load() == 0 })
	mustEcho(t, dialTest(t, ts.addr, ClientOptions{}), 9)
}

// TestUnreadAnswersBounded: a client that sends many requests with large
// answers and never reads them makes the server hold at most its
// per-connection answer budget plus what was already running; the server
// stops reading its requests, and other callers are served.
func TestUnreadAnswersBounded(t *testing.T) {
	t.Parallel()
	const answer = 256 << 10
	const inflight = 4
	const connLimit = 1 << 20
	ts := startServer(t, ServerOptions{
		MaxInflight:       inflight,
		MaxConnWriteBytes: connLimit,
		MaxWriteBytes:     64 << 20,
		FrameTimeout:      2 * time.Second,
	}, func(s *Server) {
		Handle(s, "Test.Big", func(ctx context.Context, req *echoReq) (*echoResp, error) {
			return &echoResp{N: req.N, Payload: make([]byte, answer)}, nil
		})
	})
	greedy := rawDial(t, ts.addr)
	if tc, ok := greedy.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 10) // read nothing, buffer little
	}
	go func() {
		for i := 1; i <= 200; i++ {
			if _, err := greedy.Write(frameBytes(t, uint64(i), "Test.Big", 0, nil, &echoReq{N: i})); err != nil {
				return
			}
		}
	}()
	bound := int64(connLimit + (inflight+1)*(answer+1024))
	max := int64(0)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if used := ts.writes.used.Load(); used > max {
			max = used
		}
		time.Sleep(5 * time.Millisecond)
	}
	if max > bound {
		t.Fatalf("server held %d bytes of unread answers, bound %d", max, bound)
	}
	if max < connLimit/2 {
		t.Fatalf("server held only %d bytes: the test did not fill the budget", max)
	}
	mustEcho(t, dialTest(t, ts.addr, ClientOptions{}), 1)
	// The writer gives up on the greedy connection after FrameTimeout, and
	// what it held is freed.
	waitFor(t, "the greedy connection closed by the server", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.conns) == 1 // the ordinary caller's
	})
	waitFor(t, "the answer budget released", func() bool { return ts.writes.used.Load() == 0 })
}

func TestBudget(t *testing.T) {
	b := newBudget(100)
	if !b.tryTake(60) || !b.tryTake(40) || b.tryTake(1) {
		t.Fatal("budget of 100: 60 and 40 fit, 1 more does not")
	}
	b.give(100)
	if !b.tryTake(500) {
		t.Fatal("an empty budget admits one item larger than the limit")
	}
	done := make(chan error, 1)
	other := newBudget(1000)
	go func() { done <- takeBoth(context.Background(), b, other, 10, time.Now().Add(5*time.Second)) }()
	select {
	case err := <-done:
		t.Fatalf("took from a full budget: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	b.give(500)
	if err := <-done; err != nil {
		t.Fatalf("waiting taker after give: %v", err)
	}
	if b.used.Load() != 10 || other.used.Load() != 10 {
		t.Fatalf("used %d and %d, want 10 and 10", b.used.Load(), other.used.Load())
	}
	full := newBudget(5)
	full.tryTake(5)
	if err := takeBoth(context.Background(), b, full, 90, time.Now().Add(10*time.Millisecond)); !errors.Is(err, errBudgetTimeout) {
		t.Fatalf("take past the second budget: %v", err)
	}
	if b.used.Load() != 10 {
		t.Fatalf("a failed takeBoth kept %d bytes of the first budget", b.used.Load()-10)
	}
}

func FuzzPeerHandshake(f *testing.F) {
	key := PeerKey([]byte("0123456789abcdef"))
	f.Add([]byte{peerVersion})
	f.Add(append(append([]byte{peerVersion}, make([]byte, peerNonceLen)...), 2, 'w', '1'))
	f.Add(append(append(append([]byte{peerVersion}, make([]byte, peerNonceLen)...), 255), make([]byte, 300)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &scriptConn{r: bytes.NewReader(in)}
		name, err := (&PeerAuth{Key: key, Name: "leader"}).acceptHandshake(conn)
		if err == nil {
			t.Fatalf("random bytes passed the handshake as %q", name)
		}
		if conn.read > 1+peerNonceLen+1+maxPeerNameLen+peerMACLen {
			t.Fatalf("the handshake read %d bytes", conn.read)
		}
	})
}

// scriptConn reads a script and discards what is written to it.
type scriptConn struct {
	net.Conn
	r    *bytes.Reader
	read int
}

func (c *scriptConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}
func (c *scriptConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *scriptConn) SetDeadline(time.Time) error { return nil }
func (c *scriptConn) RemoteAddr() net.Addr        { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestGreedyReaderDoesNotStallOthers: a client that does not read its
// answers pushes the server past its answer budget; it gets no more
// requests read, but a client that reads its answers is served as usual.
func TestGreedyReaderDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	const answer = 256 << 10
	ts := startServer(t, ServerOptions{
		MaxInflight:       4,
		MaxConnWriteBytes: 16 << 20,
		MaxWriteBytes:     1 << 20,
		FrameTimeout:      3 * time.Second,
	}, func(s *Server) {
		Handle(s, "Test.Big", func(ctx context.Context, req *echoReq) (*echoResp, error) {
			return &echoResp{N: req.N, Payload: make([]byte, answer)}, nil
		})
	})
	greedy := rawDial(t, ts.addr)
	if tc, ok := greedy.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 10)
	}
	go func() {
		for i := 1; i <= 200; i++ {
			if _, err := greedy.Write(frameBytes(t, uint64(i), "Test.Big", 0, nil, &echoReq{N: i})); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the server over its answer budget", func() bool { return ts.writes.over() })
	polite := dialTest(t, ts.addr, ClientOptions{})
	for i := 0; i < 20; i++ {
		var resp echoResp
		if err := polite.Call(testCtx(t), "Test.Big", &echoReq{N: i}, &resp); err != nil || resp.N != i || len(resp.Payload) != answer {
			t.Fatalf("polite call %d while the greedy one holds the budget: %v", i, err)
		}
	}
	if !ts.writes.over() {
		t.Log("the greedy connection's answers drained meanwhile; the polite calls still had to pass")
	}
}
