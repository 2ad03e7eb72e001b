package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"nimbus/node"
)

func (c *cli) agentCmd() *cobra.Command {
	var (
		dev         bool
		dataDir     string
		rpcAddr     string
		name        string
		logLevel    string
		idleTimeout time.Duration
		debugAddr   string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node",
		Long: "Run a node. With --dev: one node with the server and worker roles and a\n" +
			"single-voter Raft bootstrapped in its data dir; no other configuration needed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
			if !dev {
				return fmt.Errorf("only --dev is supported so far: nimbus agent --dev")
			}
			ln, err := net.Listen("tcp", rpcAddr)
			if err != nil {
				return fmt.Errorf("rpc listener: %w", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			n, err := node.Start(ctx, node.Config{
				Name:               name,
				DataDir:            dataDir,
				Dev:                true,
				RPCListener:        ln,
				SandboxIdleTimeout: idleTimeout,
				Logger:             log,
			})
			if err != nil {
				ln.Close()
				return err
			}
			if debugAddr != "" {
				if err := serveDebug(ctx, debugAddr, log); err != nil {
					n.Close()
					return err
				}
			}
			fmt.Fprintf(c.stderr, "nimbus agent %s serving on %s (data dir %s)\n", n.Name(), n.Addr(), dataDir)
			<-ctx.Done()
			log.Info("shutting down")
			return n.Close()
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dev, "dev", false, "one node with both roles and a single-voter Raft")
	f.StringVar(&dataDir, "data-dir", "/var/lib/nimbus", "where Raft, code, logs and the sandbox image are kept")
	f.StringVar(&rpcAddr, "rpc-addr", defaultAddr, "address clients connect to")
	f.StringVar(&name, "name", "", "node name (default: the one kept in the data dir, else the host name)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&debugAddr, "debug-addr", "", "serve Go's pprof profiles on this address (off when empty)")
	f.DurationVar(&idleTimeout, "sandbox-idle-timeout", 10*time.Minute, "how long an unused warm sandbox is kept")
	return cmd
}

// serveDebug serves net/http/pprof's handlers on addr until ctx ends.
func serveDebug(ctx context.Context, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("debug listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Warn("debug server stopped", "err", err)
		}
	}()
	return nil
}
