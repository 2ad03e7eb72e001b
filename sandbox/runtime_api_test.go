package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"nimbus/rpc"
)

// The Runtime API reads what a function sends: untrusted bytes. These tests
// drive the handlers directly, without a container.

func TestRuntimeAPIRoundTrip(t *testing.T) {
	a := newRuntimeAPI()
	inv := newInvocation("req-1", []byte(`{"k":1}`), "arn:aws:lambda:local:0:function:f", "Root=1-a-b", 3*time.Second)
	a.pending <- inv

	rec := httptest.NewRecorder()
	a.srv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/2018-06-01/runtime/invocation/next", nil))
	if rec.Code != 200 || rec.Body.String() != `{"k":1}` {
		t.Fatalf("next: %d %q", rec.Code, rec.Body)
	}
	h := rec.Header()
	if h.Get(headerRequestID) != "req-1" || h.Get(headerFunctionARN) == "" || h.Get(headerTraceID) != "Root=1-a-b" || h.Get(headerDeadline) == "" {
		t.Fatalf("headers %v", h)
	}
	select {
	case <-a.ready:
	default:
		t.Fatal("first /next did not mark init done")
	}

	// A response for another request id is refused and changes nothing.
	rec = httptest.NewRecorder()
	a.srv.Handler.ServeHTTP(rec, httptest.NewRequest("POST", "/2018-06-01/runtime/invocation/other/response", strings.NewReader("x")))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("wrong id: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	a.srv.Handler.ServeHTTP(rec, httptest.NewRequest("POST", "/2018-06-01/runtime/invocation/req-1/response", strings.NewReader(`"ok"`)))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("response: %d", rec.Code)
	}
	<-inv.done
	if string(inv.out.payload) != `"ok"` || inv.out.errType != "" {
		t.Fatalf("outcome %+v", inv.out)
	}
	// A second answer to the same request is refused.
	for _, call := range []string{"error", "response"} {
		rec = httptest.NewRecorder()
		a.srv.Handler.ServeHTTP(rec, httptest.NewRequest("POST", "/2018-06-01/runtime/invocation/req-1/"+call, strings.NewReader(`{}`)))
		wantAPIError(t, rec, http.StatusForbidden, rpc.APIErrInvalidStateTransition)
	}
	// So is an init error after init.
	rec = httptest.NewRecorder()
	a.srv.Handler.ServeHTTP(rec, httptest.NewRequest("POST", "/2018-06-01/runtime/init/error", strings.NewReader(`{}`)))
	wantAPIError(t, rec, http.StatusForbidden, rpc.APIErrInvalidStateTransition)
}

func wantAPIError(t *testing.T, rec *httptest.ResponseRecorder, code int, errType string) {
	t.Helper()
	var p struct{ ErrorType, ErrorMessage string }
	if rec.Code != code || json.Unmarshal(rec.Body.Bytes(), &p) != nil || p.ErrorType != errType || p.ErrorMessage == "" {
		t.Fatalf("got %d %s, want %d with errorType %s", rec.Code, rec.Body, code, errType)
	}
}

// An answer before any /next is refused; an init error is recorded once,
// after which /next and a second init error are refused.
func TestRuntimeAPIStateTransitions(t *testing.T) {
	a := newRuntimeAPI()
	serve := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		a.srv.Handler.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	wantAPIError(t, serve("POST", "/2018-06-01/runtime/invocation/x/response", `1`), http.StatusForbidden, rpc.APIErrInvalidStateTransition)
	wantAPIError(t, serve("POST", "/2018-06-01/runtime/invocation/x/error", `{}`), http.StatusForbidden, rpc.APIErrInvalidStateTransition)
	if rec := serve("POST", "/2018-06-01/runtime/init/error", `{"errorType":"First","errorMessage":"a"}`); rec.Code != http.StatusAccepted {
		t.Fatalf("init error: %d", rec.Code)
	}
	select {
	case <-a.failed:
	default:
		t.Fatal("init error did not signal the invoker")
	}
	wantAPIError(t, serve("POST", "/2018-06-01/runtime/init/error", `{"errorType":"Second"}`), http.StatusForbidden, rpc.APIErrInvalidStateTransition)
	wantAPIError(t, serve("GET", "/2018-06-01/runtime/invocation/next", ``), http.StatusForbidden, rpc.APIErrInvalidStateTransition)
	if o := a.initFailure(); o == nil || o.errType != "First" {
		t.Fatalf("init failure %+v, want the first one", o)
	}
}

func TestRuntimeAPIResponseTooLarge(t *testing.T) {
	a := newRuntimeAPI()
	inv := newInvocation("big", nil, "arn", "trace", time.Second)
	a.pending <- inv
	a.srv.Handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/2018-06-01/runtime/invocation/next", nil))
	rec := httptest.NewRecorder()
	body := bytes.Repeat([]byte("x"), maxResponse+1)
	a.srv.Handler.ServeHTTP(rec, httptest.NewRequest("POST", "/2018-06-01/runtime/invocation/big/response", bytes.NewReader(body)))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", rec.Code)
	}
	<-inv.done
	if inv.out.errType != "Function.ResponseSizeTooLarge" {
		t.Fatalf("outcome %+v", inv.out)
	}
}

