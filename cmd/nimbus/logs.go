package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

func (c *cli) logsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "logs", Short: "Read function logs and manage their retention"}
	cmd.AddCommand(c.logsTailCmd(), c.logsGroupsCmd(), c.putRetentionCmd(), c.deleteRetentionCmd())
	return cmd
}

// tailOptions are the flags of `logs tail`.
type tailOptions struct {
	follow            bool
	since, until      string
	filter, requestID string
	format            string
	noColor           bool
	sinceMs, untilMs  int64
	color             bool
	function          string
}

func (c *cli) logsTailCmd() *cobra.Command {
	o := &tailOptions{}
	tail := &cobra.Command{
		Use:   "tail NAME",
		Short: "Print a function's log; --follow keeps printing new lines",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.function = args[0]
			now := time.Now()
			var err error
			if o.sinceMs, err = parseLogTime(o.since, now); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if o.until != "" {
				if o.untilMs, err = parseLogTime(o.until, now); err != nil {
					return fmt.Errorf("--until: %w", err)
				}
				if o.sinceMs > o.untilMs {
					return rpc.Errorf(rpc.CodeInvalidParameterValue, "--since (%s) is after --until (%s)", o.since, o.until)
				}
				if o.follow {
					return rpc.Errorf(rpc.CodeInvalidParameterValue, "--follow cannot be combined with --until")
				}
			}
			switch o.format {
			case "short", "detailed", "json":
			default:
				return rpc.Errorf(rpc.CodeInvalidParameterValue, "--format must be short, detailed or json, not %q", o.format)
			}
			o.color = !o.noColor && o.format != "json" && isTerminal(c.stdout) && os.Getenv("NO_COLOR") == ""
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return c.tailLogs(ctx, o)
		},
	}
	f := tail.Flags()
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new lines as they arrive")
	f.StringVar(&o.since, "since", "10m", "start this long ago (10m, 2h, 1d) or at this RFC 3339 time")
	f.StringVar(&o.until, "until", "", "end this long ago or at this RFC 3339 time (default: now)")
	f.StringVar(&o.filter, "filter", "", "a CloudWatch filter pattern: terms, \"phrases\", ?any, -exclude, { $.json = ... }, %regex%")
	f.StringVar(&o.requestID, "request-id", "", "only the lines of this invocation")
	f.StringVar(&o.format, "format", "detailed", "short, detailed or json")
	f.BoolVar(&o.noColor, "no-color", false, "do not colour lines by stream")
	return tail
}

// parseLogTime reads a time as `logs tail` takes it: a duration before now
// (10m, 1h30m, 2d, 1w) or an RFC 3339 time.
func parseLogTime(s string, now time.Time) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixMilli(), nil
	}
	unit := time.Duration(0)
	switch {
	case strings.HasSuffix(s, "d"):
		unit = 24 * time.Hour
	case strings.HasSuffix(s, "w"):
		unit = 7 * 24 * time.Hour
	}
	if unit != 0 {
		var n int
		if _, err := fmt.Sscanf(s[:len(s)-1], "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != s[:len(s)-1] {
			return 0, rpc.Errorf(rpc.CodeInvalidParameterValue, "%q is neither a duration (10m, 2h, 1d) nor an RFC 3339 time", s)
		}
		return now.Add(-time.Duration(n) * unit).UnixMilli(), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, rpc.Errorf(rpc.CodeInvalidParameterValue, "%q is neither a duration (10m, 2h, 1d) nor an RFC 3339 time", s)
	}
	return now.Add(-d).UnixMilli(), nil
}

// tailLogs prints a function's log. Following, it long-polls from the
// store's cursor; when the node it talks to fails, it moves to another
// node of the cluster and goes on from the same cursor, so nothing is
// missed or printed twice.
func (c *cli) tailLogs(ctx context.Context, o *tailOptions) error {
	req := &rpc.ReadLogsRequest{
		FunctionName: o.function, Limit: 1000, SinceMs: o.sinceMs, UntilMs: o.untilMs,
		FilterPattern: o.filter, RequestID: o.requestID,
	}
	nodes := newNodeList(c.addr)
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
			if cl, err = c.dialAny(ctx, nodes); err != nil {
				if !o.follow || ctx.Err() != nil {
					return err
				}
				if !sleepCtx(ctx, backoff) {
					return nil
				}
				backoff = min(backoff*2, 2*time.Second)
				continue
			}
			if o.follow {
				nodes.learn(ctx, cl)
			}
		}
		if o.follow {
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
			if !o.follow || errors.As(err, &re) && re.Code != rpc.CodeService {
				return err
			}
			// The node failed (or its store is away): another one.
			cl.Close()
			cl = nil
			nodes.next()
			continue
		}
		backoff = 100 * time.Millisecond
		if res.Expired {
			fmt.Fprintln(c.stderr, "nimbus: lines after the cursor were deleted by retention; resuming from the oldest line kept")
		}
		for i := range res.Events {
			c.printEvent(o, &res.Events[i])
		}
		// From here on the cursor says where to go on; SinceMs and UntilMs
		// still filter each line.
		req.After = res.Next
		if !o.follow && !res.More && len(res.Events) < req.Limit {
			return nil
		}
	}
}

// nodeList is the nodes a follower may talk to: those of --addr (commas
// allowed) and, once connected, every alive node of the cluster.
type nodeList struct {
	addrs []string
	cur   int
}

