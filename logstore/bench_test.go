package logstore

import (
	"context"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"nimbus/rpc"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ingest appends b.N lines through st and waits for their acknowledgement,
// reporting MB/s of lines and the CPU (cores) the process spent.
func ingest(b *testing.B, st *Store, fns int) {
	lines := make([]string, 4096)
	size := 0
	for i := range lines {
		lines[i] = SampleLine(i)
		size += len(lines[i])
	}
	avg := float64(size) / float64(len(lines))
	// Create the streams first: the benchmark measures lines, not the
	// creation of log groups.
	warm := st.Stats().Published
	for i := 0; i < fns; i++ {
		st.Append("bench"+strconv.Itoa(i), rpc.LogEvent{TimeMs: 1, Line: "warm-up"})
	}
	waitPublished(b, st, warm+uint64(fns))
	start, cpu0 := time.Now(), cpuTime()
	base := st.Stats().Published
	now := time.Now().UnixMilli()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fn := "bench" + strconv.Itoa(i%fns)
		// Stay under the buffer bound: the benchmark measures the store,
		// not the drops.
		for st.Stats().Buffered > st.opts.BufferBytes/2 {
			time.Sleep(100 * time.Microsecond)
		}
		st.Append(fn, rpc.LogEvent{TimeMs: now, RequestID: "6f1c2a4e-0000-4d2b-9b7e-000000000000", Line: lines[i%len(lines)]})
	}
	for st.Stats().Published-base < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	wall, cpu := time.Since(start), cpuTime()-cpu0
	mb := avg * float64(b.N) / 1e6
	b.ReportMetric(mb/wall.Seconds(), "MB/s")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
	if d := st.Stats().Dropped; d != 0 {
		b.Fatalf("dropped %d lines", d)
	}
}

// BenchmarkIngestDev: one node, R1 (a dev node's store).
func BenchmarkIngestDev(b *testing.B) {
	_, st := devStore(b, Options{GroupMaxBytes: benchGroupBytes(), BufferBytes: 64 << 20, PublishWindow: benchWindow()})
	ingest(b, st, benchFunctions())
}

// BenchmarkIngestCluster3: three servers in one process, R3; the
// publisher is a client of all three over TCP (a worker-only node).
func BenchmarkIngestCluster3(b *testing.B) {
	tc := startTestCluster(b, 3)
	tc.store(b, 0, "r1") // waits for the cluster to form
	st, err := Open(Options{Node: "w1", GroupMaxBytes: benchGroupBytes(), BufferBytes: 64 << 20, Replicas: func() int { return 3 }, PublishWindow: benchWindow(),
		Connect: func() (*nats.Conn, error) {
			return ConnectURLs("w1", tc.clients, []byte("cluster test secret"))
		}})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	ingest(b, st, benchFunctions())
}

// benchFunctions is how many functions the ingestion benchmarks write to
// at once: NIMBUS_BENCH_FUNCTIONS, default 4.
func benchFunctions() int {
	if v, err := strconv.Atoi(os.Getenv("NIMBUS_BENCH_FUNCTIONS")); err == nil && v > 0 {
		return v
	}
	return 4
}

// benchWindow is Options.PublishWindow of the ingestion benchmarks:
// NIMBUS_BENCH_WINDOW, default DefaultPublishWindow.
func benchWindow() int {
	v, _ := strconv.Atoi(os.Getenv("NIMBUS_BENCH_WINDOW"))
	return v
}

// benchGroupBytes shares 128 MiB of a test server's 256 MiB store among
// the benchmark's groups.
func benchGroupBytes() int64 { return 128 << 20 / int64(benchFunctions()) }

// BenchmarkFollowLatency: the time from Append to the return of a
// follower's long poll, one line at a time, on a dev store; p50 and p99.
func BenchmarkFollowLatency(b *testing.B) {
	_, st := devStore(b, Options{})
	st.Append("follow", rpc.LogEvent{TimeMs: 1, Line: "first"})
	waitPublished(b, st, 1)
	res, err := st.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "follow"})
	if err != nil {
		b.Fatal(err)
	}
	cursor := res.Next
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got := make(chan *rpc.ReadLogsResponse, 1)
		go func() {
			r, err := st.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "follow", After: cursor, WaitMs: 10_000})
			if err != nil {
				b.Error(err)
			}
			got <- r
		}()
		time.Sleep(5 * time.Millisecond) // let the poll subscribe (not measured)
		t0 := time.Now()
		st.Append("follow", rpc.LogEvent{TimeMs: t0.UnixMilli(), Line: "line " + strconv.Itoa(i)})
		r := <-got
		lat = append(lat, time.Since(t0))
		if r == nil || len(r.Events) == 0 {
			b.Fatal("the poll ended without the line")
		}
		cursor = r.Next
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkQuery: a query by request id and one by filter over a dev
// store holding NIMBUS_BENCH_QUERY_MB (default 64) MB of lines; one
// invocation's 20 lines are in the middle.
func BenchmarkQuery(b *testing.B) {
	mbWanted := 64
	if v, err := strconv.Atoi(os.Getenv("NIMBUS_BENCH_QUERY_MB")); err == nil && v > 0 {
		mbWanted = v
	}
	cfg := testServerConfig(b, "q")
	cfg.Standalone = true
	cfg.MaxStore = int64(mbWanted+64) << 20 * 2
	srv, err := StartServer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	st, err := Open(Options{Node: "n1", GroupMaxBytes: int64(mbWanted+64) << 20, BufferBytes: 64 << 20,
		Connect: func() (*nats.Conn, error) { return srv.Connect("n1") }})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	written, n := 0, 0
	for written < mbWanted<<20 {
		for st.Stats().Buffered > 32<<20 {
			time.Sleep(100 * time.Microsecond)
		}
		l := SampleLine(n)
		rid := "6f1c2a4e-0000-4d2b-9b7e-000000000000"
		if n >= 1_000_000 && n < 1_000_020 {
			rid, l = "needle-request", l+" NEEDLE"
		}
		st.Append("q", rpc.LogEvent{TimeMs: int64(n), RequestID: rid, Line: l})
		written += len(l)
		n++
	}
	waitPublished(b, st, uint64(n))
	want := 0
	if n > 1_000_020 {
		want = 20
	}
	g, _ := st.Group(context.Background(), "q")
	b.Logf("%d lines, %d MB of lines, %d MB stored", n, written>>20, g.StoredBytes>>20)
	for _, q := range []struct {
		name string
		req  rpc.ReadLogsRequest
	}{
		{"request-id", rpc.ReadLogsRequest{FunctionName: "q", RequestID: "needle-request"}},
		{"filter", rpc.ReadLogsRequest{FunctionName: "q", FilterPattern: `NEEDLE -nothing`}},
		{"json-filter", rpc.ReadLogsRequest{FunctionName: "q", FilterPattern: `{ $.a = 1 }`}},
	} {
		b.Run(q.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				got := readAll(b, st, q.req)
				if q.name != "json-filter" && len(got) != want {
					b.Fatalf("found %d lines, want %d", len(got), want)
				}
			}
			b.ReportMetric(float64(written)/1e6/(b.Elapsed().Seconds()/float64(b.N)), "MB/s")
		})
	}
}
