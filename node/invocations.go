package node

import (
	"context"
	"log/slog"

	"nimbus/rpc"
	"nimbus/sandbox"
)

func (n *Node) registerInvoke() {
	rpc.Handle(n.server, rpc.MethodInvoke, n.invoke)
}

// invoke runs a synchronous invocation on this node's sandboxes. Over the
// account concurrency limit the caller is throttled, never queued.
func (n *Node) invoke(ctx context.Context, req *rpc.InvokeRequest) (*rpc.InvokeResponse, error) {
	fn, err := n.function(req.FunctionName)
	if err != nil {
		return nil, err
	}
	switch req.InvocationType {
	case "", rpc.InvocationRequestResponse:
	case rpc.InvocationDryRun:
		return &rpc.InvokeResponse{StatusCode: 204, ExecutedVersion: "$LATEST"}, nil
	case rpc.InvocationEvent:
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "InvocationType Event is not supported yet: invoke with RequestResponse")
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
	select {
	case n.slots <- struct{}{}:
	default:
		return nil, &rpc.Error{Code: rpc.CodeTooManyRequests, Message: "Rate Exceeded.", Reason: rpc.ReasonConcurrentInvocationLimitExceeded}
	}
	defer func() { <-n.slots }()

	codeDir, err := n.code.Tree(fn.CodeSHA256)
	if err != nil {
		return nil, rpc.Errorf(rpc.CodeService, "code of %s unavailable: %v", fn.Name, err)
	}
	res, err := n.sandboxes.Invoke(ctx, &sandbox.Request{
		Function: fn,
		CodeDir:  codeDir,
		Payload:  payload,
		Tail:     req.LogType == rpc.LogTypeTail,
	})
	if err != nil {
		n.log.Warn("invocation failed", slog.String("function", fn.Name), slog.Any("err", err))
		return nil, rpc.AsError(err)
	}
	out := &rpc.InvokeResponse{
		RequestID:       res.RequestID,
		StatusCode:      200,
		Payload:         res.Payload,
		ExecutedVersion: "$LATEST",
	}
	if res.ErrorType != "" {
		out.FunctionError = rpc.FunctionErrorUnhandled
	}
	if req.LogType == rpc.LogTypeTail {
		out.LogResult = []byte(res.LogTail)
	}
	return out, nil
}
