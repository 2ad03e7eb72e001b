package scheduler

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

func testQueue(name string) *rpc.Queue {
	return &rpc.Queue{Name: name, FIFO: IsFIFOName(name), VisibilitySec: 30, RetentionSec: 60,
		MaxMessageSize: rpc.DefaultQueueMessageSize, CreatedMs: 1}
}

func msg(id, queue, body string, sentMs int64) QueueMessage {
	return QueueMessage{ID: id, Queue: queue, Body: []byte(body), SentMs: sentMs, VisibleMs: sentMs}
}

func fifoMsg(id, queue, group string, sentMs int64) QueueMessage {
	m := msg(id, queue, id, sentMs)
	m.GroupID, m.DedupID = group, id
	return m
}

var nonceA, nonceB = bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16)

func receiveOp(queue string, now int64, max int, vis int64, nonce []byte) QueueOp {
	return QueueOp{Kind: QueueReceive, Queue: queue, NowMs: now, Max: max, VisibleUntilMs: now + vis, Receipt: nonce}
}

// ops applies a QueueOps entry and fails the test on an entry error.
func ops(t testing.TB, f *FSM, index uint64, list ...QueueOp) ApplyResult {
	t.Helper()
	res := apply(t, f, index, CmdQueueOps, QueueOpsCommand{Ops: list})
	if res.Err != nil {
		t.Fatalf("queue ops at %d: %v", index, res.Err)
	}
	checkQueueIndex(t, f)
	return res
}

func received(res ApplyResult, i int) []string {
	var ids []string
	ms, _ := res.Outputs[i].([]*QueueMessage)
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return ids
}

// checkQueueIndex checks the invariants of queueSet.
func checkQueueIndex(t testing.TB, f *FSM) {
	t.Helper()
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := &f.state.queues
	n, size := 0, int64(0)
	for name, qs := range s.queues {
		if qs.ready.Len() != qs.expiry.Len() {
			t.Fatalf("queue %s: %d ready keys, %d expiry keys", name, qs.ready.Len(), qs.expiry.Len())
		}
		qs.ready.Ascend(func(k msgKey) bool {
			m := s.msgs[k.id]
			if m == nil || m.Queue != name || m.VisibleMs != k.at || m.Seq != k.seq {
				t.Fatalf("queue %s: ready key %+v does not match %+v", name, k, m)
			}
			if !qs.expiry.Has(msgKey{m.ExpiresMs, m.Seq, m.ID}) {
				t.Fatalf("queue %s: message %s not in the expiry index", name, m.ID)
			}
			n++
			size += int64(m.size())
			return true
		})
		if qs.groups != nil {
			inGroups := 0
			for g, grp := range qs.groups {
				if len(grp.ids) == 0 || !qs.heads.Has(headKey{s.msgs[grp.ids[0]].Seq, g}) {
					t.Fatalf("queue %s group %s: empty or without its head key", name, g)
				}
				for i, id := range grp.ids {
					if m := s.msgs[id]; m == nil || m.GroupID != g || i > 0 && m.Seq <= s.msgs[grp.ids[i-1]].Seq {
						t.Fatalf("queue %s group %s: message %s out of place", name, g, id)
					}
				}
				inGroups += len(grp.ids)
			}
			if inGroups != qs.ready.Len() || qs.heads.Len() != len(qs.groups) {
				t.Fatalf("queue %s: %d messages in groups, %d in the queue, %d heads for %d groups", name, inGroups, qs.ready.Len(), qs.heads.Len(), len(qs.groups))
			}
		}
	}
	if n != len(s.msgs) || size != s.bytes {
		t.Fatalf("%d messages in queues, %d in the map; %d bytes counted, %d summed", n, len(s.msgs), s.bytes, size)
	}
	dd := 0
	for _, qs := range s.queues {
		dd += len(qs.dedupOf)
	}
	if dd != s.dedup.Len() {
		t.Fatalf("%d dedup entries, %d keys", dd, s.dedup.Len())
	}
}

