package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// Queue trigger pollers: a leader subsystem (leadership.go starts it after
// the barrier and stops it on revoke).
//
// pollers follows the stored triggers: one poller per enabled trigger,
// restarted when its trigger changes, stopped when it is disabled or
// deleted. A poller runs workers, each a loop of
//
//	receive a batch --> invoke the function synchronously --+--> success: delete the batch
//	(long poll; with a    (the sync path: a ledger slot,     |    (with ReportBatchItemFailures,
//	 window, gather up     reserved concurrency, a worker)   |     all but the listed items)
//	 to BatchSize)                                           +--> function error or invalid answer:
//	                                                         |    leave it; it reappears after the
//	                                                         |    queue's visibility timeout
//	                                                         +--> throttled: make it visible again
//	                                                              now and back off
//
// The number of workers follows the backlog: ceil(visible / BatchSize),
// at least 1, at most the trigger's MaxConcurrency (1000 when unset) and
// the function's reserved concurrency, added scaleStep per 100 ms; a
// worker whose long poll comes back empty, or whose invocation is
// throttled, leaves while others remain (a throttle also holds the
// scaling for a second). On a FIFO queue the queue itself keeps
// one batch per message group in flight.
//
// Ownership: the run goroutine alone touches running; each poller's
// fields are set before it starts.
type pollers struct {
	n      *Node
	queues *queueLeader
	stop   chan struct{}
	wake   chan struct{}

	running map[string]*poller
}

func newPollers(n *Node, queues *queueLeader, stop chan struct{}) *pollers {
	return &pollers{n: n, queues: queues, stop: stop, wake: make(chan struct{}, 1), running: map[string]*poller{}}
}

func (p *pollers) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pollers) run() {
	t := time.NewTicker(time.Second)
	defer func() {
		t.Stop()
		for _, pl := range p.running {
			pl.cancel()
		}
		for _, pl := range p.running {
			<-pl.done
		}
	}()
	for {
		p.sync()
		select {
		case <-p.stop:
			return
		case <-p.n.stopping:
			return
		case <-p.wake:
		case <-t.C:
		}
	}
}

// sync starts and stops pollers to match the stored triggers.
func (p *pollers) sync() {
	want := map[string]*rpc.Trigger{}
	for _, t := range p.n.fsm.Triggers("") {
		if t.Enabled {
			want[t.UUID] = t
		}
	}
	for id, pl := range p.running {
		if t, ok := want[id]; !ok || t != pl.t {
			pl.cancel()
			<-pl.done
			delete(p.running, id)
		}
	}
	for id, t := range want {
		if _, ok := p.running[id]; !ok {
			pl := newPoller(p, t)
			p.running[id] = pl
			go pl.run()
		}
	}
}

// poller runs one trigger's workers.
type poller struct {
	p      *pollers
	t      *rpc.Trigger // immutable
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	workers atomic.Int32
	exited  chan struct{} // a worker left
	// holdUntil (Unix ns): no worker is added before it (set on a
	// throttle, so the poller backs off instead of adding callers the
	// ledger refuses).
	holdUntil atomic.Int64
	deletes   sync.WaitGroup // deletes being committed
}

func newPoller(p *pollers, t *rpc.Trigger) *poller {
	ctx, cancel := context.WithCancel(context.Background())
	return &poller{p: p, t: t, ctx: ctx, cancel: cancel, done: make(chan struct{}), exited: make(chan struct{}, 1)}
}

// triggerPollWait is how long a worker's receive long-polls; scaleStep is
// how many workers a poller adds per 100 ms at most.
const (
	triggerPollWait = 2 * time.Second
	scaleStep       = 4
)

