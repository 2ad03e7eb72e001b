package node

import (
	"encoding/base64"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// version is reported in gossip metadata and `cluster members`.
const version = "0.1.0"

// nodeMeta is what a node tells the cluster about itself through gossip.
type nodeMeta struct {
	Roles    []string `msgpack:"roles"`
	RPC      string   `msgpack:"rpc"`
	MemoryMB int      `msgpack:"mem"`
	Version  string   `msgpack:"v"`
	// The log store's client and route addresses (servers only).
	LogsClient string `msgpack:"logs_client,omitempty"`
	LogsRoute  string `msgpack:"logs_route,omitempty"`
	// FSM is the newest FSM command set the node applies
	// (scheduler.FSMVersion); 0 from a release before it was advertised.
	FSM int `msgpack:"fsm,omitempty"`
}

func (m nodeMeta) has(role string) bool {
	for _, r := range m.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// ParseEncryptKey decodes a gossip key given in base64 (16, 24 or 32 bytes).
func ParseEncryptKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("encrypt key: not base64: %w", err)
	}
	if n := len(k); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("encrypt key: %d bytes, want 16, 24 or 32", n)
	}
	return k, nil
}

// membership wraps memberlist: it keeps decoded metadata and the last
// status of every node it has seen (memberlist forgets dead nodes), and
// calls onChange after each event. mu guards seen.
type membership struct {
	ml       *memberlist.Memberlist
	self     nodeMeta
	onChange func(name string, status string)

	mu      sync.Mutex
	seen    map[string]*memberState
	leaving map[string]bool // nodes that announced a graceful leave
}

// leaveMsgPrefix starts the message a node sends every member before a
// graceful leave. memberlist reports a leave and a death alike to the event
// delegate, so the node says which it is itself.
const leaveMsgPrefix = "nimbus-leave:"

type memberState struct {
	meta   nodeMeta
	addr   string // gossip address
	status string
	since  time.Time // when status last changed
}

