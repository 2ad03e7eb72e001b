package node

import (
	"context"

	"nimbus/rpc"
)

// registerInternal registers the calls between nodes: the leader's ledger,
// running an invocation on a worker, and code distribution. They are peer
// methods: served only on connections that passed the peer handshake, so
// no client can heartbeat a made-up worker, take or give back slots, run a
// sandbox without a slot or plant code.
func (n *Node) registerInternal() {
	rpc.HandlePeer(n.server, rpc.MethodLedgerAcquire, n.grant)
	rpc.HandlePeer(n.server, rpc.MethodLedgerRelease, n.ledgerRelease)
	rpc.HandlePeer(n.server, rpc.MethodWorkerHeartbeat, n.ledgerHeartbeat)
	rpc.HandlePeer(n.server, rpc.MethodWorkerRun, n.workerRun)
	rpc.HandlePeerStream(n.server, rpc.MethodWorkerRunStream, func(ctx context.Context, req *rpc.RunRequest, out *rpc.Stream) (*rpc.InvokeResponse, error) {
		return n.workerRunWith(ctx, req, sendPart(out))
	})
	rpc.HandlePeer(n.server, rpc.MethodCodeFetch, n.codeFetch)
	rpc.HandlePeer(n.server, rpc.MethodCodePut, n.codePut)
	rpc.HandlePeer(n.server, methodAsyncAcceptBatch, n.acceptBatch)
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
	if err := n.checkHeartbeatFrom(rpc.CallerFrom(ctx), req); err != nil {
		return nil, err
	}
	n.ledger.Heartbeat(req)
	return &rpc.HeartbeatResponse{}, nil
}

// checkHeartbeatFrom accepts a heartbeat only from the worker it speaks
// for: the peer that sent it authenticated under that name, and gossip
// knows an alive worker of that name at that rpc address. A node of the
// cluster cannot speak for another, nor for one gossip does not know.
func (n *Node) checkHeartbeatFrom(caller rpc.Caller, req *rpc.HeartbeatRequest) error {
	if caller.Peer != req.Node {
		return rpc.Errorf(rpc.CodeAccessDenied, "heartbeat for worker %q sent by node %q: a worker reports only for itself", req.Node, caller.Peer)
	}
	st, ok := n.members.get(req.Node)
	if !ok || st.status != rpc.MemberAlive || !st.meta.has(rpc.RoleWorker) {
		return rpc.Errorf(rpc.CodeAccessDenied, "heartbeat from %q, which gossip does not know as an alive worker", req.Node)
	}
	if st.meta.RPC != req.Addr {
		return rpc.Errorf(rpc.CodeAccessDenied, "heartbeat from %q for address %s; gossip knows it at %s", req.Node, req.Addr, st.meta.RPC)
	}
	return nil
}
