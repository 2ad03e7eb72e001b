package scheduler

import (
	"errors"
	"fmt"
	"sort"

	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// Snapshot records of the queues and triggers (snapshot.go gives the
// format and the order).

// dedupRecord is one FIFO deduplication entry in a snapshot.
type dedupRecord struct {
	Queue     string `msgpack:"q"`
	DedupID   string `msgpack:"id"`
	MessageID string `msgpack:"msg"`
	Seq       uint64 `msgpack:"seq"`
	UntilMs   int64  `msgpack:"until"`
}

// queueCapture is the queue part of a snapshot: immutable values only.
type queueCapture struct {
	queues   []*rpc.Queue
	messages []*QueueMessage
	dedup    []dedupRecord
	triggers []*rpc.Trigger
}

// captureQueues copies the pointers and entries of st; the caller holds
// the FSM's read lock.
func captureQueues(st *fsmState) queueCapture {
	c := queueCapture{
		queues:   make([]*rpc.Queue, 0, len(st.queues.queues)),
		messages: make([]*QueueMessage, 0, len(st.queues.msgs)),
		triggers: make([]*rpc.Trigger, 0, len(st.triggers)),
	}
	for _, qs := range st.queues.queues {
		c.queues = append(c.queues, qs.cfg)
		for id, e := range qs.dedupOf {
			c.dedup = append(c.dedup, dedupRecord{Queue: qs.cfg.Name, DedupID: id, MessageID: e.MessageID, Seq: e.Seq, UntilMs: e.UntilMs})
		}
	}
	for _, m := range st.queues.msgs {
		c.messages = append(c.messages, m)
	}
	for _, t := range st.triggers {
		c.triggers = append(c.triggers, t)
	}
	return c
}

func (c *queueCapture) sort() {
	sort.Slice(c.queues, func(i, j int) bool { return c.queues[i].Name < c.queues[j].Name })
	sort.Slice(c.messages, func(i, j int) bool {
		a, b := c.messages[i], c.messages[j]
		if a.Queue != b.Queue {
			return a.Queue < b.Queue
		}
		return a.Seq < b.Seq
	})
	sort.Slice(c.dedup, func(i, j int) bool {
		a, b := c.dedup[i], c.dedup[j]
		if a.Queue != b.Queue {
			return a.Queue < b.Queue
		}
		return a.DedupID < b.DedupID
	})
	sort.Slice(c.triggers, func(i, j int) bool { return c.triggers[i].UUID < c.triggers[j].UUID })
}

func (c *queueCapture) write(record func(snapshotRecordType, any) error) error {
	for _, q := range c.queues {
		if err := record(recordQueue, q); err != nil {
			return err
		}
	}
	for _, m := range c.messages {
		if err := record(recordQueueMessage, m); err != nil {
			return err
		}
	}
	for i := range c.dedup {
		if err := record(recordQueueDedup, &c.dedup[i]); err != nil {
			return err
		}
	}
	for _, t := range c.triggers {
		if err := record(recordTrigger, t); err != nil {
			return err
		}
	}
	return nil
}

func restoreQueue(dec *msgpack.Decoder, st *fsmState) error {
	var q *rpc.Queue
	if err := dec.Decode(&q); err != nil {
		return fmt.Errorf("queue: %w", eofIsTruncation(err))
	}
	if err := checkQueue(q); err != nil {
		return err
	}
	if _, dup := st.queues.queues[q.Name]; dup {
		return fmt.Errorf("queue %q appears twice", q.Name)
	}
	if len(st.queues.queues) >= MaxQueues {
		return fmt.Errorf("more than %d queues", MaxQueues)
	}
	st.queues.queues[q.Name] = newQueueState(q)
	return nil
}

// restoreQueueMessage reads one message: its queue came before it, and the
// messages of a queue come in increasing Seq order.
func restoreQueueMessage(dec *msgpack.Decoder, st *fsmState) error {
	var m *QueueMessage
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("queue message: %w", eofIsTruncation(err))
	}
	if m == nil {
		return errors.New("nil queue message")
	}
	if err := checkMessage(m); err != nil {
		return err
	}
	qs := st.queues.queues[m.Queue]
	switch {
	case qs == nil:
		return fmt.Errorf("message %s of %q, which is not a queue before it", m.ID, m.Queue)
	case st.queues.msgs[m.ID] != nil:
		return fmt.Errorf("message %s appears twice", m.ID)
	case qs.cfg.FIFO != (m.GroupID != ""):
		return fmt.Errorf("message %s: a group id on a queue of the other kind", m.ID)
	case len(st.queues.msgs) >= MaxQueueMessages || st.queues.bytes+int64(m.size()) > MaxQueueBytes:
		return fmt.Errorf("more than the queues' maximum of messages")
	}
	if qs.ready.Len() > 0 && m.Seq <= qs.lastSeq {
		return fmt.Errorf("message %s out of sequence order", m.ID)
	}
	if len(m.Attrs) == 0 {
		m.Attrs = nil
	}
	st.queues.add(qs, m)
	return nil
}

func restoreQueueDedup(dec *msgpack.Decoder, st *fsmState) error {
	var r *dedupRecord
	if err := dec.Decode(&r); err != nil {
		return fmt.Errorf("dedup entry: %w", eofIsTruncation(err))
	}
	if r == nil || r.DedupID == "" || len(r.DedupID) > 128 {
		return errors.New("dedup entry without an id")
	}
	qs := st.queues.queues[r.Queue]
	switch {
	case qs == nil || !qs.cfg.FIFO:
		return fmt.Errorf("dedup entry of %q, which is not a FIFO queue before it", r.Queue)
	case st.queues.dedup.Len() >= MaxQueueMessages:
		return errors.New("too many dedup entries")
	}
	if _, dup := qs.dedupOf[r.DedupID]; dup {
		return fmt.Errorf("dedup entry %q of %q appears twice", r.DedupID, r.Queue)
	}
	st.queues.putDedup(qs, r.DedupID, dedupEntry{MessageID: r.MessageID, Seq: r.Seq, UntilMs: r.UntilMs})
	return nil
}

func restoreTrigger(dec *msgpack.Decoder, st *fsmState) error {
	var t *rpc.Trigger
	if err := dec.Decode(&t); err != nil {
		return fmt.Errorf("trigger: %w", eofIsTruncation(err))
	}
	if err := checkTrigger(t); err != nil {
		return err
	}
	if _, dup := st.triggers[t.UUID]; dup {
		return fmt.Errorf("trigger %s appears twice", t.UUID)
	}
	if len(st.triggers) >= MaxTriggers {
		return fmt.Errorf("more than %d triggers", MaxTriggers)
	}
	st.triggers[t.UUID] = t
	return nil
}
