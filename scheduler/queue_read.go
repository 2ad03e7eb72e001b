package scheduler

import (
	"sort"

	"nimbus/rpc"
)

// Reads of the queue state. Values returned are immutable.

// Queue returns a queue's configuration.
func (f *FSM) Queue(name string) (*rpc.Queue, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	qs, ok := f.state.queues.queues[name]
	if !ok {
		return nil, false
	}
	return qs.cfg, true
}

// Queues returns every queue sorted by name.
func (f *FSM) Queues() []*rpc.Queue {
	f.mu.RLock()
	out := make([]*rpc.Queue, 0, len(f.state.queues.queues))
	for _, qs := range f.state.queues.queues {
		out = append(out, qs.cfg)
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// QueueCounts returns a queue's visible, in-flight and delayed messages at
// nowMs (false when there is no such queue).
func (f *FSM) QueueCounts(name string, nowMs int64) (visible, inFlight, delayed int, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	qs, ok := f.state.queues.queues[name]
	if !ok {
		return 0, 0, 0, false
	}
	v, i, d := f.state.queues.counts(qs, nowMs)
	return v, i, d, true
}

// QueueNextReady returns when a receive on the queue may next find a
// message: nowMs or earlier when one is receivable now (false when the
// queue is empty or does not exist).
func (f *FSM) QueueNextReady(name string) (int64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	qs, ok := f.state.queues.queues[name]
	if !ok {
		return 0, false
	}
	if qs.groups == nil {
		k, ok := qs.ready.Min()
		return k.at, ok
	}
	var (
		at    int64
		found bool
	)
	for _, g := range qs.groups {
		if v := f.state.queues.msgs[g.ids[0]].VisibleMs; !found || v < at {
			at, found = v, true
		}
	}
	return at, found
}

// QueueSweepDue returns the queues holding a message whose retention ended
// by nowMs, and whether some deduplication window ended.
func (f *FSM) QueueSweepDue(nowMs int64) (queues []string, dedup bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for name, qs := range f.state.queues.queues {
		if k, ok := qs.expiry.Min(); ok && k.at <= nowMs {
			queues = append(queues, name)
		}
	}
	sort.Strings(queues)
	k, ok := f.state.queues.dedup.Min()
	return queues, ok && k.untilMs <= nowMs
}

// QueueStats returns how many messages and deduplication entries the state
// holds, and the messages' bytes.
func (f *FSM) QueueStats() (messages, dedup int, bytes int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.state.queues.msgs), f.state.queues.dedup.Len(), f.state.queues.bytes
}

// QueueBacklog returns how many messages of a queue are visible at nowMs,
// counting no further than limit (a poller's scaling needs no more), and
// false when there is no such queue.
func (f *FSM) QueueBacklog(name string, nowMs int64, limit int) (int, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	qs, ok := f.state.queues.queues[name]
	if !ok {
		return 0, false
	}
	n := 0
	qs.ready.Ascend(func(k msgKey) bool {
		if k.at > nowMs || n >= limit {
			return false
		}
		n++
		return true
	})
	return n, true
}
