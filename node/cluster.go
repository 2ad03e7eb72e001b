package node

import (
	"context"
	"sort"
	"strconv"

	"github.com/hashicorp/raft"

	"nimbus/rpc"
	"nimbus/scheduler"
)

func (n *Node) registerCluster() {
	rpc.Handle(n.server, rpc.MethodClusterMembers, n.clusterMembers)
	rpc.Handle(n.server, rpc.MethodClusterRaft, n.clusterRaft)
	rpc.Handle(n.server, rpc.MethodClusterScope, func(context.Context, *rpc.ScopeRequest) (*rpc.ARNScope, error) {
		s := n.cfg.ARNs
		return &s, nil
	})
	rpc.Handle(n.server, rpc.MethodConcurrencyPut, n.putConcurrency)
	rpc.Handle(n.server, rpc.MethodConcurrencyGet, n.getConcurrency)
	rpc.Handle(n.server, rpc.MethodConcurrencyDelete, n.deleteConcurrency)
}

// clusterMembers answers with the leader's view (it has the in-flight and
// warm counts from heartbeats); a node that cannot reach a leader answers
// with its own gossip view and no counts.
func (n *Node) clusterMembers(ctx context.Context, req *rpc.MembersRequest) (*rpc.MembersResponse, error) {
	if !n.isLeader() {
		var resp rpc.MembersResponse
		if err := n.forward(ctx, rpc.MethodClusterMembers, req, &resp); err == nil {
			return &resp, nil
		}
	}
	var stats scheduler.LedgerStats
	if n.isLeader() {
		stats = n.ledger.Stats()
	}
	var out rpc.MembersResponse
	for name, st := range n.members.snapshot() {
		m := rpc.Member{
			Name:       name,
			Addr:       st.meta.RPC,
			GossipAddr: st.addr,
			Roles:      st.meta.Roles,
			Status:     st.status,
			MemoryMB:   st.meta.MemoryMB,
			Version:    st.meta.Version,
		}
		if ws, ok := stats.ByWorker[name]; ok {
			m.InFlight = ws.InFlight
			m.Warm = ws.Warm
		}
		out.Members = append(out.Members, m)
	}
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].Name < out.Members[j].Name })
	return &out, nil
}

// clusterRaft answers with this node's view of Raft; a node without Raft
// asks a server.
func (n *Node) clusterRaft(ctx context.Context, req *rpc.RaftRequest) (*rpc.RaftResponse, error) {
	if n.raft == nil {
		for _, name := range n.members.alive(rpc.RoleServer) {
			if addr, ok := n.members.rpcAddr(name); ok {
				var resp rpc.RaftResponse
				if err := n.peers.call(ctx, addr, rpc.MethodClusterRaft, req, &resp); err == nil {
					return &resp, nil
				}
			}
		}
		return nil, rpc.Errorf(rpc.CodeService, "no server reachable")
	}
	stats := n.raft.Stats()
	parse := func(k string) uint64 { v, _ := strconv.ParseUint(stats[k], 10, 64); return v }
	_, leaderID := n.raft.LeaderWithID()
	out := &rpc.RaftResponse{
		Node:         n.name,
		State:        n.raft.State().String(),
		Leader:       string(leaderID),
		Term:         parse("term"),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			out.Servers = append(out.Servers, rpc.RaftServer{
				ID: string(s.ID), Address: string(s.Address),
				Suffrage: suffrage(s.Suffrage), Leader: s.ID == leaderID,
			})
		}
	}
	return out, nil
}

func suffrage(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return "Voter"
	}
	return "Nonvoter"
}

func (n *Node) putConcurrency(ctx context.Context, req *rpc.PutConcurrencyRequest) (*rpc.ConcurrencyResponse, error) {
	if !n.isLeader() {
		var resp rpc.ConcurrencyResponse
		return &resp, n.forward(ctx, rpc.MethodConcurrencyPut, req, &resp)
	}
	if _, err := n.function(req.Name); err != nil {
		return nil, err
	}
	others := n.fsm.ReservedTotal()
	if cur, ok := n.fsm.Reserved(req.Name); ok {
		others -= cur
	}
	if err := scheduler.ValidateReservation(req.Name, req.Reserved, n.cfg.AccountConcurrency, others); err != nil {
		return nil, err
	}
	if _, err := n.apply(&scheduler.PutConcurrencyCommand{Name: req.Name, Reserved: req.Reserved, MaxTotal: scheduler.MaxReservedTotal(n.cfg.AccountConcurrency)}); err != nil {
		return nil, err
	}
	r := req.Reserved
	return &rpc.ConcurrencyResponse{Name: req.Name, Reserved: &r}, nil
}

func (n *Node) getConcurrency(ctx context.Context, req *rpc.GetFunctionRequest) (*rpc.ConcurrencyResponse, error) {
	if !n.isLeader() {
		var resp rpc.ConcurrencyResponse
		return &resp, n.forward(ctx, rpc.MethodConcurrencyGet, req, &resp)
	}
	if _, err := n.function(req.Name); err != nil {
		return nil, err
	}
	out := &rpc.ConcurrencyResponse{Name: req.Name}
	if r, ok := n.fsm.Reserved(req.Name); ok {
		out.Reserved = &r
	}
	return out, nil
}

func (n *Node) deleteConcurrency(ctx context.Context, req *rpc.GetFunctionRequest) (*rpc.ConcurrencyResponse, error) {
	if !n.isLeader() {
		var resp rpc.ConcurrencyResponse
		return &resp, n.forward(ctx, rpc.MethodConcurrencyDelete, req, &resp)
	}
	if _, err := n.function(req.Name); err != nil {
		return nil, err
	}
	if _, err := n.apply(&scheduler.DeleteConcurrencyCommand{Name: req.Name}); err != nil {
		return nil, err
	}
	return &rpc.ConcurrencyResponse{Name: req.Name}, nil
}
