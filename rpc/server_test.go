package rpc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const methodEcho = "Test.Echo"

type echoReq struct {
	N       int    `msgpack:"n"`
	DelayMs int    `msgpack:"delay_ms,omitempty"`
	Payload []byte `msgpack:"payload,omitempty"`
}

type echoResp struct {
	N       int    `msgpack:"n"`
	Payload []byte `msgpack:"payload,omitempty"`
}

func echo(ctx context.Context, req *echoReq) (*echoResp, error) {
	if req.DelayMs > 0 {
		select {
		case <-time.After(time.Duration(req.DelayMs) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &echoResp{N: req.N, Payload: req.Payload}, nil
}

// testLogWriter routes server logs through t until the test ends.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

type testServer struct {
	*Server
	addr    string
	accepts atomic.Int32
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startServer serves Test.Echo plus whatever register adds on 127.0.0.1:0,
// and closes the server when the test ends.
func startServer(t testing.TB, opts ServerOptions, register func(s *Server)) *testServer {
	t.Helper()
	lw := &testLogWriter{t: t}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := NewServer(opts)
	Handle(s, methodEcho, echo)
	if register != nil {
		register(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, addr: ln.Addr().String()}
	served := make(chan error, 1)
	go func() { served <- s.Serve(countingListener{ln, &ts.accepts}) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v after Close", err)
		}
		lw.mu.Lock()
		lw.done = true
		lw.mu.Unlock()
	})
	return ts
}

func dialTest(t testing.TB, addr string, opts ClientOptions) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func mustEcho(t testing.TB, c *Client, n int) {
	t.Helper()
	var resp echoResp
	if err := c.Call(testCtx(t), methodEcho, &echoReq{N: n}, &resp); err != nil {
		t.Fatalf("echo %d: %v", n, err)
	}
	if resp.N != n {
		t.Fatalf("echo %d answered %d", n, resp.N)
	}
}

func rawDial(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readAnswer reads one frame from a raw connection.
func readAnswer(t testing.TB, r *bufio.Reader, conn net.Conn) (header, []byte) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	f := &frameBuf{}
	if err := readFrame(r, DefaultMaxFrameSize, f); err != nil {
		t.Fatalf("read answer: %v", err)
	}
	h, off, err := parseHeader(f.b)
	if err != nil {
		t.Fatalf("answer header: %v", err)
	}
	return h, f.b[off:]
}

// expectClosed waits for the server to close conn: a read ends in EOF or a
// reset, not in our own deadline.
func expectClosed(t testing.TB, conn net.Conn) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, conn)
	if err == nil || errors.Is(err, syscall.ECONNRESET) {
		return
	}
	t.Fatalf("connection not closed by the server: %v", err)
}

// TestBadInputClosesConnection sends what no client should and checks that
// the server drops that connection and keeps serving another.
func TestBadInputClosesConnection(t *testing.T) {
	t.Parallel()
	ts := startServer(t, ServerOptions{MaxFrameSize: 1 << 20, FrameTimeout: 300 * time.Millisecond}, nil)
	good := dialTest(t, ts.addr, ClientOptions{})
	validHeader := []byte{0x94, 0x01, 0xa9, 'T', 'e', 's', 't', '.', 'E', 'c', 'h', 'o', 0x00, 0xc0}

	tests := []struct {
		name      string
		send      []byte
		closeSend bool // half-close after sending
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: nimbus\r\n\r\n"), false},
		{"oversized length", []byte{0x00, 0x10, 0x00, 0x01}, false},
		{"max uint32 length", []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}, false},
		{"zero length", []byte{0, 0, 0, 0}, false},
		{"truncated frame then EOF", rawFrame(make([]byte, 100))[:30], true},
		{"truncated frame then silence", rawFrame(make([]byte, 100))[:30], false},
		{"truncated length then silence", []byte{0, 0}, false},
		{"header not msgpack", rawFrame([]byte{0xc1, 0xc1}), false},
		{"header not an array", rawFrame(mustMarshal(t, map[string]any{"seq": 1, "method": methodEcho})), false},
		{"header wrong types", rawFrame(mustMarshal(t, []any{"one", methodEcho, 0, nil})), false},
		{"header nested too deep", rawFrame(append(append([]byte{0x95}, validHeader[1:]...), bytes.Repeat([]byte{0x91}, 50)...)), false},
		{"random bytes", bytes.Repeat([]byte{0x00, 0x00, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef}, 64), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := rawDial(t, ts.addr)
			if _, err := conn.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			if tt.closeSend {
				conn.(*net.TCPConn).CloseWrite()
			}
			expectClosed(t, conn)
			mustEcho(t, good, 1)
		})
	}
}

