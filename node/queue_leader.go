package node

import (
	"context"
	"crypto/rand"
	"sync"
	"time"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// queueLeader is the leader's queue subsystem, present while this server's
// leadership is established (leadership.go starts and stops it):
//
//   - sends and ops are the group commits of QueueSend and QueueOps
//     entries: concurrent sends, receives, deletes and visibility changes
//     share entries, so none costs an fsync of its own;
//   - waiters are the long-polling receives, by queue: the FSM's
//     OnQueueReady closes a queue's channel when a message may have become
//     receivable, and each waiter then tries again;
//   - the sweeper removes, once a second, messages whose retention ended
//     and FIFO deduplication ids whose 5 minutes passed.
//
// mu guards waiters; the rest is set at creation and not changed.
type queueLeader struct {
	n     *Node
	sends *groupCommit[scheduler.QueueMessage]
	ops   *groupCommit[scheduler.QueueOp]
	stop  chan struct{}

	mu      sync.Mutex
	waiters map[string]chan struct{}
}

const (
	queueBatchItems = 1024
	queueBatchBytes = 4 << 20
	sweepInterval   = time.Second
)

func newQueueLeader(n *Node, stop chan struct{}) *queueLeader {
	return &queueLeader{
		n: n, stop: stop,
		sends: newGroupCommit(n, queueBatchItems, queueBatchBytes,
			func(m scheduler.QueueMessage) int { return len(m.Body) + len(m.ID) + len(m.Queue) + 64 },
			func(ms []scheduler.QueueMessage) scheduler.Command { return scheduler.QueueSendCommand{Messages: ms} }),
		ops: newGroupCommit(n, queueBatchItems, 1<<20,
			func(op scheduler.QueueOp) int { return len(op.Queue) + len(op.MessageID) + 48 },
			func(ops []scheduler.QueueOp) scheduler.Command { return scheduler.QueueOpsCommand{Ops: ops} }),
		waiters: map[string]chan struct{}{},
	}
}

// run runs the group commits and the sweeper until stop closes.
func (q *queueLeader) run() {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); q.sends.run(q.stop) }()
	go func() { defer wg.Done(); q.ops.run(q.stop) }()
	t := time.NewTicker(sweepInterval)
	defer func() {
		t.Stop()
		wg.Wait()
	}()
	for {
		select {
		case <-q.stop:
			return
		case <-q.n.stopping:
			return
		case <-t.C:
			q.sweep()
		}
	}
}

func (q *queueLeader) sweep() {
	now := time.Now().UnixMilli()
	queues, dedup := q.n.fsm.QueueSweepDue(now)
	var ops []scheduler.QueueOp
	for _, name := range queues {
		ops = append(ops, scheduler.QueueOp{Kind: scheduler.QueueSweep, Queue: name, NowMs: now})
	}
	if dedup {
		ops = append(ops, scheduler.QueueOp{Kind: scheduler.QueueSweep, NowMs: now})
	}
	if len(ops) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), raftApplyTimeout)
	defer cancel()
	for _, r := range q.ops.submitAll(ctx, ops) {
		if r.err != nil {
			q.n.log.Warn("queue sweep not committed", "err", r.err)
			return
		}
	}
}

// wakeCh returns the channel closed when queue may next have a message.
func (q *queueLeader) wakeCh(queue string) chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	ch := q.waiters[queue]
	if ch == nil {
		ch = make(chan struct{})
		q.waiters[queue] = ch
	}
	return ch
}

// ready wakes the waiters of queue.
func (q *queueLeader) ready(queue string) {
	q.mu.Lock()
	ch := q.waiters[queue]
	delete(q.waiters, queue)
	q.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// queueReady is the FSM's OnQueueReady.
func (n *Node) queueReady(queue string) {
	if q := n.lead.queues.Load(); q != nil {
		q.ready(queue)
	}
}

// receive receives up to maxN messages (at most maxBytes of bodies, when
// not 0), invisible for vis, waiting up to wait for one. It proposes a
// receive only when the FSM shows a message receivable now, so an empty
// poll costs no Raft entry.
func (q *queueLeader) receive(ctx context.Context, queue string, maxN, maxBytes int, wait, vis time.Duration) ([]*scheduler.QueueMessage, error) {
	deadline := time.Now().Add(wait)
	for {
		if _, ok := q.n.fsm.Queue(queue); !ok {
			return nil, rpc.Errorf(rpc.CodeQueueDoesNotExist, "The specified queue %s does not exist.", queue)
		}
		// Taken before the FSM is read, so a send applied after the read
		// still wakes this wait. (Waiters exist only for queues that did.)
		ch := q.wakeCh(queue)
		now := time.Now()
		next, any := q.n.fsm.QueueNextReady(queue)
		if any && next <= now.UnixMilli() {
			nonce := make([]byte, 16)
			_, _ = rand.Read(nonce)
			r := q.ops.submit(ctx, scheduler.QueueOp{
				Kind: scheduler.QueueReceive, Queue: queue, NowMs: now.UnixMilli(), Max: maxN, MaxBytes: maxBytes,
				VisibleUntilMs: now.Add(vis).UnixMilli(), Receipt: nonce,
			})
			if r.err != nil {
				return nil, rpc.AsError(r.err)
			}
			if msgs, _ := r.out.([]*scheduler.QueueMessage); len(msgs) > 0 {
				return msgs, nil
			}
			continue // another receive took them, or they expired: look again
		}
		if !now.Before(deadline) {
			return nil, nil
		}
		sleep := deadline.Sub(now)
		if any {
			sleep = min(sleep, time.UnixMilli(next).Sub(now))
		}
		t := time.NewTimer(max(sleep, time.Millisecond))
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-q.stop:
			t.Stop()
			return nil, errNotLeading
		}
		t.Stop()
	}
}
