package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

// The asynchronous invocation configuration commands of `nimbus fn`.
func (c *cli) eventConfigCmds() []*cobra.Command {
	return []*cobra.Command{c.fnPutEventConfigCmd(), c.fnGetEventConfigCmd(), c.fnDeleteEventConfigCmd()}
}

// eventConfigOutput is a function's event configuration in the shape of
// Lambda's FunctionEventInvokeConfig (`-o json`); as text it is a table.
type eventConfigOutput struct {
	LastModified             float64           `json:"LastModified"`
	FunctionArn              string            `json:"FunctionArn"`
	MaximumRetryAttempts     int               `json:"MaximumRetryAttempts"`
	MaximumEventAgeInSeconds int               `json:"MaximumEventAgeInSeconds"`
	DestinationConfig        destinationConfig `json:"DestinationConfig"`
}

type destinationConfig struct {
	OnSuccess destination `json:"OnSuccess"`
	OnFailure destination `json:"OnFailure"`
}

type destination struct {
	Destination string `json:"Destination,omitempty"`
}

func newEventConfigOutput(arns rpc.ARNScope, cfg *rpc.EventConfig) eventConfigOutput {
	return eventConfigOutput{
		LastModified:             float64(cfg.LastModifiedMs) / 1000,
		FunctionArn:              arns.Function(cfg.FunctionName, rpc.LatestVersion),
		MaximumRetryAttempts:     cfg.Retries(),
		MaximumEventAgeInSeconds: cfg.MaxAgeSec(),
		DestinationConfig:        destinationConfig{OnSuccess: destination{cfg.OnSuccess}, OnFailure: destination{cfg.OnFailure}},
	}
}

func (o eventConfigOutput) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Function:        %s\n", o.FunctionArn)
	fmt.Fprintf(&b, "Max retries:     %d\n", o.MaximumRetryAttempts)
	fmt.Fprintf(&b, "Max event age:   %d s\n", o.MaximumEventAgeInSeconds)
	fmt.Fprintf(&b, "On success:      %s\n", orNone(o.DestinationConfig.OnSuccess.Destination))
	fmt.Fprintf(&b, "On failure:      %s", orNone(o.DestinationConfig.OnFailure.Destination))
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) fnPutEventConfigCmd() *cobra.Command {
	var (
		retries, age         int
		onSuccess, onFailure string
		output               string
	)
	cmd := &cobra.Command{
		Use:   "put-event-config NAME",
		Short: "Set a function's asynchronous invocation configuration (retries, maximum age, destinations)",
		Long: "Set a function's whole asynchronous invocation configuration; a flag left out takes its default\n" +
			"(2 retries, 21600 s). A destination is function:NAME or queue:NAME, or the matching ARN.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rpc.PutEventConfigRequest{FunctionName: args[0], OnSuccess: onSuccess, OnFailure: onFailure}
			if cmd.Flags().Changed("max-retries") {
				req.MaxRetryAttempts = &retries
			}
			if cmd.Flags().Changed("max-event-age") {
				req.MaxEventAgeSec = &age
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.PutEventConfig(ctx, req)
				if err != nil {
					return nil, err
				}
				return newEventConfigOutput(arnScope(ctx, cl), r.Config), nil
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&retries, "max-retries", rpc.DefaultMaxRetryAttempts, "retries after a function error, 0..2")
	f.IntVar(&age, "max-event-age", rpc.DefaultMaxEventAgeSec, "seconds an event may wait, 60..21600")
	f.StringVar(&onSuccess, "on-success", "", "destination of successful invocations")
	f.StringVar(&onFailure, "on-failure", "", "destination of failed invocations")
	f.StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnGetEventConfigCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get-event-config NAME",
		Short: "Show a function's asynchronous invocation configuration",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.GetEventConfig(ctx, &rpc.GetEventConfigRequest{FunctionName: args[0]})
				if err != nil {
					return nil, err
				}
				return newEventConfigOutput(arnScope(ctx, cl), r.Config), nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnDeleteEventConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete-event-config NAME",
		Short: "Remove a function's asynchronous invocation configuration",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "", func(ctx context.Context, cl *rpc.Client) (any, error) {
				if _, err := cl.DeleteEventConfig(ctx, &rpc.GetEventConfigRequest{FunctionName: args[0]}); err != nil {
					return nil, err
				}
				return fmt.Sprintf("deleted the event configuration of %s", args[0]), nil
			})
		},
	}
}
