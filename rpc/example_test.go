package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"nimbus/rpc"
)

// A program that dials a node and invokes a function. A tiny in-process
// server stands in for the node here: it answers Invoke for one function.
func Example() {
	srv := rpc.NewServer(rpc.ServerOptions{})
	rpc.Handle(srv, rpc.MethodInvoke, func(ctx context.Context, req *rpc.InvokeRequest) (*rpc.InvokeResponse, error) {
		if req.FunctionName != "hello" {
			return nil, rpc.Errorf(rpc.CodeResourceNotFound, "Function not found: %s", req.FunctionName)
		}
		return &rpc.InvokeResponse{
			RequestID:       "8f5d2b0c-1f7e-4c47-9d4e-000000000001",
			StatusCode:      200,
			Payload:         []byte(`{"greeting":"hello, world"}`),
			ExecutedVersion: "$LATEST",
		}, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go srv.Serve(ln)
	defer srv.Close()

	// The program proper.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	node, err := rpc.Dial(ctx, ln.Addr().String(), rpc.ClientOptions{})
	if err != nil {
		fmt.Println("node unreachable:", errors.Is(err, rpc.ErrConnClosed))
		return
	}
	defer node.Close()

	resp, err := node.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "hello", Payload: []byte(`{"name":"world"}`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.StatusCode, string(resp.Payload))

	_, err = node.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "nope"})
	fmt.Println(err)
	fmt.Println("not found:", errors.Is(err, rpc.ErrResourceNotFound), "unreachable:", errors.Is(err, rpc.ErrConnClosed))
	// Output:
	// 200 {"greeting":"hello, world"}
	// ResourceNotFoundException: Function not found: nope
	// not found: true unreachable: false
}
