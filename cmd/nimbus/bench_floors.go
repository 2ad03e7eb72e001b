package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"
)

// The floors the invoke figures are read against (issue #13): what this
// machine takes for an HTTP round trip on loopback, and for executing a
// function's bootstrap on the host with no sandbox around it.
func (c *cli) benchFloorsCmd() *cobra.Command {
	var (
		bootstrap string
		requests  int
		execs     int
	)
	cmd := &cobra.Command{
		Use:   "floors",
		Short: "The machine's floors: a loopback HTTP echo's round trip, and the host exec of a bootstrap",
		Long: "http: a Go net/http echo server on loopback, one keep-alive client, sequential\n" +
			"POSTs of a small body. exec: the bootstrap started on the host with\n" +
			"AWS_LAMBDA_RUNTIME_API at a closed port, timed to its exit (start, runtime\n" +
			"initialisation, one refused connect): what a cold start's Init costs without\n" +
			"a sandbox. Neither touches a node.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			httpL, err := httpEchoFloor(cmd.Context(), requests)
			if err != nil {
				return err
			}
			c.printLatencies("floor http echo", httpL, 0, 0, 0)
			if bootstrap == "" {
				return nil
			}
			execL, errs := execFloor(bootstrap, execs)
			c.printLatencies("floor host exec "+bootstrap, execL, 0, errs, 0)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&bootstrap, "bootstrap", "", "a bootstrap to execute on the host (e.g. examples/hello/build/bootstrap)")
	f.IntVar(&requests, "requests", 5000, "HTTP round trips")
	f.IntVar(&execs, "execs", 30, "executions of the bootstrap")
	return cmd
}

func httpEchoFloor(ctx context.Context, n int) (latencies, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		_, _ = w.Write(b)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	url := "http://" + ln.Addr().String() + "/"
	body := []byte(`{"name":"bench"}`)
	out := make(latencies, 0, n)
	for i := 0; i < n+100; i++ { // the first 100 warm up
		t0 := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		res, err := cl.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if i >= 100 {
			out = append(out, time.Since(t0))
		}
	}
	return out, nil
}

func execFloor(bootstrap string, n int) (latencies, int64) {
	// A port nothing listens on: the runtime's first /next is refused and it
	// exits.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, int64(n)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out latencies
	var errs int64
	for i := 0; i < n; i++ {
		cmd := exec.Command(bootstrap)
		cmd.Env = append(os.Environ(), "AWS_LAMBDA_RUNTIME_API="+addr, "_HANDLER=bootstrap", "AWS_LAMBDA_FUNCTION_NAME=floor")
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			errs++
			continue
		}
		_ = cmd.Wait() // it fails at its first /next, as meant
		out = append(out, time.Since(t0))
	}
	if len(out) == 0 {
		fmt.Fprintln(os.Stderr, "bench floors: the bootstrap never started")
	}
	return out, errs
}
