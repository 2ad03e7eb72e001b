package sandbox

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// raw is a runtime speaking HTTP/1.1 by hand on one connection, for what
// Go's client never sends: chunked bodies with trailers, 100-continue,
// pipelining, bare LF, HTTP/1.0, and malformed requests.
type raw struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &raw{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// answer reads one response, as Go's client parses it.
func (r *raw) answer() (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		r.t.Fatalf("reading an answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("reading an answer's body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the connection.
func (r *raw) closed() bool {
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := r.br.ReadByte()
	return err != nil
}

func TestRuntimeAPIWire(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	r := dialRaw(t, addr)

	// /next with bare LF line endings; the invocation is delivered into it.
	r.send("GET " + testNext + " HTTP/1.1\nHost: x\n\n")
	waitWaiting(t, a)
	inv := newInvocation("c-1", []byte(`{"a":1}`), "arn", "trace", time.Minute)
	if !a.deliver(inv) {
		t.Fatal("not delivered")
	}
	if resp, body := r.answer(); resp.StatusCode != 200 || body != `{"a":1}` || resp.Header.Get(headerRequestID) != "c-1" {
		t.Fatalf("event %d %v %q", resp.StatusCode, resp.Header, body)
	}

	// A chunked answer with a trailer, pipelined with the next /next.
	r.send("POST " + testInv + "c-1/response HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"3\r\n\"ab\r\n2;ext=1\r\nc\"\r\n0\r\nSome-Trailer: v\r\n\r\n" +
		"GET " + testNext + " HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := r.answer(); resp.StatusCode != 202 || body != `{"status":"OK"}` {
		t.Fatalf("chunked response: %d %q", resp.StatusCode, body)
	}
	<-inv.done
	if string(inv.out.payload) != `"abc"` {
		t.Fatalf("chunked payload %q", inv.out.payload)
	}
	<-a.back
	waitWaiting(t, a)

	// 100-continue: the body comes only once the server asks for it.
	inv = newInvocation("c-2", []byte(`2`), "arn", "trace", time.Minute)
	a.deliver(inv)
	r.answer()
	r.send("POST " + testInv + "c-2/error HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 27\r\n" +
		"Lambda-Runtime-Function-Error-Type: Handled.Oops\r\n\r\n")
	if resp, _ := r.answer(); resp.StatusCode != http.StatusContinue {
		t.Fatalf("want 100 Continue, got %d", resp.StatusCode)
	}
	r.send(`{"errorMessage":"went bad"}`)
	if resp, _ := r.answer(); resp.StatusCode != 202 {
		t.Fatalf("error after 100-continue: %d", resp.StatusCode)
	}
	<-inv.done
	if inv.out.errType != "Handled.Oops" || !strings.Contains(string(inv.out.payload), "went bad") {
		t.Fatalf("error outcome %+v", inv.out)
	}

	// HTTP/1.0, and Connection: close, end the connection after their answer.
	for _, req := range []string{
		"GET /nowhere HTTP/1.0\r\n\r\n",
		"GET /nowhere HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
	} {
		c := dialRaw(t, addr)
		c.send(req)
		if resp, _ := c.answer(); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%q: %d", req, resp.StatusCode)
		}
		if !c.closed() {
			t.Fatalf("%q: connection left open", req)
		}
	}
	// HTTP/1.0 with keep-alive goes on.
	c := dialRaw(t, addr)
	c.send("GET /nowhere HTTP/1.0\r\nConnection: keep-alive\r\n\r\nPUT " + testNext + " HTTP/1.1\r\n\r\n")
	c.answer()
	if resp, _ := c.answer(); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
		t.Fatalf("PUT /next: %d %v", resp.StatusCode, resp.Header)
	}

	// Requests that cannot be served are refused, and the connection closed.
	for _, bad := range []struct {
		req  string
		code int
	}{
		{"GARBAGE\r\n\r\n", http.StatusBadRequest},
		{"GET / HTTP/2.0\r\n\r\n", http.StatusBadRequest},
		{"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", http.StatusBadRequest},
		{"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", http.StatusBadRequest},
		{"GET / HTTP/1.1\r\n folded: x\r\n\r\n", http.StatusBadRequest},
		{"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", http.StatusBadRequest},
		{"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", http.StatusBadRequest},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", http.StatusNotImplemented},
		{"GET / HTTP/1.1\r\nX: " + strings.Repeat("a", apiMaxHeaderBytes) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"GET / HTTP/1.1\r\n" + strings.Repeat("X: a\r\n", apiMaxHeaderBytes/6+1) + "\r\n", http.StatusRequestHeaderFieldsTooLarge},
	} {
		c := dialRaw(t, addr)
		c.send(bad.req)
		if resp, _ := c.answer(); resp.StatusCode != bad.code {
			t.Errorf("%.40q: %d, want %d", bad.req, resp.StatusCode, bad.code)
		}
		if !c.closed() {
			t.Errorf("%.40q: connection left open", bad.req)
		}
	}
	// A request that refuses a body waiting for 100-continue closes the
	// connection rather than read what may never come.
	c = dialRaw(t, addr)
	c.send("POST /nowhere HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	if resp, _ := c.answer(); resp.StatusCode != http.StatusNotFound || !resp.Close {
		t.Fatalf("refused 100-continue: %d close=%v", resp.StatusCode, resp.Close)
	}
}

// A /next whose connection the runtime closes before any invocation comes
// loses nothing: the invocation goes to the /next it makes next.
func TestRuntimeAPINextGivenUp(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	r := dialRaw(t, addr)
	r.send("GET " + testNext + " HTTP/1.1\r\nHost: x\r\n\r\n")
	waitWaiting(t, a)
	r.c.Close()
	waitWaiters(t, a, "the closed /next to stop waiting", func(n int) bool { return n == 0 })
	inv := newInvocation("kept", []byte(`{}`), "arn", "trace", time.Minute)
	if a.deliver(inv) {
		t.Fatal("delivered to a connection that was closed")
	}
	code, h, _ := call(t, newClient(t), addr, "GET", testNext, "")
	if code != 200 || h.Get(headerRequestID) != "kept" {
		t.Fatalf("the next /next got %d %v", code, h)
	}
	<-inv.delivered
}

// Lines longer than the read buffer are read whole, up to the limit.
func TestRuntimeAPILongHeader(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	inv := newInvocation("long", []byte(`{}`), "arn", "trace", time.Minute)
	a.deliver(inv)
	r := dialRaw(t, addr)
	r.send("GET " + testNext + " HTTP/1.1\r\nUser-Agent: " + strings.Repeat("u", 3*apiReadBuffer) + "\r\n\r\n")
	if resp, _ := r.answer(); resp.StatusCode != 200 {
		t.Fatalf("next with a long header: %d", resp.StatusCode)
	}
	r.send("POST " + testInv + "long/error HTTP/1.1\r\nLambda-Runtime-Function-Error-Type: " + strings.Repeat("E", apiReadBuffer+10) + "\r\nContent-Length: 2\r\n\r\n{}")
	if resp, _ := r.answer(); resp.StatusCode != 202 {
		t.Fatalf("error with a long header: %d", resp.StatusCode)
	}
	<-inv.done
	if inv.out.errType != strings.Repeat("E", apiReadBuffer+10) {
		t.Fatalf("error type of %d bytes, want %d", len(inv.out.errType), apiReadBuffer+10)
	}
}

// FuzzRuntimeAPIConn: whatever bytes a runtime sends, the agent answers
// with well-formed HTTP/1.1, never more answers than requests started,
// and the connection's goroutine ends once the runtime has hung up and the
// sandbox is closed.
// Bodies are bounded by the payload limits and headers by
// apiMaxHeaderBytes, so nothing it allocates grows with the input beyond
// those.
// FuzzRuntimeAPIConn feeds a connection arbitrary bytes, with a buffered
// or a streamed invocation handed out.
func FuzzRuntimeAPIConn(f *testing.F) {
	f.Add([]byte("GET "+testNext+" HTTP/1.1\r\n\r\n"), false)
	f.Add([]byte("POST "+testInv+"id/response HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"), false)
	f.Add([]byte("POST "+testInv+"id/response HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), false)
	f.Add([]byte("POST /2018-06-01/runtime/init/error HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}"), false)
	f.Add([]byte("GET /%zz HTTP/1.0\n\nGET http://h"+testNext+"?x HTTP/1.1\n\n"), false)
	f.Add([]byte("POST "+testInv+"x/error HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n"), false)
	f.Add([]byte("POST "+testInv+"id/response HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nLambda-Runtime-Function-Error-Type: X\r\nLambda-Runtime-Function-Error-Body: e30=\r\n\r\n"), true)
	f.Add([]byte("POST "+testInv+"id/response HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"), true)
	f.Fuzz(func(t *testing.T, in []byte, streamed bool) {
		a := newRuntimeAPI()
		a.bodyTimeout = 100 * time.Millisecond
		inv := newInvocation("id", []byte(`{}`), "arn", "trace", time.Second)
		if streamed {
			inv.stream, inv.streamEnd = discardStream{}, make(chan struct{})
		}
		a.deliver(inv)
		client, server := net.Pipe()
		c := newAPIConn(a, server)
		a.open[c] = struct{}{}
		done := make(chan struct{})
		go func() { c.serve(); close(done) }()
		go func() {
			_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = client.Write(in)
			// Then hang up.
			time.Sleep(10 * time.Millisecond)
			client.Close()
		}()
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(client)
		final := 0
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				break
			}
			if resp.StatusCode < 100 || resp.StatusCode > 599 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if resp.StatusCode >= 200 {
				final++
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				break
			}
		}
		// A request pipelined behind a /next that no invocation answers
		// waits for one, or for the sandbox to end.
		a.close()
		inv.finish(outcome{})
		ended := make(chan struct{})
		go func() { a.endStream(inv); close(ended) }()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("endStream did not return for %q", in)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the connection's goroutine did not end for %q", in)
		}
		if max := bytes.Count(in, []byte("HTTP/1.")) + 1; final > max {
			t.Fatalf("%d answers to at most %d requests in %q", final, max, in)
		}
	})
}

