package node

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"nimbus/bundle"
	"nimbus/rpc"
)

// TestInvokeExamples deploys both examples and invokes each twice: a cold
// start, then a warm one on the same sandbox. It checks the responses, what
// aws-lambda-go saw of the invocation, the log in Lambda's form as Logs.Read
// returns it, and LogType Tail.
func TestInvokeExamples(t *testing.T) {
	t.Parallel()
	_, cl := startNode(t, t.TempDir())
	shellZip, err := bundle.ZipDir("../examples/shell")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		zip      []byte
		memoryMB int
		payload  string
		logLine  string // a line the function writes
		check    func(t *testing.T, res *rpc.InvokeResponse)
	}{
		{
			name: "hello", zip: helloZip(t), memoryMB: 256,
			payload: `{"name":"nimbus"}`, logLine: "greeting nimbus",
			check: func(t *testing.T, res *rpc.InvokeResponse) {
				var out struct {
					Message      string `json:"message"`
					RequestID    string `json:"requestId"`
					FunctionName string `json:"functionName"`
					FunctionARN  string `json:"functionArn"`
					MemoryMB     int    `json:"memoryMB"`
					DeadlineInMs int64  `json:"deadlineInMs"`
				}
				if err := json.Unmarshal(res.Payload, &out); err != nil {
					t.Fatalf("payload %q: %v", res.Payload, err)
				}
				if out.Message != "Hello, nimbus!" {
					t.Errorf("message %q", out.Message)
				}
				if out.RequestID != res.RequestID {
					t.Errorf("aws-lambda-go saw request id %q, the response says %q", out.RequestID, res.RequestID)
				}
				if out.FunctionName != "hello" || out.FunctionARN != "arn:aws:lambda:local:000000000000:function:hello" {
					t.Errorf("aws-lambda-go saw function %q, ARN %q", out.FunctionName, out.FunctionARN)
				}
				if out.MemoryMB != 256 {
					t.Errorf("aws-lambda-go saw %d MB, want 256", out.MemoryMB)
				}
				if out.DeadlineInMs <= 0 || out.DeadlineInMs > 3000 {
					t.Errorf("deadline %d ms away, want within the default 3 s timeout", out.DeadlineInMs)
				}
			},
		},
		{
			// 1024 MB: at 128 MB sh and curl get an eighth of a vCPU, and
			// a loaded machine can take the default 3 s timeout.
			name: "shell", zip: shellZip, memoryMB: 1024,
			payload: `{"a":[1,2]}`, logLine: `handler bootstrap got: {"a":[1,2]}`,
			check: func(t *testing.T, res *rpc.InvokeResponse) {
				if want := `{"echo":{"a":[1,2]},"function":"shell"}`; string(res.Payload) != want {
					t.Errorf("payload %s, want %s", res.Payload, want)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fn := create(t, cl, tt.name, tt.zip, func(r *rpc.CreateFunctionRequest) { r.MemoryMB = tt.memoryMB })
			if fn.Name != tt.name || fn.MemoryMB != tt.memoryMB || fn.TimeoutSec != 3 || fn.Handler != "bootstrap" ||
				fn.CodeSHA256 != bundle.Digest(tt.zip) || fn.CodeSize != int64(len(tt.zip)) || fn.Revision == 0 {
				t.Errorf("created %+v", fn)
			}

			var requestIDs []string
			for i, cold := range []bool{true, false} {
				res, err := cl.Invoke(ctxT(t), &rpc.InvokeRequest{
					FunctionName: tt.name, Payload: []byte(tt.payload), LogType: rpc.LogTypeTail,
				})
				if err != nil {
					t.Fatalf("invoke %d: %v", i, err)
				}
				if res.FunctionError != "" || res.StatusCode != 200 || res.ExecutedVersion != "$LATEST" {
					t.Fatalf("invoke %d: status %d, function error %q, version %q: %s",
						i, res.StatusCode, res.FunctionError, res.ExecutedVersion, res.Payload)
				}
				tt.check(t, res)
				for _, id := range requestIDs {
					if id == res.RequestID {
						t.Fatalf("request id %s reused", id)
					}
				}
				requestIDs = append(requestIDs, res.RequestID)

				lines := invocationLog(t, cl, tt.name, res.RequestID)
				checkFramed(t, lines, res.RequestID, tt.memoryMB, cold)
				if !containsLine(lines, tt.logLine) {
					t.Errorf("invocation %d: the function's line %q is not in its log %q", i, tt.logLine, lines)
				}
				// Tail is this invocation's log, the same lines.
				tail := string(res.LogResult)
				if want := strings.Join(lines, "\n") + "\n"; tail != want {
					t.Errorf("invocation %d: LogResult\n%q\nwant the invocation's log\n%q", i, tail, want)
				}
			}
		})
	}
}

