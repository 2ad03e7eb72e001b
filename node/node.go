package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"nimbus/bundle"
	"nimbus/logstore"
	"nimbus/rpc"
	"nimbus/sandbox"
	"nimbus/scheduler"
)

// Sandboxes runs invocations; *sandbox.Manager is the real one.
type Sandboxes interface {
	Invoke(ctx context.Context, req *sandbox.Request) (*sandbox.Result, error)
	Retire(name string, keep uint64)
	Stats() sandbox.Stats
	WarmKeys() map[string]int
	Close() error
}

// Node is a running agent. Its fields are set in Start and not changed
// afterwards (closers only by Start and Close); each component guards its
// own state. A node without the server role has no Raft and no FSM; one
// without the worker role has no sandboxes.
type Node struct {
	cfg  Config
	name string
	log  *slog.Logger

	fsm        *scheduler.FSM // servers only
	raft       *raft.Raft     // servers only
	raftStores raftStores
	mux        *portMux      // cluster nodes: client rpc, peer rpc and Raft share the port
	peerAuth   *rpc.PeerAuth // cluster nodes: this node on the peer channel
	limiter    *rpc.ConnLimiter
	metrics    *metrics
	members    *membership
	code       *bundle.Store
	logs       *logstore.Store
	logRole    *logsRole
	sandboxes  Sandboxes // workers only
	server     *rpc.Server
	peers      *peerPool
	ledger     *scheduler.Ledger // used while this node leads
	lead       leaderState       // servers: the leadership lifecycle
	work       *workerState      // workers only
	watch      *workerWatch      // frontends: running calls by worker
	asyncFwd   *acceptForwarder  // cluster nodes: accepts forwarded to the leader in batches (async_forward.go)
	// leaderCache is a worker-only node's last known leader address ("" when
	// unknown); servers ask Raft instead.
	leaderCache atomic.Value
	// trees caches the extracted code trees this worker has ready, by
	// digest.
	trees sync.Map
	// codeUses is what a worker-only node's invocations used (code.go).
	codeUses codeUses

	stopping  chan struct{}
	closeOnce sync.Once
	closers   []func() error // run in reverse order by Close
	bg        sync.WaitGroup
}