// discardStream is a ResponseStream that keeps nothing.
type discardStream struct{}

func (discardStream) Start(string) error { return nil }
func (discardStream) Write([]byte) error { return nil }
func (discardStream) Abort()             {}

// A /next that asks to close (Node's http without an agent does) gets its
// event, and then the connection ends.
func TestRuntimeAPINextConnectionClose(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	for i, queued := range []bool{false, true} {
		id := []string{"direct", "queued"}[i]
		inv := newInvocation(id, []byte(`{}`), "arn", "trace", time.Minute)
		r := dialRaw(t, addr)
		if queued {
			a.deliver(inv)
		}
		r.send("GET " + testNext + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if !queued {
			waitWaiting(t, a)
			if !a.deliver(inv) {
				t.Fatal("not delivered to the waiting /next")
			}
		}
		resp, _ := r.answer()
		if resp.StatusCode != 200 || resp.Header.Get(headerRequestID) != id || !resp.Close {
			t.Fatalf("%s: %d %v close=%v", id, resp.StatusCode, resp.Header, resp.Close)
		}
		if !r.closed() {
			t.Fatalf("%s: connection left open", id)
		}
		c := dialRaw(t, addr)
		c.send("POST " + testInv + id + "/response HTTP/1.1\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
		if resp, _ := c.answer(); resp.StatusCode != 202 || !resp.Close {
			t.Fatalf("%s response: %d", id, resp.StatusCode)
		}
		<-inv.done
	}
}

// An event the runtime answers on another connection while its write into
// the /next connection fails (the runtime read the headers and never the
// rest) counts as delivered: it is not handed out a second time.
func TestRuntimeAPIAnsweredWhileWriteFails(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	r := dialRaw(t, addr)
	r.send("GET " + testNext + " HTTP/1.1\r\nHost: x\r\n\r\n")
	waitWaiting(t, a)
	// Larger than the socket buffers, with a deadline soon: the write
	// blocks until it fails.
	inv := newInvocation("once", bytes.Repeat([]byte("x"), maxResponse), "arn", "trace", 2*time.Second)
	delivered := make(chan bool, 1)
	go func() { delivered <- a.deliver(inv) }()
	tp := textprotoHeader(t, r)
	if tp != "once" {
		t.Fatalf("request id %q", tp)
	}
	c := dialRaw(t, addr)
	c.send("POST " + testInv + "once/response HTTP/1.1\r\nContent-Length: 2\r\n\r\nok")
	if resp, _ := c.answer(); resp.StatusCode != 202 {
		t.Fatalf("response: %d", resp.StatusCode)
	}
	select {
	case ok := <-delivered:
		if !ok {
			t.Fatal("deliver reported the answered event as not delivered")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("deliver did not return")
	}
	a.mu.Lock()
	queued, st := a.queued, a.state
	a.mu.Unlock()
	if queued != nil || st != apiAnswered {
		t.Fatalf("after the failed write: queued %v, state %d; want nothing queued, answered", queued, st)
	}
}

// textprotoHeader reads a response's header lines (not its body) and
// returns its request id.
func textprotoHeader(t *testing.T, r *raw) string {
	t.Helper()
	id := ""
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the event's header: %v", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return id
		}
		if v, ok := strings.CutPrefix(line, headerRequestID+": "); ok {
			id = v
		}
	}
}
