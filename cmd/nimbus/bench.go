package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

// Benchmarks are programs that print numbers; they never assert.

func (c *cli) benchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure invoke latency and throughput against a node"}
	cmd.AddCommand(c.benchWarmCmd(), c.benchColdCmd(), c.benchGatewayCmd(), c.benchAsyncCmd(), c.benchAsyncStartCmd(), c.benchLogsCmd())
	cmd.AddCommand(c.benchQueueCmd(), c.benchQueueTriggerCmd()) // queues (bench_queue.go)
	cmd.AddCommand(c.benchFloorsCmd())                          // the machine's floors (bench_floors.go)
	return cmd
}

// latencies summarises a set of round-trip times.
type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(float64(len(l)-1) * p)
	return l[i]
}

func (c *cli) printLatencies(label string, l latencies, elapsed time.Duration, errs, throttled int64) {
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64) }
	fmt.Fprintf(c.stdout, "%s: n=%d p50=%sms p90=%sms p99=%sms max=%sms", label, len(l),
		ms(l.pct(0.5)), ms(l.pct(0.9)), ms(l.pct(0.99)), ms(l.pct(1)))
	if elapsed > 0 {
		fmt.Fprintf(c.stdout, " throughput=%.0f/s", float64(len(l))/elapsed.Seconds())
	}
	fmt.Fprintf(c.stdout, " errors=%d throttled=%d\n", errs, throttled)
}

func (c *cli) benchWarmCmd() *cobra.Command {
	var (
		function    string
		concurrency int
		duration    time.Duration
		warmup      int
		payload     string
		addrs       []string
	)
	cmd := &cobra.Command{
		Use:   "warm",
		Short: "Warm invoke round trips: latency percentiles and throughput",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := context.Background()
			if len(addrs) == 0 {
				addrs = []string{c.addr}
			}
			clients, closeAll, err := dialClients(ctx, addrs, concurrency)
			if err != nil {
				return err
			}
			defer closeAll()
			req := &rpc.InvokeRequest{FunctionName: function, Payload: []byte(payload)}
			// Warm up: enough concurrent calls to start one sandbox per caller.
			var wg sync.WaitGroup
			for _, cl := range clients {
				wg.Add(1)
				go func(cl *rpc.Client) {
					defer wg.Done()
					for i := 0; i < warmup; i++ {
						_, _ = cl.Invoke(ctx, req)
					}
				}(cl)
			}
			wg.Wait()

			all, elapsed, errs, throttled := closedLoop(len(clients), duration, func(i int) outcome {
				res, err := clients[i].Invoke(ctx, req)
				switch {
				case errors.Is(err, rpc.ErrTooManyRequests):
					return callThrottled
				case err != nil || res.FunctionError != "":
					return callFailed
				}
				return callOK
			})
			c.printLatencies(fmt.Sprintf("warm %s concurrency=%d", function, concurrency), all, elapsed, errs, throttled)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&function, "function", "hello", "function to invoke (deployed already)")
	f.IntVar(&concurrency, "concurrency", 1, "concurrent callers, each on its own connection")
	f.DurationVar(&duration, "duration", 10*time.Second, "how long to measure")
	f.IntVar(&warmup, "warmup", 50, "invocations per caller before measuring")
	f.StringVar(&payload, "payload", `{"name":"bench"}`, "event")
	f.StringSliceVar(&addrs, "addrs", nil, "spread the callers over these nodes (default: --addr)")
	return cmd
}

func (c *cli) benchColdCmd() *cobra.Command {
	var (
		function string
		count    int
		payload  string
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "cold",
		Short: "Cold starts: invoke with no warm sandbox, to response",
		Long: "Each round changes the function's environment (a new revision, so no warm\n" +
			"sandbox fits) and then times one invocation, which must start a sandbox.\n" +
			"--interval waits between rounds, untimed: the node's pool of ready sandbox\n" +
			"shells fills again, as it does when cold starts come slower than it makes them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := context.Background()
			cl, err := c.client(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			var all latencies
			var errs int64
			for i := 0; i < count; i++ {
				if i > 0 {
					time.Sleep(interval)
				}
				env := map[string]string{"NIMBUS_BENCH_ROUND": strconv.Itoa(i)}
				if _, err := cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: function, Env: env}); err != nil {
					return err
				}
				t0 := time.Now()
				res, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: function, Payload: []byte(payload)})
				d := time.Since(t0)
				if err != nil || res.FunctionError != "" {
					errs++
					continue
				}
				all = append(all, d)
			}
			c.printLatencies("cold "+function, all, 0, errs, 0)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&function, "function", "hello", "function to invoke (deployed already)")
	f.IntVar(&count, "count", 30, "cold starts to measure")
	f.StringVar(&payload, "payload", `{"name":"bench"}`, "event")
	f.DurationVar(&interval, "interval", 0, "pause between rounds, not timed")
	return cmd
}
