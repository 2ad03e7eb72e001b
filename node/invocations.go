package node

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"time"

	"nimbus/rpc"
	"nimbus/sandbox"
	"nimbus/scheduler"
)

func (n *Node) registerInvoke() {
	rpc.Handle(n.server, rpc.MethodInvoke, n.invoke)
	rpc.HandleStream(n.server, rpc.MethodInvokeStream, n.invokeStream)
}

// sendFunc sends a part of a streamed response on its way to the caller
// (nil: the response is buffered), giving up when ctx ends.
type sendFunc func(context.Context, *rpc.InvokeStreamPart) error

// sendPart sends parts on an rpc stream.
func sendPart(out *rpc.Stream) sendFunc {
	return func(ctx context.Context, p *rpc.InvokeStreamPart) error { return out.Send(ctx, p) }
}

// streamTime is how long a streamed response may take to reach a caller
// that takes its parts slowly: the function's timeout and streamGrace.
func streamTime(fn *rpc.FunctionConfig) time.Duration {
	return time.Duration(fn.TimeoutSec)*time.Second + streamGrace
}

// invokeStream is Invoke.Stream: a synchronous invocation whose response
// goes to the caller as the runtime sends it.
func (n *Node) invokeStream(ctx context.Context, req *rpc.InvokeRequest, out *rpc.Stream) (*rpc.InvokeResponse, error) {
	return n.invokeStreamTo(ctx, req, sendPart(out))
}

// invokeStreamTo is Invoke.Stream with the parts given to send (the
// gateway's InvokeWithResponseStream calls it in the process).
func (n *Node) invokeStreamTo(ctx context.Context, req *rpc.InvokeRequest, send sendFunc) (*rpc.InvokeResponse, error) {
	switch req.InvocationType {
	case "", rpc.InvocationRequestResponse, rpc.InvocationDryRun:
	default:
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]", req.InvocationType)
	}
	return n.invokeWith(ctx, req, send)
}

// invoke is the frontend of a synchronous invocation, on whichever node the
// client called: it asks the leader for a slot (no Raft commit: the ledger
// is the leader's memory), runs the invocation on the granted worker (this
// node, or a peer), and the worker gives the slot back. Over a limit the
// caller is throttled, never queued.
func (n *Node) invoke(ctx context.Context, req *rpc.InvokeRequest) (*rpc.InvokeResponse, error) {
	return n.invokeWith(ctx, req, nil)
}

// invokeWith is invoke, with the response streamed by send when it is set.
func (n *Node) invokeWith(ctx context.Context, req *rpc.InvokeRequest, send sendFunc) (*rpc.InvokeResponse, error) {
	// The function may be named `name:qualifier` or by a (qualified) ARN;
	// the leader resolves the qualifier when it grants the slot.
	ref, err := rpc.ParseFunctionRef(req.FunctionName, req.Qualifier)
	if err != nil {
		return nil, err
	}
	if err := scheduler.ValidateName(ref.Name); err != nil {
		return nil, err
	}
	if err := scheduler.ValidateQualifier(ref.Qualifier); err != nil {
		return nil, err
	}
	switch req.InvocationType {
	case "", rpc.InvocationRequestResponse:
	case rpc.InvocationDryRun:
		var fr rpc.FunctionResponse
		if _, err := n.getFunctionAnywhere(ctx, ref, &fr); err != nil {
			return nil, err
		}
		return &rpc.InvokeResponse{StatusCode: 204, ExecutedVersion: fr.Function.VersionName()}, nil
	case rpc.InvocationEvent:
		async := *req
		async.FunctionName, async.Qualifier = ref.Name, ref.Qualifier
		return n.invokeAsync(ctx, &async)
	default:
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]", req.InvocationType)
	}
	if len(req.Payload) > rpc.MaxSyncPayload {
		return nil, rpc.Errorf(rpc.CodeRequestTooLarge, "Request must be smaller than %d bytes for the InvokeFunction operation", rpc.MaxSyncPayload)
	}
	payload := req.Payload
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	clientContext, err := checkClientContext(req.ClientContext)
	if err != nil {
		return nil, err
	}

	// A worker that cannot even be dialed never saw the invocation: give
	// the slot back and ask for another worker (twice at most). Any later
	// failure may have run the function, so it is not retried.
	var avoid []string
	for attempt := 0; ; attempt++ {
		grant, err := n.acquire(ctx, &rpc.AcquireRequest{FunctionName: ref.Name, Qualifier: ref.Qualifier, Avoid: avoid})
		if err != nil {
			if errors.Is(err, rpc.ErrTooManyRequests) {
				n.metrics.fns.getKey(invokedKey(ref.Name, ref.Qualifier, "")).throttles.Add(1)
			}
			return nil, err
		}
		run := &rpc.RunRequest{SlotID: grant.SlotID, Function: grant.Function, Payload: payload, LogType: req.LogType, Qualifier: ref.Qualifier, ClientContext: clientContext}
		fc := n.metrics.fns.get(ref.Name) // concurrency: the function's own key
		fc.running(1)
		var resp *rpc.InvokeResponse
		if grant.Worker == n.name {
			resp, err = n.workerRunWith(ctx, run, send)
		} else {
			resp, err = n.runOn(ctx, grant, run, send)
		}
		fc.running(-1)
		if err == nil {
			n.metrics.countInvocation(ref.Name, ref.Qualifier, resp)
		}
		if err != nil && isDialError(err) && attempt < 2 {
			n.log.Warn("worker unreachable, placing elsewhere", "worker", grant.Worker, "function", ref.Name, "err", err)
			n.giveBack(ctx, grant)
			avoid = append(avoid, grant.Worker)
			continue
		}
		return resp, err
	}
}

