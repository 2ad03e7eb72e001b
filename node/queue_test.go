package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"nimbus/rpc"
	"nimbus/scheduler"
)

func intp(v int) *int { return &v }

func mustCreateQueue(t testing.TB, cl *rpc.Client, req *rpc.CreateQueueRequest) *rpc.Queue {
	t.Helper()
	r, err := cl.CreateQueue(ctxT(t), req)
	if err != nil {
		t.Fatalf("create queue %s: %v", req.Name, err)
	}
	return r.Queue
}

func mustSend(t testing.TB, cl *rpc.Client, req *rpc.SendMessageRequest) string {
	t.Helper()
	r, err := cl.SendMessage(ctxT(t), req)
	if err != nil {
		t.Fatalf("send to %s: %v", req.Queue, err)
	}
	return r.MessageID
}

func mustReceive(t testing.TB, cl *rpc.Client, req *rpc.ReceiveMessageRequest) []rpc.Message {
	t.Helper()
	r, err := cl.ReceiveMessage(ctxT(t), req)
	if err != nil {
		t.Fatalf("receive from %s: %v", req.Queue, err)
	}
	return r.Messages
}

// TestQueueSemantics: visibility timeout, receipt handles (stale and
// forged refused), redrive after maxReceiveCount, long polling woken by a
// send, delay, counts, purge, FIFO deduplication.
func TestQueueSemantics(t *testing.T) {
	t.Parallel()
	_, cl := startAsyncNode(t, nil)
	ctx := ctxT(t)
	mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "dlq"})
	q := mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "work", VisibilitySec: intp(1), DeadLetterQueue: "dlq", MaxReceiveCount: 2})
	if q.VisibilitySec != 1 || q.RetentionSec != rpc.DefaultQueueRetentionSec || q.DeadLetterQueue != "dlq" {
		t.Fatalf("created %+v", q)
	}
	// Creating it again with the same settings is a no-op; other settings
	// are QueueNameExists.
	mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "work", VisibilitySec: intp(1), DeadLetterQueue: "dlq", MaxReceiveCount: 2})
	if _, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: "work"}); !errors.Is(err, rpc.ErrQueueNameExists) {
		t.Fatalf("create with other settings: %v", err)
	}

	id := mustSend(t, cl, &rpc.SendMessageRequest{Queue: "work", Body: "hello", Attributes: map[string]string{"k": "v"}})
	got := mustReceive(t, cl, &rpc.ReceiveMessageRequest{Queue: "work", Max: 10})
	if len(got) != 1 || got[0].MessageID != id || got[0].Body != "hello" || got[0].Attributes["ApproximateReceiveCount"] != "1" ||
		got[0].MessageAttributes["k"] != (rpc.MessageAttribute{StringValue: "v", DataType: "String"}) || got[0].MD5OfBody != scheduler.MD5Hex([]byte("hello")) {
		t.Fatalf("first receive %+v", got)
	}
	first := got[0].ReceiptHandle
	if again := mustReceive(t, cl, &rpc.ReceiveMessageRequest{Queue: "work"}); len(again) != 0 {
		t.Fatalf("received %d messages while the only one is in flight", len(again))
	}
	r, _ := cl.GetQueue(ctx, "work")
	if r.Visible != 0 || r.NotVisible != 1 {
		t.Fatalf("counts while in flight: %+v", r)
	}
	// After the 1 s visibility timeout it is delivered again, with a new
	// handle; the first one is stale now.
	got = mustReceive(t, cl, &rpc.ReceiveMessageRequest{Queue: "work", WaitSec: 5})
	if len(got) != 1 || got[0].Attributes["ApproximateReceiveCount"] != "2" || got[0].ReceiptHandle == first {
		t.Fatalf("second receive %+v", got)
	}
	if _, err := cl.DeleteMessage(ctx, "work", first); !errors.Is(err, rpc.ErrReceiptHandleIsInvalid) {
		t.Fatalf("delete with a stale handle: %v", err)
	}
	forged := scheduler.EncodeReceipt(id, make([]byte, 16))
	if _, err := cl.DeleteMessage(ctx, "work", forged); !errors.Is(err, rpc.ErrReceiptHandleIsInvalid) {
		t.Fatalf("delete with a forged handle: %v", err)
	}
	// A third receive finds it received twice: it moves to the dead-letter
	// queue, body and attributes kept.
	if got = mustReceive(t, cl, &rpc.ReceiveMessageRequest{Queue: "work", WaitSec: 3}); len(got) != 0 {
		t.Fatalf("third receive got %+v, want the message redriven", got)
	}
	dl := mustReceive(t, cl, &rpc.ReceiveMessageRequest{Queue: "dlq", WaitSec: 2})
	if len(dl) != 1 || dl[0].MessageID != id || dl[0].Body != "hello" || dl[0].MessageAttributes["k"].StringValue != "v" {
		t.Fatalf("dead-letter queue holds %+v", dl)
	}
	if _, err := cl.DeleteMessage(ctx, "dlq", dl[0].ReceiptHandle); err != nil {
		t.Fatal(err)
	}

	// Long polling: a receive waiting on an empty queue returns the message
	// a later send commits, before its wait ends.
	type result struct {
		msgs []rpc.Message
		at   time.Time
		err  error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		r, err := cl.ReceiveMessage(ctx, &rpc.ReceiveMessageRequest{Queue: "dlq", WaitSec: 20})
		var msgs []rpc.Message
		if r != nil {
			msgs = r.Messages
		}
		done <- result{msgs, time.Now(), err}
	}()
	time.Sleep(300 * time.Millisecond) // let the receive start waiting
	mustSend(t, cl, &rpc.SendMessageRequest{Queue: "dlq", Body: "wake"})
	res := <-done
	if res.err != nil || len(res.msgs) != 1 || res.msgs[0].Body != "wake" {
		t.Fatalf("long poll: %+v, %v", res.msgs, res.err)
	}
	if res.at.Sub(start) >= 20*time.Second {
		t.Fatal("the long poll returned at the end of its wait, not when the message came")
	}

	// A delayed message is counted as delayed, then delivered.
	mustSend(t, cl, &rpc.SendMessageRequest{Queue: "work", Body: "later", DelaySec: intp(1)})
	if r, _ := cl.GetQueue(ctx, "work"); r.Delayed != 1 {
		t.Fatalf("counts with a delayed message: %+v", r)
	}
	if got = mustReceive(t, cl, &rpc.ReceiveMessageRequest{Queue: "work", WaitSec: 5}); len(got) != 1 || got[0].Body != "later" {
		t.Fatalf("delayed message: %+v", got)
	}
	// Purge empties a queue.
	mustSend(t, cl, &rpc.SendMessageRequest{Queue: "dlq", Body: "x"})
	if _, err := cl.PurgeQueue(ctx, "dlq"); err != nil {
		t.Fatal(err)
	}
	if r, _ := cl.GetQueue(ctx, "dlq"); r.Visible+r.NotVisible+r.Delayed != 0 {
		t.Fatalf("after purge: %+v", r)
	}

	// FIFO: deduplication by id and by content within 5 minutes.
	mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "f.fifo", ContentDedup: true})
	a := mustSend(t, cl, &rpc.SendMessageRequest{Queue: "f.fifo", Body: "same", GroupID: "g"})
	b := mustSend(t, cl, &rpc.SendMessageRequest{Queue: "f.fifo", Body: "same", GroupID: "g"})
	c := mustSend(t, cl, &rpc.SendMessageRequest{Queue: "f.fifo", Body: "other", GroupID: "g", DedupID: "d1"})
	d := mustSend(t, cl, &rpc.SendMessageRequest{Queue: "f.fifo", Body: "other again", GroupID: "g", DedupID: "d1"})
	if a != b || c != d || a == c {
		t.Fatalf("dedup ids: %s %s %s %s", a, b, c, d)
	}
	got = mustReceive(t, cl, &rpc.ReceiveMessageRequest{Queue: "f.fifo", Max: 10})
	if len(got) != 2 || got[0].Body != "same" || got[1].Body != "other" || got[0].Attributes["MessageGroupId"] != "g" {
		t.Fatalf("FIFO receive %+v", got)
	}

	// Delete the queue: it is gone, messages and all.
	if _, err := cl.DeleteQueue(ctx, "f.fifo"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GetQueue(ctx, "f.fifo"); !errors.Is(err, rpc.ErrQueueDoesNotExist) {
		t.Fatalf("get deleted queue: %v", err)
	}
	l, _ := cl.ListQueues(ctx)
	if len(l.Queues) != 2 || l.Queues[0].Name != "dlq" || l.Queues[1].Name != "work" {
		t.Fatalf("list %+v", l.Queues)
	}
}

