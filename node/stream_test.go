package node

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"nimbus/gateway"
	"nimbus/rpc"
)

// streamCall invokes fn with Invoke.Stream through cl and returns the
// parts' data, their content type, the answer, and how long before the
// answer the first data came.
func streamCall(t *testing.T, cl *rpc.Client, fn, payload string) (string, string, *rpc.InvokeResponse, time.Duration) {
	t.Helper()
	var data strings.Builder
	var ctype string
	var first time.Time
	res, err := cl.InvokeStream(ctxT(t), &rpc.InvokeRequest{FunctionName: fn, Payload: []byte(payload)}, func(p *rpc.InvokeStreamPart) error {
		if p.ContentType != "" {
			ctype = p.ContentType
		}
		if len(p.Data) > 0 && first.IsZero() {
			first = time.Now()
		}
		data.Write(p.Data)
		return nil
	})
	if err != nil {
		t.Fatalf("stream %s: %v", fn, err)
	}
	var lead time.Duration
	if !first.IsZero() {
		lead = time.Since(first)
	}
	return data.String(), ctype, res, lead
}

// TestInvokeStream: a function's streamed response reaches the caller as
// it is written, from a worker on another node through the node the
// caller called, and from a local one; an error midway comes after what
// was sent, an error before anything as the answer alone; Invoke of the
// same function buffers it whole; a caller that stops taking parts
// cancels only its own stream.
func TestInvokeStream(t *testing.T) {
	tc := startCluster(t, 2, func(i int, cfg *Config) { cfg.Worker = i != 0 })
	create(t, tc.clients[0], "streamer", testFnZip(t, "streamfn"), func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = 60 })

	for i, cl := range tc.clients {
		// Through n1 the worker is n2's (n1 runs no sandboxes); through n2 it is local.
		data, ctype, res, lead := streamCall(t, cl, "streamer", `{"lines":3,"gap_ms":1000}`)
		if data != "line 0 \nline 1 \nline 2 \n" || res.FunctionError != "" || res.StatusCode != 200 || ctype != "application/octet-stream" {
			t.Fatalf("via n%d: %q (%s) %+v", i+1, data, ctype, res)
		}
		if lead < time.Second {
			t.Fatalf("via n%d: the first line came %v before the answer: not streamed", i+1, lead)
		}
	}

	// 8 MB, past Invoke's 6 MB limit, in parts.
	data, _, res, _ := streamCall(t, tc.clients[0], "streamer", `{"lines":1024,"size":8192}`)
	if res.FunctionError != "" || len(data) < 8<<20 || strings.Count(data, "\n") != 1024 || !strings.HasSuffix(data, "line 1023 "+strings.Repeat("x", 8192)+"\n") {
		t.Fatalf("8 MB streamed: %d bytes, %+v", len(data), res)
	}

	data, _, res, _ = streamCall(t, tc.clients[0], "streamer", `{"lines":2,"fail_end":"broke midway"}`)
	if data != "line 0 \nline 1 \n" || res.FunctionError != rpc.FunctionErrorUnhandled || !strings.Contains(string(res.Payload), "broke midway") {
		t.Fatalf("failed midway: %q %+v %s", data, res, res.Payload)
	}
	data, _, res, _ = streamCall(t, tc.clients[0], "streamer", `{"fail_now":"no stream"}`)
	if data != "" || res.FunctionError != rpc.FunctionErrorUnhandled || !strings.Contains(string(res.Payload), "no stream") {
		t.Fatalf("failed at once: %q %+v %s", data, res, res.Payload)
	}

	// Buffered.
	res = invoke(t, tc.clients[0], "streamer", `{"lines":2}`)
	if string(res.Payload) != "line 0 \nline 1 \n" || res.FunctionError != "" {
		t.Fatalf("buffered: %+v %s", res, res.Payload)
	}

	// A caller that gives up after the first line: its call ends with its
	// own error, the connection serves the next call.
	stop := errors.New("seen enough")
	_, err := tc.clients[0].InvokeStream(ctxT(t), &rpc.InvokeRequest{FunctionName: "streamer", Payload: []byte(`{"lines":50,"gap_ms":100}`)}, func(p *rpc.InvokeStreamPart) error {
		if len(p.Data) > 0 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("giving up: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctxT(t), time.Minute)
	defer cancel()
	if res, err := tc.clients[0].InvokeStream(ctx, &rpc.InvokeRequest{FunctionName: "streamer", Payload: []byte(`{"lines":1}`)}, func(*rpc.InvokeStreamPart) error { return nil }); err != nil || res.FunctionError != "" {
		t.Fatalf("after a caller gave up: %+v %v", res, err)
	}

	// An Event invocation cannot be streamed.
	_, err = tc.clients[0].InvokeStream(ctxT(t), &rpc.InvokeRequest{FunctionName: "streamer", InvocationType: rpc.InvocationEvent}, func(*rpc.InvokeStreamPart) error { return nil })
	if !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Fatalf("streamed Event: %v", err)
	}
}

// TestGatewayStreamGoSDK: aws-sdk-go-v2's InvokeWithResponseStream reads
// nimbus's event stream: PayloadChunk events as the function writes them,
// then InvokeComplete, with the function's error when it fails midway and
// the log tail when asked.
func TestGatewayStreamGoSDK(t *testing.T) {
	_, cl, url := startGatewayNode(t)
	ctx := ctxT(t)
	create(t, cl, "streamer", testFnZip(t, "streamfn"), func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = 60 })
	c := sdkClient(url)

	read := func(payload string, tail bool) (string, int, *types.InvokeWithResponseStreamCompleteEvent, *lambda.InvokeWithResponseStreamOutput) {
		t.Helper()
		in := &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("streamer"), Payload: []byte(payload)}
		if tail {
			in.LogType = types.LogTypeTail
		}
		out, err := c.InvokeWithResponseStream(ctx, in)
		if err != nil {
			t.Fatalf("InvokeWithResponseStream: %v", err)
		}
		st := out.GetStream()
		defer st.Close()
		var data strings.Builder
		chunks := 0
		var done *types.InvokeWithResponseStreamCompleteEvent
		for ev := range st.Events() {
			switch v := ev.(type) {
			case *types.InvokeWithResponseStreamResponseEventMemberPayloadChunk:
				data.Write(v.Value.Payload)
				chunks++
			case *types.InvokeWithResponseStreamResponseEventMemberInvokeComplete:
				done = &v.Value
			}
		}
		if err := st.Err(); err != nil {
			t.Fatalf("the event stream: %v", err)
		}
		if done == nil {
			t.Fatal("no InvokeComplete event")
		}
		return data.String(), chunks, done, out
	}

	data, chunks, done, out := read(`{"lines":3,"gap_ms":300}`, false)
	if data != "line 0 \nline 1 \nline 2 \n" || chunks < 2 || done.ErrorCode != nil || out.StatusCode != 200 || aws.ToString(out.ExecutedVersion) != "$LATEST" {
		t.Fatalf("streamed: %q in %d chunks, %+v, %d %v", data, chunks, done, out.StatusCode, aws.ToString(out.ExecutedVersion))
	}
	data, _, done, _ = read(`{"lines":1,"fail_end":"broke midway"}`, true)
	if data != "line 0 \n" || aws.ToString(done.ErrorCode) == "" || !strings.Contains(aws.ToString(done.ErrorDetails), "broke midway") {
		t.Fatalf("failed midway: %q %+v", data, done)
	}
	logs, err := base64.StdEncoding.DecodeString(aws.ToString(done.LogResult))
	if err != nil || !strings.Contains(string(logs), "REPORT RequestId:") {
		t.Fatalf("LogResult %q (%v)", logs, err)
	}
	// A missing function is the SDK's typed error, before any stream.
	_, err = c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("nope")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("a missing function: %T %v", err, err)
	}
}