// openGossip starts memberlist and joins the configured peers.
func (n *Node) openGossip() error {
	host, portStr, err := net.SplitHostPort(n.cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("gossip address: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("gossip port: %w", err)
	}
	var roles []string
	if n.cfg.Server {
		roles = append(roles, rpc.RoleServer)
	}
	if n.cfg.Worker {
		roles = append(roles, rpc.RoleWorker)
	}
	mb := &membership{
		self: nodeMeta{Roles: roles, RPC: n.cfg.Advertise, MemoryMB: n.cfg.MemoryMB, Version: version, FSM: scheduler.FSMVersion,
			LogsClient: n.logRole.clientAddr, LogsRoute: n.logRole.routeAddr},
		seen:     map[string]*memberState{},
		leaving:  map[string]bool{},
		onChange: n.memberChanged,
	}
	mc := memberlist.DefaultLANConfig()
	if n.cfg.FastTimings {
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.GossipInterval = 50 * time.Millisecond
		mc.SuspicionMult = 2
		// The local profile sends each broadcast to only two members per
		// node (RetransmitMult 2): in a five-node test cluster one member
		// misses a restarted node's new address about once in 25 restarts
		// and learns it only at the next push/pull, 15 s later. Send as
		// the LAN profile does, and exchange full state every 2 s.
		mc.RetransmitMult = 4
		mc.PushPullInterval = 2 * time.Second
	}
	mc.Name = n.name
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertiseAddr = host
	mc.AdvertisePort = port
	mc.SecretKey = n.cfg.EncryptKey
	mc.LogOutput = slogWriter{n.log.With("component", "gossip")}
	mc.Delegate = mb
	mc.Events = mb
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	mb.ml = ml
	n.members = mb
	n.closers = append(n.closers, func() error {
		mb.announceLeave(n.name)
		_ = ml.Leave(2 * time.Second)
		return ml.Shutdown()
	})
	if len(n.cfg.Join) > 0 {
		if _, err := ml.Join(n.cfg.Join); err != nil {
			// Peers may not be up yet: the reconnect loop keeps trying.
			n.log.Warn("join failed, retrying", "peers", n.cfg.Join, "err", err)
		}
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		n.reconnectLoop()
	}()
	return nil
}

// reconnectLoop rejoins nodes gossip gave up on. memberlist only talks to
// members it believes alive, so after a partition heals both sides would
// stay apart for good; like serf's reconnect and Consul's retry-join, the
// node periodically joins the failed members' last addresses and its --join
// list while any of them is unaccounted for.
func (n *Node) reconnectLoop() {
	every := 5 * time.Second
	if n.cfg.FastTimings {
		every = 500 * time.Millisecond
	}
	for {
		select {
		case <-n.stopping:
			return
		case <-time.After(every):
		}
		var addrs []string
		for name, st := range n.members.snapshot() {
			if name != n.name && st.status == rpc.MemberDead && st.addr != "" {
				addrs = append(addrs, st.addr)
			}
		}
		if len(addrs) == 0 && n.members.ml.NumMembers() > 1 {
			continue
		}
		addrs = append(addrs, n.cfg.Join...)
		if len(addrs) == 0 {
			continue
		}
		if joined, err := n.members.ml.Join(addrs); err == nil && joined > 0 {
			n.log.Debug("gossip reconnect", "joined", joined)
		}
	}
}

// NodeMeta implements memberlist.Delegate.
func (m *membership) NodeMeta(limit int) []byte {
	b, _ := msgpack.Marshal(&m.self)
	if len(b) > limit {
		return nil
	}
	return b
}
func (m *membership) NotifyMsg(b []byte) {
	if name, ok := strings.CutPrefix(string(b), leaveMsgPrefix); ok {
		m.mu.Lock()
		m.leaving[name] = true
		m.mu.Unlock()
	}
}
func (m *membership) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (m *membership) LocalState(join bool) []byte                { return nil }
func (m *membership) MergeRemoteState(buf []byte, join bool)     {}

// NotifyJoin, NotifyLeave and NotifyUpdate implement memberlist.EventDelegate.
func (m *membership) NotifyJoin(nd *memberlist.Node) {
	m.rejoined(nd.Name)
	m.event(nd, rpc.MemberAlive)
}
func (m *membership) NotifyUpdate(nd *memberlist.Node) { m.event(nd, rpc.MemberAlive) }
func (m *membership) NotifyLeave(nd *memberlist.Node) {
	m.mu.Lock()
	status := rpc.MemberDead
	if m.leaving[nd.Name] {
		status = rpc.MemberLeft
	}
	m.mu.Unlock()
	m.event(nd, status)
}

// NotifyJoin of a node that had announced its leave: it is back.
func (m *membership) rejoined(name string) {
	m.mu.Lock()
	delete(m.leaving, name)
	m.mu.Unlock()
}

// announceLeave tells every member, reliably (TCP), that this node leaves
// on purpose.
func (m *membership) announceLeave(self string) {
	msg := []byte(leaveMsgPrefix + self)
	for _, nd := range m.ml.Members() {
		if nd.Name != self {
			_ = m.ml.SendReliable(nd, msg)
		}
	}
}

func (m *membership) event(nd *memberlist.Node, status string) {
	var meta nodeMeta
	_ = msgpack.Unmarshal(nd.Meta, &meta)
	m.mu.Lock()
	st := m.seen[nd.Name]
	if st == nil {
		st = &memberState{}
		m.seen[nd.Name] = st
	}
	if meta.RPC != "" {
		st.meta = meta
	}
	st.addr = nd.Address()
	if st.status != status {
		st.status = status
		st.since = time.Now()
	}
	m.mu.Unlock()
	if m.onChange != nil {
		go m.onChange(nd.Name, status)
	}
}

// snapshot returns every node seen, with its current status (alive ones as
// memberlist sees them now: alive or suspect).
func (m *membership) snapshot() map[string]memberState {
	states := map[string]string{}
	for _, nd := range m.ml.Members() {
		switch nd.State {
		case memberlist.StateSuspect:
			states[nd.Name] = rpc.MemberSuspect
		case memberlist.StateAlive:
			states[nd.Name] = rpc.MemberAlive
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]memberState, len(m.seen))
	for name, st := range m.seen {
		c := *st
		if s, ok := states[name]; ok && c.status == rpc.MemberAlive {
			c.status = s
		}
		out[name] = c
	}
	return out
}

// alive returns the alive (or suspect) members that have role, sorted by
// name.
func (m *membership) alive(role string) []string {
	var names []string
	for name, st := range m.snapshot() {
		if (st.status == rpc.MemberAlive || st.status == rpc.MemberSuspect) && (role == "" || st.meta.has(role)) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// get returns a member's state.
func (m *membership) get(name string) (memberState, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.seen[name]
	if !ok {
		return memberState{}, false
	}
	return *st, true
}

// rpcAddr returns a member's rpc address.
func (m *membership) rpcAddr(name string) (string, bool) {
	st, ok := m.get(name)
	return st.meta.RPC, ok && st.meta.RPC != ""
}
