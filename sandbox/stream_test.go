package sandbox

import (
	"encoding/base64"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"nimbus/rpc"
)

// recordStream is a ResponseStream that records what it is given and tells
// each write on a channel.
type recordStream struct {
	mu     sync.Mutex
	ctype  string
	starts int
	data   strings.Builder
	writes chan string
	fail   bool // Write fails
}

func newRecordStream() *recordStream { return &recordStream{writes: make(chan string, 1024)} }

func (s *recordStream) Start(ct string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctype = ct
	s.starts++
	return nil
}

func (s *recordStream) Write(p []byte) error {
	s.mu.Lock()
	s.data.Write(p)
	fail := s.fail
	s.mu.Unlock()
	s.writes <- string(p)
	if fail {
		return errors.New("caller gone")
	}
	return nil
}

func (s *recordStream) Abort() {}

func (s *recordStream) got() (string, string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctype, s.data.String(), s.starts
}

// startStream hands a streamed invocation to a runtime on r.
func startStream(t *testing.T, a *runtimeAPI, r *raw, id string, st *recordStream) *invocation {
	t.Helper()
	r.send("GET " + testNext + " HTTP/1.1\r\nHost: x\r\n\r\n")
	waitWaiting(t, a)
	inv := newInvocation(id, []byte(`{}`), "arn", "trace", time.Minute)
	inv.stream, inv.streamEnd = st, make(chan struct{})
	if !a.deliver(inv) {
		t.Fatal("not delivered")
	}
	if resp, _ := r.answer(); resp.StatusCode != 200 {
		t.Fatalf("event: %d", resp.StatusCode)
	}
	return inv
}

func chunk(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }

