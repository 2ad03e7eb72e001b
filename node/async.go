package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// Asynchronous invocation (InvocationType Event): the accept path.
//
// Any node takes the request; a node that does not lead forwards it. The
// leader checks it, gives it a request id and hands it to the accept group
// commit, which puts concurrent accepts in shared AsyncAccept entries. The
// caller gets 202 and the request id only once the entry is committed and
// applied: without a leader or a quorum it gets ServiceException, never a
// 202. The dispatcher (dispatcher.go) runs the event later.

// acceptBatchItems and acceptBatchBytes bound one AsyncAccept entry.
const (
	acceptBatchItems = 1024
	acceptBatchBytes = 4 << 20
)

func newAcceptCommit(n *Node) *groupCommit[scheduler.AsyncEvent] {
	return newGroupCommit(n, acceptBatchItems, acceptBatchBytes,
		func(e scheduler.AsyncEvent) int { return len(e.Payload) + len(e.RequestID) + len(e.Function) + 32 },
		func(es []scheduler.AsyncEvent) scheduler.Command { return scheduler.AsyncAcceptCommand{Events: es} })
}

// invokeAsync accepts an Event invocation.
func (n *Node) invokeAsync(ctx context.Context, req *rpc.InvokeRequest) (*rpc.InvokeResponse, error) {
	if len(req.Payload) > rpc.MaxAsyncPayload {
		return nil, rpc.Errorf(rpc.CodeRequestTooLarge, "Request must be smaller than %d bytes for the InvokeAsync operation", rpc.MaxAsyncPayload)
	}
	if !n.isLeader() {
		if n.asyncFwd != nil {
			id, err := n.asyncFwd.submit(ctx, acceptBatchEvent{FunctionName: req.FunctionName, Qualifier: req.Qualifier, Payload: req.Payload})
			if err != nil {
				return nil, err
			}
			return &rpc.InvokeResponse{RequestID: id, StatusCode: rpc.StatusAccepted, ExecutedVersion: rpc.VersionLatest}, nil
		}
		var resp rpc.InvokeResponse
		if err := n.forward(ctx, rpc.MethodInvoke, req, &resp); err != nil {
			return nil, err
		}
		return &resp, nil
	}
	ev, err := n.prepareAccept(req.FunctionName, req.Qualifier, req.Payload)
	if err != nil {
		return nil, err
	}
	accepts := n.lead.accepts.Load()
	if accepts == nil {
		return nil, errNotLeading
	}
	if r := accepts.submit(ctx, ev); r.err != nil {
		return nil, rpc.AsError(r.err)
	}
	n.metrics.fns.get(ev.Function).asyncReceived.Add(1)
	return &rpc.InvokeResponse{RequestID: ev.RequestID, StatusCode: rpc.StatusAccepted, ExecutedVersion: rpc.VersionLatest}, nil
}

// prepareAccept checks an Event invocation on the leader and builds its
// event: the function (and the version or alias named) must exist now;
// the event gets its request id and times.
func (n *Node) prepareAccept(name, qualifier string, payload []byte) (scheduler.AsyncEvent, error) {
	fn, err := n.function(name)
	if err != nil {
		return scheduler.AsyncEvent{}, err
	}
	// A version or alias (versions.go): it must exist now; the dispatcher
	// resolves it again at each run. The event records it only once every
	// server knows the field (FSM version 3).
	if qualifier == rpc.VersionLatest {
		qualifier = ""
	}
	if qualifier != "" {
		if _, err := n.resolve(fn.Name, qualifier, false); err != nil {
			return scheduler.AsyncEvent{}, err
		}
		if err := n.serversSupport(scheduler.CmdPublishVersion); err != nil {
			return scheduler.AsyncEvent{}, err
		}
	}
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	now := time.Now().UnixMilli()
	return scheduler.AsyncEvent{
		RequestID:  newRequestID(),
		Function:   fn.Name,
		Qualifier:  qualifier,
		Payload:    payload,
		AcceptedMs: now,
		DueMs:      now,
	}, nil
}

// newRequestID returns a random UUID (version 4), Lambda's request id form.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// validRequestID reports whether a request id a peer sent may be used as
// one: what newRequestID makes (hex and dashes, 1-64 of them), so it cannot
// carry anything into a header or a log line.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == '-') {
			return false
		}
	}
	return true
}

// checkDeadLetter checks a function's new legacy dead-letter target (nil:
// unchanged, "": cleared): a standard queue that exists, as queue:NAME or
// its SQS ARN.
func (n *Node) checkDeadLetter(target *string) error {
	if target == nil || *target == "" {
		return nil
	}
	d, err := scheduler.ParseDestination(*target)
	if err != nil {
		return err
	}
	if d.Kind != scheduler.DestinationQueue {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "The dead-letter target %s is not a queue: use queue:NAME or arn:aws:sqs:REGION:ACCOUNT:NAME", *target)
	}
	if err := n.serversSupport(scheduler.CmdQueueSend); err != nil {
		return err
	}
	return scheduler.CheckQueueTarget(n.cfg.ARNs, d.Name, n.fsm.Queue)
}
