package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"nimbus/rpc"
	"nimbus/sandbox"
)

// imageBuildTimeout bounds one build: a JDK image from a slow mirror takes
// minutes.
const imageBuildTimeout = 30 * time.Minute

func (c *cli) imageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Build and list the managed runtimes' images"}
	cmd.AddCommand(c.imageBuildCmd(), c.imageListCmd())
	return cmd
}

func (c *cli) imageBuildCmd() *cobra.Command {
	var (
		mirror, output, dir string
		local, verbose      bool
	)
	cmd := &cobra.Command{
		Use:   "build RUNTIME...",
		Short: "Build a runtime's root filesystem from Debian packages on the node asked (or here, with --local)",
		Long: "Builds the image of each managed runtime named (python3.13, nodejs20.x, java21, ruby3.3) with mmdebstrap,\n" +
			"from the node's own apt mirror (or --mirror). An image whose recipe has not changed is not built again.\n" +
			"With --local the build runs in this process, into --image-dir, with no agent: setup scripts use it.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" {
				return fmt.Errorf("-o %q: the only output format is json", output)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), imageBuildTimeout)
			defer cancel()
			var out []*rpc.BuildImageResponse
			var store *sandbox.ImageStore
			var cl *rpc.Client
			if local {
				var err error
				if store, err = sandbox.OpenImageStore(dir); err != nil {
					return err
				}
			} else {
				var err error
				if cl, err = c.client(ctx); err != nil {
					return err
				}
				defer cl.Close()
			}
			for _, rt := range args {
				var r *rpc.BuildImageResponse
				if local {
					var log io.Writer
					if verbose {
						log = c.stderr
					}
					info, built, err := store.Build(ctx, rt, sandbox.BuildOptions{Mirror: mirror, Log: log})
					if err != nil {
						return err
					}
					r = &rpc.BuildImageResponse{Image: *info, Built: built, Node: "local"}
				} else {
					var err error
					if r, err = cl.BuildImage(ctx, &rpc.BuildImageRequest{Runtime: rt, Mirror: mirror}); err != nil {
						return err
					}
				}
				out = append(out, r)
				if output == "" {
					how := "already built"
					if r.Built {
						how = fmt.Sprintf("built in %.1f s", r.Image.BuildSeconds)
					}
					fmt.Fprintf(c.stdout, "%s\tsha256:%s\t%s\t%s on %s\n", r.Image.Runtime, r.Image.Digest, sizeMB(r.Image.SizeBytes), how, r.Node)
				}
			}
			if output == "json" {
				enc := json.NewEncoder(c.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&mirror, "mirror", "", "Debian archive URI (default: the node's apt sources)")
	f.BoolVar(&local, "local", false, "build here, without an agent, into --image-dir")
	f.StringVar(&dir, "image-dir", sandbox.DefaultImageDir, "the image store (with --local)")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the builder's output (with --local)")
	f.StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) imageListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the runtimes, their image digests and sizes, and which nodes have them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" {
				return fmt.Errorf("-o %q: the only output format is json", output)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			cl, err := c.client(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			r, err := cl.ListImages(ctx, &rpc.ListImagesRequest{})
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(c.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUNTIME\tDIGEST\tSIZE\tNODES")
			for _, rt := range r.Runtimes {
				switch {
				case !rt.NeedsBuild:
					fmt.Fprintf(tw, "%s\t(default image, no build)\t-\tevery worker\n", rt.Runtime)
				case len(rt.Images) == 0:
					fmt.Fprintf(tw, "%s\t(not built: nimbus image build %s)\t-\t-\n", rt.Runtime, rt.Runtime)
				}
				for _, im := range rt.Images {
					fmt.Fprintf(tw, "%s\tsha256:%s\t%s\t%s\n", rt.Runtime, im.Digest[:16], sizeMB(im.SizeBytes), strings.Join(im.Nodes, ","))
				}
			}
			tw.Flush()
			if len(r.Unreached) > 0 {
				fmt.Fprintf(c.stderr, "nodes that did not answer: %s\n", strings.Join(r.Unreached, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func sizeMB(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