// TestRuntimeAPIStreamedResponse: a chunked /response reaches the stream
// chunk by chunk while the runtime is still sending, with its Content-Type;
// the invocation ends at the last chunk, streamed.
func TestRuntimeAPIStreamedResponse(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	r := dialRaw(t, addr)
	st := newRecordStream()
	inv := startStream(t, a, r, "s-1", st)

	r.send("POST " + testInv + "s-1/response HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n" +
		"Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\nTrailer: Lambda-Runtime-Function-Error-Type\r\n\r\n" +
		chunk("first "))
	select {
	case w := <-st.writes:
		if w != "first " {
			t.Fatalf("first write %q", w)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first chunk was not passed on before the response ended")
	}
	select {
	case <-inv.done:
		t.Fatal("the invocation ended before its response did")
	default:
	}
	r.send(chunk("second") + "0\r\n\r\n")
	if resp, body := r.answer(); resp.StatusCode != 202 {
		t.Fatalf("response: %d %s", resp.StatusCode, body)
	}
	<-inv.done
	a.endStream(inv)
	ct, data, starts := st.got()
	if ct != "text/plain" || data != "first second" || starts != 1 {
		t.Fatalf("stream got %q %q (%d starts)", ct, data, starts)
	}
	if !inv.out.streamed || inv.out.errType != "" || len(inv.out.payload) != 0 {
		t.Fatalf("outcome %+v, want streamed", inv.out)
	}

	// A response with a Content-Length streams as well.
	st2 := newRecordStream()
	inv = startStream(t, a, r, "s-2", st2)
	r.send("POST " + testInv + "s-2/response HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	if resp, _ := r.answer(); resp.StatusCode != 202 {
		t.Fatalf("response: %d", resp.StatusCode)
	}
	<-inv.done
	a.endStream(inv)
	if _, data, _ := st2.got(); data != "hello" || !inv.out.streamed {
		t.Fatalf("stream got %q, outcome %+v", data, inv.out)
	}
}

// TestRuntimeAPIStreamErrorTrailer: an error the runtime reports in its
// trailer, as aws-lambda-go and AWS's runtime clients do midway through a
// response, is the invocation's error, its body passed through; in a
// buffered response too.
func TestRuntimeAPIStreamErrorTrailer(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	r := dialRaw(t, addr)
	st := newRecordStream()
	inv := startStream(t, a, r, "e-1", st)
	errBody := base64.StdEncoding.EncodeToString([]byte(`{"errorMessage":"disk on fire","errorType":"FireError"}`))
	r.send("POST " + testInv + "e-1/response HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		chunk("partial") + "0\r\nLambda-Runtime-Function-Error-Type: FireError\r\nLambda-Runtime-Function-Error-Body: " + errBody + "\r\n\r\n")
	if resp, _ := r.answer(); resp.StatusCode != 202 {
		t.Fatalf("response: %d", resp.StatusCode)
	}
	<-inv.done
	a.endStream(inv)
	if _, data, _ := st.got(); data != "partial" {
		t.Fatalf("stream got %q", data)
	}
	if inv.out.errType != "FireError" || string(inv.out.payload) != `{"errorMessage":"disk on fire","errorType":"FireError"}` {
		t.Fatalf("outcome %+v %s", inv.out, inv.out.payload)
	}

	// Buffered: no stream, the same trailer.
	r.send("GET " + testNext + " HTTP/1.1\r\nHost: x\r\n\r\n")
	waitWaiting(t, a)
	inv = newInvocation("e-2", []byte(`{}`), "arn", "trace", time.Minute)
	if !a.deliver(inv) {
		t.Fatal("not delivered")
	}
	r.answer()
	r.send("POST " + testInv + "e-2/response HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		chunk("{\"half\":") + "0\r\nLambda-Runtime-Function-Error-Type: Runtime.ReaderError\r\n\r\n")
	if resp, _ := r.answer(); resp.StatusCode != 202 {
		t.Fatalf("response: %d", resp.StatusCode)
	}
	<-inv.done
	if inv.out.errType != "Runtime.ReaderError" || inv.out.streamed {
		t.Fatalf("buffered outcome %+v %s", inv.out, inv.out.payload)
	}
}

// TestRuntimeAPIStreamCallerGone: once the stream's Write fails, it is
// given nothing more, and the runtime's response is still read to its end
// and accepted.
func TestRuntimeAPIStreamCallerGone(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	r := dialRaw(t, addr)
	st := newRecordStream()
	st.fail = true
	inv := startStream(t, a, r, "g-1", st)
	r.send("POST " + testInv + "g-1/response HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("one"))
	<-st.writes
	r.send(chunk("two") + chunk(strings.Repeat("x", 100<<10)) + "0\r\n\r\n")
	if resp, _ := r.answer(); resp.StatusCode != 202 {
		t.Fatalf("response: %d", resp.StatusCode)
	}
	<-inv.done
	a.endStream(inv)
	if len(st.writes) != 0 {
		t.Fatalf("%d writes after a failed one", len(st.writes))
	}
	if !inv.out.streamed {
		t.Fatalf("outcome %+v", inv.out)
	}
}

// TestRuntimeAPIStreamTimeout: an invocation that ends while its response
// is still streaming (the function's time ran out) closes the response's
// connection, and endStream returns only once the stream is no longer
// written.
func TestRuntimeAPIStreamTimeout(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	r := dialRaw(t, addr)
	st := newRecordStream()
	inv := startStream(t, a, r, "t-1", st)
	r.send("POST " + testInv + "t-1/response HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("tick"))
	<-st.writes
	inv.finish(functionError(rpc.ErrTypeTimedout, "Task timed out"))
	done := make(chan struct{})
	go func() { a.endStream(inv); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("endStream did not return for a response still streaming")
	}
	select {
	case <-inv.streamEnd:
	default:
		t.Fatal("endStream returned while the stream was still read")
	}
	if !r.closed() {
		t.Fatal("the streaming connection was left open")
	}
}

// TestRuntimeAPIStreamBandwidth: past its uncapped part a streamed
// response is passed on no faster than the rate (Lambda's 6 MB, then 2
// MB/s; here 64 KB, then 256 KB/s), and all of it arrives.
func TestRuntimeAPIStreamBandwidth(t *testing.T) {
	a := newRuntimeAPI()
	a.streamUncapped, a.streamRate = 64<<10, 256<<10
	addr := serveAPI(t, a)
	r := dialRaw(t, addr)
	st := newRecordStream()
	inv := startStream(t, a, r, "bw-1", st)
	const size = 64<<10 + 256<<10 // the uncapped part, then a second's worth
	body := strings.Repeat("x", size)
	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		_, err := io.WriteString(r.c, "POST "+testInv+"bw-1/response HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n"+body)
		sent <- err
	}()
	if resp, _ := r.answer(); resp.StatusCode != 202 {
		t.Fatalf("response: %d", resp.StatusCode)
	}
	took := time.Since(start)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	<-inv.done
	a.endStream(inv)
	if _, data, _ := st.got(); len(data) != size || !inv.out.streamed {
		t.Fatalf("stream got %d bytes, outcome %+v", len(data), inv.out)
	}
	// A floor the pacing sets, not a measure of speed: 256 KB past the
	// uncapped part at 256 KB/s cannot be passed on in much less than 1 s.
	if took < 900*time.Millisecond {
		t.Errorf("%d bytes past the uncapped part passed on in %v, faster than %d bytes/s", size-a.streamUncapped, took, a.streamRate)
	}
}
