package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"nimbus/internal/testutil"
	"nimbus/node"
)

// startHTTPNode starts a dev node that serves the REST API and function
// URLs too, and returns its rpc address.
func startHTTPNode(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := node.Start(ctx, node.Config{DataDir: t.TempDir(), Dev: true, RPCListener: ln, HTTPListener: hln,
		Logger: slog.New(slog.NewTextHandler(testutil.NewLogWriter(t), nil))})
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n.Addr()
}

// TestCLIVersions drives the version, alias and URL commands as a script
// would: exit statuses, the text printed, and the JSON of -o json.
func TestCLIVersions(t *testing.T) {
	t.Parallel()
	addr := startHTTPNode(t)
	run := func(args ...string) result { return nimbus(append(args, "--addr", addr)...) }
	urlLine := regexp.MustCompile(`^http://127\.0\.0\.1:\d+/lambda-url/[a-z0-9]{32}/\n$`)
	steps := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
		check  func(t *testing.T, r result)
	}{
		// A timeout over the 3 s default: the sh-and-curl example at 128 MB
		// has an eighth of a vCPU, and a loaded machine can take 3 s.
		{name: "create", args: []string{"fn", "create", "echo", "--dir", "../../examples/shell", "--timeout", "60"}},
		{name: "publish 1", args: []string{"fn", "publish-version", "echo", "--description", "first"}, stdout: "Version:        1"},
		{name: "change", args: []string{"fn", "update-config", "echo", "--memory", "256"}},
		{name: "publish 2 as JSON", args: []string{"fn", "publish-version", "echo", "-o", "json"}, check: func(t *testing.T, r result) {
			var v map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v["Version"] != "2" || v["MemorySize"] != 256.0 {
				t.Errorf("publish-version -o json: %v %s", err, r.stdout)
			}
		}},
		{name: "list versions", args: []string{"fn", "list-versions", "echo", "-o", "json"}, check: func(t *testing.T, r result) {
			var v struct{ Versions []map[string]any }
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || len(v.Versions) != 3 || v.Versions[1]["Description"] != "first" {
				t.Errorf("list-versions -o json: %v %s", err, r.stdout)
			}
		}},
		{name: "alias with weights", args: []string{"fn", "create-alias", "echo", "live", "--version", "1", "--weights", "2=0.25", "-o", "json"},
			stdout: `"2": 0.25`},
		{name: "weight out of range", args: []string{"fn", "create-alias", "echo", "bad", "--version", "1", "--weights", "2=1.5"},
			code: exitPlatformError, stderr: "InvalidParameterValueException"},
		{name: "weight on $LATEST", args: []string{"fn", "create-alias", "echo", "bad", "--version", "1", "--weights", "$LATEST=0.1"},
			code: exitPlatformError, stderr: "InvalidParameterValueException"},
		{name: "malformed weights", args: []string{"fn", "create-alias", "echo", "bad", "--version", "1", "--weights", "2"},
			code: 2, stderr: "VERSION=WEIGHT"},
		{name: "get alias", args: []string{"fn", "get-alias", "echo", "live"}, stdout: "2=0.25"},
		{name: "list aliases", args: []string{"fn", "list-aliases", "echo"}, stdout: "live"},
		{name: "invoke the alias", args: []string{"invoke", "echo:live", "--payload", `{"x":1}`}, stdout: `"x":1`},
		{name: "invoke a version", args: []string{"invoke", "echo:1"}},
		{name: "invoke by ARN", args: []string{"invoke", "arn:aws:lambda:local:000000000000:function:echo:2"}},
		{name: "invoke a missing version", args: []string{"invoke", "echo:9"}, code: exitPlatformError, stderr: "ResourceNotFoundException"},
		{name: "delete a version in use", args: []string{"fn", "delete-version", "echo", "2"}, code: exitPlatformError, stderr: "ResourceConflictException"},
		{name: "drop the weights", args: []string{"fn", "update-alias", "echo", "live", "--no-weights", "-o", "json"}, check: func(t *testing.T, r result) {
			if strings.Contains(r.stdout, "RoutingConfig") || !strings.Contains(r.stdout, `"FunctionVersion": "1"`) {
				t.Errorf("update-alias --no-weights: %s", r.stdout)
			}
		}},
		{name: "delete version 2", args: []string{"fn", "delete-version", "echo", "2"}, stdout: "deleted echo:2"},
		{name: "create a URL", args: []string{"fn", "create-url", "echo", "--cors-origin", "https://app.example"}, check: func(t *testing.T, r result) {
			if !urlLine.MatchString(r.stdout) {
				t.Errorf("create-url printed %q, want the URL alone", r.stdout)
			}
		}},
		{name: "a URL with a token", args: []string{"fn", "create-url", "echo", "--qualifier", "live", "--auth", "TOKEN"}, stderr: "token: "},
		{name: "a URL on a version", args: []string{"fn", "create-url", "echo", "--qualifier", "1"}, code: exitPlatformError, stderr: "InvalidParameterValueException"},
		{name: "a URL twice", args: []string{"fn", "create-url", "echo"}, code: exitPlatformError, stderr: "ResourceConflictException"},
		{name: "get the URL", args: []string{"fn", "get-url", "echo"}, check: func(t *testing.T, r result) {
			if !urlLine.MatchString(r.stdout) {
				t.Errorf("get-url printed %q", r.stdout)
			}
		}},
		{name: "list URLs", args: []string{"fn", "list-urls", "echo", "-o", "json"}, check: func(t *testing.T, r result) {
			var v struct{ FunctionUrlConfigs []map[string]any }
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || len(v.FunctionUrlConfigs) != 2 || v.FunctionUrlConfigs[0]["AuthToken"] != nil {
				t.Errorf("list-urls -o json: %v %s", err, r.stdout)
			}
		}},
		{name: "delete the alias and its URL", args: []string{"fn", "delete-alias", "echo", "live"}, stdout: "deleted echo:live"},
		{name: "its URL is gone", args: []string{"fn", "get-url", "echo", "--qualifier", "live"}, code: exitPlatformError, stderr: "ResourceNotFoundException"},
		{name: "delete the URL", args: []string{"fn", "delete-url", "echo"}, stdout: "deleted the URL of echo"},
	}
	for _, s := range steps {
		r := run(s.args...)
		if r.code != s.code || !strings.Contains(r.stdout, s.stdout) || !strings.Contains(r.stderr, s.stderr) {
			t.Fatalf("%s: nimbus %s: exit %d, want %d\nstdout: %s\nstderr: %s", s.name, strings.Join(s.args, " "), r.code, s.code, r.stdout, r.stderr)
		}
		if s.check != nil {
			s.check(t, r)
		}
	}
}
