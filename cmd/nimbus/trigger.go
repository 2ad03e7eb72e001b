package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

// `nimbus trigger`: queue triggers (Lambda's event source mappings).
func (c *cli) triggerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "trigger", Short: "Invoke functions with batches of queue messages (event source mappings)"}
	cmd.AddCommand(c.triggerCreateCmd(), c.triggerListCmd(), c.triggerGetCmd(), c.triggerUpdateCmd(), c.triggerDeleteCmd())
	return cmd
}

// triggerOutput is a trigger in the shape of Lambda's
// EventSourceMappingConfiguration (`-o json`).
type triggerOutput struct {
	UUID                           string         `json:"UUID"`
	EventSourceArn                 string         `json:"EventSourceArn"`
	FunctionArn                    string         `json:"FunctionArn"`
	BatchSize                      int            `json:"BatchSize"`
	MaximumBatchingWindowInSeconds int            `json:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          []string       `json:"FunctionResponseTypes"`
	ScalingConfig                  *scalingConfig `json:"ScalingConfig,omitempty"`
	State                          string         `json:"State"`
	LastModified                   float64        `json:"LastModified"`
}

type scalingConfig struct {
	MaximumConcurrency int `json:"MaximumConcurrency"`
}

func newTriggerOutput(arns rpc.ARNScope, t *rpc.Trigger) triggerOutput {
	o := triggerOutput{
		UUID: t.UUID, EventSourceArn: arns.Queue(t.Queue), FunctionArn: arns.Function(t.Function, ""),
		BatchSize: t.BatchSize, MaximumBatchingWindowInSeconds: t.BatchWindowSec, FunctionResponseTypes: []string{},
		State: "Enabled", LastModified: float64(t.LastModifiedMs) / 1000,
	}
	if t.ReportBatchItemFailures {
		o.FunctionResponseTypes = []string{rpc.FunctionResponseReportBatchItemFailures}
	}
	if t.MaxConcurrency > 0 {
		o.ScalingConfig = &scalingConfig{MaximumConcurrency: t.MaxConcurrency}
	}
	if !t.Enabled {
		o.State = "Disabled"
	}
	return o
}

func (o triggerOutput) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "UUID:\t%s\nQueue:\t%s\nFunction:\t%s\nBatch size:\t%d\nBatch window:\t%d s\nResponse types:\t%s\nState:\t%s\n",
		o.UUID, o.EventSourceArn, o.FunctionArn, o.BatchSize, o.MaximumBatchingWindowInSeconds, orNone(strings.Join(o.FunctionResponseTypes, ",")), o.State)
	if o.ScalingConfig != nil {
		fmt.Fprintf(tw, "Max concurrency:\t%d\n", o.ScalingConfig.MaximumConcurrency)
	}
	tw.Flush()
	return strings.TrimRight(b.String(), "\n")
}

// triggerFlags are the settings create and update share.
type triggerFlags struct {
	batch, window, maxConc int
	reportFailures         bool
	disabled               bool
}

func (tf *triggerFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&tf.batch, "batch-size", rpc.DefaultTriggerBatchSize, "messages per invocation, 1..10000 (above 10 needs --batch-window >= 1)")
	f.IntVar(&tf.window, "batch-window", 0, "seconds to gather a batch, 0..300")
	f.BoolVar(&tf.reportFailures, "report-batch-item-failures", false, "the function answers batchItemFailures: only those messages are retried")
	f.IntVar(&tf.maxConc, "max-concurrency", 0, "concurrent invocations at most, 2..1000")
	f.BoolVar(&tf.disabled, "disabled", false, "create the trigger disabled (update: disable it)")
}

func (c *cli) triggerCreateCmd() *cobra.Command {
	var (
		tf     triggerFlags
		queue  string
		output string
	)
	cmd := &cobra.Command{
		Use:   "create FN --queue NAME",
		Short: "Invoke a function with a queue's messages; prints the trigger's UUID",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rpc.CreateTriggerRequest{Function: args[0], Queue: queue, ReportBatchItemFailures: tf.reportFailures, Disabled: tf.disabled}
			fl := cmd.Flags()
			if fl.Changed("batch-size") {
				req.BatchSize = &tf.batch
			}
			if fl.Changed("batch-window") {
				req.BatchWindowSec = &tf.window
			}
			if fl.Changed("max-concurrency") {
				req.MaxConcurrency = &tf.maxConc
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.CreateTrigger(ctx, req)
				if err != nil {
					return nil, err
				}
				if output == "json" {
					return newTriggerOutput(arnScope(ctx, cl), r.Trigger), nil
				}
				return r.Trigger.UUID, nil
			})
		},
	}
	tf.add(cmd)
	cmd.Flags().StringVar(&queue, "queue", "", "the queue (a name or an SQS ARN)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) triggerUpdateCmd() *cobra.Command {
	var (
		tf      triggerFlags
		enabled bool
		output  string
	)
	cmd := &cobra.Command{
		Use:   "update UUID",
		Short: "Change a trigger; flags left out stay as they are",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rpc.UpdateTriggerRequest{UUID: args[0]}
			fl := cmd.Flags()
			if fl.Changed("batch-size") {
				req.BatchSize = &tf.batch
			}
			if fl.Changed("batch-window") {
				req.BatchWindowSec = &tf.window
			}
			if fl.Changed("max-concurrency") {
				req.MaxConcurrency = &tf.maxConc
			}
			if fl.Changed("report-batch-item-failures") {
				req.ReportBatchItemFailures = &tf.reportFailures
			}
			if fl.Changed("disabled") && fl.Changed("enabled") {
				return fmt.Errorf("--enabled and --disabled together")
			}
			if fl.Changed("disabled") {
				e := !tf.disabled
				req.Enabled = &e
			}
			if fl.Changed("enabled") {
				req.Enabled = &enabled
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.UpdateTrigger(ctx, req)
				if err != nil {
					return nil, err
				}
				return newTriggerOutput(arnScope(ctx, cl), r.Trigger), nil
			})
		},
	}
	tf.add(cmd)
	cmd.Flags().BoolVar(&enabled, "enabled", true, "enable the trigger")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) triggerGetCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get UUID",
		Short: "Show a trigger",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.GetTrigger(ctx, args[0])
				if err != nil {
					return nil, err
				}
				return newTriggerOutput(arnScope(ctx, cl), r.Trigger), nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

type triggerList []triggerOutput

func (l triggerList) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UUID\tFUNCTION\tQUEUE\tBATCH\tWINDOW\tSTATE")
	for _, t := range l {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d s\t%s\n", t.UUID, t.FunctionArn, t.EventSourceArn, t.BatchSize, t.MaximumBatchingWindowInSeconds, t.State)
	}
	tw.Flush()
	return strings.TrimRight(b.String(), "\n")
}

// triggerListOutput is Lambda's ListEventSourceMappings answer (`-o json`).
type triggerListOutput struct {
	EventSourceMappings []triggerOutput `json:"EventSourceMappings"`
}

func (c *cli) triggerListCmd() *cobra.Command {
	var fn, output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List triggers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.ListTriggers(ctx, fn)
				if err != nil {
					return nil, err
				}
				l := triggerList{}
				arns := arnScope(ctx, cl)
				for _, t := range r.Triggers {
					l = append(l, newTriggerOutput(arns, t))
				}
				if output == "json" {
					return triggerListOutput{EventSourceMappings: l}, nil
				}
				return l, nil
			})
		},
	}
	cmd.Flags().StringVar(&fn, "function", "", "only this function's triggers")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) triggerDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete UUID",
		Short: "Delete a trigger",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "", func(ctx context.Context, cl *rpc.Client) (any, error) {
				_, err := cl.DeleteTrigger(ctx, args[0])
				return "deleted " + args[0], err
			})
		},
	}
}
