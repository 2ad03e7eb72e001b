package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"nimbus/bundle"
	"nimbus/rpc"
)

func (c *cli) fnCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "fn", Short: "Deploy and manage functions"}
	cmd.AddCommand(c.fnCreateCmd(), c.fnUpdateCodeCmd(), c.fnUpdateConfigCmd(),
		c.fnGetCmd(), c.fnListCmd(), c.fnDeleteCmd())
	cmd.AddCommand(c.concurrencyCmds()...)
	cmd.AddCommand(c.eventConfigCmds()...)
	cmd.AddCommand(c.fnMetricsCmd())
	cmd.AddCommand(c.versionCmds()...) // versions, aliases, function URLs (versions.go)
	return cmd
}

// codeFlags are --zip and --dir: exactly one gives the code.
type codeFlags struct{ zip, dir string }

func (cf *codeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&cf.zip, "zip", "", "the code as a zip file")
	cmd.Flags().StringVar(&cf.dir, "dir", "", "the code as a folder (zipped by the client)")
}

func (cf *codeFlags) load() ([]byte, error) {
	switch {
	case cf.zip != "" && cf.dir != "":
		return nil, fmt.Errorf("give --zip or --dir, not both")
	case cf.zip != "":
		return os.ReadFile(cf.zip)
	case cf.dir != "":
		return bundle.ZipDir(cf.dir)
	}
	return nil, fmt.Errorf("the code is required: --zip FILE or --dir DIR")
}

func parseEnv(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	env := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		env[k] = v
	}
	return env, nil
}

func (c *cli) fnCreateCmd() *cobra.Command {
	var (
		code             codeFlags
		runtime, handler string
		memory, timeout  int
		env              []string
		output           string
		layers           []string // issue 10
		description      string
		ephemeral        int
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Deploy a new function",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			zip, err := code.load()
			if err != nil {
				return err
			}
			vars, err := parseEnv(env)
			if err != nil {
				return err
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.CreateFunction(ctx, &rpc.CreateFunctionRequest{
					Name: args[0], Runtime: runtime, Handler: handler,
					MemoryMB: memory, TimeoutSec: timeout, Env: vars, ZipFile: zip,
					Layers: layers, Description: description, EphemeralStorageMB: ephemeral,
				})
				if err != nil {
					return nil, err
				}
				return r.Function, nil
			})
		},
	}
	code.add(cmd)
	f := cmd.Flags()
	f.StringVar(&runtime, "runtime", "provided", "runtime: "+strings.Join(rpc.Runtimes, ", ")+" (managed runtimes need `nimbus image build RUNTIME` once)")
	f.StringSliceVar(&layers, "layers", nil, "layer versions NAME:VERSION (or ARNs), comma-separated, extracted under /opt in this order (at most 5)")
	f.StringVar(&handler, "handler", "bootstrap", "handler, passed to the runtime as _HANDLER (file.function for Python and Ruby, file.export for Node.js, package.Class::method for Java)")
	f.IntVar(&memory, "memory", 128, "memory in MB (128-10240); CPU is proportional")
	f.IntVar(&timeout, "timeout", 3, "timeout in seconds (1-900)")
	f.IntVar(&ephemeral, "ephemeral-storage", 512, "size of /tmp in MB (512-10240), apart from memory")
	f.StringArrayVar(&env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringVar(&description, "description", "", "the function's description (at most 256 bytes)")
	f.StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnUpdateCodeCmd() *cobra.Command {
	var (
		code   codeFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "update-code NAME",
		Short: "Replace a function's code",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			zip, err := code.load()
			if err != nil {
				return err
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.UpdateFunctionCode(ctx, &rpc.UpdateCodeRequest{Name: args[0], ZipFile: zip})
				if err != nil {
					return nil, err
				}
				return r.Function, nil
			})
		},
	}
	code.add(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnUpdateConfigCmd() *cobra.Command {
	var (
		memory, timeout int
		ephemeral       int
		env             []string
		output          string
		deadLetter      string
		description     string
		layers          []string
	)
	cmd := &cobra.Command{
		Use:   "update-config NAME",
		Short: "Change a function's memory, timeout, /tmp size, environment, description, layers or dead-letter queue",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rpc.UpdateConfigRequest{Name: args[0]}
			if cmd.Flags().Changed("memory") {
				req.MemoryMB = &memory
			}
			if cmd.Flags().Changed("timeout") {
				req.TimeoutSec = &timeout
			}
			if cmd.Flags().Changed("ephemeral-storage") {
				req.EphemeralStorageMB = &ephemeral
			}
			if cmd.Flags().Changed("env") {
				vars, err := parseEnv(env)
				if err != nil {
					return err
				}
				if vars == nil {
					vars = map[string]string{}
				}
				req.Env = vars
			}
			if cmd.Flags().Changed("dead-letter") {
				req.DeadLetter = &deadLetter
			}
			if cmd.Flags().Changed("description") {
				req.Description = &description
			}
			if cmd.Flags().Changed("layers") {
				refs := []string{}
				for _, l := range layers {
					if l != "" {
						refs = append(refs, l)
					}
				}
				req.Layers = &refs
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.UpdateFunctionConfig(ctx, req)
				if err != nil {
					return nil, err
				}
				return r.Function, nil
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&memory, "memory", 0, "memory in MB (128-10240)")
	f.IntVar(&timeout, "timeout", 0, "timeout in seconds (1-900)")
	f.IntVar(&ephemeral, "ephemeral-storage", 0, "size of /tmp in MB (512-10240)")
	f.StringArrayVar(&env, "env", nil, "environment variable KEY=VALUE (repeatable; replaces the whole environment)")
	f.StringVar(&deadLetter, "dead-letter", "", `dead-letter queue of failed async events (queue:NAME or an SQS ARN; "" clears it)`)
	f.StringVar(&description, "description", "", "the function's description (at most 256 bytes)")
	f.StringSliceVar(&layers, "layers", nil, `layer versions NAME:VERSION (or ARNs), comma-separated, replacing the function's ("" removes them)`)
	f.StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnGetCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a function",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.GetFunction(ctx, &rpc.GetFunctionRequest{Name: args[0]})
				if err != nil {
					return nil, err
				}
				return r.Function, nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

// functionList is `fn list -o json`.
type functionList struct {
	Functions []*rpc.FunctionConfig `json:"Functions"`
}

func (c *cli) fnListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List functions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.ListFunctions(ctx, &rpc.ListFunctionsRequest{})
				if err != nil {
					return nil, err
				}
				if r.Functions == nil {
					r.Functions = []*rpc.FunctionConfig{}
				}
				return functionList{r.Functions}, nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a function",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "", func(ctx context.Context, cl *rpc.Client) (any, error) {
				if _, err := cl.DeleteFunction(ctx, &rpc.GetFunctionRequest{Name: args[0]}); err != nil {
					return nil, err
				}
				return fmt.Sprintf("deleted %s", args[0]), nil
			})
		},
	}
}

