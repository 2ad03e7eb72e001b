// Command gofn is a test function written with aws-lambda-go, as a Lambda
// user writes one. The event says what to do, so that one binary covers
// the behaviours the sandbox tests need.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

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
