package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"nimbus/rpc"
)

// peerDeadTimeout is how long a peer may leave our bytes unacknowledged (or
// ignore keepalives) before its connection is broken: a cut link becomes an
// error in seconds, and nothing queued for the peer is delivered later.
const peerDeadTimeout = 5 * time.Second

// peerPool keeps one multiplexed rpc client per peer address. Its
// connections are peer connections (they pass the peer handshake with
// auth), so they reach the node-to-node methods; auth is nil on a dev node,
// which calls no peer.
type peerPool struct {
	auth    *rpc.PeerAuth
	mu      sync.Mutex
	clients map[string]*rpc.Client
	closed  bool
}

func newPeerPool(auth *rpc.PeerAuth) *peerPool {
	return &peerPool{auth: auth, clients: map[string]*rpc.Client{}}
}

func (p *peerPool) get(ctx context.Context, addr string) (*rpc.Client, error) {
	p.mu.Lock()
	if c, ok := p.clients[addr]; ok {
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := rpc.Dial(ctx, addr, rpc.ClientOptions{DialTimeout: 2 * time.Second, DeadPeerTimeout: peerDeadTimeout, SendDeadline: true, Peer: p.auth})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return nil, rpc.ErrConnClosed
	}
	if old, ok := p.clients[addr]; ok {
		c.Close()
		return old, nil
	}
	p.clients[addr] = c
	return c, nil
}

// call runs one rpc on a peer.
func (p *peerPool) call(ctx context.Context, addr, method string, req, resp any) error {
	c, err := p.get(ctx, addr)
	if err != nil {
		return err
	}
	return c.Call(ctx, method, req, resp)
}

// callStream runs one streamed rpc on a peer (parts as Invoke.Stream's).
func (p *peerPool) callStream(ctx context.Context, addr, method string, req, resp any, onPart func(*rpc.InvokeStreamPart) error) error {
	c, err := p.get(ctx, addr)
	if err != nil {
		return err
	}
	return rpc.CallStream(c, ctx, method, req, resp, onPart)
}

func (p *peerPool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.clients {
		c.Close()
	}
	p.clients = nil
	return nil
}

// isLeader reports whether this node leads Raft now and has established
// its leadership (leadership.go): only then may it serve reads and grants
// from its FSM and ledger.
func (n *Node) isLeader() bool {
	return n.raft != nil && n.lead.ready.Load() && n.raft.State() == raft.Leader
}

// leaderAddr returns the rpc address of the current leader. A server knows
// it from Raft (Raft and rpc share the port); a worker-only node asks the
// servers it knows from gossip.
func (n *Node) leaderAddr(ctx context.Context) (string, error) {
	if n.raft != nil {
		addr, id := n.raft.LeaderWithID()
		if id == raft.ServerID(n.name) {
			// This node: its own rpc address, whatever Raft's transport
			// calls it (a dev node's in-memory transport says "vm"), once
			// its leadership is established; until then there is none to
			// send to (a heartbeat or release must not dial itself).
			if n.isLeader() {
				return n.cfg.Advertise, nil
			}
			return "", errNoLeader
		}
		if addr != "" {
			return string(addr), nil
		}
		return "", errNoLeader
	}
	if addr, ok := n.leaderCache.Load().(string); ok && addr != "" {
		return addr, nil
	}
	for _, name := range n.members.alive(rpc.RoleServer) {
		addr, ok := n.members.rpcAddr(name)
		if !ok {
			continue
		}
		var view rpc.RaftResponse
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := n.peers.call(cctx, addr, rpc.MethodClusterRaft, &rpc.RaftRequest{}, &view)
		cancel()
		if err == nil && view.Leader != "" {
			if a, ok := n.members.rpcAddr(view.Leader); ok {
				n.leaderCache.Store(a)
				return a, nil
			}
		}
	}
	return "", errNoLeader
}

// forward sends a request to the leader and relays its answer. It gives
// the leader a window (5 s; 60 s for code uploads) and retries within it
// while no leader is known or reachable (an election). The window is also
// the request's absolute deadline on the wire: a request delayed past it
// (queued behind a partition, say) is refused by the leader rather than run
// after the caller was told it failed.
// reasonNotLeader marks a write refused by a node that no longer leads,
// before anything reached the Raft log: safe to send to the new leader.
const reasonNotLeader = "NotLeader"

