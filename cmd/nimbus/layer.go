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

func (c *cli) layerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "layer", Short: "Publish and manage layers (zips extracted under /opt before a function's code)"}
	cmd.AddCommand(c.layerPublishCmd(), c.layerListCmd(), c.layerGetCmd(), c.layerDeleteCmd())
	return cmd
}

func (c *cli) layerPublishCmd() *cobra.Command {
	var (
		code        codeFlags
		runtimes    string
		description string
		output      string
	)
	cmd := &cobra.Command{
		Use:   "publish NAME",
		Short: "Publish a new version of a layer; prints the version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			zip, err := code.load()
			if err != nil {
				return err
			}
			req := &rpc.PublishLayerRequest{Name: args[0], Description: description, ZipFile: zip}
			if runtimes != "" {
				req.CompatibleRuntimes = strings.Split(runtimes, ",")
			}
			return c.callLayer(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.PublishLayer(ctx, req)
				if err != nil {
					return nil, err
				}
				if output == "" {
					return printed(func() { fmt.Fprintln(c.stdout, r.Layer.Version) }), nil
				}
				return r.Layer, nil
			})
		},
	}
	code.add(cmd)
	f := cmd.Flags()
	f.StringVar(&runtimes, "compatible-runtimes", "", "comma-separated runtimes the layer is meant for (python3.13,nodejs20.x)")
	f.StringVar(&description, "description", "", "what the layer holds")
	f.StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) layerListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List layers and their latest versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.callLayer(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.ListLayers(ctx, &rpc.ListLayersRequest{})
				if err != nil {
					return nil, err
				}
				if output == "" {
					return printed(func() { c.printLayers(r.Layers) }), nil
				}
				return r, nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) layerGetCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get NAME[:VERSION]",
		Short: "Show a layer's versions, or one version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, version, err := layerArg(args[0], false)
			if err != nil {
				return err
			}
			return c.callLayer(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.GetLayer(ctx, &rpc.GetLayerRequest{Name: name, Version: version})
				if err != nil {
					return nil, err
				}
				if output == "" {
					return printed(func() { c.printLayers(r.Versions) }), nil
				}
				return r, nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) layerDeleteCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete NAME:VERSION",
		Short: "Delete a layer version (functions that use it keep running it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, version, err := layerArg(args[0], true)
			if err != nil {
				return err
			}
			return c.callLayer(cmd.Context(), "", func(ctx context.Context, cl *rpc.Client) (any, error) {
				_, err := cl.DeleteLayer(ctx, &rpc.DeleteLayerRequest{Name: name, Version: version})
				return printed(func() {}), err
			})
		},
	}
	return cmd
}

// layerArg reads NAME[:VERSION].
func layerArg(s string, needVersion bool) (string, int64, error) {
	name, v, found := strings.Cut(s, ":")
	if !found {
		if needVersion {
			return "", 0, fmt.Errorf("%q: want NAME:VERSION", s)
		}
		return name, 0, nil
	}
	version, err := strconv.ParseInt(v, 10, 64)
	if err != nil || version < 1 {
		return "", 0, fmt.Errorf("%q: the version must be a number from 1", s)
	}
	return name, version, nil
}

// printed is a result already printed for people: callLayer prints
// nothing more for it.
type printed func()

// callLayer calls a layer method: with -o json it prints the value do
// returns, else do's printed result.
func (c *cli) callLayer(ctx context.Context, output string, do func(context.Context, *rpc.Client) (any, error)) error {
	if output != "" && output != "json" {
		return fmt.Errorf("-o %q: the only output format is json", output)
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
	if p, ok := v.(printed); ok {
		p()
		return nil
	}
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) printLayers(vs []*rpc.LayerVersion) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tSIZE\tUNZIPPED\tRUNTIMES\tCREATED\tDESCRIPTION")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", v.Name, v.Version, v.CodeSize, v.UnzippedSize,
			strings.Join(v.CompatibleRuntimes, ","), time.UnixMilli(v.CreatedMs).UTC().Format(time.RFC3339), v.Description)
	}
	tw.Flush()
}
