package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/spf13/cobra"
)

// benchAuthorization is a well-formed SigV4 header, as the SDKs send one:
// the gateway parses it on every request, so the numbers include that.
const benchAuthorization = "AWS4-HMAC-SHA256 Credential=bench/20261201/us-east-1/lambda/aws4_request, " +
	"SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000"

func (c *cli) benchGatewayCmd() *cobra.Command {
	var (
		function    string
		concurrency int
		duration    time.Duration
		warmup      int
		payload     string
		endpoint    string
	)
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Warm invoke round trips through the REST API (Lambda's Invoke over HTTP)",
		Long: "The same measurement as `bench warm`, through a node's REST gateway instead of\n" +
			"rpc: each caller keeps one HTTP/1.1 connection and POSTs Lambda's Invoke.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := context.Background()
			target := endpoint + "/2015-03-31/functions/" + url.PathEscape(function) + "/invocations"
			clients := make([]*http.Client, concurrency)
			for i := range clients {
				clients[i] = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
				defer clients[i].CloseIdleConnections()
			}
			invoke := func(hc *http.Client) (status int, err error) {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader([]byte(payload)))
				if err != nil {
					return 0, err
				}
				req.Header.Set("Authorization", benchAuthorization)
				req.Header.Set("X-Amz-Date", "20261201T000000Z")
				resp, err := hc.Do(req)
				if err != nil {
					return 0, err
				}
				defer resp.Body.Close()
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					return 0, err
				}
				if resp.Header.Get("X-Amz-Function-Error") != "" {
					return resp.StatusCode, fmt.Errorf("function error")
				}
				return resp.StatusCode, nil
			}
			if _, err := invoke(clients[0]); err != nil {
				return fmt.Errorf("invoke %s through %s: %w", function, endpoint, err)
			}
			var wg sync.WaitGroup
			for _, hc := range clients {
				wg.Add(1)
				go func(hc *http.Client) {
					defer wg.Done()
					for i := 0; i < warmup; i++ {
						_, _ = invoke(hc)
					}
				}(hc)
			}
			wg.Wait()

			all, elapsed, errs, throttled := closedLoop(len(clients), duration, func(i int) outcome {
				status, err := invoke(clients[i])
				switch {
				case status == http.StatusTooManyRequests:
					return callThrottled
				case err != nil || status != http.StatusOK:
					return callFailed
				}
				return callOK
			})
			c.printLatencies(fmt.Sprintf("gateway %s concurrency=%d", function, concurrency), all, elapsed, errs, throttled)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&function, "function", "hello", "function to invoke (deployed already)")
	f.IntVar(&concurrency, "concurrency", 1, "concurrent callers, each on its own connection")
	f.DurationVar(&duration, "duration", 10*time.Second, "how long to measure")
	f.IntVar(&warmup, "warmup", 50, "invocations per caller before measuring")
	f.StringVar(&payload, "payload", `{"name":"bench"}`, "event")
	f.StringVar(&endpoint, "endpoint-url", "http://127.0.0.1:9000", "the node's REST API")
	return cmd
}
