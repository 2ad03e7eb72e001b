// Command gofn is a test function written with aws-lambda-go, as a Lambda
// user writes one. The event says what to do, so that one binary covers
// the behaviours the sandbox tests need.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// hoard keeps connections open across invocations.
var hoard []net.Conn

type event struct {
	Do  string   `json:"do"`
	Env []string `json:"env"`
}

func handler(ctx context.Context, ev event) (map[string]any, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	fmt.Printf("handling %s in %s\n", ev.Do, lc.AwsRequestID)
	switch ev.Do {
	case "panic":
		panic("boom")
	case "error":
		return nil, fmt.Errorf("handled failure")
	case "env":
		out := map[string]any{}
		for _, k := range ev.Env {
			out[k] = os.Getenv(k)
		}
		return out, nil
	case "hoard":
		// Open a thousand connections to the Runtime API and keep them:
		// how many does the agent let it hold?
		for i := 0; i < 1000; i++ {
			if c, err := net.Dial("tcp", os.Getenv("AWS_LAMBDA_RUNTIME_API")); err == nil {
				hoard = append(hoard, c)
			}
		}
		open := 0
		for _, c := range hoard {
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err != nil && os.IsTimeout(err) {
				open++
			}
		}
		return map[string]any{"dialed": len(hoard), "open": open}, nil
	case "ppid":
		b, _ := os.ReadFile("/proc/1/cmdline")
		return map[string]any{"pid": os.Getpid(), "ppid": os.Getppid(), "init": strings.ReplaceAll(string(b), "\x00", " ")}, nil
	}
	return map[string]any{"ok": true, "requestId": lc.AwsRequestID}, nil
}

func main() {
	// Say so and exit when SIGTERM comes, as runtimes that clean up do.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Println("runtime got SIGTERM")
		os.Exit(0)
	}()
	lambda.Start(handler)
}
