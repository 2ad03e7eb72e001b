package scheduler

import (
	"cmp"

	"github.com/google/btree"

	"nimbus/rpc"
)

// queueSet is the queues part of fsmState; Apply and Restore change it
// under FSM.mu, and the messages it holds are immutable.
//
// Invariants: msgs holds every message of every queue, by id; each message
// has exactly one key in its queue's ready index {VisibleMs, Seq} and one
// in its expiry index {ExpiresMs, Seq}; a FIFO queue's groups hold each of
// its messages once, in Seq order, and heads holds one key per non-empty
// group, {Seq of its first message, group}; bytes is the sum of the
// messages' sizes; dedup holds one key per FIFO deduplication entry of
// every queue.
type queueSet struct {
	queues map[string]*queueState
	msgs   map[string]*QueueMessage
	bytes  int64
	dedup  *btree.BTreeG[dedupKey] // {UntilMs, queue, id}: the windows' ends
}

type queueState struct {
	cfg    *rpc.Queue
	ready  *btree.BTreeG[msgKey]
	expiry *btree.BTreeG[msgKey]
	// FIFO only:
	groups  map[string]*fifoGroup
	heads   *btree.BTreeG[headKey]
	dedupOf map[string]dedupEntry // deduplication id -> its entry
	// lastSeq is the highest Seq ever added (a restore checks the order).
	lastSeq uint64
}

// fifoGroup is a message group's message ids in Seq order (an index owned
// by its queueState, changed in place under FSM.mu).
type fifoGroup struct {
	ids []string
}

type dedupEntry struct {
	MessageID string
	Seq       uint64
	UntilMs   int64
}

type msgKey struct {
	at  int64
	seq uint64
	id  string
}

func msgLess(a, b msgKey) bool {
	if c := cmp.Compare(a.at, b.at); c != 0 {
		return c < 0
	}
	return a.seq < b.seq
}

type headKey struct {
	seq   uint64
	group string
}

func headLess(a, b headKey) bool { return a.seq < b.seq }

type dedupKey struct {
	untilMs int64
	queue   string
	id      string
}

func dedupLess(a, b dedupKey) bool {
	if c := cmp.Compare(a.untilMs, b.untilMs); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(a.queue, b.queue); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

func newQueueSet() queueSet {
	return queueSet{
		queues: make(map[string]*queueState),
		msgs:   make(map[string]*QueueMessage),
		dedup:  btree.NewG(32, dedupLess),
	}
}

func newQueueState(cfg *rpc.Queue) *queueState {
	qs := &queueState{cfg: cfg, ready: btree.NewG(32, msgLess), expiry: btree.NewG(32, msgLess)}
	if cfg.FIFO {
		qs.groups = make(map[string]*fifoGroup)
		qs.heads = btree.NewG(32, headLess)
		qs.dedupOf = make(map[string]dedupEntry)
	}
	return qs
}

// add stores a new message (its Seq above every Seq of its queue's).
func (s *queueSet) add(qs *queueState, m *QueueMessage) {
	s.msgs[m.ID] = m
	s.bytes += int64(m.size())
	qs.lastSeq = max(qs.lastSeq, m.Seq)
	qs.ready.ReplaceOrInsert(msgKey{m.VisibleMs, m.Seq, m.ID})
	qs.expiry.ReplaceOrInsert(msgKey{m.ExpiresMs, m.Seq, m.ID})
	if qs.groups != nil {
		g := qs.groups[m.GroupID]
		if g == nil {
			g = &fifoGroup{}
			qs.groups[m.GroupID] = g
			qs.heads.ReplaceOrInsert(headKey{m.Seq, m.GroupID})
		}
		g.ids = append(g.ids, m.ID)
	}
}

// replace stores next in place of cur (the same id, queue and Seq; only
// the visibility, receipt and counts differ).
func (s *queueSet) replace(qs *queueState, cur, next *QueueMessage) {
	s.msgs[next.ID] = next
	if cur.VisibleMs != next.VisibleMs {
		qs.ready.Delete(msgKey{cur.VisibleMs, cur.Seq, cur.ID})
		qs.ready.ReplaceOrInsert(msgKey{next.VisibleMs, next.Seq, next.ID})
	}
}

// remove deletes a message from the state.
func (s *queueSet) remove(qs *queueState, m *QueueMessage) {
	delete(s.msgs, m.ID)
	s.bytes -= int64(m.size())
	qs.ready.Delete(msgKey{m.VisibleMs, m.Seq, m.ID})
	qs.expiry.Delete(msgKey{m.ExpiresMs, m.Seq, m.ID})
	if qs.groups == nil {
		return
	}
	g := qs.groups[m.GroupID]
	if g == nil {
		return
	}
	for i, id := range g.ids {
		if id != m.ID {
			continue
		}
		if i == 0 {
			qs.heads.Delete(headKey{m.Seq, m.GroupID})
			g.ids = g.ids[1:]
			if len(g.ids) == 0 {
				delete(qs.groups, m.GroupID)
			} else {
				qs.heads.ReplaceOrInsert(headKey{s.msgs[g.ids[0]].Seq, m.GroupID})
			}
		} else {
			g.ids = append(g.ids[:i:i], g.ids[i+1:]...)
		}
		return
	}
}

// dropQueue removes a queue, its messages and its deduplication entries.
func (s *queueSet) dropQueue(qs *queueState) {
	s.purge(qs)
	for id, e := range qs.dedupOf {
		s.dedup.Delete(dedupKey{e.UntilMs, qs.cfg.Name, id})
	}
	delete(s.queues, qs.cfg.Name)
}

// purge removes every message of a queue (deduplication entries stay, as
// SQS's do).
func (s *queueSet) purge(qs *queueState) {
	qs.ready.Ascend(func(k msgKey) bool {
		if m := s.msgs[k.id]; m != nil {
			delete(s.msgs, k.id)
			s.bytes -= int64(m.size())
		}
		return true
	})
	qs.ready.Clear(false)
	qs.expiry.Clear(false)
	if qs.groups != nil {
		qs.groups = make(map[string]*fifoGroup)
		qs.heads.Clear(false)
	}
}

func (s *queueSet) putDedup(qs *queueState, id string, e dedupEntry) {
	if old, ok := qs.dedupOf[id]; ok {
		s.dedup.Delete(dedupKey{old.UntilMs, qs.cfg.Name, id})
	}
	qs.dedupOf[id] = e
	s.dedup.ReplaceOrInsert(dedupKey{e.UntilMs, qs.cfg.Name, id})
}

// counts returns a queue's visible, in-flight and delayed messages at nowMs.
func (s *queueSet) counts(qs *queueState, nowMs int64) (visible, inFlight, delayed int) {
	qs.ready.Ascend(func(k msgKey) bool {
		switch {
		case k.at <= nowMs:
			visible++
		case s.msgs[k.id].Receives > 0:
			inFlight++
		default:
			delayed++
		}
		return true
	})
	if qs.groups != nil {
		// A FIFO message behind an in-flight one of its group is not
		// receivable: count it as not visible.
		for _, g := range qs.groups {
			if len(g.ids) > 1 && s.msgs[g.ids[0]].VisibleMs > nowMs {
				for _, id := range g.ids[1:] {
					if s.msgs[id].VisibleMs <= nowMs {
						visible--
						inFlight++
					}
				}
			}
		}
	}
	return
}