// TestQueueBadInput: each bad input gets its SQS or Lambda error, stores
// nothing, and the node keeps serving.
func TestQueueBadInput(t *testing.T) {
	t.Parallel()
	nd, cl := startAsyncNode(t, nil)
	ctx := ctxT(t)
	mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "q", MaxMessageSize: intp(1024)})
	mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "f.fifo"})
	create(t, cl, "fn", behaveZip(t, "v1"), nil)
	big := strings.Repeat("x", 1025)
	tests := []struct {
		name string
		call func() error
		want *rpc.Error
	}{
		{"invalid name", func() error { _, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: "bad name!"}); return err }, rpc.ErrSQSInvalidParameter},
		{"name of 81", func() error {
			_, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: strings.Repeat("a", 81)})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"fifo flag without suffix", func() error {
			_, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: "x", FIFO: true})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"visibility 43201", func() error {
			_, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: "x", VisibilitySec: intp(43201)})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"retention 59", func() error {
			_, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: "x", RetentionSec: intp(59)})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"delay 901", func() error {
			_, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: "x", DelaySec: intp(901)})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"missing dead-letter queue", func() error {
			_, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: "x", DeadLetterQueue: "nope", MaxReceiveCount: 3})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"max receive 1001", func() error {
			_, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: "x", DeadLetterQueue: "q", MaxReceiveCount: 1001})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"send to a missing queue", func() error {
			_, err := cl.SendMessage(ctx, &rpc.SendMessageRequest{Queue: "nope", Body: "x"})
			return err
		}, rpc.ErrQueueDoesNotExist},
		{"oversized message", func() error {
			_, err := cl.SendMessage(ctx, &rpc.SendMessageRequest{Queue: "q", Body: big})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"empty body", func() error { _, err := cl.SendMessage(ctx, &rpc.SendMessageRequest{Queue: "q"}); return err }, rpc.ErrSQSMissingParameter},
		{"FIFO send without a group", func() error {
			_, err := cl.SendMessage(ctx, &rpc.SendMessageRequest{Queue: "f.fifo", Body: "x", DedupID: "d"})
			return err
		}, rpc.ErrSQSMissingParameter},
		{"FIFO send without dedup", func() error {
			_, err := cl.SendMessage(ctx, &rpc.SendMessageRequest{Queue: "f.fifo", Body: "x", GroupID: "g"})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"group on a standard queue", func() error {
			_, err := cl.SendMessage(ctx, &rpc.SendMessageRequest{Queue: "q", Body: "x", GroupID: "g"})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"delay 901 on send", func() error {
			_, err := cl.SendMessage(ctx, &rpc.SendMessageRequest{Queue: "q", Body: "x", DelaySec: intp(901)})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"reserved attribute name", func() error {
			_, err := cl.SendMessage(ctx, &rpc.SendMessageRequest{Queue: "q", Body: "x", Attributes: map[string]string{"AWS.x": "y"}})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"receive 11", func() error {
			_, err := cl.ReceiveMessage(ctx, &rpc.ReceiveMessageRequest{Queue: "q", Max: 11})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"wait 21", func() error {
			_, err := cl.ReceiveMessage(ctx, &rpc.ReceiveMessageRequest{Queue: "q", WaitSec: 21})
			return err
		}, rpc.ErrSQSInvalidParameter},
		{"receive from a missing queue", func() error { _, err := cl.ReceiveMessage(ctx, &rpc.ReceiveMessageRequest{Queue: "nope"}); return err }, rpc.ErrQueueDoesNotExist},
		{"garbage receipt handle", func() error { _, err := cl.DeleteMessage(ctx, "q", "not-a-handle"); return err }, rpc.ErrReceiptHandleIsInvalid},
		{"forged receipt handle", func() error {
			_, err := cl.DeleteMessage(ctx, "q", scheduler.EncodeReceipt("some-id", make([]byte, 16)))
			return err
		}, rpc.ErrReceiptHandleIsInvalid},
		{"trigger on a missing queue", func() error {
			_, err := cl.CreateTrigger(ctx, &rpc.CreateTriggerRequest{Function: "fn", Queue: "nope"})
			return err
		}, rpc.ErrInvalidParameterValue},
		{"trigger of a missing function", func() error {
			_, err := cl.CreateTrigger(ctx, &rpc.CreateTriggerRequest{Function: "nofn", Queue: "q"})
			return err
		}, rpc.ErrResourceNotFound},
		{"trigger batch 11 without a window", func() error {
			_, err := cl.CreateTrigger(ctx, &rpc.CreateTriggerRequest{Function: "fn", Queue: "q", BatchSize: intp(11)})
			return err
		}, rpc.ErrInvalidParameterValue},
		{"trigger batch 10001", func() error {
			_, err := cl.CreateTrigger(ctx, &rpc.CreateTriggerRequest{Function: "fn", Queue: "q", BatchSize: intp(10001), BatchWindowSec: intp(1)})
			return err
		}, rpc.ErrInvalidParameterValue},
		{"trigger window 301", func() error {
			_, err := cl.CreateTrigger(ctx, &rpc.CreateTriggerRequest{Function: "fn", Queue: "q", BatchWindowSec: intp(301)})
			return err
		}, rpc.ErrInvalidParameterValue},
		{"trigger max concurrency 1", func() error {
			_, err := cl.CreateTrigger(ctx, &rpc.CreateTriggerRequest{Function: "fn", Queue: "q", MaxConcurrency: intp(1)})
			return err
		}, rpc.ErrInvalidParameterValue},
		{"missing trigger", func() error { _, err := cl.GetTrigger(ctx, "no-such-uuid"); return err }, rpc.ErrResourceNotFound},
		{"dead letter on a missing queue", func() error {
			_, err := cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: "fn", DeadLetter: strp("queue:nope")})
			return err
		}, rpc.ErrInvalidParameterValue},
		{"dead letter that is a function", func() error {
			_, err := cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: "fn", DeadLetter: strp("function:fn")})
			return err
		}, rpc.ErrInvalidParameterValue},
		{"dead letter on a FIFO queue", func() error {
			_, err := cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: "fn", DeadLetter: strp("queue:f.fifo")})
			return err
		}, rpc.ErrInvalidParameterValue},
		{"unknown queue destination", func() error {
			_, err := cl.PutEventConfig(ctx, &rpc.PutEventConfigRequest{FunctionName: "fn", OnFailure: "arn:aws:sqs:local:000000000000:nope"})
			return err
		}, rpc.ErrInvalidParameterValue},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %s", tt.name, err, tt.want.Code)
		}
	}
	if qs := nd.fsm.Queues(); len(qs) != 2 {
		t.Fatalf("bad input stored queues: %v", qs)
	}
	if n, _, _ := nd.fsm.QueueStats(); n != 0 {
		t.Fatalf("bad input stored %d messages", n)
	}
	if len(nd.fsm.Triggers("")) != 0 {
		t.Fatal("bad input stored a trigger")
	}
	if fn, _ := nd.fsm.Function("fn"); fn.DeadLetter != "" {
		t.Fatalf("bad input stored a dead letter %q", fn.DeadLetter)
	}
	mustSend(t, cl, &rpc.SendMessageRequest{Queue: "q", Body: "still serving"})
}