func (pl *poller) run() {
	defer close(pl.done)
	go func() {
		select {
		case <-pl.p.stop:
		case <-pl.p.n.stopping:
		case <-pl.ctx.Done():
		}
		pl.cancel()
	}()
	var wg sync.WaitGroup
	defer pl.deletes.Wait()
	defer wg.Wait()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		want := pl.wanted()
		if time.Now().UnixNano() < pl.holdUntil.Load() {
			want = 0
		}
		// Scale up a few workers per tick, as the backlog stays.
		for added := 0; int(pl.workers.Load()) < want && added < scaleStep; added++ {
			pl.workers.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				pl.work()
			}()
		}
		select {
		case <-pl.ctx.Done():
			return
		case <-pl.exited:
		case <-t.C:
		}
	}
}

// wanted is how many workers the backlog calls for (0 when the function
// or the queue is missing, or reserved concurrency is 0).
func (pl *poller) wanted() int {
	n, t := pl.p.n, pl.t
	if _, ok := n.fsm.Function(t.Function); !ok {
		return 0
	}
	limit := rpc.MaxTriggerConcurrency
	if t.MaxConcurrency > 0 {
		limit = t.MaxConcurrency
	}
	if r, has := n.fsm.Reserved(t.Function); has {
		limit = min(limit, r)
	}
	if limit <= 0 {
		return 0
	}
	visible, ok := n.fsm.QueueBacklog(t.Queue, time.Now().UnixMilli(), limit*t.BatchSize)
	if !ok {
		return 0
	}
	return min(max((visible+t.BatchSize-1)/t.BatchSize, 1), limit)
}

// work is one worker's loop; it leaves when a poll comes back empty while
// other workers remain, or when the poller stops.
func (pl *poller) work() {
	// A worker whose batch came back full receives its next batch while
	// the function runs (prefetch), so a receive's commit overlaps the
	// invocation instead of following it.
	type gathered struct {
		batch []*scheduler.QueueMessage
		err   error
	}
	var prefetch chan gathered
	defer func() {
		if prefetch != nil {
			if g := <-prefetch; len(g.batch) > 0 {
				pl.release(context.Background(), g.batch, 0) // not run: visible again now
			}
		}
		pl.workers.Add(-1)
		select {
		case pl.exited <- struct{}{}:
		default:
		}
	}()
	leave := func() bool {
		w := pl.workers.Load()
		if w > 1 && pl.workers.CompareAndSwap(w, w-1) {
			pl.workers.Add(1) // the deferred decrement
			return true
		}
		return false
	}
	for pl.ctx.Err() == nil {
		var g gathered
		if prefetch != nil {
			g = <-prefetch
			prefetch = nil
		} else {
			g.batch, g.err = pl.gather()
		}
		if g.err != nil {
			if pl.ctx.Err() == nil {
				pl.p.n.log.Debug("queue trigger receive failed", "uuid", pl.t.UUID, "queue", pl.t.Queue, "err", g.err)
				sleepCtx(pl.ctx, time.Second)
			}
			continue
		}
		if len(g.batch) == 0 {
			if leave() {
				return
			}
			continue
		}
		if len(g.batch) >= pl.t.BatchSize && pl.t.BatchWindowSec == 0 {
			prefetch = make(chan gathered, 1)
			go func(ch chan gathered) {
				var next gathered
				next.batch, next.err = pl.gather()
				ch <- next
			}(prefetch)
		}
		if pl.process(g.batch) == settleThrottled {
			pl.holdUntil.Store(time.Now().Add(time.Second).UnixNano())
			if leave() {
				return
			}
		}
	}
}

// settlement is how a batch ended.
type settlement int

const (
	settleDone settlement = iota
	settleThrottled
)

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// recordOverhead estimates a record's bytes in the event beside its body.
const recordOverhead = 900

