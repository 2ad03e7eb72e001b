package main

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

func (c *cli) logsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "logs", Short: "Read function logs"}
	var (
		follow bool
		since  time.Duration
	)
	tail := &cobra.Command{
		Use:   "tail NAME",
		Short: "Print a function's log; --follow keeps printing new lines",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return c.tailLogs(ctx, args[0], since, follow)
		},
	}
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines as they arrive")
	tail.Flags().DurationVar(&since, "since", 10*time.Minute, "start this long ago")
	cmd.AddCommand(tail)
	return cmd
}

// tailLogs prints a function's log from since ago; following, it long-polls
// for new lines and reconnects when the node goes away for a moment.
func (c *cli) tailLogs(ctx context.Context, fn string, since time.Duration, follow bool) error {
	req := &rpc.ReadLogsRequest{FunctionName: fn, Limit: 1000}
	if since > 0 {
		req.SinceMs = time.Now().Add(-since).UnixMilli()
	}
	var cl *rpc.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	backoff := 100 * time.Millisecond
	for {
		if cl == nil {
			var err error
			if cl, err = c.client(ctx); err != nil {
				if !follow || ctx.Err() != nil {
					return err
				}
				if !sleepCtx(ctx, backoff) {
					return nil
				}
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
		}
		if follow {
			req.WaitMs = 20_000
		}
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := cl.ReadLogs(callCtx, req)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var re *rpc.Error
			if errors.As(err, &re) || !follow {
				return err
			}
			cl.Close()
			cl = nil
			continue
		}
		backoff = 100 * time.Millisecond
		for _, e := range res.Events {
			fmt.Fprintf(c.stdout, "%s %s\n", time.UnixMilli(e.TimeMs).UTC().Format("2006-01-02T15:04:05.000Z"), e.Line)
		}
		req.After = res.Next
		if res.Cursors != nil {
			req.Cursors = res.Cursors
		}
		if !follow && len(res.Events) < req.Limit {
			return nil
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
