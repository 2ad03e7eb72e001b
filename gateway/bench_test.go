package gateway

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"nimbus/rpc"
)

// BenchmarkInvokeRoundTrip measures what each path costs around an
// invocation: one loopback round trip of Invoke whose operation answers at
// once, through the REST gateway (HTTP/1.1, SigV4 header parsed, JSON
// headers and body) and through rpc (msgpack frames). The difference is
// what the gateway adds to a warm invoke.
//
//	go test -run '^$' -bench InvokeRoundTrip ./gateway/
func BenchmarkInvokeRoundTrip(b *testing.B) {
	payload := []byte(`{"message":"Hello, bench!","requestId":"00000000-0000-4000-8000-000000000000"}`)
	invoke := func(ctx context.Context, req *rpc.InvokeRequest) (*rpc.InvokeResponse, error) {
		return &rpc.InvokeResponse{RequestID: "00000000-0000-4000-8000-000000000000", StatusCode: 200, Payload: payload, ExecutedVersion: rpc.VersionLatest}, nil
	}
	event := []byte(`{"name":"bench"}`)

	b.Run("gateway", func(b *testing.B) {
		g, err := New(Options{Ops: Operations{Invoke: invoke}, MaxZipSize: 50 << 20})
		if err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go g.Serve(ln)
		defer g.Close()
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		defer hc.CloseIdleConnections()
		url := "http://" + ln.Addr().String() + "/2015-03-31/functions/hello/invocations"
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(event))
			req.Header.Set("Authorization", goodSig)
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})

	b.Run("rpc", func(b *testing.B) {
		srv := rpc.NewServer(rpc.ServerOptions{})
		rpc.Handle(srv, rpc.MethodInvoke, invoke)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go srv.Serve(ln)
		defer srv.Close()
		ctx := context.Background()
		cl, err := rpc.Dial(ctx, ln.Addr().String(), rpc.ClientOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		req := &rpc.InvokeRequest{FunctionName: "hello", Payload: event}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := cl.Invoke(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
