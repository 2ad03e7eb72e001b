package scheduler

import (
	"bytes"
	"slices"

	"nimbus/rpc"
)

// maxReceiveOp bounds a receive op's Max (clients are held to
// rpc.MaxQueueReceive; a trigger's poller takes bigger batches).
const maxReceiveOp = maxAsyncBatch

func (f *FSM) applyPutQueue(body []byte) ApplyResult {
	var cmd PutQueueCommand
	if err := decodeCommand(CmdPutQueue, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if err := checkQueue(cmd.Queue); err != nil {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: %v", CmdPutQueue, err)}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		if cur, ok := s.queues.queues[cmd.Queue.Name]; ok {
			if cur.cfg.SameSettings(cmd.Queue) {
				return ApplyResult{Outputs: []any{cur.cfg}}, nil
			}
			return ApplyResult{Err: rpc.Errorf(rpc.CodeQueueNameExists, "A queue already exists with the same name and a different value for attribute(s): %s", cmd.Queue.Name)}, nil
		}
		if len(s.queues.queues) >= MaxQueues {
			return ApplyResult{Err: rpc.Errorf(rpc.CodeOverLimit, "at most %d queues", MaxQueues)}, nil
		}
		q := *cmd.Queue
		s.queues.queues[q.Name] = newQueueState(&q)
		return ApplyResult{Outputs: []any{&q}}, nil
	})
}

func (f *FSM) applyDeleteQueue(body []byte) ApplyResult {
	var cmd DeleteQueueCommand
	if err := decodeCommand(CmdDeleteQueue, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		qs, ok := s.queues.queues[cmd.Name]
		if !ok {
			return ApplyResult{Err: errQueueNotFound(cmd.Name)}, nil
		}
		s.queues.dropQueue(qs)
		return ApplyResult{}, nil
	})
}

func (f *FSM) applyQueueSend(index uint64, body []byte) ApplyResult {
	var cmd QueueSendCommand
	if err := decodeCommand(CmdQueueSend, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if len(cmd.Messages) == 0 || len(cmd.Messages) > maxAsyncBatch {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: %d messages", CmdQueueSend, len(cmd.Messages))}
	}
	for i := range cmd.Messages {
		if err := checkMessage(&cmd.Messages[i]); err != nil {
			return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: %v", CmdQueueSend, err)}
		}
	}
	var ready []string
	res := f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		qset := &s.queues
		items := make([]error, len(cmd.Messages))
		outs := make([]any, len(cmd.Messages))
		for i := range cmd.Messages {
			out, err := qset.sendOne(cmd.Messages[i], index<<20|uint64(i))
			if err != nil {
				items[i] = err
				continue
			}
			outs[i] = out
			ready = appendOnce(ready, cmd.Messages[i].Queue)
		}
		return ApplyResult{Items: items, Outputs: outs}, nil
	})
	f.queueReady(ready)
	return res
}

