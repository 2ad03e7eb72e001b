package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
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
	Close() error
}

// Node is a running agent. Its fields are set in Start and not changed
// afterwards; each component guards its own state.
type Node struct {
	cfg  Config
	name string
	log  *slog.Logger

	fsm       *scheduler.FSM
	raft      *raft.Raft
	gossip    *memberlist.Memberlist
	code      *bundle.Store
	logs      *logstore.Store
	sandboxes Sandboxes
	server    *rpc.Server
	slots     chan struct{} // account concurrency: one token per running invocation

	closers []func() error // run in reverse order by Close
	served  chan error
}

// Start opens the data dir, starts Raft, gossip, the sandbox manager and the
// rpc server, and returns once the node serves. Close stops it.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if n.name, err = nodeName(cfg); err != nil {
		return nil, err
	}
	n.log = n.log.With("node", n.name)
	n.slots = make(chan struct{}, cfg.AccountConcurrency)

	if n.code, err = bundle.OpenStore(filepath.Join(cfg.DataDir, "code")); err != nil {
		return nil, err
	}
	if n.logs, err = logstore.Open(filepath.Join(cfg.DataDir, "logs"), logstore.Options{}); err != nil {
		return nil, err
	}
	n.closers = append(n.closers, n.logs.Close)

	stateDir := cfg.SandboxStateDir
	if stateDir == "" {
		stateDir = filepath.Join(cfg.DataDir, "containers")
	}
	mgr, err := sandbox.NewManager(sandbox.Config{
		StateDir:    stateDir,
		ImageDir:    filepath.Join(cfg.DataDir, "images"),
		IdleTimeout: cfg.SandboxIdleTimeout,
		Logs:        n.logs,
		Logger:      n.log.With("component", "sandbox"),
	})
	if err != nil {
		return nil, fmt.Errorf("sandboxes: %w", err)
	}
	n.sandboxes = mgr
	n.closers = append(n.closers, mgr.Close)

	n.fsm = scheduler.NewFSM(scheduler.FSMOptions{OnFunctionChange: n.functionChanged})
	if err := n.openRaft(); err != nil {
		return nil, err
	}
	if err := n.openGossip(); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.waitLeader(wctx); err != nil {
		return nil, err
	}

	n.server = rpc.NewServer(rpc.ServerOptions{Logger: n.log.With("component", "rpc")})
	n.registerFunctions()
	n.registerInvoke()
	n.registerLogs()
	go func() { n.served <- n.server.Serve(cfg.RPCListener) }()
	n.closers = append(n.closers, n.server.Close)
	n.log.Info("node started", "rpc", cfg.RPCListener.Addr().String(), "data_dir", cfg.DataDir)
	return n, nil
}

// Addr is the rpc address clients dial.
func (n *Node) Addr() string { return n.cfg.RPCListener.Addr().String() }

// Name is the node's name in Raft and gossip.
func (n *Node) Name() string { return n.name }

// Close stops serving, shuts Raft and gossip down, and destroys sandboxes.
func (n *Node) Close() error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	n.closers = nil
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

// openGossip starts memberlist. A dev node is a cluster of one; its
// metadata already says what peers will need.
func (n *Node) openGossip() error {
	host, portStr, err := net.SplitHostPort(n.cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("gossip address: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("gossip port: %w", err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = n.name
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertiseAddr = host
	mc.AdvertisePort = port
	mc.LogOutput = slogWriter{n.log.With("component", "gossip")}
	mc.Delegate = &gossipDelegate{meta: n.meta()}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	n.gossip = ml
	n.closers = append(n.closers, func() error {
		_ = ml.Leave(time.Second)
		return ml.Shutdown()
	})
	return nil
}

// meta is the node's gossip metadata: roles and rpc address.
func (n *Node) meta() []byte {
	return []byte("roles=server,worker;rpc=" + n.cfg.RPCListener.Addr().String())
}

type gossipDelegate struct{ meta []byte }

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return d.meta[:limit]
	}
	return d.meta
}
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// functionChanged follows the registry: warm sandboxes of an old revision
// (or of a deleted function) are retired.
func (n *Node) functionChanged(old, cur *rpc.FunctionConfig) {
	if old == nil {
		return
	}
	var keep uint64
	if cur != nil {
		keep = cur.Revision
	}
	n.sandboxes.Retire(old.Name, keep)
}
