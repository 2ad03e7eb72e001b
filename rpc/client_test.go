package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestConcurrentCallsOneConnection runs many callers on one Client with
// handlers that finish in scrambled order; every caller must get its own
// answer, over a single connection.
func TestConcurrentCallsOneConnection(t *testing.T) {
	t.Parallel()
	ts := startServer(t, ServerOptions{}, nil)
	c := dialTest(t, ts.addr, ClientOptions{})
	const callers, calls = 32, 100
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				n := g*calls + i
				req := &echoReq{N: n, DelayMs: n % 3, Payload: bytes.Repeat([]byte{byte(n)}, n%500)}
				var resp echoResp
				if err := c.Call(testCtx(t), methodEcho, req, &resp); err != nil {
					errs <- fmt.Errorf("call %d: %w", n, err)
					return
				}
				if resp.N != n || !bytes.Equal(resp.Payload, req.Payload) {
					errs <- fmt.Errorf("call %d answered with %d (%d bytes)", n, resp.N, len(resp.Payload))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := ts.accepts.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

// TestOutOfOrderAnswers: a slow request does not hold back a fast one sent
// after it on the same connection.
func TestOutOfOrderAnswers(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	started := make(chan struct{})
	ts := startServer(t, ServerOptions{}, func(s *Server) {
		Handle(s, "Test.Gate", func(ctx context.Context, req *echoReq) (*echoResp, error) {
			close(started)
			select {
			case <-gate:
				return &echoResp{N: req.N}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	})
	c := dialTest(t, ts.addr, ClientOptions{})
	slow := make(chan error, 1)
	var slowResp echoResp
	go func() { slow <- c.Call(testCtx(t), "Test.Gate", &echoReq{N: 1}, &slowResp) }()
	<-started
	mustEcho(t, c, 2) // answered while Test.Gate still runs
	select {
	case err := <-slow:
		t.Fatalf("slow call finished before its gate opened: %v", err)
	default:
	}
	close(gate)
	if err := <-slow; err != nil || slowResp.N != 1 {
		t.Fatalf("slow call: %+v, %v", slowResp, err)
	}
}

var errMaybeExpired = errors.New("nil or context.DeadlineExceeded")

// TestDeadlinePropagation: the handler's context carries the caller's
// deadline (or none), and a handler outliving it sees it expire.
func TestDeadlinePropagation(t *testing.T) {
	t.Parallel()
	type seen struct {
		n        int // the subtest
		deadline time.Time
		ok       bool
		err      error // ctx.Err() after the handler waited
	}
	got := make(chan seen, 10)
	ts := startServer(t, ServerOptions{}, func(s *Server) {
		Handle(s, "Test.Deadline", func(ctx context.Context, req *echoReq) (*echoResp, error) {
			dl, ok := ctx.Deadline()
			var err error
			if req.DelayMs > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(req.DelayMs) * time.Millisecond):
				}
				err = ctx.Err()
			}
			got <- seen{req.N, dl, ok, err}
			return &echoResp{}, nil
		})
	})
	c := dialTest(t, ts.addr, ClientOptions{})
	tests := []struct {
		name        string
		timeout     time.Duration // 0: no deadline
		delayMs     int
		wantCallErr error
		wantCtxErr  error
	}{
		{"no deadline", 0, 0, nil, nil},
		{"long deadline", time.Hour, 0, nil, nil},
		{"short deadline", 2 * time.Second, 0, nil, nil},
		{"sub-millisecond deadline", 700 * time.Microsecond, 0, nil, nil},
		// The answer races the caller's own timer: either outcome is right.
		{"handler outlives deadline", 50 * time.Millisecond, 10000, errMaybeExpired, context.DeadlineExceeded},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			err := c.Call(ctx, "Test.Deadline", &echoReq{N: i, DelayMs: tt.delayMs}, nil)
			if tt.timeout < time.Millisecond && tt.timeout > 0 && errors.Is(err, context.DeadlineExceeded) {
				t.Skip("deadline expired before the call was sent") // a slow machine; nothing to check
			}
			switch {
			case tt.wantCallErr == errMaybeExpired:
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Call: %v, want nil or %v", err, context.DeadlineExceeded)
				}
			case !errors.Is(err, tt.wantCallErr) || (tt.wantCallErr == nil && err != nil):
				t.Fatalf("Call: %v, want %v", err, tt.wantCallErr)
			}
			var s seen
			for { // skip reports from earlier subtests that gave up waiting
				select {
				case s = <-got:
				case <-time.After(10 * time.Second):
					t.Fatal("handler never reported")
				}
				if s.n == i {
					break
				}
			}
			clientDL, hasDL := ctx.Deadline()
			if s.ok != hasDL {
				t.Fatalf("handler has deadline %v, caller %v", s.ok, hasDL)
			}
			if hasDL {
				// The server's deadline is its clock plus the time left,
				// rounded up to a millisecond: never earlier than the caller's.
				if d := s.deadline.Sub(clientDL); d < 0 || d > 5*time.Second {
					t.Errorf("handler deadline is %v after the caller's", d)
				}
			}
			if !errors.Is(s.err, tt.wantCtxErr) {
				t.Errorf("handler ctx.Err() = %v, want %v", s.err, tt.wantCtxErr)
			}
		})
	}
}

