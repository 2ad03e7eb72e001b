package rpc

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

const methodStream = "Test.Stream"

type streamReq struct {
	Parts    int    `msgpack:"parts"`
	Size     int    `msgpack:"size"`
	FailWith string `msgpack:"fail_with,omitempty"` // an error after the parts
}

type streamPart struct {
	I    int    `msgpack:"i"`
	Data []byte `msgpack:"data"`
}

// streamServer serves methodStream; sent counts the parts Send accepted,
// ended is told how the handler ended (nil, or its context's error), and
// maxUnacked is the most bytes the stream ever had in flight.
type streamServer struct {
	*testServer
	sent       atomic.Int64
	maxUnacked atomic.Int64
	ended      chan error
}

func startStreamServer(t *testing.T) *streamServer {
	ss := &streamServer{ended: make(chan error, 16)}
	ss.testServer = startServer(t, ServerOptions{}, func(s *Server) {
		HandleStream(s, methodStream, func(ctx context.Context, req *streamReq, out *Stream) (*echoResp, error) {
			for i := range req.Parts {
				if err := out.Send(ctx, &streamPart{I: i, Data: bytes.Repeat([]byte{byte(i)}, req.Size)}); err != nil {
					ss.ended <- ctx.Err()
					return nil, err
				}
				ss.sent.Add(1)
				out.mu.Lock()
				u := out.unacked
				out.mu.Unlock()
				if u > ss.maxUnacked.Load() {
					ss.maxUnacked.Store(u)
				}
			}
			ss.ended <- nil
			if req.FailWith != "" {
				return nil, Errorf(CodeInvalidParameterValue, "%s", req.FailWith)
			}
			return &echoResp{N: req.Parts}, nil
		})
	})
	return ss
}

