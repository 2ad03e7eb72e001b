package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"nimbus/rpc"
)

// refusingOps are operations that fail the test when called: the requests
// sent to them must be refused by the gateway itself, before any operation.
func refusingOps(t *testing.T) Operations {
	fail := func(op string) { t.Errorf("operation %s was called", op) }
	return Operations{
		CreateFunction: func(context.Context, *rpc.CreateFunctionRequest) (*rpc.FunctionResponse, error) {
			fail("CreateFunction")
			return nil, errors.New("not here")
		},
		GetFunction: func(context.Context, *rpc.GetFunctionRequest) (*rpc.FunctionResponse, error) {
			fail("GetFunction")
			return nil, errors.New("not here")
		},
		UpdateFunctionCode: func(context.Context, *rpc.UpdateCodeRequest) (*rpc.FunctionResponse, error) {
			fail("UpdateFunctionCode")
			return nil, errors.New("not here")
		},
		UpdateFunctionConfig: func(context.Context, *rpc.UpdateConfigRequest) (*rpc.FunctionResponse, error) {
			fail("UpdateFunctionConfig")
			return nil, errors.New("not here")
		},
		DeleteFunction: func(context.Context, *rpc.GetFunctionRequest) (*rpc.DeleteFunctionResponse, error) {
			fail("DeleteFunction")
			return nil, errors.New("not here")
		},
		ListFunctions: func(context.Context, *rpc.ListFunctionsRequest) (*rpc.ListFunctionsResponse, error) {
			fail("ListFunctions")
			return nil, errors.New("not here")
		},
		Invoke: func(context.Context, *rpc.InvokeRequest) (*rpc.InvokeResponse, error) {
			fail("Invoke")
			return nil, errors.New("not here")
		},
		PutConcurrency: func(context.Context, *rpc.PutConcurrencyRequest) (*rpc.ConcurrencyResponse, error) {
			fail("PutConcurrency")
			return nil, errors.New("not here")
		},
		GetConcurrency: func(context.Context, *rpc.GetFunctionRequest) (*rpc.ConcurrencyResponse, error) {
			fail("GetConcurrency")
			return nil, errors.New("not here")
		},
		DeleteConcurrency: func(context.Context, *rpc.GetFunctionRequest) (*rpc.ConcurrencyResponse, error) {
			fail("DeleteConcurrency")
			return nil, errors.New("not here")
		},
		AccountSettings: func(context.Context, *rpc.AccountSettingsRequest) (*rpc.AccountSettingsResponse, error) {
			fail("AccountSettings")
			return nil, errors.New("not here")
		},
		PublishVersion:    refuse[rpc.PublishVersionRequest, rpc.FunctionResponse](fail, "PublishVersion"),
		ListVersions:      refuse[rpc.ListVersionsRequest, rpc.ListVersionsResponse](fail, "ListVersions"),
		CreateAlias:       refuse[rpc.CreateAliasRequest, rpc.AliasResponse](fail, "CreateAlias"),
		UpdateAlias:       refuse[rpc.UpdateAliasRequest, rpc.AliasResponse](fail, "UpdateAlias"),
		GetAlias:          refuse[rpc.GetAliasRequest, rpc.AliasResponse](fail, "GetAlias"),
		ListAliases:       refuse[rpc.ListAliasesRequest, rpc.ListAliasesResponse](fail, "ListAliases"),
		DeleteAlias:       refuse[rpc.GetAliasRequest, rpc.DeleteAliasResponse](fail, "DeleteAlias"),
		CreateURL:         refuse[rpc.CreateURLRequest, rpc.URLResponse](fail, "CreateURL"),
		UpdateURL:         refuse[rpc.UpdateURLRequest, rpc.URLResponse](fail, "UpdateURL"),
		GetURL:            refuse[rpc.GetURLRequest, rpc.URLResponse](fail, "GetURL"),
		DeleteURL:         refuse[rpc.GetURLRequest, rpc.DeleteURLResponse](fail, "DeleteURL"),
		ListURLs:          refuse[rpc.ListURLsRequest, rpc.ListURLsResponse](fail, "ListURLs"),
		ResolveURL:        refuse[rpc.ResolveURLRequest, rpc.URLResponse](fail, "ResolveURL"),
		PutEventConfig:    refuse[rpc.PutEventConfigRequest, rpc.EventConfigResponse](fail, "PutEventConfig"),
		GetEventConfig:    refuse[rpc.GetEventConfigRequest, rpc.EventConfigResponse](fail, "GetEventConfig"),
		DeleteEventConfig: refuse[rpc.GetEventConfigRequest, rpc.DeleteEventConfigResponse](fail, "DeleteEventConfig"),
	}
}