// TestCallCancel: a cancelled or expired call returns its context's error
// while the handler still runs; the late answer is dropped and the
// connection stays usable.
func TestCallCancel(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var answered atomic.Int32
	ts := startServer(t, ServerOptions{}, func(s *Server) {
		Handle(s, "Test.Hold", func(ctx context.Context, req *echoReq) (*echoResp, error) {
			<-release
			answered.Add(1)
			return &echoResp{N: req.N}, nil
		})
	})
	c := dialTest(t, ts.addr, ClientOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Call(ctx, "Test.Hold", &echoReq{N: 1}, &echoResp{}) }()
	time.Sleep(20 * time.Millisecond) // let it be sent; the outcome is the same if not
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := c.Call(ctx, "Test.Hold", &echoReq{N: 2}, &echoResp{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired call: %v, want context.DeadlineExceeded", err)
	}
	if err := c.Call(ctx, methodEcho, &echoReq{}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call with an expired context: %v", err)
	}

	close(release)
	waitFor(t, "held handlers to answer", func() bool { return answered.Load() == 2 })
	mustEcho(t, c, 3)
	if n := ts.accepts.Load(); n != 1 {
		t.Errorf("accepted %d connections, want 1", n)
	}
}

// TestErrorRoundTrip: handler errors arrive as *Error matching the sentinel
// of their code, never as ErrConnClosed.
func TestErrorRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		sentinel *Error
		want     Error
	}{
		{"not found", Errorf(CodeResourceNotFound, "Function not found: %s", "f"), ErrResourceNotFound,
			Error{Code: CodeResourceNotFound, Message: "Function not found: f"}},
		{"wrapped conflict", fmt.Errorf("create: %w", Errorf(CodeResourceConflict, "exists")), ErrResourceConflict,
			Error{Code: CodeResourceConflict, Message: "exists"}},
		{"throttle with reason", &Error{Code: CodeTooManyRequests, Message: "Rate exceeded", Reason: ReasonReservedFunctionConcurrentInvocationLimit},
			ErrTooManyRequests, Error{Code: CodeTooManyRequests, Message: "Rate exceeded", Reason: ReasonReservedFunctionConcurrentInvocationLimit}},
		{"too large", Errorf(CodeRequestTooLarge, "zip is 300 MB"), ErrRequestTooLarge,
			Error{Code: CodeRequestTooLarge, Message: "zip is 300 MB"}},
		{"joined", errors.Join(errors.New("io"), Errorf(CodeInvalidParameterValue, "bad runtime")), ErrInvalidParameterValue,
			Error{Code: CodeInvalidParameterValue, Message: "bad runtime"}},
		{"plain error", errors.New("disk full"), ErrService, Error{Code: CodeService, Message: "disk full"}},
		{"empty code", &Error{Message: "who knows"}, ErrService, Error{Code: CodeService, Message: "who knows"}},
	}
	ts := startServer(t, ServerOptions{}, func(s *Server) {
		Handle(s, "Test.Fail", func(ctx context.Context, req *echoReq) (*echoResp, error) {
			return nil, tests[req.N].err
		})
	})
	c := dialTest(t, ts.addr, ClientOptions{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &echoResp{N: -1}
			err := c.Call(testCtx(t), "Test.Fail", &echoReq{N: i}, resp)
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v, want code %s", err, tt.sentinel.Code)
			}
			if errors.Is(err, ErrConnClosed) {
				t.Errorf("platform error matches ErrConnClosed")
			}
			var e *Error
			if !errors.As(err, &e) || *e != tt.want {
				t.Errorf("err = %#v, want %#v", e, tt.want)
			}
			if resp.N != -1 {
				t.Errorf("response decoded despite error: %+v", resp)
			}
		})
	}
}

