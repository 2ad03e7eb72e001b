package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

// `nimbus queue`: the built-in queues (SQS semantics).
func (c *cli) queueCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "queue", Short: "Create, use and remove queues (SQS semantics)"}
	cmd.AddCommand(c.queueCreateCmd(), c.queueSendCmd(), c.queueReceiveCmd(), c.queueDeleteMessageCmd(),
		c.queuePurgeCmd(), c.queueDeleteCmd(), c.queueListCmd(), c.queueGetCmd())
	return cmd
}

// queueOutput is a queue as SQS's GetQueueAttributes gives it (`-o json`):
// every attribute a string.
type queueOutput struct {
	QueueName  string            `json:"QueueName"`
	QueueArn   string            `json:"QueueArn"`
	Attributes map[string]string `json:"Attributes"`
}

func newQueueOutput(arns rpc.ARNScope, r *rpc.QueueResponse) queueOutput {
	q := r.Queue
	a := map[string]string{
		"QueueArn":                              arns.Queue(q.Name),
		"VisibilityTimeout":                     strconv.Itoa(q.VisibilitySec),
		"MessageRetentionPeriod":                strconv.Itoa(q.RetentionSec),
		"DelaySeconds":                          strconv.Itoa(q.DelaySec),
		"MaximumMessageSize":                    strconv.Itoa(q.MaxMessageSize),
		"CreatedTimestamp":                      strconv.FormatInt(q.CreatedMs/1000, 10),
		"ApproximateNumberOfMessages":           strconv.Itoa(r.Visible),
		"ApproximateNumberOfMessagesNotVisible": strconv.Itoa(r.NotVisible),
		"ApproximateNumberOfMessagesDelayed":    strconv.Itoa(r.Delayed),
	}
	if q.FIFO {
		a["FifoQueue"] = "true"
		a["ContentBasedDeduplication"] = strconv.FormatBool(q.ContentDedup)
	}
	if q.DeadLetterQueue != "" {
		p, _ := json.Marshal(map[string]any{"deadLetterTargetArn": arns.Queue(q.DeadLetterQueue), "maxReceiveCount": q.MaxReceiveCount})
		a["RedrivePolicy"] = string(p)
	}
	return queueOutput{QueueName: q.Name, QueueArn: arns.Queue(q.Name), Attributes: a}
}

