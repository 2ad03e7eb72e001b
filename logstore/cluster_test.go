package logstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"nimbus/rpc"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// testCluster is three embedded JetStream servers on loopback, routed to
// each other from the start, as nodes configure them from gossip.
type testCluster struct {
	cfgs    []ServerConfig
	servers []*Server
	clients []string // client addresses
	alive   []bool
}

func startTestCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	tc := &testCluster{}
	var routes []string
	for i := 0; i < n; i++ {
		tc.clients = append(tc.clients, freeAddr(t))
		routes = append(routes, freeAddr(t))
	}
	for i := 0; i < n; i++ {
		cfg := testServerConfig(t, fmt.Sprintf("s%d", i+1))
		cfg.ClientAddr, cfg.ClusterAddr, cfg.Routes = tc.clients[i], routes[i], routes
		cfg.Secret = []byte("cluster test secret")
		if testing.Verbose() {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("srv", i+1)
		}
		srv, err := StartServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		tc.cfgs = append(tc.cfgs, cfg)
		tc.servers = append(tc.servers, srv)
		tc.alive = append(tc.alive, true)
	}
	t.Cleanup(func() {
		for i, s := range tc.servers {
			if tc.alive[i] {
				s.Close()
			}
		}
	})
	return tc
}

// store opens a Store on server i, in process.
func (tc *testCluster) store(t testing.TB, i int, node string) *Store {
	t.Helper()
	srv := tc.servers[i]
	st, err := Open(Options{Node: node, GroupMaxBytes: 8 << 20, Replicas: func() int { return 3 },
		Connect: func() (*nats.Conn, error) { return srv.Connect(node) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := st.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// streamLeader returns the index of the server leading fn's stream.
func (tc *testCluster) streamLeader(t testing.TB, st *Store, fn string) int {
	t.Helper()
	js, err := st.jetStream()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s, err := js.Stream(context.Background(), streamOf(fn))
		if err != nil {
			continue
		}
		if c := s.CachedInfo().Cluster; c != nil && c.Leader != "" {
			var leader int
			fmt.Sscanf(c.Leader, "s%d", &leader)
			return leader - 1
		}
	}
	t.Fatal("no stream leader")
	return -1
}

// TestClusterLeaderDies: a worker writes steadily to a three-server
// cluster; the server leading the stream (the one holding the newest
// lines first) is shut down hard mid-way. Every line is acknowledged in
// the end, and both survivors return all of them, in order, once; a
// follower that was reading from the dead server moves to a survivor with
// its cursor and sees every line once.
func TestClusterLeaderDies(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server JetStream cluster")
	}
	tc := startTestCluster(t, 3)
	// The worker is a client of all three servers, as a worker-only node.
	worker, err := Open(Options{Node: "w1", GroupMaxBytes: 8 << 20, Replicas: func() int { return 3 },
		Connect: func() (*nats.Conn, error) {
			return ConnectURLs("w1", tc.clients, []byte("cluster test secret"))
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	readers := []*Store{tc.store(t, 0, "r1"), tc.store(t, 1, "r2"), tc.store(t, 2, "r3")}

	const total = 3000
	line := func(i int) string { return fmt.Sprintf("line %05d %s", i, noise(i, 64)) }
	write := func(from, to int) {
		for i := from; i < to; i++ {
			worker.Append("steady", rpc.LogEvent{TimeMs: time.Now().UnixMilli(), RequestID: "req", Line: line(i)})
			if i%100 == 99 {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
	write(0, total/2)
	waitPublished(t, worker, total/2)
	leader := tc.streamLeader(t, readers[0], "steady")

	// A follower on the leader reads what is there so far.
	var followed []rpc.LogEvent
	var cursor uint64
	for len(followed) < total/2 {
		res, err := readers[leader].Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "steady", After: cursor, WaitMs: 1000})
		if err != nil {
			t.Fatal(err)
		}
		followed = append(followed, res.Events...)
		cursor = res.Next
	}

	// Writes go on while the leader dies.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); write(total/2, total) }()
	tc.servers[leader].Close()
	tc.alive[leader] = false
	wg.Wait()
	waitPublished(t, worker, total)
	if s := worker.Stats(); s.Dropped != 0 {
		t.Fatalf("dropped %d lines", s.Dropped)
	}

	// The follower moves to a survivor with its cursor.
	survivor := (leader + 1) % 3
	for len(followed) < total {
		res, err := readers[survivor].Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "steady", After: cursor, WaitMs: 1000})
		if errors.Is(err, errNotReady) || isTransient(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		followed = append(followed, res.Events...)
		cursor = res.Next
	}
	checkLines(t, "the follower", followed, total, line)

	for i, r := range readers {
		if i == leader {
			continue
		}
		var got []rpc.LogEvent
		deadline := time.Now().Add(30 * time.Second)
		for {
			got = readAllTolerant(t, r, "steady")
			if len(got) >= total || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		checkLines(t, fmt.Sprintf("survivor s%d", i+1), got, total, line)
	}

	// The dead server comes back on its data and catches up: a store on
	// it reads every line.
	srv, err := StartServer(tc.cfgs[leader])
	if err != nil {
		t.Fatal(err)
	}
	tc.servers[leader], tc.alive[leader] = srv, true
	back := tc.store(t, leader, "back")
	var got []rpc.LogEvent
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got = readAllTolerant(t, back, "steady")
		if len(got) >= total || time.Now().After(deadline) {
			break
		}
	}
	checkLines(t, "the restarted server", got, total, line)
}

// isTransient reports a store error that a new leader's election explains.
func isTransient(err error) bool {
	var re *rpc.Error
	return errors.As(err, &re) && re.Code == rpc.CodeService
}

func readAllTolerant(t testing.TB, st *Store, fn string) []rpc.LogEvent {
	var out []rpc.LogEvent
	req := rpc.ReadLogsRequest{FunctionName: fn}
	for attempts := 0; attempts < 1000; {
		res, err := st.Read(context.Background(), &req)
		if isTransient(err) || errors.Is(err, jetstream.ErrNoStreamResponse) {
			attempts++
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Events...)
		if !res.More && len(res.Events) == 0 {
			return out
		}
		req.After = res.Next
	}
	t.Fatal("reads kept failing")
	return nil
}

func checkLines(t testing.TB, who string, got []rpc.LogEvent, total int, line func(int) string) {
	t.Helper()
	if len(got) != total {
		t.Fatalf("%s read %d lines, want %d", who, len(got), total)
	}
	for i, e := range got {
		if e.Line != line(i) {
			t.Fatalf("%s: line %d is %.10q, want %.10q (a gap, a repeat or a reorder)", who, i, e.Line, line(i))
		}
		if i > 0 && e.Seq <= got[i-1].Seq {
			t.Fatalf("%s: cursor %d after %d", who, e.Seq, got[i-1].Seq)
		}
	}
}

// TestSetRoutes: servers that start knowing only themselves connect once
// their routes are set from membership, and form a JetStream cluster.
func TestSetRoutes(t *testing.T) {
	var srvs []*Server
	var routes []string
	for i := 0; i < 2; i++ {
		cfg := testServerConfig(t, fmt.Sprintf("r%d", i+1))
		cfg.ClientAddr, cfg.ClusterAddr = freeAddr(t), freeAddr(t)
		cfg.Routes = []string{cfg.ClusterAddr}
		srv, err := StartServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		srvs = append(srvs, srv)
		routes = append(routes, cfg.ClusterAddr)
	}
	if err := srvs[0].SetRoutes(routes); err != nil {
		t.Fatal(err)
	}
	if err := srvs[0].SetRoutes(routes); err != nil { // unchanged: no reload
		t.Fatal(err)
	}
	st, err := Open(Options{Node: "x", GroupMaxBytes: 8 << 20, Replicas: func() int { return 2 },
		Connect: func() (*nats.Conn, error) { return srvs[1].Connect("x") }})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.WaitReady(ctx); err != nil {
		t.Fatalf("no JetStream cluster formed after the routes were set: %v", err)
	}
	if srvs[0].srv.NumRoutes() == 0 || srvs[1].srv.NumRoutes() == 0 {
		t.Fatal("no routes between the servers")
	}
	st.Append("two", rpc.LogEvent{TimeMs: 1, Line: "replicated twice"})
	waitPublished(t, st, 1)
}
