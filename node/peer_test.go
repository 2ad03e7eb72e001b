package node

import (
	"errors"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"nimbus/rpc"
)

// peerCalls are the node-to-node methods, each with a request that would do
// harm if a client could send it.
func peerCalls(victim *rpc.FunctionConfig) map[string]any {
	return map[string]any{
		rpc.MethodWorkerHeartbeat: &rpc.HeartbeatRequest{Node: "evil", Addr: "127.0.0.1:1", MemoryMB: 1 << 20},
		rpc.MethodLedgerAcquire:   &rpc.AcquireRequest{FunctionName: victim.Name},
		rpc.MethodLedgerRelease:   &rpc.ReleaseRequest{Worker: "evil", SlotIDs: []uint64{1, 2, 3}},
		rpc.MethodWorkerRun:       &rpc.RunRequest{SlotID: 99, Function: victim, Payload: []byte(`{}`)},
		rpc.MethodCodePut:         &rpc.CodePutRequest{ZipFile: []byte("PK")},
		rpc.MethodCodeFetch:       &rpc.CodeFetchRequest{SHA256: victim.CodeSHA256},
		// Runtime images (issue 10).
		rpc.MethodImageLocal: &rpc.LocalImagesRequest{},
		rpc.MethodImageFetch: &rpc.FetchImageRequest{Runtime: rpc.RuntimePython313},
		// Forwarded accepts (async_forward.go).
		methodAsyncAcceptBatch: &acceptBatchRequest{Events: []acceptBatchEvent{{FunctionName: victim.Name, Payload: []byte(`{}`)}}},
	}
}

// TestPeerMethodsRefusedOnDevNode: a dev node serves no node-to-node method
// to anyone, and answers a normal invocation right after.
func TestPeerMethodsRefusedOnDevNode(t *testing.T) {
	t.Parallel()
	n, cl := startNode(t, t.TempDir())
	ctx := ctxT(t)
	fn := create(t, cl, "victim", helloZip(t), nil)
	for method, req := range peerCalls(fn) {
		err := cl.Call(ctx, method, req, nil)
		if !errors.Is(err, rpc.ErrAccessDenied) {
			t.Errorf("%s from a client: %v, want AccessDeniedException", method, err)
		}
	}
	if st := n.ledger.Stats(); st.Slots != 0 {
		t.Fatalf("the ledger holds %d slots after the refused calls", st.Slots)
	}
	if _, ok := n.ledger.Stats().ByWorker["evil"]; ok {
		t.Fatal("the made-up worker reached the ledger")
	}
	if res := invoke(t, cl, "victim", `{"name":"after"}`); res.FunctionError != "" {
		t.Fatalf("invoke after the refused calls: %s", res.Payload)
	}
}

