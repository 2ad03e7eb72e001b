package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"nimbus/rpc"
)

// Exit codes. A function error is not a platform error: `invoke` exits 1 for
// the first and 2 for the second, so scripts can tell them apart.
const (
	exitOK            = 0
	exitFunctionError = 1
	exitPlatformError = 2
)

const defaultAddr = "127.0.0.1:8700"

// exitError carries an exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// cli holds what every client command shares.
type cli struct {
	addr   string
	stdout io.Writer
	stderr io.Writer
}

func run(args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "nimbus",
		Short:         "A self-hosted serverless platform that runs Lambda functions",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addr := os.Getenv("NIMBUS_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	root.PersistentFlags().StringVar(&c.addr, "addr", addr, "rpc address of a node ($NIMBUS_ADDR)")
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(c.agentCmd(), c.fnCmd(), c.invokeCmd(), c.logsCmd(), c.benchCmd(), c.clusterCmd(), c.keygenCmd())
	root.AddCommand(c.queueCmd(), c.triggerCmd()) // queues and queue triggers
	// Runtimes: images and layers (issue 10).
	root.AddCommand(c.imageCmd(), c.layerCmd())

	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(stderr, describe(err))
		return exitPlatformError
	}
}

// describe prints an error as Lambda names it: platform errors by their
// exception name, an unreachable node as a ServiceException.
func describe(err error) string {
	var re *rpc.Error
	if errors.As(err, &re) {
		return re.Error()
	}
	if errors.Is(err, rpc.ErrConnClosed) || isDialError(err) {
		return rpc.CodeService + ": node unreachable: " + err.Error()
	}
	return err.Error()
}

func isDialError(err error) bool {
	var de *dialError
	return errors.As(err, &de)
}

type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// client dials the node named by --addr.
func (c *cli) client(ctx context.Context) (*rpc.Client, error) {
	cl, err := rpc.Dial(ctx, c.addr, rpc.ClientOptions{DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, &dialError{fmt.Errorf("%s: %w", c.addr, err)}
	}
	return cl, nil
}
