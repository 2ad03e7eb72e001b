package node

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// Leadership is a lifecycle, as Nomad's and Consul's servers run it:
//
//	follower --Raft elects us--> elected --barrier applied--> established --Raft demotes us--> follower
//	                                |                              |
//	                                +-----(demoted first)----------+--> revokeLeadership
//
// While elected but not established this server's FSM may lack entries
// that earlier leaders committed, so it serves no read, grants no slot and
// runs no leader subsystem: isLeader is false and requests wait in forward
// until the barrier has been applied. establishLeadership then resets the
// ledger (rebuilt from worker heartbeats) and starts the leader-only
// subsystems (the reconcile loop, the async dispatcher); revokeLeadership
// stops them and waits for them to end.

// leaderState is the lifecycle's state on a server. ready is set only
// while this server is established; stop and wg belong to the leader loop
// goroutine, which alone calls establishLeadership and revokeLeadership.
type leaderState struct {
	ready atomic.Bool
	stop  chan struct{} // closed by revokeLeadership; nil while not leading
	wg    sync.WaitGroup
	// async is the dispatcher and accepts the accept group commit, while
	// established; the FSM's OnAsyncReady wakes the dispatcher.
	async   atomic.Pointer[dispatcher]
	accepts atomic.Pointer[groupCommit[scheduler.AsyncEvent]]
	// queues is the queue subsystem (queue_leader.go) and triggers the
	// queue trigger pollers (trigger_poller.go), while established.
	queues   atomic.Pointer[queueLeader]
	triggers atomic.Pointer[pollers]
}

// establishLeadership runs on gaining leadership, in its own goroutine: it
// waits for a barrier (every entry committed by earlier terms applied),
// then rebuilds soft state and starts the leader subsystems. It returns
// early, establishing nothing, if stop closes first.
func (n *Node) establishLeadership(stop chan struct{}, previous raft.ServerID) {
	for {
		err := n.raft.Barrier(raftApplyTimeout).Error()
		if err == nil {
			break
		}
		n.log.Warn("leadership barrier failed", "err", err)
		select {
		case <-stop:
			return
		case <-n.stopping:
			return
		case <-time.After(100 * time.Millisecond):
		}
		if n.raft.State() != raft.Leader {
			return
		}
	}
	select {
	case <-stop:
		return
	default:
	}
	// The ledger waits for every live worker's report of its running slots
	// before granting. The previous leader lost the election because a
	// majority could not reach it: waiting for its report would only
	// stretch the failover, and its slots are as unknown after the wait as
	// before it.
	var known []string
	for _, w := range n.members.alive(rpc.RoleWorker) {
		if w != string(previous) || previous == raft.ServerID(n.name) {
			known = append(known, w)
		}
	}
	n.ledger.Reset(known)
	accepts := newAcceptCommit(n)
	n.lead.accepts.Store(accepts)
	n.lead.wg.Add(1)
	go func() {
		defer n.lead.wg.Done()
		accepts.run(stop)
	}()
	// Queues: their group commits and sweeper start with the accepts, so
	// that a send or receive served once ready finds them.
	queues := newQueueLeader(n, stop)
	n.lead.queues.Store(queues)
	n.lead.wg.Add(1)
	go func() {
		defer n.lead.wg.Done()
		queues.run()
	}()
	n.lead.ready.Store(true)
	n.log.Info("leadership established", "previous_leader", previous)
	n.heartbeatSoon()

	n.lead.wg.Add(1)
	go func() {
		defer n.lead.wg.Done()
		n.reconcileLoop(stop)
	}()
	d := newDispatcher(n)
	n.lead.async.Store(d)
	n.lead.wg.Add(1)
	go func() {
		defer n.lead.wg.Done()
		d.run(stop)
	}()
	// Queue triggers: their pollers, after the barrier like the
	// dispatcher.
	p := newPollers(n, queues, stop)
	n.lead.triggers.Store(p)
	n.lead.wg.Add(1)
	go func() {
		defer n.lead.wg.Done()
		p.run()
	}()
}

// startLeadership begins a term: establishLeadership runs in the
// background so that the leader loop keeps following Raft.
func (n *Node) startLeadership(previous raft.ServerID) {
	stop := make(chan struct{})
	n.lead.stop = stop
	n.lead.wg.Add(1)
	go func() {
		defer n.lead.wg.Done()
		n.establishLeadership(stop, previous)
	}()
}

// revokeLeadership ends a term: nothing is served as leader from here on,
// and the subsystems stop before it returns.
func (n *Node) revokeLeadership() {
	n.lead.ready.Store(false)
	if n.lead.stop == nil {
		return
	}
	close(n.lead.stop)
	n.lead.wg.Wait()
	n.lead.stop = nil
	n.lead.async.Store(nil)
	n.lead.accepts.Store(nil)
	n.lead.queues.Store(nil)
	n.lead.triggers.Store(nil)
}

// asyncReady is the FSM's OnAsyncReady: it wakes the dispatcher, if this
// server runs one.
func (n *Node) asyncReady() {
	if d := n.lead.async.Load(); d != nil {
		d.poke()
	}
}

// serversSupport refuses a command that some server of the Raft
// configuration may not apply: every server must advertise, in gossip, an
// FSM version at least the command's. Commands of the first version are
// known to every release.
func (n *Node) serversSupport(t scheduler.CommandType) error {
	need := scheduler.CommandVersion(t)
	if need <= 1 {
		return nil
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return rpc.Errorf(rpc.CodeService, "raft configuration: %v", err)
	}
	for _, s := range f.Configuration().Servers {
		st, ok := n.members.get(string(s.ID))
		if !ok || st.meta.FSM < need {
			have := 0
			if ok {
				have = st.meta.FSM
			}
			return rpc.Errorf(rpc.CodeService,
				"server %s does not yet apply %s (it advertises FSM version %d, %d is needed): upgrade every server first", s.ID, t, have, need)
		}
	}
	return nil
}
