package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"nimbus/rpc"
)

// TestClusterLogsSurviveNodeDeath: three nodes; a function's lines are in
// the replicated store; the node leading the function's stream (the first
// to hold its newest lines) stops. Both survivors return every line read
// before, in the same order with the same cursors, and a follower that
// was on the dead node goes on from its cursor on a survivor with the
// lines written after, none twice.
func TestClusterLogsSurviveNodeDeath(t *testing.T) {
	tc := startCluster(t, 3, nil)
	ctx := ctxT(t)
	createRetrying(t, tc.clients[0], "hello", helloZip(t))
	var ids []string
	for i := 0; i < 6; i++ {
		ids = append(ids, invoke(t, tc.clients[i%3], "hello", fmt.Sprintf(`{"name":"before %d"}`, i)).RequestID)
	}
	// Every invocation's REPORT line is stored.
	var before []rpc.LogEvent
	waitFor(t, "the six invocations' logs", func() bool {
		before = readStore(t, tc.clients[0], "hello", 0)
		return countReports(before, ids) == len(ids)
	})

	// The node whose server leads the stream.
	leader := -1
	waitFor(t, "a leader of the stream", func() bool {
		name := streamLeader(ctx, tc.nodes[0], "hello")
		for i, nd := range tc.nodes {
			if nd.Name() == name {
				leader = i
			}
		}
		return leader >= 0
	})
	cursor := before[len(before)-1].Seq
	tc.stop(leader)
	survivors := []int{(leader + 1) % 3, (leader + 2) % 3}
	tc.waitLeader()

	for _, i := range survivors {
		var got []rpc.LogEvent
		waitFor(t, fmt.Sprintf("node %d reads the log after the death", i+1), func() bool {
			got = readStore(t, tc.clients[i], "hello", 0)
			return len(got) >= len(before)
		})
		for j := range before {
			if got[j].Seq != before[j].Seq || got[j].Line != before[j].Line {
				t.Fatalf("node %d: event %d is %d %q, was %d %q", i+1, j, got[j].Seq, got[j].Line, before[j].Seq, before[j].Line)
			}
		}
	}

	// New lines after the death; the follower goes on from its cursor.
	var after []string
	for i := 0; i < 3; i++ {
		after = append(after, invoke(t, tc.clients[survivors[i%2]], "hello", fmt.Sprintf(`{"name":"after %d"}`, i)).RequestID)
	}
	var followed []rpc.LogEvent
	waitFor(t, "the follower sees the new invocations", func() bool {
		followed = append(followed, readStore(t, tc.clients[survivors[0]], "hello", cursor)...)
		if len(followed) > 0 {
			cursor = followed[len(followed)-1].Seq
		}
		return countReports(followed, after) == len(after)
	})
	for _, e := range followed {
		for _, id := range ids {
			if e.RequestID == id {
				t.Fatalf("the follower got a line from before its cursor again: %q", e.Line)
			}
		}
	}
	for j := 1; j < len(followed); j++ {
		if followed[j].Seq <= followed[j-1].Seq {
			t.Fatalf("cursor %d after %d", followed[j].Seq, followed[j-1].Seq)
		}
	}
}

// createRetrying creates a function, trying again while the young
// cluster's Raft changes leaders (on this shared machine a leader may step
// down right after its election and refuse the write).
func createRetrying(t testing.TB, cl *rpc.Client, name string, zip []byte) {
	t.Helper()
	waitFor(t, "the function "+name+" created", func() bool {
		_, err := cl.CreateFunction(ctxT(t), &rpc.CreateFunctionRequest{Name: name, Runtime: "provided", ZipFile: zip})
		if err != nil && !errors.Is(err, rpc.ErrService) && !errors.Is(err, rpc.ErrResourceConflict) {
			t.Fatal(err)
		}
		return err == nil || errors.Is(err, rpc.ErrResourceConflict)
	})
}

// readStore reads a function's whole log after a cursor; a store still
// electing its leader reads as nothing yet.
func readStore(t testing.TB, cl *rpc.Client, fn string, after uint64) []rpc.LogEvent {
	t.Helper()
	var out []rpc.LogEvent
	req := &rpc.ReadLogsRequest{FunctionName: fn, After: after}
	for {
		res, err := cl.ReadLogs(ctxT(t), req)
		if errors.Is(err, rpc.ErrService) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Events...)
		if len(res.Events) == 0 && !res.More {
			return out
		}
		req.After = res.Next
	}
}

func countReports(evs []rpc.LogEvent, ids []string) int {
	n := 0
	for _, e := range evs {
		for _, id := range ids {
			if e.RequestID == id && len(e.Line) > 7 && e.Line[:7] == "REPORT " {
				n++
			}
		}
	}
	return n
}