// sendOne adds m to its queue with sequence number seq, as SQS's
// SendMessage: the checks against the queue, FIFO deduplication, the
// state's limits.
func (qset *queueSet) sendOne(m QueueMessage, seq uint64) (QueueSendOutput, error) {
	qs := qset.queues[m.Queue]
	switch {
	case qs == nil:
		return QueueSendOutput{}, errQueueNotFound(m.Queue)
	case qs.cfg.FIFO && m.GroupID == "":
		return QueueSendOutput{}, rpc.Errorf(rpc.CodeSQSMissingParameter, "The request must contain the parameter MessageGroupId.")
	case qs.cfg.FIFO && m.DedupID == "":
		return QueueSendOutput{}, rpc.Errorf(rpc.CodeSQSInvalidParameter, "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly")
	case !qs.cfg.FIFO && (m.GroupID != "" || m.DedupID != ""):
		return QueueSendOutput{}, rpc.Errorf(rpc.CodeSQSInvalidParameter, "MessageGroupId and MessageDeduplicationId apply to FIFO queues.")
	case m.size() > qs.cfg.MaxMessageSize:
		return QueueSendOutput{}, rpc.Errorf(rpc.CodeSQSInvalidParameter, "One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", qs.cfg.MaxMessageSize)
	}
	if qs.cfg.FIFO {
		if e, ok := qs.dedupOf[m.DedupID]; ok && e.UntilMs > m.SentMs {
			return QueueSendOutput{MessageID: e.MessageID, Seq: e.Seq}, nil
		}
	}
	if cur, ok := qset.msgs[m.ID]; ok {
		return QueueSendOutput{MessageID: cur.ID, Seq: cur.Seq}, nil // a proposer's retry
	}
	if len(qset.msgs) >= MaxQueueMessages || qset.bytes+int64(m.size()) > MaxQueueBytes {
		return QueueSendOutput{}, rpc.Errorf(rpc.CodeOverLimit, "the queues hold their maximum (%d messages, %d bytes)", MaxQueueMessages, MaxQueueBytes)
	}
	m.Seq = seq
	m.Receives, m.FirstReceiveMs, m.Receipt = 0, 0, nil
	m.ExpiresMs = m.SentMs + int64(qs.cfg.RetentionSec)*1000
	qset.add(qs, &m)
	if qs.cfg.FIFO {
		qset.putDedup(qs, m.DedupID, dedupEntry{MessageID: m.ID, Seq: m.Seq, UntilMs: m.SentMs + rpc.FIFODedupWindowMs})
	}
	return QueueSendOutput{MessageID: m.ID, Seq: m.Seq}, nil
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func (f *FSM) queueReady(names []string) {
	if f.onQueueReady == nil {
		return
	}
	for _, q := range names {
		f.onQueueReady(q)
	}
}

// checkQueueOp is what Apply requires of an op's shape.
func checkQueueOp(op *QueueOp) bool {
	switch op.Kind {
	case QueueReceive:
		return op.Queue != "" && op.Max >= 1 && op.Max <= maxReceiveOp && op.MaxBytes >= 0 && len(op.Receipt) == receiptNonceLen
	case QueueDelete, QueueChangeVisibility:
		return op.Queue != "" && op.MessageID != "" && len(op.Receipt) == receiptNonceLen
	case QueuePurge:
		return op.Queue != ""
	case QueueSweep:
		return true
	}
	return false
}

func (f *FSM) applyQueueOps(index uint64, body []byte) ApplyResult {
	var cmd QueueOpsCommand
	if err := decodeCommand(CmdQueueOps, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if len(cmd.Ops) == 0 || len(cmd.Ops) > maxAsyncBatch {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: %d ops", CmdQueueOps, len(cmd.Ops))}
	}
	for i := range cmd.Ops {
		if !checkQueueOp(&cmd.Ops[i]) {
			return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: op %d (kind %d)", CmdQueueOps, i, cmd.Ops[i].Kind)}
		}
	}
	var ready []string
	res := f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		a := opApplier{s: &s.queues, index: index}
		items := make([]error, len(cmd.Ops))
		outs := make([]any, len(cmd.Ops))
		for i := range cmd.Ops {
			outs[i], items[i] = a.apply(&cmd.Ops[i])
		}
		ready = a.ready
		return ApplyResult{Items: items, Outputs: outs}, nil
	})
	f.queueReady(ready)
	return res
}

// opApplier applies the ops of one entry; moved counts the messages it
// moved to dead-letter queues (each takes a new Seq from the entry).
type opApplier struct {
	s     *queueSet
	index uint64
	moved uint64
	ready []string
}

func (a *opApplier) apply(op *QueueOp) (any, error) {
	if op.Kind == QueueSweep {
		a.sweep(op)
		return nil, nil
	}
	qs := a.s.queues[op.Queue]
	if qs == nil {
		return nil, errQueueNotFound(op.Queue)
	}
	switch op.Kind {
	case QueueReceive:
		return a.receive(qs, op), nil
	case QueuePurge:
		a.s.purge(qs)
		return nil, nil
	}
	m := a.s.msgs[op.MessageID]
	if m == nil || m.Queue != op.Queue || !bytes.Equal(m.Receipt, op.Receipt) {
		return nil, errReceiptInvalid()
	}
	if op.Kind == QueueDelete {
		a.s.remove(qs, m)
		return nil, nil
	}
	if m.VisibleMs <= op.NowMs {
		return nil, rpc.Errorf(rpc.CodeMessageNotInflight, "The message referred to isn't in flight.")
	}
	next := *m
	next.VisibleMs = op.VisibleUntilMs
	a.s.replace(qs, m, &next)
	if next.VisibleMs <= op.NowMs {
		a.ready = appendOnce(a.ready, qs.cfg.Name)
	}
	return nil, nil
}

