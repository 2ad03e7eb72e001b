package node

import (
	"context"
	"sort"
	"sync"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// maxLogWaitMs bounds one long poll of Logs.Read; followers poll again.
const maxLogWaitMs = 30_000

func (n *Node) registerLogs() {
	rpc.Handle(n.server, rpc.MethodLogsRead, n.readLogs)
}

// readLogs answers with a function's log as the whole cluster has it. Lines
// stay on the worker that ran the invocation, so the node asked gathers them
// from every live worker (each read Local, from its own cursor) and merges
// them by time; the response carries a cursor per node.
func (n *Node) readLogs(ctx context.Context, req *rpc.ReadLogsRequest) (*rpc.ReadLogsResponse, error) {
	// A server checks the name against its replica of the registry; a
	// worker-only node has none.
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
	workers := n.members.alive(rpc.RoleWorker)
	if req.Local || len(workers) <= 1 && (len(workers) == 0 || workers[0] == n.name) {
		return n.readLocalLogs(ctx, req)
	}
	return n.gatherLogs(ctx, req, workers)
}

func (n *Node) readLocalLogs(ctx context.Context, req *rpc.ReadLogsRequest) (*rpc.ReadLogsResponse, error) {
	if req.Cursors != nil {
		req.After = req.Cursors[n.name]
	}
	res, err := n.logs.Read(ctx, req)
	if err != nil {
		return nil, err
	}
	for i := range res.Events {
		res.Events[i].Node = n.name
	}
	res.Cursors = map[string]uint64{n.name: res.Next}
	return res, nil
}

// gatherLogs reads every worker's lines concurrently. With WaitMs, the first
// worker to answer with lines ends the wait for the others (whose cursors
// stay where they were, so nothing is skipped). A worker that cannot be
// reached is left out of this answer and asked again next time.
func (n *Node) gatherLogs(ctx context.Context, req *rpc.ReadLogsRequest, workers []string) (*rpc.ReadLogsResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type part struct {
		node string
		res  *rpc.ReadLogsResponse
	}
	parts := make(chan part, len(workers))
	var wg sync.WaitGroup
	for _, w := range workers {
		sub := *req
		sub.Local, sub.Cursors = true, nil
		sub.After = req.Cursors[w]
		wg.Add(1)
		go func(w string, sub *rpc.ReadLogsRequest) {
			defer wg.Done()
			var res *rpc.ReadLogsResponse
			var err error
			if w == n.name {
				res, err = n.readLocalLogs(ctx, sub)
			} else if addr, ok := n.members.rpcAddr(w); ok {
				res = &rpc.ReadLogsResponse{}
				err = n.peers.call(ctx, addr, rpc.MethodLogsRead, sub, res)
			} else {
				return
			}
			if err == nil {
				parts <- part{w, res}
				if len(res.Events) > 0 {
					cancel()
				}
			}
		}(w, &sub)
	}
	wg.Wait()
	close(parts)

	out := &rpc.ReadLogsResponse{Cursors: map[string]uint64{}}
	for k, v := range req.Cursors {
		out.Cursors[k] = v
	}
	// Merge by time, keeping each node's lines in their own order, so a
	// node's cursor never passes a line that was not returned.
	var queues [][]rpc.LogEvent
	for p := range parts {
		for i := range p.res.Events {
			p.res.Events[i].Node = p.node
		}
		if len(p.res.Events) > 0 {
			queues = append(queues, p.res.Events)
		}
	}
	sort.Slice(queues, func(i, j int) bool { return queues[i][0].Node < queues[j][0].Node })
	for {
		best := -1
		for i, q := range queues {
			if len(q) > 0 && (best < 0 || q[0].TimeMs < queues[best][0].TimeMs) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		out.Events = append(out.Events, queues[best][0])
		queues[best] = queues[best][1:]
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 1000
	}
	if len(out.Events) > limit {
		out.Events = out.Events[:limit]
	}
	// Each node's cursor moves to the last of its lines that is returned.
	for _, e := range out.Events {
		if e.Seq > out.Cursors[e.Node] {
			out.Cursors[e.Node] = e.Seq
		}
	}
	out.Next = out.Cursors[n.name]
	return out, nil
}
