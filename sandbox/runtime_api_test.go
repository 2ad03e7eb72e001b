package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nimbus/rpc"
)

// The Runtime API reads what a function sends: untrusted bytes. These tests
// drive the handlers directly, without a container.

// call makes one request with client (a Go net/http client: a runtime no
// one here wrote) and returns its status, headers and body.
func call(t *testing.T, client *http.Client, addr, method, path, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

const (
	testNext = "/2018-06-01/runtime/invocation/next"
	testInv  = "/2018-06-01/runtime/invocation/"
)

func TestRuntimeAPIRoundTrip(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	client := newClient(t)
	inv := newInvocation("req-1", []byte(`{"k":1}`), "arn:aws:lambda:local:0:function:f", "Root=1-a-b", 3*time.Second)
	inv.clientContext = `{"custom":{"a":"b"}}`
	if a.deliver(inv) {
		t.Fatal("delivered with no /next waiting")
	}

	code, h, body := call(t, client, addr, "GET", testNext, "")
	if code != 200 || body != `{"k":1}` {
		t.Fatalf("next: %d %q", code, body)
	}
	if h.Get(headerRequestID) != "req-1" || h.Get(headerFunctionARN) != inv.arn || h.Get(headerTraceID) != "Root=1-a-b" ||
		h.Get(headerClientContext) != inv.clientContext || h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", h)
	}
	if ms, err := strconv.ParseInt(h.Get(headerDeadline), 10, 64); err != nil || ms != inv.deadline.UnixMilli() {
		t.Fatalf("deadline %q, want %d", h.Get(headerDeadline), inv.deadline.UnixMilli())
	}
	select {
	case <-a.ready:
	default:
		t.Fatal("first /next did not mark init done")
	}
	select {
	case <-inv.delivered:
	case <-time.After(10 * time.Second):
		t.Fatal("delivered not closed once the event was written")
	}

	// A response for another request id is refused and changes nothing.
	if code, _, _ := call(t, client, addr, "POST", testInv+"other/response", "x"); code != http.StatusBadRequest {
		t.Fatalf("wrong id: %d", code)
	}
	if code, _, body := call(t, client, addr, "POST", testInv+"req-1/response", `"ok"`); code != http.StatusAccepted || body != `{"status":"OK"}` {
		t.Fatalf("response: %d %s", code, body)
	}
	<-inv.done
	if string(inv.out.payload) != `"ok"` || inv.out.errType != "" {
		t.Fatalf("outcome %+v", inv.out)
	}
	// A second answer to the same request is refused.
	for _, c := range []string{"error", "response"} {
		wantAPIError(t, client, addr, "POST", testInv+"req-1/"+c, `{}`, http.StatusForbidden, rpc.APIErrInvalidStateTransition)
	}
	// So is an init error after init.
	wantAPIError(t, client, addr, "POST", "/2018-06-01/runtime/init/error", `{}`, http.StatusForbidden, rpc.APIErrInvalidStateTransition)

	// Back in /next: the runtime's /next now waits, and the next
	// invocation is written into it by deliver itself.
	got := make(chan string, 1)
	go func() {
		_, h, body := call(t, client, addr, "GET", testNext, "")
		got <- h.Get(headerRequestID) + " " + body
	}()
	select {
	case <-a.back:
	case <-time.After(10 * time.Second):
		t.Fatal("the runtime's return to /next was not signalled")
	}
	waitWaiting(t, a)
	if !a.deliver(newInvocation("req-2", []byte(`2`), "arn", "trace", time.Second)) {
		t.Fatal("not delivered to the waiting /next")
	}
	if g := <-got; g != "req-2 2" {
		t.Fatalf("second event %q", g)
	}
}

// waitWaiting waits until a connection waits in /next.
func waitWaiting(t *testing.T, a *runtimeAPI) {
	t.Helper()
	waitWaiters(t, a, "a /next waiting", func(n int) bool { return n > 0 })
}

// waitWaiters waits until the number of connections waiting in /next
// satisfies ok.
func waitWaiters(t *testing.T, a *runtimeAPI, what string, ok func(int) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		a.mu.Lock()
		n := len(a.waiters)
		a.mu.Unlock()
		if ok(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%d waiting)", what, n)
		}
	}
}

func wantAPIError(t *testing.T, client *http.Client, addr, method, path, body string, code int, errType string) {
	t.Helper()
	got, h, b := call(t, client, addr, method, path, body)
	var p struct{ ErrorType, ErrorMessage string }
	if got != code || json.Unmarshal([]byte(b), &p) != nil || p.ErrorType != errType || p.ErrorMessage == "" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %s: got %d %s, want %d with errorType %s", method, path, got, b, code, errType)
	}
}

