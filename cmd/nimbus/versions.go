package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

// The versions, aliases and function URL commands of `nimbus fn`.
func (c *cli) versionCmds() []*cobra.Command {
	return []*cobra.Command{
		c.fnPublishVersionCmd(), c.fnListVersionsCmd(), c.fnDeleteVersionCmd(),
		c.fnCreateAliasCmd(), c.fnUpdateAliasCmd(), c.fnGetAliasCmd(), c.fnListAliasesCmd(), c.fnDeleteAliasCmd(),
		c.fnCreateURLCmd(), c.fnGetURLCmd(), c.fnListURLsCmd(), c.fnDeleteURLCmd(),
	}
}

// versionOut is one version (`-o json`: the config with its Version).
type versionOut struct{ *rpc.FunctionConfig }

func (v versionOut) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Function:\t%s\n", v.Name)
	fmt.Fprintf(tw, "Version:\t%s\n", v.VersionName())
	if v.Description != "" {
		fmt.Fprintf(tw, "Description:\t%s\n", v.Description)
	}
	fmt.Fprintf(tw, "Code SHA256:\t%s\n", v.CodeSHA256)
	fmt.Fprintf(tw, "Memory:\t%d MB\n", v.MemoryMB)
	fmt.Fprintf(tw, "Timeout:\t%d s\n", v.TimeoutSec)
	fmt.Fprintf(tw, "Last modified:\t%s", time.UnixMilli(v.LastModifiedMs).UTC().Format(time.RFC3339))
	tw.Flush()
	return b.String()
}

// versionList is `fn list-versions` (`-o json`: {"Versions": [...]}).
type versionList struct {
	Versions []*rpc.FunctionConfig `json:"Versions"`
}

func (l versionList) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "VERSION\tCODE SHA256\tMEMORY\tTIMEOUT\tDESCRIPTION")
	for _, v := range l.Versions {
		fmt.Fprintf(tw, "\n%s\t%.12s\t%d MB\t%d s\t%s", v.VersionName(), v.CodeSHA256, v.MemoryMB, v.TimeoutSec, v.Description)
	}
	tw.Flush()
	return b.String()
}

func (c *cli) fnPublishVersionCmd() *cobra.Command {
	var output, description, codeSHA string
	cmd := &cobra.Command{
		Use:   "publish-version NAME",
		Short: "Publish $LATEST as a new immutable version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: args[0], Description: description, CodeSHA256: codeSHA})
				if err != nil {
					return nil, err
				}
				return versionOut{r.Function}, nil
			})
		},
	}
	cmd.Flags().StringVar(&description, "description", "", "the version's description")
	cmd.Flags().StringVar(&codeSHA, "code-sha256", "", "publish only if $LATEST's code has this hex digest")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnListVersionsCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list-versions NAME",
		Short: "List a function's versions ($LATEST first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.ListVersions(ctx, &rpc.ListVersionsRequest{Name: args[0]})
				if err != nil {
					return nil, err
				}
				return versionList{r.Versions}, nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnDeleteVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete-version NAME VERSION",
		Short: "Delete a published version (refused while an alias routes to it)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "", func(ctx context.Context, cl *rpc.Client) (any, error) {
				if _, err := cl.DeleteVersion(ctx, &rpc.DeleteVersionRequest{Name: args[0], Version: args[1]}); err != nil {
					return nil, err
				}
				return fmt.Sprintf("deleted %s:%s", args[0], args[1]), nil
			})
		},
	}
}

// aliasOut is one alias, as Lambda's AliasConfiguration (`-o json`).
type aliasOut struct {
	AliasArn        string              `json:"AliasArn"`
	Name            string              `json:"Name"`
	FunctionVersion string              `json:"FunctionVersion"`
	Description     string              `json:"Description"`
	RoutingConfig   *aliasRoutingConfig `json:"RoutingConfig,omitempty"`
}

type aliasRoutingConfig struct {
	AdditionalVersionWeights map[string]float64 `json:"AdditionalVersionWeights"`
}

func newAliasOut(arns rpc.ARNScope, a *rpc.Alias) aliasOut {
	o := aliasOut{AliasArn: arns.Function(a.FunctionName, a.Name), Name: a.Name, FunctionVersion: a.FunctionVersion, Description: a.Description}
	if w := a.Weights(); w != nil {
		o.RoutingConfig = &aliasRoutingConfig{AdditionalVersionWeights: w}
	}
	return o
}

func (o aliasOut) routing() string {
	if o.RoutingConfig == nil {
		return "-"
	}
	var parts []string
	for v, w := range o.RoutingConfig.AdditionalVersionWeights {
		parts = append(parts, v+"="+strconv.FormatFloat(w, 'g', -1, 64))
	}
	return strings.Join(parts, ",")
}

func (o aliasOut) String() string {
	return fmt.Sprintf("Alias:     %s\nVersion:   %s\nWeights:   %s\nDescription: %s", o.AliasArn, o.FunctionVersion, o.routing(), orNone(o.Description))
}

// aliasList is `fn list-aliases` (`-o json`: {"Aliases": [...]}).
type aliasList struct {
	Aliases []aliasOut `json:"Aliases"`
}

