package scheduler

import (
	"cmp"
	"fmt"

	"github.com/google/btree"
	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// The async event queue: events accepted for asynchronous invocation and
// not finished yet, with a due-time index the leader's dispatcher reads.
//
// Lifecycle of an event, as the state holds it (times are the proposer's
// clock, in Unix milliseconds, carried in the commands):
//
//	Accept ------> waiting (DueMs) --Lease--> leased (LeaseUntilMs)
//	                  ^                          |  |
//	                  +---------Retry------------+  +--Finish--> gone
//	                  (a counted retry after a function error, or a
//	                  backoff after a throttle or system error)
//
//	leased, LeaseUntilMs passed (its dispatcher or worker died): due again,
//	and Lease may take it again (at-least-once).
//
// Every change sets the event's Gen to the index of the entry that made it;
// Lease, Retry and Finish carry the Gen they read (IfGen) and are refused
// when it changed, so a stale dispatcher (a former leader's, or a run whose
// lease had expired) cannot undo a newer decision. A finished event leaves
// the state: the state, and so every snapshot, holds only what is in flight.

// Limits of the async queue.
const (
	// MaxAsyncEvents is the most events the state holds; an accept beyond
	// it is throttled.
	MaxAsyncEvents = 1_000_000
	// maxAsyncBatch bounds the items of one AsyncAccept or AsyncUpdate.
	maxAsyncBatch = 4096
)

// AsyncEvent is one accepted asynchronous invocation. Stored values are
// immutable.
type AsyncEvent struct {
	RequestID  string `msgpack:"id"`
	Function   string `msgpack:"fn"`
	Payload    []byte `msgpack:"p"`
	AcceptedMs int64  `msgpack:"at"`
	// Attempts counts the runs that ended in a function error or timeout
	// (the retries Lambda counts).
	Attempts int `msgpack:"n,omitempty"`
	// Backoffs counts the put-backs after a throttle or system error (not
	// retries): the exponent of the next backoff.
	Backoffs int `msgpack:"b,omitempty"`
	// DueMs: the event is not dispatched before it.
	DueMs int64 `msgpack:"due"`
	// LeaseUntilMs is, while the event is leased, when the lease expires
	// (0: not leased).
	LeaseUntilMs int64 `msgpack:"lease,omitempty"`
	// Gen is the index of the entry that last changed the event (Apply
	// sets it; the proposer's value is ignored).
	Gen uint64 `msgpack:"gen"`
	// Depth counts the destination hops that led to this event (0 for an
	// event a caller sent); at rpc.MaxDestinationDepth the chain stops.
	Depth int `msgpack:"d,omitempty"`
	// Qualifier is the version or alias the caller invoked ("" for
	// $LATEST); the dispatcher resolves it at each run, so a weighted
	// alias picks per run. A proposer sets it only once every server
	// applies FSM version 3 (versions.go), so no replica drops it.
	Qualifier string `msgpack:"q,omitempty"`
}

// ReadyMs is when the dispatcher may take the event: its lease's expiry
// when leased, else its due time.
func (e *AsyncEvent) ReadyMs() int64 {
	if e.LeaseUntilMs != 0 {
		return e.LeaseUntilMs
	}
	return e.DueMs
}

// AsyncAcceptCommand adds events (CmdAsyncAccept). Many accepts share one
// entry (group commit); each item succeeds or fails on its own
// (ApplyResult.Items). An item fails with ResourceNotFoundException when its
// function does not exist, and with TooManyRequestsException when the queue
// is full. An item whose RequestID is already queued is accepted without a
// change (a proposer's retry).
type AsyncAcceptCommand struct {
	Events boundedList[AsyncEvent] `msgpack:"events"`
}

// AsyncOpKind says what an AsyncOp does. Values are durable, append-only.
type AsyncOpKind uint8

const (
	// AsyncLease leases the event until UntilMs.
	AsyncLease AsyncOpKind = 1
	// AsyncRetry ends the lease and makes the event due at UntilMs with the
	// op's Attempts and Backoffs.
	AsyncRetry AsyncOpKind = 2
	// AsyncFinish removes the event (it succeeded, or ended in its failure
	// destination).
	AsyncFinish AsyncOpKind = 3
)

// AsyncOp is one change to a queued event.
type AsyncOp struct {
	RequestID string      `msgpack:"id"`
	Kind      AsyncOpKind `msgpack:"k"`
	// IfGen must equal the event's Gen, else the op fails with
	// ResourceConflictException and changes nothing.
	IfGen    uint64 `msgpack:"gen"`
	UntilMs  int64  `msgpack:"until,omitempty"`
	Attempts int    `msgpack:"n,omitempty"`
	Backoffs int    `msgpack:"b,omitempty"`
	// Then, on an AsyncFinish, is an event queued in the same apply: the
	// destination function's invocation with Lambda's record, so that
	// finishing an event and handing it to its destination happen together
	// or not at all. It is dropped (the finish still applies) when its
	// function no longer exists or the queue is full.
	Then *AsyncEvent `msgpack:"then,omitempty"`
	// ThenMessages, on an AsyncFinish, are queue messages sent in the same
	// apply: a queue destination's record, the legacy dead-letter queue's
	// copy of the event. Each is dropped (the finish still applies) when
	// its queue no longer exists or is full. The proposer sets it only
	// once every server applies FSM version 3 (queues).
	ThenMessages boundedList[QueueMessage] `msgpack:"then_msgs,omitempty"`
}

// AsyncUpdateCommand applies ops to queued events (CmdAsyncUpdate), each on
// its own (ApplyResult.Items): the dispatcher's leases and outcomes share
// entries as accepts do.
type AsyncUpdateCommand struct {
	Ops boundedList[AsyncOp] `msgpack:"ops"`
}

// boundedList is a list that decodes only up to maxAsyncBatch items, so a
// garbled length cannot make the decoder allocate for billions of them.
type boundedList[T any] []T

func (l *boundedList[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n > maxAsyncBatch {
		return fmt.Errorf("a list of %d items (at most %d)", n, maxAsyncBatch)
	}
	if n < 0 {
		*l = nil
		return nil
	}
	out := make([]T, n)
	for i := range out {
		if err := dec.Decode(&out[i]); err != nil {
			return err
		}
	}
	*l = out
	return nil
}

func (AsyncAcceptCommand) CommandType() CommandType { return CmdAsyncAccept }
func (AsyncUpdateCommand) CommandType() CommandType { return CmdAsyncUpdate }

// dueKey orders the due index: by ready time, then request id.
type dueKey struct {
	readyMs int64
	id      string
}

func dueLess(a, b dueKey) bool {
	if c := cmp.Compare(a.readyMs, b.readyMs); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

func newDueIndex() *btree.BTreeG[dueKey] { return btree.NewG(32, dueLess) }

// asyncQueue is the events part of fsmState. Invariant: due holds exactly
// one key per event, {ReadyMs(), RequestID}.
type asyncQueue struct {
	events map[string]*AsyncEvent
	due    *btree.BTreeG[dueKey]
}

func newAsyncQueue() asyncQueue {
	return asyncQueue{events: make(map[string]*AsyncEvent), due: newDueIndex()}
}

func (q *asyncQueue) put(e *AsyncEvent) {
	if old, ok := q.events[e.RequestID]; ok {
		q.due.Delete(dueKey{old.ReadyMs(), old.RequestID})
	}
	q.events[e.RequestID] = e
	q.due.ReplaceOrInsert(dueKey{e.ReadyMs(), e.RequestID})
}

func (q *asyncQueue) remove(e *AsyncEvent) {
	delete(q.events, e.RequestID)
	q.due.Delete(dueKey{e.ReadyMs(), e.RequestID})
}

// checkEvent is what Apply and Restore require of an event.
func checkEvent(e *AsyncEvent) error {
	switch {
	case e.RequestID == "" || len(e.RequestID) > 128:
		return fmt.Errorf("event request id of %d bytes", len(e.RequestID))
	case e.Function == "":
		return fmt.Errorf("event %s without a function", e.RequestID)
	case len(e.Qualifier) > MaxAliasLength:
		return fmt.Errorf("event %s qualifier of %d bytes", e.RequestID, len(e.Qualifier))
	case len(e.Payload) > rpc.MaxAsyncPayload:
		return fmt.Errorf("event %s payload of %d bytes", e.RequestID, len(e.Payload))
	case e.Attempts < 0 || e.Backoffs < 0 || e.Depth < 0 || e.Depth > rpc.MaxDestinationDepth:
		return fmt.Errorf("event %s with counts out of range", e.RequestID)
	}
	return nil
}

func (f *FSM) applyAsyncAccept(index uint64, body []byte) ApplyResult {
	var cmd AsyncAcceptCommand
	if err := decodeCommand(CmdAsyncAccept, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if len(cmd.Events) == 0 || len(cmd.Events) > maxAsyncBatch {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: %d events", CmdAsyncAccept, len(cmd.Events))}
	}
	for i := range cmd.Events {
		if err := checkEvent(&cmd.Events[i]); err != nil {
			return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: %v", CmdAsyncAccept, err)}
		}
	}
	res := f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		items := make([]error, len(cmd.Events))
		for i := range cmd.Events {
			e := cmd.Events[i]
			if _, ok := s.async.events[e.RequestID]; ok {
				continue
			}
			if _, ok := s.functions[e.Function]; !ok {
				items[i] = errFunctionNotFound(e.Function)
				continue
			}
			if len(s.async.events) >= MaxAsyncEvents {
				items[i] = rpc.Errorf(rpc.CodeTooManyRequests, "the async event queue is full (%d events)", MaxAsyncEvents)
				continue
			}
			e.LeaseUntilMs = 0
			e.Gen = index
			s.async.put(&e)
		}
		return ApplyResult{Items: items}, nil
	})
	if f.onAsyncReady != nil {
		f.onAsyncReady()
	}
	return res
}

func (f *FSM) applyAsyncUpdate(index uint64, body []byte) ApplyResult {
	var cmd AsyncUpdateCommand
	if err := decodeCommand(CmdAsyncUpdate, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if len(cmd.Ops) == 0 || len(cmd.Ops) > maxAsyncBatch {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: %d ops", CmdAsyncUpdate, len(cmd.Ops))}
	}
	for _, op := range cmd.Ops {
		if op.Kind < AsyncLease || op.Kind > AsyncFinish || op.Attempts < 0 || op.Backoffs < 0 {
			return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: op kind %d, counts %d/%d", CmdAsyncUpdate, op.Kind, op.Attempts, op.Backoffs)}
		}
		if len(op.ThenMessages) > 2 || len(op.ThenMessages) > 0 && op.Kind != AsyncFinish {
			return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: %d follow-up messages on a %d op", CmdAsyncUpdate, len(op.ThenMessages), op.Kind)}
		}
		for i := range op.ThenMessages {
			if err := checkMessage(&op.ThenMessages[i]); err != nil {
				return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: %v", CmdAsyncUpdate, err)}
			}
		}
		if op.Then != nil {
			if op.Kind != AsyncFinish {
				return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: a follow-up event on a %d op", CmdAsyncUpdate, op.Kind)}
			}
			if err := checkEvent(op.Then); err != nil {
				return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: %v", CmdAsyncUpdate, err)}
			}
		}
	}
	retried := false
	var queued []string
	res := f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		items := make([]error, len(cmd.Ops))
		for i, op := range cmd.Ops {
			cur, ok := s.async.events[op.RequestID]
			if !ok {
				items[i] = rpc.Errorf(rpc.CodeResourceNotFound, "no queued event %s", op.RequestID)
				continue
			}
			if cur.Gen != op.IfGen {
				items[i] = rpc.Errorf(rpc.CodeResourceConflict, "event %s changed (generation %d, not %d)", op.RequestID, cur.Gen, op.IfGen)
				continue
			}
			switch op.Kind {
			case AsyncFinish:
				s.async.remove(cur)
				for j := range op.ThenMessages {
					// Seq: the entry's index, then the op's and the
					// message's place (ops <= 4096, messages <= 2).
					m := op.ThenMessages[j]
					if _, err := s.queues.sendOne(m, index<<20|uint64(i)<<1|uint64(j)); err == nil {
						queued = appendOnce(queued, m.Queue)
					}
				}
				if then := op.Then; then != nil && s.async.events[then.RequestID] == nil &&
					s.functions[then.Function] != nil && len(s.async.events) < MaxAsyncEvents {
					next := *then
					next.LeaseUntilMs = 0
					next.Gen = index
					s.async.put(&next)
					retried = true
				}
				continue
			case AsyncLease:
				next := *cur
				next.LeaseUntilMs = op.UntilMs
				if next.LeaseUntilMs == 0 {
					next.LeaseUntilMs = 1 // leased, even with a zero clock
				}
				next.Gen = index
				s.async.put(&next)
			case AsyncRetry:
				next := *cur
				next.LeaseUntilMs = 0
				next.DueMs = op.UntilMs
				next.Attempts, next.Backoffs = op.Attempts, op.Backoffs
				next.Gen = index
				s.async.put(&next)
				retried = true
			}
		}
		return ApplyResult{Items: items}, nil
	})
	if retried && f.onAsyncReady != nil {
		f.onAsyncReady()
	}
	f.queueReady(queued)
	return res
}

// AsyncDue returns up to limit events whose ReadyMs is at or before nowMs,
// in ready order. The values are immutable.
func (f *FSM) AsyncDue(nowMs int64, limit int) []*AsyncEvent {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*AsyncEvent
	f.state.async.due.Ascend(func(k dueKey) bool {
		if k.readyMs > nowMs || len(out) >= limit {
			return false
		}
		out = append(out, f.state.async.events[k.id])
		return true
	})
	return out
}

// AsyncNextReady returns the earliest ReadyMs of any event (false when the
// queue is empty).
func (f *FSM) AsyncNextReady() (int64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	k, ok := f.state.async.due.Min()
	return k.readyMs, ok
}

// AsyncEvent returns a queued event.
func (f *FSM) AsyncEvent(id string) (*AsyncEvent, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e, ok := f.state.async.events[id]
	return e, ok
}

// AsyncLen returns how many events are queued (waiting or leased).
func (f *FSM) AsyncLen() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.state.async.events)
}