// candidates returns up to max ids a receive may deliver at nowMs, in
// delivery order: the earliest visible of a standard queue; on a FIFO
// queue, groups in the order of their first message, each from its head
// while its messages are visible, skipping a group whose head is in flight.
func (a *opApplier) candidates(qs *queueState, nowMs int64, max int) []string {
	var ids []string
	if qs.groups == nil {
		qs.ready.Ascend(func(k msgKey) bool {
			if k.at > nowMs || len(ids) >= max {
				return false
			}
			ids = append(ids, k.id)
			return true
		})
		return ids
	}
	qs.heads.Ascend(func(h headKey) bool {
		for _, id := range qs.groups[h.group].ids {
			if len(ids) >= max || a.s.msgs[id].VisibleMs > nowMs {
				break
			}
			ids = append(ids, id)
		}
		return len(ids) < max
	})
	return ids
}

func (a *opApplier) receive(qs *queueState, op *QueueOp) []*QueueMessage {
	var out []*QueueMessage
	size := 0
	for _, id := range a.candidates(qs, op.NowMs, op.Max) {
		m := a.s.msgs[id]
		if m.ExpiresMs <= op.NowMs {
			a.s.remove(qs, m)
			continue
		}
		if a.redrive(qs, m, op.NowMs) {
			continue
		}
		if op.MaxBytes > 0 && len(out) > 0 && size+len(m.Body) > op.MaxBytes {
			break
		}
		size += len(m.Body)
		next := *m
		next.Receives++
		if next.FirstReceiveMs == 0 {
			next.FirstReceiveMs = op.NowMs
		}
		next.Receipt = op.Receipt
		next.VisibleMs = op.VisibleUntilMs
		a.s.replace(qs, m, &next)
		out = append(out, &next)
	}
	return out
}

// redrive moves m to its queue's dead-letter queue if it has been received
// maxReceiveCount times and the dead-letter queue exists (of the same
// kind). The message keeps its id, body, attributes and send time; its
// receive count starts again.
func (a *opApplier) redrive(qs *queueState, m *QueueMessage, nowMs int64) bool {
	cfg := qs.cfg
	if cfg.DeadLetterQueue == "" || m.Receives < cfg.MaxReceiveCount {
		return false
	}
	dq := a.s.queues[cfg.DeadLetterQueue]
	if dq == nil || dq.cfg.FIFO != cfg.FIFO || dq == qs {
		return false
	}
	a.s.remove(qs, m)
	next := *m
	next.Queue = dq.cfg.Name
	next.Receives, next.FirstReceiveMs, next.Receipt = 0, 0, nil
	next.VisibleMs = nowMs
	next.ExpiresMs = m.SentMs + int64(dq.cfg.RetentionSec)*1000
	next.Seq = a.index<<20 | (1<<19 + a.moved)
	a.moved++
	if next.ExpiresMs > nowMs {
		a.s.add(dq, &next)
		a.ready = appendOnce(a.ready, dq.cfg.Name)
	}
	return true
}

// sweep removes, by op.NowMs, the expired messages of op.Queue, or, when
// op.Queue is "", the deduplication entries whose window ended: maxSweep
// at most.
func (a *opApplier) sweep(op *QueueOp) {
	if op.Queue == "" {
		var done []dedupKey
		a.s.dedup.Ascend(func(k dedupKey) bool {
			if k.untilMs > op.NowMs || len(done) >= maxSweep {
				return false
			}
			done = append(done, k)
			return true
		})
		for _, k := range done {
			a.s.dedup.Delete(k)
			if qs := a.s.queues[k.queue]; qs != nil {
				delete(qs.dedupOf, k.id)
			}
		}
		return
	}
	qs := a.s.queues[op.Queue]
	if qs == nil {
		return
	}
	var done []string
	qs.expiry.Ascend(func(k msgKey) bool {
		if k.at > op.NowMs || len(done) >= maxSweep {
			return false
		}
		done = append(done, k.id)
		return true
	})
	for _, id := range done {
		a.s.remove(qs, a.s.msgs[id])
	}
}
