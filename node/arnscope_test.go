package node

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// TestARNScope runs a node with its own region and account: the function
// sees them in its ARN, error messages and Cluster.ARNScope name them, and
// a queue's event names them.
func TestARNScope(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := linkTree(sharedImage, filepath.Join(dir, "images")); err != nil {
		t.Fatal(err)
	}
	arns := rpc.ARNScope{Region: "eu-west-1", Account: "123456789012"}
	n, cl := startNodeConfig(t, Config{DataDir: dir, ARNs: arns})
	if s, err := cl.ARNScope(ctxT(t)); err != nil || *s != arns {
		t.Fatalf("Cluster.ARNScope: %v %v", s, err)
	}
	create(t, cl, "hello", helloZip(t), nil)
	res := invoke(t, cl, "hello", `{"name":"x"}`)
	var out struct {
		FunctionARN string `json:"functionArn"`
	}
	if err := json.Unmarshal(res.Payload, &out); err != nil || out.FunctionARN != "arn:aws:lambda:eu-west-1:123456789012:function:hello" {
		t.Errorf("the function saw ARN %q (%v)", out.FunctionARN, err)
	}
	_, err := cl.Invoke(ctxT(t), &rpc.InvokeRequest{FunctionName: "hello", Qualifier: "7"})
	if err == nil || !strings.Contains(err.Error(), "arn:aws:lambda:eu-west-1:123456789012:function:hello:7") {
		t.Errorf("invoke of a missing version: %v", err)
	}
	if _, err := cl.CreateTrigger(ctxT(t), &rpc.CreateTriggerRequest{Function: "hello", Queue: "nope"}); err == nil ||
		!strings.Contains(err.Error(), "arn:aws:sqs:eu-west-1:123456789012:nope") {
		t.Errorf("trigger on a missing queue: %v", err)
	}
	m := &scheduler.QueueMessage{ID: "id-1", Queue: "q", Body: []byte("hi"), Sender: arns.Account, Receipt: make([]byte, 16)}
	payload, err := sqsEventOf(n.cfg.ARNs, "q", []*scheduler.QueueMessage{m})
	if err != nil {
		t.Fatal(err)
	}
	var ev events.SQSEvent
	if err := json.Unmarshal(payload, &ev); err != nil || len(ev.Records) != 1 ||
		ev.Records[0].EventSourceARN != "arn:aws:sqs:eu-west-1:123456789012:q" || ev.Records[0].AWSRegion != "eu-west-1" {
		t.Errorf("the queue's event: %s (%v)", payload, err)
	}
}