func newNodeList(addr string) *nodeList {
	l := &nodeList{}
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			l.addrs = append(l.addrs, a)
		}
	}
	return l
}

func (l *nodeList) next() { l.cur = (l.cur + 1) % len(l.addrs) }

// learn adds the rpc addresses of the cluster's alive members.
func (l *nodeList) learn(ctx context.Context, cl *rpc.Client) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var res rpc.MembersResponse
	if err := cl.Call(ctx, rpc.MethodClusterMembers, &rpc.MembersRequest{}, &res); err != nil {
		return
	}
	for _, m := range res.Members {
		if m.Status == rpc.MemberAlive && m.Addr != "" && !containsAddr(l.addrs, m.Addr) {
			l.addrs = append(l.addrs, m.Addr)
		}
	}
}

func containsAddr(list []string, a string) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// dialAny dials the current node, then the others in turn.
func (c *cli) dialAny(ctx context.Context, l *nodeList) (*rpc.Client, error) {
	var first error
	for range l.addrs {
		a := l.addrs[l.cur]
		cl, err := rpc.Dial(ctx, a, rpc.ClientOptions{DialTimeout: 5 * time.Second})
		if err == nil {
			return cl, nil
		}
		if first == nil {
			first = &dialError{fmt.Errorf("%s: %w", a, err)}
		}
		l.next()
	}
	return nil, first
}

// ANSI colours by stream.
const (
	colorReset    = "\x1b[0m"
	colorStderr   = "\x1b[31m"
	colorPlatform = "\x1b[36m"
	colorDim      = "\x1b[2m"
)

// jsonEvent is one line of `--format json`.
type jsonEvent struct {
	Timestamp string `json:"timestamp"`
	Function  string `json:"function"`
	RequestID string `json:"requestId"`
	Stream    string `json:"stream"`
	Message   string `json:"message"`
	Node      string `json:"node"`
}

func (c *cli) printEvent(o *tailOptions, e *rpc.LogEvent) {
	ts := time.UnixMilli(e.TimeMs).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	stream := e.Stream
	if stream == "" {
		stream = "stdout"
	}
	switch o.format {
	case "json":
		b, _ := json.Marshal(jsonEvent{Timestamp: ts, Function: o.function, RequestID: e.RequestID, Stream: stream, Message: e.Line, Node: e.Node})
		fmt.Fprintf(c.stdout, "%s\n", b)
		return
	case "short":
		if o.color {
			fmt.Fprintf(c.stdout, "%s%s%s %s\n", colorDim, ts, colorReset, colorize(stream, e.Line))
		} else {
			fmt.Fprintf(c.stdout, "%s %s\n", ts, e.Line)
		}
	default: // detailed
		src := e.Node + "/" + stream
		if o.color {
			fmt.Fprintf(c.stdout, "%s%s %s%s %s\n", colorDim, ts, src, colorReset, colorize(stream, e.Line))
		} else {
			fmt.Fprintf(c.stdout, "%s %s %s\n", ts, src, e.Line)
		}
	}
}

func colorize(stream, line string) string {
	switch stream {
	case "stderr":
		return colorStderr + line + colorReset
	case "platform":
		return colorPlatform + line + colorReset
	}
	return line
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (c *cli) logsGroupsCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "List the log groups: stored bytes, records, retention, first and last event",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.client(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			res, err := cl.LogGroups(ctx, &rpc.LogGroupsRequest{})
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(c.stdout)
				enc.SetIndent("", "  ")
				groups := res.Groups
				if groups == nil {
					groups = []rpc.LogGroup{}
				}
				return enc.Encode(map[string]any{"logGroups": groups})
			}
			tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LOG GROUP\tSTORED\tRECORDS\tRETENTION\tREPLICAS\tFIRST EVENT\tLAST EVENT")
			for _, g := range res.Groups {
				ret := "never expire"
				if g.RetentionInDays > 0 {
					ret = fmt.Sprintf("%d days", g.RetentionInDays)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", g.LogGroupName, humanBytes(g.StoredBytes), g.Records, ret, g.Replicas, msTime(g.FirstEventMs), msTime(g.LastEventMs))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func msTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (c *cli) putRetentionCmd() *cobra.Command {
	var days int
	cmd := &cobra.Command{
		Use:   "put-retention NAME --days N",
		Short: "Keep a function's log events N days (CloudWatch's values: 1, 3, 5, 7, 14, 30, ... 3653)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("days") {
				return rpc.Errorf(rpc.CodeInvalidParameterValue, "--days is required")
			}
			ctx := cmd.Context()
			cl, err := c.client(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			res, err := cl.PutRetention(ctx, &rpc.PutRetentionRequest{FunctionName: args[0], RetentionInDays: days})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "%s: events kept %d days\n", res.Group.LogGroupName, res.Group.RetentionInDays)
			return nil
		},
	}
	cmd.Flags().IntVar(&days, "days", 0, "retention in days")
	return cmd
}

func (c *cli) deleteRetentionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete-retention NAME",
		Short: "Keep a function's log events until the size bound removes them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.client(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			res, err := cl.DeleteRetention(ctx, &rpc.DeleteRetentionRequest{FunctionName: args[0]})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "%s: events never expire by age\n", res.Group.LogGroupName)
			return nil
		},
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
