package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"nimbus/logstore"
	"nimbus/rpc"
	"nimbus/scheduler"
)

// maxLogWaitMs bounds one long poll of Logs.Read; followers poll again.
const maxLogWaitMs = 30_000

// logsRole is a node's part in the log store: every node has a Store (the
// sink its sandboxes write to, and the reader of every function's log);
// servers also run the embedded JetStream server. server is set once by
// the logs loop (cluster servers) or by openLogs (dev); up is closed when
// the loop has started (gossip is open, members may be read). mu guards
// srv and closed.
type logsRole struct {
	clientAddr, routeAddr string // this server's listeners (servers only)
	dir                   string
	up                    chan struct{}

	mu     sync.Mutex
	srv    *logstore.Server
	closed bool
}

// setServer keeps srv, or closes it and reports false when the node is
// closing.
func (r *logsRole) setServer(srv *logstore.Server) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		srv.Close()
		return false
	}
	r.srv = srv
	return true
}

func (r *logsRole) server() *logstore.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv
}

func (r *logsRole) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.srv != nil {
		return r.srv.Close()
	}
	return nil
}

// openLogs opens the node's log Store. A dev node starts its standalone
// JetStream server here; a cluster server starts it from the logs loop
// once gossip has shown enough servers (startLogs).
func (n *Node) openLogs() error {
	r := &logsRole{dir: filepath.Join(n.cfg.DataDir, "jetstream"), up: make(chan struct{})}
	n.logRole = r
	n.closers = append(n.closers, r.close)
	if n.cfg.Server && !n.cfg.Dev {
		var err error
		var gossip string
		if gossip, r.clientAddr, r.routeAddr, err = logAddrs(n.cfg.GossipAddr); err != nil {
			return fmt.Errorf("log store addresses: %w", err)
		}
		n.cfg.GossipAddr = gossip
	}
	if n.cfg.Dev {
		srv, err := logstore.StartServer(n.logServerConfig(nil))
		if err != nil {
			return err
		}
		r.setServer(srv)
	}
	st, err := logstore.Open(logstore.Options{
		Node:          n.name,
		Connect:       n.connectLogs,
		Replicas:      n.logReplicas,
		Pin:           n.logPin,
		BufferBytes:   n.cfg.LogBufferBytes,
		GroupMaxBytes: n.cfg.LogGroupMaxBytes,
		Logger:        n.log.With("component", "logs"),
	})
	if err != nil {
		return err
	}
	n.logs = st
	n.closers = append(n.closers, st.Close)
	return nil
}

func (n *Node) logServerConfig(routes []string) logstore.ServerConfig {
	return logstore.ServerConfig{
		Name:        n.name,
		Dir:         n.logRole.dir,
		Standalone:  n.cfg.Dev,
		ClientAddr:  n.logRole.clientAddr,
		ClusterAddr: n.logRole.routeAddr,
		Routes:      routes,
		Secret:      n.cfg.EncryptKey,
		MaxMemory:   n.cfg.LogMaxMemory,
		MaxStore:    n.cfg.LogMaxStore,
		Logger:      n.log.With("component", "jetstream"),
	}
}

