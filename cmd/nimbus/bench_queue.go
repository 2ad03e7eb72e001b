package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

// benchQueueCmd measures a queue's send, then receive and delete:
// closed-loop callers for --duration each; it prints each call's latency
// (every one includes a Raft commit) and the messages per second.
func (c *cli) benchQueueCmd() *cobra.Command {
	var (
		queue       string
		concurrency int
		duration    time.Duration
		size        int
		addrs       []string
	)
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Queue send, receive and delete throughput and latency",
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
			if _, err := clients[0].CreateQueue(ctx, &rpc.CreateQueueRequest{Name: queue}); err != nil {
				return err
			}
			if _, err := clients[0].PurgeQueue(ctx, queue); err != nil {
				return err
			}
			body := strings.Repeat("x", size)
			send := &rpc.SendMessageRequest{Queue: queue, Body: body}
			all, elapsed, errs, throttled := closedLoop(len(clients), duration, func(i int) outcome {
				if _, err := clients[i].SendMessage(ctx, send); err != nil {
					return failed(err)
				}
				return callOK
			})
			c.printLatencies(fmt.Sprintf("queue send %s concurrency=%d body=%dB", queue, concurrency, size), all, elapsed, errs, throttled)

			// Receive (10 at a time) and delete each message, until the
			// queue is empty or --duration passes.
			var (
				mu       sync.Mutex
				recvs    latencies
				dels     latencies
				received atomic.Int64
				delErrs  atomic.Int64
			)
			_, recvElapsed, recvErrs, _ := closedLoop(len(clients), duration, func(i int) outcome {
				t0 := time.Now()
				r, err := clients[i].ReceiveMessage(ctx, &rpc.ReceiveMessageRequest{Queue: queue, Max: 10})
				if err != nil {
					return failed(err)
				}
				took := time.Since(t0)
				received.Add(int64(len(r.Messages)))
				var mine latencies
				for _, m := range r.Messages {
					t0 := time.Now()
					if _, err := clients[i].DeleteMessage(ctx, queue, m.ReceiptHandle); err != nil {
						delErrs.Add(1)
						continue
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				recvs = append(recvs, took)
				dels = append(dels, mine...)
				mu.Unlock()
				if len(r.Messages) == 0 {
					time.Sleep(10 * time.Millisecond)
				}
				return callOK
			})
			// Each caller receives, then deletes what it got one by one: the
			// receive line is the receive calls alone (its throughput is
			// receives per second of the whole loop).
			c.printLatencies(fmt.Sprintf("queue receive (max 10) %s concurrency=%d", queue, concurrency), recvs, recvElapsed, recvErrs, 0)
			c.printLatencies(fmt.Sprintf("queue delete %s (inside the receive loop)", queue), dels, 0, delErrs.Load(), 0)
			fmt.Fprintf(c.stdout, "queue receive+delete: %d messages in %s = %.0f messages/s\n",
				received.Load(), recvElapsed.Round(time.Millisecond), float64(len(dels))/recvElapsed.Seconds())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&queue, "queue", "bench-queue", "queue to use (created if missing, purged first)")
	f.IntVar(&concurrency, "concurrency", 64, "concurrent callers, each on its own connection")
	f.DurationVar(&duration, "duration", 10*time.Second, "how long to measure each phase")
	f.IntVar(&size, "body-size", 256, "message body size in bytes")
	f.StringSliceVar(&addrs, "addrs", nil, "spread the callers over these nodes (default: --addr)")
	return cmd
}

func failed(err error) outcome {
	if errors.Is(err, rpc.ErrTooManyRequests) || errors.Is(err, rpc.ErrOverLimit) {
		return callThrottled
	}
	return callFailed
}

// benchQueueTriggerCmd measures a queue trigger: it fills a queue with
// --messages, then creates a trigger on --function and times the queue's
// draining (every message delivered, invoked and deleted).
func (c *cli) benchQueueTriggerCmd() *cobra.Command {
	var (
		function    string
		queue       string
		messages    int
		batch       int
		window      int
		maxConc     int
		concurrency int
		size        int
	)
	cmd := &cobra.Command{
		Use:   "queue-trigger",
		Short: "Queue trigger throughput: messages a trigger drains per second",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := context.Background()
			clients, closeAll, err := dialClients(ctx, []string{c.addr}, concurrency)
			if err != nil {
				return err
			}
			defer closeAll()
			cl := clients[0]
			if _, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: queue}); err != nil {
				return err
			}
			if _, err := cl.PurgeQueue(ctx, queue); err != nil {
				return err
			}
			// Fill the queue.
			var next atomic.Int64
			var wg sync.WaitGroup
			var fillErr atomic.Value
			body := strings.Repeat("x", size)
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(messages) {
						if _, err := clients[i].SendMessage(ctx, &rpc.SendMessageRequest{Queue: queue, Body: body}); err != nil {
							fillErr.Store(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if err, _ := fillErr.Load().(error); err != nil {
				return fmt.Errorf("filling the queue: %w", err)
			}
			req := &rpc.CreateTriggerRequest{Function: function, Queue: queue, BatchSize: &batch}
			if window > 0 {
				req.BatchWindowSec = &window
			}
			if maxConc > 0 {
				req.MaxConcurrency = &maxConc
			}
			start := time.Now()
			tr, err := cl.CreateTrigger(ctx, req)
			if err != nil {
				return err
			}
			defer cl.DeleteTrigger(ctx, tr.Trigger.UUID)
			// Besides the whole drain (from the trigger's creation, so with
			// its sandboxes' cold starts), the rate while the drain is in
			// full swing: from the first poll that sees 90% of the messages
			// left or fewer to the first that sees 10% or fewer.
			var (
				at90, at10 time.Time
				left90     int
				left10     int
			)
			for {
				r, err := cl.GetQueue(ctx, queue)
				if err != nil {
					return err
				}
				left := r.Visible + r.NotVisible + r.Delayed
				if at90.IsZero() && left*10 <= messages*9 {
					at90, left90 = time.Now(), left
				}
				if at10.IsZero() && left*10 <= messages {
					at10, left10 = time.Now(), left
				}
				if left == 0 {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			elapsed := time.Since(start)
			fmt.Fprintf(c.stdout, "queue-trigger %s -> %s batch=%d max-concurrency=%d body=%dB: %d messages in %s = %.0f messages/s",
				queue, function, batch, maxConc, size, messages, elapsed.Round(time.Millisecond), float64(messages)/elapsed.Seconds())
			if d := at10.Sub(at90); d > 0 {
				fmt.Fprintf(c.stdout, "; in full swing (90%% to 10%% left) %.0f messages/s", float64(left90-left10)/d.Seconds())
			}
			fmt.Fprintln(c.stdout)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&function, "function", "hello", "function to invoke (deployed already)")
	f.StringVar(&queue, "queue", "bench-trigger", "queue to use (created if missing, purged first)")
	f.IntVar(&messages, "messages", 100_000, "messages to send, then drain")
	f.IntVar(&batch, "batch-size", 10, "the trigger's batch size")
	f.IntVar(&window, "batch-window", 0, "the trigger's batch window in seconds")
	f.IntVar(&maxConc, "max-concurrency", 0, "the trigger's max concurrency (0: unset)")
	f.IntVar(&concurrency, "concurrency", 64, "senders filling the queue")
	f.IntVar(&size, "body-size", 100, "message body size in bytes")
	return cmd
}