func (l aliasList) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "ALIAS\tVERSION\tWEIGHTS\tDESCRIPTION")
	for _, a := range l.Aliases {
		fmt.Fprintf(tw, "\n%s\t%s\t%s\t%s", a.Name, a.FunctionVersion, a.routing(), a.Description)
	}
	tw.Flush()
	return b.String()
}

// parseWeights reads --weights V=W (one version: an alias routes to at
// most one more).
func parseWeights(kvs []string) (map[string]float64, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := make(map[string]float64, len(kvs))
	for _, kv := range kvs {
		v, w, ok := strings.Cut(kv, "=")
		f, err := strconv.ParseFloat(w, 64)
		if !ok || v == "" || err != nil {
			return nil, fmt.Errorf("--weights %q: want VERSION=WEIGHT, e.g. 2=0.1", kv)
		}
		out[v] = f
	}
	return out, nil
}

func (c *cli) fnCreateAliasCmd() *cobra.Command {
	var (
		output, version, description string
		weights                      []string
	)
	cmd := &cobra.Command{
		Use:   "create-alias NAME ALIAS",
		Short: "Create an alias of a version, optionally routing a share to one more version",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := parseWeights(weights)
			if err != nil {
				return err
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.CreateAlias(ctx, &rpc.CreateAliasRequest{FunctionName: args[0], Name: args[1], FunctionVersion: version, Description: description, Weights: w})
				if err != nil {
					return nil, err
				}
				return newAliasOut(arnScope(ctx, cl), r.Alias), nil
			})
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "the version the alias points to (a number or $LATEST)")
	cmd.Flags().StringSliceVar(&weights, "weights", nil, "VERSION=WEIGHT: one more version and its share, 0 <= WEIGHT < 1")
	cmd.Flags().StringVar(&description, "description", "", "the alias's description")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnUpdateAliasCmd() *cobra.Command {
	var (
		output, version, description string
		weights                      []string
		noWeights                    bool
	)
	cmd := &cobra.Command{
		Use:   "update-alias NAME ALIAS",
		Short: "Point an alias elsewhere or change its routing",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := parseWeights(weights)
			if err != nil {
				return err
			}
			req := &rpc.UpdateAliasRequest{FunctionName: args[0], Name: args[1], FunctionVersion: version}
			if cmd.Flags().Changed("description") {
				req.Description = &description
			}
			if noWeights || cmd.Flags().Changed("weights") {
				req.SetWeights, req.Weights = true, w
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.UpdateAlias(ctx, req)
				if err != nil {
					return nil, err
				}
				return newAliasOut(arnScope(ctx, cl), r.Alias), nil
			})
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "the version the alias points to")
	cmd.Flags().StringSliceVar(&weights, "weights", nil, "VERSION=WEIGHT: one more version and its share (replaces the routing)")
	cmd.Flags().BoolVar(&noWeights, "no-weights", false, "route everything to --version again")
	cmd.Flags().StringVar(&description, "description", "", "the alias's description")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnGetAliasCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get-alias NAME ALIAS",
		Short: "Show an alias",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.GetAlias(ctx, &rpc.GetAliasRequest{FunctionName: args[0], Name: args[1]})
				if err != nil {
					return nil, err
				}
				return newAliasOut(arnScope(ctx, cl), r.Alias), nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnListAliasesCmd() *cobra.Command {
	var output, version string
	cmd := &cobra.Command{
		Use:   "list-aliases NAME",
		Short: "List a function's aliases",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.ListAliases(ctx, &rpc.ListAliasesRequest{FunctionName: args[0], FunctionVersion: version})
				if err != nil {
					return nil, err
				}
				out := aliasList{Aliases: []aliasOut{}}
				arns := arnScope(ctx, cl)
				for _, a := range r.Aliases {
					out.Aliases = append(out.Aliases, newAliasOut(arns, a))
				}
				return out, nil
			})
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "only the aliases routing to this version")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnDeleteAliasCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete-alias NAME ALIAS",
		Short: "Delete an alias (and its function URL)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "", func(ctx context.Context, cl *rpc.Client) (any, error) {
				if _, err := cl.DeleteAlias(ctx, &rpc.GetAliasRequest{FunctionName: args[0], Name: args[1]}); err != nil {
					return nil, err
				}
				return fmt.Sprintf("deleted %s:%s", args[0], args[1]), nil
			})
		},
	}
}

// urlOut is a function URL (`-o json`: Lambda's FunctionUrlConfig, with
// the bearer token of AuthType TOKEN in AuthToken when just made); as text
// it is the URL alone, so that `URL=$(nimbus fn create-url f)` works.
type urlOut struct {
	FunctionURL  string   `json:"FunctionUrl"`
	FunctionArn  string   `json:"FunctionArn"`
	AuthType     string   `json:"AuthType"`
	InvokeMode   string   `json:"InvokeMode"`
	AllowOrigins []string `json:"AllowOrigins,omitempty"`
	AuthToken    string   `json:"AuthToken,omitempty"`
}