// containsLine reports whether some line contains s.
func containsLine(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// TestFunctionErrors checks that a function that reports an error, crashes
// or times out comes back as an Unhandled function error with Lambda's error
// payload, and that the next invocation of the function works: on the same
// sandbox after a reported error, on a fresh one after a crash or timeout.
func TestFunctionErrors(t *testing.T) {
	t.Parallel()
	_, cl := startNode(t, t.TempDir())
	zip := behaveZip(t, "v1")
	tests := []struct {
		name      string
		timeout   int
		memoryMB  int
		event     string
		errType   string
		msg       string // in errorMessage
		status    string // REPORT's Status, "" when the sandbox survives
		freshNext bool   // the next invocation needs a new sandbox
	}{
		{"fn-error", 5, 128, `"error"`, "MyError", "something broke", "", false},
		{"fn-crash", 5, 128, `"crash"`, "Runtime.ExitError", "Runtime exited with error: exit status 3", "error", true},
		// More memory, so more CPU: the invocation after the timeout must
		// fit in its 1 s even on a loaded machine.
		{"fn-timeout", 1, 1024, `"sleep"`, "Sandbox.Timedout", "Task timed out after 1.00 seconds", "timeout", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			create(t, cl, tt.name, zip, func(r *rpc.CreateFunctionRequest) { r.TimeoutSec, r.MemoryMB = tt.timeout, tt.memoryMB })
			// A first good invocation, so the failing one runs warm.
			if res := invoke(t, cl, tt.name, `"warm-up"`); res.FunctionError != "" {
				t.Fatalf("warm-up failed: %s", res.Payload)
			}

			res := invoke(t, cl, tt.name, tt.event)
			if res.FunctionError != rpc.FunctionErrorUnhandled || res.StatusCode != 200 {
				t.Errorf("FunctionError %q, status %d; want %q, 200", res.FunctionError, res.StatusCode, rpc.FunctionErrorUnhandled)
			}
			var p rpc.FunctionErrorPayload
			if err := json.Unmarshal(res.Payload, &p); err != nil {
				t.Fatalf("error payload %q: %v", res.Payload, err)
			}
			if p.ErrorType != tt.errType || !strings.Contains(p.ErrorMessage, tt.msg) {
				t.Errorf("error payload %s: want errorType %q and a message containing %q", res.Payload, tt.errType, tt.msg)
			}
			lines := invocationLog(t, cl, tt.name, res.RequestID)
			checkFramed(t, lines, res.RequestID, tt.memoryMB, false)
			if tt.status != "" && !strings.Contains(reportOf(lines), "\tStatus: "+tt.status) {
				t.Errorf("REPORT %q lacks Status: %s", reportOf(lines), tt.status)
			}

			next := invoke(t, cl, tt.name, `{"next":true}`)
			if want := `{"echo":{"next":true},"version":"v1","greeting":""}`; next.FunctionError != "" || string(next.Payload) != want {
				t.Fatalf("the invocation after the failure answered %s (%q), want %s", next.Payload, next.FunctionError, want)
			}
			checkFramed(t, invocationLog(t, cl, tt.name, next.RequestID), next.RequestID, tt.memoryMB, tt.freshNext)
		})
	}
}

// FuzzCheckClientContext: a client context is accepted only as a JSON
// object within Lambda's limit, and what is kept is one line of JSON that
// means the same.
func FuzzCheckClientContext(f *testing.F) {
	for _, s := range []string{`{"custom":{"a":"b"}}`, "{\n \"env\": {\"k\": \"v\"}\n}", `[1]`, `null`, `"s"`, `{`, ``, `{"a":"\u2028"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := checkClientContext(in)
		if err != nil {
			if !errors.Is(err, rpc.ErrInvalidParameterValue) {
				t.Fatalf("%q: %v, want InvalidParameterValueException", in, err)
			}
			return
		}
		if len(in) == 0 {
			if out != nil {
				t.Fatalf("no client context became %q", out)
			}
			return
		}
		if bytes.ContainsAny(out, "\r\n") || base64.StdEncoding.EncodedLen(len(in)) > rpc.MaxClientContext {
			t.Fatalf("%q kept as %q", in, out)
		}
		var a, b map[string]any
		if json.Unmarshal(in, &a) != nil || json.Unmarshal(out, &b) != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("%q kept as %q: not the same object", in, out)
		}
	})
}