// runOn sends an invocation to a worker, failing it at once if gossip
// declares the worker dead meanwhile.
func (n *Node) runOn(ctx context.Context, grant *rpc.AcquireResponse, run *rpc.RunRequest, send sendFunc) (*rpc.InvokeResponse, error) {
	wctx, done := n.watch.track(ctx, grant.Worker)
	defer done()
	var resp rpc.InvokeResponse
	var err error
	if send == nil {
		err = n.peers.call(wctx, grant.WorkerAddr, rpc.MethodWorkerRun, run, &resp)
	} else {
		// The worker bounds its own sends; this bounds passing them on.
		sctx, cancel := context.WithTimeout(ctx, streamTime(grant.Function))
		defer cancel()
		err = n.peers.callStream(wctx, grant.WorkerAddr, rpc.MethodWorkerRunStream, run, &resp,
			func(p *rpc.InvokeStreamPart) error { return send(sctx, p) })
	}
	if err == nil {
		return &resp, nil
	}
	var re *rpc.Error
	switch {
	case errors.As(err, &re):
		return nil, re
	case isDialError(err):
		return nil, err
	case errors.Is(context.Cause(wctx), errWorkerLost):
		return nil, rpc.Errorf(rpc.CodeService, "worker %s died during the invocation (the function may have run)", grant.Worker)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		return nil, rpc.Errorf(rpc.CodeService, "worker %s failed during the invocation (the function may have run): %v", grant.Worker, err)
	}
}

// isDialError reports a connection that was never established: the peer
// received nothing.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// giveBack returns a slot whose invocation never reached its worker.
func (n *Node) giveBack(ctx context.Context, grant *rpc.AcquireResponse) {
	if n.isLeader() {
		n.ledger.Release(grant.Worker, grant.SlotID)
		return
	}
	_ = n.forward(ctx, rpc.MethodLedgerRelease, &rpc.ReleaseRequest{Worker: grant.Worker, SlotIDs: []uint64{grant.SlotID}}, &rpc.ReleaseResponse{})
}

// getFunctionAnywhere reads a function (the version its qualifier names)
// from the leader.
func (n *Node) getFunctionAnywhere(ctx context.Context, ref rpc.FunctionRef, out *rpc.FunctionResponse) (*rpc.FunctionResponse, error) {
	if n.isLeader() {
		fn, err := n.resolve(ref.Name, ref.Qualifier, false)
		if err != nil {
			return nil, err
		}
		out.Function = fn
		return out, nil
	}
	return out, n.forward(ctx, rpc.MethodFunctionGet, &rpc.GetFunctionRequest{Name: ref.Name, Qualifier: ref.Qualifier}, out)
}

// acquire gets a slot from the leader: locally when this node leads.
func (n *Node) acquire(ctx context.Context, req *rpc.AcquireRequest) (*rpc.AcquireResponse, error) {
	if n.isLeader() {
		return n.grant(ctx, req)
	}
	var resp rpc.AcquireResponse
	if err := n.forward(ctx, rpc.MethodLedgerAcquire, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// grant is Ledger.Acquire on the leader. Right after an election the ledger
// waits for the workers' heartbeats before it grants anything, so that the
// limits hold across the change; the caller waits that out (a few seconds
// at most) rather than being refused.
func (n *Node) grant(ctx context.Context, req *rpc.AcquireRequest) (*rpc.AcquireResponse, error) {
	if !n.isLeader() {
		var resp rpc.AcquireResponse
		return &resp, n.forward(ctx, rpc.MethodLedgerAcquire, req, &resp)
	}
	// The version to run: an alias with an additional version picks one
	// here, per invocation. Its sandboxes are its own (sandbox.Key has the
	// version); concurrency is the function's, whatever the version.
	fn, err := n.resolve(req.FunctionName, req.Qualifier, true)
	if err != nil {
		return nil, err
	}
	reserved, has := n.fsm.Reserved(fn.Name)
	greq := scheduler.GrantRequest{
		Function:    fn.Name,
		Key:         sandbox.Key(fn),
		MemoryMB:    fn.MemoryMB,
		Reserved:    reserved,
		HasReserved: has,
		Avoid:       req.Avoid,
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, err := n.ledger.Grant(greq, n.fsm.ReservedTotal())
		if !errors.Is(err, scheduler.ErrLedgerRecovering) || time.Now().After(deadline) {
			n.metrics.observeGrant(err)
		}
		if err == nil {
			return &rpc.AcquireResponse{SlotID: g.SlotID, Worker: g.Worker, WorkerAddr: g.WorkerAddr, Function: fn}, nil
		}
		if !errors.Is(err, scheduler.ErrLedgerRecovering) || time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// checkClientContext checks a client context with Lambda's rules (a JSON
// object, at most rpc.MaxClientContext bytes as base64) and returns it
// compacted to one line, as the runtime's header carries it.
func checkClientContext(cc []byte) ([]byte, error) {
	if len(cc) == 0 {
		return nil, nil
	}
	if base64.StdEncoding.EncodedLen(len(cc)) > rpc.MaxClientContext {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Client context must be at most %d bytes", rpc.MaxClientContext)
	}
	var obj map[string]json.RawMessage
	var buf bytes.Buffer
	if json.Unmarshal(cc, &obj) != nil || obj == nil || json.Compact(&buf, cc) != nil {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Client context must be a valid Base64-encoded JSON object.")
	}
	return buf.Bytes(), nil
}
