package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
)

// The cost of the seccomp filter: a trivial system call (getppid) in a
// sandbox, where the filter runs on every call, against the same call in
// this process, where none does. Run with
//
//	go test -run XXX -bench Getppid ./sandbox/
func BenchmarkGetppidHost(b *testing.B) {
	for i := 0; i < b.N; i++ {
		syscall.Getppid()
	}
}

func BenchmarkGetppidSandboxed(b *testing.B) {
	m, _ := newTestManager(b, Config{})
	fn := fnConfig("getppid", 1)
	fn.MemoryMB = 1792 // one full vCPU: no CFS throttling inside the loop
	fn.TimeoutSec = 300
	dir := codeDir(b, gofnBin)
	if _, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: dir, Payload: []byte(`{"do":"getppid","n":1}`)}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: dir, Payload: []byte(fmt.Sprintf(`{"do":"getppid","n":%d}`, b.N))})
	if err != nil || res.ErrorType != "" {
		b.Fatalf("%v %s", err, res.Payload)
	}
	b.StopTimer()
	var p struct{ NS float64 }
	if err := json.Unmarshal(res.Payload, &p); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(p.NS, "ns/syscall")
}