// TestFrameSizeLimits: too large a request fails locally; a server with a
// smaller limit drops the connection; a too large response becomes a
// ServiceException; a response above the client's limit breaks the
// connection; a large frame under the limit goes through.
func TestFrameSizeLimits(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("z"), 3<<20+17)
	Big := func(s *Server) {
		Handle(s, "Test.Big", func(ctx context.Context, req *echoReq) (*echoResp, error) {
			return &echoResp{Payload: make([]byte, req.N)}, nil
		})
	}
	t.Run("request over the client limit", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, ServerOptions{}, nil)
		c := dialTest(t, ts.addr, ClientOptions{MaxFrameSize: 1024})
		err := c.Call(testCtx(t), methodEcho, &echoReq{Payload: make([]byte, 2048)}, nil)
		if !errors.Is(err, ErrRequestTooLarge) {
			t.Fatalf("err = %v, want RequestTooLargeException", err)
		}
		mustEcho(t, c, 1)
	})
	t.Run("request over the server limit", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, ServerOptions{MaxFrameSize: 1024}, nil)
		c := dialTest(t, ts.addr, ClientOptions{})
		other := dialTest(t, ts.addr, ClientOptions{})
		err := c.Call(testCtx(t), methodEcho, &echoReq{Payload: make([]byte, 2048)}, nil)
		if !errors.Is(err, ErrConnClosed) {
			t.Fatalf("err = %v, want ErrConnClosed", err)
		}
		mustEcho(t, other, 1)
		mustEcho(t, c, 2) // redials
	})
	t.Run("response over the server limit", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, ServerOptions{MaxFrameSize: 1024}, Big)
		c := dialTest(t, ts.addr, ClientOptions{})
		err := c.Call(testCtx(t), "Test.Big", &echoReq{N: 2048}, &echoResp{})
		if !errors.Is(err, ErrService) || !strings.Contains(err.Error(), "too large") {
			t.Fatalf("err = %v, want ServiceException about size", err)
		}
		mustEcho(t, c, 1)
	})
	t.Run("response over the client limit", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, ServerOptions{}, Big)
		c := dialTest(t, ts.addr, ClientOptions{MaxFrameSize: 1024})
		err := c.Call(testCtx(t), "Test.Big", &echoReq{N: 2048}, &echoResp{})
		if !errors.Is(err, ErrConnClosed) {
			t.Fatalf("err = %v, want ErrConnClosed", err)
		}
	})
	t.Run("large frames under the limit", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, ServerOptions{}, nil)
		c := dialTest(t, ts.addr, ClientOptions{})
		var resp echoResp
		if err := c.Call(testCtx(t), methodEcho, &echoReq{N: 9, Payload: big}, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.N != 9 || !bytes.Equal(resp.Payload, big) {
			t.Fatalf("large echo came back with %d bytes", len(resp.Payload))
		}
	})
}

func TestDialUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(testCtx(t), addr, ClientOptions{DialTimeout: time.Second})
	if !errors.Is(err, ErrConnClosed) {
		t.Fatalf("Dial to a closed port: %v, want ErrConnClosed", err)
	}
	var e *Error
	if errors.As(err, &e) {
		t.Errorf("unreachable node reported as platform error %v", e)
	}
}

