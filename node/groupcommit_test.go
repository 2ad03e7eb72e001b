package node

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// gatedSends is a group commit of queue sends over a dev node's real Raft
// whose first `gated` entries wait, once built, until open is closed: the
// test holds every commit slot busy while it queues more items.
func gatedSends(t *testing.T, nd *Node, gated int) (g *groupCommit[scheduler.QueueMessage], built chan int, open chan struct{}) {
	t.Helper()
	built = make(chan int, 64)
	open = make(chan struct{})
	var mu sync.Mutex
	calls := 0
	g = newGroupCommit(nd, 1024, 4<<20,
		func(m scheduler.QueueMessage) int { return len(m.Body) + 64 },
		func(ms []scheduler.QueueMessage) scheduler.Command {
			mu.Lock()
			calls++
			wait := calls <= gated
			mu.Unlock()
			built <- len(ms)
			if wait {
				<-open
			}
			return scheduler.QueueSendCommand{Messages: ms}
		})
	return g, built, open
}

func sendsOf(queue string, n int) []scheduler.QueueMessage {
	now := time.Now().UnixMilli()
	ms := make([]scheduler.QueueMessage, n)
	for i := range ms {
		ms[i] = scheduler.QueueMessage{ID: newRequestID(), Queue: queue, Body: []byte(`{"n":1}`), SentMs: now, VisibleMs: now}
	}
	return ms
}

// waitQueued waits until the group commit's queue holds n items.
func waitQueued[T any](t *testing.T, g *groupCommit[T], n int) {
	t.Helper()
	waitLong(t, 10*time.Second, "items queued in the group commit", func() bool { return len(g.in) >= n })
}

// TestGroupCommitQueuedItemsShareNextEntry: items that arrive while every
// commit slot is busy wait for a slot and then all go in one entry (the
// batch is formed once a slot is free, not before), each answered with
// its own result from that entry.
func TestGroupCommitQueuedItemsShareNextEntry(t *testing.T) {
	t.Parallel()
	nd, cl := startNode(t, filepath.Join(t.TempDir(), "data"))
	mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "gc"})
	g, built, open := gatedSends(t, nd, groupCommitInFlight)
	stop := make(chan struct{})
	go g.run(stop)
	defer close(stop)
	ctx := ctxT(t)

	// Fill every slot with a one-item entry held at its build.
	var first sync.WaitGroup
	for i := 0; i < groupCommitInFlight; i++ {
		first.Add(1)
		go func() {
			defer first.Done()
			if r := g.submit(ctx, sendsOf("gc", 1)[0]); r.err != nil {
				t.Errorf("gated send: %v", r.err)
			}
		}()
		if n := <-built; n != 1 {
			t.Fatalf("gated entry %d holds %d items, want 1", i, n)
		}
	}
	// 50 more, queued while no slot is free.
	const queued = 50
	results := make(chan []groupResult, 1)
	go func() { results <- g.submitAll(ctx, sendsOf("gc", queued)) }()
	waitQueued(t, g, queued)
	close(open)
	first.Wait()
	if n := <-built; n != queued {
		t.Fatalf("the next entry holds %d items, want all %d queued", n, queued)
	}
	rs := <-results
	sent := sendsOfIDs(rs)
	index := rs[0].index
	for i, r := range rs {
		if r.err != nil {
			t.Fatalf("item %d: %v", i, r.err)
		}
		if r.index != index {
			t.Fatalf("item %d committed in entry %d, item 0 in %d: the queued items were split", i, r.index, index)
		}
		if sent[i] == "" {
			t.Fatalf("item %d answered %#v, want its message id", i, r.out)
		}
	}
	if n, _, _ := nd.fsm.QueueStats(); n != groupCommitInFlight+queued {
		t.Fatalf("the queue holds %d messages, want %d", n, groupCommitInFlight+queued)
	}
}

// TestGroupCommitStopMidBatch: leadership ends (stop closes, as
// revokeLeadership does) while entries are committing and more items are
// queued. The committing entries answer with their real outcome; every
// queued item fails with ServiceException and was never proposed: the
// FSM holds exactly the items answered as committed.
func TestGroupCommitStopMidBatch(t *testing.T) {
	t.Parallel()
	nd, cl := startNode(t, filepath.Join(t.TempDir(), "data"))
	mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "gc"})
	g, built, open := gatedSends(t, nd, groupCommitInFlight)
	stop := make(chan struct{})
	ran := make(chan struct{})
	go func() { defer close(ran); g.run(stop) }()
	ctx := ctxT(t)

	var mu sync.Mutex
	var all []groupResult
	var wg sync.WaitGroup
	for i := 0; i < groupCommitInFlight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := g.submit(ctx, sendsOf("gc", 1)[0])
			mu.Lock()
			all = append(all, r)
			mu.Unlock()
		}()
		<-built
	}
	const queued = 50
	wg.Add(1)
	go func() {
		defer wg.Done()
		rs := g.submitAll(ctx, sendsOf("gc", queued))
		mu.Lock()
		all = append(all, rs...)
		mu.Unlock()
	}()
	waitQueued(t, g, queued)
	close(stop)
	close(open)
	wg.Wait()
	<-ran
	committed, refused := 0, 0
	for _, r := range all {
		switch {
		case r.err == nil:
			committed++
		case errors.Is(r.err, errNotLeading):
			refused++
		default:
			t.Errorf("unexpected error: %v", r.err)
		}
	}
	if committed != groupCommitInFlight || refused != queued {
		t.Fatalf("%d committed, %d refused; want the %d in flight committed and the %d queued refused", committed, refused, groupCommitInFlight, queued)
	}
	if n, _, _ := nd.fsm.QueueStats(); n != committed {
		t.Fatalf("the queue holds %d messages, %d were answered as committed", n, committed)
	}
	// After stop nothing is accepted.
	if r := g.submit(context.Background(), sendsOf("gc", 1)[0]); !errors.Is(r.err, errNotLeading) {
		t.Fatalf("submit after stop: %v, want errNotLeading", r.err)
	}
}

func sendsOfIDs(rs []groupResult) []string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		out, _ := r.out.(scheduler.QueueSendOutput)
		ids[i] = out.MessageID
	}
	return ids
}
