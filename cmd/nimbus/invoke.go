package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

func (c *cli) invokeCmd() *cobra.Command {
	var (
		payload string
		logTail bool
		invType string
		output  string
		cc      string
		stream  bool
	)
	cmd := &cobra.Command{
		Use:   "invoke NAME[:VERSION|:ALIAS]|ARN",
		Short: "Invoke a function and print its response",
		Long: "Invoke a function and print its response on stdout.\n" +
			"With --type Event the event is queued: once it is committed the request id is printed\n" +
			"(-o json: {\"StatusCode\":202,\"RequestId\":...}) and the function runs later.\n" +
			"With --type DryRun the request is only validated.\n" +
			"With --stream the response is printed as the function sends it (Lambda's response\n" +
			"streaming, up to 200 MB); a function that fails midway has printed what it sent.\n" +
			"Exit status: 0 on success, 1 on a function error (its error JSON is printed),\n" +
			"2 on a platform error (named as Lambda names it).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := []byte(payload)
			if file, ok := strings.CutPrefix(payload, "@"); ok {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				body = b
			}
			req := &rpc.InvokeRequest{FunctionName: args[0], InvocationType: invType, Payload: body}
			if cc != "" {
				req.ClientContext = []byte(cc)
			}
			if logTail {
				req.LogType = rpc.LogTypeTail
			}
			if output != "" && output != "json" {
				return fmt.Errorf("-o %q: the only output format is json", output)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 16*time.Minute)
			defer cancel()
			cl, err := c.client(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			if stream {
				if invType == rpc.InvocationEvent {
					return fmt.Errorf("--stream: an Event invocation has no response to stream")
				}
				return c.invokeStreamed(ctx, cl, req, logTail)
			}
			res, err := cl.Invoke(ctx, req)
			if err != nil {
				return err
			}
			if invType == rpc.InvocationEvent || invType == rpc.InvocationDryRun {
				return printAccepted(c.stdout, res, output)
			}
			if logTail && len(res.LogResult) > 0 {
				fmt.Fprint(c.stderr, string(res.LogResult))
			}
			out := string(res.Payload)
			if out != "" && !strings.HasSuffix(out, "\n") {
				out += "\n"
			}
			fmt.Fprint(c.stdout, out)
			if res.FunctionError != "" {
				return exitError{exitFunctionError}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&payload, "payload", "{}", "the event as JSON, or @FILE to read it from a file")
	f.BoolVar(&logTail, "log-tail", false, "also print the last 4 KB of the invocation's log on stderr")
	f.StringVar(&invType, "type", rpc.InvocationRequestResponse, "RequestResponse, Event or DryRun")
	f.StringVar(&invType, "invocation-type", rpc.InvocationRequestResponse, "the same as --type")
	f.StringVarP(&output, "output", "o", "", "output format of an Event or DryRun invocation: json")
	f.BoolVar(&stream, "stream", false, "print the response as the function streams it")
	f.StringVar(&cc, "client-context", "", "a JSON object the function's context carries as its client context (synchronous invocations; the AWS CLI takes the same as base64)")
	return cmd
}

// invokeStreamed prints a streamed response as it arrives. A function
// error (at the start or midway) is printed after it on stderr, as its
// error JSON.
func (c *cli) invokeStreamed(ctx context.Context, cl *rpc.Client, req *rpc.InvokeRequest, logTail bool) error {
	res, err := cl.InvokeStream(ctx, req, func(p *rpc.InvokeStreamPart) error {
		if len(p.Data) == 0 {
			return nil
		}
		_, err := c.stdout.Write(p.Data)
		return err
	})
	if err != nil {
		return err
	}
	if logTail && len(res.LogResult) > 0 {
		fmt.Fprint(c.stderr, string(res.LogResult))
	}
	if res.FunctionError != "" {
		out := string(res.Payload)
		if !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		fmt.Fprint(c.stderr, out)
		return exitError{exitFunctionError}
	}
	return nil
}
