package node

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"nimbus/logstore"
	"nimbus/rpc"
)

// TestClusterLogsServerStopAtLoad: three servers whose log store has
// elected its first leader; the two that are not the JetStream meta leader
// write lines of four functions steadily (800 lines per 10 ms together),
// and the meta leader stops while they write. The survivors' store
// takes lines again (a line written after the stop is readable from both),
// and once the writers stop and the buffers drain, every function's log
// holds each node's acknowledged lines exactly once and in the order they
// were written: no line published twice, none lost.
func TestClusterLogsServerStopAtLoad(t *testing.T) {
	tc := startCluster(t, 3, func(i int, c *Config) {
		c.FastTimings = false // as TestAsyncFailover, whose stop this is
	})
	fns := []string{"load-a", "load-b", "load-c", "load-d"}
	for _, fn := range fns {
		createRetrying(t, tc.clients[0], fn, helloZip(t)) // a read names a function that exists
	}
	for _, nd := range tc.nodes {
		if err := nd.logs.WaitReady(ctxT(t)); err != nil {
			t.Fatalf("%s's log store: %v", nd.Name(), err)
		}
	}
	// The victim is the JetStream meta leader: its stop makes the meta
	// group elect again while the streams it leads do the same.
	victim := -1
	waitLong(t, time.Minute, "a JetStream meta leader", func() bool {
		for _, nd := range tc.nodes {
			if srv := nd.logRole.server(); srv != nil {
				name, _ := srv.MetaLeader()
				for i, nd := range tc.nodes {
					if nd.Name() == name {
						victim = i
					}
				}
			}
		}
		return victim >= 0
	})
	var writers []*Node
	for i, nd := range tc.nodes {
		if i != victim {
			writers = append(writers, nd)
		}
	}
	t.Log(tc.nodes[victim].logRole.server().ClusterState())

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, nd := range writers {
		for _, fn := range fns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// One writer per node and function: its lines carry their
				// number, so the log shows gaps and repeats.
				n := 0
				for {
					select {
					case <-stop:
						return
					default:
					}
					evs := make([]rpc.LogEvent, 20)
					for i := range evs {
						n++
						evs[i] = rpc.LogEvent{TimeMs: time.Now().UnixMilli(), Line: fmt.Sprintf("line %d of %s %s INFO some text to make it a typical line", n, nd.Name(), fn)}
					}
					if err := nd.logs.Append(fn, evs...); err != nil {
						t.Error(err)
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
	}
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriters()

	waitLong(t, time.Minute, "lines of every function in the store", func() bool {
		for _, fn := range fns {
			if writers[0].logs.StreamLeader(ctxT(t), fn) == "" {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second) // a while at load before the stop
	meta, size := tc.nodes[victim].logRole.server().MetaLeader()
	var leaders []string
	for _, fn := range fns {
		leaders = append(leaders, fn+":"+writers[0].logs.StreamLeader(ctxT(t), fn))
	}
	t.Logf("before the stop: meta leader %s (of %d), stream leaders %v", meta, size, leaders)
	before := [2]uint64{writers[0].logs.Stats().Published, writers[1].logs.Stats().Published}
	stopped := time.Now()
	tc.stop(victim)

	// The survivors take lines again: each writer's count of acknowledged
	// lines moves on, and a line written now is readable from both.
	lastState := time.Now()
	waitLong(t, 3*time.Minute, "the survivors to acknowledge lines again", func() bool {
		if time.Since(lastState) > 5*time.Second {
			lastState = time.Now()
			for _, nd := range writers {
				t.Log(nd.logRole.server().ClusterState())
			}
		}
		return writers[0].logs.Stats().Published > before[0] && writers[1].logs.Stats().Published > before[1]
	})
	t.Logf("acknowledged again %v after the stop", time.Since(stopped).Round(time.Millisecond))
	stopWriters()
	marker := "marker after the stop"
	if err := writers[0].logs.Append(fns[0], rpc.LogEvent{TimeMs: time.Now().UnixMilli(), Line: marker}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range writers {
		waitLong(t, 3*time.Minute, nd.Name()+"'s buffer to drain", func() bool {
			st := nd.logs.Stats()
			return st.BufferedLines == 0
		})
	}
	meta, size = writers[0].logRole.server().MetaLeader()
	t.Logf("drained %v after the stop: meta leader %s (of %d)", time.Since(stopped).Round(time.Millisecond), meta, size)

	// Every acknowledged line once, in order, through both survivors.
	for reader := range tc.nodes {
		if reader == victim {
			continue
		}
		perNode := map[string]uint64{}
		for _, fn := range fns {
			var evs []rpc.LogEvent
			waitLong(t, time.Minute, fmt.Sprintf("%s's log through %s", fn, tc.nodes[reader].Name()), func() bool {
				evs = readStoreAll(t, tc.clients[reader], fn)
				return evs != nil
			})
			last := map[string]int{}
			sawMarker := false
			for _, e := range evs {
				perNode[e.Node]++
				if e.Line == marker {
					sawMarker = true
					continue
				}
				if strings.HasPrefix(e.Line, "nimbus: ") {
					continue // a report of dropped lines
				}
				f := strings.Fields(e.Line)
				if len(f) < 5 || f[0] != "line" || f[3] != e.Node || f[4] != fn {
					t.Fatalf("%s: unexpected line %q from %s", fn, e.Line, e.Node)
				}
				k, _ := strconv.Atoi(f[1])
				if k <= last[e.Node] {
					t.Fatalf("%s through %s: line %d of %s after line %d (a repeat or a reorder)", fn, tc.nodes[reader].Name(), k, e.Node, last[e.Node])
				}
				last[e.Node] = k
			}
			if fn == fns[0] && !sawMarker {
				t.Fatalf("%s through %s: the line written after the stop is missing", fn, tc.nodes[reader].Name())
			}
		}
		for _, nd := range writers {
			if got, want := perNode[nd.Name()], nd.logs.Stats().Published; got != want {
				t.Fatalf("through %s: %d lines of %s in the store, %s had %d acknowledged", tc.nodes[reader].Name(), got, nd.Name(), nd.Name(), want)
			}
		}
	}
}

// readStoreAll reads a function's whole log, or nil while the store
// answers ServiceException (electing a leader).
func readStoreAll(t testing.TB, cl *rpc.Client, fn string) []rpc.LogEvent {
	t.Helper()
	out := []rpc.LogEvent{}
	req := &rpc.ReadLogsRequest{FunctionName: fn, Limit: logstore.MaxReadLimit}
	for {
		res, err := cl.ReadLogs(ctxT(t), req)
		if err != nil {
			if errors.Is(err, rpc.ErrService) {
				return nil
			}
			t.Fatal(err)
		}
		out = append(out, res.Events...)
		if len(res.Events) == 0 && !res.More {
			return out
		}
		req.After = res.Next
	}
}