// TestBadRequestKeepsConnection: a request whose body does not fit, or whose
// method is unknown, is answered with InvalidParameterValueException and the
// same connection keeps working.
func TestBadRequestKeepsConnection(t *testing.T) {
	t.Parallel()
	ts := startServer(t, ServerOptions{}, nil)
	header := func(seq uint64, method string) []byte {
		f := &frameBuf{}
		startFrame(f, seq, method, 0, nil)
		return f.b[4:]
	}
	tests := []struct {
		name    string
		payload []byte
		wantMsg string
	}{
		{"unknown method", append(header(1, "No.Such"), 0xc0), "unknown method No.Such"},
		{"body of wrong type", append(header(2, methodEcho), mustMarshal(t, "a string")...), "decode Test.Echo request"},
		{"body field of wrong type", append(header(3, methodEcho), mustMarshal(t, map[string]string{"n": "x"})...), "decode"},
		{"body not msgpack", append(header(4, methodEcho), 0xc1), "decode"},
		{"body truncated", append(header(5, methodEcho), 0xa5, 'a'), "decode"},
		{"body missing", header(6, methodEcho), "decode"},
		{"body trailing bytes", append(header(7, methodEcho), 0x80, 0x80), "decode"},
		{"body count bomb", append(header(8, methodEcho), 0x81, 0xa7, 'p', 'a', 'y', 'l', 'o', 'a', 'd', 0xdd, 0x00, 0x0f, 0x42, 0x40), "decode"},
		{"body depth bomb", append(header(9, methodEcho), append(bytes.Repeat([]byte{0x81, 0xa1, 'x'}, 10000), 0xc0)...), "decode"},
	}
	conn := rawDial(t, ts.addr)
	r := bufio.NewReader(conn)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := conn.Write(rawFrame(tt.payload)); err != nil {
				t.Fatal(err)
			}
			h, body := readAnswer(t, r, conn)
			if h.err == nil || h.err.Code != CodeInvalidParameterValue || !strings.Contains(h.err.Message, tt.wantMsg) {
				t.Fatalf("answer error = %v, want %s containing %q", h.err, CodeInvalidParameterValue, tt.wantMsg)
			}
			if len(body) != 1 || body[0] != 0xc0 {
				t.Errorf("error answer body = %x, want nil", body)
			}
			// The connection still answers a good request.
			if _, err := conn.Write(frameBytes(t, 100, methodEcho, 0, nil, &echoReq{N: 7})); err != nil {
				t.Fatal(err)
			}
			h, body = readAnswer(t, r, conn)
			var resp echoResp
			if h.seq != 100 || h.err != nil || decodeBody(body, &resp) != nil || resp.N != 7 {
				t.Fatalf("good request after bad one: seq %d err %v resp %+v", h.seq, h.err, resp)
			}
		})
	}
}

// TestSilentClientClosed: a connection that never speaks is closed after
// IdleTimeout while another client keeps getting answers. The busy client
// keeps one call in flight throughout, so that however slowly the test is
// scheduled the server has no reason to close it.
func TestSilentClientClosed(t *testing.T) {
	t.Parallel()
	const idle = 100 * time.Millisecond
	release := make(chan struct{})
	ts := startServer(t, ServerOptions{IdleTimeout: idle}, func(s *Server) {
		Handle(s, "Test.Hold", func(ctx context.Context, req *echoReq) (*echoResp, error) {
			<-release
			return &echoResp{N: req.N}, nil
		})
	})
	busy := dialTest(t, ts.addr, ClientOptions{})
	held := make(chan error, 1)
	go func() { held <- busy.Call(testCtx(t), "Test.Hold", &echoReq{}, nil) }()

	start := time.Now()
	silent := rawDial(t, ts.addr)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		expectClosed(t, silent)
	}()
	for n, done := 0, false; !done; n++ {
		select {
		case <-closed:
			done = true
		default:
		}
		mustEcho(t, busy, n)
		time.Sleep(2 * time.Millisecond)
	}
	if elapsed := time.Since(start); elapsed < idle {
		t.Errorf("silent connection closed after %v, before IdleTimeout %v", elapsed, idle)
	}
	close(release)
	if err := <-held; err != nil {
		t.Errorf("held call: %v", err)
	}
	if n := ts.accepts.Load(); n != 2 {
		t.Errorf("server accepted %d connections, want 2 (the busy client must not have redialed)", n)
	}
}

// TestIdleTimeoutSparesInflight: a request running longer than IdleTimeout
// keeps its connection.
func TestIdleTimeoutSparesInflight(t *testing.T) {
	t.Parallel()
	const idle = 100 * time.Millisecond
	ts := startServer(t, ServerOptions{IdleTimeout: idle}, nil)
	c := dialTest(t, ts.addr, ClientOptions{})
	var resp echoResp
	if err := c.Call(testCtx(t), methodEcho, &echoReq{N: 3, DelayMs: int(4 * idle / time.Millisecond)}, &resp); err != nil {
		t.Fatalf("long call: %v", err)
	}
	if n := ts.accepts.Load(); n != 1 {
		t.Errorf("accepted %d connections, want 1", n)
	}
}