func TestReadRuntimeError(t *testing.T) {
	frames := `{"errorMessage":"boom","errorType":"string","stackTrace":[{"path":"main.go","line":3,"label":"handler"}]}`
	cases := []struct {
		name, header, body string
		wantType, wantBody string // wantBody "" means: not checked byte for byte
		wantMessage        string
	}{
		{"aws-lambda-go panic, passed through", "", frames, "string", frames, "boom"},
		{"node trace and extra fields kept", "", `{"errorType":"TypeError","errorMessage":"x","trace":["a","b"],"extra":1}`,
			"TypeError", `{"errorType":"TypeError","errorMessage":"x","trace":["a","b"],"extra":1}`, "x"},
		{"header fills a missing type", "Handled.X", `{"errorMessage":"boom"}`, "Handled.X", `{"errorType":"Handled.X","errorMessage":"boom"}`, "boom"},
		{"missing type and header", "", ` { } `, rpc.ErrTypeUnknown, ` {"errorType":"Runtime.Unknown" } `, ""},
		{"empty type replaced", "H", `{"errorType":"","errorMessage":"m"}`, "H", "", "m"},
		{"type not a string replaced", "", `{"errorType":7,"errorMessage":"m"}`, rpc.ErrTypeUnknown, "", "m"},
		{"plain text body", "Runtime.Foo", "not json", rpc.ErrTypeUnknown, "", "not json"},
		{"nothing at all", "", "", rpc.ErrTypeUnknown, "", ""},
		{"json but not an error object", "", `[1,2]`, rpc.ErrTypeUnknown, "", "[1,2]"},
		{"json null", "", `null`, rpc.ErrTypeUnknown, "", "null"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/x", strings.NewReader(c.body))
			if c.header != "" {
				r.Header.Set(headerErrorType, c.header)
			}
			o := newRuntimeAPI().readRuntimeError(httptest.NewRecorder(), r)
			var p struct{ ErrorType, ErrorMessage string }
			if err := json.Unmarshal(o.payload, &p); err != nil {
				t.Fatalf("payload %q is not JSON: %v", o.payload, err)
			}
			if o.errType != c.wantType || p.ErrorType != c.wantType {
				t.Fatalf("type %q / %q, want %q", o.errType, p.ErrorType, c.wantType)
			}
			if p.ErrorMessage != c.wantMessage {
				t.Errorf("message %q, want %q", p.ErrorMessage, c.wantMessage)
			}
			if c.wantBody != "" && string(o.payload) != c.wantBody {
				t.Errorf("body %s, want %s", o.payload, c.wantBody)
			}
		})
	}
}

// FuzzReadRuntimeError: whatever a function posts as its error, the caller
// gets a JSON object with a non-empty errorType.
func FuzzReadRuntimeError(f *testing.F) {
	f.Add("", []byte(`{"errorType":"E","errorMessage":"m"}`))
	f.Add("Runtime.X", []byte("plain"))
	f.Add("", []byte(`{"errorType":1}`))
	f.Add("T", []byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		r := httptest.NewRequest("POST", "/x", bytes.NewReader(body))
		if strings.ContainsAny(header, "\r\n\x00") {
			header = ""
		}
		r.Header.Set(headerErrorType, header)
		o := newRuntimeAPI().readRuntimeError(httptest.NewRecorder(), r)
		var p map[string]json.RawMessage
		if err := json.Unmarshal(o.payload, &p); err != nil {
			t.Fatalf("payload %q is not a JSON object: %v", o.payload, err)
		}
		var typ string
		if err := json.Unmarshal(p["errorType"], &typ); err != nil || typ == "" || o.errType == "" {
			t.Fatalf("no errorType string in %q for %q %q", o.payload, header, body)
		}
	})
}

// serveAPI serves a on a loopback listener of the test's own.
func serveAPI(t *testing.T, a *runtimeAPI) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go a.serve(ln)
	t.Cleanup(a.close)
	return ln.Addr().String()
}

// A runtime hoarding connections gets at most apiMaxConns; the rest are
// closed at once, and once it lets go, the API serves again.
func TestRuntimeAPIConnectionLimit(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	var conns []net.Conn
	for i := 0; i < 3*apiMaxConns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF || errors.Is(err, syscall.ECONNRESET) {
			closed++
		}
	}
	if closed != 2*apiMaxConns {
		t.Errorf("%d of %d connections closed, want all but %d", closed, len(conns), apiMaxConns)
	}
	for _, c := range conns {
		c.Close()
	}
	a.pending <- newInvocation("after", []byte(`{}`), "arn", "trace", time.Second)
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; {
		r, err := http.Get("http://" + addr + "/2018-06-01/runtime/invocation/next")
		if err == nil {
			resp = r
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection slot after the hoarder let go: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(headerRequestID) != "after" {
		t.Fatalf("next after the hoarder: %d %v", resp.StatusCode, resp.Header)
	}
}

// A body that stalls is given up after the body deadline: the invocation
// fails with Runtime.ResponseError instead of holding the agent, and an
// oversized one is refused with 413 without growing past the limit.
func TestRuntimeAPIStalledBody(t *testing.T) {
	a := newRuntimeAPI()
	a.bodyTimeout = 200 * time.Millisecond
	addr := serveAPI(t, a)
	inv := newInvocation("stall", nil, "arn", "trace", time.Minute)
	a.pending <- inv
	resp, err := http.Get("http://" + addr + "/2018-06-01/runtime/invocation/next")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /2018-06-01/runtime/invocation/stall/response HTTP/1.1\r\nHost: x\r\nContent-Length: 6000000\r\n\r\npartial")
	select {
	case <-inv.done:
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled body held the invocation")
	}
	if inv.out.errType != rpc.ErrTypeResponseError {
		t.Fatalf("outcome %+v, want Runtime.ResponseError", inv.out)
	}
}