func newURLOut(arns rpc.ARNScope, u *rpc.URLResponse) urlOut {
	arn := arns.Function(u.Config.FunctionName, u.Config.Qualifier)
	o := urlOut{FunctionURL: u.URL, FunctionArn: arn, AuthType: u.Config.AuthType, InvokeMode: u.Config.InvokeMode, AuthToken: u.Config.Token}
	if u.Config.Cors != nil {
		o.AllowOrigins = u.Config.Cors.AllowOrigins
	}
	return o
}

func (o urlOut) String() string { return o.FunctionURL }

func (c *cli) fnCreateURLCmd() *cobra.Command {
	var (
		output, qualifier, auth, mode string
		origins, methods, headers     []string
		maxAge                        int
	)
	cmd := &cobra.Command{
		Use:   "create-url NAME",
		Short: "Give a function (or an alias, --qualifier) an HTTP URL; prints the URL",
		Long: "Give a function (or an alias, --qualifier) an HTTP URL; prints the URL.\n" +
			"With --auth TOKEN, callers must send Authorization: Bearer TOKEN; the token is printed on stderr (and in AuthToken with -o json).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rpc.CreateURLRequest{FunctionName: args[0], Qualifier: qualifier, AuthType: auth, InvokeMode: mode}
			if len(origins) > 0 || len(methods) > 0 || len(headers) > 0 || maxAge > 0 {
				if len(methods) == 0 {
					methods = []string{"*"}
				}
				req.Cors = &rpc.Cors{AllowOrigins: origins, AllowMethods: methods, AllowHeaders: headers, MaxAge: maxAge}
			}
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.CreateURL(ctx, req)
				if err != nil {
					return nil, err
				}
				if r.Config.Token != "" && output == "" {
					fmt.Fprintf(c.stderr, "token: %s\n", r.Config.Token)
				}
				return newURLOut(arnScope(ctx, cl), r), nil
			})
		},
	}
	cmd.Flags().StringVar(&qualifier, "qualifier", "", "an alias to give the URL to (default: $LATEST)")
	cmd.Flags().StringVar(&auth, "auth", rpc.URLAuthNone, "NONE or TOKEN (a bearer token)")
	cmd.Flags().StringVar(&mode, "invoke-mode", rpc.URLInvokeBuffered, "BUFFERED or RESPONSE_STREAM")
	cmd.Flags().StringSliceVar(&origins, "cors-origin", nil, "an origin CORS allows (repeatable; * for any)")
	cmd.Flags().StringSliceVar(&methods, "cors-method", nil, "a method CORS allows (repeatable; default * when CORS is set)")
	cmd.Flags().StringSliceVar(&headers, "cors-header", nil, "a request header CORS allows (repeatable)")
	cmd.Flags().IntVar(&maxAge, "cors-max-age", 0, "seconds a browser may cache a preflight")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnGetURLCmd() *cobra.Command {
	var output, qualifier string
	cmd := &cobra.Command{
		Use:   "get-url NAME",
		Short: "Print a function's URL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.GetURL(ctx, &rpc.GetURLRequest{FunctionName: args[0], Qualifier: qualifier})
				if err != nil {
					return nil, err
				}
				return newURLOut(arnScope(ctx, cl), r), nil
			})
		},
	}
	cmd.Flags().StringVar(&qualifier, "qualifier", "", "the alias whose URL to print")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

// urlList is `fn list-urls` (`-o json`: {"FunctionUrlConfigs": [...]}).
type urlList struct {
	FunctionURLConfigs []urlOut `json:"FunctionUrlConfigs"`
}

func (l urlList) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "URL\tFUNCTION\tAUTH")
	for _, u := range l.FunctionURLConfigs {
		fmt.Fprintf(tw, "\n%s\t%s\t%s", u.FunctionURL, u.FunctionArn, u.AuthType)
	}
	tw.Flush()
	return b.String()
}

func (c *cli) fnListURLsCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list-urls NAME",
		Short: "List a function's URLs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), output, func(ctx context.Context, cl *rpc.Client) (any, error) {
				r, err := cl.ListURLs(ctx, &rpc.ListURLsRequest{FunctionName: args[0]})
				if err != nil {
					return nil, err
				}
				out := urlList{FunctionURLConfigs: []urlOut{}}
				arns := arnScope(ctx, cl)
				for i := range r.URLs {
					out.FunctionURLConfigs = append(out.FunctionURLConfigs, newURLOut(arns, &r.URLs[i]))
				}
				return out, nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func (c *cli) fnDeleteURLCmd() *cobra.Command {
	var qualifier string
	cmd := &cobra.Command{
		Use:   "delete-url NAME",
		Short: "Delete a function's URL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "", func(ctx context.Context, cl *rpc.Client) (any, error) {
				if _, err := cl.DeleteURL(ctx, &rpc.GetURLRequest{FunctionName: args[0], Qualifier: qualifier}); err != nil {
					return nil, err
				}
				return fmt.Sprintf("deleted the URL of %s", rpc.FunctionRef{Name: args[0], Qualifier: qualifier}), nil
			})
		},
	}
	cmd.Flags().StringVar(&qualifier, "qualifier", "", "the alias whose URL to delete")
	return cmd
}
