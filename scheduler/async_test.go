package scheduler

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

func event(id, fn string, dueMs int64) AsyncEvent {
	return AsyncEvent{RequestID: id, Function: fn, Payload: []byte(`{"id":"` + id + `"}`), AcceptedMs: 1000, DueMs: dueMs}
}

// allEvents returns the queue's events by request id.
func allEvents(f *FSM) []*AsyncEvent {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*AsyncEvent, 0, len(f.state.async.events))
	for _, e := range f.state.async.events {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RequestID < out[j].RequestID })
	return out
}

// checkAsyncIndex checks the queue's invariant: one due key per event, at
// its ready time.
func checkAsyncIndex(t testing.TB, f *FSM) {
	t.Helper()
	f.mu.RLock()
	defer f.mu.RUnlock()
	q := f.state.async
	if q.due.Len() != len(q.events) {
		t.Fatalf("due index holds %d keys for %d events", q.due.Len(), len(q.events))
	}
	q.due.Ascend(func(k dueKey) bool {
		e, ok := q.events[k.id]
		if !ok || e.ReadyMs() != k.readyMs {
			t.Fatalf("due key %+v does not match event %+v", k, e)
		}
		return true
	})
}

func itemCodes(res ApplyResult) []string {
	out := make([]string, len(res.Items))
	for i, err := range res.Items {
		var re *rpc.Error
		if errors.As(err, &re) {
			out[i] = re.Code
		} else if err != nil {
			out[i] = err.Error()
		}
	}
	return out
}

func TestAsyncLifecycle(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("fn"), Mode: PutCreate})

	res := apply(t, f, 2, CmdAsyncAccept, AsyncAcceptCommand{Events: []AsyncEvent{
		event("b", "fn", 20), event("a", "fn", 10), event("x", "missing", 5), event("c", "fn", 30),
	}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got, want := itemCodes(res), []string{"", "", rpc.CodeResourceNotFound, ""}; !reflect.DeepEqual(got, want) {
		t.Fatalf("items = %v, want %v", got, want)
	}
	if f.AsyncLen() != 3 {
		t.Fatalf("AsyncLen = %d", f.AsyncLen())
	}
	// A repeated accept (the proposer retried) changes nothing.
	res = apply(t, f, 3, CmdAsyncAccept, AsyncAcceptCommand{Events: []AsyncEvent{event("a", "fn", 99)}})
	if res.Items[0] != nil {
		t.Fatal(res.Items[0])
	}
	if e, _ := f.AsyncEvent("a"); e.DueMs != 10 || e.Gen != 2 {
		t.Fatalf("a = %+v", e)
	}
	checkAsyncIndex(t, f)

	ids := func(es []*AsyncEvent) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.RequestID)
		}
		return out
	}
	if got := ids(f.AsyncDue(25, 10)); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("due at 25 = %v", got)
	}
	if got := ids(f.AsyncDue(100, 1)); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("due at 100, limit 1 = %v", got)
	}
	if next, ok := f.AsyncNextReady(); !ok || next != 10 {
		t.Fatalf("next = %d, %v", next, ok)
	}

	// Lease a and b; a stale generation is refused.
	res = apply(t, f, 4, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{
		{RequestID: "a", Kind: AsyncLease, IfGen: 2, UntilMs: 500},
		{RequestID: "b", Kind: AsyncLease, IfGen: 1, UntilMs: 500},
		{RequestID: "gone", Kind: AsyncFinish, IfGen: 2},
	}})
	if got, want := itemCodes(res), []string{"", rpc.CodeResourceConflict, rpc.CodeResourceNotFound}; !reflect.DeepEqual(got, want) {
		t.Fatalf("items = %v, want %v", got, want)
	}
	if got := ids(f.AsyncDue(100, 10)); !reflect.DeepEqual(got, []string{"b", "c"}) {
		t.Fatalf("due at 100 with a leased = %v", got)
	}
	// The lease expires: a is due again.
	if got := ids(f.AsyncDue(500, 10)); !reflect.DeepEqual(got, []string{"b", "c", "a"}) {
		t.Fatalf("due at 500 = %v", got)
	}
	// A retry counts; the old generation can no longer finish it.
	res = apply(t, f, 5, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{{RequestID: "a", Kind: AsyncRetry, IfGen: 4, UntilMs: 1000, Attempts: 1}}})
	if res.Items[0] != nil {
		t.Fatal(res.Items[0])
	}
	if e, _ := f.AsyncEvent("a"); e.LeaseUntilMs != 0 || e.DueMs != 1000 || e.Attempts != 1 || e.Gen != 5 {
		t.Fatalf("after retry: %+v", e)
	}
	res = apply(t, f, 6, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{
		{RequestID: "a", Kind: AsyncFinish, IfGen: 4},
		{RequestID: "b", Kind: AsyncFinish, IfGen: 2},
	}})
	if got, want := itemCodes(res), []string{rpc.CodeResourceConflict, ""}; !reflect.DeepEqual(got, want) {
		t.Fatalf("items = %v, want %v", got, want)
	}
	if _, ok := f.AsyncEvent("b"); ok || f.AsyncLen() != 2 {
		t.Fatalf("b still queued (%d events)", f.AsyncLen())
	}
	checkAsyncIndex(t, f)
}