// TestPeerChannelOnCluster: on a cluster node, clients cannot reach the
// peer methods on the client channel, a connection on the peer channel
// without the cluster's key gets nothing, and a node with the key can speak
// only for itself in heartbeats.
func TestPeerChannelOnCluster(t *testing.T) {
	tc := startCluster(t, 1, nil)
	ctx := ctxT(t)
	cl := tc.clients[0]
	fn := create(t, cl, "victim", helloZip(t), nil)
	addr := tc.nodes[0].Addr()

	for method, req := range peerCalls(fn) {
		if err := cl.Call(ctx, method, req, nil); !errors.Is(err, rpc.ErrAccessDenied) {
			t.Errorf("%s from a client: %v, want AccessDeniedException", method, err)
		}
	}

	// The peer channel with another key: the handshake fails.
	_, err := rpc.Dial(ctx, addr, rpc.ClientOptions{Peer: &rpc.PeerAuth{Key: rpc.PeerKey([]byte("not-the-cluster-key-of-32-bytes!")), Name: "n1"}})
	if !errors.Is(err, rpc.ErrPeerAuth) {
		t.Fatalf("peer dial with a wrong key: %v, want ErrPeerAuth", err)
	}
	// The peer magic byte and then nothing: closed within the handshake's time.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte{rpc.PeerMagic})
	raw.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatal("a silent peer connection was answered")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a silent peer connection was never closed")
	}
	raw.Close()

	// A holder of the key that is not a member gossip knows, or that
	// speaks for another worker, is refused.
	key := rpc.PeerKey(testClusterKey)
	ghost, err := rpc.Dial(ctx, addr, rpc.ClientOptions{Peer: &rpc.PeerAuth{Key: key, Name: "ghost"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Close()
	for _, hb := range []*rpc.HeartbeatRequest{
		{Node: "ghost", Addr: "127.0.0.1:1", MemoryMB: 1 << 20}, // unknown to gossip
		{Node: "n1", Addr: addr, MemoryMB: 1 << 20},             // another node's name
	} {
		if err := ghost.Call(ctx, rpc.MethodWorkerHeartbeat, hb, nil); !errors.Is(err, rpc.ErrAccessDenied) {
			t.Errorf("heartbeat %+v from ghost: %v, want AccessDeniedException", hb, err)
		}
	}
	if _, ok := tc.nodes[0].ledger.Stats().ByWorker["ghost"]; ok {
		t.Fatal("the ghost worker reached the ledger")
	}
	// A peer with the key reaches the peer methods (here, a code fetch).
	var got rpc.CodeFetchResponse
	if err := ghost.Call(ctx, rpc.MethodCodeFetch, &rpc.CodeFetchRequest{SHA256: fn.CodeSHA256}, &got); err != nil {
		t.Fatalf("code fetch over the peer channel: %v", err)
	}
	if len(got.ZipFile) == 0 {
		t.Fatal("code fetch over the peer channel returned no zip")
	}
	if res := invoke(t, cl, "victim", `{"name":"after"}`); res.FunctionError != "" {
		t.Fatalf("invoke after the refused calls: %s", res.Payload)
	}
}

// TestHeartbeatIdentity checks the rule alone: a heartbeat is taken only
// from the worker it names, known to gossip as alive at that address.
func TestHeartbeatIdentity(t *testing.T) {
	tc := startCluster(t, 1, nil)
	n := tc.nodes[0]
	self := n.heartbeat()
	cases := []struct {
		caller rpc.Caller
		hb     *rpc.HeartbeatRequest
		ok     bool
	}{
		{rpc.Caller{Peer: n.name}, self, true},
		{rpc.Caller{}, self, false},                                              // a client
		{rpc.Caller{Peer: "other"}, self, false},                                 // speaks for another
		{rpc.Caller{Peer: "ghost"}, &rpc.HeartbeatRequest{Node: "ghost"}, false}, // unknown to gossip
		{rpc.Caller{Peer: n.name}, &rpc.HeartbeatRequest{Node: n.name, Addr: "10.0.0.1:8700"}, false},
	}
	for i, c := range cases {
		err := n.checkHeartbeatFrom(c.caller, c.hb)
		if (err == nil) != c.ok {
			t.Errorf("case %d: caller %q heartbeat for %q at %s: %v, want ok=%v", i, c.caller.Peer, c.hb.Node, c.hb.Addr, err, c.ok)
		}
	}
}

// TestThousandsOfSilentConnections: 2,000 connections that never speak, on
// a dev node. Past the per-source limit they are refused at once; the node
// holds no more file descriptors than the limit allows, closes the silent
// ones after the first-frame timeout, and then serves a normal call with
// its descriptors and goroutines back near where they were.
func TestThousandsOfSilentConnections(t *testing.T) {
	n, cl := startNode(t, t.TempDir())
	create(t, cl, "hello", helloZip(t), nil)
	invoke(t, cl, "hello", `{"name":"before"}`)
	cl.Close() // its connection would count against the limit
	// The cold start refills the pool of sandbox shells after it answers:
	// count from once it is full.
	waitFor(t, "the sandbox shell pool full", func() bool { return n.sandboxes.Stats().Ready == shellPool(0) })
	baseFDs, baseG := openFDs(t), runtime.NumGoroutine()

	const silent = 2000
	var conns []net.Conn
	for i := 0; i < silent; i++ {
		c, err := net.Dial("tcp", n.Addr())
		if errors.Is(err, syscall.ECONNRESET) {
			continue // refused so fast that the dial saw it
		}
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	waitFor(t, "the node to admit up to its per-source limit", func() bool {
		return n.limiter.Open() == rpc.DefaultMaxConnsPerSource
	})
	// Our 2,000 client ends are in this process too: count only the node's
	// side, which is at most the admitted ones plus refusals under way.
	if extra := openFDs(t) - baseFDs - len(conns); extra > rpc.DefaultMaxConnsPerSource+128 {
		t.Fatalf("the node holds %d more descriptors for %d silent connections", extra, silent)
	}
	waitFor(t, "the silent connections closed by the node", func() bool { return n.limiter.Open() == 0 })
	for _, c := range conns {
		c.Close()
	}
	conns = nil

	c2, err := rpc.Dial(ctxT(t), n.Addr(), rpc.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if res := invoke(t, c2, "hello", `{"name":"after"}`); res.FunctionError != "" {
		t.Fatalf("invoke after the flood: %s", res.Payload)
	}
	waitFor(t, "descriptors and goroutines back near their baseline", func() bool {
		return openFDs(t) <= baseFDs+16 && runtime.NumGoroutine() <= baseG+64
	})
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
