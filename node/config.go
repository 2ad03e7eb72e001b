package node

import (
	"errors"
	"log/slog"
	"net"
	"time"
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
	// bootstraps on first start.
	Dev bool
	// RPCListener is where clients connect. Required: the caller opens it
	// (so a test can pass 127.0.0.1:0).
	RPCListener net.Listener
	// GossipAddr is the memberlist bind address (default 127.0.0.1:0).
	GossipAddr string

	// AccountConcurrency is the most invocations running at once (default
	// 1000, Lambda's account limit).
	AccountConcurrency int
	// SandboxIdleTimeout is how long a warm sandbox is kept (default 10m).
	SandboxIdleTimeout time.Duration
	// SandboxStateDir holds container state (default DataDir/containers).
	SandboxStateDir string

	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		return errors.New("node: DataDir is required")
	}
	if c.RPCListener == nil {
		return errors.New("node: RPCListener is required")
	}
	if !c.Dev {
		return errors.New("node: only --dev nodes exist so far")
	}
	if c.GossipAddr == "" {
		c.GossipAddr = "127.0.0.1:0"
	}
	if c.AccountConcurrency == 0 {
		c.AccountConcurrency = 1000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
