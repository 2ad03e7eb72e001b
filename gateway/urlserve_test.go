package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"nimbus/rpc"
)

func TestParseURLResponse(t *testing.T) {
	t.Parallel()
	ok := []struct {
		payload string
		status  int
		body    string
		header  [2]string
	}{
		{`{"statusCode":201,"headers":{"X-A":"b"},"body":"hi"}`, 201, "hi", [2]string{"X-A", "b"}},
		{`{"statusCode":200,"body":"aGk=","isBase64Encoded":true,"headers":{"content-type":"text/plain"}}`, 200, "hi", [2]string{"content-type", "text/plain"}},
		{`{"statusCode":204}`, 204, "", [2]string{}},
		{`{"message":"no status"}`, 200, `{"message":"no status"}`, [2]string{"Content-Type", "application/json"}},
		{`"just a string"`, 200, `"just a string"`, [2]string{"Content-Type", "application/json"}},
		{` [1,2] `, 200, `[1,2]`, [2]string{"Content-Type", "application/json"}},
		{`{"statusCode":200,"body":"{}"}`, 200, `{}`, [2]string{"Content-Type", "application/json"}},
	}
	for _, c := range ok {
		res, err := parseURLResponse([]byte(c.payload))
		if err != nil {
			t.Errorf("%s: %v", c.payload, err)
			continue
		}
		if res.StatusCode != c.status || string(res.Body) != c.body || (c.header[0] != "" && res.Headers[c.header[0]] != c.header[1]) {
			t.Errorf("%s: %+v", c.payload, res)
		}
	}
	res, _ := parseURLResponse([]byte(`{"statusCode":200,"cookies":["a=1","b=2"]}`))
	if len(res.Cookies) != 2 {
		t.Errorf("cookies = %v", res.Cookies)
	}
	bad := []string{
		`not json`, `{"statusCode":"200"}`, `{"statusCode":99}`, `{"statusCode":600}`, `{"statusCode":2.5}`,
		`{"statusCode":200,"body":5}`, `{"statusCode":200,"headers":{"a":1}}`, `{"statusCode":200,"headers":["a"]}`,
		`{"statusCode":200,"body":"@@","isBase64Encoded":true}`, `{"statusCode":200,"isBase64Encoded":"yes"}`,
		`{"statusCode":200,"headers":{"X":"a\r\nSet-Cookie: evil"}}`, `{"statusCode":200,"headers":{"Bad Name":"a"}}`,
		`{"statusCode":200,"cookies":"a=1"}`, `{"statusCode":200,"cookies":["a\n"]}`, ``,
	}
	for _, p := range bad {
		if res, err := parseURLResponse([]byte(p)); err == nil {
			t.Errorf("%q accepted: %+v", p, res)
		}
	}
}

// FuzzParseURLResponse: any bytes a function returns are either refused or
// give a response with a valid status and headers that cannot split the
// HTTP answer.
func FuzzParseURLResponse(f *testing.F) {
	for _, s := range []string{`{"statusCode":200,"body":"x"}`, `{"a":1}`, `"s"`, `{"statusCode":302,"headers":{"Location":"/"},"cookies":["a=b"]}`,
		`{"statusCode":200,"body":"aGk=","isBase64Encoded":true}`, `{"statusCode":1e3}`, `{`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		res, err := parseURLResponse(payload)
		if err != nil {
			return
		}
		if res.StatusCode < 100 || res.StatusCode > 599 {
			t.Fatalf("status %d", res.StatusCode)
		}
		for k, v := range res.Headers {
			if strings.ContainsAny(k, "\r\n") || strings.ContainsAny(v, "\r\n") {
				t.Fatalf("header %q: %q", k, v)
			}
		}
		if len(res.Body) > len(payload) {
			t.Fatalf("body of %d bytes from a payload of %d", len(res.Body), len(payload))
		}
	})
}

// decodeEvent decodes an event as aws-lambda-go's handler would.
func decodeEvent(t testing.TB, ev []byte) events.LambdaFunctionURLRequest {
	t.Helper()
	var req events.LambdaFunctionURLRequest
	if err := json.Unmarshal(ev, &req); err != nil {
		t.Fatalf("the event does not decode as events.LambdaFunctionURLRequest: %v\n%s", err, ev)
	}
	return req
}

