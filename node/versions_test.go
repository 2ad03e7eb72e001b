package node

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"nimbus/rpc"
)

// versionZip is testdata/version.sh with a code version file.
func versionZip(t testing.TB, code string) []byte {
	t.Helper()
	return mkzip(t, exe("bootstrap", readScript(t, "version.sh")), file("version", code))
}

// ranAs is what version.sh reports of an invocation.
type ranAs struct {
	Code, Version, ARN, Stream string
}

func decodeRanAs(t testing.TB, res *rpc.InvokeResponse) ranAs {
	t.Helper()
	var r ranAs
	if res.FunctionError != "" || json.Unmarshal(res.Payload, &r) != nil {
		t.Fatalf("invocation answered %s (%s)", res.Payload, res.FunctionError)
	}
	return r
}

// TestVersionsAndAliases runs published versions and aliases in real
// sandboxes: each version runs its own code as itself (the executed
// version, AWS_LAMBDA_FUNCTION_VERSION, the invoked ARN with its
// qualifier, the log stream's [VERSION]), with Lambda's refusals; a
// 10%-weighted alias sends between 8% and 12% of 2,000 invocations to its
// additional version (a binomial bound of three standard deviations).
func TestVersionsAndAliases(t *testing.T) {
	_, cl := startNode(t, t.TempDir())
	ctx := ctxT(t)
	create(t, cl, "v", versionZip(t, "one"), nil)
	p1, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "v", Description: "first"})
	if err != nil || p1.Function.Version != "1" {
		t.Fatalf("publish: %+v, %v", p1, err)
	}
	// Unchanged $LATEST: the same version.
	if again, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "v"}); err != nil || again.Function.Version != "1" {
		t.Fatalf("unchanged publish: %+v, %v", again, err)
	}
	upd, err := cl.UpdateFunctionCode(ctx, &rpc.UpdateCodeRequest{Name: "v", ZipFile: versionZip(t, "two")})
	if err != nil {
		t.Fatal(err)
	}
	// Preconditions: a stale revision, another code digest.
	if _, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "v", IfRevision: p1.Function.Revision}); !errors.Is(err, rpc.ErrPreconditionFailed) {
		t.Fatalf("publish on a stale revision: %v", err)
	}
	if _, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "v", CodeSHA256: p1.Function.CodeSHA256}); !errors.Is(err, rpc.ErrPreconditionFailed) {
		t.Fatalf("publish with another digest: %v", err)
	}
	p2, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "v", IfRevision: upd.Function.Revision, CodeSHA256: upd.Function.CodeSHA256})
	if err != nil || p2.Function.Version != "2" {
		t.Fatalf("second publish: %+v, %v", p2, err)
	}

	// Each version runs its own code, as itself; so does $LATEST.
	cases := []struct {
		ref, code, version, arnSuffix string
	}{
		{"v", "two", "$LATEST", ":function:v"},
		{"v:$LATEST", "two", "$LATEST", ":function:v:$LATEST"},
		{"v:1", "one", "1", ":function:v:1"},
		{"v:2", "two", "2", ":function:v:2"},
		{(rpc.ARNScope{}).Function("v", "") + ":1", "one", "1", ":function:v:1"},
	}
	for _, c := range cases {
		res := invoke(t, cl, c.ref, `{}`)
		r := decodeRanAs(t, res)
		if res.ExecutedVersion != c.version || r.Code != c.code || r.Version != c.version || !strings.HasSuffix(r.ARN, c.arnSuffix) ||
			!strings.Contains(r.Stream, "/["+c.version+"]") {
			t.Errorf("invoke %s: executed %s, ran %+v; want code %s as %s, ARN ...%s", c.ref, res.ExecutedVersion, r, c.code, c.version, c.arnSuffix)
		}
	}
	// The log's START line names the version.
	res := invoke(t, cl, "v:1", `{}`)
	if lines := invocationLog(t, cl, "v", res.RequestID); !strings.HasSuffix(lines[0], "Version: 1") {
		t.Errorf("START line of v:1: %q", lines[0])
	}
	// An Event invocation of a version runs that version, later.
	ev, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "v:1", InvocationType: rpc.InvocationEvent, Payload: []byte(`{}`)})
	if err != nil || ev.StatusCode != rpc.StatusAccepted {
		t.Fatalf("Event invocation of v:1: %+v, %v", ev, err)
	}
	if lines := invocationLog(t, cl, "v", ev.RequestID); !strings.HasSuffix(lines[0], "Version: 1") {
		t.Errorf("START line of the Event invocation of v:1: %q", lines[0])
	}
	if _, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "v:9", InvocationType: rpc.InvocationEvent}); !errors.Is(err, rpc.ErrResourceNotFound) {
		t.Errorf("Event invocation of a missing version: %v", err)
	}
	// The qualifier may also come apart.
	if res, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "v", Qualifier: "2", Payload: []byte(`{}`)}); err != nil || res.ExecutedVersion != "2" {
		t.Errorf("invoke with Qualifier 2: %+v, %v", res, err)
	}
	for ref, want := range map[string]*rpc.Error{"v:9": rpc.ErrResourceNotFound, "v:nope": rpc.ErrResourceNotFound, "v:a:b": rpc.ErrInvalidParameterValue, "v:0": rpc.ErrInvalidParameterValue} {
		if _, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: ref, Payload: []byte(`{}`)}); !errors.Is(err, want) {
			t.Errorf("invoke %s: %v, want %s", ref, err, want.Code)
		}
	}
	if _, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "v:1", Qualifier: "2"}); !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Errorf("disagreeing qualifiers: %v", err)
	}
	// Get with a qualifier reads the version.
	if got, err := cl.GetFunction(ctx, &rpc.GetFunctionRequest{Name: "v:1"}); err != nil || got.Function.Description != "first" || got.Function.Version != "1" {
		t.Errorf("get v:1: %+v, %v", got, err)
	}
	list, err := cl.ListVersions(ctx, &rpc.ListVersionsRequest{Name: "v"})
	if err != nil || len(list.Versions) != 3 || list.Versions[0].Version != "" || list.Versions[2].Version != "2" {
		t.Fatalf("list versions: %+v, %v", list, err)
	}

	// Aliases: Lambda's refusals, then a 10% canary.
	bad := []struct {
		req  rpc.CreateAliasRequest
		want *rpc.Error
	}{
		{rpc.CreateAliasRequest{FunctionName: "v", Name: "live", FunctionVersion: "1", Weights: map[string]float64{"2": 1.5}}, rpc.ErrInvalidParameterValue},
		{rpc.CreateAliasRequest{FunctionName: "v", Name: "live", FunctionVersion: "1", Weights: map[string]float64{"$LATEST": 0.1}}, rpc.ErrInvalidParameterValue},
		{rpc.CreateAliasRequest{FunctionName: "v", Name: "live", FunctionVersion: "$LATEST", Weights: map[string]float64{"2": 0.1}}, rpc.ErrInvalidParameterValue},
		{rpc.CreateAliasRequest{FunctionName: "v", Name: "live", FunctionVersion: "7"}, rpc.ErrResourceNotFound},
		{rpc.CreateAliasRequest{FunctionName: "v", Name: "42", FunctionVersion: "1"}, rpc.ErrInvalidParameterValue},
	}
	for _, c := range bad {
		if _, err := cl.CreateAlias(ctx, &c.req); !errors.Is(err, c.want) {
			t.Errorf("create alias %+v: %v, want %s", c.req, err, c.want.Code)
		}
	}
	al, err := cl.CreateAlias(ctx, &rpc.CreateAliasRequest{FunctionName: "v", Name: "live", FunctionVersion: "1", Weights: map[string]float64{"2": 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.DeleteVersion(ctx, &rpc.DeleteVersionRequest{Name: "v", Version: "2"}); !errors.Is(err, rpc.ErrResourceConflict) {
		t.Errorf("delete a version the alias routes to: %v", err)
	}
	if res := invoke(t, cl, "v:live", `{}`); !strings.HasSuffix(decodeRanAs(t, res).ARN, ":function:v:live") || decodeRanAs(t, res).Version != res.ExecutedVersion {
		t.Errorf("invoke v:live ran as %+v (executed %s)", decodeRanAs(t, res), res.ExecutedVersion)
	}
	weightedAlias(t, cl)

	// A stale alias revision is refused; dropping the weights routes all to 1.
	if _, err := cl.UpdateAlias(ctx, &rpc.UpdateAliasRequest{FunctionName: "v", Name: "live", FunctionVersion: "2", IfRevision: al.Alias.Revision + 100}); !errors.Is(err, rpc.ErrPreconditionFailed) {
		t.Errorf("update on a stale revision: %v", err)
	}
	if upd, err := cl.UpdateAlias(ctx, &rpc.UpdateAliasRequest{FunctionName: "v", Name: "live", SetWeights: true}); err != nil || upd.Alias.AdditionalVersion != "" {
		t.Fatalf("drop the weights: %+v, %v", upd, err)
	}
	if _, err := cl.DeleteVersion(ctx, &rpc.DeleteVersionRequest{Name: "v", Version: "2"}); err != nil {
		t.Errorf("delete a version no alias routes to: %v", err)
	}
	// Numbers are not reused after a delete.
	if _, err := cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: "v", TimeoutSec: ptr(9)}); err != nil {
		t.Fatal(err)
	}
	if p3, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "v"}); err != nil || p3.Function.Version != "3" {
		t.Fatalf("publish after deleting 2: %+v, %v", p3, err)
	}
	// Deleting the function deletes its versions and aliases.
	if _, err := cl.DeleteFunction(ctx, &rpc.GetFunctionRequest{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	create(t, cl, "v", versionZip(t, "new"), nil)
	if list, err := cl.ListVersions(ctx, &rpc.ListVersionsRequest{Name: "v"}); err != nil || len(list.Versions) != 1 {
		t.Errorf("versions of a function created again: %+v, %v", list, err)
	}
	if _, err := cl.GetAlias(ctx, &rpc.GetAliasRequest{FunctionName: "v", Name: "live"}); !errors.Is(err, rpc.ErrResourceNotFound) {
		t.Errorf("alias of a deleted function: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// weightedAlias sends 2,000 invocations through an alias of version 1
// weighted 10% to version 2 of examples/hello (a Go function: quick
// enough warm for this many), four callers at once: between 8% and 12%
// run version 2 (three standard deviations of the binomial), each as the
// version it was picked as, invoked through the alias's ARN.
func weightedAlias(t *testing.T, cl *rpc.Client) {
	ctx := ctxT(t)
	create(t, cl, "w", helloZip(t), nil)
	if _, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: "w", MemoryMB: ptr(256)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateAlias(ctx, &rpc.CreateAliasRequest{FunctionName: "w", Name: "live", FunctionVersion: "1", Weights: map[string]float64{"2": 0.1}}); err != nil {
		t.Fatal(err)
	}
	const n, callers = 2000, 4
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for w := 0; w < callers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/callers; i++ {
				res, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "w:live", Payload: []byte(`{}`)})
				if err != nil {
					t.Errorf("invoke w:live: %v", err)
					return
				}
				var r struct {
					ARN      string `json:"functionArn"`
					MemoryMB int    `json:"memoryMB"`
				}
				_ = json.Unmarshal(res.Payload, &r)
				mu.Lock()
				counts[res.ExecutedVersion]++
				// Version 1 has 128 MB, version 2 256 MB.
				if want := map[string]int{"1": 128, "2": 256}[res.ExecutedVersion]; r.MemoryMB != want || !strings.HasSuffix(r.ARN, ":function:w:live") {
					counts["mismatch"]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("2,000 invocations of w:live (version 1, and 2 at 10%%): %v", counts)
	if counts["1"]+counts["2"] != n || counts["mismatch"] != 0 {
		t.Fatalf("counts %v: want %d invocations of versions 1 and 2, each running as the version it reports", counts, n)
	}
	if share := float64(counts["2"]) / n; share < 0.08 || share > 0.12 {
		t.Errorf("version 2 served %.1f%% of the invocations, want 8-12%%", share*100)
	}
}

// TestVersionsBoto3 drives versions, aliases with weights, qualified
// invocations, function URL configuration and event invoke configuration
// with Debian's boto3 (testdata/versions_boto3.py), errors caught as the
// SDK's exception classes.
func TestVersionsBoto3(t *testing.T) {
	requireTool(t, "/usr/bin/python3", "-c", "import boto3")
	_, _, url := startGatewayNode(t)
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one.zip"), filepath.Join(dir, "two.zip")
	if err := os.WriteFile(one, behaveZip(t, "one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(two, behaveZip(t, "two"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctxT(t), "/usr/bin/python3", "testdata/versions_boto3.py", url, one, two)
	cmd.Env = awsEnv(t)
	out, err := cmd.CombinedOutput()
	t.Logf("boto3:\n%s", out)
	if err != nil {
		t.Fatalf("boto3 script: %v", err)
	}
	if !strings.Contains(string(out), "versions boto3 ok") {
		t.Fatal("the boto3 script did not finish")
	}
}

// TestVersionsAWSCLI: qualifiers through Debian's AWS CLI, in each form
// (--qualifier, name:qualifier, a qualified ARN).
func TestVersionsAWSCLI(t *testing.T) {
	requireTool(t, "/usr/bin/aws", "--version")
	_, _, url := startGatewayNode(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "one.zip"), behaveZip(t, "one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "two.zip"), behaveZip(t, "two"), 0o644); err != nil {
		t.Fatal(err)
	}
	aws := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctxT(t), "/usr/bin/aws", append(args, "--endpoint-url", url, "--output", "json")...)
		cmd.Env = awsEnv(t)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := aws(args...)
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	must("lambda", "create-function", "--function-name", "q", "--runtime", "provided", "--handler", "bootstrap",
		"--zip-file", "fileb://one.zip", "--role", "arn:aws:iam::000000000000:role/any")
	if out := must("lambda", "publish-version", "--function-name", "q", "--description", "one"); !strings.Contains(out, `"Version": "1"`) {
		t.Fatalf("publish-version:\n%s", out)
	}
	must("lambda", "update-function-code", "--function-name", "q", "--zip-file", "fileb://two.zip", "--publish")
	if out := must("lambda", "create-alias", "--function-name", "q", "--name", "live", "--function-version", "1",
		"--routing-config", `{"AdditionalVersionWeights":{"2":0.5}}`); !strings.Contains(out, `"2": 0.5`) {
		t.Errorf("create-alias:\n%s", out)
	}
	forms := map[string][]string{
		"1":   {"--function-name", "q", "--qualifier", "1"},
		"2":   {"--function-name", "q:2"},
		"one": {"--function-name", "arn:aws:lambda:us-east-1:000000000000:function:q:1"},
	}
	for want, args := range forms {
		out := must(append(append([]string{"lambda", "invoke"}, args...), "--payload", `{}`, "--cli-binary-format", "raw-in-base64-out", "out.json")...)
		b, _ := os.ReadFile(filepath.Join(dir, "out.json"))
		switch want {
		case "one":
			if !strings.Contains(string(b), `"version":"one"`) {
				t.Errorf("invoke %v: %s", args, b)
			}
		default:
			if !strings.Contains(out, `"ExecutedVersion": "`+want+`"`) {
				t.Errorf("invoke %v:\n%s", args, out)
			}
		}
	}
	out := must("lambda", "invoke", "--function-name", "q:live", "--payload", `{}`, "--cli-binary-format", "raw-in-base64-out", "out.json")
	if !strings.Contains(out, `"ExecutedVersion": "1"`) && !strings.Contains(out, `"ExecutedVersion": "2"`) {
		t.Errorf("invoke q:live:\n%s", out)
	}
	if out := must("lambda", "get-function", "--function-name", "q", "--qualifier", "1"); !strings.Contains(out, `"Description": "one"`) {
		t.Errorf("get-function --qualifier 1:\n%s", out)
	}
	if out := must("lambda", "get-alias", "--function-name", "q", "--name", "live"); !strings.Contains(out, `"AliasArn": "arn:aws:lambda:`) {
		t.Errorf("get-alias:\n%s", out)
	}
	if out, err := aws("lambda", "delete-function", "--function-name", "q", "--qualifier", "1"); err == nil || !strings.Contains(out, "ResourceConflictException") {
		t.Errorf("delete a version an alias uses: %v\n%s", err, out)
	}
	if out, err := aws("lambda", "invoke", "--function-name", "q:9", "out.json"); err == nil || !strings.Contains(out, "ResourceNotFoundException") {
		t.Errorf("invoke q:9: %v\n%s", err, out)
	}
	if out, err := aws("lambda", "update-alias", "--function-name", "q", "--name", "live", "--routing-config", `{"AdditionalVersionWeights":{"$LATEST":0.1}}`); err == nil || !strings.Contains(out, "InvalidParameterValueException") {
		t.Errorf("a weight on $LATEST: %v\n%s", err, out)
	}
	if out := must("lambda", "list-aliases", "--function-name", "q"); !strings.Contains(out, `"Name": "live"`) {
		t.Errorf("list-aliases:\n%s", out)
	}
	must("lambda", "delete-alias", "--function-name", "q", "--name", "live")
	must("lambda", "delete-function", "--function-name", "q", "--qualifier", "1")
	if out := must("lambda", "list-versions-by-function", "--function-name", "q"); strings.Contains(out, `"Version": "1"`) || !strings.Contains(out, `"Version": "2"`) {
		t.Errorf("list-versions-by-function after deleting 1:\n%s", out)
	}
}

// TestVersionsCluster: on a three-node cluster, version, alias and URL
// writes through a follower reach the leader, every replica's FSM holds
// them, a follower resolves a weighted alias's invocation through the
// leader, and a follower's answer carries the same URL id.
func TestVersionsCluster(t *testing.T) {
	tc := startCluster(t, 3, nil)
	lead := tc.waitLeader()
	fol := tc.clients[(lead+1)%3]
	ctx := ctxT(t)
	create(t, fol, "cv", versionZip(t, "one"), nil)
	if _, err := fol.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "cv"}); err != nil {
		t.Fatal(err)
	}
	if _, err := fol.UpdateFunctionCode(ctx, &rpc.UpdateCodeRequest{Name: "cv", ZipFile: versionZip(t, "two")}); err != nil {
		t.Fatal(err)
	}
	if _, err := fol.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "cv"}); err != nil {
		t.Fatal(err)
	}
	if _, err := fol.CreateAlias(ctx, &rpc.CreateAliasRequest{FunctionName: "cv", Name: "live", FunctionVersion: "1", Weights: map[string]float64{"2": 0.5}}); err != nil {
		t.Fatal(err)
	}
	u, err := fol.CreateURL(ctx, &rpc.CreateURLRequest{FunctionName: "cv", Qualifier: "live"})
	if err != nil {
		t.Fatal(err)
	}
	for i, nd := range tc.nodes {
		waitFor(t, "the versions, alias and URL on every replica", func() bool {
			_, hasAlias := nd.fsm.Alias("cv", "live")
			got, hasURL := nd.fsm.URLByID(u.Config.ID)
			return len(nd.fsm.Versions("cv")) == 2 && hasAlias && hasURL && got.Qualifier == "live"
		})
		if got, err := tc.clients[i].GetURL(ctx, &rpc.GetURLRequest{FunctionName: "cv", Qualifier: "live"}); err != nil || got.Config.ID != u.Config.ID {
			t.Errorf("node %d: GetURL = %+v, %v", i, got, err)
		}
	}
	seen := map[string]bool{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		res := invoke(t, fol, "cv:live", `{}`)
		r := decodeRanAs(t, res)
		if r.Version != res.ExecutedVersion || (r.Code == "one") != (r.Version == "1") {
			t.Fatalf("cv:live ran %+v as %s", r, res.ExecutedVersion)
		}
		seen[res.ExecutedVersion] = true
	}
	if !seen["1"] || !seen["2"] {
		t.Errorf("40 invocations of a 50%% alias through a follower ran only %v", seen)
	}
}