// call dials, runs one request and prints its result as text or JSON.
func (c *cli) call(ctx context.Context, output string, do func(context.Context, *rpc.Client) (any, error)) error {
	if output != "" && output != "json" {
		return fmt.Errorf("-o %q: the only output format is json", output)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	v, err := do(ctx, cl)
	if err != nil {
		return err
	}
	if output == "json" {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	switch v := v.(type) {
	case *rpc.FunctionConfig:
		printFunction(c, v)
	case *rpc.MembersResponse:
		c.printMembers(v)
	case *rpc.RaftResponse:
		c.printRaft(v)
	case *rpc.ConcurrencyResponse:
		c.printConcurrency(v)
	case functionList:
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tRUNTIME\tMEMORY\tTIMEOUT\tCODE SIZE\tLAST MODIFIED")
		for _, f := range v.Functions {
			fmt.Fprintf(tw, "%s\t%s\t%d MB\t%d s\t%d\t%s\n", f.Name, f.Runtime, f.MemoryMB, f.TimeoutSec, f.CodeSize,
				time.UnixMilli(f.LastModifiedMs).UTC().Format(time.RFC3339))
		}
		tw.Flush()
	default:
		fmt.Fprintln(c.stdout, v)
	}
	return nil
}

func printFunction(c *cli, f *rpc.FunctionConfig) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", f.Name)
	fmt.Fprintf(tw, "Runtime:\t%s\n", f.Runtime)
	fmt.Fprintf(tw, "Handler:\t%s\n", f.Handler)
	fmt.Fprintf(tw, "Memory:\t%d MB\n", f.MemoryMB)
	fmt.Fprintf(tw, "Timeout:\t%d s\n", f.TimeoutSec)
	fmt.Fprintf(tw, "Ephemeral storage:\t%d MB\n", f.TmpSizeMB())
	fmt.Fprintf(tw, "Code SHA256:\t%s\n", f.CodeSHA256)
	fmt.Fprintf(tw, "Code size:\t%d bytes\n", f.CodeSize)
	fmt.Fprintf(tw, "Revision:\t%d\n", f.Revision)
	fmt.Fprintf(tw, "Last modified:\t%s\n", time.UnixMilli(f.LastModifiedMs).UTC().Format(time.RFC3339))
	for k, v := range f.Env {
		fmt.Fprintf(tw, "Env:\t%s=%s\n", k, v)
	}
	tw.Flush()
}