func TestAsyncMalformed(t *testing.T) {
	t.Parallel()
	big := event("big", "fn", 0)
	big.Payload = make([]byte, rpc.MaxAsyncPayload+1)
	tests := []struct {
		name string
		cmd  Command
	}{
		{"no events", AsyncAcceptCommand{}},
		{"no id", AsyncAcceptCommand{Events: []AsyncEvent{event("", "fn", 0)}}},
		{"no function", AsyncAcceptCommand{Events: []AsyncEvent{event("a", "", 0)}}},
		{"payload too big", AsyncAcceptCommand{Events: []AsyncEvent{big}}},
		{"negative attempts", AsyncAcceptCommand{Events: []AsyncEvent{{RequestID: "a", Function: "fn", Attempts: -1}}}},
		{"too many", AsyncAcceptCommand{Events: make([]AsyncEvent, maxAsyncBatch+1)}},
		{"no ops", AsyncUpdateCommand{}},
		{"op kind 0", AsyncUpdateCommand{Ops: []AsyncOp{{RequestID: "keep", IfGen: 2}}}},
		{"op kind 9", AsyncUpdateCommand{Ops: []AsyncOp{{RequestID: "keep", IfGen: 2, Kind: 9}}}},
		{"op negative", AsyncUpdateCommand{Ops: []AsyncOp{{RequestID: "keep", IfGen: 2, Kind: AsyncRetry, Backoffs: -1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFSM(FSMOptions{})
			apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("fn"), Mode: PutCreate})
			apply(t, f, 2, CmdAsyncAccept, AsyncAcceptCommand{Events: []AsyncEvent{event("keep", "fn", 0)}})
			before := allEvents(f)
			res := apply(t, f, 3, tt.cmd.CommandType(), tt.cmd)
			wantCode(t, res, rpc.ErrService)
			if !reflect.DeepEqual(allEvents(f), before) {
				t.Fatal("a malformed entry changed the queue")
			}
		})
	}
}

// withEvents returns populated's FSM with queued events in every state.
func withEvents(t testing.TB) *FSM {
	f := populated(t)
	res := apply(t, f, 20, CmdAsyncAccept, AsyncAcceptCommand{Events: []AsyncEvent{
		event("e1", "full", 100), event("e2", "m", 200), event("e3", "full", 300),
	}})
	for _, err := range res.Items {
		if err != nil {
			t.Fatal(err)
		}
	}
	apply(t, f, 21, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{
		{RequestID: "e1", Kind: AsyncLease, IfGen: 20, UntilMs: 5000},
		{RequestID: "e2", Kind: AsyncRetry, IfGen: 20, UntilMs: 60_000, Attempts: 1, Backoffs: 3},
	}})
	apply(t, f, 22, CmdPutEventConfig, PutEventConfigCommand{Config: &rpc.EventConfig{
		FunctionName: "full", MaxRetryAttempts: intp(1), MaxEventAgeSec: intp(120), OnSuccess: "function:m", OnFailure: "function:full", LastModifiedMs: 9,
	}})
	return f
}

func TestAsyncSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	src := withEvents(t)
	data := persist(t, src)
	dst := NewFSM(FSMOptions{})
	if err := restore(dst, data); err != nil {
		t.Fatal(err)
	}
	if got, want := allEvents(dst), allEvents(src); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored events:\n got %+v\nwant %+v", got, want)
	}
	checkAsyncIndex(t, dst)
	if !bytes.Equal(persist(t, dst), data) {
		t.Fatal("restored state persists differently")
	}
	// Finished events leave snapshots.
	var ops []AsyncOp
	for _, e := range allEvents(dst) {
		ops = append(ops, AsyncOp{RequestID: e.RequestID, Kind: AsyncFinish, IfGen: e.Gen})
	}
	apply(t, dst, 30, CmdAsyncUpdate, AsyncUpdateCommand{Ops: ops})
	empty := NewFSM(FSMOptions{})
	if err := restore(empty, persist(t, dst)); err != nil || empty.AsyncLen() != 0 {
		t.Fatalf("after finishing every event: %v, %d events", err, empty.AsyncLen())
	}
}

func TestRestoreRejectsBadEvents(t *testing.T) {
	t.Parallel()
	rec := func(es ...*AsyncEvent) []byte {
		return snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
			for _, e := range es {
				_ = enc.EncodeUint8(uint8(recordAsyncEvent))
				_ = enc.Encode(e)
			}
			_ = enc.EncodeUint8(uint8(recordEnd))
			_ = enc.EncodeUint64(uint64(len(es)))
		})
	}
	ok := event("a", "fn", 1)
	noID := event("", "fn", 1)
	big := event("b", "fn", 1)
	big.Payload = make([]byte, rpc.MaxAsyncPayload+1)
	for name, data := range map[string][]byte{
		"duplicate": rec(&ok, &ok),
		"no id":     rec(&noID),
		"too big":   rec(&big),
		"nil":       rec(nil),
	} {
		f := withEvents(t)
		before := allEvents(f)
		if err := restore(f, data); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if !reflect.DeepEqual(allEvents(f), before) {
			t.Errorf("%s: a failed restore changed the queue", name)
		}
	}
}

