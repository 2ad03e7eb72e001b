package main

import "testing"

// TestAgentProcs: --gomaxprocs wins; by default a worker takes half the
// CPUs (at least one) and a server-only node all of them.
func TestAgentProcs(t *testing.T) {
	for _, c := range []struct {
		flag, cpus int
		worker     bool
		want       int
	}{
		{0, 1, true, 1},
		{0, 2, true, 1},
		{0, 3, true, 1},
		{0, 8, true, 4},
		{0, 64, true, 32},
		{0, 2, false, 2},
		{0, 64, false, 64},
		{2, 2, true, 2},
		{6, 64, false, 6},
	} {
		if got := agentProcs(c.flag, c.cpus, c.worker); got != c.want {
			t.Errorf("agentProcs(%d, %d, %v) = %d, want %d", c.flag, c.cpus, c.worker, got, c.want)
		}
	}
}
