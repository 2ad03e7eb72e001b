package node

import (
	"fmt"
	"testing"
	"time"

	"nimbus/rpc"
)

// BenchmarkInvokeCounting is what the metrics add to one warm
// invocation, every counter it touches on a node that is frontend, leader
// and worker at once (a dev node): the rpc request, the ledger grant, the
// function's concurrency, its Invocations under the version that ran, its
// Duration on the worker. With 200 other functions counted, so the map
// lookups are not of a one-entry map. The warm invocation it is added to
// takes about 700 us (docs/BENCHMARKS.md); see there for the ratio.
func BenchmarkInvokeCounting(b *testing.B) {
	m := newMetrics(nil, 1000)
	for i := 0; i < 200; i++ {
		m.fns.get(fmt.Sprintf("fn-%d", i)).invocations.Add(1)
	}
	resp := &rpc.InvokeResponse{StatusCode: 200, ExecutedVersion: rpc.LatestVersion}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.observeGrant(nil)
			fc := m.fns.get("hello")
			fc.running(1)
			m.fns.getKey(invokedKey("hello", "", rpc.LatestVersion)).duration.observe(700 * time.Microsecond)
			fc.running(-1)
			m.countInvocation("hello", "", resp)
			m.observeRPC(rpc.MethodInvoke, nil, 800*time.Microsecond)
		}
	})
}
