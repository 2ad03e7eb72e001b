package node

import (
	"context"

	"nimbus/rpc"
)

// maxLogWait bounds one long poll of Logs.Read; followers poll again.
const maxLogWaitMs = 30_000

func (n *Node) registerLogs() {
	rpc.Handle(n.server, rpc.MethodLogsRead, n.readLogs)
}

func (n *Node) readLogs(ctx context.Context, req *rpc.ReadLogsRequest) (*rpc.ReadLogsResponse, error) {
	if _, err := n.function(req.FunctionName); err != nil {
		return nil, err
	}
	if req.WaitMs > maxLogWaitMs {
		req.WaitMs = maxLogWaitMs
	}
	return n.logs.Read(ctx, req)
}
