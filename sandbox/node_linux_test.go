package sandbox

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"nimbus/rpc"
)

// nodeErrorBody is the error shape of Lambda's Node.js runtime: "trace"
// where Python has "stackTrace".
type nodeErrorBody struct {
	ErrorType    string   `json:"errorType"`
	ErrorMessage string   `json:"errorMessage"`
	Trace        []string `json:"trace"`
}

func decodeNodeError(t *testing.T, res *Result) nodeErrorBody {
	t.Helper()
	var e nodeErrorBody
	if err := json.Unmarshal(res.Payload, &e); err != nil {
		t.Fatalf("error payload %s: %v", res.Payload, err)
	}
	return e
}

// console.log in Lambda's Node.js format.
var nodeLogLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t([0-9a-f-]{36})\tINFO\tgot \{"k":"v"\}$`)

func TestNodeAsyncHandler(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimeNodejs20)
	m, sink := newTestManager(t, Config{})
	dir := copyTree(t, "node/cjs")
	fn := managedFn("node-app", rpc.RuntimeNodejs20, "index.handler")
	for i := 1; i <= 2; i++ {
		res := invoke(t, m, fn, dir, `{"k":"v"}`)
		if res.ErrorType != "" {
			t.Fatalf("invoke %d: %s %s\n%s", i, res.ErrorType, res.Payload, res.LogTail)
		}
		var out struct {
			Event                                                 map[string]string
			Count                                                 int
			RequestID, FunctionName, FunctionVersion, ARN, Memory string
			LogGroup, LogStream, NodePath, Version                string
			Remaining                                             int
		}
		if err := json.Unmarshal(res.Payload, &out); err != nil {
			t.Fatalf("payload %s: %v", res.Payload, err)
		}
		if out.Event["k"] != "v" || out.Count != i || out.RequestID != res.RequestID || out.FunctionName != "node-app" ||
			out.FunctionVersion != rpc.LatestVersion || out.ARN != m.functionARN("node-app") || out.Memory != "256" ||
			out.LogGroup != "/aws/lambda/node-app" || !strings.Contains(out.LogStream, "[$LATEST]") ||
			out.Remaining <= 0 || out.Remaining > 10000 || out.Version != "20" ||
			!strings.HasPrefix(out.NodePath, "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:") {
			t.Errorf("invoke %d saw %+v", i, out)
		}
	}
	var logged int
	for _, l := range sink.lines("node-app") {
		if mm := nodeLogLine.FindStringSubmatch(l); mm != nil {
			logged++
		}
	}
	if logged != 2 {
		t.Errorf("%d console lines in Lambda's format, want 2:\n%s", logged, strings.Join(sink.lines("node-app"), "\n"))
	}
	res := invoke(t, m, managedFn("node-nested", rpc.RuntimeNodejs20, "index.nested.deeper.fn"), dir, `{}`)
	if string(res.Payload) != `"nested"` {
		t.Errorf("nested export: %s %s", res.ErrorType, res.Payload)
	}
}

// A callback handler is answered once the event loop is empty (its timer's
// line is in the invocation's log), or at once with
// callbackWaitsForEmptyEventLoop = false.
func TestNodeCallbackHandler(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimeNodejs20)
	m, _ := newTestManager(t, Config{})
	dir := copyTree(t, "node/cjs")
	fn := managedFn("node-cb", rpc.RuntimeNodejs20, "index.callback")
	res := invoke(t, m, fn, dir, `{}`)
	if res.ErrorType != "" || string(res.Payload) != `{"waited":true}` || !strings.Contains(res.LogTail, "timer fired") {
		t.Fatalf("callback waiting for the event loop: %s %s\n%s", res.ErrorType, res.Payload, res.LogTail)
	}
	res = invoke(t, m, fn, dir, `{"noWait":true}`)
	if res.ErrorType != "" || string(res.Payload) != `{"waited":false}` || strings.Contains(res.LogTail, "timer fired") {
		t.Fatalf("callback not waiting: %s %s\n%s", res.ErrorType, res.Payload, res.LogTail)
	}
	res = invoke(t, m, managedFn("node-cberr", rpc.RuntimeNodejs20, "index.callbackError"), dir, `{}`)
	if e := decodeNodeError(t, res); res.ErrorType != "RangeError" || e.ErrorMessage != "out of range" || len(e.Trace) < 2 {
		t.Fatalf("callback error: %s %s", res.ErrorType, res.Payload)
	}
}

// ES modules: a .mjs file, and a .js file under "type": "module" with
// top-level await and a relative import.
func TestNodeESModules(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimeNodejs20)
	m, _ := newTestManager(t, Config{})
	res := invoke(t, m, managedFn("node-mjs", rpc.RuntimeNodejs20, "module.handler"), copyTree(t, "node/cjs"), `{"n":3}`)
	if res.ErrorType != "" || string(res.Payload) != `{"esm":true,"file":"module.mjs","n":3}` {
		t.Fatalf(".mjs handler: %s %s\n%s", res.ErrorType, res.Payload, res.LogTail)
	}
	res = invoke(t, m, managedFn("node-esm", rpc.RuntimeNodejs20, "index.handler"), copyTree(t, "node/esm"), `{}`)
	if res.ErrorType != "" || string(res.Payload) != `{"esm":true,"started":"top-level await","helper":42,"type":"undefined"}` {
		t.Fatalf(`"type": "module" handler: %s %s\n%s`, res.ErrorType, res.Payload, res.LogTail)
	}
}

func TestNodeErrors(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimeNodejs20)
	m, _ := newTestManager(t, Config{})
	dir := copyTree(t, "node/cjs")
	res := invoke(t, m, managedFn("node-fail", rpc.RuntimeNodejs20, "index.fail"), dir, `{}`)
	e := decodeNodeError(t, res)
	if res.ErrorType != "TypeError" || e.ErrorType != "TypeError" || e.ErrorMessage != "bad type" ||
		len(e.Trace) < 2 || e.Trace[0] != "TypeError: bad type" || !strings.Contains(e.Trace[1], "/var/task/index.js:") {
		t.Fatalf("thrown error: %s %s", res.ErrorType, res.Payload)
	}
	cases := []struct{ handler, errType, msg string }{
		{"missing.handler", "Runtime.ImportModuleError", "Error: Cannot find module 'missing'"},
		{"index.nope", "Runtime.HandlerNotFound", "index.nope is undefined or not exported"},
		{"broken.handler", "Runtime.UserCodeSyntaxError", "SyntaxError: "},
		{"index", "Runtime.MalformedHandlerName", "Bad handler index"},
	}
	for i, c := range cases {
		fn := managedFn("node-init", rpc.RuntimeNodejs20, c.handler)
		fn.Revision = uint64(i + 1)
		res := invoke(t, m, fn, dir, `{}`)
		e := decodeNodeError(t, res)
		if res.ErrorType != c.errType || !strings.HasPrefix(e.ErrorMessage, c.msg) {
			t.Errorf("handler %s: %s %s, want %s %q", c.handler, res.ErrorType, res.Payload, c.errType, c.msg)
		}
	}
	fn := managedFn("node-slow", rpc.RuntimeNodejs20, "index.sleep")
	fn.TimeoutSec = 1
	if res := invoke(t, m, fn, dir, `{"ms":5000}`); res.ErrorType != rpc.ErrTypeTimedout {
		t.Fatalf("sleeping past the timeout: %s %s", res.ErrorType, res.Payload)
	}
}