func (n *Node) forward(ctx context.Context, method string, req, resp any) error {
	window := 5 * time.Second
	if method == rpc.MethodFunctionCreate || method == rpc.MethodFunctionUpdateCode {
		window = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	for {
		addr, err := n.leaderAddr(ctx)
		if err == nil && addr == n.cfg.Advertise && !n.isLeader() {
			// We were elected but have not established leadership yet
			// (or just lost it): wait, then ask again.
			err = errNoLeader
		} else if err == nil {
			// The leader, which may be this node once established: a
			// handler that forwarded while it was not yet leading reaches
			// itself through its own rpc server.
			err = n.peers.call(ctx, addr, method, req, resp)
			var re *rpc.Error
			if errors.As(err, &re) && re.Reason == reasonNotLeader {
				// It stopped leading before it wrote anything: ask the
				// new leader.
				n.leaderCache.Store("")
			} else if err == nil || errors.As(err, &re) {
				return err
			}
			n.leaderCache.Store("") // ask the servers again
		}
		select {
		case <-ctx.Done():
			return rpc.Errorf(rpc.CodeService, "no leader reachable: %v", err)
		case <-n.stopping:
			return rpc.Errorf(rpc.CodeService, "node is stopping")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startLeaderLoop follows leadership: on gaining it, establishLeadership
// (leadership.go) waits for a barrier and starts the leader subsystems; on
// losing it, revokeLeadership stops them.
func (n *Node) startLeaderLoop() {
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		defer n.revokeLeadership()
		leaderCh := n.raft.LeaderCh()
		// Leader changes seen by this server: remember who led before, and
		// heartbeat the new leader at once so its ledger recovers quickly.
		obs := make(chan raft.Observation, 16)
		observer := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
			_, ok := o.Data.(raft.LeaderObservation)
			return ok
		})
		n.raft.RegisterObserver(observer)
		defer n.raft.DeregisterObserver(observer)
		var previous, current raft.ServerID
		for {
			select {
			case <-n.stopping:
				return
			case o := <-obs:
				lo := o.Data.(raft.LeaderObservation)
				if lo.LeaderID != current {
					if current != "" {
						previous = current
					}
					current = lo.LeaderID
					n.heartbeatSoon()
				}
			case isLeader := <-leaderCh:
				if isLeader && n.lead.stop == nil {
					n.log.Info("gained leadership", "previous_leader", previous)
					n.startLeadership(previous)
				} else if !isLeader && n.lead.stop != nil {
					n.log.Info("lost leadership")
					n.revokeLeadership()
				}
			}
		}
	}()
}

// heartbeatSoon asks the worker's heartbeat loop to report now.
func (n *Node) heartbeatSoon() {
	if n.work == nil {
		return
	}
	select {
	case n.work.beat <- struct{}{}:
	default:
	}
}

// reconcileLoop keeps the Raft voter set in step with gossip, as Consul's
// autopilot does: alive servers missing from the configuration are added;
// servers that left are removed at once, dead ones after DeadServerGrace.
func (n *Node) reconcileLoop(stop chan struct{}) {
	interval := time.Second
	if n.cfg.FastTimings {
		interval = 100 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n.reconcile()
		select {
		case <-stop:
			return
		case <-n.stopping:
			return
		case <-t.C:
		}
	}
}

func (n *Node) reconcile() {
	if n.cfg.Dev || !n.isLeader() {
		return
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	inConfig := map[string]raft.Server{}
	for _, s := range f.Configuration().Servers {
		inConfig[string(s.ID)] = s
	}
	members := n.members.snapshot()
	for name, st := range members {
		if !st.meta.has(rpc.RoleServer) || (st.status != rpc.MemberAlive && st.status != rpc.MemberSuspect) {
			continue
		}
		if s, ok := inConfig[name]; ok && string(s.Address) == st.meta.RPC {
			continue
		}
		n.log.Info("adding raft voter", "server", name, "addr", st.meta.RPC)
		if err := n.raft.AddVoter(raft.ServerID(name), raft.ServerAddress(st.meta.RPC), 0, 5*time.Second).Error(); err != nil {
			n.log.Warn("add voter failed", "server", name, "err", err)
		}
	}
	for name := range inConfig {
		if name == n.name {
			continue
		}
		st, known := members[name]
		remove := false
		switch {
		case known && st.status == rpc.MemberLeft:
			remove = true
		case known && st.status == rpc.MemberDead:
			remove = time.Since(st.since) > n.cfg.DeadServerGrace
		}
		if remove {
			n.log.Info("removing raft server", "server", name, "status", st.status)
			if err := n.raft.RemoveServer(raft.ServerID(name), 0, 5*time.Second).Error(); err != nil {
				n.log.Warn("remove server failed", "server", name, "err", err)
			}
		}
	}
}

// memberChanged reacts to gossip: the leader frees a dead worker's slots;
// every node fails the calls it is waiting on that worker for.
func (n *Node) memberChanged(name, status string) {
	if status != rpc.MemberDead && status != rpc.MemberLeft {
		return
	}
	if n.isLeader() {
		if freed := n.ledger.RemoveWorker(name); len(freed) > 0 {
			n.log.Warn("worker gone: slots freed", "worker", name, "status", status, "slots", len(freed))
		}
	}
	n.watch.fail(name, status)
}

// workerWatch tracks the Worker.Run calls a frontend is waiting on, by
// worker, so that a worker's death cancels them.
type workerWatch struct {
	mu    sync.Mutex
	calls map[string]map[*context.CancelCauseFunc]struct{}
}

func newWorkerWatch() *workerWatch {
	return &workerWatch{calls: map[string]map[*context.CancelCauseFunc]struct{}{}}
}

// track returns a context cancelled if worker dies, and a function to call
// when the call is over.
func (w *workerWatch) track(ctx context.Context, worker string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	key := &cancel
	w.mu.Lock()
	if w.calls[worker] == nil {
		w.calls[worker] = map[*context.CancelCauseFunc]struct{}{}
	}
	w.calls[worker][key] = struct{}{}
	w.mu.Unlock()
	return ctx, func() {
		w.mu.Lock()
		delete(w.calls[worker], key)
		w.mu.Unlock()
		cancel(nil)
	}
}

// errWorkerLost is the cause of a call cancelled by its worker's death.
var errWorkerLost = errors.New("worker lost")

func (w *workerWatch) fail(worker, status string) {
	w.mu.Lock()
	calls := w.calls[worker]
	delete(w.calls, worker)
	w.mu.Unlock()
	for c := range calls {
		(*c)(errWorkerLost)
	}
}