// logAddrs returns the gossip address and the log store's client and route
// addresses: the two ports after a fixed gossip port (rpc PORT+2 and
// PORT+3), or, when the gossip port is 0 (tests), three free ports picked
// together, so that no two of a node's listeners can be handed the same
// port (memberlist binding port 0 after the log ports were picked and
// released could be given one of them, and the log store would then never
// start).
func logAddrs(gossip string) (gossipAddr, client, route string, err error) {
	host, p, err := net.SplitHostPort(gossip)
	if err != nil {
		return "", "", "", err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", "", "", err
	}
	if port != 0 {
		return gossip, net.JoinHostPort(host, strconv.Itoa(port+1)), net.JoinHostPort(host, strconv.Itoa(port+2)), nil
	}
	var addrs [3]string
	for i := range addrs {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", "", "", err
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs[0], addrs[1], addrs[2], nil
}

// startLogs runs, once gossip is open, the loop that starts a cluster
// server's JetStream server and keeps its routes in step with gossip.
func (n *Node) startLogs() {
	close(n.logRole.up)
	if !n.cfg.Server || n.cfg.Dev {
		return
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		n.logsLoop()
	}()
}

// leftRouteGrace is how long a server that left keeps its routes from the
// others. A stopping server announces its leave first and shuts its
// JetStream down only after its rpc, Raft and sandboxes stopped and its
// Store published their last lines; through these routes its shutdown
// hands its leaderships over and tells the others it is gone. Routes
// dropped at its leave lose both: the others then wait out elections, and
// count it online for minutes (JetStream's orphan check).
const leftRouteGrace = 30 * time.Second

// logsLoop starts the embedded server when it may, then sets its routes to
// the route addresses of every server gossip knows (a dead one too, so
// that it is reconnected when it comes back; one that left only for
// leftRouteGrace).
//
// A server with no JetStream state waits, as Raft's bootstrap does, for
// BootstrapExpect servers (2 without it: it joins a running cluster) so
// that JetStream's first leader is elected among all of them.
func (n *Node) logsLoop() {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var srv *logstore.Server
	_, statErr := os.Stat(n.logRole.dir)
	hasState := statErr == nil
	need := n.cfg.BootstrapExpect
	if need == 0 {
		need = 2
	}
	for {
		routes := n.logRoutes()
		// A first start also waits for the scheduler's Raft to elect its
		// first leader, so the two elections do not compete for the CPU.
		if srv == nil && (hasState || len(routes) >= need && n.raftHasLeader()) {
			var err error
			if srv, err = logstore.StartServer(n.logServerConfig(routes)); err != nil {
				n.log.Error("log store server", "err", err)
				srv = nil
			} else if !n.logRole.setServer(srv) {
				return
			}
		} else if srv != nil {
			if err := srv.SetRoutes(routes); err != nil {
				n.log.Warn("log store routes", "err", err)
			}
		}
		select {
		case <-n.stopping:
			return
		case <-tick.C:
		}
	}
}

// leaveLogs takes a stopping server's JetStream out of placement before
// the node announces its leave (logstore.Server.Leave): the others create
// groups R1 once it has left, and one placed on it would be lost with it.
func (n *Node) leaveLogs() {
	if n.logRole == nil {
		return
	}
	if srv := n.logRole.server(); srv != nil {
		if err := srv.Leave(); err != nil {
			n.log.Warn("log store leave", "err", err)
		}
	}
}

func (n *Node) raftHasLeader() bool {
	if n.raft == nil {
		return true
	}
	addr, _ := n.raft.LeaderWithID()
	return addr != ""
}

// logRoutes returns the route addresses of the servers gossip knows
// (this one's included), but not those that left more than
// leftRouteGrace ago.
func (n *Node) logRoutes() []string {
	var out []string
	for _, st := range n.members.snapshot() {
		gone := st.status == rpc.MemberLeft && time.Since(st.since) > leftRouteGrace
		if st.meta.LogsRoute != "" && !gone && st.meta.has(rpc.RoleServer) {
			out = append(out, st.meta.LogsRoute)
		}
	}
	if n.logRole.routeAddr != "" && !contains(out, n.logRole.routeAddr) {
		out = append(out, n.logRole.routeAddr)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// connectLogs is the Store's connector: in process to this node's own
// server, or (worker-only nodes) to the client ports of the servers gossip
// knows. It fails, and is called again, until that is possible.
func (n *Node) connectLogs() (*nats.Conn, error) {
	if n.cfg.Server {
		srv := n.logRole.server()
		if srv == nil {
			return nil, errors.New("log store server not started yet")
		}
		return srv.Connect(n.name)
	}
	select {
	case <-n.logRole.up:
	default:
		return nil, errors.New("gossip not open yet")
	}
	var addrs []string
	for _, st := range n.members.snapshot() {
		if st.meta.LogsClient != "" && (st.status == rpc.MemberAlive || st.status == rpc.MemberSuspect) {
			addrs = append(addrs, st.meta.LogsClient)
		}
	}
	return logstore.ConnectURLs(n.name, addrs, n.cfg.EncryptKey)
}

// logPin is where a new R1 log group goes: a cluster server's own
// JetStream, which is alive while it writes (JetStream's own choice may be
// a server that has just left, see leaveLogs), but not once this node is
// stopping (its server has left placement). A worker-only node has no
// server of its own: it pins to a server that gossip shows alive, so a
// server that has announced its leave gets no new group from it either
// (JetStream alone may place one there before it learns of the leave). A
// dev node lets JetStream choose.
func (n *Node) logPin() string {
	if n.cfg.Dev {
		return ""
	}
	if !n.cfg.Server {
		return n.aliveLogServer()
	}
	select {
	case <-n.stopping:
		return ""
	default:
		return n.name
	}
}

// aliveLogServer picks, at random to spread the groups, a server that
// gossip shows alive (not suspect) and that serves the log store; "" if
// there is none.
func (n *Node) aliveLogServer() string {
	if n.members == nil {
		return ""
	}
	var names []string
	for name, st := range n.members.snapshot() {
		if st.status == rpc.MemberAlive && st.meta.LogsClient != "" && st.meta.has(rpc.RoleServer) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return names[rand.IntN(len(names))]
}

// logReplicas is the replication of a new log group: 3 once three servers
// are alive, else 1.
func (n *Node) logReplicas() int {
	if n.cfg.Dev {
		return 1
	}
	select {
	case <-n.logRole.up:
	default:
		return 1
	}
	if len(n.members.alive(rpc.RoleServer)) >= 3 {
		return 3
	}
	return 1
}

func (n *Node) registerLogs() {
	rpc.Handle(n.server, rpc.MethodLogsRead, n.readLogs)
	rpc.Handle(n.server, rpc.MethodLogsGroups, n.logGroups)
	rpc.Handle(n.server, rpc.MethodLogsPutRetention, n.putRetention)
	rpc.Handle(n.server, rpc.MethodLogsDeleteRetention, n.deleteRetention)
}

// checkLogFunction refuses an unknown function. A server checks the name
// against its replica of the registry, and when its replica does not have
// it asks the leader (a replica may lag: a server that has just restarted
// applies its log only once it hears from the leader); a worker-only node
// has no replica.
func (n *Node) checkLogFunction(ctx context.Context, name string) error {
	if n.fsm == nil {
		return scheduler.ValidateName(name)
	}
	_, err := n.function(name)
	if err == nil || n.isLeader() || !errors.Is(err, rpc.ErrResourceNotFound) {
		return err
	}
	return n.forward(ctx, rpc.MethodFunctionGet, &rpc.GetFunctionRequest{Name: name}, &rpc.FunctionResponse{})
}

// readLogs answers with a function's log from the replicated store: every
// node reads the same streams, so every node gives the same answer.
func (n *Node) readLogs(ctx context.Context, req *rpc.ReadLogsRequest) (*rpc.ReadLogsResponse, error) {
	if err := n.checkLogFunction(ctx, req.FunctionName); err != nil {
		return nil, err
	}
	if req.WaitMs > maxLogWaitMs {
		req.WaitMs = maxLogWaitMs
	}
	return n.logs.Read(ctx, req)
}

func (n *Node) logGroups(ctx context.Context, _ *rpc.LogGroupsRequest) (*rpc.LogGroupsResponse, error) {
	groups, err := n.logs.Groups(ctx)
	if err != nil {
		return nil, err
	}
	return &rpc.LogGroupsResponse{Groups: groups}, nil
}

func (n *Node) putRetention(ctx context.Context, req *rpc.PutRetentionRequest) (*rpc.RetentionResponse, error) {
	if err := n.checkLogFunction(ctx, req.FunctionName); err != nil {
		return nil, err
	}
	if err := logstore.CheckRetentionDays(req.RetentionInDays); err != nil {
		return nil, err
	}
	g, err := n.logs.PutRetention(ctx, req.FunctionName, req.RetentionInDays)
	if err != nil {
		return nil, err
	}
	return &rpc.RetentionResponse{Group: g}, nil
}

func (n *Node) deleteRetention(ctx context.Context, req *rpc.DeleteRetentionRequest) (*rpc.RetentionResponse, error) {
	if err := n.checkLogFunction(ctx, req.FunctionName); err != nil {
		return nil, err
	}
	g, err := n.logs.PutRetention(ctx, req.FunctionName, 0)
	if err != nil {
		return nil, err
	}
	return &rpc.RetentionResponse{Group: g}, nil
}