func strp(s string) *string { return &s }

// TestQueueProcessed100k: 100,000 messages sent, received and deleted
// through Raft leave nothing in the state and a snapshot no bigger than
// the empty queue's.
func TestQueueProcessed100k(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("sends 100,000 messages")
	}
	nd, cl := startAsyncNode(t, nil)
	mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "bulk"})
	ql := nd.lead.queues.Load()
	ctx := ctxT(t)
	const total, batch = 100_000, 1000
	processed := 0
	for processed < total {
		ms := make([]scheduler.QueueMessage, batch)
		now := time.Now().UnixMilli()
		for i := range ms {
			ms[i] = scheduler.QueueMessage{ID: newRequestID(), Queue: "bulk", Body: []byte(`{"n":1}`), SentMs: now, VisibleMs: now}
		}
		for _, r := range ql.sends.submitAll(ctx, ms) {
			if r.err != nil {
				t.Fatal(r.err)
			}
		}
		for got := 0; got < batch; {
			msgs, err := ql.receive(ctx, "bulk", 1000, 0, time.Second, 30*time.Second)
			if err != nil || len(msgs) == 0 {
				t.Fatalf("receive: %d messages, %v", len(msgs), err)
			}
			ops := make([]scheduler.QueueOp, len(msgs))
			for i, m := range msgs {
				ops[i] = scheduler.QueueOp{Kind: scheduler.QueueDelete, Queue: "bulk", MessageID: m.ID, Receipt: m.Receipt}
			}
			for _, r := range ql.ops.submitAll(ctx, ops) {
				if r.err != nil {
					t.Fatal(r.err)
				}
			}
			got += len(msgs)
		}
		processed += batch
	}
	if n, dd, b := nd.fsm.QueueStats(); n != 0 || dd != 0 || b != 0 {
		t.Fatalf("after %d processed messages the state holds %d messages, %d dedup ids, %d bytes", total, n, dd, b)
	}
	snap, err := nd.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink snapSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot after %d processed messages: %d bytes", total, sink.Len())
	if sink.Len() > 4096 {
		t.Fatalf("snapshot of %d bytes after every message was deleted", sink.Len())
	}
}

