package node

import (
	"testing"
)

// A single node's leader is itself at its rpc address, whatever its Raft
// transport calls it: a write it forwards while its leadership is being
// established must not be sent to the in-memory transport's name.
func TestLeaderAddrOfSingleNodeIsItsOwn(t *testing.T) {
	n, _ := startNode(t, t.TempDir())
	waitFor(t, "leadership", n.isLeader)
	addr, err := n.leaderAddr(ctxT(t))
	if err != nil || addr != n.cfg.Advertise {
		t.Fatalf("leaderAddr = %q, %v; want its own rpc address %q", addr, err, n.cfg.Advertise)
	}
}
