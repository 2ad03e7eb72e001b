//go:build !linux

package sandbox

import (
	"context"
	"errors"
	"log/slog"

	"nimbus/rpc"
)

// Manager runs sandboxes on Linux only (runc's libcontainer). On other
// systems the CLI builds, and an agent with the worker role refuses to
// start with ErrUnsupported.
type Manager struct{}

// ErrUnsupported is NewManager's error where sandboxes cannot run.
var ErrUnsupported = errors.New("sandbox: sandboxes need Linux (runc's libcontainer); run workers on Linux")

// NewManager fails with ErrUnsupported.
func NewManager(Config) (*Manager, error) { return nil, ErrUnsupported }

// Invoke fails with ErrUnsupported.
func (*Manager) Invoke(context.Context, *Request) (*Result, error) { return nil, ErrUnsupported }

// Retire does nothing: there are no sandboxes.
func (*Manager) Retire(string, uint64) {}

// Stats is empty: there are no sandboxes.
func (*Manager) Stats() Stats { return Stats{} }

// WarmKeys is empty: there are no sandboxes.
func (*Manager) WarmKeys() map[string]int { return nil }

// HasWarm is false: there are no sandboxes.
func (*Manager) HasWarm(*rpc.FunctionConfig) bool { return false }

// Close does nothing.
func (*Manager) Close() error { return nil }

// SealSelf does nothing: there are no containers to start.
func SealSelf(string, *slog.Logger) error { return nil }
