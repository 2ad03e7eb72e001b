package node

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"nimbus/rpc"
)

// receiveOne long-polls a queue until it gives a message.
func receiveOne(t testing.TB, cl *rpc.Client, queue string) rpc.Message {
	t.Helper()
	var got []rpc.Message
	waitLong(t, time.Minute, "a message in "+queue, func() bool {
		got = mustReceive(t, cl, &rpc.ReceiveMessageRequest{Queue: queue, WaitSec: 2})
		return len(got) > 0
	})
	if len(got) != 1 {
		t.Fatalf("%s gave %d messages, want 1", queue, len(got))
	}
	return got[0]
}

// TestQueueDestinationsAndDeadLetter: a queue destination receives
// Lambda's record as its message body (on success and on failure), and the
// legacy dead-letter queue the original event with the attributes
// RequestID, ErrorCode and ErrorMessage, each checked field by field.
func TestQueueDestinationsAndDeadLetter(t *testing.T) {
	t.Parallel()
	_, cl := startAsyncNode(t, func(c *Config) { c.AsyncRetryBase = 100 * time.Millisecond })
	ctx := ctxT(t)
	create(t, cl, "qd-src", behaveZip(t, "v1"), nil)
	for _, q := range []string{"qd-ok", "qd-fail", "qd-dlq"} {
		mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: q})
	}
	zero := 0
	if _, err := cl.PutEventConfig(ctx, &rpc.PutEventConfigRequest{FunctionName: "qd-src", MaxRetryAttempts: &zero,
		OnSuccess: "queue:qd-ok", OnFailure: (rpc.ARNScope{}).Queue("qd-fail")}); err != nil {
		t.Fatal(err)
	}
	fr, err := cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: "qd-src", DeadLetter: strp("queue:qd-dlq")})
	if err != nil || fr.Function.DeadLetter != "queue:qd-dlq" {
		t.Fatalf("update-config --dead-letter: %+v, %v", fr, err)
	}

	okRes, err := invokeEvent(ctx, cl, "qd-src", `{"k":"ok"}`)
	if err != nil {
		t.Fatal(err)
	}
	failRes, err := invokeEvent(ctx, cl, "qd-src", `"error"`)
	if err != nil {
		t.Fatal(err)
	}
	record := func(queue string) map[string]any {
		t.Helper()
		m := receiveOne(t, cl, queue)
		var rec map[string]any
		if err := json.Unmarshal([]byte(m.Body), &rec); err != nil {
			t.Fatalf("%s body is not a record: %v: %s", queue, err, m.Body)
		}
		return rec
	}
	check := func(rec map[string]any, requestID, condition string, payload any, status float64, functionError string) {
		t.Helper()
		if rec["version"] != "1.0" {
			t.Errorf("version %v", rec["version"])
		}
		if ts, _ := rec["timestamp"].(string); ts == "" {
			t.Errorf("timestamp %v", rec["timestamp"])
		} else if _, err := time.Parse("2006-01-02T15:04:05.000Z", ts); err != nil {
			t.Errorf("timestamp %q: %v", ts, err)
		}
		rc, _ := rec["requestContext"].(map[string]any)
		if rc["requestId"] != requestID || rc["functionArn"] != (rpc.ARNScope{}).Function("qd-src", "")+":$LATEST" ||
			rc["condition"] != condition || rc["approximateInvokeCount"] != float64(1) {
			t.Errorf("requestContext %v", rc)
		}
		if b, _ := json.Marshal(rec["requestPayload"]); string(b) != mustJSON(t, payload) {
			t.Errorf("requestPayload %s", b)
		}
		resp, _ := rec["responseContext"].(map[string]any)
		if resp["statusCode"] != status || resp["executedVersion"] != "$LATEST" {
			t.Errorf("responseContext %v", resp)
		}
		if fe, _ := resp["functionError"].(string); fe != functionError {
			t.Errorf("functionError %q, want %q", fe, functionError)
		}
		if _, ok := rec["responsePayload"]; !ok {
			t.Error("no responsePayload")
		}
	}
	okRec := record("qd-ok")
	check(okRec, okRes.RequestID, conditionSuccess, map[string]any{"k": "ok"}, 200, "")
	if rp, _ := okRec["responsePayload"].(map[string]any); rp["version"] != "v1" {
		t.Errorf("success responsePayload %v", okRec["responsePayload"])
	}
	failRec := record("qd-fail")
	check(failRec, failRes.RequestID, conditionRetriesExhausted, "error", 200, "Unhandled")
	if rp, _ := failRec["responsePayload"].(map[string]any); rp["errorMessage"] != "something broke" {
		t.Errorf("failure responsePayload %v", failRec["responsePayload"])
	}

	dl := receiveOne(t, cl, "qd-dlq")
	if dl.Body != `"error"` {
		t.Errorf("dead-letter body %q, want the original event", dl.Body)
	}
	want := map[string]string{"RequestID": failRes.RequestID, "ErrorCode": "200", "ErrorMessage": "something broke"}
	for k, v := range want {
		if a := dl.MessageAttributes[k]; a.StringValue != v || a.DataType != "String" {
			t.Errorf("dead-letter attribute %s = %+v, want %q", k, a, v)
		}
	}
	if len(dl.MessageAttributes) != len(want) {
		t.Errorf("dead-letter attributes %v", dl.MessageAttributes)
	}
	// The success went to no dead-letter queue.
	if more := mustReceive(t, cl, &rpc.ReceiveMessageRequest{Queue: "qd-dlq", WaitSec: 1}); len(more) != 0 {
		t.Errorf("dead-letter queue holds more: %+v", more)
	}
	// --dead-letter "" clears it.
	if fr, err := cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: "qd-src", DeadLetter: strp("")}); err != nil || fr.Function.DeadLetter != "" {
		t.Fatalf("clearing the dead letter: %+v, %v", fr, err)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestQualifiedEventConfigs: an event sent to an alias uses the alias's
// event configuration, one sent unqualified the function's own, and one
// sent to a version without a configuration of its own none (Lambda's
// rule): each success record lands in its own queue, and only there.
func TestQualifiedEventConfigs(t *testing.T) {
	t.Parallel()
	n, cl := startAsyncNode(t, nil)
	ctx := ctxT(t)
	create(t, cl, "qc", behaveZip(t, "v1"), nil)
	if _, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "qc"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateAlias(ctx, &rpc.CreateAliasRequest{FunctionName: "qc", Name: "live", FunctionVersion: "1"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"qc-own", "qc-live"} {
		mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: q})
	}
	if _, err := cl.PutEventConfig(ctx, &rpc.PutEventConfigRequest{FunctionName: "qc", OnSuccess: "queue:qc-own"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutEventConfig(ctx, &rpc.PutEventConfigRequest{FunctionName: "qc:live", OnSuccess: "queue:qc-live"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutEventConfig(ctx, &rpc.PutEventConfigRequest{FunctionName: "qc", Qualifier: "nope"}); !errors.Is(err, rpc.ErrResourceNotFound) {
		t.Fatalf("a configuration for a missing alias: %v, want ResourceNotFoundException", err)
	}
	got, err := cl.GetEventConfig(ctx, &rpc.GetEventConfigRequest{FunctionName: "qc", Qualifier: "live"})
	if err != nil || got.Config.OnSuccess != "queue:qc-live" || got.Config.Qualifier != "live" {
		t.Fatalf("GetEventConfig(qc:live) = %+v, %v", got, err)
	}
	list, err := cl.ListEventConfigs(ctx, &rpc.GetEventConfigRequest{FunctionName: "qc"})
	if err != nil || len(list.Configs) != 2 || list.Configs[0].Qualifier != "" || list.Configs[1].Qualifier != "live" {
		t.Fatalf("ListEventConfigs = %+v, %v", list, err)
	}

	ids := map[string]string{}
	for _, target := range []string{"qc", "qc:live", "qc:1"} {
		res, err := invokeEvent(ctx, cl, target, `{"to":"`+target+`"}`)
		if err != nil {
			t.Fatal(err)
		}
		ids[target] = res.RequestID
	}
	waitFor(t, "the three events to finish", func() bool { return n.fsm.AsyncLen() == 0 })
	for queue, target := range map[string]string{"qc-own": "qc", "qc-live": "qc:live"} {
		m := receiveOne(t, cl, queue)
		var rec struct {
			RequestContext struct {
				RequestID   string `json:"requestId"`
				FunctionARN string `json:"functionArn"`
			} `json:"requestContext"`
		}
		if err := json.Unmarshal([]byte(m.Body), &rec); err != nil || rec.RequestContext.RequestID != ids[target] {
			t.Errorf("%s holds %s (%v), want the record of the event sent to %s", queue, m.Body, err, target)
		}
		q, err := cl.GetQueue(ctx, queue)
		if err != nil || q.Visible+q.Delayed != 0 || q.NotVisible != 1 {
			t.Errorf("%s: %+v, %v; want its one record received and nothing more", queue, q, err)
		}
	}
}
