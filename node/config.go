package node

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"nimbus/rpc"
)

// Config configures a node. Zero values take the defaults noted.
type Config struct {
	// Name identifies the node in Raft and gossip. Default: the name kept
	// in the data dir from the first start, or the host name.
	Name string
	// DataDir holds Raft's log and snapshots, code bundles, logs and the
	// sandbox image. Required.
	DataDir string
	// Dev runs one node with both roles and a single-voter Raft that it
	// bootstraps on first start, on an in-memory Raft transport.
	Dev bool
	// Server makes the node a Raft voter; Worker makes it run sandboxes.
	// Dev implies both.
	Server, Worker bool
	// RPCListener is where clients (and, on servers, Raft peers) connect.
	// Required: the caller opens it, so a test can pass 127.0.0.1:0.
	RPCListener net.Listener
	// HTTPListener, when set, serves Lambda's REST API (the gateway).
	HTTPListener net.Listener
	// URLDomain, when set, makes function URLs host-based:
	// http://<url-id>.<URLDomain>:<port>/ (a wildcard DNS name for the
	// domain must reach the nodes); else they are path-based,
	// http://<http-addr>/lambda-url/<url-id>/.
	URLDomain string
	// Advertise is the rpc address peers use (default: the listener's).
	Advertise string
	// GossipAddr is the memberlist bind address (default: the rpc IP and
	// port+1; 127.0.0.1:0 for a dev node).
	GossipAddr string
	// Join lists gossip addresses (IP:PORT, or rpc addresses whose port+1
	// is gossip, see JoinAddrs) of nodes to join at start.
	Join []string
	// BootstrapExpect is how many servers must meet before the first Raft
	// configuration is written (servers without Raft state only).
	BootstrapExpect int
	// EncryptKey encrypts gossip (16, 24 or 32 bytes), when set.
	EncryptKey []byte
	// ARNs is the region and account the cluster's ARNs name (--region,
	// --account-id; the zero value: local and 000000000000). Every node of
	// a cluster is given the same.
	ARNs rpc.ARNScope

	// AccountConcurrency is the most invocations running at once in the
	// cluster (default 1000, Lambda's account limit). Read by the leader.
	AccountConcurrency int
	// MemoryMB is what a worker offers sandboxes (default: the host's
	// memory less 1 GiB).
	MemoryMB int
	// SandboxIdleTimeout is how long a warm sandbox is kept (default 10m).
	SandboxIdleTimeout time.Duration
	// SandboxShellPool is how many sandboxes without a function are kept
	// ready per runtime that has had a cold start (sandbox.Config.ShellPool;
	// 0: the default, 2; negative: none).
	SandboxShellPool int
	// SandboxTmpBudgetMB is the most disk all sandboxes' /tmp together may
	// take (sandbox.Config.ScratchMaxMB; 0: half the data disk's free space).
	SandboxTmpBudgetMB int
	// SandboxInit is the nimbus-init binary the sandboxes' container init
	// runs from (sandbox.Config.InitHelper: "" beside this program, "off"
	// this program itself).
	SandboxInit string
	// SandboxStateDir holds container state (default DataDir/containers).
	SandboxStateDir string
	// RuntimeImageDir is the store of managed runtimes' images, built by
	// `nimbus image build` (default sandbox.DefaultImageDir, machine-wide,
	// so images outlive a data dir; issue 10).
	RuntimeImageDir string

	// The log store. LogMaxMemory and LogMaxStore bound the embedded
	// JetStream server (servers only; defaults 64 MiB and 1 TiB, 16 MiB
	// and 512 MiB with FastTimings); LogGroupMaxBytes is a function's log
	// size retention (default 1 GiB, 16 MiB with FastTimings);
	// LogBufferBytes bounds the lines a node holds while the store is slow
	// or away (default 16 MiB).
	LogMaxMemory, LogMaxStore, LogGroupMaxBytes int64
	LogBufferBytes                              int

	// Timings, shortened by tests. Zero takes the default.
	HeartbeatInterval time.Duration // worker -> leader (default 1s)
	DeadServerGrace   time.Duration // a dead server leaves the Raft configuration after this (default 30s)
	FastTimings       bool          // Raft and gossip timings for in-process tests on loopback

	// Async invocation timings (async.go), shortened by tests.
	AsyncRetryBase   time.Duration // a function error is retried after this, then after twice it (default 1m, Lambda's spacing)
	AsyncLeaseMargin time.Duration // a dispatched event's lease: the function's timeout plus this (default 30s)
	AsyncBackoffMin  time.Duration // the first backoff after a system error or throttle; it doubles up to 5m (default 1s)
	// MaxConns and MaxConnsPerSource bound the connections the node's port
	// accepts, in all and from one IP address (0: 4096 and 256).
	MaxConns, MaxConnsPerSource int
	// MetricsFunctionLimit is how many function series (a function, or one
	// of its versions or aliases) the metrics keep apart; the rest share
	// one, "other" (0: 1000).
	MetricsFunctionLimit int

	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		return errors.New("node: DataDir is required")
	}
	if c.RPCListener == nil {
		return errors.New("node: RPCListener is required")
	}
	if c.Dev {
		c.Server, c.Worker = true, true
	}
	arns, err := rpc.NewARNScope(c.ARNs.Region, c.ARNs.Account)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	c.ARNs = arns
	if !c.Server && !c.Worker {
		return errors.New("node: a node needs a role: --server, --worker or both (or --dev)")
	}
	if !c.Dev && len(c.EncryptKey) == 0 {
		return errors.New("node: a cluster node needs the cluster's key (--encrypt KEY, from `nimbus keygen`, the same on every node): it encrypts gossip and authenticates the calls between nodes")
	}
	if c.Advertise == "" {
		c.Advertise = c.RPCListener.Addr().String()
	}
	if c.GossipAddr == "" {
		if c.Dev {
			c.GossipAddr = "127.0.0.1:0"
		} else {
			g, err := GossipAddrFor(c.Advertise)
			if err != nil {
				return err
			}
			c.GossipAddr = g
		}
	}
	if c.AccountConcurrency == 0 {
		c.AccountConcurrency = 1000
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = hostMemoryMB() - 1024
		if c.MemoryMB < 1024 {
			c.MemoryMB = 1024
		}
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.DeadServerGrace == 0 {
		c.DeadServerGrace = 30 * time.Second
	}
	if c.FastTimings {
		// Many in-process test nodes share one small machine.
		c.LogMaxMemory = cmp.Or(c.LogMaxMemory, 16<<20)
		c.LogMaxStore = cmp.Or(c.LogMaxStore, 512<<20)
		c.LogGroupMaxBytes = cmp.Or(c.LogGroupMaxBytes, 16<<20)
	}
	if c.AsyncRetryBase == 0 {
		c.AsyncRetryBase = time.Minute
	}
	if c.AsyncLeaseMargin == 0 {
		c.AsyncLeaseMargin = 30 * time.Second
	}
	if c.AsyncBackoffMin == 0 {
		c.AsyncBackoffMin = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// GossipAddrFor returns the gossip address of a node whose rpc address is
// addr: the same IP, port+1.
func GossipAddrFor(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1)), nil
}

// shellPool is sandbox.Config.ShellPool for Config.SandboxShellPool.
func shellPool(n int) int {
	switch {
	case n == 0:
		return 2
	case n < 0:
		return 0
	}
	return n
}
