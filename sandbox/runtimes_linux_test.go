package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"nimbus/rpc"
)

// Managed runtimes, on their images built by `nimbus image build` into the
// machine's image store (scripts/install-deps.sh builds the ones the tests
// use). A missing image fails the test with the command that builds it:
// CI builds them, so a skip there would hide a broken setup.

// requireImage fails the test unless runtime's image of the current
// recipe is in the machine's store.
func requireImage(t *testing.T, runtime string) {
	t.Helper()
	requireRoot(t)
	store, err := OpenImageStore(DefaultImageDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Lookup(runtime); err != nil {
		t.Fatalf("%v\n(scripts/install-deps.sh builds the images the tests use: nimbus image build --local %s)", err, runtime)
	}
}

// copyTree copies testdata/<name> into a new code folder the sandbox user
// can read, as an extracted bundle is.
func copyTree(t *testing.T, name string) string {
	t.Helper()
	src := script(name)
	dst := t.TempDir()
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func managedFn(name, runtime, handler string) *rpc.FunctionConfig {
	return &rpc.FunctionConfig{Name: name, Runtime: runtime, Handler: handler, MemoryMB: 256, TimeoutSec: 10, Revision: 1, CodeSHA256: "x"}
}

// errorBody is Lambda's error shape as the runtimes post it.
type errorBody struct {
	ErrorMessage string   `json:"errorMessage"`
	ErrorType    string   `json:"errorType"`
	RequestID    string   `json:"requestId"`
	StackTrace   []string `json:"stackTrace"`
}

func decodeError(t *testing.T, res *Result) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(res.Payload, &e); err != nil {
		t.Fatalf("error payload %s: %v", res.Payload, err)
	}
	return e
}

// A managed runtime whose image is not built is refused with
// ResourceNotReadyException naming the command that builds it.
func TestManagedRuntimeWithoutImage(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{RuntimeImageDir: t.TempDir()})
	_, err := m.Invoke(context.Background(), &Request{Function: managedFn("noimage", rpc.RuntimePython313, "app.handler"), CodeDir: t.TempDir(), Payload: []byte(`{}`)})
	if !errors.Is(err, rpc.ErrResourceNotReady) || !strings.Contains(err.Error(), "nimbus image build python3.13") {
		t.Fatalf("invoke without the image: %v, want ResourceNotReadyException naming the build command", err)
	}
}

// lambdaLogLine is the root logger's format in Lambda's Python runtime.
var lambdaLogLine = regexp.MustCompile(`^\[INFO\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t([0-9a-f-]{36})\tgot \{"k": "v"\}$`)

func TestPythonHandler(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimePython313)
	m, sink := newTestManager(t, Config{})
	dir := copyTree(t, "python")
	fn := managedFn("py-app", rpc.RuntimePython313, "app.handler")
	for i := 1; i <= 2; i++ {
		res := invoke(t, m, fn, dir, `{"k":"v"}`)
		if res.ErrorType != "" {
			t.Fatalf("invoke %d: %s %s\n%s", i, res.ErrorType, res.Payload, res.LogTail)
		}
		var out struct {
			Event           map[string]string
			Count           int
			RequestID       string `json:"request_id"`
			FunctionName    string `json:"function_name"`
			FunctionVersion string `json:"function_version"`
			ARN             string
			Memory          string
			LogGroup        string `json:"log_group"`
			LogStream       string `json:"log_stream"`
			Remaining       int
			ClientContext   bool     `json:"client_context"`
			SysPath         []string `json:"sys_path"`
			ExecEnv         string   `json:"exec_env"`
			Version         string
		}
		if err := json.Unmarshal(res.Payload, &out); err != nil {
			t.Fatalf("payload %s: %v", res.Payload, err)
		}
		if out.Event["k"] != "v" || out.Count != i || out.RequestID != res.RequestID || out.FunctionName != "py-app" ||
			out.FunctionVersion != rpc.LatestVersion || out.ARN != m.functionARN("py-app") || out.Memory != "256" ||
			out.LogGroup != "/aws/lambda/py-app" || !strings.Contains(out.LogStream, "[$LATEST]") ||
			out.Remaining <= 0 || out.Remaining > 10000 || out.ClientContext || out.ExecEnv != "AWS_Lambda_python3.13" || out.Version != "3.13" {
			t.Errorf("invoke %d saw %+v", i, out)
		}
		want := []string{"/var/task", "/opt/python/lib/python3.13/site-packages", "/opt/python"}
		if strings.Join(out.SysPath, ":") != strings.Join(want, ":") {
			t.Errorf("sys.path starts %v, want %v", out.SysPath, want)
		}
		if res.Cold != (i == 1) {
			t.Errorf("invoke %d cold=%v", i, res.Cold)
		}
	}
	// The logger's lines are in Lambda's format with the request id; print
	// goes to the log as it is.
	var logged, printed int
	for _, l := range sink.lines("py-app") {
		if mm := lambdaLogLine.FindStringSubmatch(l); mm != nil {
			logged++
		} else if strings.HasPrefix(l, "[INFO]") {
			t.Errorf("log line not in Lambda's format: %q", l)
		}
		if l == "printed line" {
			printed++
		}
	}
	if logged != 2 || printed != 2 {
		t.Errorf("%d logger lines and %d printed lines, want 2 of each:\n%s", logged, printed, strings.Join(sink.lines("py-app"), "\n"))
	}
}