func queueFSM(t testing.TB, names ...string) *FSM {
	t.Helper()
	var ready []string
	f := NewFSM(FSMOptions{OnQueueReady: func(q string) { ready = append(ready, q) }})
	for i, n := range names {
		if res := apply(t, f, uint64(i+1), CmdPutQueue, PutQueueCommand{Queue: testQueue(n)}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	return f
}

func send(t testing.TB, f *FSM, index uint64, ms ...QueueMessage) ApplyResult {
	t.Helper()
	res := apply(t, f, index, CmdQueueSend, QueueSendCommand{Messages: ms})
	if res.Err != nil {
		t.Fatalf("send at %d: %v", index, res.Err)
	}
	checkQueueIndex(t, f)
	return res
}

func TestQueueCreateIdempotentAndConflict(t *testing.T) {
	t.Parallel()
	f := queueFSM(t, "q")
	if res := apply(t, f, 5, CmdPutQueue, PutQueueCommand{Queue: &rpc.Queue{Name: "q", VisibilitySec: 30, RetentionSec: 60, MaxMessageSize: rpc.DefaultQueueMessageSize, CreatedMs: 99}}); res.Err != nil {
		t.Fatalf("same settings: %v", res.Err)
	}
	q := testQueue("q")
	q.VisibilitySec = 5
	if res := apply(t, f, 6, CmdPutQueue, PutQueueCommand{Queue: q}); !errors.Is(res.Err, rpc.ErrQueueNameExists) {
		t.Fatalf("other settings: %v, want QueueNameExists", res.Err)
	}
	if got, _ := f.Queue("q"); got.VisibilitySec != 30 || got.CreatedMs != 1 {
		t.Fatalf("queue changed: %+v", got)
	}
	if res := apply(t, f, 7, CmdDeleteQueue, DeleteQueueCommand{Name: "nope"}); !errors.Is(res.Err, rpc.ErrQueueDoesNotExist) {
		t.Fatalf("delete missing: %v", res.Err)
	}
}

func TestQueueVisibilityAndReceipts(t *testing.T) {
	t.Parallel()
	f := queueFSM(t, "q")
	res := send(t, f, 10, msg("m1", "q", "one", 1000), msg("m2", "q", "two", 1000), msg("m3", "nope", "x", 1000))
	if res.Items[0] != nil || res.Items[1] != nil || !errors.Is(res.Items[2], rpc.ErrQueueDoesNotExist) {
		t.Fatalf("send items: %v", res.Items)
	}
	delayed := msg("m4", "q", "later", 1000)
	delayed.VisibleMs = 5000
	send(t, f, 11, delayed)
	if v, nv, d, _ := f.QueueCounts("q", 1000); v != 2 || nv != 0 || d != 1 {
		t.Fatalf("counts = %d/%d/%d, want 2/0/1", v, nv, d)
	}

	r := ops(t, f, 12, receiveOp("q", 1000, 10, 30_000, nonceA), receiveOp("q", 1000, 10, 30_000, nonceB))
	if got := received(r, 0); !reflect.DeepEqual(got, []string{"m1", "m2"}) {
		t.Fatalf("first receive got %v", got)
	}
	if got := received(r, 1); len(got) != 0 {
		t.Fatalf("a concurrent receive got %v: the messages are in flight", got)
	}
	m1 := r.Outputs[0].([]*QueueMessage)[0]
	if m1.Receives != 1 || m1.FirstReceiveMs != 1000 || !bytes.Equal(m1.Receipt, nonceA) {
		t.Fatalf("received message %+v", m1)
	}
	if v, nv, d, _ := f.QueueCounts("q", 1000); v != 0 || nv != 2 || d != 1 {
		t.Fatalf("counts = %d/%d/%d, want 0/2/1", v, nv, d)
	}
	// The delayed one becomes visible at 5000; the received ones at 31000.
	r = ops(t, f, 13, receiveOp("q", 5000, 10, 100_000, nonceB))
	if got := received(r, 0); !reflect.DeepEqual(got, []string{"m4"}) {
		t.Fatalf("receive at 5000 got %v", got)
	}
	r = ops(t, f, 14, receiveOp("q", 31_000, 1, 1000, nonceB))
	if got := received(r, 0); !reflect.DeepEqual(got, []string{"m1"}) {
		t.Fatalf("receive after the visibility timeout got %v", got)
	}
	// m1's first receipt is stale now; a forged one is refused; the
	// current one deletes it, once.
	del := func(id string, nonce []byte) QueueOp {
		return QueueOp{Kind: QueueDelete, Queue: "q", MessageID: id, Receipt: nonce, NowMs: 31_000}
	}
	forged := bytes.Repeat([]byte{9}, 16)
	r = ops(t, f, 15, del("m1", nonceA), del("m1", forged), del("m1", nonceB), del("m1", nonceB), del("zz", nonceB))
	for i, want := range []error{rpc.ErrReceiptHandleIsInvalid, rpc.ErrReceiptHandleIsInvalid, nil, rpc.ErrReceiptHandleIsInvalid, rpc.ErrReceiptHandleIsInvalid} {
		if !errors.Is(r.Items[i], want) && !(want == nil && r.Items[i] == nil) {
			t.Fatalf("delete %d: %v, want %v", i, r.Items[i], want)
		}
	}
	if _, ok := f.state.queues.msgs["m1"]; ok {
		t.Fatal("m1 still held after its delete")
	}
	if m2 := f.state.queues.msgs["m2"]; m2.Receives != 1 {
		t.Fatalf("m2 receives %d", m2.Receives)
	}
	// ChangeVisibility to 0 makes m2 visible at once.
	r = ops(t, f, 16, QueueOp{Kind: QueueChangeVisibility, Queue: "q", MessageID: "m2", Receipt: nonceA, NowMs: 2000, VisibleUntilMs: 2000})
	if r.Items[0] != nil {
		t.Fatal(r.Items[0])
	}
	r = ops(t, f, 17, QueueOp{Kind: QueueChangeVisibility, Queue: "q", MessageID: "m2", Receipt: nonceA, NowMs: 2000, VisibleUntilMs: 9000})
	if r.Items[0] == nil || rpc.AsError(r.Items[0]).Code != rpc.CodeMessageNotInflight {
		t.Fatalf("visibility change of a visible message: %v", r.Items[0])
	}
	// Purge removes everything.
	ops(t, f, 18, QueueOp{Kind: QueuePurge, Queue: "q"})
	if n, _, b := f.QueueStats(); n != 0 || b != 0 {
		t.Fatalf("after purge: %d messages, %d bytes", n, b)
	}
}

func TestQueueRedrive(t *testing.T) {
	t.Parallel()
	f := queueFSM(t, "dlq")
	q := testQueue("src")
	q.DeadLetterQueue, q.MaxReceiveCount = "dlq", 2
	apply(t, f, 2, CmdPutQueue, PutQueueCommand{Queue: q})
	send(t, f, 3, msg("m", "src", "poison", 0))
	for i, now := range []int64{0, 100} {
		r := ops(t, f, uint64(4+i), receiveOp("src", now, 1, 50, nonceA))
		if got := received(r, 0); len(got) != 1 {
			t.Fatalf("receive %d got %v", i+1, got)
		}
	}
	r := ops(t, f, 6, receiveOp("src", 200, 1, 50, nonceA))
	if got := received(r, 0); len(got) != 0 {
		t.Fatalf("third receive got %v, want the message moved", got)
	}
	m := f.state.queues.msgs["m"]
	if m == nil || m.Queue != "dlq" || m.Receives != 0 || string(m.Body) != "poison" || m.SentMs != 0 {
		t.Fatalf("moved message %+v", m)
	}
	r = ops(t, f, 7, receiveOp("dlq", 200, 1, 50, nonceB))
	if got := received(r, 0); !reflect.DeepEqual(got, []string{"m"}) {
		t.Fatalf("dlq receive got %v", got)
	}
}

func TestQueueFIFOOrderAndDedup(t *testing.T) {
	t.Parallel()
	f := queueFSM(t, "f.fifo")
	send(t, f, 10, fifoMsg("a1", "f.fifo", "A", 0), fifoMsg("b1", "f.fifo", "B", 0), fifoMsg("a2", "f.fifo", "A", 0))
	res := send(t, f, 11, fifoMsg("a3", "f.fifo", "A", 10))
	dup := fifoMsg("other", "f.fifo", "A", 20)
	dup.DedupID = "a1"
	res = send(t, f, 12, dup)
	if out := res.Outputs[0].(QueueSendOutput); out.MessageID != "a1" {
		t.Fatalf("a duplicate within the window answered %+v, want a1's id", out)
	}
	nogroup := msg("x", "f.fifo", "x", 20)
	if res := apply(t, f, 13, CmdQueueSend, QueueSendCommand{Messages: []QueueMessage{nogroup}}); !errors.Is(res.Items[0], rpc.ErrSQSMissingParameter) {
		t.Fatalf("no group id: %v", res.Items[0])
	}
	r := ops(t, f, 14, receiveOp("f.fifo", 100, 2, 1000, nonceA))
	if got := received(r, 0); !reflect.DeepEqual(got, []string{"a1", "a2"}) {
		t.Fatalf("first receive %v, want A's head", got)
	}
	r = ops(t, f, 15, receiveOp("f.fifo", 100, 10, 1000, nonceB))
	if got := received(r, 0); !reflect.DeepEqual(got, []string{"b1"}) {
		t.Fatalf("second receive %v: group A has a batch in flight", got)
	}
	ops(t, f, 16, QueueOp{Kind: QueueDelete, Queue: "f.fifo", MessageID: "a1", Receipt: nonceA})
	r = ops(t, f, 17, receiveOp("f.fifo", 200, 10, 1000, nonceB))
	if got := received(r, 0); len(got) != 0 {
		t.Fatalf("receive %v while a2 is in flight", got)
	}
	r = ops(t, f, 18, receiveOp("f.fifo", 1100, 10, 1000, nonceB))
	if got := received(r, 0); !reflect.DeepEqual(got, []string{"b1", "a2", "a3"}) {
		t.Fatalf("after the timeout got %v, want b1 then a2, a3 (groups by their heads)", got)
	}
	// The dedup window ends 5 minutes after the send; a sweep drops it.
	ops(t, f, 19, QueueOp{Kind: QueueSweep, NowMs: rpc.FIFODedupWindowMs + 5})
	if _, dd, _ := f.QueueStats(); dd != 1 {
		t.Fatalf("%d dedup entries after the sweep, want a3's", dd)
	}
}

func TestQueueRetentionSweep(t *testing.T) {
	t.Parallel()
	f := queueFSM(t, "q")
	send(t, f, 10, msg("old", "q", "x", 0), msg("new", "q", "y", 50_000))
	due, _ := f.QueueSweepDue(60_000)
	if !reflect.DeepEqual(due, []string{"q"}) {
		t.Fatalf("sweep due %v", due)
	}
	ops(t, f, 11, QueueOp{Kind: QueueSweep, Queue: "q", NowMs: 60_000})
	if n, _, _ := f.QueueStats(); n != 1 {
		t.Fatalf("%d messages after the sweep, want 1", n)
	}
	// A receive never returns an expired message.
	r := ops(t, f, 12, receiveOp("q", 110_000, 10, 10, nonceA))
	if got := received(r, 0); len(got) != 0 {
		t.Fatalf("receive of expired messages got %v", got)
	}
}

// TestQueueStateBounded: 100,000 messages sent, received and deleted leave
// nothing in the state or its snapshot.
func TestQueueStateBounded(t *testing.T) {
	t.Parallel()
	f := queueFSM(t, "q")
	empty := len(persist(t, f))
	idx := uint64(10)
	for sent := 0; sent < 100_000; sent += 1000 {
		batch := make([]QueueMessage, 1000)
		for i := range batch {
			batch[i] = msg(fmt.Sprintf("m%d", sent+i), "q", "payload", int64(sent))
		}
		idx++
		send(t, f, idx, batch...)
		idx++
		r := apply(t, f, idx, CmdQueueOps, QueueOpsCommand{Ops: []QueueOp{receiveOp("q", int64(sent), 1000, 30_000, nonceA)}})
		var dels []QueueOp
		for _, m := range r.Outputs[0].([]*QueueMessage) {
			dels = append(dels, QueueOp{Kind: QueueDelete, Queue: "q", MessageID: m.ID, Receipt: m.Receipt})
		}
		idx++
		apply(t, f, idx, CmdQueueOps, QueueOpsCommand{Ops: dels})
	}
	if n, dd, b := f.QueueStats(); n != 0 || dd != 0 || b != 0 {
		t.Fatalf("after 100,000 processed: %d messages, %d dedup entries, %d bytes", n, dd, b)
	}
	if got := len(persist(t, f)); got != empty {
		t.Fatalf("snapshot of %d bytes, %d when empty", got, empty)
	}
	checkQueueIndex(t, f)
}

func TestQueueSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	f := queueFSM(t, "q", "f.fifo")
	apply(t, f, 3, CmdPutFunction, PutFunctionCommand{Function: fullFunction("fn"), Mode: PutCreate})
	m := msg("m1", "q", "body", 10)
	m.Attrs = map[string]string{"k": "v"}
	send(t, f, 4, m, msg("m2", "q", "b2", 11), fifoMsg("a1", "f.fifo", "A", 10), fifoMsg("a2", "f.fifo", "A", 11))
	ops(t, f, 5, receiveOp("q", 20, 1, 100, nonceA), receiveOp("f.fifo", 20, 1, 100, nonceB))
	apply(t, f, 6, CmdPutTrigger, PutTriggerCommand{Mode: PutCreate, Trigger: &rpc.Trigger{UUID: "u1", Function: "fn", Queue: "q", BatchSize: 10, Enabled: true}})
	data := persist(t, f)
	g := NewFSM(FSMOptions{})
	if err := restore(g, data); err != nil {
		t.Fatal(err)
	}
	checkQueueIndex(t, g)
	if !reflect.DeepEqual(f.state.queues.msgs, g.state.queues.msgs) {
		t.Fatal("messages differ after the round trip")
	}
	if !reflect.DeepEqual(f.Queues(), g.Queues()) || !reflect.DeepEqual(f.Triggers(""), g.Triggers("")) {
		t.Fatal("queues or triggers differ after the round trip")
	}
	if !bytes.Equal(persist(t, g), data) {
		t.Fatal("the restored state persists to other bytes")
	}
	// The FIFO order survives: a2 stays behind a1's in-flight batch.
	r := ops(t, g, 7, receiveOp("f.fifo", 30, 10, 100, nonceA))
	if got := received(r, 0); len(got) != 0 {
		t.Fatalf("restored FIFO queue gave %v while a1 is in flight", got)
	}
}

func TestQueueRestoreRefusesBadRecords(t *testing.T) {
	t.Parallel()
	good := testQueue("q")
	tests := map[string]func(enc *msgpack.Encoder){
		"message before its queue": func(enc *msgpack.Encoder) {
			_ = enc.EncodeUint8(uint8(recordQueueMessage))
			m := msg("m", "q", "x", 0)
			_ = enc.Encode(&m)
		},
		"messages out of order": func(enc *msgpack.Encoder) {
			_ = enc.EncodeUint8(uint8(recordQueue))
			_ = enc.Encode(good)
			for i, seq := range []uint64{5, 4} {
				m := msg(fmt.Sprint("m", i), "q", "x", 0)
				m.Seq = seq
				_ = enc.EncodeUint8(uint8(recordQueueMessage))
				_ = enc.Encode(&m)
			}
		},
		"dedup of a standard queue": func(enc *msgpack.Encoder) {
			_ = enc.EncodeUint8(uint8(recordQueue))
			_ = enc.Encode(good)
			_ = enc.EncodeUint8(uint8(recordQueueDedup))
			_ = enc.Encode(&dedupRecord{Queue: "q", DedupID: "d"})
		},
		"queue with a bad name": func(enc *msgpack.Encoder) {
			_ = enc.EncodeUint8(uint8(recordQueue))
			_ = enc.Encode(&rpc.Queue{Name: "bad name", VisibilitySec: 1, RetentionSec: 60, MaxMessageSize: 1024})
		},
		"trigger with a batch out of range": func(enc *msgpack.Encoder) {
			_ = enc.EncodeUint8(uint8(recordTrigger))
			_ = enc.Encode(&rpc.Trigger{UUID: "u", Function: "fn", Queue: "q", BatchSize: 100})
		},
	}
	for name, records := range tests {
		t.Run(name, func(t *testing.T) {
			// The records are refused before the end record is read,
			// whatever count it holds.
			data := snapshotBytes(t, snapshotVersion, func(e *msgpack.Encoder) {
				records(e)
				_ = e.EncodeUint8(uint8(recordEnd))
				_ = e.EncodeUint64(0)
			})
			if err := restore(NewFSM(FSMOptions{}), data); err == nil {
				t.Fatal("restored")
			}
		})
	}
}

func TestTriggerCommands(t *testing.T) {
	t.Parallel()
	f := queueFSM(t, "q")
	tr := &rpc.Trigger{UUID: "u1", Function: "fn", Queue: "q", BatchSize: 10, Enabled: true}
	if res := apply(t, f, 2, CmdPutTrigger, PutTriggerCommand{Mode: PutCreate, Trigger: tr}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := apply(t, f, 3, CmdPutTrigger, PutTriggerCommand{Mode: PutCreate, Trigger: tr}); !errors.Is(res.Err, rpc.ErrResourceConflict) {
		t.Fatalf("second create: %v", res.Err)
	}
	up := *tr
	up.UUID = "nope"
	if res := apply(t, f, 4, CmdPutTrigger, PutTriggerCommand{Mode: PutUpdate, Trigger: &up}); !errors.Is(res.Err, rpc.ErrResourceNotFound) {
		t.Fatalf("update missing: %v", res.Err)
	}
	bad := *tr
	bad.BatchSize = 11 // needs a window
	if res := apply(t, f, 5, CmdPutTrigger, PutTriggerCommand{Mode: PutUpdate, Trigger: &bad}); res.Err == nil {
		t.Fatal("a batch of 11 without a window was stored")
	}
	if res := apply(t, f, 6, CmdDeleteTrigger, DeleteTriggerCommand{UUID: "u1"}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if len(f.Triggers("")) != 0 {
		t.Fatal("trigger still there")
	}
}

func FuzzQueueApply(f *testing.F) {
	f.Add(mustEncode(f, CmdPutQueue, PutQueueCommand{Queue: testQueue("n.fifo")}))
	f.Add(mustEncode(f, CmdDeleteQueue, DeleteQueueCommand{Name: "q"}))
	f.Add(mustEncode(f, CmdQueueSend, QueueSendCommand{Messages: []QueueMessage{msg("m9", "q", "x", 5), fifoMsg("f9", "f.fifo", "G", 5)}}))
	f.Add(mustEncode(f, CmdQueueOps, QueueOpsCommand{Ops: []QueueOp{receiveOp("q", 5, 10, 5, nonceA), receiveOp("f.fifo", 5, 3, 5, nonceB)}}))
	f.Add(mustEncode(f, CmdQueueOps, QueueOpsCommand{Ops: []QueueOp{
		{Kind: QueueDelete, Queue: "q", MessageID: "m1", Receipt: nonceA},
		{Kind: QueueChangeVisibility, Queue: "q", MessageID: "m1", Receipt: nonceA, NowMs: 1, VisibleUntilMs: 1},
		{Kind: QueuePurge, Queue: "f.fifo"}, {Kind: QueueSweep, NowMs: 1 << 40}, {Kind: QueueSweep, Queue: "q", NowMs: 1 << 40},
	}}))
	f.Add(mustEncode(f, CmdPutTrigger, PutTriggerCommand{Mode: PutCreate, Trigger: &rpc.Trigger{UUID: "u", Function: "fn", Queue: "q", BatchSize: 10}}))
	f.Add(mustEncode(f, CmdDeleteTrigger, DeleteTriggerCommand{UUID: "u"}))
	f.Add([]byte{byte(CmdQueueSend), 0x81, 0xa8, 'm', 'e', 's', 's', 'a', 'g', 'e', 's', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{byte(CmdQueueOps), 0x81, 0xa3, 'o', 'p', 's', 0x91, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		switch CommandType(firstByte(data)) {
		case CmdPutQueue, CmdDeleteQueue, CmdQueueSend, CmdQueueOps, CmdPutTrigger, CmdDeleteTrigger:
		default:
			return
		}
		fsm := queueFSM(t, "q", "f.fifo")
		send(t, fsm, 3, msg("m1", "q", "x", 0), fifoMsg("f1", "f.fifo", "G", 0))
		ops(t, fsm, 4, receiveOp("q", 0, 1, 10, nonceA))
		before := persist(t, fsm)
		res := applyRaw(t, fsm, 5, data)
		checkQueueIndex(t, fsm)
		if res.Err != nil && !bytes.Equal(persist(t, fsm), before) {
			t.Fatal("a failed entry changed the state")
		}
		// The state still persists and restores to itself.
		g := NewFSM(FSMOptions{})
		if err := restore(g, persist(t, fsm)); err != nil {
			t.Fatalf("restore after %s: %v", CommandType(firstByte(data)), err)
		}
	})
}

func FuzzReceiptHandle(f *testing.F) {
	f.Add(EncodeReceipt("m1", nonceA))
	f.Add("")
	f.Add("AQ")
	f.Add(EncodeReceipt(string(bytes.Repeat([]byte{'x'}, 128)), nonceB))
	f.Fuzz(func(t *testing.T, s string) {
		id, nonce, err := DecodeReceipt(s)
		if err != nil {
			if !errors.Is(err, rpc.ErrReceiptHandleIsInvalid) {
				t.Fatalf("error %v is not ReceiptHandleIsInvalid", err)
			}
			return
		}
		if len(nonce) != receiptNonceLen || id == "" || len(id) > 128 {
			t.Fatalf("decoded %q %x", id, nonce)
		}
		if EncodeReceipt(id, nonce) != s {
			t.Fatal("the handle does not encode back to itself")
		}
	})
}

// queueSnapshotFSM is a state with every queue record kind.
func queueSnapshotFSM(t testing.TB) *FSM {
	f := queueFSM(t, "q", "f.fifo")
	apply(t, f, 3, CmdPutFunction, PutFunctionCommand{Function: fullFunction("fn"), Mode: PutCreate})
	send(t, f, 4, msg("m1", "q", "body", 10), fifoMsg("a1", "f.fifo", "A", 10), fifoMsg("a2", "f.fifo", "A", 11))
	ops(t, f, 5, receiveOp("q", 20, 1, 100, nonceA), receiveOp("f.fifo", 20, 1, 100, nonceB))
	apply(t, f, 6, CmdPutTrigger, PutTriggerCommand{Mode: PutCreate, Trigger: &rpc.Trigger{UUID: "u1", Function: "fn", Queue: "q", BatchSize: 10, Enabled: true}})
	return f
}

// FuzzQueueRestore: a snapshot holding queue records restores to a state
// whose indexes hold their invariants, or is refused leaving the state as
// it was.
func FuzzQueueRestore(f *testing.F) {
	valid := persist(f, queueSnapshotFSM(f))
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := queueFSM(t, "keep")
		before := persist(t, fsm)
		if err := restore(fsm, data); err != nil {
			if !bytes.Equal(persist(t, fsm), before) {
				t.Fatal("a failed Restore changed the state")
			}
			return
		}
		checkQueueIndex(t, fsm)
	})
}

// TestAsyncFinishSendsMessages: a finishing async op's messages are sent
// in the same apply, and dropped (the finish still applies) when their
// queue is missing.
func TestAsyncFinishSendsMessages(t *testing.T) {
	t.Parallel()
	f := queueFSM(t, "dest")
	apply(t, f, 2, CmdPutFunction, PutFunctionCommand{Function: fullFunction("fn"), Mode: PutCreate})
	apply(t, f, 3, CmdAsyncAccept, AsyncAcceptCommand{Events: []AsyncEvent{event("e1", "fn", 1)}})
	rec := msg("r1", "dest", `{"version":"1.0"}`, 5)
	lost := msg("r2", "gone", "x", 5)
	res := apply(t, f, 4, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{{RequestID: "e1", Kind: AsyncFinish, IfGen: 3,
		ThenMessages: []QueueMessage{rec, lost}}}})
	if res.Err != nil || res.Items[0] != nil {
		t.Fatalf("finish: %v %v", res.Err, res.Items)
	}
	checkQueueIndex(t, f)
	if f.AsyncLen() != 0 {
		t.Fatal("the event is still queued")
	}
	r := ops(t, f, 5, receiveOp("dest", 10, 10, 10, nonceA))
	if got := received(r, 0); len(got) != 1 || got[0] != "r1" {
		t.Fatalf("destination queue gave %v", got)
	}
	if n, _, _ := f.QueueStats(); n != 1 {
		t.Fatalf("%d messages, want the one in dest", n)
	}
}