func refuse[Req, Resp any](fail func(string), op string) func(context.Context, *Req) (*Resp, error) {
	return func(context.Context, *Req) (*Resp, error) {
		fail(op)
		return nil, errors.New("not here")
	}
}

func testARN(name string) string { return "arn:aws:lambda:local:000000000000:function:" + name }

// serve starts a gateway on a loopback listener, closed when the test ends.
func serve(t *testing.T, opts Options) (*Gateway, string) {
	t.Helper()
	if opts.MaxZipSize == 0 {
		opts.MaxZipSize = 4 << 10
	}
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(ln) }()
	t.Cleanup(func() {
		g.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return g, "http://" + ln.Addr().String()
}

// lambdaError is the error document as a client reads it.
type lambdaError struct {
	Status                  int
	ErrorType, RetryAfter   string
	Type, Message, Message2 string
	Reason                  string
}

func do(t *testing.T, method, url string, body io.Reader, hdr map[string]string) lambdaError {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Type     string `json:"Type"`
		Message  string `json:"Message"`
		Message2 string `json:"message"`
		Reason   string `json:"Reason"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &doc)
	return lambdaError{resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), resp.Header.Get("Retry-After"),
		doc.Type, doc.Message, doc.Message2, doc.Reason}
}

func TestRefusedBeforeAnyOperation(t *testing.T) {
	t.Parallel()
	g, base := serve(t, Options{Ops: refusingOps(t), MaxZipSize: 4 << 10})
	bigZip := base64.StdEncoding.EncodeToString(make([]byte, 8<<10))
	cases := []struct {
		name, method, path string
		body               io.Reader
		hdr                map[string]string
		status             int
		errType            string
	}{
		{"unknown path", "GET", "/nothing", nil, nil, 404, CodeUnknownOperation},
		{"unknown method", "PATCH", "/2015-03-31/functions/f", nil, nil, 404, CodeUnknownOperation},
		{"malformed signature", "GET", "/2015-03-31/functions/", nil, map[string]string{"Authorization": "AWS4-HMAC-SHA256 Credential=x"}, 400, CodeIncompleteSignature},
		{"payload over 6 MB", "POST", "/2015-03-31/functions/f/invocations", bytes.NewReader(make([]byte, rpc.MaxSyncPayload+1)), nil, 413, rpc.CodeRequestTooLarge},
		{"unsized payload over 6 MB", "POST", "/2015-03-31/functions/f/invocations", io.MultiReader(bytes.NewReader(make([]byte, rpc.MaxSyncPayload+1))), nil, 413, rpc.CodeRequestTooLarge},
		{"zip over the limit", "POST", "/2015-03-31/functions", strings.NewReader(`{"FunctionName":"f","Code":{"ZipFile":"` + bigZip + `"}}` + strings.Repeat(" ", uploadSlack)), nil, 413, CodeRequestEntityTooLarge},
		{"malformed JSON", "POST", "/2015-03-31/functions", strings.NewReader(`{"FunctionName":`), nil, 400, CodeInvalidRequestContent},
		{"wrong JSON type", "PUT", "/2015-03-31/functions/f/configuration", strings.NewReader(`{"MemorySize":"big"}`), nil, 400, CodeInvalidRequestContent},
		{"base64 that is not", "POST", "/2015-03-31/functions", strings.NewReader(`{"FunctionName":"f","Code":{"ZipFile":"@@@"}}`), nil, 400, CodeInvalidRequestContent},
		{"bad role", "POST", "/2015-03-31/functions", strings.NewReader(`{"FunctionName":"f","Role":"admin","Code":{"ZipFile":""}}`), nil, 400, rpc.CodeInvalidParameterValue},
		{"code from S3", "PUT", "/2015-03-31/functions/f/code", strings.NewReader(`{"S3Bucket":"b","S3Key":"k"}`), nil, 501, CodeNotImplemented},
		{"bad invocation type", "POST", "/2015-03-31/functions/f/invocations", nil, map[string]string{"X-Amz-Invocation-Type": "Later"}, 400, rpc.CodeInvalidParameterValue},
		{"bad log type", "POST", "/2015-03-31/functions/f/invocations", nil, map[string]string{"X-Amz-Log-Type": "All"}, 400, rpc.CodeInvalidParameterValue},
		{"bad client context", "POST", "/2015-03-31/functions/f/invocations", nil, map[string]string{"X-Amz-Client-Context": "not base64!"}, 400, rpc.CodeInvalidParameterValue},
		{"qualifier mismatch", "POST", "/2015-03-31/functions/f:1/invocations?Qualifier=2", nil, nil, 400, rpc.CodeInvalidParameterValue},
		{"update a version's code", "PUT", "/2015-03-31/functions/f:3/code", strings.NewReader(`{"ZipFile":""}`), nil, 400, rpc.CodeInvalidParameterValue},
		{"update an alias's configuration", "PUT", "/2015-03-31/functions/f/configuration?Qualifier=live", strings.NewReader(`{}`), nil, 400, rpc.CodeInvalidParameterValue},
		{"publish a qualified name", "POST", "/2015-03-31/functions/f:live/versions", nil, nil, 400, rpc.CodeInvalidParameterValue},
		{"publish with a long description", "POST", "/2015-03-31/functions/f/versions", strings.NewReader(`{"Description":"` + strings.Repeat("d", 257) + `"}`), nil, 400, rpc.CodeInvalidParameterValue},
		{"weight that is not a number", "POST", "/2015-03-31/functions/f/aliases", strings.NewReader(`{"Name":"live","FunctionVersion":"1","RoutingConfig":{"AdditionalVersionWeights":{"2":"most"}}}`), nil, 400, CodeInvalidRequestContent},
		{"alias of a qualified name", "GET", "/2015-03-31/functions/f:1/aliases/live", nil, nil, 400, rpc.CodeInvalidParameterValue},
		{"bad versions MaxItems", "GET", "/2015-03-31/functions/f/versions?MaxItems=10001", nil, nil, 400, rpc.CodeInvalidParameterValue},
		{"URL without AuthType", "POST", "/2021-10-31/functions/f/url", strings.NewReader(`{}`), nil, 400, rpc.CodeInvalidParameterValue},
		{"URL with malformed CORS", "POST", "/2021-10-31/functions/f/url", strings.NewReader(`{"AuthType":"NONE","Cors":{"MaxAge":"long"}}`), nil, 400, CodeInvalidRequestContent},
		{"event config with a bad retry type", "PUT", "/2019-09-25/functions/f/event-invoke-config", strings.NewReader(`{"MaximumRetryAttempts":"two"}`), nil, 400, CodeInvalidRequestContent},
		{"delete $LATEST", "DELETE", "/2015-03-31/functions/f?Qualifier=$LATEST", nil, nil, 400, rpc.CodeInvalidParameterValue},
		{"bad MaxItems", "GET", "/2015-03-31/functions/?MaxItems=0", nil, nil, 400, rpc.CodeInvalidParameterValue},
		{"bad Marker", "GET", "/2015-03-31/functions/?Marker=%25%25", nil, nil, 400, rpc.CodeInvalidParameterValue},
		{"null concurrency", "PUT", "/2017-10-31/functions/f/concurrency", strings.NewReader(`{}`), nil, 400, rpc.CodeInvalidParameterValue},
		{"qualified concurrency", "GET", "/2019-09-30/functions/f:1/concurrency", nil, nil, 400, rpc.CodeInvalidParameterValue},
	}
	for _, c := range cases {
		got := do(t, c.method, base+c.path, c.body, c.hdr)
		if got.Status != c.status || got.ErrorType != c.errType {
			t.Errorf("%s: %d %s (%s), want %d %s", c.name, got.Status, got.ErrorType, got.Message, c.status, c.errType)
			continue
		}
		if got.Message == "" || got.Message != got.Message2 {
			t.Errorf("%s: Message %q, message %q: want the same text in both", c.name, got.Message, got.Message2)
		}
		if want := "User"; got.Status < 500 && got.Type != want {
			t.Errorf("%s: Type %q, want %q", c.name, got.Type, want)
		}
	}
	if n := g.bufferedNow(); n != 0 {
		t.Errorf("%d bytes of the body budget still held after every request ended", n)
	}
}

// bufferedNow is how much of the body budget is held: all of it is free
// when TryAcquire of the whole budget succeeds.
func (g *Gateway) bufferedNow() int64 {
	if g.buffered.TryAcquire(g.opts.MaxBufferedBytes) {
		g.buffered.Release(g.opts.MaxBufferedBytes)
		return 0
	}
	return -1
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err     error
		status  int
		errType string
		typ     string
	}{
		{rpc.Errorf(rpc.CodeResourceNotFound, "Function not found: x"), 404, rpc.CodeResourceNotFound, "User"},
		{rpc.Errorf(rpc.CodeInvalidParameterValue, "bad"), 400, rpc.CodeInvalidParameterValue, "User"},
		{rpc.Errorf(rpc.CodeResourceConflict, "exists"), 409, rpc.CodeResourceConflict, "User"},
		{rpc.Errorf(rpc.CodePreconditionFailed, "revision"), 412, rpc.CodePreconditionFailed, "User"},
		{rpc.Errorf(rpc.CodeRequestTooLarge, "big"), 413, rpc.CodeRequestTooLarge, "User"},
		{&rpc.Error{Code: rpc.CodeTooManyRequests, Message: "Rate Exceeded.", Reason: rpc.ReasonReservedFunctionConcurrentInvocationLimit}, 429, rpc.CodeTooManyRequests, "User"},
		{rpc.Errorf(rpc.CodeAccessDenied, "no"), 403, rpc.CodeAccessDenied, "User"},
		{rpc.Errorf(rpc.CodeService, "broke"), 500, rpc.CodeService, "Service"},
		{fmt.Errorf("wrapped: %w", errors.New("plain")), 500, rpc.CodeService, "Service"},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		writeError(rec, c.err)
		var doc errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			t.Fatalf("%v: body %q: %v", c.err, rec.Body, err)
		}
		if rec.Code != c.status || rec.Header().Get("X-Amzn-ErrorType") != c.errType || doc.Type != c.typ || doc.LMessage == "" || doc.Message != doc.LMessage {
			t.Errorf("%v: %d %s %+v", c.err, rec.Code, rec.Header().Get("X-Amzn-ErrorType"), doc)
		}
		if c.status == 429 && (rec.Header().Get("Retry-After") == "" || doc.Reason != rpc.ReasonReservedFunctionConcurrentInvocationLimit) {
			t.Errorf("throttle: Retry-After %q, Reason %q", rec.Header().Get("Retry-After"), doc.Reason)
		}
	}
}

func TestFormats(t *testing.T) {
	t.Parallel()
	g := &Gateway{opts: Options{}}
	f := &rpc.FunctionConfig{Name: "f", Runtime: "provided", Handler: "bootstrap", MemoryMB: 128, TimeoutSec: 3,
		CodeSHA256: "a7174154d720636e1f630569ae5386d7276ab5ef874713ae9904edaf3f7f9c71", Revision: 7, LastModifiedMs: 1764614859060}
	c := g.configuration(f)
	if c.CodeSha256 != "pxdBVNcgY24fYwVprlOG1ydqte+HRxOumQTtrz9/nHE=" {
		t.Errorf("CodeSha256 %q", c.CodeSha256)
	}
	if c.LastModified != "2025-12-01T18:47:39.060+0000" {
		t.Errorf("LastModified %q", c.LastModified)
	}
	if _, err := time.Parse(lambdaTimeLayout, c.LastModified); err != nil {
		t.Errorf("LastModified does not parse back: %v", err)
	}
	if c.FunctionArn != testARN("f") || c.Version != rpc.VersionLatest || c.State != "Active" || c.LastUpdateStatus != "Successful" {
		t.Errorf("configuration %+v", c)
	}
	id := c.RevisionID
	if len(id) != 36 || id[14] != '8' || strings.Count(id, "-") != 4 {
		t.Errorf("RevisionId %q is not a version-8 UUID", id)
	}
	if revisionID(f) != id {
		t.Error("RevisionId is not stable")
	}
	f2 := f.Clone()
	f2.Revision++
	if revisionID(f2) == id {
		t.Error("RevisionId did not change with the revision")
	}
	if got := newRequestID(); len(got) != 36 || got[14] != '4' {
		t.Errorf("request id %q", got)
	}
}

func TestParseInvokeHeaders(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	h.Set("X-Amz-Invocation-Type", "DryRun")
	h.Set("X-Amz-Log-Type", "Tail")
	h.Set("X-Amz-Client-Context", base64.StdEncoding.EncodeToString([]byte(`{"custom":{"a":1}}`)))
	got, err := parseInvokeHeaders(h)
	if err != nil || got.InvocationType != "DryRun" || got.LogType != "Tail" || string(got.ClientContext) != `{"custom":{"a":1}}` {
		t.Fatalf("parseInvokeHeaders = %+v, %v", got, err)
	}
	h.Set("X-Amz-Client-Context", strings.Repeat("A", maxClientContext+1))
	if _, err := parseInvokeHeaders(h); !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Errorf("oversized client context: %v", err)
	}
}

func FuzzParseInvokeHeaders(f *testing.F) {
	f.Add("RequestResponse", "Tail", base64.StdEncoding.EncodeToString([]byte(`{}`)))
	f.Add("Event", "None", "")
	f.Add("DryRun", "", "e30=")
	f.Add("x", "y", "!!!")
	f.Fuzz(func(t *testing.T, typ, logType, cc string) {
		h := http.Header{}
		h.Set("X-Amz-Invocation-Type", typ)
		h.Set("X-Amz-Log-Type", logType)
		h.Set("X-Amz-Client-Context", cc)
		got, err := parseInvokeHeaders(h)
		if err != nil {
			if !errors.Is(err, rpc.ErrInvalidParameterValue) {
				t.Fatalf("error %v is not InvalidParameterValueException", err)
			}
			return
		}
		if got.ClientContext != nil && !json.Valid(got.ClientContext) {
			t.Fatalf("accepted a client context that is not JSON: %q", got.ClientContext)
		}
	})
}

// FuzzDecodeBodies feeds every request body shape the gateway decodes.
func FuzzDecodeBodies(f *testing.F) {
	f.Add([]byte(`{"FunctionName":"f","Runtime":"provided","Role":"arn:aws:iam::000000000000:role/r","Code":{"ZipFile":"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},"Environment":{"Variables":{"A":"1"}}}`))
	f.Add([]byte(`{"MemorySize":256,"Timeout":10,"Environment":{},"RevisionId":"x"}`))
	f.Add([]byte(`{"ReservedConcurrentExecutions":5}`))
	f.Add([]byte(`{"ZipFile":"@@","Publish":true}`))
	f.Add([]byte(`[1,2,3]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&createFunctionInput{}, &updateCodeInput{}, &updateConfigInput{}, &putConcurrencyInput{},
			&publishVersionInput{}, &createAliasInput{}, &updateAliasInput{}, &urlConfigInput{}, &eventInvokeConfigInput{}} {
			err := unmarshalBody(body, v)
			if err != nil && !errors.Is(err, &rpc.Error{Code: CodeInvalidRequestContent}) {
				t.Fatalf("error %v is not InvalidRequestContentException", err)
			}
		}
		var in createFunctionInput
		if unmarshalBody(body, &in) == nil {
			_ = checkUnsupported(in.PackageType, in.Code)
			_ = checkRole(in.Role)
			_ = checkArchitectures(in.Architectures)
		}
	})
}

func TestListMarker(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"a", "my-function_1", strings.Repeat("z", 64)} {
		got, err := decodeMarker(encodeMarker(name))
		if err != nil || got != name {
			t.Errorf("marker of %q decodes to %q, %v", name, got, err)
		}
	}
}

func TestConnectionBounds(t *testing.T) {
	t.Parallel()
	_, base := serve(t, Options{Ops: refusingOps(t), MaxConnsPerIP: 2, ReadHeaderTimeout: 200 * time.Millisecond})
	addr := strings.TrimPrefix(base, "http://")
	// Two connections from this address are served; a third is closed at
	// once. (Each sends a request first, so the server has accepted it.)
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 404 {
			t.Fatalf("connection %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
		conns = append(conns, c)
	}
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c3, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
	if n, err := c3.Read(make([]byte, 1)); err == nil {
		t.Fatalf("third connection from one address was served (%d bytes)", n)
	}
	// Once one of them closes, the address may connect again.
	conns[0].Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/nothing")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 404 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's slot was not given back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSlowHeadersClosed(t *testing.T) {
	t.Parallel()
	_, base := serve(t, Options{Ops: refusingOps(t), ReadHeaderTimeout: 200 * time.Millisecond})
	slow, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(slow, "GET /nothing HTTP/1.1\r\nHost: x\r\n") // never ends its headers
	_, err = io.ReadAll(slow)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("a connection with unfinished headers was kept for 30 s")
	}
}

// TestResponseWriteBounded: a client that never reads its response loses
// its connection once the write deadline passes, rather than holding it.
func TestResponseWriteBounded(t *testing.T) {
	t.Parallel()
	ops := refusingOps(t)
	big := bytes.Repeat([]byte("x"), 6<<20)
	called := make(chan struct{})
	ops.Invoke = func(context.Context, *rpc.InvokeRequest) (*rpc.InvokeResponse, error) {
		close(called)
		return &rpc.InvokeResponse{StatusCode: 200, Payload: big, ExecutedVersion: rpc.VersionLatest}, nil
	}
	g, base := serve(t, Options{Ops: ops, BodyTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.(*net.TCPConn).SetReadBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /2015-03-31/functions/f/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	// Read nothing: the server must give the connection up by itself.
	<-called
	deadline := time.Now().Add(30 * time.Second)
	for g.ln.Load().open() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server still holds a connection whose client does not read")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
