package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"nimbus/bundle"
	"nimbus/rpc"
)

// sdkClient is aws-sdk-go-v2's Lambda client pointed at url, with any
// credentials and no retries (a throttle must reach the test).
func sdkClient(url string) *lambda.Client {
	return lambda.New(lambda.Options{
		BaseEndpoint: aws.String(url),
		Region:       "us-east-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "any", SecretAccessKey: "any", Source: "test"}, nil
		}),
		Retryer: aws.NopRetryer{},
	})
}

func TestGatewayGoSDK(t *testing.T) {
	_, _, url := startGatewayNode(t)
	ctx := ctxT(t)
	c := sdkClient(url)

	created, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("behave"),
		Runtime:      types.RuntimeProvided,
		Handler:      aws.String("bootstrap"),
		Role:         aws.String("arn:aws:iam::000000000000:role/any"),
		Code:         &types.FunctionCode{ZipFile: behaveZip(t, "v1")},
		Environment:  &types.Environment{Variables: map[string]string{"GREETING": "hey"}},
	})
	if err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	if created.State != types.StateActive || created.LastUpdateStatus != types.LastUpdateStatusSuccessful ||
		aws.ToString(created.Version) != "$LATEST" || aws.ToInt32(created.MemorySize) != 128 {
		t.Errorf("CreateFunction answered %+v", created)
	}

	out, err := c.Invoke(ctx, &lambda.InvokeInput{
		FunctionName: aws.String("behave"),
		Payload:      []byte(`{"hello":"sdk"}`),
		LogType:      types.LogTypeTail,
	})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	var body struct {
		Echo     map[string]string `json:"echo"`
		Greeting string            `json:"greeting"`
	}
	if err := json.Unmarshal(out.Payload, &body); err != nil || body.Echo["hello"] != "sdk" || body.Greeting != "hey" {
		t.Errorf("Invoke payload %s (%v)", out.Payload, err)
	}
	logs, err := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	if err != nil || !strings.Contains(string(logs), "REPORT RequestId:") {
		t.Errorf("LogResult %q (%v)", logs, err)
	}
	if out.StatusCode != 200 || out.FunctionError != nil || aws.ToString(out.ExecutedVersion) != "$LATEST" {
		t.Errorf("Invoke: status %d, function error %v, version %v", out.StatusCode, out.FunctionError, out.ExecutedVersion)
	}

	// A function error is a 200 with X-Amz-Function-Error, not an error.
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("arn:aws:lambda:us-east-1:000000000000:function:behave"), Payload: []byte(`"error"`)})
	if err != nil {
		t.Fatalf("Invoke (function error): %v", err)
	}
	if aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), "MyError") {
		t.Errorf("function error: %v %s", out.FunctionError, out.Payload)
	}

	dry, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("behave"), InvocationType: types.InvocationTypeDryRun})
	if err != nil || dry.StatusCode != 204 {
		t.Errorf("DryRun: %+v, %v", dry, err)
	}

	// Event is queued: 202 once committed.
	ev, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("behave"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`)})
	if err != nil || ev.StatusCode != 202 {
		t.Errorf("Invoke with InvocationType Event: %+v, %v", ev, err)
	}

	// Errors are the SDK's typed exceptions.
	_, err = c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("missing")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("GetFunction of a missing function: %T %v", err, err)
	}
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("behave"), Qualifier: aws.String("7")})
	if !errors.As(err, &nf) {
		t.Errorf("Invoke of a missing version: %T %v", err, err)
	}
	_, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("behave"), MemorySize: aws.Int32(64)})
	var ipv *types.InvalidParameterValueException
	if !errors.As(err, &ipv) {
		t.Errorf("64 MB: %T %v", err, err)
	}
	_, err = c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("behave"), Runtime: types.RuntimeProvided,
		Role: aws.String("arn:aws:iam::000000000000:role/any"), Code: &types.FunctionCode{ZipFile: behaveZip(t, "v1")}})
	var conflict *types.ResourceConflictException
	if !errors.As(err, &conflict) {
		t.Errorf("CreateFunction twice: %T %v", err, err)
	}

	// Over Lambda's sizes: a 6 MB payload (refused by the gateway before
	// it reads the body) and a 50 MB zip (refused by the code store).
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("behave"), Payload: make([]byte, rpc.MaxSyncPayload+1)})
	var tooLarge *types.RequestTooLargeException
	if !errors.As(err, &tooLarge) {
		t.Errorf("Invoke with a payload over 6 MB: %T %v", err, err)
	}
	_, err = c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("behave"), ZipFile: make([]byte, bundle.MaxZipSize+1)})
	if !errors.As(err, &tooLarge) {
		t.Errorf("UpdateFunctionCode with a zip over 50 MB: %T %v", err, err)
	}

	// Reserved concurrency 0 throttles.
	if _, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("behave"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatalf("PutFunctionConcurrency: %v", err)
	}
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("behave")})
	var tmr *types.TooManyRequestsException
	if !errors.As(err, &tmr) || tmr.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded || aws.ToString(tmr.RetryAfterSeconds) == "" {
		t.Errorf("Invoke with reserved concurrency 0: %T %v", err, err)
	}
	got, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("behave")})
	if err != nil || got.Concurrency == nil || aws.ToInt32(got.Concurrency.ReservedConcurrentExecutions) != 0 {
		t.Errorf("GetFunction's Concurrency: %+v, %v", got, err)
	}
	if _, err := c.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("behave")}); err != nil {
		t.Fatalf("DeleteFunctionConcurrency: %v", err)
	}

	// Code and configuration updates, the second conditional on the
	// first's RevisionId.
	code, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("behave"), ZipFile: behaveZip(t, "v2")})
	if err != nil || aws.ToString(code.CodeSha256) == aws.ToString(created.CodeSha256) {
		t.Fatalf("UpdateFunctionCode: %+v, %v", code, err)
	}
	conf, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("behave"),
		Timeout: aws.Int32(9), RevisionId: code.RevisionId})
	if err != nil || aws.ToInt32(conf.Timeout) != 9 {
		t.Fatalf("UpdateFunctionConfiguration: %+v, %v", conf, err)
	}
	_, err = c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("behave"), ZipFile: behaveZip(t, "v3"), RevisionId: code.RevisionId})
	var pf *types.PreconditionFailedException
	if !errors.As(err, &pf) {
		t.Errorf("UpdateFunctionCode with a stale RevisionId: %T %v", err, err)
	}
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("behave"), Payload: []byte(`{}`)})
	if err != nil || !strings.Contains(string(out.Payload), `"version":"v2"`) {
		t.Errorf("Invoke after the code update: %s, %v", out.Payload, err)
	}

	// The SDK's paginator over ListFunctions.
	for _, name := range []string{"a1", "a2", "a3"} {
		if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Runtime: types.RuntimeProvided,
			Role: aws.String("arn:aws:iam::000000000000:role/any"), Code: &types.FunctionCode{ZipFile: behaveZip(t, name)}}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	pages := 0
	for p := lambda.NewListFunctionsPaginator(c, &lambda.ListFunctionsInput{MaxItems: aws.Int32(2)}); p.HasMorePages(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, f := range page.Functions {
			names = append(names, aws.ToString(f.FunctionName))
		}
	}
	if strings.Join(names, ",") != "a1,a2,a3,behave" || pages != 2 {
		t.Errorf("paginator: %d pages of %v", pages, names)
	}
	acct, err := c.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	if err != nil || acct.AccountUsage.FunctionCount != 4 || acct.AccountLimit.ConcurrentExecutions != 1000 {
		t.Errorf("GetAccountSettings: %+v, %v", acct, err)
	}

	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("behave")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("behave")}); !errors.As(err, &nf) {
		t.Errorf("after DeleteFunction: %T %v", err, err)
	}
	// An operation nimbus does not offer yet says so.
	_, err = c.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String("a1")})
	if err == nil || !strings.Contains(err.Error(), "NotImplementedException") {
		t.Errorf("GetPolicy: %v", err)
	}

	// Versions through the Go SDK: publish, a stale RevisionId is the
	// SDK's typed PreconditionFailedException, a qualified invoke runs the
	// version.
	pub, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("a1"), Description: aws.String("first")})
	if err != nil || aws.ToString(pub.Version) != "1" || !strings.HasSuffix(aws.ToString(pub.FunctionArn), ":a1:1") {
		t.Fatalf("PublishVersion: %+v, %v", pub, err)
	}
	_, err = c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("a1"), RevisionId: aws.String("00000000-0000-8000-8000-000000000000")})
	var stale *types.PreconditionFailedException
	if !errors.As(err, &stale) {
		t.Errorf("PublishVersion with a stale RevisionId: %T %v", err, err)
	}
	inv, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("a1:1"), Payload: []byte(`{}`)})
	if err != nil || aws.ToString(inv.ExecutedVersion) != "1" {
		t.Errorf("Invoke a1:1: %+v, %v", inv, err)
	}
}

// TestGatewayClusterAnyNode: in a three-node cluster every node's REST API
// gives the same answers, writes through a follower included (the node
// operations forward them to the leader).
func TestGatewayClusterAnyNode(t *testing.T) {
	tc := startCluster(t, 3, func(i int, cfg *Config) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.HTTPListener = ln
	})
	ctx := ctxT(t)
	follower := (tc.waitLeader() + 1) % 3
	created, err := sdkClient("http://"+tc.nodes[follower].HTTPAddr()).CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("behave"), Runtime: types.RuntimeProvided,
		Role: aws.String("arn:aws:iam::000000000000:role/any"), Code: &types.FunctionCode{ZipFile: behaveZip(t, "c1")},
	})
	if err != nil {
		t.Fatalf("CreateFunction through a follower: %v", err)
	}
	for i, nd := range tc.nodes {
		c := sdkClient("http://" + nd.HTTPAddr())
		conf, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("behave")})
		if err != nil || aws.ToString(conf.RevisionId) != aws.ToString(created.RevisionId) || aws.ToString(conf.CodeSha256) != aws.ToString(created.CodeSha256) {
			t.Errorf("node %d: %+v, %v; want RevisionId %s", i+1, conf, err, aws.ToString(created.RevisionId))
		}
		out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("behave"), Payload: []byte(`{}`)})
		if err != nil || out.FunctionError != nil || !strings.Contains(string(out.Payload), `"version":"c1"`) {
			t.Errorf("node %d: invoke %+v, %v", i+1, out, err)
		}
		acct, err := c.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
		if err != nil || acct.AccountUsage.FunctionCount != 1 {
			t.Errorf("node %d: account settings %+v, %v", i+1, acct, err)
		}
	}
}

// TestGatewayClientContextGoSDK: aws-sdk-go-v2's ClientContext (base64 of a
// JSON object) reaches the function as aws-lambda-go's
// lambdacontext.ClientContext; one that is not a JSON object is refused.
func TestGatewayClientContextGoSDK(t *testing.T) {
	_, _, url := startGatewayNode(t)
	ctx := ctxT(t)
	c := sdkClient(url)
	if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("hello"),
		Runtime:      types.RuntimeProvided,
		Handler:      aws.String("bootstrap"),
		Role:         aws.String("arn:aws:iam::000000000000:role/any"),
		Code:         &types.FunctionCode{ZipFile: helloZip(t)},
	}); err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	cc := base64.StdEncoding.EncodeToString([]byte(`{
		"client": {"installation_id": "inst-1", "app_title": "nimbus tests", "app_version_code": "7"},
		"custom": {"team": "nimbus"},
		"env": {"platform": "linux"}
	}`))
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), ClientContext: aws.String(cc), Payload: []byte(`{}`)})
	if err != nil {
		t.Fatalf("Invoke with a client context: %v", err)
	}
	var body struct {
		ClientContext *struct {
			Client struct {
				InstallationID string `json:"installation_id"`
				AppTitle       string `json:"app_title"`
				AppVersionCode string `json:"app_version_code"`
			} `json:"Client"`
			Env    map[string]string `json:"env"`
			Custom map[string]string `json:"custom"`
		} `json:"clientContext"`
	}
	if err := json.Unmarshal(out.Payload, &body); err != nil || body.ClientContext == nil {
		t.Fatalf("hello answered %s (%v): no client context", out.Payload, err)
	}
	got := body.ClientContext
	if got.Custom["team"] != "nimbus" || got.Env["platform"] != "linux" || got.Client.InstallationID != "inst-1" || got.Client.AppVersionCode != "7" {
		t.Fatalf("the function's client context: %+v", got)
	}

	// Without one, the function's context has none.
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{}`)})
	if err != nil || strings.Contains(string(out.Payload), "clientContext") {
		t.Fatalf("invoke without a client context: %s, %v", out.Payload, err)
	}

	for _, bad := range []string{
		base64.StdEncoding.EncodeToString([]byte(`[1,2]`)),
		base64.StdEncoding.EncodeToString([]byte(`{"custom":`)),
		"not base64!",
		base64.StdEncoding.EncodeToString([]byte(`{"custom":{"k":"` + strings.Repeat("x", 3000) + `"}}`)),
	} {
		_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), ClientContext: aws.String(bad)})
		var ipv *types.InvalidParameterValueException
		if !errors.As(err, &ipv) {
			t.Errorf("client context %.40q: %v, want InvalidParameterValueException", bad, err)
		}
	}
}