// TestFunctionURLStream: a function URL in RESPONSE_STREAM mode sends the
// status, headers and cookies of aws-lambda-go's streaming URL response
// (its prelude), then the body as the function writes it; a function that
// fails before it sends anything is a 502.
func TestFunctionURLStream(t *testing.T) {
	requireRoot(t)
	n, cl := startHTTPNode(t, "urls.test")
	ctx := ctxT(t)
	create(t, cl, "streamer", testFnZip(t, "streamfn"), func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = 60 })
	u, err := cl.CreateURL(ctx, &rpc.CreateURLRequest{FunctionName: "streamer", InvokeMode: rpc.URLInvokeStreaming})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + n.HTTPAddr() + gateway.URLPathPrefix + u.Config.ID + "/"

	resp, err := http.Post(url, "application/json", strings.NewReader(`{"lines":3,"gap_ms":700}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("X-Streamed") != "yes" || resp.Header.Get("Content-Type") != "text/plain" ||
		!strings.HasPrefix(resp.Header.Get("Set-Cookie"), "flavour=oat") {
		t.Fatalf("streamed URL answered %d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != "line 0 \n" {
		t.Fatalf("first line %q (%v)", first, err)
	}
	firstAt := time.Now()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "line 1 \nline 2 \n" {
		t.Fatalf("the rest %q (%v)", rest, err)
	}
	if lead := time.Since(firstAt); lead < 700*time.Millisecond {
		t.Fatalf("the first line came %v before the last: not streamed", lead)
	}

	// A function that fails before it sends anything: 502.
	resp, err = http.Post(url, "application/json", strings.NewReader(`{"fail_now":"nope"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("a failed function: %d", resp.StatusCode)
	}
}