func (o queueOutput) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "QueueName:\t%s\n", o.QueueName)
	for _, k := range []string{"QueueArn", "FifoQueue", "ContentBasedDeduplication", "VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds",
		"MaximumMessageSize", "RedrivePolicy", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"} {
		if v, ok := o.Attributes[k]; ok {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	tw.Flush()
	return strings.TrimRight(b.String(), "\n")
}

func (c *cli) queueCreateCmd() *cobra.Command {
	var (
		vis, retention, delay, size, maxReceive int
		dlq, output                             string
		fifo, contentDedup                      bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a queue (a name ending in .fifo makes a FIFO queue); creating it again with the same settings is a no-op",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rpc.CreateQueueRequest{Name: args[0], DeadLetterQueue: dlq, MaxReceiveCount: maxReceive, FIFO: fifo, ContentDedup: contentDedup}
			set := func(flag string, v *int, dst **int) {
				if cmd.Flags().Changed(flag) {
					*dst = v
				}
			}
			set("visibility-timeout", &vis, &req.VisibilitySec)
			set("retention", &retention, &req.RetentionSec)
			set("delay", &delay, &req.DelaySec)
			set("max-message-size", &size, &req.MaxMessageSize)
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.CreateQueue(ctx, req)
				if err != nil {
					return nil, err
				}
				return newQueueOutput(arnScope(ctx, cl), r), nil
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&vis, "visibility-timeout", rpc.DefaultQueueVisibilitySec, "seconds a received message stays invisible, 0..43200")
	f.IntVar(&retention, "retention", rpc.DefaultQueueRetentionSec, "seconds a message is kept, 60..1209600")
	f.IntVar(&delay, "delay", 0, "seconds a new message stays invisible, 0..900")
	f.IntVar(&size, "max-message-size", rpc.DefaultQueueMessageSize, "bytes of a message, 1024..1048576")
	f.StringVar(&dlq, "dead-letter", "", "dead-letter queue (a name or an SQS ARN) for messages received --max-receive times")
	f.IntVar(&maxReceive, "max-receive", 0, "receives before a message moves to the dead-letter queue, 1..1000")
	f.BoolVar(&fifo, "fifo", false, "a FIFO queue (its name must end in .fifo)")
	f.BoolVar(&contentDedup, "content-dedup", false, "FIFO: deduplicate by the body's SHA-256 when no --dedup-id is given")
	f.StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) queueSendCmd() *cobra.Command {
	var (
		body, group, dedup, output string
		delay                      int
		attrs                      []string
	)
	cmd := &cobra.Command{
		Use:   "send NAME",
		Short: "Send a message; prints its id once it is committed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rpc.SendMessageRequest{Queue: args[0], Body: body, GroupID: group, DedupID: dedup}
			if cmd.Flags().Changed("delay") {
				req.DelaySec = &delay
			}
			if len(attrs) > 0 {
				req.Attributes = map[string]string{}
				for _, kv := range attrs {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return fmt.Errorf("--attr %q: want KEY=VALUE", kv)
					}
					req.Attributes[k] = v
				}
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.SendMessage(ctx, req)
				if err != nil {
					return nil, err
				}
				if output == "json" {
					return r, nil
				}
				return r.MessageID, nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&body, "body", "", "the message body")
	f.IntVar(&delay, "delay", 0, "seconds before the message is visible, 0..900 (standard queues)")
	f.StringArrayVar(&attrs, "attr", nil, "message attribute KEY=VALUE (repeatable)")
	f.StringVar(&group, "group-id", "", "FIFO: the message group")
	f.StringVar(&dedup, "dedup-id", "", "FIFO: the deduplication id")
	f.StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

// receivedList prints received messages: as JSON a list of
// {MessageId, ReceiptHandle, Body, Attributes, MessageAttributes}.
type receivedList []rpc.Message

func (l receivedList) String() string {
	var b strings.Builder
	for i, m := range l {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "MessageId:      %s\nReceiptHandle:  %s\nReceiveCount:   %s\nBody:           %s", m.MessageID, m.ReceiptHandle, m.Attributes["ApproximateReceiveCount"], m.Body)
	}
	return b.String()
}

func (c *cli) queueReceiveCmd() *cobra.Command {
	var (
		max, wait, vis int
		output         string
	)
	cmd := &cobra.Command{
		Use:   "receive NAME",
		Short: "Receive up to --max messages, waiting up to --wait seconds for one",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rpc.ReceiveMessageRequest{Queue: args[0], Max: max, WaitSec: wait}
			if cmd.Flags().Changed("visibility-timeout") {
				req.VisibilitySec = &vis
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.ReceiveMessage(ctx, req)
				if err != nil {
					return nil, err
				}
				if r.Messages == nil {
					r.Messages = []rpc.Message{}
				}
				return receivedList(r.Messages), nil
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&max, "max", 1, "messages at most, 1..10")
	f.IntVar(&wait, "wait", 0, "seconds to wait for a message, 0..20 (long polling)")
	f.IntVar(&vis, "visibility-timeout", 0, "seconds the messages stay invisible (default: the queue's)")
	f.StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) queueDeleteMessageCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete-message NAME RECEIPT_HANDLE",
		Short: "Delete a received message",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "", func(ctx context.Context, cl *rpc.Client) (any, error) {
				_, err := cl.DeleteMessage(ctx, args[0], args[1])
				return "deleted", err
			})
		},
	}
}

func (c *cli) queuePurgeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "purge NAME",
		Short: "Delete every message of a queue",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "", func(ctx context.Context, cl *rpc.Client) (any, error) {
				_, err := cl.PurgeQueue(ctx, args[0])
				return "purged " + args[0], err
			})
		},
	}
}

func (c *cli) queueDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a queue and its messages",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "", func(ctx context.Context, cl *rpc.Client) (any, error) {
				_, err := cl.DeleteQueue(ctx, args[0])
				return "deleted " + args[0], err
			})
		},
	}
}

type queueList []*rpc.Queue

func (l queueList) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFIFO\tVISIBILITY\tRETENTION\tDEAD LETTER\tCREATED")
	for _, q := range l {
		fmt.Fprintf(tw, "%s\t%t\t%d s\t%d s\t%s\t%s\n", q.Name, q.FIFO, q.VisibilitySec, q.RetentionSec, orNone(q.DeadLetterQueue),
			time.UnixMilli(q.CreatedMs).UTC().Format(time.RFC3339))
	}
	tw.Flush()
	return strings.TrimRight(b.String(), "\n")
}

// queueListOutput is SQS's ListQueues answer (`-o json`).
type queueListOutput struct {
	Queues []queueOutput `json:"Queues"`
}

func (c *cli) queueListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the queues",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.ListQueues(ctx)
				if err != nil {
					return nil, err
				}
				if output != "json" {
					return queueList(r.Queues), nil
				}
				out := queueListOutput{Queues: []queueOutput{}}
				arns := arnScope(ctx, cl)
				for _, q := range r.Queues {
					o := newQueueOutput(arns, &rpc.QueueResponse{Queue: q})
					for _, k := range []string{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"} {
						delete(o.Attributes, k) // a list does not count
					}
					out.Queues = append(out.Queues, o)
				}
				return out, nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) queueGetCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a queue's attributes and approximate counts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.GetQueue(ctx, args[0])
				if err != nil {
					return nil, err
				}
				return newQueueOutput(arnScope(ctx, cl), r), nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}