// An answer before any /next is refused; an init error is recorded once,
// after which /next and a second init error are refused.
func TestRuntimeAPIStateTransitions(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	client := newClient(t)
	wantAPIError(t, client, addr, "POST", testInv+"x/response", `1`, http.StatusForbidden, rpc.APIErrInvalidStateTransition)
	wantAPIError(t, client, addr, "POST", testInv+"x/error", `{}`, http.StatusForbidden, rpc.APIErrInvalidStateTransition)
	if code, _, _ := call(t, client, addr, "POST", "/2018-06-01/runtime/init/error", `{"errorType":"First","errorMessage":"a"}`); code != http.StatusAccepted {
		t.Fatalf("init error: %d", code)
	}
	select {
	case <-a.failed:
	default:
		t.Fatal("init error did not signal the invoker")
	}
	wantAPIError(t, client, addr, "POST", "/2018-06-01/runtime/init/error", `{"errorType":"Second"}`, http.StatusForbidden, rpc.APIErrInvalidStateTransition)
	wantAPIError(t, client, addr, "GET", testNext, ``, http.StatusForbidden, rpc.APIErrInvalidStateTransition)
	if o := a.initFailure(); o == nil || o.errType != "First" {
		t.Fatalf("init failure %+v, want the first one", o)
	}
}

// An oversized response is refused with 413 without being read into
// memory, and the connection goes on (its body is skipped).
func TestRuntimeAPIResponseTooLarge(t *testing.T) {
	a := newRuntimeAPI()
	addr := serveAPI(t, a)
	client := newClient(t)
	inv := newInvocation("big", nil, "arn", "trace", time.Minute)
	a.deliver(inv)
	call(t, client, addr, "GET", testNext, "")
	body := strings.Repeat("x", maxResponse+1)
	if code, _, _ := call(t, client, addr, "POST", testInv+"big/response", body); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", code)
	}
	<-inv.done
	if inv.out.errType != "Function.ResponseSizeTooLarge" {
		t.Fatalf("outcome %+v", inv.out)
	}
	inv2 := newInvocation("next", []byte(`{}`), "arn", "trace", time.Minute)
	a.deliver(inv2)
	if code, h, _ := call(t, client, addr, "GET", testNext, ""); code != 200 || h.Get(headerRequestID) != "next" {
		t.Fatalf("next after a refused response: %d %v", code, h)
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
			o := runtimeError(c.header, []byte(c.body))
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
		o := runtimeError(header, body)
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
	a.deliver(newInvocation("after", []byte(`{}`), "arn", "trace", time.Second))
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
	a.deliver(inv)
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

// A primed shim's GET of its environment waits for the claim's, is
// answered once, and is refused to a sandbox that is not primed or after
// the first; a sandbox that closes while it waits closes the connection.
func TestRuntimeAPIPrime(t *testing.T) {
	const testPrime = "/2018-06-01/runtime/nimbus/prime"
	plain := newRuntimeAPI()
	client := newClient(t)
	if code, _, body := call(t, client, serveAPI(t, plain), "GET", testPrime, ""); code != http.StatusForbidden {
		t.Errorf("a plain sandbox's prime: %d %s, want 403", code, body)
	}

	a := newRuntimeAPI()
	a.expectPrime()
	addr := serveAPI(t, a)
	env := []byte("FOO=bar\x00TZ=EST+5\x00")
	go func() {
		time.Sleep(100 * time.Millisecond)
		a.givePrime(env)
	}()
	code, _, body := call(t, client, addr, "GET", testPrime, "")
	if code != http.StatusOK || body != string(env) {
		t.Errorf("prime: %d %q, want 200 %q", code, body, env)
	}
	if code, _, body := call(t, client, addr, "GET", testPrime, ""); code != http.StatusForbidden {
		t.Errorf("a second prime: %d %s, want 403", code, body)
	}
	if code, _, _ := call(t, client, addr, "POST", testPrime, "x"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST prime: %d, want 405", code)
	}

	closing := newRuntimeAPI()
	closing.expectPrime()
	caddr := serveAPI(t, closing)
	go func() {
		time.Sleep(100 * time.Millisecond)
		closing.close()
	}()
	req, _ := http.NewRequest("GET", "http://"+caddr+testPrime, nil)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("prime of a closed sandbox: %d, want the connection closed", resp.StatusCode)
	}
}