func TestBuildURLEvent(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest("POST", "http://node:9000/lambda-url/x/a%20b/c?k=1&k=2&z=", strings.NewReader(`{"x":1}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Add("X-Multi", "one")
	r.Header.Add("X-Multi", "two")
	r.Header.Set("Cookie", "a=1; b=2")
	r.Header.Set("User-Agent", "curl/8")
	now := time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC)
	ev, err := buildURLEvent(r, "x", "/a%20b/c", "req-1", []byte(`{"x":1}`), now)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeEvent(t, ev)
	checks := []struct {
		what      string
		got, want any
	}{
		{"version", got.Version, "2.0"},
		{"rawPath", got.RawPath, "/a b/c"},
		{"rawQueryString", got.RawQueryString, "k=1&k=2&z="},
		{"query k", got.QueryStringParameters["k"], "1,2"},
		{"header", got.Headers["x-multi"], "one,two"},
		{"content-type", got.Headers["content-type"], "application/json"},
		{"cookies", strings.Join(got.Cookies, "|"), "a=1|b=2"},
		{"method", got.RequestContext.HTTP.Method, "POST"},
		{"path", got.RequestContext.HTTP.Path, "/a b/c"},
		{"sourceIp", got.RequestContext.HTTP.SourceIP, "192.0.2.1"},
		{"userAgent", got.RequestContext.HTTP.UserAgent, "curl/8"},
		{"requestId", got.RequestContext.RequestID, "req-1"},
		{"time", got.RequestContext.Time, "01/Dec/2026:23:00:00 +0000"},
		{"timeEpoch", got.RequestContext.TimeEpoch, now.UnixMilli()},
		{"body", got.Body, `{"x":1}`},
		{"isBase64Encoded", got.IsBase64Encoded, false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if _, ok := got.Headers["cookie"]; ok {
		t.Error("cookies also in headers")
	}
	// Binary bodies are base64.
	bin := []byte{0xff, 0x00, 0x01}
	r = httptest.NewRequest("PUT", "http://node/lambda-url/x/", bytes.NewReader(bin))
	r.Header.Set("Content-Type", "application/octet-stream")
	ev, _ = buildURLEvent(r, "x", "/", "req-2", bin, now)
	got = decodeEvent(t, ev)
	if dec, _ := base64.StdEncoding.DecodeString(got.Body); !got.IsBase64Encoded || !bytes.Equal(dec, bin) {
		t.Errorf("binary body: %q base64 %v", got.Body, got.IsBase64Encoded)
	}
}

// FuzzBuildURLEvent: whatever a caller sends, the event decodes as
// aws-lambda-go's events.LambdaFunctionURLRequest and carries the body
// back exactly.
func FuzzBuildURLEvent(f *testing.F) {
	f.Add("GET", "/", "a=1", "text/plain", "X-A", "v", []byte("hello"))
	f.Add("POST", "/x%2Fy", "", "application/octet-stream", "Cookie", "a=1;;b", []byte{0, 0xff})
	f.Add("PATCH", "/%zz", "%%", "text/html; charset=\xff", "x", "\x00", []byte("\xc3\x28"))
	f.Fuzz(func(t *testing.T, method, path, query, ctype, hk, hv string, body []byte) {
		r := &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: query}, Header: http.Header{}, Host: "h", Proto: "HTTP/1.1", RemoteAddr: "1.2.3.4:5"}
		r.Header.Set("Content-Type", ctype)
		r.Header[hk] = []string{hv}
		ev, err := buildURLEvent(r, "id", path, "rid", body, time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		got := decodeEvent(t, ev)
		back := []byte(got.Body)
		if got.IsBase64Encoded {
			if back, err = base64.StdEncoding.DecodeString(got.Body); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(back, body) {
			t.Fatalf("body %q came back as %q", body, back)
		}
	})
}

// fakeURLOps serves one URL (id urlID) over a function that answers with
// answer; calls counts invocations.
func fakeURLOps(t *testing.T, cfg *rpc.FunctionURL, answer func(payload []byte) (*rpc.InvokeResponse, error), calls *int) Operations {
	ops := refusingOps(t)
	ops.ResolveURL = func(_ context.Context, req *rpc.ResolveURLRequest) (*rpc.URLResponse, error) {
		if req.ID != cfg.ID {
			return nil, rpc.Errorf(rpc.CodeResourceNotFound, "no")
		}
		return &rpc.URLResponse{Config: cfg}, nil
	}
	ops.Invoke = func(_ context.Context, req *rpc.InvokeRequest) (*rpc.InvokeResponse, error) {
		*calls++
		if req.FunctionName != cfg.FunctionName || req.Qualifier != cfg.Qualifier {
			t.Errorf("invoked %s:%s", req.FunctionName, req.Qualifier)
		}
		return answer(req.Payload)
	}
	return ops
}

func TestServeURL(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("q", 32)
	cfg := &rpc.FunctionURL{FunctionName: "f", Qualifier: "live", ID: id, AuthType: rpc.URLAuthToken, Token: "s3cret", InvokeMode: rpc.URLInvokeBuffered,
		Cors: &rpc.Cors{AllowOrigins: []string{"https://app.example"}, AllowMethods: []string{"GET", "POST"}, AllowHeaders: []string{"content-type"}, ExposeHeaders: []string{"x-id"}, MaxAge: 300}}
	answer := func(p []byte) (*rpc.InvokeResponse, error) {
		ev := decodeEvent(t, p)
		switch ev.RawPath {
		case "/crash":
			return &rpc.InvokeResponse{FunctionError: rpc.FunctionErrorUnhandled, Payload: []byte(`{"errorType":"x"}`)}, nil
		case "/garbled":
			return &rpc.InvokeResponse{Payload: []byte(`{"statusCode":"teapot"}`)}, nil
		case "/busy":
			return nil, rpc.Errorf(rpc.CodeTooManyRequests, "Rate Exceeded.")
		}
		out, _ := json.Marshal(map[string]any{"statusCode": 201, "headers": map[string]string{"x-id": "7"}, "body": ev.RequestContext.HTTP.Method + " " + ev.RawPath})
		return &rpc.InvokeResponse{Payload: out}, nil
	}
	var calls int
	_, base := serve(t, Options{Ops: fakeURLOps(t, cfg, answer, &calls), MaxZipSize: 4 << 10, URLDomain: "urls.test"})
	send := func(method, target, host string, hdr map[string]string, body io.Reader) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+target, body)
		if host != "" {
			req.Host = host
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	auth := map[string]string{"Authorization": "Bearer s3cret", "Origin": "https://app.example"}
	resp, body := send("POST", "/lambda-url/"+id+"/hello", "", auth, strings.NewReader("x"))
	if resp.StatusCode != 201 || body != "POST /hello" || resp.Header.Get("X-Id") != "7" ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || resp.Header.Get("Access-Control-Expose-Headers") != "x-id" {
		t.Fatalf("path-based: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp, body = send("GET", "/deep/path", id+".urls.test:9000", auth, nil); resp.StatusCode != 201 || body != "GET /deep/path" {
		t.Fatalf("host-based: %d %q", resp.StatusCode, body)
	}
	before := calls
	// Preflight: answered without invoking, and without a token.
	resp, _ = send("OPTIONS", "/lambda-url/"+id+"/hello", "", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		resp.Header.Get("Access-Control-Allow-Methods") != "GET,POST" || resp.Header.Get("Access-Control-Max-Age") != "300" || resp.Header.Get("Access-Control-Allow-Headers") != "content-type" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = send("OPTIONS", "/lambda-url/"+id+"/hello", "", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, nil)
	if resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Access-Control-Allow-Methods") != "" {
		t.Fatalf("preflight from a disallowed origin allowed: %v", resp.Header)
	}
	refusals := []struct {
		name, method, target string
		hdr                  map[string]string
		body                 io.Reader
		status               int
	}{
		{"no token", "GET", "/lambda-url/" + id + "/", nil, nil, 403},
		{"wrong token", "GET", "/lambda-url/" + id + "/", map[string]string{"Authorization": "Bearer guess"}, nil, 403},
		{"unknown id", "GET", "/lambda-url/" + strings.Repeat("z", 32) + "/", auth, nil, 404},
		{"malformed id", "GET", "/lambda-url/NOPE/", auth, nil, 404},
		{"body over 6 MB", "POST", "/lambda-url/" + id + "/", auth, bytes.NewReader(make([]byte, rpc.MaxSyncPayload+1)), 413},
	}
	for _, c := range refusals {
		if resp, body := send(c.method, c.target, "", c.hdr, c.body); resp.StatusCode != c.status || !strings.Contains(body, `"Message"`) {
			t.Errorf("%s: %d %q, want %d", c.name, resp.StatusCode, body, c.status)
		}
	}
	if calls != before {
		t.Fatalf("refused requests invoked the function %d times", calls-before)
	}
	for path, want := range map[string]int{"/crash": 502, "/garbled": 502, "/busy": 429} {
		if resp, _ := send("GET", "/lambda-url/"+id+path, "", auth, nil); resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	// A base64 body larger than 6 MB once encoded is refused as well.
	if resp, _ := send("POST", "/lambda-url/"+id+"/", "", map[string]string{"Authorization": "Bearer s3cret", "Content-Type": "application/octet-stream"},
		bytes.NewReader(make([]byte, rpc.MaxSyncPayload*3/4+10))); resp.StatusCode != 413 {
		t.Errorf("a body over the limit once base64-encoded: %d", resp.StatusCode)
	}
	// A malformed body (a chunked encoding that is not) is a 400, and the
	// function never sees it.
	before = calls
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST /lambda-url/"+id+"/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n0\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	raw, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(raw), "HTTP/1.1 400") || calls != before {
		t.Errorf("a malformed chunked body: %q (%d invocations)", raw, calls-before)
	}
	if !errors.Is(errURLTooLarge, rpc.ErrRequestTooLarge) {
		t.Error("errURLTooLarge is not RequestTooLarge")
	}
}
