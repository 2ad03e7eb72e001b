package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// groupCommit gathers items proposed concurrently into shared Raft
// entries: while one entry is being committed, the items that arrive queue
// up and go together in the next, so throughput is not one fsync per item.
// It is a leader subsystem: run until stop closes; after that submit fails
// and items still queued fail with ServiceException (never reported as
// committed).
//
// Up to groupCommitInFlight entries are committing at once (Raft pipelines
// them); each holds at most maxItems items and about maxBytes bytes. An
// entry's batch is taken from the queue only once a slot is free, so the
// items that queued while every slot was busy go together. Raft's cost
// here is per entry rather than per byte (each entry is its own trip
// through the leader's log loop, the followers and the FSM), so more
// entries in flight made them smaller and slower, not faster: with 16
// slots instead of 4, entries of 4 accepts took 31-45 ms against 12 in
// 27 ms, for the same throughput (docs/BENCHMARKS.md, async accept).
type groupCommit[T any] struct {
	n        *Node
	build    func([]T) scheduler.Command
	size     func(T) int
	maxItems int
	maxBytes int

	in   chan groupItem[T]
	done chan struct{} // closed when run has returned
}

const groupCommitInFlight = 4

// groupItemOverhead is about what an item's encoding adds to its size (the
// field names and the fields size does not count), for the entry's buffer.
const groupItemOverhead = 64

type groupItem[T any] struct {
	item  T
	reply chan groupResult
}

// groupResult is one item's outcome: its own error (nil when applied) and
// the index of the entry that carried it.
type groupResult struct {
	err   error
	index uint64
	// out is the item's ApplyResult.Outputs value, for commands that
	// answer with data (queue sends and receives); nil otherwise.
	out any
}

func newGroupCommit[T any](n *Node, maxItems, maxBytes int, size func(T) int, build func([]T) scheduler.Command) *groupCommit[T] {
	return &groupCommit[T]{
		n: n, build: build, size: size, maxItems: maxItems, maxBytes: maxBytes,
		in:   make(chan groupItem[T], 4*maxItems),
		done: make(chan struct{}),
	}
}

var errNotLeading = rpc.Errorf(rpc.CodeService, "this server no longer leads: the write was not committed")

// submitAll queues items and waits for each one's result.
func (g *groupCommit[T]) submitAll(ctx context.Context, items []T) []groupResult {
	replies := make([]chan groupResult, len(items))
	out := make([]groupResult, len(items))
	for i, it := range items {
		replies[i] = make(chan groupResult, 1)
		select {
		case g.in <- groupItem[T]{item: it, reply: replies[i]}:
		case <-g.done:
			out[i] = groupResult{err: errNotLeading}
			replies[i] = nil
		case <-ctx.Done():
			out[i] = groupResult{err: ctx.Err()}
			replies[i] = nil
		}
	}
	for i, r := range replies {
		if r == nil {
			continue
		}
		select {
		case out[i] = <-r:
		case <-g.done:
			// Commits in flight ended before done closed, and replied.
			select {
			case out[i] = <-r:
			default:
				out[i] = groupResult{err: errNotLeading}
			}
		case <-ctx.Done():
			// It may still commit: the caller is told it failed, as a
			// caller whose connection broke would be.
			out[i] = groupResult{err: rpc.Errorf(rpc.CodeService, "gave up waiting for the commit: %v", ctx.Err())}
		}
	}
	return out
}

func (g *groupCommit[T]) submit(ctx context.Context, item T) groupResult {
	return g.submitAll(ctx, []T{item})[0]
}

// run commits batches until stop closes.
func (g *groupCommit[T]) run(stop <-chan struct{}) {
	defer func() {
		close(g.done)
		// Fail what is still queued: nothing more is proposed.
		for {
			select {
			case it := <-g.in:
				it.reply <- groupResult{err: errNotLeading}
			default:
				return
			}
		}
	}()
	runBatches(g.in, stop, groupCommitInFlight, g.maxItems, g.maxBytes,
		func(it groupItem[T]) int { return g.size(it.item) }, g.commit)
}

// runBatches takes what arrives on in in batches of up to maxItems items
// or maxBytes (by size), at most inFlight batches handled at once, each by
// handle in a goroutine of its own, until stop is closed; it returns once
// every batch it started has been handled.
func runBatches[I any](in <-chan I, stop <-chan struct{}, inFlight, maxItems, maxBytes int, size func(I) int, handle func([]I)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, inFlight)
	for {
		// A slot first, then the batch: items that arrive while every
		// slot is busy wait in the queue and all go in the next batch,
		// instead of a batch formed early (when the queue was short)
		// waiting for a slot with the later items behind it.
		select {
		case sem <- struct{}{}:
		case <-stop:
			return
		}
		select {
		case <-stop: // a slot freed after the end: start nothing more
			return
		default:
		}
		var batch []I
		select {
		case <-stop:
			return
		case it := <-in:
			batch = append(batch, it)
		}
		bytes := size(batch[0])
	drain:
		for len(batch) < maxItems && bytes < maxBytes {
			select {
			case it := <-in:
				batch = append(batch, it)
				bytes += size(it)
			default:
				break drain
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			handle(batch)
		}()
	}
}

func (g *groupCommit[T]) commit(batch []groupItem[T]) {
	items := make([]T, len(batch))
	hint := 0
	for i, it := range batch {
		items[i] = it.item
		hint += g.size(it.item) + groupItemOverhead
	}
	cmd := g.build(items)
	fail := func(err error) {
		for _, it := range batch {
			it.reply <- groupResult{err: err}
		}
	}
	if err := g.n.serversSupport(cmd.CommandType()); err != nil {
		fail(err)
		return
	}
	data, err := scheduler.EncodeCommandSized(cmd, hint)
	if err != nil {
		fail(rpc.Errorf(rpc.CodeService, "%v", err))
		return
	}
	start := time.Now()
	f := g.n.raft.Apply(data, raftApplyTimeout)
	err = f.Error()
	g.n.metrics.raftApply.Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			fail(rpc.Errorf(rpc.CodeService, "no leader to accept the write: %v", err))
		} else {
			fail(rpc.Errorf(rpc.CodeService, "raft: %v", err))
		}
		return
	}
	res, ok := f.Response().(scheduler.ApplyResult)
	switch {
	case !ok:
		fail(rpc.Errorf(rpc.CodeService, "unexpected apply result %T", f.Response()))
	case res.Err != nil:
		fail(res.Err)
	case len(res.Items) != len(batch):
		fail(rpc.Errorf(rpc.CodeService, "apply answered %d items for %d", len(res.Items), len(batch)))
	default:
		for i, it := range batch {
			r := groupResult{err: res.Items[i], index: f.Index()}
			if len(res.Outputs) == len(batch) {
				r.out = res.Outputs[i]
			}
			it.reply <- r
		}
	}
}