// TestSQSEventShape: the trigger's event decodes as aws-lambda-go's
// events.SQSEvent with every field the issue lists.
func TestSQSEventShape(t *testing.T) {
	t.Parallel()
	m := &scheduler.QueueMessage{ID: "id-1", Queue: "q", Body: []byte("hi"), Attrs: map[string]string{"k": "v"}, SentMs: 1000,
		Sender: rpc.DefaultAccount, Receives: 2, FirstReceiveMs: 1500, Receipt: make([]byte, 16)}
	payload, err := sqsEventOf(rpc.ARNScope{}, "q", []*scheduler.QueueMessage{m})
	if err != nil {
		t.Fatal(err)
	}
	var ev events.SQSEvent
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("decode as events.SQSEvent: %v", err)
	}
	if len(ev.Records) != 1 {
		t.Fatalf("%d records", len(ev.Records))
	}
	r := ev.Records[0]
	want := map[string]string{
		"messageId": r.MessageId, "body": r.Body, "eventSource": r.EventSource, "eventSourceARN": r.EventSourceARN,
		"awsRegion": r.AWSRegion, "md5OfBody": r.Md5OfBody,
		"ApproximateReceiveCount": r.Attributes["ApproximateReceiveCount"], "SentTimestamp": r.Attributes["SentTimestamp"],
		"SenderId": r.Attributes["SenderId"], "ApproximateFirstReceiveTimestamp": r.Attributes["ApproximateFirstReceiveTimestamp"],
	}
	for k, v := range map[string]string{"messageId": "id-1", "body": "hi", "eventSource": "aws:sqs", "eventSourceARN": (rpc.ARNScope{}).Queue("q"),
		"awsRegion": rpc.DefaultRegion, "md5OfBody": scheduler.MD5Hex([]byte("hi")), "ApproximateReceiveCount": "2", "SentTimestamp": "1000",
		"SenderId": rpc.DefaultAccount, "ApproximateFirstReceiveTimestamp": "1500"} {
		if want[k] != v {
			t.Errorf("%s = %q, want %q", k, want[k], v)
		}
	}
	if a := r.MessageAttributes["k"]; a.StringValue == nil || *a.StringValue != "v" || a.DataType != "String" {
		t.Errorf("message attribute %+v", a)
	}
	if id, _, err := scheduler.DecodeReceipt(r.ReceiptHandle); err != nil || id != "id-1" {
		t.Errorf("receipt handle %q: %v", r.ReceiptHandle, err)
	}
}

