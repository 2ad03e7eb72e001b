package node

import (
	"context"

	"nimbus/rpc"
)

// registerInternal registers the calls between nodes: the leader's ledger,
// running an invocation on a worker, and code distribution.
func (n *Node) registerInternal() {
	rpc.Handle(n.server, rpc.MethodLedgerAcquire, n.grant)
	rpc.Handle(n.server, rpc.MethodLedgerRelease, n.ledgerRelease)
	rpc.Handle(n.server, rpc.MethodWorkerHeartbeat, n.ledgerHeartbeat)
	rpc.Handle(n.server, rpc.MethodWorkerRun, n.workerRun)
	rpc.Handle(n.server, rpc.MethodCodeFetch, n.codeFetch)
	rpc.Handle(n.server, rpc.MethodCodePut, n.codePut)
}

func (n *Node) ledgerRelease(ctx context.Context, req *rpc.ReleaseRequest) (*rpc.ReleaseResponse, error) {
	if !n.isLeader() {
		var resp rpc.ReleaseResponse
		return &resp, n.forward(ctx, rpc.MethodLedgerRelease, req, &resp)
	}
	n.ledger.Release(req.Worker, req.SlotIDs...)
	return &rpc.ReleaseResponse{}, nil
}

func (n *Node) ledgerHeartbeat(ctx context.Context, req *rpc.HeartbeatRequest) (*rpc.HeartbeatResponse, error) {
	if !n.isLeader() {
		return nil, rpc.Errorf(rpc.CodeService, "%s does not lead", n.name)
	}
	n.ledger.Heartbeat(req)
	return &rpc.HeartbeatResponse{}, nil
}