// gather receives one batch: up to BatchSize messages and
// MaxTriggerBatchBytes of event, waiting up to the batch window for it to
// fill (without a window, what one receive returns).
func (pl *poller) gather() ([]*scheduler.QueueMessage, error) {
	n, t := pl.p.n, pl.t
	q, ok := n.fsm.Queue(t.Queue)
	if !ok {
		sleepCtx(pl.ctx, time.Second)
		return nil, nil
	}
	vis := time.Duration(q.VisibilitySec) * time.Second
	window := time.Duration(t.BatchWindowSec) * time.Second
	deadline := time.Now().Add(window)
	var (
		batch []*scheduler.QueueMessage
		size  int
	)
	for {
		wait := triggerPollWait
		if window > 0 {
			if len(batch) > 0 {
				wait = max(time.Until(deadline), 0)
			} else {
				deadline = time.Now().Add(window) // the window starts with the first message
			}
		}
		budget := rpc.MaxTriggerBatchBytes - size - recordOverhead*(t.BatchSize-len(batch))
		if budget <= 0 && len(batch) > 0 {
			return batch, nil
		}
		got, err := pl.p.queues.receive(pl.ctx, t.Queue, min(t.BatchSize-len(batch), 4096), max(budget, 1), wait, vis)
		if err != nil {
			if len(batch) > 0 {
				return batch, nil
			}
			return nil, err
		}
		for _, m := range got {
			size += len(m.Body) + recordOverhead
		}
		batch = append(batch, got...)
		if len(batch) >= t.BatchSize || window == 0 || len(batch) > 0 && !time.Now().Before(deadline) || len(got) == 0 && len(batch) > 0 {
			return batch, nil
		}
		if len(batch) == 0 && len(got) == 0 {
			return nil, nil
		}
	}
}

// sqsRecord is one record of the event, as aws-lambda-go's
// events.SQSMessage names its fields.
type sqsRecord struct {
	MessageID         string                  `json:"messageId"`
	ReceiptHandle     string                  `json:"receiptHandle"`
	Body              string                  `json:"body"`
	Attributes        map[string]string       `json:"attributes"`
	MessageAttributes map[string]sqsAttribute `json:"messageAttributes"`
	MD5OfBody         string                  `json:"md5OfBody"`
	EventSource       string                  `json:"eventSource"`
	EventSourceARN    string                  `json:"eventSourceARN"`
	AWSRegion         string                  `json:"awsRegion"`
}

type sqsAttribute struct {
	StringValue      string   `json:"stringValue"`
	StringListValues []string `json:"stringListValues"`
	BinaryListValues []string `json:"binaryListValues"`
	DataType         string   `json:"dataType"`
}

type sqsEvent struct {
	Records []sqsRecord `json:"Records"`
}

func sqsEventOf(arns rpc.ARNScope, queue string, batch []*scheduler.QueueMessage) ([]byte, error) {
	ev := sqsEvent{Records: make([]sqsRecord, len(batch))}
	arn := arns.Queue(queue)
	for i, m := range batch {
		w := wireMessage(m)
		r := sqsRecord{MessageID: w.MessageID, ReceiptHandle: w.ReceiptHandle, Body: w.Body, Attributes: w.Attributes,
			MessageAttributes: map[string]sqsAttribute{}, MD5OfBody: w.MD5OfBody,
			EventSource: "aws:sqs", EventSourceARN: arn, AWSRegion: arns.AWSRegion()}
		for k, a := range w.MessageAttributes {
			r.MessageAttributes[k] = sqsAttribute{StringValue: a.StringValue, StringListValues: []string{}, BinaryListValues: []string{}, DataType: a.DataType}
		}
		ev.Records[i] = r
	}
	return json.Marshal(ev)
}

