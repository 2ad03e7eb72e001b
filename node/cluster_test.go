package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"nimbus/internal/testutil"
	"nimbus/rpc"
)

// testCluster is N in-process nodes on loopback with fast Raft and gossip
// timings, each with its own data dir and rpc client.
type testCluster struct {
	t       *testing.T
	nodes   []*Node
	clients []*rpc.Client
	dirs    []string
}

// startCluster starts n server+worker nodes that bootstrap Raft together;
// mod may change each node's config.
func startCluster(t *testing.T, n int, mod func(i int, cfg *Config)) *testCluster {
	t.Helper()
	requireRoot(t)
	tc := &testCluster{t: t}
	var join []string
	for i := 0; i < n; i++ {
		cfg := Config{
			Name:              fmt.Sprintf("n%d", i+1),
			Server:            true,
			Worker:            true,
			BootstrapExpect:   n,
			MemoryMB:          4096,
			GossipAddr:        "127.0.0.1:0",
			Join:              join,
			FastTimings:       true,
			HeartbeatInterval: 200 * time.Millisecond,
			DeadServerGrace:   2 * time.Second,
		}
		if mod != nil {
			mod(i, &cfg)
		}
		nd := tc.start(i, cfg)
		if i == 0 {
			join = []string{nd.members.ml.LocalNode().Address()}
		}
	}
	tc.waitLeader()
	return tc
}

// testClusterKey is the cluster key of test clusters that set none.
var testClusterKey = []byte("nimbus-test-cluster-key-32-bytes")

