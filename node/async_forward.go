package node

import (
	"context"
	"errors"
	"strings"
	"sync"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// Forwarded accepts. A node that does not lead gathers the Event
// invocations its callers send concurrently and forwards them to the
// leader together, in one Async.AcceptBatch peer call, instead of one
// Invoke forward each: one request and one answer frame, one leader
// handler and one group commit submission for many events (the accepts'
// cost on a loaded machine is per rpc hop and per goroutine woken, not per
// byte; docs/BENCHMARKS.md, Async).
//
//	caller --> invokeAsync (not leading) --> forwarder queue --> batch (a free slot, then all queued)
//	                                                               |  Async.AcceptBatch to the leader
//	caller <-- its own result (request id, or its error) <---------+  (one result per event, in order)
//
// Nothing changes for the guarantees: the leader answers an event's
// request id only once the entry carrying it is committed and applied
// (it hands the batch to the same accept group commit); each event has
// its own result, so one refused event (a missing function, say) fails
// only its caller. A leader that does not know the method (an older
// version) gets the batch's events as Invoke forwards, one each.
const methodAsyncAcceptBatch = "Async.AcceptBatch"

// Bounds of one forwarded batch: items and payload bytes (well under the
// rpc frame limit), and how many batches a node has in flight at once.
const (
	forwardBatchItems = 256
	forwardBatchBytes = 8 << 20
	forwardInFlight   = 4
)

type acceptBatchRequest struct {
	Events []acceptBatchEvent `msgpack:"events"`
}

// acceptBatchEvent is one forwarded Event invocation: what the accept
// reads of an InvokeRequest.
type acceptBatchEvent struct {
	FunctionName string `msgpack:"fn"`
	Qualifier    string `msgpack:"q,omitempty"`
	Payload      []byte `msgpack:"p"`
}

type acceptBatchResponse struct {
	Results []acceptBatchResult `msgpack:"results"`
}

// acceptBatchResult is one event's outcome: its request id once
// committed, or its error.
type acceptBatchResult struct {
	RequestID string     `msgpack:"id,omitempty"`
	Err       *rpc.Error `msgpack:"err,omitempty"`
}

// checkAcceptBatch checks a batch a peer sent before anything is done
// with it: the count, and each event as a client's Event invocation is
// checked (name, qualifier, size).
func checkAcceptBatch(req *acceptBatchRequest) error {
	if len(req.Events) == 0 || len(req.Events) > forwardBatchItems {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "an accept batch holds 1 to %d events, not %d", forwardBatchItems, len(req.Events))
	}
	return nil
}

// checkAcceptEvent checks one event of a batch as invoke checks a client's.
func checkAcceptEvent(ev *acceptBatchEvent) error {
	ref, err := rpc.ParseFunctionRef(ev.FunctionName, ev.Qualifier)
	if err != nil {
		return err
	}
	if err := scheduler.ValidateName(ref.Name); err != nil {
		return err
	}
	if err := scheduler.ValidateQualifier(ref.Qualifier); err != nil {
		return err
	}
	if len(ev.Payload) > rpc.MaxAsyncPayload {
		return rpc.Errorf(rpc.CodeRequestTooLarge, "Request must be smaller than %d bytes for the InvokeAsync operation", rpc.MaxAsyncPayload)
	}
	ev.FunctionName, ev.Qualifier = ref.Name, ref.Qualifier
	return nil
}

// acceptBatch is Async.AcceptBatch on the leader (a node that lost the
// lead forwards the batch on, as every write handler does).
func (n *Node) acceptBatch(ctx context.Context, req *acceptBatchRequest) (*acceptBatchResponse, error) {
	if err := checkAcceptBatch(req); err != nil {
		return nil, err
	}
	if !n.isLeader() {
		var resp acceptBatchResponse
		if err := n.forward(ctx, methodAsyncAcceptBatch, req, &resp); err != nil {
			return nil, err
		}
		return &resp, nil
	}
	out := make([]acceptBatchResult, len(req.Events))
	evs := make([]scheduler.AsyncEvent, 0, len(req.Events))
	idx := make([]int, 0, len(req.Events))
	for i := range req.Events {
		ev := &req.Events[i]
		if err := checkAcceptEvent(ev); err != nil {
			out[i].Err = rpc.AsError(err)
			continue
		}
		e, err := n.prepareAccept(ev.FunctionName, ev.Qualifier, ev.Payload)
		if err != nil {
			out[i].Err = rpc.AsError(err)
			continue
		}
		evs = append(evs, e)
		idx = append(idx, i)
	}
	if len(evs) > 0 {
		accepts := n.lead.accepts.Load()
		if accepts == nil {
			return nil, errNotLeading
		}
		for j, r := range accepts.submitAll(ctx, evs) {
			i := idx[j]
			if r.err != nil {
				out[i].Err = rpc.AsError(r.err)
				continue
			}
			out[i].RequestID = evs[j].RequestID
			n.metrics.fns.get(evs[j].Function).asyncReceived.Add(1)
		}
	}
	return &acceptBatchResponse{Results: out}, nil
}