// TestRedialAfterIdleClose: when the server drops an idle connection the
// next call dials again instead of failing.
func TestRedialAfterIdleClose(t *testing.T) {
	t.Parallel()
	ts := startServer(t, ServerOptions{IdleTimeout: 50 * time.Millisecond}, nil)
	c := dialTest(t, ts.addr, ClientOptions{})
	mustEcho(t, c, 1)
	waitFor(t, "the idle connection to close", func() bool { return c.cur.Load().broken.Load() })
	mustEcho(t, c, 2)
	if n := ts.accepts.Load(); n != 2 {
		t.Errorf("accepted %d connections, want 2", n)
	}
}

func TestClientClose(t *testing.T) {
	t.Parallel()
	ts := startServer(t, ServerOptions{}, nil)
	c := dialTest(t, ts.addr, ClientOptions{})
	pending := make(chan error, 1)
	go func() { pending <- c.Call(context.Background(), methodEcho, &echoReq{DelayMs: 60000}, nil) }()
	waitFor(t, "the call to be pending", func() bool {
		cc := c.cur.Load()
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return len(cc.pending) == 1
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-pending; !errors.Is(err, ErrConnClosed) {
		t.Errorf("pending call: %v, want ErrConnClosed", err)
	}
	if err := c.Call(testCtx(t), methodEcho, &echoReq{}, nil); !errors.Is(err, ErrConnClosed) {
		t.Errorf("call after Close: %v, want ErrConnClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestTypedHelpers: each helper calls its method with its types.
func TestTypedHelpers(t *testing.T) {
	t.Parallel()
	fn := func(name string) *FunctionResponse {
		return &FunctionResponse{Function: &FunctionConfig{Name: name, Runtime: "python3.12", Revision: 7, Env: map[string]string{"A": "b"}}}
	}
	ts := startServer(t, ServerOptions{}, func(s *Server) {
		Handle(s, MethodFunctionCreate, func(ctx context.Context, r *CreateFunctionRequest) (*FunctionResponse, error) {
			return fn("create:" + r.Name + ":" + string(r.ZipFile)), nil
		})
		Handle(s, MethodFunctionUpdateCode, func(ctx context.Context, r *UpdateCodeRequest) (*FunctionResponse, error) {
			return fn("code:" + r.Name), nil
		})
		Handle(s, MethodFunctionUpdateConfig, func(ctx context.Context, r *UpdateConfigRequest) (*FunctionResponse, error) {
			return fn(fmt.Sprintf("config:%s:%d", r.Name, *r.MemoryMB)), nil
		})
		Handle(s, MethodFunctionGet, func(ctx context.Context, r *GetFunctionRequest) (*FunctionResponse, error) {
			return fn("get:" + r.Name), nil
		})
		Handle(s, MethodFunctionList, func(ctx context.Context, r *ListFunctionsRequest) (*ListFunctionsResponse, error) {
			return &ListFunctionsResponse{Functions: []*FunctionConfig{fn("a").Function, fn("b").Function}}, nil
		})
		Handle(s, MethodFunctionDelete, func(ctx context.Context, r *GetFunctionRequest) (*DeleteFunctionResponse, error) {
			if r.Name != "gone" {
				return nil, Errorf(CodeResourceNotFound, "Function not found: %s", r.Name)
			}
			return &DeleteFunctionResponse{}, nil
		})
		Handle(s, MethodInvoke, func(ctx context.Context, r *InvokeRequest) (*InvokeResponse, error) {
			return &InvokeResponse{RequestID: "req-1", StatusCode: 200, Payload: r.Payload, ExecutedVersion: "$LATEST"}, nil
		})
		Handle(s, MethodLogsRead, func(ctx context.Context, r *ReadLogsRequest) (*ReadLogsResponse, error) {
			return &ReadLogsResponse{Events: []LogEvent{{Seq: r.After + 1, Line: r.FunctionName}}, Next: r.After + 1}, nil
		})
	})
	c := dialTest(t, ts.addr, ClientOptions{})
	mem := 256
	name := func(r *FunctionResponse, err error) string {
		if err != nil {
			return "error: " + err.Error()
		}
		return r.Function.Name
	}
	tests := []struct {
		name string
		call func(ctx context.Context) string
		want string
	}{
		{"CreateFunction", func(ctx context.Context) string {
			return name(c.CreateFunction(ctx, &CreateFunctionRequest{Name: "f", ZipFile: []byte("PK")}))
		}, "create:f:PK"},
		{"UpdateFunctionCode", func(ctx context.Context) string {
			return name(c.UpdateFunctionCode(ctx, &UpdateCodeRequest{Name: "f"}))
		}, "code:f"},
		{"UpdateFunctionConfig", func(ctx context.Context) string {
			return name(c.UpdateFunctionConfig(ctx, &UpdateConfigRequest{Name: "f", MemoryMB: &mem}))
		}, "config:f:256"},
		{"GetFunction", func(ctx context.Context) string { return name(c.GetFunction(ctx, &GetFunctionRequest{Name: "f"})) }, "get:f"},
		{"ListFunctions", func(ctx context.Context) string {
			r, err := c.ListFunctions(ctx, &ListFunctionsRequest{})
			if err != nil {
				return err.Error()
			}
			return r.Functions[0].Name + "," + r.Functions[1].Name + "," + r.Functions[1].Env["A"]
		}, "a,b,b"},
		{"DeleteFunction", func(ctx context.Context) string {
			_, err := c.DeleteFunction(ctx, &GetFunctionRequest{Name: "gone"})
			_, err2 := c.DeleteFunction(ctx, &GetFunctionRequest{Name: "x"})
			return fmt.Sprint(err, errors.Is(err2, ErrResourceNotFound))
		}, "<nil> true"},
		{"Invoke", func(ctx context.Context) string {
			r, err := c.Invoke(ctx, &InvokeRequest{FunctionName: "f", Payload: []byte(`{"k":1}`)})
			if err != nil {
				return err.Error()
			}
			return fmt.Sprint(r.StatusCode, " ", string(r.Payload), " ", r.RequestID)
		}, `200 {"k":1} req-1`},
		{"ReadLogs", func(ctx context.Context) string {
			r, err := c.ReadLogs(ctx, &ReadLogsRequest{FunctionName: "f", After: 4})
			if err != nil {
				return err.Error()
			}
			return fmt.Sprint(r.Next, r.Events[0].Seq, r.Events[0].Line)
		}, "5 5f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.call(testCtx(t)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// BenchmarkCall measures a round trip over loopback with an Invoke-shaped
// request and answer: one caller, then 16 callers sharing one Client.
func BenchmarkCall(b *testing.B) {
	ts := startServer(b, ServerOptions{}, func(s *Server) {
		Handle(s, MethodInvoke, func(ctx context.Context, r *InvokeRequest) (*InvokeResponse, error) {
			return &InvokeResponse{RequestID: "c0ffee00-0000-4000-8000-000000000000", StatusCode: 200, Payload: r.Payload, ExecutedVersion: "$LATEST"}, nil
		})
	})
	c := dialTest(b, ts.addr, ClientOptions{})
	req := &InvokeRequest{FunctionName: "hello", Payload: []byte(`{"name":"world","n":42}`)}
	call := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Invoke(ctx, req)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		cpu := processCPU()
		for b.Loop() {
			call()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		// Client and server together: the CPU time moves less than the wall
		// time on a shared machine.
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("parallel16", func(b *testing.B) {
		b.ReportAllocs()
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((16 + procs - 1) / procs) // 16 callers (more if 16 % GOMAXPROCS != 0)
		cpu := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				call()
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	})
}

func TestUnknownMethod(t *testing.T) {
	t.Parallel()
	ts := startServer(t, ServerOptions{}, nil)
	c := dialTest(t, ts.addr, ClientOptions{})
	err := c.Call(testCtx(t), "Function.Frobnicate", &GetFunctionRequest{Name: "f"}, &FunctionResponse{})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalidParameterValue || e.Message != "unknown method Function.Frobnicate" {
		t.Fatalf("unknown method: %v", err)
	}
	mustEcho(t, c, 1)
}

// processCPU is the user and system CPU time this process has used, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