// start starts (or restarts) node i with cfg.
func (tc *testCluster) start(i int, cfg Config) *Node {
	t := tc.t
	t.Helper()
	for len(tc.dirs) <= i {
		tc.dirs = append(tc.dirs, filepath.Join(t.TempDir(), fmt.Sprintf("n%d", len(tc.dirs)+1)))
		tc.nodes = append(tc.nodes, nil)
		tc.clients = append(tc.clients, nil)
	}
	dir := tc.dirs[i]
	if len(cfg.EncryptKey) == 0 {
		cfg.EncryptKey = testClusterKey // a cluster node needs the cluster's key
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "images")); err != nil {
		if err := linkTree(sharedImage, filepath.Join(dir, "images")); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tw := testutil.NewLogWriter(t)
	cfg.DataDir = dir
	cfg.RPCListener = ln
	cfg.Logger = slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelWarn})).With("test_node", cfg.Name)
	nd, err := Start(context.Background(), cfg)
	if err != nil {
		ln.Close()
		t.Fatalf("start %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() { nd.Close() })
	cl, err := rpc.Dial(context.Background(), nd.Addr(), rpc.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	tc.nodes[i], tc.clients[i] = nd, cl
	return nd
}

// leader waits for the nodes still running to agree on a leader and
// returns its index.
func (tc *testCluster) waitLeader() int {
	tc.t.Helper()
	idx := -1
	waitFor(tc.t, "a raft leader all nodes agree on", func() bool {
		idx = -1
		var leader raft.ServerID
		for i, nd := range tc.nodes {
			if nd == nil || nd.raft == nil {
				continue
			}
			select {
			case <-nd.stopping:
				continue
			default:
			}
			_, id := nd.raft.LeaderWithID()
			if id == "" || (leader != "" && id != leader) {
				return false
			}
			leader = id
			if nd.isLeader() {
				idx = i
			}
		}
		return idx >= 0
	})
	return idx
}

// stop closes node i (a graceful stop).
func (tc *testCluster) stop(i int) {
	tc.nodes[i].Close()
	tc.clients[i].Close()
}

func holdZip(t testing.TB) []byte {
	return mkzip(t, exe("bootstrap", readScript(t, "hold.sh")))
}

func TestClusterAnyNodeSameResult(t *testing.T) {
	tc := startCluster(t, 3, nil)
	ctx := ctxT(t)
	// A write through a follower is forwarded to the leader.
	follower := (tc.waitLeader() + 1) % 3
	fn := create(t, tc.clients[follower], "hello", helloZip(t), nil)
	for i, cl := range tc.clients {
		got, err := cl.GetFunction(ctx, &rpc.GetFunctionRequest{Name: "hello"})
		if err != nil || got.Function.CodeSHA256 != fn.CodeSHA256 || got.Function.Revision != fn.Revision {
			t.Fatalf("node %d: get = %+v, %v; want revision %d", i+1, got, err, fn.Revision)
		}
		res := invoke(t, cl, "hello", `{"name":"n`+fmt.Sprint(i+1)+`"}`)
		if res.FunctionError != "" {
			t.Fatalf("invoke through node %d: %s", i+1, res.Payload)
		}
	}
	var members rpc.MembersResponse
	if err := tc.clients[2].Call(ctx, rpc.MethodClusterMembers, &rpc.MembersRequest{}, &members); err != nil {
		t.Fatal(err)
	}
	if len(members.Members) != 3 {
		t.Fatalf("members %+v", members.Members)
	}
	for _, m := range members.Members {
		if m.Status != rpc.MemberAlive || len(m.Roles) != 2 || m.MemoryMB != 4096 || m.Addr == "" {
			t.Errorf("member %+v", m)
		}
	}
	var view rpc.RaftResponse
	if err := tc.clients[1].Call(ctx, rpc.MethodClusterRaft, &rpc.RaftRequest{}, &view); err != nil {
		t.Fatal(err)
	}
	if len(view.Servers) != 3 || view.Leader == "" || view.Term == 0 || view.CommitIndex == 0 {
		t.Fatalf("raft view %+v", view)
	}
}

func TestClusterLeaderFailover(t *testing.T) {
	tc := startCluster(t, 3, nil)
	ctx := ctxT(t)
	lead := tc.waitLeader()
	other := (lead + 1) % 3
	create(t, tc.clients[other], "hello", helloZip(t), nil)
	invoke(t, tc.clients[other], "hello", `{}`)

	tc.stop(lead)
	newLead := tc.waitLeader()
	if newLead == lead {
		t.Fatal("the stopped node still leads")
	}
	// Deployed before the failover: still invocable and updatable.
	for i, cl := range tc.clients {
		if i == lead {
			continue
		}
		if res := invoke(t, cl, "hello", `{"name":"after"}`); res.FunctionError != "" {
			t.Fatalf("invoke through node %d after failover: %s", i+1, res.Payload)
		}
	}
	mem := 256
	if _, err := tc.clients[other].UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: "hello", MemoryMB: &mem}); err != nil {
		t.Fatalf("update after failover: %v", err)
	}
	// The restarted node rejoins and catches up.
	cfg := tc.nodes[lead].cfg
	cfg.RPCListener, cfg.Advertise, cfg.GossipAddr = nil, "", "127.0.0.1:0"
	cfg.Join = []string{tc.nodes[other].members.ml.LocalNode().Address()}
	tc.start(lead, cfg)
	waitFor(t, "restarted node catches up", func() bool {
		fn, ok := tc.nodes[lead].fsm.Function("hello")
		return ok && fn.MemoryMB == 256
	})
	if res := invoke(t, tc.clients[lead], "hello", `{}`); res.FunctionError != "" {
		t.Fatalf("invoke through the restarted node: %s", res.Payload)
	}
}

