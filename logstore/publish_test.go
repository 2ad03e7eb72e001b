package logstore

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"nimbus/rpc"
)

// TestPipelinedOrderTwoNodes: two nodes' publishers write one function's
// log at once, each with batches pipelined (a window of 4), so their
// chained batches interleave on the stream and some are refused (the
// expected last id is the other node's) and published again. Every line
// is stored once, and each node's lines in the order it appended them.
func TestPipelinedOrderTwoNodes(t *testing.T) {
	srv, first := devStore(t, Options{Node: "a", GroupMaxBytes: 128 << 20, BufferBytes: 64 << 20, PublishWindow: 4})
	second, err := Open(Options{Node: "b", GroupMaxBytes: 128 << 20, BufferBytes: 64 << 20, PublishWindow: 4,
		Connect: func() (*nats.Conn, error) { return srv.Connect("b") }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	const n = 40000 // about 8 MiB of lines per node: many full batches
	pad := strings.Repeat("p", 180)
	var wg sync.WaitGroup
	for _, st := range []*Store{first, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i += 100 {
				evs := make([]rpc.LogEvent, 100)
				for j := range evs {
					evs[j] = rpc.LogEvent{TimeMs: 1, Line: fmt.Sprintf("%d %s", i+j, pad)}
				}
				if err := st.Append("shared", evs...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitPublished(t, first, n)
	waitPublished(t, second, n)
	for _, st := range []*Store{first, second} {
		if s := st.Stats(); s.Dropped != 0 {
			t.Fatalf("%s dropped %d lines", st.opts.Node, s.Dropped)
		}
	}
	t.Logf("batches a %d b %d, published again a %d b %d", first.Stats().Batches, second.Stats().Batches, first.Stats().Republished, second.Stats().Republished)
	next := map[string]int{}
	for _, ev := range readAll(t, first, rpc.ReadLogsRequest{FunctionName: "shared"}) {
		i, err := strconv.Atoi(strings.Fields(ev.Line)[0])
		if err != nil {
			t.Fatalf("line %q", ev.Line)
		}
		if i != next[ev.Node] {
			t.Fatalf("node %s: line %d where %d was due (a repeat or a gap)", ev.Node, i, next[ev.Node])
		}
		next[ev.Node]++
	}
	if next["a"] != n || next["b"] != n {
		t.Fatalf("read %d lines of a, %d of b, want %d each", next["a"], next["b"], n)
	}
}
