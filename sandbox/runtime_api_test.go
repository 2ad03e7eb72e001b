package sandbox

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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
	rec = httptest.NewRecorder()
	a.srv.Handler.ServeHTTP(rec, httptest.NewRequest("POST", "/2018-06-01/runtime/invocation/req-1/error", strings.NewReader(`{}`)))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("second answer: %d", rec.Code)
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
	cases := []struct {
		name, header, body, wantType string
	}{
		{"json body", "", `{"errorType":"MyError","errorMessage":"boom"}`, "MyError"},
		{"header fills a missing type", "Handled.X", `{"errorMessage":"boom"}`, "Handled.X"},
		{"plain text body", "Runtime.Foo", "not json", "Runtime.Foo"},
		{"nothing at all", "", "", "Runtime.Unknown"},
		{"json but not an error object", "", `[1,2]`, "Runtime.Unknown"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/x", strings.NewReader(c.body))
			if c.header != "" {
				r.Header.Set(headerErrorType, c.header)
			}
			o := readRuntimeError(r)
			var p struct{ ErrorType, ErrorMessage string }
			if err := json.Unmarshal(o.payload, &p); err != nil {
				t.Fatalf("payload %q is not JSON: %v", o.payload, err)
			}
			if o.errType != c.wantType || p.ErrorType != c.wantType {
				t.Fatalf("type %q / %q, want %q", o.errType, p.ErrorType, c.wantType)
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
		o := readRuntimeError(r)
		var p struct{ ErrorType string }
		if err := json.Unmarshal(o.payload, &p); err != nil {
			t.Fatalf("payload %q is not JSON: %v", o.payload, err)
		}
		if o.errType == "" || p.ErrorType == "" {
			t.Fatalf("empty error type for %q %q", header, body)
		}
	})
}
