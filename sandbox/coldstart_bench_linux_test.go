package sandbox

import (
	"context"
	"strconv"
	"testing"
)

// The cost of a cold start as the manager sees it: a new revision of
// examples/hello at 1792 MB each time, the previous one retired outside
// the timer. With a shell pool, the timer also stops while the pool fills
// again: each cold start finds a ready shell (the steady state of cold
// starts that come slower than shells are made). Run with
//
//	go test -run XXX -bench ColdStart -benchtime 20x ./sandbox/
func BenchmarkColdStart(b *testing.B) {
	for _, pool := range []int{0, 2} {
		b.Run("pool="+strconv.Itoa(pool), func(b *testing.B) {
			m, _ := newTestManager(b, Config{ShellPool: pool})
			fn := fnConfig("cold", 1)
			fn.MemoryMB = 1792
			dir := codeDir(b, helloBin)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				fn := *fn
				fn.Revision = uint64(i + 1)
				res, err := m.Invoke(context.Background(), &Request{Function: &fn, CodeDir: dir, Payload: []byte(`{"name":"b"}`)})
				if err != nil || res.ErrorType != "" || !res.Cold {
					b.Fatalf("%v %s cold=%v", err, res.Payload, res.Cold)
				}
				b.StopTimer()
				m.Retire(fn.Name, fn.Revision)
				for pool > 0 && len(m.pooled("provided")) < pool {
					waitPool(m)
				}
				b.StartTimer()
			}
		})
	}
}

// The cost of a warm invocation as the manager sees it: examples/hello at
// 1792 MB (one vCPU), one caller. Run with
//
//	go test -run XXX -bench WarmInvoke -benchtime 5000x -cpuprofile /tmp/warm.prof ./sandbox/
func BenchmarkWarmInvoke(b *testing.B) {
	m, _ := newTestManager(b, Config{})
	fn := fnConfig("warm", 1)
	fn.MemoryMB = 1792
	dir := codeDir(b, helloBin)
	req := func() *Request {
		return &Request{Function: fn, CodeDir: dir, Payload: []byte(`{"name":"b"}`)}
	}
	if _, err := m.Invoke(context.Background(), req()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := m.Invoke(context.Background(), req())
		if err != nil || res.ErrorType != "" || res.Cold {
			b.Fatalf("%v %s cold=%v", err, res.Payload, res.Cold)
		}
	}
}
