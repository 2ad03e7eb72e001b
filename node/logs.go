package node

import (
	"context"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// maxLogWait bounds one long poll of Logs.Read; followers poll again.
const maxLogWaitMs = 30_000

func (n *Node) registerLogs() {
	rpc.Handle(n.server, rpc.MethodLogsRead, n.readLogs)
}

func (n *Node) readLogs(ctx context.Context, req *rpc.ReadLogsRequest) (*rpc.ReadLogsResponse, error) {
	// Logs stay on the worker that ran the function: a node answers with
	// its own. A server checks the name against its replica of the
	// registry; a worker-only node has none.
	if n.fsm != nil {
		if _, err := n.function(req.FunctionName); err != nil {
			return nil, err
		}
	} else if err := scheduler.ValidateName(req.FunctionName); err != nil {
		return nil, err
	}
	if req.WaitMs > maxLogWaitMs {
		req.WaitMs = maxLogWaitMs
	}
	return n.logs.Read(ctx, req)
}
