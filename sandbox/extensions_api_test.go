package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// extCall is one Extensions API request with its Lambda-Extension headers.
func extCall(t *testing.T, client *http.Client, addr, method, path, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func wantExtError(t *testing.T, code int, body string, wantCode int, wantType string) {
	t.Helper()
	var p struct{ ErrorType, ErrorMessage string }
	if code != wantCode || json.Unmarshal([]byte(body), &p) != nil || p.ErrorType != wantType || p.ErrorMessage == "" {
		t.Fatalf("got %d %s, want %d with errorType %s", code, body, wantCode, wantType)
	}
}

// Registration during init only, with Lambda's refusals; INVOKE events for
// each invocation handed out, SHUTDOWN at the end; the Telemetry API says
// it is not supported.
func TestExtensionsAPI(t *testing.T) {
	a := newRuntimeAPI()
	a.setFunction("f", "$LATEST", "bootstrap")
	addr := serveAPI(t, a)
	client := newClient(t)

	code, _, body := extCall(t, client, addr, "POST", pathExtRegister, `{"events":["INVOKE"]}`)
	wantExtError(t, code, body, http.StatusForbidden, extErrMissingHeader)
	code, _, body = extCall(t, client, addr, "POST", pathExtRegister, `{"events":["BOOT"]}`, headerExtName, "x")
	wantExtError(t, code, body, http.StatusBadRequest, extErrInvalidEvent)
	code, _, body = extCall(t, client, addr, "POST", pathExtRegister, `{"events":`, headerExtName, "x")
	wantExtError(t, code, body, http.StatusBadRequest, extErrInvalidFormat)
	code, h, body := extCall(t, client, addr, "POST", pathExtRegister, `{"events":["INVOKE","SHUTDOWN"]}`, headerExtName, "ext")
	id := h.Get(headerExtID)
	if code != http.StatusOK || len(id) != 36 || body != `{"functionName":"f","functionVersion":"$LATEST","handler":"bootstrap"}` {
		t.Fatalf("register: %d %q %s", code, id, body)
	}
	code, _, body = extCall(t, client, addr, "POST", pathExtRegister, `{}`, headerExtName, "ext")
	wantExtError(t, code, body, http.StatusForbidden, extErrInvalidName)
	// aws-lambda-go's internal extension registers with no events.
	code, h, _ = extCall(t, client, addr, "POST", pathExtRegister, `{"events":null}`, headerExtName, "GoLangEnableSIGTERM")
	if code != http.StatusOK || h.Get(headerExtID) == "" {
		t.Fatalf("register with no events: %d", code)
	}
	if anyExt, shutdown := a.hasExtensions(); !anyExt || !shutdown {
		t.Fatalf("hasExtensions = %v, %v", anyExt, shutdown)
	}
	code, _, body = extCall(t, client, addr, "GET", pathExtNext, ``, headerExtID, "nope")
	wantExtError(t, code, body, http.StatusForbidden, extErrUnknownID)
	// Refused error reports (a runtime is untrusted: they once unlocked a
	// mutex twice, which ends the agent) leave the connection usable.
	for range 2 {
		code, _, body = extCall(t, client, addr, "POST", pathExtInitErr, `{"errorType":"X"}`)
		wantExtError(t, code, body, http.StatusForbidden, extErrMissingHeader)
		code, _, body = extCall(t, client, addr, "POST", pathExtInitErr, `{"errorType":"X"}`, headerExtID, "nope")
		wantExtError(t, code, body, http.StatusForbidden, extErrUnknownID)
		code, _, body = extCall(t, client, addr, "POST", pathExtExitErr, `{"errorType":"X"}`, headerExtID, "nope")
		wantExtError(t, code, body, http.StatusForbidden, extErrUnknownID)
	}
	code, _, body = extCall(t, client, addr, "GET", "/2022-07-01/telemetry", ``)
	wantExtError(t, code, body, http.StatusNotImplemented, "Telemetry.NotSupported")

	events := make(chan string, 4)
	go func() {
		for range 2 {
			_, _, body := extCall(t, newClient(t), addr, "GET", pathExtNext, ``, headerExtID, id)
			events <- body
		}
	}()
	// The runtime's /next ends init; an invocation handed to it is the
	// extension's INVOKE.
	runtimeGot := make(chan string, 1)
	go func() {
		_, h, _ := call(t, newClient(t), addr, "GET", testNext, "")
		runtimeGot <- h.Get(headerRequestID)
	}()
	select {
	case <-a.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the runtime's /next did not end init")
	}
	waitWaiting(t, a)
	inv := newInvocation("req-1", []byte(`{}`), "arn:aws:lambda:us-east-1:000000000000:function:f", "Root=1", time.Minute)
	a.deliver(inv)
	if got := <-runtimeGot; got != "req-1" {
		t.Fatalf("the runtime got %q", got)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(<-events), &ev); err != nil || ev["eventType"] != "INVOKE" || ev["requestId"] != "req-1" ||
		ev["invokedFunctionArn"] != inv.arn || ev["deadlineMs"].(float64) != float64(inv.deadline.UnixMilli()) {
		t.Fatalf("INVOKE event: %v (%v)", ev, err)
	}
	code, _, body = extCall(t, client, addr, "POST", pathExtRegister, `{}`, headerExtName, "late")
	wantExtError(t, code, body, http.StatusForbidden, extErrRegClosed)
	// The SHUTDOWN event reaches the extension whether or not it waits
	// in /event/next yet: it is kept until it asks.
	a.shutdownEvent("spindown", time.Now().Add(2*time.Second))
	if err := json.Unmarshal([]byte(<-events), &ev); err != nil || ev["eventType"] != "SHUTDOWN" || ev["shutdownReason"] != "spindown" {
		t.Fatalf("SHUTDOWN event: %v (%v)", ev, err)
	}
	// An extension that exits gets nothing more.
	if code, _, body := extCall(t, client, addr, "POST", pathExtExitErr, `{"errorType":"Extension.Crash"}`, headerExtID, id,
		headerExtErrorType, "Extension.Crash"); code != http.StatusAccepted {
		t.Fatalf("exit error: %d %s", code, body)
	}
	code, _, body = extCall(t, client, addr, "GET", pathExtNext, ``, headerExtID, id)
	wantExtError(t, code, body, http.StatusForbidden, extErrInvalidState)
}