// batchFailures reads a ReportBatchItemFailures answer: the ids to keep,
// or ok false when the answer is invalid (then the whole batch fails).
// An empty or null answer, or an empty list, means every item succeeded.
func batchFailures(payload []byte, batch []*scheduler.QueueMessage) (map[string]bool, bool) {
	payload = bytes.TrimSpace(payload)
	if len(payload) == 0 || string(payload) == "null" || string(payload) == "{}" {
		return nil, true
	}
	var resp struct {
		BatchItemFailures []struct {
			ItemIdentifier *string `json:"itemIdentifier"`
		} `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(payload, &resp); err != nil {
		return nil, false
	}
	in := map[string]bool{}
	for _, m := range batch {
		in[m.ID] = true
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		if f.ItemIdentifier == nil || !in[*f.ItemIdentifier] {
			return nil, false
		}
		failed[*f.ItemIdentifier] = true
	}
	return failed, true
}

// process invokes the function with a batch and settles the batch.
func (pl *poller) process(batch []*scheduler.QueueMessage) settlement {
	n, t := pl.p.n, pl.t
	payload, err := sqsEventOf(pl.p.n.cfg.ARNs, t.Queue, batch)
	for err == nil && len(payload) > rpc.MaxSyncPayload && len(batch) > 1 {
		// The estimate was short (bodies that escape): put the tail back.
		half := len(batch) / 2
		pl.release(pl.ctx, batch[half:], 0)
		batch = batch[:half]
		payload, err = sqsEventOf(pl.p.n.cfg.ARNs, t.Queue, batch)
	}
	if err != nil {
		n.log.Warn("queue trigger event not built", "uuid", t.UUID, "err", err)
		return settleDone
	}
	n.metrics.fns.get(t.Function).batchSizes.observe(len(batch))
	resp, err := n.invoke(pl.ctx, &rpc.InvokeRequest{FunctionName: t.Function, Payload: payload})
	switch {
	case pl.ctx.Err() != nil:
		return settleDone // stopping: the batch reappears after its visibility timeout
	case errors.Is(err, rpc.ErrTooManyRequests):
		pl.release(pl.ctx, batch, 0)
		sleepCtx(pl.ctx, 100*time.Millisecond)
		return settleThrottled
	case err != nil:
		n.log.Warn("queue trigger invocation failed; the batch reappears after the visibility timeout", "uuid", t.UUID, "function", t.Function, "messages", len(batch), "err", err)
		sleepCtx(pl.ctx, time.Second)
		return settleDone
	case resp.FunctionError != "":
		n.log.Info("queue trigger batch failed; it reappears after the visibility timeout", "uuid", t.UUID, "function", t.Function, "messages", len(batch), "error", resp.FunctionError)
		return settleDone
	}
	var keep map[string]bool
	if t.ReportBatchItemFailures {
		var ok bool
		if keep, ok = batchFailures(resp.Payload, batch); !ok {
			n.log.Warn("queue trigger: invalid batchItemFailures answer; the whole batch fails", "uuid", t.UUID, "function", t.Function, "messages", len(batch))
			return settleDone
		}
	}
	ops := make([]scheduler.QueueOp, 0, len(batch))
	for _, m := range batch {
		if !keep[m.ID] {
			ops = append(ops, scheduler.QueueOp{Kind: scheduler.QueueDelete, Queue: t.Queue, MessageID: m.ID, Receipt: m.Receipt, NowMs: time.Now().UnixMilli()})
		}
	}
	if len(ops) == 0 {
		return settleDone
	}
	// The deletes commit while the worker polls for its next batch (the
	// batch stays invisible meanwhile); the poller waits for them when it
	// stops.
	pl.deletes.Add(1)
	go func() {
		defer pl.deletes.Done()
		for _, r := range pl.p.queues.ops.submitAll(pl.ctx, ops) {
			if r.err != nil {
				n.log.Warn("queue trigger: a processed message was not deleted; it is delivered again", "uuid", t.UUID, "err", r.err)
				return
			}
		}
	}()
	return settleDone
}

// release makes messages visible again after d.
func (pl *poller) release(ctx context.Context, batch []*scheduler.QueueMessage, d time.Duration) {
	now := time.Now()
	ops := make([]scheduler.QueueOp, len(batch))
	for i, m := range batch {
		ops[i] = scheduler.QueueOp{Kind: scheduler.QueueChangeVisibility, Queue: pl.t.Queue, MessageID: m.ID, Receipt: m.Receipt,
			NowMs: now.UnixMilli(), VisibleUntilMs: now.Add(d).UnixMilli()}
	}
	ctx, cancel := context.WithTimeout(ctx, raftApplyTimeout)
	defer cancel()
	pl.p.queues.ops.submitAll(ctx, ops)
}