// TestServerCloseFailsPending: Close cancels running handlers and every call
// waiting on them fails with ErrConnClosed; later calls too.
func TestServerCloseFailsPending(t *testing.T) {
	t.Parallel()
	var running, cancelled atomic.Int32
	ts := startServer(t, ServerOptions{}, func(s *Server) {
		Handle(s, "Test.Block", func(ctx context.Context, req *echoReq) (*echoResp, error) {
			running.Add(1)
			<-ctx.Done()
			cancelled.Add(1)
			return nil, ctx.Err()
		})
	})
	c := dialTest(t, ts.addr, ClientOptions{})
	const n = 5
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- c.Call(context.Background(), "Test.Block", &echoReq{N: i}, nil) }()
	}
	waitFor(t, "handlers to start", func() bool { return running.Load() == n })
	ts.Close()
	for range n {
		err := <-errs
		if !errors.Is(err, ErrConnClosed) {
			t.Errorf("pending call: %v, want ErrConnClosed", err)
		}
		var e *Error
		if errors.As(err, &e) {
			t.Errorf("transport failure is also an *Error: %v", e)
		}
	}
	waitFor(t, "handler contexts to be cancelled", func() bool { return cancelled.Load() == n })
	if err := c.Call(testCtx(t), methodEcho, &echoReq{}, nil); !errors.Is(err, ErrConnClosed) {
		t.Errorf("call after server close: %v, want ErrConnClosed", err)
	}
	if err := ts.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestHandlerPanicAnswersServiceException(t *testing.T) {
	t.Parallel()
	ts := startServer(t, ServerOptions{}, func(s *Server) {
		Handle(s, "Test.Panic", func(ctx context.Context, req *echoReq) (*echoResp, error) {
			var m map[string]int
			m["boom"] = req.N // nil map write
			return nil, nil
		})
	})
	c := dialTest(t, ts.addr, ClientOptions{})
	err := c.Call(testCtx(t), "Test.Panic", &echoReq{N: 1}, nil)
	if !errors.Is(err, ErrService) {
		t.Fatalf("panicking handler: %v, want ServiceException", err)
	}
	mustEcho(t, c, 2)
}

func TestServeAfterClose(t *testing.T) {
	t.Parallel()
	s := NewServer(ServerOptions{})
	s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln); err != nil {
		t.Fatalf("Serve after Close = %v, want nil", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Errorf("listener still accepting after Serve returned")
	}
}

func TestUnencodableResponse(t *testing.T) {
	t.Parallel()
	type bad struct {
		C chan int `msgpack:"c"`
	}
	ts := startServer(t, ServerOptions{}, func(s *Server) {
		Handle(s, "Test.Bad", func(ctx context.Context, req *echoReq) (*bad, error) {
			return &bad{C: make(chan int)}, nil
		})
	})
	c := dialTest(t, ts.addr, ClientOptions{})
	err := c.Call(testCtx(t), "Test.Bad", &echoReq{}, nil)
	if !errors.Is(err, ErrService) || !strings.Contains(err.Error(), "encode response") {
		t.Fatalf("unencodable response: %v, want ServiceException", err)
	}
	mustEcho(t, c, 1)
}

// TestLateRequestRefused: a request carrying an absolute deadline that has
// passed when it arrives is answered with a ServiceException, not run.
func TestLateRequestRefused(t *testing.T) {
	s := NewServer(ServerOptions{})
	var ran atomic.Int32
	Handle(s, "T.Late", func(ctx context.Context, req *struct{}) (*struct{}, error) {
		ran.Add(1)
		return &struct{}{}, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	f := getBuf()
	startFrameDeadline(f, 1, "T.Late", 1000, nil, uint64(time.Now().Add(-time.Second).UnixMilli()))
	if err := encodeBody(f, struct{}{}); err != nil {
		t.Fatal(err)
	}
	if err := finishFrame(f, DefaultMaxFrameSize); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(f.b); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rf := getBuf()
	if err := readFrame(bufio.NewReader(conn), DefaultMaxFrameSize, rf); err != nil {
		t.Fatal(err)
	}
	h, _, err := parseHeader(rf.b)
	if err != nil {
		t.Fatal(err)
	}
	if h.err == nil || h.err.Code != CodeService || ran.Load() != 0 {
		t.Fatalf("answer %+v, handler ran %d times; want a ServiceException and no run", h.err, ran.Load())
	}
}
