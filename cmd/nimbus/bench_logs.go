package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"nimbus/logstore"
	"nimbus/node"
	"nimbus/rpc"
)

// benchLogsCmd measures the log store of a running cluster as a worker-only
// node uses it: it publishes lines to the servers' JetStream client ports
// (rpc port + 2) with the cluster's key, the way a worker ships its
// sandboxes' lines, and reports the acknowledged MB/s; then it measures
// `logs tail --follow`'s latency: a line appended, one at a time, until a
// long poll through --addr returns it.
func (c *cli) benchLogsCmd() *cobra.Command {
	var (
		servers   []string
		encrypt   string
		functions int
		lines     int
		function  string
		follows   int
		window    int
	)
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Log store ingestion (MB/s acknowledged) and follow latency on a running cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := context.Background()
			var key []byte
			if encrypt != "" {
				var err error
				if key, err = node.ParseEncryptKey(encrypt); err != nil {
					return err
				}
			}
			st, err := logstore.Open(logstore.Options{
				Node: "bench", BufferBytes: 64 << 20, Replicas: func() int { return min(3, len(servers)) }, PublishWindow: window,
				Connect: func() (*nats.Conn, error) { return logstore.ConnectURLs("bench", servers, key) },
			})
			if err != nil {
				return err
			}
			defer st.Close()
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			err = st.WaitReady(rctx)
			cancel()
			if err != nil {
				return fmt.Errorf("log store: %w", err)
			}
			if lines > 0 {
				if err := c.benchIngest(st, functions, lines); err != nil {
					return err
				}
			}
			if follows > 0 {
				return c.benchFollow(ctx, st, function, follows)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&servers, "servers", nil, "the servers' log store client addresses, IP:PORT (rpc port + 2)")
	f.StringVar(&encrypt, "encrypt", "", "the cluster key (--encrypt of the agents)")
	f.IntVar(&functions, "functions", 4, "log groups written at once")
	f.IntVar(&lines, "lines", 1_000_000, "lines to publish (about 150 bytes each); 0 skips ingestion")
	f.StringVar(&function, "function", "hello", "a deployed function whose log the follow measurement writes to")
	f.IntVar(&follows, "follow", 200, "lines to follow one at a time; 0 skips the follow measurement")
	f.IntVar(&window, "window", 0, "batches per log group awaiting acknowledgement at once (0: the log store's default; 1: one at a time)")
	cmd.MarkFlagRequired("servers")
	return cmd
}

func (c *cli) benchIngest(st *logstore.Store, functions, n int) error {
	pool := make([]string, 4096)
	size := 0
	for i := range pool {
		pool[i] = logstore.SampleLine(i)
		size += len(pool[i])
	}
	avg := float64(size) / float64(len(pool))
	names := make([]string, functions)
	warm := st.Stats().Published
	for i := range names {
		names[i] = "benchlogs" + strconv.Itoa(i)
		if err := st.Append(names[i], rpc.LogEvent{TimeMs: 1, Line: "warm-up"}); err != nil {
			return err
		}
	}
	if err := waitPublished(st, warm+uint64(functions), time.Minute); err != nil {
		return err
	}
	base, drops := st.Stats().Published, st.Stats().Dropped
	now := time.Now().UnixMilli()
	start := time.Now()
	cpu0, cpuOK := processCPU()
	for i := 0; i < n; i++ {
		// Stay under the buffer bound: this measures the store, not drops.
		for st.Stats().Buffered > 32<<20 {
			time.Sleep(100 * time.Microsecond)
		}
		st.Append(names[i%functions], rpc.LogEvent{TimeMs: now, RequestID: "6f1c2a4e-0000-4d2b-9b7e-000000000000", Line: pool[i%len(pool)]})
	}
	if err := waitPublished(st, base+uint64(n), 10*time.Minute); err != nil {
		return err
	}
	wall := time.Since(start)
	cpu1, _ := processCPU()
	mb := avg * float64(n) / 1e6
	cores := "not measured"
	if cpuOK {
		cores = fmt.Sprintf("%.2f cores", (cpu1-cpu0).Seconds()/wall.Seconds())
	}
	stats := st.Stats()
	fmt.Fprintf(c.stdout, "logs ingest: functions=%d lines=%d avg=%.0fB %.1f MB in %v: %.1f MB/s acknowledged, dropped=%d; the publisher (this process, appending and shipping): %s, %d batches, %d published again\n",
		functions, n, avg, mb, wall.Round(time.Millisecond), mb/wall.Seconds(), stats.Dropped-drops, cores, stats.Batches, stats.Republished)
	return nil
}

func waitPublished(st *logstore.Store, want uint64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for st.Stats().Published < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("log store: %d of %d lines acknowledged after %v", st.Stats().Published, want, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func (c *cli) benchFollow(ctx context.Context, st *logstore.Store, function string, n int) error {
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	// The cursor at the end of the log.
	req := &rpc.ReadLogsRequest{FunctionName: function, SinceMs: time.Now().UnixMilli(), Limit: 1000}
	for {
		res, err := cl.ReadLogs(ctx, req)
		if err != nil {
			return err
		}
		req.After = res.Next
		if !res.More {
			break
		}
	}
	var all latencies
	for i := 0; i < n; i++ {
		mark := fmt.Sprintf("bench-follow %d %d", i, time.Now().UnixNano())
		start := time.Now()
		if err := st.Append(function, rpc.LogEvent{TimeMs: time.Now().UnixMilli(), Line: mark}); err != nil {
			return err
		}
		for found := false; !found; {
			req.WaitMs = 5000
			res, err := cl.ReadLogs(ctx, req)
			if err != nil {
				return err
			}
			req.After = res.Next
			for _, e := range res.Events {
				found = found || strings.TrimSpace(e.Line) == mark
			}
			if time.Since(start) > time.Minute {
				return fmt.Errorf("line %d not followed after a minute", i)
			}
		}
		all = append(all, time.Since(start))
	}
	c.printLatencies(fmt.Sprintf("logs follow %s (append to long-poll return through %s)", function, c.addr), all, 0, 0, 0)
	return nil
}