// Start opens the data dir, starts Raft (servers), gossip, the sandbox
// manager (workers) and the rpc server, and returns once the node serves.
// A dev node also waits until it leads. Close stops it.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, stopping: make(chan struct{})}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if n.name, err = nodeName(cfg); err != nil {
		return nil, err
	}
	n.log = n.log.With("node", n.name)
	if !cfg.Dev {
		n.peerAuth = &rpc.PeerAuth{Key: rpc.PeerKey(cfg.EncryptKey), Name: n.name}
	}
	n.limiter = rpc.NewConnLimiter(cfg.MaxConns, cfg.MaxConnsPerSource, n.log.With("component", "rpc"))
	n.peers = newPeerPool(n.peerAuth)
	n.metrics = newMetrics(n, cfg.MetricsFunctionLimit)
	n.closers = append(n.closers, n.peers.Close)
	n.watch = newWorkerWatch()

	if n.code, err = bundle.OpenStore(filepath.Join(cfg.DataDir, "code")); err != nil {
		return nil, err
	}
	if err := n.openLogs(); err != nil {
		return nil, err
	}

	if cfg.Worker {
		stateDir := cfg.SandboxStateDir
		if stateDir == "" {
			stateDir = filepath.Join(cfg.DataDir, "containers")
		}
		mgr, err := sandbox.NewManager(sandbox.Config{
			StateDir: stateDir,
			ImageDir: filepath.Join(cfg.DataDir, "images"),
			// The sandboxes' /tmp disks: on the data directory's disk,
			// whatever filesystem the state directory is on.
			ScratchDir:   filepath.Join(cfg.DataDir, "scratch"),
			ScratchMaxMB: cfg.SandboxTmpBudgetMB,
			// Runtimes (issue 10): the managed runtimes' image store.
			RuntimeImageDir: cfg.RuntimeImageDir,
			IdleTimeout:     cfg.SandboxIdleTimeout,
			ShellPool:       shellPool(cfg.SandboxShellPool),
			InitHelper:      cfg.SandboxInit,
			ARNs:            cfg.ARNs,
			Logs:            n.logs,
			Logger:          n.log.With("component", "sandbox"),
		})
		if err != nil {
			return nil, fmt.Errorf("sandboxes: %w", err)
		}
		n.sandboxes = mgr
		n.closers = append(n.closers, mgr.Close)
		n.work = newWorkerState()
	}

	rpcListener := cfg.RPCListener
	if !cfg.Dev {
		n.mux = newPortMux(cfg.RPCListener, n.limiter, cfg.Server)
		n.closers = append(n.closers, n.mux.Close)
		rpcListener = n.mux.rpc
	}
	if cfg.Server {
		n.fsm = scheduler.NewFSM(scheduler.FSMOptions{ARNs: cfg.ARNs, OnFunctionChange: n.functionChanged, OnAsyncReady: n.asyncReady,
			OnQueueReady: n.queueReady})
		n.ledger = scheduler.NewLedger(scheduler.LedgerOptions{
			AccountLimit:  cfg.AccountConcurrency,
			RecoveryGrace: 2 * cfg.HeartbeatInterval,
			WorkerTimeout: 5 * cfg.HeartbeatInterval,
		})
		if err := n.openRaft(); err != nil {
			return nil, err
		}
	}

	n.server = rpc.NewServer(rpc.ServerOptions{
		Logger:   n.log.With("component", "rpc"),
		Observe:  n.metrics.observeRPC,
		Limiter:  n.limiter,
		Admitted: n.mux != nil, // the mux admits every connection
	})
	n.registerFunctions()
	n.registerInvoke()
	n.registerLogs()
	n.registerCluster()
	n.registerInternal()
	n.registerAsync()
	if !cfg.Dev {
		n.asyncFwd = newAcceptForwarder(n)
		n.bg.Add(1)
		go func() {
			defer n.bg.Done()
			n.asyncFwd.run()
		}()
	}
	rpc.Handle(n.server, rpc.MethodFunctionMetrics, n.functionMetrics)
	n.registerAccount()
	// Versions, aliases and function URLs (versions.go, urls.go).
	n.registerVersions()
	n.registerURLs()
	// Queues and queue triggers.
	n.registerQueues()
	n.registerTriggers()
	// Runtimes: images and layers (issue 10).
	n.registerImages()
	n.registerLayers()
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		_ = n.server.Serve(rpcListener)
	}()
	if n.mux != nil {
		// Node-to-node calls: only on connections that pass the peer
		// handshake. A dev node serves none.
		n.bg.Add(1)
		go func() {
			defer n.bg.Done()
			_ = n.server.ServePeers(n.mux.peer, n.peerAuth)
		}()
	}
	n.closers = append(n.closers, n.server.Close)

	if err := n.openGossip(); err != nil {
		return nil, err
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		n.sampleLoop()
	}()
	n.startCodeGC()
	if n.raft != nil {
		n.observeLeaders()
	}
	if err := n.startGateway(); err != nil {
		return nil, err
	}
	n.startLogs()
	if cfg.Server {
		n.startLeaderLoop()
		if !cfg.Dev && cfg.BootstrapExpect > 0 {
			n.bg.Add(1)
			go func() {
				defer n.bg.Done()
				n.bootstrapWhenExpected()
			}()
		}
	}
	if cfg.Worker {
		n.startWorkerLoops()
	}
	if cfg.Dev {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := n.waitLeader(wctx); err != nil {
			return nil, err
		}
	}
	n.log.Info("node started", "rpc", n.cfg.Advertise, "gossip", n.cfg.GossipAddr,
		"server", cfg.Server, "worker", cfg.Worker, "data_dir", cfg.DataDir)
	return n, nil
}

// Addr is the rpc address clients dial.
func (n *Node) Addr() string { return n.cfg.Advertise }

// Name is the node's name in Raft and gossip.
func (n *Node) Name() string { return n.name }

// Close leaves the cluster, stops serving, shuts Raft down and destroys
// sandboxes.
func (n *Node) Close() error {
	var errs []error
	n.closeOnce.Do(func() {
		close(n.stopping)
		n.leaveLogs()
		n.leaveRaft()
		for i := len(n.closers) - 1; i >= 0; i-- {
			if err := n.closers[i](); err != nil && !errors.Is(err, raft.ErrRaftShutdown) {
				errs = append(errs, err)
			}
		}
		n.closers = nil
		n.bg.Wait()
	})
	return errors.Join(errs...)
}

// nodeName returns the configured name, or the one kept in the data dir, or
// the host name (which is then kept).
func nodeName(cfg Config) (string, error) {
	path := filepath.Join(cfg.DataDir, "node-name")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		kept := strings.TrimSpace(string(b))
		if cfg.Name != "" && cfg.Name != kept {
			return "", fmt.Errorf("data dir %s belongs to node %q, not %q", cfg.DataDir, kept, cfg.Name)
		}
		return kept, nil
	}
	name := cfg.Name
	if name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "nimbus"
		}
		name = h
	}
	return name, os.WriteFile(path, []byte(name+"\n"), 0o600)
}

// functionChanged follows the registry: warm sandboxes of an old revision
// (or of a deleted function) are retired.
func (n *Node) functionChanged(old, cur *rpc.FunctionConfig) {
	if old != nil && cur == nil {
		n.metrics.fns.forget(old.Name) // a deleted function stops being exported
	}
	if old == nil || n.sandboxes == nil {
		return
	}
	var keep uint64
	if cur != nil {
		keep = cur.Revision
	}
	n.sandboxes.Retire(old.Name, keep)
}