// FuzzAsyncApply: async entries never panic; a failed entry changes
// nothing; the due index always matches the events.
func FuzzAsyncApply(f *testing.F) {
	f.Add(mustEncode(f, CmdAsyncAccept, AsyncAcceptCommand{Events: []AsyncEvent{event("n1", "fn", 5), event("n2", "nope", 5)}}))
	f.Add(mustEncode(f, CmdAsyncAccept, AsyncAcceptCommand{Events: []AsyncEvent{event("e1", "fn", 7)}}))
	f.Add(mustEncode(f, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{
		{RequestID: "e1", Kind: AsyncLease, IfGen: 2, UntilMs: 9}, {RequestID: "e2", Kind: AsyncFinish, IfGen: 2},
	}}))
	f.Add(mustEncode(f, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{{RequestID: "e2", Kind: AsyncRetry, IfGen: 2, UntilMs: 1, Attempts: 2}}}))
	then := event("t1", "fn", 3)
	f.Add(mustEncode(f, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{{RequestID: "e1", Kind: AsyncFinish, IfGen: 2, Then: &then}}}))
	f.Add(mustEncode(f, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{{RequestID: "e1", Kind: AsyncFinish, IfGen: 2,
		ThenMessages: []QueueMessage{{ID: "m1", Queue: "q", Body: []byte("rec"), SentMs: 1, VisibleMs: 1}}}}}))
	f.Add(mustEncode(f, CmdPutEventConfig, PutEventConfigCommand{Config: &rpc.EventConfig{FunctionName: "fn", MaxRetryAttempts: intp(1)}}))
	f.Add(mustEncode(f, CmdDeleteEventConfig, DeleteEventConfigCommand{Name: "fn"}))
	f.Add([]byte{byte(CmdAsyncUpdate), 0x81, 0xa3, 'o', 'p', 's', 0x91, 0x80})
	f.Add([]byte{byte(CmdAsyncAccept), 0x81, 0xa6, 'e', 'v', 'e', 'n', 't', 's', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		switch CommandType(firstByte(data)) {
		case CmdAsyncAccept, CmdAsyncUpdate, CmdPutEventConfig, CmdDeleteEventConfig:
		default:
			return
		}
		fsm := NewFSM(FSMOptions{})
		apply(t, fsm, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("fn"), Mode: PutCreate})
		apply(t, fsm, 2, CmdAsyncAccept, AsyncAcceptCommand{Events: []AsyncEvent{event("e1", "fn", 1), event("e2", "fn", 2)}})
		before := allEvents(fsm)
		beforeCfg, _ := fsm.EventConfig("fn")
		res := applyRaw(t, fsm, 3, data)
		checkAsyncIndex(t, fsm)
		if afterCfg, _ := fsm.EventConfig("fn"); res.Err != nil && afterCfg != beforeCfg {
			t.Fatal("a failed entry changed the event config")
		}
		if res.Err != nil {
			if !reflect.DeepEqual(allEvents(fsm), before) {
				t.Fatal("a failed entry changed the queue")
			}
			return
		}
		for _, e := range allEvents(fsm) {
			if err := checkEvent(e); err != nil {
				t.Fatalf("stored a bad event: %v", err)
			}
			if e.Gen != 2 && e.Gen != 3 {
				t.Fatalf("generation %d", e.Gen)
			}
		}
		// Whatever the state, it round-trips through a snapshot.
		again := NewFSM(FSMOptions{})
		if err := restore(again, persist(t, fsm)); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(allEvents(again), allEvents(fsm)) {
			t.Fatal(fmt.Sprintf("events do not round-trip: %+v", allEvents(fsm)))
		}
	})
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// TestAsyncStateBounded: 100,000 events accepted, leased and finished
// leave the state and its snapshot as small as before them.
func TestAsyncStateBounded(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("fn"), Mode: PutCreate})
	empty := len(persist(t, f))
	index := uint64(2)
	const total, batch = 100_000, 1000
	payload := bytes.Repeat([]byte("x"), 1024)
	for done := 0; done < total; done += batch {
		events := make([]AsyncEvent, batch)
		for i := range events {
			events[i] = AsyncEvent{RequestID: fmt.Sprintf("e%06d", done+i), Function: "fn", Payload: payload, DueMs: int64(done + i)}
		}
		accept := index
		apply(t, f, index, CmdAsyncAccept, AsyncAcceptCommand{Events: events})
		index++
		ops := make([]AsyncOp, batch)
		for i := range ops {
			ops[i] = AsyncOp{RequestID: events[i].RequestID, Kind: AsyncLease, IfGen: accept, UntilMs: 1 << 40}
		}
		apply(t, f, index, CmdAsyncUpdate, AsyncUpdateCommand{Ops: ops})
		for i := range ops {
			ops[i] = AsyncOp{RequestID: events[i].RequestID, Kind: AsyncFinish, IfGen: index}
		}
		index++
		if res := apply(t, f, index, CmdAsyncUpdate, AsyncUpdateCommand{Ops: ops}); res.Items[batch-1] != nil {
			t.Fatal(res.Items[batch-1])
		}
		index++
	}
	if n := f.AsyncLen(); n != 0 {
		t.Fatalf("%d events left", n)
	}
	checkAsyncIndex(t, f)
	if got := len(persist(t, f)); got != empty {
		t.Fatalf("snapshot of %d bytes after %d processed events, %d before", got, total, empty)
	}
}
