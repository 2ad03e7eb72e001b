package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"nimbus/internal/testutil"
	"nimbus/node"
	"nimbus/rpc"
)

// startNode starts a dev node in-process on 127.0.0.1:0 and returns its
// address; it is closed when the test ends.
func startNode(t testing.TB) string {
	t.Helper()
	testutil.RequireRoot(t)
	tw := testutil.NewLogWriter(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := node.Start(ctx, node.Config{
		DataDir:     t.TempDir(),
		Dev:         true,
		RPCListener: ln,
		Logger:      slog.New(slog.NewTextHandler(tw, nil)),
	})
	if err != nil {
		ln.Close()
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n.Addr()
}

// result is one run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// nimbus runs the CLI in-process with args.
func nimbus(args ...string) result {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// writeFile writes a file under dir and returns its path.
func writeFile(t testing.TB, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// failing is a shell runtime whose every invocation is a function error.
const failing = `#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  curl -sS -o /dev/null -LD "$HEADERS" "$API/invocation/next"
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  echo "failing on purpose"
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/error" -d '{"errorType":"MyError","errorMessage":"something broke"}'
done
`

// TestCLI drives a node through the CLI as a user would, step by step:
// deploy a folder, read it back as JSON, invoke it in every way, read its
// log, change its environment, delete it. Each step checks the exit status
// and what was printed.
// uuidLine is a request id alone on its line.
var uuidLine = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n$`)

func TestCLI(t *testing.T) {
	t.Parallel()
	addr := startNode(t)
	tmp := t.TempDir()
	failDir := filepath.Join(tmp, "failing")
	if err := os.Mkdir(failDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, failDir, "bootstrap", failing, 0o755)
	payloadFile := writeFile(t, tmp, "event.json", `{"from":"file"}`, 0o644)

	// jsonOf decodes stdout as one JSON object.
	jsonOf := func(t *testing.T, r result) map[string]any {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("stdout is not a JSON object: %v\n%s", err, r.stdout)
		}
		return v
	}
	requestLine := regexp.MustCompile(`(START|END|REPORT) RequestId: [0-9a-f-]{36}`)

	steps := []struct {
		name   string
		args   []string
		code   int
		stdout string // contained in stdout
		stderr string // contained in stderr
		check  func(t *testing.T, r result)
	}{
		{name: "create from a folder", args: []string{"fn", "create", "echo", "--dir", "../../examples/shell"},
			stdout: "Name:"},
		{name: "create a failing function", args: []string{"fn", "create", "failing", "--dir", failDir, "--timeout", "5", "--memory", "256"},
			stdout: "256 MB"},
		{name: "create again is a conflict", args: []string{"fn", "create", "echo", "--dir", "../../examples/shell"},
			code: exitPlatformError, stderr: "ResourceConflictException"},
		{name: "create with bad memory", args: []string{"fn", "create", "other", "--dir", "../../examples/shell", "--memory", "127"},
			code: exitPlatformError, stderr: "InvalidParameterValueException"},
		{name: "get as JSON", args: []string{"fn", "get", "echo", "-o", "json"}, check: func(t *testing.T, r result) {
			v := jsonOf(t, r)
			if v["FunctionName"] != "echo" || v["Runtime"] != "provided" || v["Handler"] != "bootstrap" ||
				v["MemorySize"] != 128.0 || v["Timeout"] != 3.0 {
				t.Errorf("get -o json: %v", v)
			}
			if sha, _ := v["CodeSha256"].(string); len(sha) != 64 {
				t.Errorf("CodeSha256 %v", v["CodeSha256"])
			}
			if size, _ := v["CodeSize"].(float64); size <= 0 {
				t.Errorf("CodeSize %v", v["CodeSize"])
			}
		}},
		{name: "list as JSON", args: []string{"fn", "list", "-o", "json"}, check: func(t *testing.T, r result) {
			var v struct{ Functions []map[string]any }
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
				t.Fatalf("list -o json: %v\n%s", err, r.stdout)
			}
			var names []string
			for _, f := range v.Functions {
				names = append(names, f["FunctionName"].(string))
			}
			if strings.Join(names, ",") != "echo,failing" {
				t.Errorf("list -o json names %q", names)
			}
		}},
		{name: "list as a table", args: []string{"fn", "list"}, stdout: "NAME", check: func(t *testing.T, r result) {
			if !strings.Contains(r.stdout, "echo") || !strings.Contains(r.stdout, "failing") {
				t.Errorf("list:\n%s", r.stdout)
			}
		}},
		// The sh-and-curl example at 128 MB has an eighth of a vCPU (Lambda's
		// share): a loaded machine can take its 3 s default, which this test
		// is not about.
		{name: "a longer timeout", args: []string{"fn", "update-config", "echo", "--timeout", "60"}},
		{name: "invoke", args: []string{"invoke", "echo", "--payload", `{"a":1}`}, check: func(t *testing.T, r result) {
			if want := `{"echo":{"a":1},"function":"echo"}` + "\n"; r.stdout != want {
				t.Errorf("stdout %q, want %q", r.stdout, want)
			}
		}},
		{name: "invoke with the payload from a file", args: []string{"invoke", "echo", "--payload", "@" + payloadFile},
			stdout: `{"echo":{"from":"file"},"function":"echo"}`},
		{name: "invoke with a missing payload file", args: []string{"invoke", "echo", "--payload", "@" + filepath.Join(tmp, "nope.json")},
			code: exitPlatformError, stderr: "nope.json"},
		{name: "invoke with the log tail", args: []string{"invoke", "echo", "--payload", `"tail"`, "--log-tail"},
			stdout: `{"echo":"tail","function":"echo"}`, check: func(t *testing.T, r result) {
				if got := requestLine.FindAllString(r.stderr, -1); len(got) != 3 {
					t.Errorf("stderr holds %d START/END/REPORT lines, want 3:\n%s", len(got), r.stderr)
				}
				if !strings.Contains(r.stderr, `handler bootstrap got: "tail"`) {
					t.Errorf("stderr lacks the function's line:\n%s", r.stderr)
				}
			}},
		{name: "invoke a failing function", args: []string{"invoke", "failing"}, code: exitFunctionError,
			check: func(t *testing.T, r result) {
				v := jsonOf(t, r)
				if v["errorType"] != "MyError" || v["errorMessage"] != "something broke" {
					t.Errorf("error JSON %v", v)
				}
			}},
		{name: "invoke an unknown function", args: []string{"invoke", "nosuch"},
			code: exitPlatformError, stderr: "ResourceNotFoundException", check: func(t *testing.T, r result) {
				if r.stdout != "" {
					t.Errorf("stdout %q, want nothing", r.stdout)
				}
			}},
		{name: "dry run", args: []string{"invoke", "echo", "--invocation-type", "DryRun"}},
		{name: "metrics as JSON", args: []string{"fn", "metrics", "failing", "-o", "json"}, check: func(t *testing.T, r result) {
			v := jsonOf(t, r)
			if v["Invocations"] != 1.0 || v["Errors"] != 1.0 || v["Throttles"] != 0.0 || v["ColdStarts"] != 1.0 || v["DurationCount"] != 1.0 {
				t.Errorf("fn metrics -o json: %v", v)
			}
		}},
		{name: "metrics as text", args: []string{"fn", "metrics", "echo", "--since", "10m"}, stdout: "Invocations:     3\n"},
		{name: "metrics of an unknown function", args: []string{"fn", "metrics", "nosuch"},
			code: exitPlatformError, stderr: "ResourceNotFoundException"},
		{name: "logs tail", args: []string{"logs", "tail", "echo"}, check: func(t *testing.T, r result) {
			for _, want := range []string{"START RequestId: ", "END RequestId: ", "REPORT RequestId: ", `handler bootstrap got: {"a":1}`} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("logs tail lacks %q:\n%s", want, r.stdout)
				}
			}
			// Three invocations so far, each framed.
			if got := requestLine.FindAllString(r.stdout, -1); len(got) != 3*3 {
				t.Errorf("logs tail holds %d START/END/REPORT lines, want 9:\n%s", len(got), r.stdout)
			}
		}},
		{name: "invoke as an event, json", args: []string{"invoke", "echo", "--type", "Event", "--payload", `{"e":1}`, "-o", "json"},
			check: func(t *testing.T, r result) {
				v := jsonOf(t, r)
				id, _ := v["RequestId"].(string)
				if v["StatusCode"] != float64(202) || !uuidLine.MatchString(id+"\n") {
					t.Errorf("event answer %v", v)
				}
			}},
		{name: "invoke as an event", args: []string{"invoke", "echo", "--type", "Event"}, check: func(t *testing.T, r result) {
			if !uuidLine.MatchString(r.stdout) {
				t.Errorf("stdout %q, want the request id", r.stdout)
			}
		}},
		{name: "event to an unknown function", args: []string{"invoke", "nosuch", "--type", "Event"},
			code: exitPlatformError, stderr: "ResourceNotFoundException"},
		{name: "dry run with --type", args: []string{"invoke", "echo", "--type", "DryRun"}},
		{name: "put event config", args: []string{"fn", "put-event-config", "echo", "--max-retries", "1", "--on-failure", "function:failing"},
			stdout: "Max retries:     1"},
		{name: "get event config as json", args: []string{"fn", "get-event-config", "echo", "-o", "json"}, check: func(t *testing.T, r result) {
			v := jsonOf(t, r)
			dc, _ := v["DestinationConfig"].(map[string]any)
			onFailure, _ := dc["OnFailure"].(map[string]any)
			if v["MaximumRetryAttempts"] != float64(1) || v["MaximumEventAgeInSeconds"] != float64(21600) ||
				v["FunctionArn"] != (rpc.ARNScope{}).Function("echo", "")+":$LATEST" || onFailure["Destination"] != "function:failing" {
				t.Errorf("event config %v", v)
			}
		}},
		{name: "put event config out of range", args: []string{"fn", "put-event-config", "echo", "--max-retries", "3"},
			code: exitPlatformError, stderr: "InvalidParameterValueException"},
		{name: "put event config to a missing destination", args: []string{"fn", "put-event-config", "echo", "--on-success", "function:nosuch"},
			code: exitPlatformError, stderr: "InvalidParameterValueException"},
		{name: "delete event config", args: []string{"fn", "delete-event-config", "echo"}, stdout: "deleted"},
		{name: "get a deleted event config", args: []string{"fn", "get-event-config", "echo"},
			code: exitPlatformError, stderr: "ResourceNotFoundException"},
		// Lambda's key pattern, [a-zA-Z]([a-zA-Z0-9_])+, wants two characters.
		{name: "update config with a one-letter key", args: []string{"fn", "update-config", "echo", "--env", "K=V"},
			code: exitPlatformError, stderr: "InvalidParameterValueException"},
		{name: "update config", args: []string{"fn", "update-config", "echo", "--env", "KEY=V", "--env", "GREETING=hi there"},
			stdout: "KEY=V"},
		{name: "get shows the environment", args: []string{"fn", "get", "echo", "-o", "json"}, check: func(t *testing.T, r result) {
			env, _ := jsonOf(t, r)["Environment"].(map[string]any)
			if len(env) != 2 || env["KEY"] != "V" || env["GREETING"] != "hi there" {
				t.Errorf("Environment %v", env)
			}
		}},
		{name: "invoke after update", args: []string{"invoke", "echo", "--payload", "2"}, stdout: `{"echo":2,"function":"echo"}`},
		{name: "update code", args: []string{"fn", "update-code", "echo", "--dir", failDir, "-o", "json"}, check: func(t *testing.T, r result) {
			if env, _ := jsonOf(t, r)["Environment"].(map[string]any); env["KEY"] != "V" {
				t.Errorf("update-code lost the environment: %v", env)
			}
		}},
		{name: "invoke runs the new code", args: []string{"invoke", "echo"}, code: exitFunctionError, stdout: "MyError"},
		{name: "delete", args: []string{"fn", "delete", "echo"}, stdout: "deleted echo"},
		{name: "get after delete", args: []string{"fn", "get", "echo"}, code: exitPlatformError, stderr: "ResourceNotFoundException"},
		{name: "delete again", args: []string{"fn", "delete", "echo"}, code: exitPlatformError, stderr: "ResourceNotFoundException"},
		{name: "list after delete", args: []string{"fn", "list", "-o", "json"}, check: func(t *testing.T, r result) {
			var v struct{ Functions []map[string]any }
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || len(v.Functions) != 1 || v.Functions[0]["FunctionName"] != "failing" {
				t.Errorf("list -o json after delete: %v\n%s", err, r.stdout)
			}
		}},
	}
	for _, s := range steps {
		ok := t.Run(s.name, func(t *testing.T) {
			r := nimbus(append(s.args, "--addr", addr)...)
			if r.code != s.code {
				t.Fatalf("nimbus %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(s.args, " "), r.code, s.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, s.stdout) {
				t.Errorf("stdout lacks %q:\n%s", s.stdout, r.stdout)
			}
			if !strings.Contains(r.stderr, s.stderr) {
				t.Errorf("stderr lacks %q:\n%s", s.stderr, r.stderr)
			}
			if s.code == exitOK && r.stderr != "" && s.stderr == "" && !strings.Contains(strings.Join(s.args, " "), "--log-tail") {
				t.Errorf("unexpected stderr: %s", r.stderr)
			}
			if s.check != nil {
				s.check(t, r)
			}
		})
		if !ok {
			t.FailNow() // later steps depend on this one
		}
	}
}

// TestCLIUnreachable points the CLI at a closed port: every client command
// exits 2 and names the failure as a ServiceException.
func TestCLIUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{
		{"invoke", "echo"},
		{"fn", "get", "echo"},
		{"fn", "list", "-o", "json"},
		{"fn", "delete", "echo"},
		{"logs", "tail", "echo"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := nimbus(append(args, "--addr", addr)...)
			if r.code != exitPlatformError || !strings.Contains(r.stderr, "ServiceException") || !strings.Contains(r.stderr, addr) {
				t.Errorf("exit %d, stderr %q: want 2 and a ServiceException naming %s", r.code, r.stderr, addr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

// TestCLIUsageErrors checks mistakes the CLI catches before dialing: they
// exit 2 with a message saying what is wrong.
func TestCLIUsageErrors(t *testing.T) {
	t.Parallel()
	// Nothing listens here; none of these gets as far as dialing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"fn", "create", "x"}, "the code is required"},
		{[]string{"fn", "create", "x", "--zip", "a.zip", "--dir", "."}, "not both"},
		{[]string{"fn", "create", "x", "--dir", "../../examples/shell", "--env", "NOEQUALS"}, "want KEY=VALUE"},
		{[]string{"fn", "create", "x", "--zip", "/nonexistent/code.zip"}, "/nonexistent/code.zip"},
		{[]string{"fn", "get", "x", "-o", "yaml"}, "the only output format is json"},
		{[]string{"fn", "get"}, "accepts 1 arg"},
		{[]string{"invoke"}, "accepts 1 arg"},
		{[]string{"fn", "create", "x", "--memory", "lots"}, "invalid argument"},
		{[]string{"nosuchcommand"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := nimbus(append(tt.args, "--addr", addr)...)
			if r.code != exitPlatformError || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q: want 2 and %q", r.code, r.stderr, tt.stderr)
			}
			if strings.Contains(r.stderr, "ServiceException") {
				t.Errorf("stderr %q: the CLI dialed the node", r.stderr)
			}
		})
	}
}