// acceptForwarder is a non-leading node's queue of accepts to forward
// (the diagram above). run sends its batches until the node stops; the
// queue is the only shared state.
type acceptForwarder struct {
	n  *Node
	in chan forwardItem
}

type forwardItem struct {
	ev    acceptBatchEvent
	reply chan acceptBatchResult
}

func newAcceptForwarder(n *Node) *acceptForwarder {
	return &acceptForwarder{n: n, in: make(chan forwardItem, 4*forwardBatchItems)}
}

// submit forwards one event and waits for its result.
func (f *acceptForwarder) submit(ctx context.Context, ev acceptBatchEvent) (string, error) {
	it := forwardItem{ev: ev, reply: make(chan acceptBatchResult, 1)}
	select {
	case f.in <- it:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-f.n.stopping:
		return "", rpc.Errorf(rpc.CodeService, "node is stopping")
	}
	select {
	case r := <-it.reply:
		if r.Err != nil {
			return "", r.Err
		}
		return r.RequestID, nil
	case <-ctx.Done():
		// It may still be accepted, as when a caller's connection breaks.
		return "", rpc.Errorf(rpc.CodeService, "gave up waiting for the accept: %v", ctx.Err())
	}
}

// run takes a free slot, then everything queued (up to the bounds), and
// sends it; an idle forwarder sends a lone event at once.
func (f *acceptForwarder) run() {
	runBatches(f.in, f.n.stopping, forwardInFlight, forwardBatchItems, forwardBatchBytes,
		func(it forwardItem) int { return len(it.ev.Payload) }, f.send)
}

func (f *acceptForwarder) send(batch []forwardItem) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-f.n.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	req := &acceptBatchRequest{Events: make([]acceptBatchEvent, len(batch))}
	for i, it := range batch {
		req.Events[i] = it.ev
	}
	var resp acceptBatchResponse
	err := f.n.forward(ctx, methodAsyncAcceptBatch, req, &resp)
	if err != nil && unknownMethod(err, methodAsyncAcceptBatch) {
		// An older leader: one Invoke forward per event.
		var wg sync.WaitGroup
		for _, it := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var r rpc.InvokeResponse
				in := &rpc.InvokeRequest{FunctionName: it.ev.FunctionName, Qualifier: it.ev.Qualifier, Payload: it.ev.Payload, InvocationType: rpc.InvocationEvent}
				if err := f.n.forward(ctx, rpc.MethodInvoke, in, &r); err != nil {
					it.reply <- acceptBatchResult{Err: rpc.AsError(err)}
					return
				}
				it.reply <- acceptBatchResult{RequestID: r.RequestID}
			}()
		}
		wg.Wait()
		return
	}
	if err == nil && len(resp.Results) != len(batch) {
		err = rpc.Errorf(rpc.CodeService, "the leader answered %d results for %d events", len(resp.Results), len(batch))
	}
	for i, it := range batch {
		r := acceptBatchResult{Err: rpc.AsError(err)}
		if err == nil {
			r = resp.Results[i]
			if r.Err == nil && !validRequestID(r.RequestID) {
				r = acceptBatchResult{Err: rpc.Errorf(rpc.CodeService, "the leader answered an invalid request id")}
			}
		}
		it.reply <- r
	}
}

// unknownMethod reports the rpc server's answer to a method it does not
// serve.
func unknownMethod(err error, method string) bool {
	var re *rpc.Error
	return errors.As(err, &re) && re.Code == rpc.CodeInvalidParameterValue && strings.HasSuffix(re.Message, "unknown method "+method)
}
