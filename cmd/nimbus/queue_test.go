package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCLIQueuesAndTriggers drives the queue and trigger commands as a
// script would, checking exit status and output.
func TestCLIQueuesAndTriggers(t *testing.T) {
	t.Parallel()
	addr := startNode(t)
	run := func(args ...string) result {
		t.Helper()
		return nimbus(append(args, "--addr", addr)...)
	}
	ok := func(args ...string) string {
		t.Helper()
		r := run(args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		return r.stdout
	}
	fails := func(want string, args ...string) {
		t.Helper()
		r := run(args...)
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("%v: exit %d, stderr %q; want a failure naming %s", args, r.code, r.stderr, want)
		}
	}
	ok("queue", "create", "dlq")
	ok("queue", "create", "jobs", "--visibility-timeout", "60", "--dead-letter", "dlq", "--max-receive", "3")
	fails("InvalidParameterValue", "queue", "create", "bad name")
	fails("QueueNameExists", "queue", "create", "jobs")

	id := strings.TrimSpace(ok("queue", "send", "jobs", "--body", "hello", "--attr", "k=v"))
	if !uuidLine.MatchString(id + "\n") {
		t.Fatalf("send printed %q, want a message id", id)
	}
	fails("QueueDoesNotExist", "queue", "send", "nope", "--body", "x")
	ok("queue", "create", "f.fifo", "--fifo")
	fails("MissingParameter", "queue", "send", "f.fifo", "--body", "x", "--dedup-id", "d")

	var got []map[string]any
	if err := json.Unmarshal([]byte(ok("queue", "receive", "jobs", "--max", "10", "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0]["MessageId"] != id || got[0]["Body"] != "hello" || got[0]["ReceiptHandle"] == "" {
		t.Fatalf("receive -o json: %v", got)
	}
	attrs, _ := got[0]["Attributes"].(map[string]any)
	mattrs, _ := got[0]["MessageAttributes"].(map[string]any)
	if attrs["ApproximateReceiveCount"] != "1" || mattrs["k"].(map[string]any)["StringValue"] != "v" {
		t.Fatalf("receive attributes %v %v", attrs, mattrs)
	}
	fails("InvalidParameterValue", "queue", "receive", "jobs", "--max", "11")

	var q map[string]any
	if err := json.Unmarshal([]byte(ok("queue", "get", "jobs", "-o", "json")), &q); err != nil {
		t.Fatal(err)
	}
	qa, _ := q["Attributes"].(map[string]any)
	if qa["ApproximateNumberOfMessagesNotVisible"] != "1" || qa["VisibilityTimeout"] != "60" ||
		qa["RedrivePolicy"] != `{"deadLetterTargetArn":"arn:aws:sqs:local:000000000000:dlq","maxReceiveCount":3}` {
		t.Fatalf("get -o json: %v", q)
	}
	ok("queue", "delete-message", "jobs", got[0]["ReceiptHandle"].(string))
	fails("ReceiptHandleIsInvalid", "queue", "delete-message", "jobs", got[0]["ReceiptHandle"].(string))

	var l map[string][]map[string]any
	if err := json.Unmarshal([]byte(ok("queue", "list", "-o", "json")), &l); err != nil {
		t.Fatal(err)
	}
	if len(l["Queues"]) != 3 || l["Queues"][0]["QueueName"] != "dlq" {
		t.Fatalf("list -o json: %v", l)
	}
	ok("queue", "send", "jobs", "--body", "x")
	ok("queue", "purge", "jobs")

	// Triggers.
	ok("fn", "create", "echo", "--dir", "../../examples/shell", "--timeout", "60") // over the 3 s default: an eighth of a vCPU on a loaded machine
	fails("InvalidParameterValueException", "trigger", "create", "echo", "--queue", "nope")
	fails("InvalidParameterValueException", "trigger", "create", "echo", "--queue", "jobs", "--batch-size", "11")
	uuid := strings.TrimSpace(ok("trigger", "create", "echo", "--queue", "jobs", "--batch-size", "5", "--report-batch-item-failures", "--disabled"))
	if !uuidLine.MatchString(uuid + "\n") {
		t.Fatalf("trigger create printed %q", uuid)
	}
	var tr map[string]any
	if err := json.Unmarshal([]byte(ok("trigger", "get", uuid, "-o", "json")), &tr); err != nil {
		t.Fatal(err)
	}
	if tr["UUID"] != uuid || tr["BatchSize"] != float64(5) || tr["State"] != "Disabled" || tr["EventSourceArn"] != "arn:aws:sqs:local:000000000000:jobs" {
		t.Fatalf("trigger get -o json: %v", tr)
	}
	if err := json.Unmarshal([]byte(ok("trigger", "update", uuid, "--batch-size", "7", "--max-concurrency", "3", "-o", "json")), &tr); err != nil {
		t.Fatal(err)
	}
	if tr["BatchSize"] != float64(7) || tr["ScalingConfig"].(map[string]any)["MaximumConcurrency"] != float64(3) || tr["State"] != "Disabled" {
		t.Fatalf("trigger update: %v", tr)
	}
	var tl map[string][]map[string]any
	if err := json.Unmarshal([]byte(ok("trigger", "list", "--function", "echo", "-o", "json")), &tl); err != nil {
		t.Fatal(err)
	}
	if len(tl["EventSourceMappings"]) != 1 {
		t.Fatalf("trigger list: %v", tl)
	}
	ok("trigger", "delete", uuid)
	fails("ResourceNotFoundException", "trigger", "get", uuid)

	// The dead letter of a function.
	ok("fn", "update-config", "echo", "--dead-letter", "queue:dlq")
	var fn map[string]any
	if err := json.Unmarshal([]byte(ok("fn", "get", "echo", "-o", "json")), &fn); err != nil {
		t.Fatal(err)
	}
	if fn["DeadLetterTarget"] != "queue:dlq" {
		t.Fatalf("fn get after --dead-letter: %v", fn)
	}
	ok("fn", "update-config", "echo", "--dead-letter", "")
	fails("InvalidParameterValueException", "fn", "update-config", "echo", "--dead-letter", "queue:nope")
	ok("queue", "delete", "jobs")
	fails("QueueDoesNotExist", "queue", "get", "jobs")
}
