package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

// benchAsyncCmd measures Event accepts: closed-loop callers, each on its own
// connection, for --duration; it prints the accept latency (request to 202,
// which includes the Raft commit) and the accepted events per second.
func (c *cli) benchAsyncCmd() *cobra.Command {
	var (
		function    string
		concurrency int
		duration    time.Duration
		size        int
		addrs       []string
	)
	cmd := &cobra.Command{
		Use:   "async",
		Short: "Async accept throughput and latency (Event invocations)",
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
			payload := []byte(`{"pad":"` + strings.Repeat("x", max(size-10, 0)) + `"}`)
			req := &rpc.InvokeRequest{FunctionName: function, InvocationType: rpc.InvocationEvent, Payload: payload}
			all, elapsed, errs, throttled := closedLoop(len(clients), duration, func(i int) outcome {
				res, err := clients[i].Invoke(ctx, req)
				switch {
				case errors.Is(err, rpc.ErrTooManyRequests):
					return callThrottled
				case err != nil || res.StatusCode != rpc.StatusAccepted:
					return callFailed
				}
				return callOK
			})
			c.printLatencies(fmt.Sprintf("async accept %s concurrency=%d payload=%dB", function, concurrency, len(payload)),
				all, elapsed, errs, throttled)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&function, "function", "hello", "function to invoke (deployed already)")
	f.IntVar(&concurrency, "concurrency", 64, "concurrent callers, each on its own connection")
	f.DurationVar(&duration, "duration", 10*time.Second, "how long to measure")
	f.IntVar(&size, "payload-size", 1024, "event size in bytes")
	f.StringSliceVar(&addrs, "addrs", nil, "spread the callers over these nodes (default: --addr)")
	return cmd
}

// benchAsyncStartCmd measures accept to function start with idle capacity:
// one event at a time, --interval apart; each event's start is its START
// line's time in the function's log (the same host clock as the client's,
// on one machine or a namespace cluster).
func (c *cli) benchAsyncStartCmd() *cobra.Command {
	var (
		function string
		count    int
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "async-start",
		Short: "Async accept-to-start latency with idle capacity",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := context.Background()
			cl, err := c.client(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			// Warm up: one synchronous call leaves an idle sandbox.
			if _, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: function, Payload: []byte(`{}`)}); err != nil {
				return err
			}
			sent := map[string]time.Time{}
			var errs int64
			for i := 0; i < count; i++ {
				t0 := time.Now()
				res, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: function, InvocationType: rpc.InvocationEvent, Payload: []byte(`{"n":1}`)})
				if err != nil {
					errs++
					continue
				}
				sent[res.RequestID] = t0
				time.Sleep(interval)
			}
			// Gather the START lines (they arrive within a few intervals).
			started := map[string]time.Time{}
			req := &rpc.ReadLogsRequest{FunctionName: function, SinceMs: time.Now().Add(-time.Hour).UnixMilli()}
			waitUntil := time.Now().Add(30 * time.Second)
			for len(started) < len(sent) && time.Now().Before(waitUntil) {
				res, err := cl.ReadLogs(ctx, req)
				if err != nil {
					return err
				}
				for _, e := range res.Events {
					if _, ok := sent[e.RequestID]; ok && strings.HasPrefix(e.Line, "START RequestId: ") {
						started[e.RequestID] = time.UnixMilli(e.TimeMs)
					}
				}
				req.After = res.Next
				if len(res.Events) == 0 {
					time.Sleep(100 * time.Millisecond)
				}
			}
			var all latencies
			for id, t0 := range sent {
				if t1, ok := started[id]; ok {
					all = append(all, max(t1.Sub(t0), 0))
				} else {
					errs++
				}
			}
			c.printLatencies("async accept-to-start "+function+" (log times, ms resolution)", all, 0, errs, 0)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&function, "function", "hello", "function to invoke (deployed already)")
	f.IntVar(&count, "count", 200, "events to measure")
	f.DurationVar(&interval, "interval", 20*time.Millisecond, "pause between events, so capacity stays idle")
	return cmd
}
