//go:build !linux

package rpc

import (
	"syscall"
	"time"
)

// userTimeout is a no-op where TCP_USER_TIMEOUT does not exist; keepalives
// still detect a dead peer.
func userTimeout(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
