package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

func (c *cli) fnMetricsCmd() *cobra.Command {
	var (
		since  time.Duration
		output string
	)
	cmd := &cobra.Command{
		Use:   "metrics NAME",
		Short: "Show a function's invocations, errors, throttles, durations and concurrency, from every node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if since < 0 || since > rpc.MaxMetricsWindowSec*time.Second {
				return fmt.Errorf("--since must be between 0 and %s", time.Duration(rpc.MaxMetricsWindowSec)*time.Second)
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				m, err := cl.FunctionMetrics(ctx, &rpc.FunctionMetricsRequest{FunctionName: args[0], SinceSec: int(since / time.Second)})
				if err != nil {
					return nil, err
				}
				return fnMetricsOut{m}, nil
			})
		},
	}
	cmd.Flags().DurationVar(&since, "since", time.Hour, "the window: this long ago until now (at most 1h)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

// fnMetricsOut prints a function's numbers as text, or as their JSON.
type fnMetricsOut struct{ m *rpc.FunctionMetrics }

func (o fnMetricsOut) MarshalJSON() ([]byte, error) { return json.Marshal(o.m) }

func (o fnMetricsOut) String() string {
	m := o.m
	var b strings.Builder
	fmt.Fprintf(&b, "Function:        %s (last %s, from %s)\n", m.FunctionName, time.Duration(m.SinceSec)*time.Second, strings.Join(m.Nodes, ", "))
	fmt.Fprintf(&b, "Invocations:     %d\n", m.Invocations)
	fmt.Fprintf(&b, "Errors:          %d\n", m.Errors)
	fmt.Fprintf(&b, "Throttles:       %d\n", m.Throttles)
	fmt.Fprintf(&b, "Cold starts:     %d\n", m.ColdStarts)
	fmt.Fprintf(&b, "Max concurrency: %d\n", m.MaxConcurrency)
	fmt.Fprintf(&b, "Duration:        p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  (%d measured)", m.DurationP50, m.DurationP90, m.DurationP99, m.DurationCount)
	return b.String()
}

// defaultDevMetricsAddr is where a dev node serves its metrics.
const defaultDevMetricsAddr = "127.0.0.1:9100"

// serveMetrics serves h at /metrics on addr until ctx ends.
func serveMetrics(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Warn("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	return nil
}
