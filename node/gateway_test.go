package node

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"nimbus/rpc"
)

// startGatewayNode starts a dev node that serves the REST API too, and
// returns it with its rpc client and the API's base URL.
func startGatewayNode(t testing.TB) (*Node, *rpc.Client, string) {
	t.Helper()
	requireRoot(t)
	dataDir := t.TempDir()
	if _, err := os.Lstat(filepath.Join(dataDir, "images")); errors.Is(err, fs.ErrNotExist) {
		if err := linkTree(sharedImage, filepath.Join(dataDir, "images")); err != nil {
			t.Fatal(err)
		}
	}
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, cl := startNodeConfig(t, Config{DataDir: dataDir, HTTPListener: hln})
	return n, cl, "http://" + n.HTTPAddr()
}

// requireTool skips a test whose client is not installed
// (scripts/install-deps.sh installs them).
func requireTool(t testing.TB, path string, check ...string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s is not installed (scripts/install-deps.sh installs it): %v", path, err)
	}
	if len(check) > 0 {
		if out, err := exec.Command(path, check...).CombinedOutput(); err != nil {
			t.Skipf("%s %v: %v\n%s (scripts/install-deps.sh installs it)", path, check, err, out)
		}
	}
}

// awsEnv is an environment for Debian's AWS CLI and boto3: any
// credentials, no config files of the machine's.
func awsEnv(t testing.TB) []string {
	home := t.TempDir()
	return []string{"PATH=/usr/bin:/bin", "HOME=" + home, "AWS_ACCESS_KEY_ID=any", "AWS_SECRET_ACCESS_KEY=any",
		"AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=", "AWS_CONFIG_FILE=" + filepath.Join(home, "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"), "AWS_MAX_ATTEMPTS=1"}
}

