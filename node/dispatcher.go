package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"nimbus/rpc"
	"nimbus/sandbox"
	"nimbus/scheduler"
)

// The async dispatcher: a leader subsystem (leadership.go starts it once
// leadership is established and stops it on revoke).
//
// Its loop is the one a sync invocation follows, acquire, run, give back,
// with the lease in Raft between acquire and run:
//
//  1. read the due events from the FSM (ready time passed: new, retried,
//     or leased by a dispatcher whose lease expired);
//  2. take a slot for each from the ledger, as a sync invocation does (the
//     same account limit and reserved concurrency); a function the ledger
//     throttles is skipped until one of the dispatcher's runs ends or 20 ms
//     pass, its events staying queued and due (no Raft write per refusal);
//  3. lease the granted events in Raft (one AsyncUpdate for the batch)
//     until now + the function's timeout + AsyncLeaseMargin; an event whose
//     lease cannot be committed gives its slot back;
//  4. run each leased event on its worker; the worker gives the slot back;
//  5. record the outcome in Raft: success finishes the event; a function
//     error or timeout is retried after AsyncRetryBase x attempt, up to the
//     function's MaximumRetryAttempts (default 2), then finishes as failed;
//     a throttle or system error is put back with a backoff from
//     AsyncBackoffMin doubling up to 5 min, not counted as a retry. An
//     event older than MaximumEventAgeInSeconds (default 6 h) finishes as
//     failed without running. A finish carries the destination's event, if
//     the function has one (destinations.go).
//
// If this server loses leadership mid-way, nothing more is written; the
// next leader finds the leased events in the FSM and runs them again once
// their leases expire: delivery is at least once.
//
// running (guarded by mu) holds the request ids this dispatcher is running,
// so that an event whose lease expired while it still runs is not started
// twice by the same dispatcher.
type dispatcher struct {
	n     *Node
	wake  chan struct{} // an event may have become due
	freed chan struct{} // one of this dispatcher's runs ended
	ops   *groupCommit[scheduler.AsyncOp]

	mu        sync.Mutex
	running   map[string]bool
	throttled map[string]time.Time // function -> when to try again

	wg sync.WaitGroup // runs in progress
}

const (
	maxBackoff    = 5 * time.Minute // of a throttle or system error's put-back
	dispatchBatch = 512             // due events read per round
)

func newDispatcher(n *Node) *dispatcher {
	return &dispatcher{
		n:     n,
		wake:  make(chan struct{}, 1),
		freed: make(chan struct{}, 1),
		ops: newGroupCommit(n, 1024, 1<<20,
			func(op scheduler.AsyncOp) int { return len(op.RequestID) + 24 },
			func(ops []scheduler.AsyncOp) scheduler.Command { return scheduler.AsyncUpdateCommand{Ops: ops} }),
		running:   map[string]bool{},
		throttled: map[string]time.Time{},
	}
}

// poke wakes the loop (an event became due).
func (d *dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) run(stop chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
		case <-d.n.stopping:
		}
		cancel()
	}()
	opsDone := make(chan struct{})
	go func() {
		defer close(opsDone)
		d.ops.run(ctx.Done())
	}()
	defer func() {
		cancel()
		d.wg.Wait()
		<-opsDone
	}()
	for {
		wait, blocked := d.round(ctx)
		// A round that could start nothing (every due event's function
		// throttled) waits for a slot to free or the recheck: a new event
		// (wake) cannot change that, and a round costs a scan.
		wake := d.wake
		if blocked {
			wake = nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-d.freed:
		case <-t.C:
		}
		t.Stop()
	}
}