func TestClusterConcurrencyLimits(t *testing.T) {
	tc := startCluster(t, 3, func(i int, cfg *Config) { cfg.AccountConcurrency = 20 })
	ctx := ctxT(t)
	// A long timeout: the test is about limits, and 20 cold starts at once
	// on a loaded 2-core machine can take longer than the default 3 s.
	long := func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = 60 }
	create(t, tc.clients[0], "held", holdZip(t), long)
	create(t, tc.clients[0], "reserved", holdZip(t), long)
	var pc rpc.ConcurrencyResponse
	// 20 - 19 leaves less than the unreserved minimum (2).
	err := tc.clients[1].Call(ctx, rpc.MethodConcurrencyPut, &rpc.PutConcurrencyRequest{Name: "reserved", Reserved: 19}, &pc)
	if !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Fatalf("over-reserving: %v, want InvalidParameterValueException", err)
	}
	if err := tc.clients[1].Call(ctx, rpc.MethodConcurrencyPut, &rpc.PutConcurrencyRequest{Name: "reserved", Reserved: 3}, &pc); err != nil {
		t.Fatal(err)
	}
	if err := tc.clients[2].Call(ctx, rpc.MethodConcurrencyGet, &rpc.GetFunctionRequest{Name: "reserved"}, &pc); err != nil || pc.Reserved == nil || *pc.Reserved != 3 {
		t.Fatalf("get-concurrency = %+v, %v", pc, err)
	}

	// 30 callers on "held" (pool 17) and 8 on "reserved" (3), each holding
	// its slot for a second, spread over the three nodes.
	// A granted invocation whose worker gossip declared dead meanwhile (a
	// loaded machine: the in-process nodes' failure detector is fast) ends
	// in ServiceException: it held its slot, so it counts with those that
	// ran.
	var lostN atomic.Int64
	run := func(fn string, callers int) (ok, throttled int64) {
		var wg sync.WaitGroup
		var okN, thN atomic.Int64
		for c := 0; c < callers; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				res, err := tc.clients[c%3].Invoke(ctx, &rpc.InvokeRequest{FunctionName: fn, Payload: []byte("1")})
				var re *rpc.Error
				switch {
				case err == nil && res.FunctionError == "":
					okN.Add(1)
				case errors.As(err, &re) && re.Code == rpc.CodeTooManyRequests:
					thN.Add(1)
					want := rpc.ReasonConcurrentInvocationLimitExceeded
					if fn == "reserved" {
						want = rpc.ReasonReservedFunctionConcurrentInvocationLimit
					}
					if re.Reason != want {
						t.Errorf("%s throttled with reason %q, want %q", fn, re.Reason, want)
					}
				case errors.As(err, &re) && re.Code == rpc.CodeService && strings.Contains(re.Message, "died during the invocation"):
					t.Logf("%s: %v", fn, err)
					lostN.Add(1)
					okN.Add(1)
				default:
					t.Errorf("%s: %v %+v", fn, err, res)
				}
			}(c)
		}
		wg.Wait()
		return okN.Load(), thN.Load()
	}
	var wg sync.WaitGroup
	var heldOK, heldTh, resOK, resTh int64
	wg.Add(2)
	go func() { defer wg.Done(); heldOK, heldTh = run("held", 30) }()
	go func() { defer wg.Done(); resOK, resTh = run("reserved", 8) }()
	wg.Wait()
	if heldOK > 17 || heldOK+heldTh != 30 || heldTh == 0 {
		t.Errorf("held: %d ran, %d throttled; want at most 17 running at once and the rest throttled", heldOK, heldTh)
	}
	if resOK > 3 || resOK+resTh != 8 || resTh == 0 {
		t.Errorf("reserved: %d ran, %d throttled; want at most 3", resOK, resTh)
	}
	// Every slot comes back.
	lead := tc.waitLeader()
	waitFor(t, "all slots released", func() bool { return tc.nodes[lead].ledger.Stats().Slots == 0 })
	// Reserved 0 disables the function.
	if err := tc.clients[0].Call(ctx, rpc.MethodConcurrencyPut, &rpc.PutConcurrencyRequest{Name: "reserved", Reserved: 0}, &pc); err != nil {
		t.Fatal(err)
	}
	_, err = tc.clients[1].Invoke(ctx, &rpc.InvokeRequest{FunctionName: "reserved", Payload: []byte("0")})
	if !errors.Is(err, rpc.ErrTooManyRequests) {
		t.Fatalf("a function reserved at 0 ran: %v", err)
	}
}

func TestClusterWorkerDiesMidInvocation(t *testing.T) {
	// n1 (server) has no room for a 512 MB function, so it always runs on
	// the worker-only node w1, which is stopped while the invocation runs.
	tc := startCluster(t, 1, func(i int, cfg *Config) { cfg.MemoryMB = 256 })
	ctx := ctxT(t)
	w := tc.start(1, Config{
		Name: "w1", Worker: true, MemoryMB: 4096, GossipAddr: "127.0.0.1:0",
		Join:        []string{tc.nodes[0].members.ml.LocalNode().Address()},
		FastTimings: true, HeartbeatInterval: 200 * time.Millisecond,
	})
	waitFor(t, "the leader hears from the worker", func() bool {
		_, ok := tc.nodes[0].ledger.Stats().ByWorker[w.Name()]
		return ok
	})
	create(t, tc.clients[0], "held", holdZip(t), func(r *rpc.CreateFunctionRequest) { r.MemoryMB = 512; r.TimeoutSec = 60 })
	type result struct {
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		_, err := tc.clients[0].Invoke(ctx, &rpc.InvokeRequest{FunctionName: "held", Payload: []byte("30")})
		done <- result{err, time.Since(start)}
	}()
	waitFor(t, "the invocation to start on w1", func() bool { return len(w.work.list()) > 0 })
	tc.stop(1)
	r := <-done
	if !errors.Is(r.err, rpc.ErrService) {
		t.Fatalf("caller got %v, want a ServiceException", r.err)
	}
	// Not a latency assertion: the call must end because the worker died,
	// not because the 30 s invocation ran out.
	if r.took >= 30*time.Second {
		t.Fatalf("the caller waited %v: until the invocation's end, not the worker's death", r.took)
	}
	waitFor(t, "the dead worker's slot freed", func() bool { return tc.nodes[0].ledger.Stats().Slots == 0 })
}

