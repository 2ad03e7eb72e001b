package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

func (c *cli) clusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Inspect the cluster"}
	var output string
	members := &cobra.Command{
		Use:   "members",
		Short: "List nodes: address, roles, status, memory, in-flight invocations, warm sandboxes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				var resp rpc.MembersResponse
				if err := cl.Call(ctx, rpc.MethodClusterMembers, &rpc.MembersRequest{}, &resp); err != nil {
					return nil, err
				}
				if resp.Members == nil {
					resp.Members = []rpc.Member{}
				}
				return &resp, nil
			})
		},
	}
	members.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	var rOutput string
	raftCmd := &cobra.Command{
		Use:   "raft",
		Short: "Show Raft: voters, leader, term, commit index",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(cmd.Context(), rOutput, func(ctx context.Context, cl *rpc.Client) (any, error) {
				var resp rpc.RaftResponse
				if err := cl.Call(ctx, rpc.MethodClusterRaft, &rpc.RaftRequest{}, &resp); err != nil {
					return nil, err
				}
				if resp.Servers == nil {
					resp.Servers = []rpc.RaftServer{}
				}
				return &resp, nil
			})
		},
	}
	raftCmd.Flags().StringVarP(&rOutput, "output", "o", "", "output format: json")
	cmd.AddCommand(members, raftCmd)
	return cmd
}

func (c *cli) printMembers(m *rpc.MembersResponse) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tROLES\tSTATUS\tMEMORY\tIN-FLIGHT\tWARM")
	for _, x := range m.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d MB\t%d\t%d\n", x.Name, x.Addr, strings.Join(x.Roles, ","), x.Status, x.MemoryMB, x.InFlight, x.Warm)
	}
	tw.Flush()
}

func (c *cli) printRaft(r *rpc.RaftResponse) {
	fmt.Fprintf(c.stdout, "Node:          %s (%s)\nLeader:        %s\nTerm:          %d\nCommit index:  %d\nApplied index: %d\n",
		r.Node, r.State, r.Leader, r.Term, r.CommitIndex, r.AppliedIndex)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tADDRESS\tSUFFRAGE\tLEADER")
	for _, s := range r.Servers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", s.ID, s.Address, s.Suffrage, s.Leader)
	}
	tw.Flush()
}

func (c *cli) concurrencyCmds() []*cobra.Command {
	var reserved int
	var output string
	put := &cobra.Command{
		Use:   "put-concurrency NAME --reserved N",
		Short: "Reserve concurrency for a function (0 disables it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("reserved") {
				return fmt.Errorf("--reserved N is required")
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				var resp rpc.ConcurrencyResponse
				err := cl.Call(ctx, rpc.MethodConcurrencyPut, &rpc.PutConcurrencyRequest{Name: args[0], Reserved: reserved}, &resp)
				return &resp, err
			})
		},
	}
	put.Flags().IntVar(&reserved, "reserved", 0, "reserved concurrent executions")
	put.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	var gOutput string
	get := &cobra.Command{
		Use:   "get-concurrency NAME",
		Short: "Show a function's reserved concurrency",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), gOutput, func(ctx context.Context, cl *rpc.Client) (any, error) {
				var resp rpc.ConcurrencyResponse
				err := cl.Call(ctx, rpc.MethodConcurrencyGet, &rpc.GetFunctionRequest{Name: args[0]}, &resp)
				return &resp, err
			})
		},
	}
	get.Flags().StringVarP(&gOutput, "output", "o", "", "output format: json")
	del := &cobra.Command{
		Use:   "delete-concurrency NAME",
		Short: "Remove a function's reservation (it draws from the shared pool again)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "", func(ctx context.Context, cl *rpc.Client) (any, error) {
				var resp rpc.ConcurrencyResponse
				err := cl.Call(ctx, rpc.MethodConcurrencyDelete, &rpc.GetFunctionRequest{Name: args[0]}, &resp)
				return &resp, err
			})
		},
	}
	return []*cobra.Command{put, get, del}
}

func (c *cli) printConcurrency(r *rpc.ConcurrencyResponse) {
	if r.Reserved == nil {
		fmt.Fprintf(c.stdout, "%s: no reserved concurrency (shares the account's unreserved pool)\n", r.Name)
		return
	}
	fmt.Fprintf(c.stdout, "%s: reserved concurrency %d\n", r.Name, *r.Reserved)
}

// arnScope is the region and account the node's ARNs name, for the ARNs
// the CLI prints; the default scope from a node that does not say.
func arnScope(ctx context.Context, cl *rpc.Client) rpc.ARNScope {
	s, err := cl.ARNScope(ctx)
	if err != nil {
		return rpc.ARNScope{}
	}
	return *s
}
