package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"nimbus/node"
	"nimbus/rpc"
	"nimbus/sandbox"
)

// defaultPort is the rpc (and Raft) port; gossip uses the next one.
const defaultPort = 8700

func (c *cli) agentCmd() *cobra.Command {
	var (
		dev, server, worker bool
		dataDir, rpcAddr    string
		bind, name          string
		join                []string
		bootstrapExpect     int
		encrypt             string
		region, account     string
		logLevel            string
		idleTimeout         time.Duration
		shellPool           int
		sandboxInit         string
		tmpBudgetMB         int
		asyncRetryBase      time.Duration
		asyncLeaseMargin    time.Duration
		debugAddr           string
		metricsAddr         string
		accountLimit        int
		memoryMB            int
		httpAddr            string
		urlDomain           string // function URLs (versions.go)
		imageDir            string // issue 10
		procs               int
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node",
		Long: "Run a node.\n\n" +
			"  --dev                      one node with both roles and a single-voter Raft; nothing else to configure\n" +
			"  --server --worker --bind IP:PORT --join IP:PORT,... --bootstrap-expect 3\n" +
			"                             a cluster node; rpc and Raft share PORT (default 8700), gossip uses PORT+1,\n" +
			"                             the log store PORT+2 (clients) and PORT+3 (routes between servers)\n" +
			"  --worker --bind IP:PORT --join IP:PORT\n" +
			"                             a worker-only node",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
			if dev || worker {
				// Before anything starts: it may re-execute the agent.
				if err := sandbox.SealSelf(filepath.Join(dataDir, "containers"), log); err != nil {
					log.Warn("the agent's binary is copied at every sandbox start", "err", err)
				}
			}
			if procs < 0 {
				return fmt.Errorf("--gomaxprocs: %d is negative", procs)
			}
			if procs > 0 || os.Getenv("GOMAXPROCS") == "" { // an operator's GOMAXPROCS stands unless the flag overrides it
				runtime.GOMAXPROCS(agentProcs(procs, runtime.GOMAXPROCS(0), dev || worker))
			}
			arns, err := rpc.NewARNScope(region, account)
			if err != nil {
				return fmt.Errorf("--region, --account-id: %w", err)
			}
			cfg := node.Config{
				ARNs:               arns,
				Name:               name,
				DataDir:            dataDir,
				Dev:                dev,
				Server:             server,
				Worker:             worker,
				BootstrapExpect:    bootstrapExpect,
				AccountConcurrency: accountLimit,
				MemoryMB:           memoryMB,
				SandboxIdleTimeout: idleTimeout,
				SandboxShellPool:   noneIfZero(shellPool),
				SandboxTmpBudgetMB: tmpBudgetMB,
				SandboxInit:        sandboxInit,
				AsyncRetryBase:     asyncRetryBase,
				AsyncLeaseMargin:   asyncLeaseMargin,
				Logger:             log,
				RuntimeImageDir:    imageDir,
			}
			listen := rpcAddr
			if !dev {
				if !server && !worker {
					return fmt.Errorf("give a role: --server, --worker, or both (or --dev for a single dev node)")
				}
				if bind == "" {
					return fmt.Errorf("--bind IP:PORT is required for a cluster node")
				}
				listen = withPort(bind)
				cfg.Advertise = listen
				for _, j := range join {
					for _, a := range strings.Split(j, ",") {
						if a = strings.TrimSpace(a); a == "" {
							continue
						}
						g, err := node.GossipAddrFor(withPort(a))
						if err != nil {
							return fmt.Errorf("--join %s: %w", a, err)
						}
						cfg.Join = append(cfg.Join, g)
					}
				}
				if encrypt != "" {
					key, err := node.ParseEncryptKey(encrypt)
					if err != nil {
						return err
					}
					cfg.EncryptKey = key
				}
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("rpc listener: %w", err)
			}
			cfg.RPCListener = ln
			cfg.URLDomain = urlDomain
			if cfg.HTTPListener, err = listenHTTP(httpAddr, dev, listen); err != nil {
				if httpAddr != "" {
					ln.Close()
					return err
				}
				// The default address is a convenience: a busy port is no
				// reason not to run (say so, and serve rpc alone).
				log.Warn("Lambda REST API off: its default address is not free (set --http-addr)", "err", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			n, err := node.Start(ctx, cfg)
			if err != nil {
				ln.Close()
				if cfg.HTTPListener != nil {
					cfg.HTTPListener.Close()
				}
				return err
			}
			explicit := cmd.Flags().Changed("metrics-addr")
			if !explicit && dev {
				metricsAddr = defaultDevMetricsAddr
			}
			if metricsAddr != "" {
				if err := serveMetrics(ctx, metricsAddr, n.MetricsHandler(), log); err != nil {
					if explicit {
						n.Close()
						return err
					}
					// The dev default is a convenience: a busy port is no reason not to run.
					log.Warn("metrics not served", "err", err)
				}
			}
			if debugAddr != "" {
				if err := serveDebug(ctx, debugAddr, log); err != nil {
					n.Close()
					return err
				}
			}
			fmt.Fprintf(c.stderr, "nimbus agent %s serving on %s (data dir %s)\n", n.Name(), n.Addr(), dataDir)
			if a := n.HTTPAddr(); a != "" {
				fmt.Fprintf(c.stderr, "Lambda REST API on http://%s\n", a)
			}
			<-ctx.Done()
			log.Info("shutting down")
			return n.Close()
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dev, "dev", false, "one node with both roles and a single-voter Raft")
	f.BoolVar(&server, "server", false, "be a Raft voter (1, 3 or 5 per cluster)")
	f.BoolVar(&worker, "worker", false, "run sandboxes")
	f.StringVar(&dataDir, "data-dir", "/var/lib/nimbus", "where Raft, code, logs and the sandbox image are kept")
	f.StringVar(&imageDir, "image-dir", sandbox.DefaultImageDir, "the managed runtimes' images (nimbus image build), shared by the machine's agents")
	f.StringVar(&httpAddr, "http-addr", "", "IP:PORT of Lambda's REST API, or off (default: 127.0.0.1:9000 with --dev, the --bind IP at port 9000 in a cluster)")
	f.StringVar(&urlDomain, "url-domain", "", "serve function URLs host-based, as http://<url-id>.DOMAIN:PORT/ (a wildcard DNS name must reach the nodes); default: path-based, http://HTTP-ADDR/lambda-url/<url-id>/")
	f.StringVar(&rpcAddr, "rpc-addr", "127.0.0.1:8700", "address clients connect to (--dev)")
	f.StringVar(&bind, "bind", "", "IP:PORT of this node: rpc and Raft on PORT, gossip on PORT+1")
	f.StringSliceVar(&join, "join", nil, "IP:PORT of nodes to join (comma-separated or repeated)")
	f.IntVar(&bootstrapExpect, "bootstrap-expect", 0, "servers to wait for before the first Raft election")
	f.StringVar(&region, "region", rpc.DefaultRegion, "the region in the cluster's ARNs and functions' AWS_REGION (us-east-1, or local), the same on every node")
	f.StringVar(&account, "account-id", rpc.DefaultAccount, "the account id in the cluster's ARNs (twelve digits), the same on every node")
	f.StringVar(&encrypt, "encrypt", "", "the cluster key, required on cluster nodes: base64 (16, 24 or 32 bytes), the same on every node; it encrypts gossip and authenticates node-to-node calls (see `nimbus keygen`)")
	f.StringVar(&name, "name", "", "node name (default: the one kept in the data dir, else the host name)")
	f.IntVar(&accountLimit, "account-concurrency", 1000, "invocations running at once in the cluster (read by the leader)")
	f.IntVar(&memoryMB, "memory", 0, "memory in MB this worker offers sandboxes (default: the host's less 1 GiB)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.IntVar(&procs, "gomaxprocs", 0, "threads running the agent's Go code at once (0: the GOMAXPROCS variable if set; else on a worker half the CPUs the agent may use, at least 1, and all of them on a server-only node)")
	f.StringVar(&debugAddr, "debug-addr", "", "serve Go's pprof profiles on this address (off when empty)")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (off when empty; "+defaultDevMetricsAddr+" with --dev)")
	f.DurationVar(&idleTimeout, "sandbox-idle-timeout", 10*time.Minute, "how long an unused warm sandbox is kept")
	f.IntVar(&tmpBudgetMB, "sandbox-tmp-budget", 0, "MB of the data directory's disk all sandboxes' /tmp together may take (default: half its free space at start)")
	f.IntVar(&shellPool, "sandbox-pool", 2, "sandboxes without a function kept ready per runtime in use, so that a cold start only mounts the code and starts the runtime (0: none)")
	f.StringVar(&sandboxInit, "sandbox-init", "", "the nimbus-init binary that sets each sandbox up (default: the one beside this binary; off: this binary itself, about twice the CPU per sandbox start)")
	f.DurationVar(&asyncRetryBase, "async-retry-base", time.Minute, "an async event's function error is retried after this, then after twice it")
	f.DurationVar(&asyncLeaseMargin, "async-lease-margin", 30*time.Second, "a dispatched async event's lease is the function's timeout plus this")
	return cmd
}

// agentProcs is the agent's GOMAXPROCS: the --gomaxprocs given, or by
// default, on a worker, half of cpus (the CPUs the Go runtime found it may
// use), at least 1. A worker's own work per invocation is mostly system
// calls and goroutine hand-offs; with a P for every CPU, each hand-off to
// a goroutine while a P is idle wakes a thread that then finds little to
// do, and the sandboxes' functions need those CPUs. On the 2-core machine
// of docs/BENCHMARKS.md one P instead of two cut the agent's CPU per warm
// invocation by 16-51% and one caller's p50 by 7-45%, and left 16 callers'
// throughput within the noise (-6% to +22%) (docs/ARCHITECTURE.md,
// Sandboxes). A server-only node keeps them all.
func agentProcs(flag, cpus int, worker bool) int {
	if flag > 0 {
		return flag
	}
	if !worker {
		return cpus
	}
	return max(1, cpus/2)
}

// withPort adds the default port to an address given as a bare IP.
func withPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(addr, strconv.Itoa(defaultPort))
}

func (c *cli) keygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new random key for --encrypt",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, base64.StdEncoding.EncodeToString(key))
			return nil
		},
	}
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

// noneIfZero turns a flag's 0 ("none") into node.Config's negative, whose
// 0 means the default.
func noneIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