// round dispatches what is due now and returns how long to sleep, and
// whether it was blocked: events were due but none could start.
func (d *dispatcher) round(ctx context.Context) (time.Duration, bool) {
	n := d.n
	now := time.Now()
	due := n.fsm.AsyncDue(now.UnixMilli(), dispatchBatch)
	var (
		leases  []scheduler.AsyncOp
		started []leased
		ended   []scheduler.AsyncOp
		soonest = time.Second
	)
	skip := map[string]bool{} // functions throttled in this round
	for _, e := range due {
		if skip[e.Function] {
			continue
		}
		d.mu.Lock()
		busy := d.running[e.RequestID]
		until, isThrottled := d.throttled[e.Function]
		d.mu.Unlock()
		if busy {
			continue
		}
		if isThrottled && now.Before(until) {
			skip[e.Function] = true
			soonest = min(soonest, until.Sub(now))
			continue
		}
		fn, ok := n.fsm.Function(e.Function)
		if ok && e.Qualifier != "" { // a version or alias (versions.go), picked per run
			v, err := n.resolve(e.Function, e.Qualifier, true)
			fn, ok = v, err == nil
		}
		if !ok {
			n.log.Warn("async event dropped: its function (or the version or alias it was sent to) was deleted", "request_id", e.RequestID, "function", e.Function, "qualifier", e.Qualifier)
			ended = append(ended, finishOp(e))
			continue
		}
		cfg, _ := n.fsm.EventConfigFor(fn.Name, e.Qualifier)
		maxAge := time.Duration(cfg.MaxAgeSec()) * time.Second
		if age := now.Sub(time.UnixMilli(e.AcceptedMs)); age > maxAge {
			n.log.Warn("async event failed: too old", "request_id", e.RequestID, "function", e.Function,
				"condition", conditionEventAgeExceeded, "age", age.Round(time.Millisecond), "max_age", maxAge, "attempts", e.Attempts)
			op := finishOp(e)
			n.finishWith(&op, e, conditionEventAgeExceeded, e.Attempts, nil)
			ended = append(ended, op)
			continue
		}
		reserved, has := n.fsm.Reserved(fn.Name)
		if has && reserved == 0 {
			n.log.Warn("async event failed: reserved concurrency is 0", "request_id", e.RequestID, "function", e.Function,
				"condition", conditionRetriesExhausted)
			op := finishOp(e)
			n.finishWith(&op, e, conditionRetriesExhausted, e.Attempts, nil)
			ended = append(ended, op)
			continue
		}
		g, err := n.ledger.Grant(scheduler.GrantRequest{
			Function: fn.Name, Key: sandbox.Key(fn), MemoryMB: fn.MemoryMB, Reserved: reserved, HasReserved: has,
		}, n.fsm.ReservedTotal())
		if errors.Is(err, scheduler.ErrLedgerRecovering) {
			soonest = 20 * time.Millisecond
			break
		}
		if err != nil {
			d.throttle(fn.Name, now)
			skip[fn.Name] = true
			soonest = min(soonest, throttleRecheck)
			continue
		}
		d.mu.Lock()
		delete(d.throttled, fn.Name)
		d.mu.Unlock()
		lease := now.Add(time.Duration(fn.TimeoutSec)*time.Second + n.cfg.AsyncLeaseMargin)
		leases = append(leases, scheduler.AsyncOp{RequestID: e.RequestID, Kind: scheduler.AsyncLease, IfGen: e.Gen, UntilMs: lease.UnixMilli()})
		started = append(started, leased{event: e, fn: fn, grant: g})
	}
	if len(ended) > 0 {
		d.ops.submitAll(ctx, ended)
	}
	if len(leases) > 0 {
		for i, r := range d.ops.submitAll(ctx, leases) {
			l := started[i]
			if r.err != nil {
				n.ledger.Release(l.grant.Worker, l.grant.SlotID)
				continue
			}
			l.gen = r.index
			d.start(ctx, l)
		}
	}
	blocked := len(due) > 0 && len(leases) == 0 && len(ended) == 0
	if blocked {
		return soonest, true
	}
	if len(due) == dispatchBatch {
		return 0, false
	}
	if next, ok := n.fsm.AsyncNextReady(); ok {
		soonest = min(soonest, max(time.Until(time.UnixMilli(next)), 0))
	}
	return soonest, false
}

// throttle skips a function whose grant the ledger refused, until one of
// this dispatcher's runs ends (which pokes the loop) or throttleRecheck
// passes (a slot freed by a sync invocation).
func (d *dispatcher) throttle(fn string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.throttled[fn] = now.Add(throttleRecheck)
}

const throttleRecheck = 20 * time.Millisecond

// leased is an event this dispatcher holds a slot and a lease for.
type leased struct {
	event *scheduler.AsyncEvent
	fn    *rpc.FunctionConfig
	grant scheduler.Grant
	gen   uint64 // the lease's entry
}

