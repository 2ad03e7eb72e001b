package node

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nimbus/rpc"
)

// ricDir is where scripts/install-ric.sh builds AWS's Node.js runtime
// interface client; the test skips without it, except in CI, which must
// have built it.
func ricDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("NIMBUS_RIC_DIR")
	if dir == "" {
		dir = "/var/cache/nimbus/aws-lambda-ric-3.3.0"
	}
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("aws-lambda-ric is not built in %s (scripts/install-ric.sh builds it; CI runs it): %v", dir, err)
		}
		t.Skipf("aws-lambda-ric is not built in %s: run scripts/install-ric.sh", dir)
	}
	return filepath.Join(dir, "node_modules", "aws-lambda-ric")
}

const ricHandlers = `let count = 0;
export const handler = async (event, context) => {
  count++;
  console.log("ric handler", context.awsRequestId);
  return {
    event, count,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    memory: String(context.memoryLimitInMB),
    arn: context.invokedFunctionArn,
    logStream: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
  };
};
export const fail = async () => { throw new TypeError("boom from the ric"); };
`

const ricCallback = `exports.handler = (event, context, callback) => {
  setTimeout(() => callback(null, { callback: true, n: event.n }), 5);
};
`

// ricStream are streaming handlers, as Lambda's Node.js users write them
// with the runtime's awslambda.streamifyResponse.
const ricStream = `export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType("text/plain");
  responseStream.write("one\n");
  await new Promise((r) => setTimeout(r, 1000));
  responseStream.write("two " + context.awsRequestId + "\n");
  responseStream.end();
});
export const broken = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write("partial\n");
  await new Promise((r) => setTimeout(r, 100));
  throw new RangeError("the ric stream broke");
});
`

// TestAWSNodeRuntimeInterfaceClient runs AWS's own Node.js runtime
// interface client (npm aws-lambda-ric, which no one here wrote) as a custom
// runtime on the provided image, node and all in the function's zip, as
// Lambda users do: a bootstrap that execs it with the handler. It must
// find the Runtime API, the request id, the context and the deadline,
// its answers must come back unchanged, and its error shape (errorType,
// errorMessage, trace) must reach the caller as it posted it.
func TestAWSNodeRuntimeInterfaceClient(t *testing.T) {
	requireRoot(t)
	ric := ricDir(t)
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	nodeBin, _ = filepath.EvalSymlinks(nodeBin)
	nodeBody, err := os.ReadFile(nodeBin)
	if err != nil {
		t.Fatal(err)
	}
	ents := []ent{
		exe("bootstrap", "#!/bin/sh\ncd \"$LAMBDA_TASK_ROOT\"\nexec ./bin/node ./node_modules/aws-lambda-ric/bin/index.mjs \"$_HANDLER\"\n"),
		exe("bin/node", string(nodeBody)),
		file("index.mjs", ricHandlers),
		file("cb.js", ricCallback),
		file("stream.mjs", ricStream),
	}
	err = filepath.WalkDir(ric, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(ric, p)
		if !strings.HasPrefix(rel, "bin/") && !strings.HasPrefix(rel, "dist/") && rel != "package.json" {
			return nil
		}
		body, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		ents = append(ents, ent{"node_modules/aws-lambda-ric/" + rel, info.Mode().Perm(), string(body)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	zip := mkzip(t, ents...)
	_, cl := startNode(t, t.TempDir())

	for _, fn := range []struct{ name, handler string }{{"ric", "index.handler"}, {"ric-fail", "index.fail"}, {"ric-cb", "cb.handler"},
		{"ric-stream", "stream.handler"}, {"ric-broken", "stream.broken"}} {
		create(t, cl, fn.name, zip, func(r *rpc.CreateFunctionRequest) {
			r.Handler, r.MemoryMB, r.TimeoutSec = fn.handler, 512, 20
		})
	}

	var first struct {
		Event        map[string]any `json:"event"`
		Count        int            `json:"count"`
		RequestID    string         `json:"requestId"`
		FunctionName string         `json:"functionName"`
		Memory       string         `json:"memory"`
		ARN          string         `json:"arn"`
		LogStream    string         `json:"logStream"`
		Remaining    int            `json:"remaining"`
	}
	for i := 1; i <= 2; i++ {
		res := invoke(t, cl, "ric", `{"hello":"ric"}`)
		if res.FunctionError != "" {
			t.Fatalf("invoke %d: function error %s", i, res.Payload)
		}
		if err := json.Unmarshal(res.Payload, &first); err != nil {
			t.Fatalf("invoke %d answered %s: %v", i, res.Payload, err)
		}
		if first.Event["hello"] != "ric" || first.RequestID != res.RequestID || first.FunctionName != "ric" ||
			first.Memory != "512" || !strings.HasSuffix(first.ARN, ":function:ric") || !strings.Contains(first.LogStream, "[$LATEST]") ||
			first.Remaining <= 0 || first.Remaining > 20_000 {
			t.Fatalf("invoke %d: the client saw %+v (request %s)", i, first, res.RequestID)
		}
		if first.Count != i {
			t.Fatalf("invoke %d ran with count %d: the sandbox was not reused warm", i, first.Count)
		}
		lines := invocationLog(t, cl, "ric", res.RequestID)
		if !strings.Contains(strings.Join(lines, "\n"), "ric handler "+res.RequestID) {
			t.Errorf("invoke %d: the handler's console.log is not in its log: %q", i, lines)
		}
	}

	res := invoke(t, cl, "ric-fail", `{}`)
	var fe struct {
		ErrorType    string   `json:"errorType"`
		ErrorMessage string   `json:"errorMessage"`
		Trace        []string `json:"trace"`
	}
	if res.FunctionError == "" || json.Unmarshal(res.Payload, &fe) != nil || fe.ErrorType != "TypeError" ||
		fe.ErrorMessage != "boom from the ric" || len(fe.Trace) == 0 {
		t.Fatalf("a thrown TypeError came back as %q %s", res.FunctionError, res.Payload)
	}

	res = invoke(t, cl, "ric-cb", `{"n":7}`)
	if res.FunctionError != "" || string(res.Payload) != `{"callback":true,"n":7}` {
		t.Fatalf("the callback handler answered %q %s", res.FunctionError, res.Payload)
	}

	// Response streaming with the client's own streamifyResponse: the
	// first write reaches the caller a second before the second, with
	// the Content-Type it set; a handler that throws midway is the
	// invocation's error after what it wrote; a plain Invoke buffers it.
	data, ctype, sres, lead := streamCall(t, cl, "ric-stream", `{}`)
	if data != "one\ntwo "+sres.RequestID+"\n" || ctype != "text/plain" || sres.FunctionError != "" {
		t.Fatalf("streamed: %q (%s) %+v %s", data, ctype, sres, sres.Payload)
	}
	if lead < 500*time.Millisecond {
		t.Fatalf("the first write came %v before the answer: not streamed", lead)
	}
	data, _, sres, _ = streamCall(t, cl, "ric-broken", `{}`)
	if data != "partial\n" || sres.FunctionError == "" || !strings.Contains(string(sres.Payload), "the ric stream broke") {
		t.Fatalf("broken midway: %q %+v %s", data, sres, sres.Payload)
	}
	res = invoke(t, cl, "ric-stream", `{}`)
	if res.FunctionError != "" || !strings.HasPrefix(string(res.Payload), "one\ntwo ") {
		t.Fatalf("buffered: %q %s", res.FunctionError, res.Payload)
	}
}
