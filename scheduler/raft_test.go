package scheduler

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"nimbus/rpc"
)

// testLogWriter routes Raft's logs through t.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSingleNodeRaft runs the FSM under a real single-voter Raft with
// in-memory stores and transport.
func TestSingleNodeRaft(t *testing.T) {
	t.Parallel()
	conf := raft.DefaultConfig()
	conf.LocalID = "node-1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.LogOutput = testLogWriter{t}
	conf.LogLevel = "WARN"

	rec := &recorder{}
	fsm := NewFSM(FSMOptions{OnFunctionChange: rec.record})
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	addr, trans := raft.NewInmemTransport("")
	r, err := raft.NewRaft(conf, fsm, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	boot := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
	if err := r.BootstrapCluster(boot).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "leadership", func() bool { return r.State() == raft.Leader })

	propose := func(ct CommandType, cmd Command) ApplyResult {
		t.Helper()
		fut := r.Apply(mustEncode(t, ct, cmd), 5*time.Second)
		if err := fut.Error(); err != nil {
			t.Fatalf("raft apply: %v", err)
		}
		res, ok := fut.Response().(ApplyResult)
		if !ok {
			t.Fatalf("response is %T", fut.Response())
		}
		if ct == CmdPutFunction && res.Err == nil && res.Function.Revision != fut.Index() {
			t.Fatalf("revision %d, log index %d", res.Function.Revision, fut.Index())
		}
		return res
	}

	created := propose(CmdPutFunction, PutFunctionCommand{Function: fullFunction("hello"), Mode: PutCreate})
	if created.Err != nil {
		t.Fatal(created.Err)
	}
	if res := propose(CmdPutFunction, PutFunctionCommand{Function: fullFunction("hello"), Mode: PutCreate}); !errors.Is(res.Err, rpc.ErrResourceConflict) {
		t.Fatalf("second create: %v", res.Err)
	}
	upd := created.Function.Clone()
	upd.MemoryMB = 512
	updated := propose(CmdPutFunction, PutFunctionCommand{Function: upd, Mode: PutUpdate, IfRevision: created.Function.Revision})
	if updated.Err != nil {
		t.Fatal(updated.Err)
	}
	propose(CmdPutFunction, PutFunctionCommand{Function: fullFunction("other"), Mode: PutCreate})
	if res := propose(CmdDeleteFunction, DeleteFunctionCommand{Name: "other"}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := propose(CmdPutConcurrency, PutConcurrencyCommand{Name: "hello", Reserved: 20, MaxTotal: MaxReservedTotal(1000)}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := propose(CmdPutConcurrency, PutConcurrencyCommand{Name: "other", Reserved: 1}); !errors.Is(res.Err, rpc.ErrResourceNotFound) {
		t.Fatalf("reservation of a deleted function: %v", res.Err)
	}
	// A garbled entry of a known type reaches the FSM as an error, and
	// Raft goes on; so does an unknown ignorable one.
	if fut := r.Apply([]byte{0xee, 1, 2}, 5*time.Second); fut.Error() != nil || !fut.Response().(ApplyResult).Ignored {
		t.Fatalf("ignorable entry: %v %+v", fut.Error(), fut.Response())
	}
	fut := r.Apply([]byte{byte(CmdPutFunction), 0xc1}, 5*time.Second)
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	if res := fut.Response().(ApplyResult); !errors.Is(res.Err, rpc.ErrService) {
		t.Fatalf("garbled entry: %v", res.Err)
	}

	got, ok := fsm.Function("hello")
	if !ok || got.MemoryMB != 512 || got.Revision != updated.Function.Revision {
		t.Fatalf("Function(hello) = %+v, %v", got, ok)
	}
	if fns := fsm.Functions(); len(fns) != 1 {
		t.Fatalf("Functions() = %d functions, want 1", len(fns))
	}
	if n := len(rec.take()); n != 4 {
		t.Fatalf("OnFunctionChange called %d times, want 4", n)
	}

	// A snapshot taken by Raft restores into a fresh FSM.
	if err := r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("snapshots: %v, %v", metas, err)
	}
	_, rc, err := snaps.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	fresh := NewFSM(FSMOptions{})
	if err := fresh.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if got2, ok := fresh.Function("hello"); !ok || got2.Revision != got.Revision || got2.MemoryMB != 512 {
		t.Fatalf("restored Function(hello) = %+v, %v", got2, ok)
	}
	if r, ok := fresh.Reserved("hello"); !ok || r != 20 || fresh.ReservedTotal() != 20 {
		t.Fatalf("restored Reserved(hello) = %d, %v; total %d", r, ok, fresh.ReservedTotal())
	}
}