func finishOp(e *scheduler.AsyncEvent) scheduler.AsyncOp {
	return scheduler.AsyncOp{RequestID: e.RequestID, Kind: scheduler.AsyncFinish, IfGen: e.Gen}
}

// start runs a leased event in the background and records its outcome.
func (d *dispatcher) start(ctx context.Context, l leased) {
	d.n.metrics.fns.get(l.event.Function).asyncAge.observe(time.Since(time.UnixMilli(l.event.AcceptedMs)))
	d.mu.Lock()
	d.running[l.event.RequestID] = true
	d.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer func() {
			d.mu.Lock()
			delete(d.running, l.event.RequestID)
			delete(d.throttled, l.fn.Name) // its slot is free again
			d.mu.Unlock()
			select {
			case d.freed <- struct{}{}:
			default:
			}
		}()
		// Counted as a synchronous invocation is (Lambda's Invocations and
		// Errors include the asynchronous ones).
		fc := d.n.metrics.fns.get(l.fn.Name)
		fc.running(1)
		resp, err := d.runOne(ctx, l)
		fc.running(-1)
		if err == nil {
			d.n.metrics.countInvocation(l.fn.Name, l.event.Qualifier, resp)
		}
		if ctx.Err() != nil {
			return // not leading any more: the next leader runs it again
		}
		op := d.outcome(l, resp, err)
		if r := d.ops.submit(ctx, op); r.err != nil {
			d.n.log.Warn("async outcome not recorded; the event runs again once its lease expires",
				"request_id", l.event.RequestID, "function", l.fn.Name, "err", r.err)
		}
	}()
}

func (d *dispatcher) runOne(ctx context.Context, l leased) (*rpc.InvokeResponse, error) {
	n := d.n
	run := &rpc.RunRequest{SlotID: l.grant.SlotID, Function: l.fn, Payload: l.event.Payload, RequestID: l.event.RequestID, Qualifier: l.event.Qualifier}
	if l.grant.Worker == n.name {
		return n.workerRun(ctx, run)
	}
	return n.runOn(ctx, &rpc.AcquireResponse{SlotID: l.grant.SlotID, Worker: l.grant.Worker, WorkerAddr: l.grant.WorkerAddr, Function: l.fn}, run, nil)
}

// outcome turns a run's result into the op that records it.
func (d *dispatcher) outcome(l leased, resp *rpc.InvokeResponse, err error) scheduler.AsyncOp {
	n, e := d.n, l.event
	op := scheduler.AsyncOp{RequestID: e.RequestID, IfGen: l.gen}
	cfg, _ := n.fsm.EventConfigFor(e.Function, e.Qualifier)
	switch {
	case err == nil && resp.FunctionError == "":
		op.Kind = scheduler.AsyncFinish
		n.finishWith(&op, e, conditionSuccess, e.Attempts+1, resp)
	case err == nil:
		attempts := e.Attempts + 1
		if attempts > cfg.Retries() {
			n.log.Warn("async event failed", "request_id", e.RequestID, "function", e.Function,
				"condition", conditionRetriesExhausted, "attempts", attempts, "error", string(resp.Payload))
			op.Kind = scheduler.AsyncFinish
			n.finishWith(&op, e, conditionRetriesExhausted, attempts, resp)
			break
		}
		wait := time.Duration(attempts) * n.cfg.AsyncRetryBase
		n.log.Info("async event to be retried", "request_id", e.RequestID, "function", e.Function,
			"attempts", attempts, "after", wait, "error", string(resp.Payload))
		op.Kind = scheduler.AsyncRetry
		op.Attempts, op.Backoffs = attempts, e.Backoffs
		op.UntilMs = time.Now().Add(wait).UnixMilli()
	default:
		// A throttle or a system error (the worker died, could not be
		// reached, could not start the sandbox): back off, not a retry.
		wait := n.cfg.AsyncBackoffMin << min(e.Backoffs, 20)
		wait = min(wait, maxBackoff)
		n.log.Info("async event put back", "request_id", e.RequestID, "function", e.Function, "backoff", wait, "err", err)
		op.Kind = scheduler.AsyncRetry
		op.Attempts, op.Backoffs = e.Attempts, e.Backoffs+1
		op.UntilMs = time.Now().Add(wait).UnixMilli()
	}
	return op
}
