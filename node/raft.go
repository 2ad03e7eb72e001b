package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"nimbus/internal/raftstore"
	"nimbus/rpc"
	"nimbus/scheduler"
)

// raftApplyTimeout bounds how long a write waits for its commit.
const raftApplyTimeout = 10 * time.Second

// openRaft opens the durable log (raft-wal, through raftstore) and snapshots in the data dir
// and starts Raft. A dev node bootstraps itself as the single voter on
// first start, on an in-memory transport; a cluster server talks TCP on the
// shared rpc port and bootstraps once BootstrapExpect servers have met
// (bootstrapWhenExpected). Afterwards both recover from disk.
func (n *Node) openRaft() error {
	dir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	store, closeStore, repaired, err := raftstore.Open(filepath.Join(dir, "wal"))
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	if repaired > 0 {
		n.log.Warn("raft log: repaired segments a tail truncation had left unreadable", "segments", repaired)
	}
	n.closers = append(n.closers, closeStore)
	// Recent entries are read back from memory (replication to followers).
	logs, err := raft.NewLogCache(1024, store)
	if err != nil {
		return err
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Info, Output: slogWriter{n.log.With("component", "raft")}})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		return fmt.Errorf("open raft snapshots: %w", err)
	}
	var trans raft.Transport
	if n.cfg.Dev {
		// A single voter talks to no one: an in-memory transport with a
		// fixed address keeps the configuration valid across restarts.
		_, trans = raft.NewInmemTransport(raft.ServerAddress(n.name))
	} else {
		adv, err := net.ResolveTCPAddr("tcp", n.cfg.Advertise)
		if err != nil {
			return fmt.Errorf("advertise address: %w", err)
		}
		layer := &raftLayer{chanListener: n.mux.raft, advertise: adv}
		trans = raft.NewNetworkTransportWithLogger(layer, 3, 10*time.Second, hlog)
	}
	n.raftStores = raftStores{log: logs, stable: store, snaps: snaps, trans: trans}

	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(n.name)
	conf.Logger = hlog
	conf.SnapshotThreshold = 1024
	switch {
	case n.cfg.Dev:
		conf.HeartbeatTimeout = 100 * time.Millisecond
		conf.ElectionTimeout = 100 * time.Millisecond
		conf.LeaderLeaseTimeout = 50 * time.Millisecond
	case n.cfg.FastTimings:
		// Faster than a real cluster's, but with room for a loaded test
		// machine (2 cores, many nodes in one process): a leader lease of
		// 100 ms made leaders step down under load.
		conf.HeartbeatTimeout = 400 * time.Millisecond
		conf.ElectionTimeout = 400 * time.Millisecond
		conf.LeaderLeaseTimeout = 200 * time.Millisecond
	default:
		conf.HeartbeatTimeout = 500 * time.Millisecond
		conf.ElectionTimeout = 500 * time.Millisecond
		conf.LeaderLeaseTimeout = 250 * time.Millisecond
	}

	has, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return err
	}
	if !has && n.cfg.Dev {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: trans.LocalAddr()}}}
		if err := raft.BootstrapCluster(conf, logs, store, snaps, trans, cfg); err != nil {
			return fmt.Errorf("bootstrap raft: %w", err)
		}
	}
	r, err := raft.NewRaft(conf, n.fsm, logs, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	n.closers = append(n.closers, func() error { return r.Shutdown().Error() })
	return nil
}

// raftStores are what bootstrapping needs besides the config.
type raftStores struct {
	log    raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
	trans  raft.Transport
}

// bootstrapWhenExpected waits until BootstrapExpect servers are alive in
// gossip, then writes the first configuration: every server computes the
// same one (the servers sorted by name), as Consul's bootstrap-expect does.
// A server that already has Raft state, or finds a leader, does nothing.
func (n *Node) bootstrapWhenExpected() {
	has, err := raft.HasExistingState(n.raftStores.log, n.raftStores.stable, n.raftStores.snaps)
	if err != nil || has {
		return
	}
	for {
		select {
		case <-n.stopping:
			return
		case <-time.After(100 * time.Millisecond):
		}
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return
		}
		servers := n.members.alive(rpc.RoleServer)
		if len(servers) < n.cfg.BootstrapExpect {
			continue
		}
		var cfg raft.Configuration
		for _, name := range servers {
			addr, ok := n.members.rpcAddr(name)
			if !ok {
				continue
			}
			cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(name), Address: raft.ServerAddress(addr)})
		}
		if len(cfg.Servers) < n.cfg.BootstrapExpect {
			continue
		}
		if err := n.raft.BootstrapCluster(cfg).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.log.Warn("raft bootstrap failed", "err", err)
			continue
		}
		n.log.Info("raft bootstrapped", "servers", servers)
		return
	}
}

// leaveRaft, on a graceful stop, hands leadership to another voter first so
// the cluster does not wait out an election timeout.
func (n *Node) leaveRaft() {
	if n.raft == nil || n.cfg.Dev || n.raft.State() != raft.Leader {
		return
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil && len(f.Configuration().Servers) > 1 {
		// Bounded: with the peers unreachable the transfer cannot finish.
		done := make(chan struct{})
		go func() {
			_ = n.raft.LeadershipTransfer().Error()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
}

// waitLeader waits until this node leads and has established its
// leadership (a dev node always ends up so).
func (n *Node) waitLeader(ctx context.Context) error {
	for !n.isLeader() {
		select {
		case <-ctx.Done():
			return errors.New("no raft leader established in time")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// apply proposes a command and returns the FSM's result. A command newer
// than some server's FSM is refused (see serversSupport).
func (n *Node) apply(cmd scheduler.Command) (scheduler.ApplyResult, error) {
	if err := n.serversSupport(cmd.CommandType()); err != nil {
		return scheduler.ApplyResult{}, err
	}
	data, err := scheduler.EncodeCommand(cmd)
	if err != nil {
		return scheduler.ApplyResult{}, err
	}
	start := time.Now()
	f := n.raft.Apply(data, raftApplyTimeout)
	err = f.Error()
	n.metrics.raftApply.Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			// Never in the log: a forwarder may send it to the new leader.
			e := rpc.Errorf(rpc.CodeService, "no leader to accept the write: %v", err)
			e.Reason = reasonNotLeader
			return scheduler.ApplyResult{}, e
		}
		if errors.Is(err, raft.ErrLeadershipLost) {
			return scheduler.ApplyResult{}, rpc.Errorf(rpc.CodeService, "no leader to accept the write: %v", err)
		}
		return scheduler.ApplyResult{}, rpc.Errorf(rpc.CodeService, "raft: %v", err)
	}
	res, ok := f.Response().(scheduler.ApplyResult)
	if !ok {
		return scheduler.ApplyResult{}, rpc.Errorf(rpc.CodeService, "unexpected apply result %T", f.Response())
	}
	return res, res.Err
}

// slogWriter carries the lines of hclog (Raft) and of memberlist's standard
// logger into the node's slog logger, at the level each line names.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level := slog.LevelInfo
	for _, l := range []struct {
		tag   string
		level slog.Level
	}{{"[TRACE]", slog.LevelDebug - 4}, {"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError}} {
		if i := strings.Index(line, l.tag); i >= 0 {
			level = l.level
			line = strings.TrimSpace(line[i+len(l.tag):])
			break
		}
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}

var _ io.Writer = slogWriter{}