// A handler in a package (a dotted module path) imports its siblings.
func TestPythonPackageHandler(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimePython313)
	m, _ := newTestManager(t, Config{})
	res := invoke(t, m, managedFn("py-pkg", rpc.RuntimePython313, "pkg.sub.mod.handler"), copyTree(t, "python"), `{}`)
	if res.ErrorType != "" || string(res.Payload) != `{"from": "pkg.sub.mod", "helper": 42}` {
		t.Fatalf("package handler: %s %s\n%s", res.ErrorType, res.Payload, res.LogTail)
	}
}

// An exception is errorType (its class), errorMessage, requestId and a
// stackTrace of lines, as Lambda's; the sandbox stays warm for the next.
func TestPythonException(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimePython313)
	m, _ := newTestManager(t, Config{})
	dir := copyTree(t, "python")
	fn := managedFn("py-fail", rpc.RuntimePython313, "app.fail")
	res := invoke(t, m, fn, dir, `{"n":7}`)
	e := decodeError(t, res)
	if res.ErrorType != "ValueError" || e.ErrorType != "ValueError" || e.ErrorMessage != "bad value: 7" || e.RequestID != res.RequestID {
		t.Fatalf("exception: type %q body %s", res.ErrorType, res.Payload)
	}
	if len(e.StackTrace) == 0 || !strings.Contains(e.StackTrace[len(e.StackTrace)-1], `File "/var/task/app.py", line `) ||
		!strings.Contains(e.StackTrace[len(e.StackTrace)-1], `raise ValueError("bad value: " + str(event.get("n")))`) {
		t.Errorf("stackTrace %q", e.StackTrace)
	}
	if !strings.Contains(res.LogTail, "[ERROR] ValueError: bad value: 7") {
		t.Errorf("log tail lacks the error record:\n%s", res.LogTail)
	}
	res = invoke(t, m, fn, dir, `{"n":8}`)
	if res.Cold || decodeError(t, res).ErrorMessage != "bad value: 8" {
		t.Errorf("second invocation cold=%v %s", res.Cold, res.Payload)
	}
	res = invoke(t, m, managedFn("py-marshal", rpc.RuntimePython313, "app.unserializable"), dir, `{}`)
	if e := decodeError(t, res); e.ErrorType != "Runtime.MarshalError" || !strings.Contains(e.ErrorMessage, "Unable to marshal response") {
		t.Errorf("unserializable result: %s", res.Payload)
	}
}

// Init failures carry Lambda's names, and the sandbox is not reused.
func TestPythonInitErrors(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimePython313)
	m, _ := newTestManager(t, Config{})
	dir := copyTree(t, "python")
	cases := []struct {
		handler, errType, msg string
	}{
		{"missing.handler", "Runtime.ImportModuleError", "Unable to import module 'missing': No module named 'missing'"},
		{"importer.handler", "Runtime.ImportModuleError", "Unable to import module 'importer': No module named 'no_such_module_anywhere'"},
		{"broken.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'broken': "},
		{"app.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"},
		{"app", "Runtime.MalformedHandlerName", "Bad handler 'app': "},
	}
	for i, c := range cases {
		fn := managedFn("py-init", rpc.RuntimePython313, c.handler)
		fn.Revision = uint64(i + 1)
		res := invoke(t, m, fn, dir, `{}`)
		e := decodeError(t, res)
		if res.ErrorType != c.errType || e.ErrorType != c.errType || !strings.HasPrefix(e.ErrorMessage, c.msg) {
			t.Errorf("handler %s: %s %s, want %s %q", c.handler, res.ErrorType, res.Payload, c.errType, c.msg)
		}
		if !strings.Contains(res.LogTail, "INIT_REPORT") || !strings.Contains(res.LogTail, "[ERROR] "+c.errType) {
			t.Errorf("handler %s: the tail lacks the init's report or error:\n%s", c.handler, res.LogTail)
		}
	}
}

func TestPythonTimeout(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimePython313)
	m, _ := newTestManager(t, Config{})
	fn := managedFn("py-slow", rpc.RuntimePython313, "app.sleep")
	fn.TimeoutSec = 1
	res := invoke(t, m, fn, copyTree(t, "python"), `{"seconds":5}`)
	if res.ErrorType != rpc.ErrTypeTimedout {
		t.Fatalf("sleeping past the timeout: %s %s", res.ErrorType, res.Payload)
	}
	res = invoke(t, m, fn, copyTree(t, "python"), `{"seconds":0}`)
	if res.ErrorType != "" || string(res.Payload) != `"woke"` || !res.Cold {
		t.Fatalf("after the timeout: cold=%v %s %s", res.Cold, res.ErrorType, res.Payload)
	}
}
