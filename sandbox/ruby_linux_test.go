package sandbox

import (
	"encoding/json"
	"strings"
	"testing"

	"nimbus/rpc"
)

func TestRubyHandler(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimeRuby33)
	m, sink := newTestManager(t, Config{})
	dir := copyTree(t, "ruby")
	fn := managedFn("rb-app", rpc.RuntimeRuby33, "app.handler")
	for i := 1; i <= 2; i++ {
		res := invoke(t, m, fn, dir, `{"k":"v"}`)
		if res.ErrorType != "" {
			t.Fatalf("invoke %d: %s %s\n%s", i, res.ErrorType, res.Payload, res.LogTail)
		}
		var out struct {
			Event                    map[string]string
			Count, Remaining, Helper int
			RequestID                string `json:"request_id"`
			FunctionName             string `json:"function_name"`
			FunctionVersion          string `json:"function_version"`
			ARN, Memory, Version     string
			LogGroup                 string `json:"log_group"`
		}
		if err := json.Unmarshal(res.Payload, &out); err != nil {
			t.Fatalf("payload %s: %v", res.Payload, err)
		}
		if out.Event["k"] != "v" || out.Count != i || out.RequestID != res.RequestID || out.FunctionName != "rb-app" ||
			out.FunctionVersion != rpc.LatestVersion || out.ARN != m.functionARN("rb-app") || out.Memory != "256" ||
			out.LogGroup != "/aws/lambda/rb-app" || out.Remaining <= 0 || out.Remaining > 10000 || out.Helper != 42 || out.Version != "3.3" {
			t.Errorf("invoke %d saw %+v", i, out)
		}
	}
	var printed int
	for _, l := range sink.lines("rb-app") {
		if l == `got {"k":"v"}` {
			printed++
		}
	}
	if printed != 2 {
		t.Errorf("%d printed lines, want 2:\n%s", printed, strings.Join(sink.lines("rb-app"), "\n"))
	}
	res := invoke(t, m, managedFn("rb-class", rpc.RuntimeRuby33, "app.Outer::Handler.process"), dir, `{}`)
	if res.ErrorType != "" || string(res.Payload) != `{"from":"Outer::Handler.process"}` {
		t.Errorf("class method handler: %s %s\n%s", res.ErrorType, res.Payload, res.LogTail)
	}
}

func TestRubyErrors(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimeRuby33)
	m, _ := newTestManager(t, Config{})
	dir := copyTree(t, "ruby")
	res := invoke(t, m, managedFn("rb-fail", rpc.RuntimeRuby33, "app.fail"), dir, `{"n":5}`)
	e := decodeError(t, res)
	if res.ErrorType != "Function<ArgumentError>" || e.ErrorMessage != "bad argument 5" || len(e.StackTrace) == 0 ||
		!strings.HasPrefix(e.StackTrace[0], "/var/task/app.rb:") {
		t.Fatalf("exception: %s %s", res.ErrorType, res.Payload)
	}
	cases := []struct{ handler, errType, msg string }{
		{"missing.handler", "Runtime.ImportModuleError", "Error loading the file 'missing': "},
		{"broken.handler", "Runtime.UserCodeSyntaxError", "SyntaxError: "},
		{"app.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on file 'app'"},
		{"app.Nope::X.y", "Runtime.HandlerNotFound", "Handler 'Nope::X.y' not found"},
	}
	for i, c := range cases {
		fn := managedFn("rb-init", rpc.RuntimeRuby33, c.handler)
		fn.Revision = uint64(i + 1)
		res := invoke(t, m, fn, dir, `{}`)
		e := decodeError(t, res)
		if res.ErrorType != c.errType || !strings.HasPrefix(e.ErrorMessage, c.msg) {
			t.Errorf("handler %s: %s %s, want %s %q", c.handler, res.ErrorType, res.Payload, c.errType, c.msg)
		}
	}
	fn := managedFn("rb-slow", rpc.RuntimeRuby33, "app.sleep_for")
	fn.TimeoutSec = 1
	if res := invoke(t, m, fn, dir, `{"seconds":5}`); res.ErrorType != rpc.ErrTypeTimedout {
		t.Fatalf("sleeping past the timeout: %s %s", res.ErrorType, res.Payload)
	}
}