// TestBatchFailuresAnswer: which answers are valid ReportBatchItemFailures
// answers.
func TestBatchFailuresAnswer(t *testing.T) {
	t.Parallel()
	batch := []*scheduler.QueueMessage{{ID: "a"}, {ID: "b"}}
	for in, want := range map[string]string{
		``: "ok:", `null`: "ok:", `{}`: "ok:", `{"batchItemFailures":[]}`: "ok:",
		`{"batchItemFailures":[{"itemIdentifier":"b"}]}`: "ok:b",
		`{"batchItemFailures":[{"itemIdentifier":"c"}]}`: "invalid",
		`{"batchItemFailures":[{"itemIdentifier":""}]}`:  "invalid",
		`{"batchItemFailures":[{}]}`:                     "invalid",
		`"text"`:                                         "invalid",
		`{"batchItemFailures":"x"}`:                      "invalid",
	} {
		keep, ok := batchFailures([]byte(in), batch)
		got := "invalid"
		if ok {
			got = "ok:"
			if keep["b"] {
				got += "b"
			}
		}
		if got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

// snapSink is a raft.SnapshotSink into memory.
type snapSink struct{ bytes.Buffer }

func (s *snapSink) ID() string    { return "test" }
func (s *snapSink) Close() error  { return nil }
func (s *snapSink) Cancel() error { return nil }

var _ = sync.Once{}
var _ = fmt.Sprint

// FuzzBatchFailures: a function's answer (sandbox bytes) never panics the
// poller, and a valid answer only ever keeps items of the batch.
func FuzzBatchFailures(f *testing.F) {
	f.Add([]byte(`{"batchItemFailures":[{"itemIdentifier":"a"}]}`))
	f.Add([]byte(`{"batchItemFailures":[{"itemIdentifier":"zz"}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"batchItemFailures":[{"itemIdentifier":null}]}`))
	f.Add([]byte("\xff{"))
	batch := []*scheduler.QueueMessage{{ID: "a"}, {ID: "b"}}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > rpc.MaxSyncPayload {
			return // the invoke path refuses larger answers before this
		}
		keep, ok := batchFailures(payload, batch)
		if !ok && keep != nil {
			t.Fatal("an invalid answer kept items")
		}
		for id := range keep {
			if id != "a" && id != "b" {
				t.Fatalf("kept %q, not in the batch", id)
			}
		}
	})
}