// TestStreamPartsThenAnswer: every part arrives, in order and whole, before
// the answer; an error after parts arrives as the call's *Error.
func TestStreamPartsThenAnswer(t *testing.T) {
	ss := startStreamServer(t)
	c := dialTest(t, ss.addr, ClientOptions{})
	var got []int
	var resp echoResp
	err := CallStream(c, testCtx(t), methodStream, &streamReq{Parts: 300, Size: 10 << 10}, &resp, func(p *streamPart) error {
		if len(p.Data) != 10<<10 || p.Data[0] != byte(p.I) {
			t.Errorf("part %d: %d bytes of %d", p.I, len(p.Data), p.Data[0])
		}
		got = append(got, p.I)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.N != 300 || len(got) != 300 {
		t.Fatalf("answer %d after %d parts, want 300 and 300", resp.N, len(got))
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("part %d came as the %dth", v, i)
		}
	}

	n := 0
	err = CallStream(c, testCtx(t), methodStream, &streamReq{Parts: 3, Size: 1, FailWith: "bad"}, &resp, func(p *streamPart) error {
		n++
		return nil
	})
	var re *Error
	if !errors.As(err, &re) || re.Code != CodeInvalidParameterValue || n != 3 {
		t.Fatalf("after 3 parts: %v (%d parts), want InvalidParameterValueException after 3", err, n)
	}
	mustEcho(t, c, 7) // the connection goes on
}

// TestStreamSlowReaderHoldsOnlyItsStream: a caller that does not take its
// parts stops its handler at the window, while other calls on the same
// connection are answered; once it takes them, the stream goes on.
func TestStreamSlowReaderHoldsOnlyItsStream(t *testing.T) {
	ss := startStreamServer(t)
	c := dialTest(t, ss.addr, ClientOptions{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var resp echoResp
		first := true
		done <- CallStream(c, testCtx(t), methodStream, &streamReq{Parts: 200, Size: 64 << 10}, &resp, func(p *streamPart) error {
			if first {
				first = false
				<-release
			}
			return nil
		})
	}()
	// 200 parts of 64 KiB are 12.5 MiB: the handler must stop near 1 MiB.
	waitFor(t, "the stream to fill its window", func() bool { return ss.sent.Load() >= 10 })
	time.Sleep(200 * time.Millisecond)
	if n := ss.sent.Load(); n >= 40 {
		t.Fatalf("%d parts of 64 KiB sent to a caller that took none", n)
	}
	for i := range 20 {
		mustEcho(t, c, i) // other calls are not held up
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ss.sent.Load() != 200 {
		t.Fatalf("%d parts sent, want 200", ss.sent.Load())
	}
	if m := ss.maxUnacked.Load(); m > streamWindow+(64<<10)+64 {
		t.Fatalf("%d bytes in flight at most, over the window of %d", m, streamWindow)
	}
}

// TestStreamCancel: an error from onPart, or the caller's context ending,
// cancels the handler's context.
func TestStreamCancel(t *testing.T) {
	ss := startStreamServer(t)
	c := dialTest(t, ss.addr, ClientOptions{})
	stop := errors.New("enough")
	var resp echoResp
	err := CallStream(c, testCtx(t), methodStream, &streamReq{Parts: 1 << 20, Size: 1 << 10}, &resp, func(p *streamPart) error {
		if p.I == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("CallStream: %v, want onPart's error", err)
	}
	select {
	case e := <-ss.ended:
		if !errors.Is(e, context.Canceled) {
			t.Fatalf("handler ended with %v, want its context cancelled", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler went on after the caller stopped taking parts")
	}

	ctx, cancel := context.WithCancel(testCtx(t))
	err = CallStream(c, ctx, methodStream, &streamReq{Parts: 1 << 20, Size: 1 << 10}, &resp, func(p *streamPart) error {
		if p.I == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("CallStream: %v, want context.Canceled", err)
	}
	select {
	case e := <-ss.ended:
		if !errors.Is(e, context.Canceled) {
			t.Fatalf("handler ended with %v, want its context cancelled", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler went on after the caller's context ended")
	}
	mustEcho(t, c, 1)
}

// TestStreamMethodCalledPlainly: Call on a streamed method gets the answer
// alone; its parts are dropped and break nothing.
func TestStreamMethodCalledPlainly(t *testing.T) {
	ss := startStreamServer(t)
	c := dialTest(t, ss.addr, ClientOptions{})
	var resp echoResp
	if err := c.Call(testCtx(t), methodStream, &streamReq{Parts: 100, Size: 64 << 10}, &resp); err != nil || resp.N != 100 {
		t.Fatalf("a plain call of a streamed method: %v, %d; want its answer", err, resp.N)
	}
	mustEcho(t, c, 2)
}

// TestStreamsAtTheInflightLimit: streams whose callers take their parts
// slowly, as many as the connection's MaxInflight, do not keep their
// credits from being read: they finish, and so does a plain call queued
// behind them.
func TestStreamsAtTheInflightLimit(t *testing.T) {
	ss := &streamServer{ended: make(chan error, 16)}
	ss.testServer = startServer(t, ServerOptions{MaxInflight: 2}, func(s *Server) {
		HandleStream(s, methodStream, func(ctx context.Context, req *streamReq, out *Stream) (*echoResp, error) {
			ss.sent.Add(1) // started
			for i := range req.Parts {
				if err := out.Send(ctx, &streamPart{I: i, Data: make([]byte, req.Size)}); err != nil {
					return nil, err
				}
			}
			return &echoResp{N: req.Parts}, nil
		})
	})
	c := dialTest(t, ss.addr, ClientOptions{})
	errs := make(chan error, 3)
	for range 2 {
		go func() {
			var resp echoResp
			errs <- CallStream(c, testCtx(t), methodStream, &streamReq{Parts: 64, Size: 64 << 10}, &resp, func(p *streamPart) error {
				if p.I%8 == 0 {
					time.Sleep(time.Millisecond)
				}
				return nil
			})
		}()
	}
	// Both streams hold the connection's two slots before the call comes.
	waitFor(t, "both streams to run", func() bool { return ss.sent.Load() == 2 })
	go func() {
		var resp echoResp
		errs <- c.Call(testCtx(t), methodEcho, &echoReq{N: 1}, &resp)
	}()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
