package node

import (
	"fmt"
	"testing"
	"time"

	"nimbus/logstore"
	"nimbus/rpc"
)

// TestLogsGroupsAfterGracefulStop: while a server of three stops
// gracefully, and right after, the two others create new log groups
// (functions that never logged), R1 since only two servers are left in
// gossip: every group's line is acknowledged, so none was placed on the
// server that stopped. (Before the fix, the survivors dropped the routes
// to a server as soon as it announced its leave, before its JetStream
// stopped: its shutdown notice never reached them, they counted it online
// for minutes and placed some of the new groups on it, whose lines then
// timed out for ever.) A worker-only node creates groups too: it has no
// server of its own to pin them to, so it pins them to a server gossip
// shows alive.
func TestLogsGroupsAfterGracefulStop(t *testing.T) {
	cfgs := make([]Config, 3)
	tc := startCluster(t, 3, func(i int, c *Config) {
		c.FastTimings = false
		cfgs[i] = *c
	})
	tc.start(3, Config{
		Name: "w1", Worker: true, MemoryMB: 4096, GossipAddr: "127.0.0.1:0",
		Join:              []string{tc.nodes[1].members.ml.LocalNode().Address()},
		HeartbeatInterval: 200 * time.Millisecond,
	})
	for _, nd := range tc.nodes {
		if err := nd.logs.WaitReady(ctxT(t)); err != nil {
			t.Fatalf("%s's log store: %v", nd.Name(), err)
		}
	}
	t.Log(tc.nodes[1].logRole.server().ClusterState())
	var want [4]uint64
	var last [4]string
	groups := 0
	newGroup := func() {
		nd := 1 + groups%3
		fn := fmt.Sprintf("leave-%d", groups)
		last[nd] = fn
		groups++
		if err := tc.nodes[nd].logs.Append(fn, rpc.LogEvent{TimeMs: time.Now().UnixMilli(), Line: "hello " + fn}); err != nil {
			t.Fatal(err)
		}
		want[nd]++
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tc.stop(0)
	}()
	for done := false; !done; {
		select {
		case <-stopped:
			done = true
		case <-time.After(50 * time.Millisecond):
			newGroup()
		}
	}
	var workerAfter []string // w1's groups made once n1 had left
	for i := 0; i < 6; i++ {
		nd := 1 + groups%3
		newGroup()
		if nd == 3 {
			workerAfter = append(workerAfter, last[3])
		}
	}
	t.Logf("%d new groups", groups)
	logged := time.Now()
	waitLong(t, 2*time.Minute, "every new group's line acknowledged", func() bool {
		if time.Since(logged) > 10*time.Second {
			logged = time.Now()
			for i := 1; i < 4; i++ {
				nd := tc.nodes[i]
				t.Logf("%s: %d of %d acknowledged; %s", nd.Name(), nd.logs.Stats().Published, want[i], tc.nodes[1].logRole.server().ClusterState())
			}
		}
		for i := 1; i < 4; i++ {
			if tc.nodes[i].logs.Stats().Published != want[i] {
				return false
			}
		}
		return true
	})

	// w1 has no server of its own: its R1 groups are pinned to a server
	// gossip shows alive, never left to JetStream's choice.
	pinned := map[string]bool{logstore.PinTag(tc.nodes[1].Name()): true, logstore.PinTag(tc.nodes[2].Name()): true}
	r1 := 0
	for _, fn := range workerAfter {
		g, err := tc.nodes[1].logs.Group(ctxT(t), fn)
		if err != nil {
			t.Fatal(err)
		}
		if g.Replicas != 1 {
			continue
		}
		r1++
		tags := tc.nodes[1].logs.StreamPlacement(ctxT(t), fn)
		if len(tags) != 1 || !pinned[tags[0]] {
			t.Errorf("w1's R1 group %s: placement tags %q, want one of n2's or n3's", fn, tags)
		}
	}
	if r1 == 0 {
		t.Fatalf("none of w1's groups after the stop (%v) is R1", workerAfter)
	}

	// The stopped server returns: a group created R1 meanwhile (placed on
	// the server that created it) is scaled to R3 when its publisher next
	// writes, its pin dropped in the same update.
	cfg := cfgs[0]
	cfg.Join = []string{tc.nodes[1].members.ml.LocalNode().Address()}
	tc.start(0, cfg)
	fn := last[1] // n2's last new group
	waitLong(t, 2*time.Minute, fn+" scaled to three replicas", func() bool {
		if err := tc.nodes[1].logs.Append(fn, rpc.LogEvent{TimeMs: time.Now().UnixMilli(), Line: "again"}); err != nil {
			t.Fatal(err)
		}
		g, err := tc.nodes[1].logs.Group(ctxT(t), fn)
		return err == nil && g.Replicas == 3
	})
}
