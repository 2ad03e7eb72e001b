package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// hostileBatch is an Async.AcceptBatch body announcing 2^32-1 events and
// holding none: {"events": array32(0xffffffff)}.
var hostileBatch = []byte{0x81, 0xa6, 'e', 'v', 'e', 'n', 't', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}

// acceptBatchServer serves checkAcceptBatch and checkAcceptEvent behind
// the rpc layer's decoding of an Async.AcceptBatch body (the same for peer
// and client methods), and returns a client that sends raw bodies to it.
func acceptBatchServer(t testing.TB) (call func(body []byte) (*acceptBatchResponse, error)) {
	srv := rpc.NewServer(rpc.ServerOptions{})
	rpc.Handle(srv, methodAsyncAcceptBatch, func(_ context.Context, req *acceptBatchRequest) (*acceptBatchResponse, error) {
		if err := checkAcceptBatch(req); err != nil {
			return nil, err
		}
		out := &acceptBatchResponse{Results: make([]acceptBatchResult, len(req.Events))}
		for i := range req.Events {
			ev := req.Events[i]
			if err := checkAcceptEvent(&ev); err != nil {
				out.Results[i].Err = rpc.AsError(err)
				continue
			}
			if ev.FunctionName == "" || strings.ContainsAny(ev.FunctionName, ":/") || len(ev.Payload) > rpc.MaxAsyncPayload {
				return nil, fmt.Errorf("event %q (%d bytes) passed", ev.FunctionName, len(ev.Payload))
			}
		}
		return out, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cl, err := rpc.Dial(context.Background(), ln.Addr().String(), rpc.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return func(body []byte) (*acceptBatchResponse, error) {
		var resp acceptBatchResponse
		err := cl.Call(context.Background(), methodAsyncAcceptBatch, msgpack.RawMessage(body), &resp)
		return &resp, err
	}
}

// FuzzAcceptBatch: an Async.AcceptBatch body is a peer's bytes. Whatever
// the rpc layer decodes, the checks hold: a batch that passes has 1 to
// forwardBatchItems events, an event that passes has a valid name,
// qualifier and size, and nothing panics.
func FuzzAcceptBatch(f *testing.F) {
	good, _ := msgpack.Marshal(&acceptBatchRequest{Events: []acceptBatchEvent{{FunctionName: "fn", Payload: []byte(`{}`)}, {FunctionName: "fn:prod", Payload: []byte(`{"a":1}`)}}})
	f.Add(good)
	f.Add([]byte{0xc0})
	f.Add(hostileBatch)
	f.Add([]byte{0x81, 0xa6, 'e', 'v', 'e', 'n', 't', 's', 0x91, 0x81, 0xa2, 'f', 'n', 0xa3, '.', '.', '/'})
	call := acceptBatchServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := call(body)
		var re *rpc.Error
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("not an rpc error: %v", err)
		}
		if err != nil && re.Code == rpc.CodeService {
			t.Fatal(err)
		}
		if err == nil && (len(resp.Results) == 0 || len(resp.Results) > forwardBatchItems) {
			t.Fatalf("a batch of %d events passed", len(resp.Results))
		}
	})
}

// TestAcceptBatchDecodeAllocation: a body announcing 2^32 events is
// refused (by the rpc layer's check of the value against its bytes)
// without allocating for them.
func TestAcceptBatchDecodeAllocation(t *testing.T) {
	call := acceptBatchServer(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := call(hostileBatch)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Fatalf("a batch announcing 2^32 events and holding none: %v, want InvalidParameterValueException", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Fatalf("refusing it allocated %d bytes", got)
	}
}

// TestCheckAcceptBatch: the bounds of a batch and of its events.
func TestCheckAcceptBatch(t *testing.T) {
	for _, c := range []struct {
		name string
		n    int
		ok   bool
	}{{"empty", 0, false}, {"one", 1, true}, {"full", forwardBatchItems, true}, {"over", forwardBatchItems + 1, false}} {
		req := &acceptBatchRequest{Events: make([]acceptBatchEvent, c.n)}
		if err := checkAcceptBatch(req); (err == nil) != c.ok {
			t.Errorf("%s (%d events): %v", c.name, c.n, err)
		}
	}
	for _, c := range []struct {
		ev   acceptBatchEvent
		code string
	}{
		{acceptBatchEvent{FunctionName: "fn"}, ""},
		{acceptBatchEvent{FunctionName: "fn:prod"}, ""},
		{acceptBatchEvent{FunctionName: "bad name"}, rpc.CodeInvalidParameterValue},
		{acceptBatchEvent{FunctionName: "fn", Payload: make([]byte, rpc.MaxAsyncPayload+1)}, rpc.CodeRequestTooLarge},
	} {
		ev := c.ev
		err := checkAcceptEvent(&ev)
		if code := rpc.AsError(err); (c.code == "" && err != nil) || (c.code != "" && (err == nil || code.Code != c.code)) {
			t.Errorf("%q (%d bytes): %v, want %q", c.ev.FunctionName, len(c.ev.Payload), err, c.code)
		}
	}
}