func TestClusterWorkerOnlyNodeAndCodeFetch(t *testing.T) {
	tc := startCluster(t, 1, func(i int, cfg *Config) { cfg.MemoryMB = 2048 })
	join := []string{tc.nodes[0].members.ml.LocalNode().Address()}
	w := tc.start(1, Config{
		Name: "w1", Worker: true, MemoryMB: 4096, GossipAddr: "127.0.0.1:0", Join: join,
		FastTimings: true, HeartbeatInterval: 200 * time.Millisecond,
	})
	// Only the worker has memory for a 3000 MB function: n1 offers 2048.
	waitFor(t, "the leader hears from the worker", func() bool {
		_, ok := tc.nodes[0].ledger.Stats().ByWorker[w.Name()]
		return ok
	})
	create(t, tc.clients[1], "hello", helloZip(t), func(r *rpc.CreateFunctionRequest) { r.MemoryMB = 3000 })
	res := invoke(t, tc.clients[1], "hello", `{"name":"worker"}`)
	if res.FunctionError != "" {
		t.Fatalf("invoke through a worker-only node: %s", res.Payload)
	}
	fn, _ := tc.nodes[0].fsm.Function("hello")
	if !tc.nodes[1].code.Has(fn.CodeSHA256) {
		t.Fatal("the worker ran the function without fetching its code")
	}
}

func TestClusterGossipEncryptionAndLeave(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	tc := startCluster(t, 3, func(i int, cfg *Config) { cfg.EncryptKey = key })
	ctx := ctxT(t)
	lead := tc.waitLeader()

	// A node with another key cannot join: the members never see it.
	stranger := tc.start(3, Config{
		Name: "stranger", Worker: true, MemoryMB: 1024, GossipAddr: "127.0.0.1:0",
		Join:        []string{tc.nodes[lead].members.ml.LocalNode().Address()},
		EncryptKey:  []byte("fedcba9876543210fedcba9876543210"),
		FastTimings: true,
	})
	if got := tc.nodes[lead].members.ml.NumMembers(); got != 3 {
		t.Fatalf("the leader sees %d members after a join with the wrong key, want 3", got)
	}
	if got := stranger.members.ml.NumMembers(); got != 1 {
		t.Fatalf("the stranger sees %d members, want only itself", got)
	}
	tc.stop(3)

	// A graceful stop is "left" at once, and the leader drops the server
	// from the Raft configuration without waiting for the dead-server grace.
	follower := (lead + 1) % 3
	tc.stop(follower)
	name := tc.nodes[follower].Name()
	waitFor(t, "the stopped follower is left and out of the raft configuration", func() bool {
		var view rpc.RaftResponse
		if err := tc.clients[lead].Call(ctx, rpc.MethodClusterRaft, &rpc.RaftRequest{}, &view); err != nil {
			return false
		}
		for _, s := range view.Servers {
			if s.ID == name {
				return false
			}
		}
		var members rpc.MembersResponse
		if err := tc.clients[lead].Call(ctx, rpc.MethodClusterMembers, &rpc.MembersRequest{}, &members); err != nil {
			return false
		}
		for _, m := range members.Members {
			if m.Name == name {
				return m.Status == rpc.MemberLeft
			}
		}
		return false
	})
}