func TestGatewayBoto3(t *testing.T) {
	requireTool(t, "/usr/bin/python3", "-c", "import boto3")
	_, _, url := startGatewayNode(t)
	dir := t.TempDir()
	hello := filepath.Join(dir, "hello.zip")
	small := filepath.Join(dir, "small.zip")
	if err := os.WriteFile(hello, helloZip(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(small, mkzip(t, exe("bootstrap", "#!/bin/sh\nexit 0\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctxT(t), "/usr/bin/python3", "testdata/gateway_boto3.py", url, hello, small)
	cmd.Env = awsEnv(t)
	out, err := cmd.CombinedOutput()
	t.Logf("boto3:\n%s", out)
	if err != nil {
		t.Fatalf("boto3 script: %v", err)
	}
	if !strings.Contains(string(out), "boto3 ok") {
		t.Fatal("the boto3 script did not finish")
	}
}

func TestGatewayAWSCLI(t *testing.T) {
	requireTool(t, "/usr/bin/aws", "--version")
	_, _, url := startGatewayNode(t)
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "f.zip")
	if err := os.WriteFile(zipPath, helloZip(t), 0o644); err != nil {
		t.Fatal(err)
	}
	aws := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctxT(t), "/usr/bin/aws", append(args, "--endpoint-url", url, "--output", "json")...)
		cmd.Env = awsEnv(t)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mustAWS := func(args ...string) string {
		t.Helper()
		out, err := aws(args...)
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := mustAWS("lambda", "create-function", "--function-name", "f", "--runtime", "provided", "--handler", "bootstrap",
		"--zip-file", "fileb://f.zip", "--role", "arn:aws:iam::000000000000:role/any")
	if !strings.Contains(out, `"State": "Active"`) || !strings.Contains(out, `"FunctionArn": "arn:aws:lambda:`) {
		t.Errorf("create-function printed:\n%s", out)
	}
	out = mustAWS("lambda", "invoke", "--function-name", "f", "--payload", `{"name":"cli"}`, "--cli-binary-format", "raw-in-base64-out",
		"--log-type", "Tail", "--query", "LogResult", "--output", "text", "out.json")
	if tail, err := base64.StdEncoding.DecodeString(strings.Trim(strings.TrimSpace(out), `"`)); err != nil || !strings.Contains(string(tail), "START RequestId: ") {
		t.Errorf("invoke --log-type Tail printed %q (%v), want the base64 log tail", out, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out.json")); err != nil || !strings.Contains(string(b), "Hello, cli!") {
		t.Errorf("out.json: %q, %v", b, err)
	}
	mustAWS("lambda", "update-function-configuration", "--function-name", "f", "--timeout", "7")
	if out := mustAWS("lambda", "get-function-configuration", "--function-name", "f"); !strings.Contains(out, `"Timeout": 7`) {
		t.Errorf("get-function-configuration after the update:\n%s", out)
	}
	if out := mustAWS("lambda", "get-function-configuration", "--function-name", "f"); !strings.Contains(out, `"Size": 512`) {
		t.Errorf("a new function's ephemeral storage is not Lambda's default 512 MB:\n%s", out)
	}
	mustAWS("lambda", "update-function-configuration", "--function-name", "f", "--ephemeral-storage", "Size=1024")
	if out := mustAWS("lambda", "get-function-configuration", "--function-name", "f"); !strings.Contains(out, `"Size": 1024`) {
		t.Errorf("get-function-configuration after --ephemeral-storage Size=1024:\n%s", out)
	}
	// The CLI refuses 100 MB itself; the server's own check is in the
	// boto3 script, which turns the SDK's validation off.
	out, err := aws("lambda", "update-function-configuration", "--function-name", "f", "--ephemeral-storage", "Size=100")
	if err == nil || !strings.Contains(out, "EphemeralStorage.Size") {
		t.Errorf("an ephemeral storage of 100 MB: %v\n%s", err, out)
	}
	out = mustAWS("lambda", "invoke", "--function-name", "f", "--payload", `{"name":"big tmp"}`, "--cli-binary-format", "raw-in-base64-out", "out.json")
	if b, err := os.ReadFile(filepath.Join(dir, "out.json")); err != nil || !strings.Contains(string(b), "Hello, big tmp!") {
		t.Errorf("invoke with a 1024 MB /tmp: %q, %v\n%s", b, err, out)
	}
	mustAWS("lambda", "update-function-code", "--function-name", "f", "--zip-file", "fileb://f.zip")
	if out := mustAWS("lambda", "list-functions"); !strings.Contains(out, `"FunctionName": "f"`) {
		t.Errorf("list-functions:\n%s", out)
	}
	if out := mustAWS("lambda", "get-account-settings"); !strings.Contains(out, `"ConcurrentExecutions": 1000`) {
		t.Errorf("get-account-settings:\n%s", out)
	}
	out, err = aws("lambda", "get-function", "--function-name", "nope")
	if err == nil || !strings.Contains(out, "ResourceNotFoundException") {
		t.Errorf("get-function of a missing function: %v\n%s", err, out)
	}
	out, err = aws("lambda", "get-policy", "--function-name", "f")
	if err == nil || !strings.Contains(out, "NotImplementedException") {
		t.Errorf("get-policy: %v\n%s", err, out)
	}
	mustAWS("lambda", "delete-function", "--function-name", "f")
	if out, err := aws("lambda", "get-function", "--function-name", "f"); err == nil {
		t.Errorf("get-function after delete-function:\n%s", out)
	}
}

// TestEventSourceMappingsBoto3: Lambda's event source mapping operations
// over queue triggers, driven by Debian's boto3.
func TestEventSourceMappingsBoto3(t *testing.T) {
	requireTool(t, "/usr/bin/python3", "-c", "import boto3")
	_, cl, url := startGatewayNode(t)
	if _, err := cl.CreateQueue(ctxT(t), &rpc.CreateQueueRequest{Name: "esmq"}); err != nil {
		t.Fatal(err)
	}
	zip := filepath.Join(t.TempDir(), "f.zip")
	if err := os.WriteFile(zip, behaveZip(t, "esm"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctxT(t), "/usr/bin/python3", "testdata/esm_boto3.py", url, zip, (rpc.ARNScope{}).Queue("esmq"))
	cmd.Env = awsEnv(t)
	out, err := cmd.CombinedOutput()
	t.Logf("boto3:\n%s", out)
	if err != nil {
		t.Fatalf("boto3 script: %v", err)
	}
	if !strings.Contains(string(out), "esm boto3 ok") {
		t.Fatal("the boto3 script did not finish")
	}
}

// TestLayersBoto3: Lambda's layer operations, a function's layers and its
// description, through Debian's boto3 (node/testdata/layers_boto3.py).
func TestLayersBoto3(t *testing.T) {
	requireTool(t, "/usr/bin/python3", "-c", "import boto3")
	_, _, url := startGatewayNode(t)
	zip := filepath.Join(t.TempDir(), "f.zip")
	if err := os.WriteFile(zip, behaveZip(t, "layers"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctxT(t), "/usr/bin/python3", "testdata/layers_boto3.py", url, zip)
	cmd.Env = awsEnv(t)
	out, err := cmd.CombinedOutput()
	t.Logf("boto3:\n%s", out)
	if err != nil {
		t.Fatalf("boto3 script: %v", err)
	}
	if !strings.Contains(string(out), "layers boto3 ok") {
		t.Fatal("the boto3 script did not finish")
	}
}
