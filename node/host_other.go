//go:build !linux

package node

// hostMemoryMB is a nominal figure where the agent cannot run sandboxes
// (workers are Linux only, so nothing is placed on it).
func hostMemoryMB() int { return 4096 }
