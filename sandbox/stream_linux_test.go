package sandbox

import (
	"context"
	"strings"
	"testing"
	"time"
)

// timedStream records when each write came.
type timedStream struct {
	recordStream
	first time.Time
}

func (s *timedStream) Write(p []byte) error {
	if s.first.IsZero() {
		s.first = time.Now()
	}
	return s.recordStream.Write(p)
}

// TestStreamedResponseInASandbox: aws-lambda-go streams a handler's
// io.Reader; with Request.Stream the caller gets its lines as they are
// written, the first long before the function ends, and a reader that
// fails midway is the invocation's error after the lines it gave. Without
// a stream, the same function's response is buffered whole.
func TestStreamedResponseInASandbox(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{})
	code := codeDir(t, gofnBin)
	fn := fnConfig("streamer", 1)

	st := &timedStream{recordStream: *newRecordStream()}
	res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: code, Payload: []byte(`{"do":"stream","n":3}`), Stream: st})
	if err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	ct, data, starts := st.got()
	if res.ErrorType != "" || !res.Streamed || len(res.Payload) != 0 {
		t.Fatalf("result %+v %s", res, res.Payload)
	}
	if data != "line 0\nline 1\nline 2\n" || starts != 1 || ct != "application/octet-stream" {
		t.Fatalf("stream got %q as %q (%d starts)", data, ct, starts)
	}
	// The lines are a second apart: the first came before the last was
	// written, not with the whole response.
	if gap := returned.Sub(st.first); gap < time.Second {
		t.Fatalf("the first line came %v before the end: it was not streamed", gap)
	}

	st = &timedStream{recordStream: *newRecordStream()}
	res, err = m.Invoke(context.Background(), &Request{Function: fn, CodeDir: code, Payload: []byte(`{"do":"streamfail","n":2}`), Stream: st})
	if err != nil {
		t.Fatal(err)
	}
	if _, data, _ := st.got(); data != "line 0\nline 1\n" {
		t.Fatalf("stream got %q before the failure", data)
	}
	if res.ErrorType == "" || !strings.Contains(string(res.Payload), "the stream broke midway") {
		t.Fatalf("a failed stream: %q %s", res.ErrorType, res.Payload)
	}

	// A function that streams past its timeout: Sandbox.Timedout, after
	// the lines it sent in time.
	slow := fnConfig("slowstreamer", 1)
	slow.TimeoutSec = 2
	st = &timedStream{recordStream: *newRecordStream()}
	res, err = m.Invoke(context.Background(), &Request{Function: slow, CodeDir: code, Payload: []byte(`{"do":"stream","n":10}`), Stream: st})
	if err != nil {
		t.Fatal(err)
	}
	if _, data, _ := st.got(); res.ErrorType != "Sandbox.Timedout" || !strings.HasPrefix(data, "line 0\n") || strings.Contains(data, "line 5") {
		t.Fatalf("streamed past its timeout: %q %s, after %q", res.ErrorType, res.Payload, data)
	}

	res = invoke(t, m, fn, code, `{"do":"stream","n":2}`)
	if res.ErrorType != "" || string(res.Payload) != "line 0\nline 1\n" || res.Streamed {
		t.Fatalf("buffered: %+v %q", res, res.Payload)
	}
	res = invoke(t, m, fn, code, `{"do":"streamfail","n":1}`)
	if res.ErrorType == "" || !strings.Contains(string(res.Payload), "the stream broke midway") {
		t.Fatalf("buffered failure: %q %s", res.ErrorType, res.Payload)
	}
}