func TestClusterLogsFromAnyNode(t *testing.T) {
	tc := startCluster(t, 3, nil)
	ctx := ctxT(t)
	createRetrying(t, tc.clients[0], "hello", helloZip(t))
	res := invoke(t, tc.clients[1], "hello", `{"name":"logs"}`)
	// The invocation ran on one worker; its lines are in the replicated
	// store, and every node shows them, in order, with the same cursors.
	var first []rpc.LogEvent
	for i, cl := range tc.clients {
		var lines []string
		var resp *rpc.ReadLogsResponse
		waitFor(t, fmt.Sprintf("node %d shows the invocation's log", i+1), func() bool {
			var err error
			resp, err = cl.ReadLogs(ctx, &rpc.ReadLogsRequest{FunctionName: "hello"})
			if errors.Is(err, rpc.ErrService) {
				return false // the log store is still electing its leader
			}
			if err != nil {
				t.Fatal(err)
			}
			lines = lines[:0]
			for _, e := range resp.Events {
				if e.RequestID == res.RequestID {
					lines = append(lines, e.Line)
				}
			}
			return len(lines) >= 4
		})
		if lines[0] != "START RequestId: "+res.RequestID+" Version: $LATEST" || lines[len(lines)-2] != "END RequestId: "+res.RequestID {
			t.Fatalf("node %d: lines %q", i+1, lines)
		}
		if i == 0 {
			first = resp.Events
		} else if len(resp.Events) != len(first) || resp.Events[0].Seq != first[0].Seq || resp.Events[len(first)-1].Seq != first[len(first)-1].Seq {
			t.Fatalf("node %d answers %d events, node 1 %d (or other cursors)", i+1, len(resp.Events), len(first))
		}
		// Reading on from the cursor gives nothing new.
		again, err := cl.ReadLogs(ctx, &rpc.ReadLogsRequest{FunctionName: "hello", After: resp.Next})
		if err != nil || len(again.Events) != 0 {
			t.Fatalf("node %d: reading on from the cursor gave %d lines (%v)", i+1, len(again.Events), err)
		}
	}
}

// TestClusterUnreachableWorkerAvoided: a worker the leader believes alive
// but that nobody can dial (here: a heartbeat with a dead address and the
// most free memory, so placement prefers it) costs a retry, not an error.
func TestClusterUnreachableWorkerAvoided(t *testing.T) {
	tc := startCluster(t, 1, nil)
	ctx := ctxT(t)
	create(t, tc.clients[0], "hello", helloZip(t), nil)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now: dials are refused
	ghost := &rpc.HeartbeatRequest{Node: "ghost", Addr: deadAddr, MemoryMB: 1 << 20}
	tc.nodes[0].ledger.Heartbeat(ghost)
	// The frontend must not be the leader's own worker path only: invoke
	// through the leader, whose ledger places on the ghost first.
	res, err := tc.clients[0].Invoke(ctx, &rpc.InvokeRequest{FunctionName: "hello", Payload: []byte(`{"name":"ghost"}`)})
	if err != nil || res.FunctionError != "" {
		t.Fatalf("invoke with an unreachable worker in the ledger: %v %+v", err, res)
	}
	if got := tc.nodes[0].ledger.Stats().ByWorker["ghost"].InFlight; got != 0 {
		t.Fatalf("the ghost keeps %d slots", got)
	}
}

// TestClusterWorkerOnlyNodeFollowsNewLeader: a worker-only node (the only
// one with memory for the function) reports to whichever server leads:
// after the leader stops, the new leader's ledger hears from it and gives
// it slots.
func TestClusterWorkerOnlyNodeFollowsNewLeader(t *testing.T) {
	tc := startCluster(t, 3, func(i int, cfg *Config) { cfg.Worker = false })
	join := []string{tc.nodes[0].members.ml.LocalNode().Address()}
	w := tc.start(3, Config{
		Name: "w1", Worker: true, MemoryMB: 4096, GossipAddr: "127.0.0.1:0", Join: join,
		FastTimings: true, HeartbeatInterval: 200 * time.Millisecond,
	})
	lead := tc.waitLeader()
	waitFor(t, "the leader hears from the worker", func() bool {
		_, ok := tc.nodes[lead].ledger.Stats().ByWorker[w.Name()]
		return ok
	})
	createRetrying(t, tc.clients[3], "hello", helloZip(t))
	invokeRetrying(t, tc.clients[3], "hello", `{"name":"first leader"}`)

	tc.stop(lead)
	next := tc.waitLeader()
	waitFor(t, "the new leader hears from the worker", func() bool {
		_, ok := tc.nodes[next].ledger.Stats().ByWorker[w.Name()]
		return ok
	})
	invokeRetrying(t, tc.clients[3], "hello", `{"name":"second leader"}`)
}