// streamLeader names the server leading fn's stream, or "".
func streamLeader(ctx context.Context, nd *Node, fn string) string {
	return nd.logs.StreamLeader(ctx, fn)
}

// TestClusterWorkerOnlyShipsWhileServerRestarts: a worker-only node (the
// only one with memory for the function) ships its lines to the three
// servers' store while the server leading the function's stream stops and
// starts again: every invocation's lines, those made while it was down
// included, are in the store, the same through every server, the restarted
// one too.
func TestClusterWorkerOnlyShipsWhileServerRestarts(t *testing.T) {
	cfgs := make([]Config, 3)
	tc := startCluster(t, 3, func(i int, cfg *Config) {
		cfg.Worker = false
		cfgs[i] = *cfg
	})
	ctx := ctxT(t)
	join := []string{tc.nodes[0].members.ml.LocalNode().Address()}
	w := tc.start(3, Config{
		Name: "w1", Worker: true, MemoryMB: 4096, GossipAddr: "127.0.0.1:0", Join: join,
		FastTimings: true, HeartbeatInterval: 200 * time.Millisecond,
	})
	waitFor(t, "the leader hears from the worker", func() bool {
		lead := tc.waitLeader()
		_, ok := tc.nodes[lead].ledger.Stats().ByWorker[w.Name()]
		return ok
	})
	createRetrying(t, tc.clients[3], "hello", helloZip(t))
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, invokeRetrying(t, tc.clients[3], "hello", fmt.Sprintf(`{"name":"before %d"}`, i)))
	}
	waitFor(t, "the first invocations' logs", func() bool {
		return countReports(readStore(t, tc.clients[0], "hello", 0), ids) == len(ids)
	})

	down := -1
	waitFor(t, "a leader of the stream", func() bool {
		name := streamLeader(ctx, tc.nodes[0], "hello")
		for i := 0; i < 3; i++ {
			if tc.nodes[i].Name() == name {
				down = i
			}
		}
		return down >= 0
	})
	tc.stop(down)
	t.Logf("stopped %s, the stream's leader", tc.nodes[down].Name())
	for i := 0; i < 3; i++ {
		ids = append(ids, invokeRetrying(t, tc.clients[3], "hello", fmt.Sprintf(`{"name":"during %d"}`, i)))
	}

	cfg := cfgs[down]
	cfg.Join = []string{tc.nodes[(down+1)%3].members.ml.LocalNode().Address()}
	tc.start(down, cfg)
	for i := 0; i < 3; i++ {
		ids = append(ids, invokeRetrying(t, tc.clients[3], "hello", fmt.Sprintf(`{"name":"after %d"}`, i)))
	}
	var want []rpc.LogEvent
	for i := 0; i < 3; i++ {
		waitFor(t, fmt.Sprintf("every invocation's logs through %s", tc.nodes[i].Name()), func() bool {
			got := readStore(t, tc.clients[i], "hello", 0)
			if countReports(got, ids) != len(ids) {
				return false
			}
			if want == nil {
				want = got
				return true
			}
			if len(got) != len(want) {
				return false
			}
			for j := range got {
				if got[j].Seq != want[j].Seq || got[j].Line != want[j].Line {
					t.Fatalf("%s: event %d is %d %q, %s has %d %q", tc.nodes[i].Name(), j, got[j].Seq, got[j].Line, tc.nodes[0].Name(), want[j].Seq, want[j].Line)
				}
			}
			return true
		})
	}
}

// invokeRetrying invokes until the cluster takes the invocation: while the
// scheduler elects a leader (ServiceException) or a new leader's ledger has
// not yet heard from the workers (TooManyRequestsException), a client
// tries again. It returns the request id.
func invokeRetrying(t *testing.T, cl *rpc.Client, fn, payload string) string {
	t.Helper()
	var id string
	var last error
	defer func() {
		if t.Failed() && last != nil {
			t.Logf("the last refusal of an invocation of %s: %v", fn, last)
		}
	}()
	waitFor(t, "an invocation of "+fn, func() bool {
		res, err := cl.Invoke(ctxT(t), &rpc.InvokeRequest{FunctionName: fn, Payload: []byte(payload)})
		if err != nil {
			if !errors.Is(err, rpc.ErrService) && !errors.Is(err, rpc.ErrTooManyRequests) {
				t.Fatal(err)
			}
			last = err
			return false
		}
		if res.FunctionError != "" {
			t.Fatalf("invoke %s: %s", fn, res.Payload)
		}
		id = res.RequestID
		return true
	})
	return id
}
