package scheduler

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"nimbus/rpc"
)

// fakeClock is the ledger's clock in tests: it moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

const (
	testTimeout = 5 * time.Second
	testGrace   = 3 * time.Second
)

func newTestLedger(limit int) (*Ledger, *fakeClock) {
	c := newFakeClock()
	return NewLedger(LedgerOptions{AccountLimit: limit, WorkerTimeout: testTimeout, RecoveryGrace: testGrace, Now: c.now}), c
}

// hb builds a heartbeat; slots are "id:function:memory" triples given as
// SlotInfo values.
func hb(name string, memMB int, warm map[string]int, slots ...rpc.SlotInfo) *rpc.HeartbeatRequest {
	return &rpc.HeartbeatRequest{Node: name, Addr: name + ":7946", MemoryMB: memMB, Warm: warm, Slots: slots}
}

func fnReq(name string, memMB int) GrantRequest {
	return GrantRequest{Function: name, Key: name + "@1", MemoryMB: memMB}
}

func reservedReq(name string, memMB, reserved int) GrantRequest {
	r := fnReq(name, memMB)
	r.Reserved, r.HasReserved = reserved, true
	return r
}

func mustGrant(t testing.TB, l *Ledger, req GrantRequest, reservedTotal int) Grant {
	t.Helper()
	g, err := l.Grant(req, reservedTotal)
	if err != nil {
		t.Fatalf("Grant(%+v, %d): %v", req, reservedTotal, err)
	}
	return g
}

// wantThrottle checks that err is a TooManyRequestsException with reason.
func wantThrottle(t testing.TB, err error, reason string) {
	t.Helper()
	var e *rpc.Error
	if !errors.As(err, &e) || !errors.Is(err, rpc.ErrTooManyRequests) || e.Reason != reason {
		t.Fatalf("err = %v, want TooManyRequestsException (%s)", err, reason)
	}
}

func TestLedgerDefaults(t *testing.T) {
	t.Parallel()
	l := NewLedger(LedgerOptions{})
	l.Heartbeat(hb("w", 1<<30, nil))
	var ids []uint64
	for i := 0; i < DefaultAccountLimit; i++ {
		ids = append(ids, mustGrant(t, l, fnReq("f", 128), 0).SlotID)
	}
	_, err := l.Grant(fnReq("f", 128), 0)
	wantThrottle(t, err, rpc.ReasonConcurrentInvocationLimitExceeded)
	if e := err.(*rpc.Error); e.Message != "Rate Exceeded." {
		t.Fatalf("message = %q, want Lambda's", e.Message)
	}
	if !slices.IsSorted(ids) || len(slices.Compact(ids)) != DefaultAccountLimit {
		t.Fatal("slot ids are not unique and increasing")
	}
	l.Release("w", ids...)
	if st := l.Stats(); st.Slots != 0 || st.ByWorker["w"].MemoryUsedMB != 0 {
		t.Fatalf("after releasing everything: %+v", st)
	}
	if _, err := l.Grant(GrantRequest{MemoryMB: 128}, 0); !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Fatalf("grant without a function: %v", err)
	}
}

// TestLedgerLimits: the account limit, reservations and the unreserved pool.
func TestLedgerLimits(t *testing.T) {
	t.Parallel()
	type grant struct {
		req           GrantRequest
		reservedTotal int
		reason        string // "" means granted
	}
	u := func(name string) GrantRequest { return fnReq(name, 128) }
	r := func(name string, n int) GrantRequest { return reservedReq(name, 128, n) }
	const (
		acct = rpc.ReasonConcurrentInvocationLimitExceeded
		resv = rpc.ReasonReservedFunctionConcurrentInvocationLimit
	)
	repeat := func(n int, g grant) []grant { return slices.Repeat([]grant{g}, n) }
	tests := []struct {
		name   string
		limit  int
		grants []grant
	}{
		{"account limit", 3, append(repeat(3, grant{u("a"), 0, ""}), grant{u("b"), 0, acct})},
		{"reserved 0 always throttles", 10, []grant{{r("z", 0), 0, resv}, {r("z", 0), 0, resv}, {u("a"), 0, ""}}},
		{"reservation is a cap", 10, append(repeat(2, grant{r("f", 2), 2, ""}), grant{r("f", 2), 2, resv}, grant{u("a"), 2, ""})},
		{"unreserved pool is limit minus reserved", 10,
			append(repeat(4, grant{u("a"), 6, ""}), grant{u("b"), 6, acct}, grant{u("a"), 6, acct})},
		{"a reserved function does not use the pool", 10,
			append(append(repeat(6, grant{r("f", 6), 6, ""}), repeat(4, grant{u("a"), 6, ""})...),
				grant{u("a"), 6, acct}, grant{r("f", 6), 6, resv})},
		{"a reserved function gets its slots with the pool exhausted", 10,
			append(append(repeat(4, grant{u("a"), 6, ""}), grant{u("a"), 6, acct}), repeat(6, grant{r("f", 6), 6, ""})...)},
		{"reservedTotal over the limit leaves no pool", 10, []grant{{u("a"), 50, acct}, {r("f", 1), 50, ""}}},
		{"negative reservedTotal counts as 0", 2, []grant{{u("a"), -5, ""}, {u("a"), -5, ""}, {u("a"), -5, acct}}},
		{"account limit holds over inconsistent reservations", 3,
			[]grant{{r("f", 5), 0, ""}, {r("f", 5), 0, ""}, {r("g", 5), 0, ""}, {r("g", 5), 0, acct}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, _ := newTestLedger(tt.limit)
			l.Heartbeat(hb("w", 1<<20, nil))
			for i, g := range tt.grants {
				_, err := l.Grant(g.req, g.reservedTotal)
				if g.reason == "" {
					if err != nil {
						t.Fatalf("grant %d (%s): %v", i, g.req.Function, err)
					}
					continue
				}
				wantThrottle(t, err, g.reason)
			}
		})
	}
}

// TestLedgerReservationChanges: a function's live slots follow it into and
// out of its reservation.
func TestLedgerReservationChanges(t *testing.T) {
	t.Parallel()
	l, _ := newTestLedger(10)
	l.Heartbeat(hb("w", 1<<20, nil))
	var ids []uint64
	for i := 0; i < 3; i++ {
		ids = append(ids, mustGrant(t, l, fnReq("f", 128), 0).SlotID)
	}
	if st := l.Stats(); st.Unreserved != 3 {
		t.Fatalf("Unreserved = %d, want 3", st.Unreserved)
	}
	// f gains a reservation of 3: its 3 slots are now its reservation's.
	_, err := l.Grant(reservedReq("f", 128, 3), 3)
	wantThrottle(t, err, rpc.ReasonReservedFunctionConcurrentInvocationLimit)
	if st := l.Stats(); st.Unreserved != 0 || st.ByFunction["f"] != 3 {
		t.Fatalf("after the reservation: %+v", st)
	}
	// The pool (10-3) is free for others.
	for i := 0; i < 7; i++ {
		mustGrant(t, l, fnReq("g", 128), 3)
	}
	_, err = l.Grant(fnReq("g", 128), 3)
	wantThrottle(t, err, rpc.ReasonConcurrentInvocationLimitExceeded)
	// f loses its reservation: its slots count against the pool again.
	_, err = l.Grant(fnReq("f", 128), 0)
	wantThrottle(t, err, rpc.ReasonConcurrentInvocationLimitExceeded)
	if st := l.Stats(); st.Unreserved != 10 {
		t.Fatalf("Unreserved = %d, want 10", st.Unreserved)
	}
	l.Release("w", ids...)
	if st := l.Stats(); st.Unreserved != 7 || st.Slots != 7 || st.ByFunction["f"] != 0 {
		t.Fatalf("after releasing f: %+v", st)
	}
}

func TestLedgerSetAccountLimit(t *testing.T) {
	t.Parallel()
	l, _ := newTestLedger(5)
	l.Heartbeat(hb("w", 1<<20, nil))
	for i := 0; i < 4; i++ {
		mustGrant(t, l, fnReq("f", 128), 0)
	}
	l.SetAccountLimit(3) // below what runs: nothing more until enough end
	_, err := l.Grant(reservedReq("r", 128, 2), 0)
	wantThrottle(t, err, rpc.ReasonConcurrentInvocationLimitExceeded)
	l.SetAccountLimit(0) // the default
	for i := 0; i < DefaultAccountLimit-4; i++ {
		mustGrant(t, l, fnReq("f", 1), 0)
	}
	_, err = l.Grant(fnReq("f", 1), 0)
	wantThrottle(t, err, rpc.ReasonConcurrentInvocationLimitExceeded)
}

// TestLedgerPlacement: warm first, then most free memory, ties by name,
// never a dead or full worker.
func TestLedgerPlacement(t *testing.T) {
	t.Parallel()
	type step struct {
		req     GrantRequest
		want    string // worker, or "" for a throttle
		release bool   // release the slot right away
	}
	tests := []struct {
		name  string
		setup func(l *Ledger, c *fakeClock)
		steps []step
	}{
		{"most free memory", func(l *Ledger, c *fakeClock) {
			l.Heartbeat(hb("a", 1024, nil))
			l.Heartbeat(hb("b", 4096, nil))
			l.Heartbeat(hb("c", 2048, nil))
		}, []step{
			{req: fnReq("f", 1024), want: "b"}, // free: a 1024, b 4096, c 2048
			{req: fnReq("f", 1024), want: "b"}, // b 3072 > c 2048
			{req: fnReq("f", 1024), want: "b"}, // b 2048 = c 2048: by name
			{req: fnReq("f", 1024), want: "c"}, // c 2048 > a 1024 = b 1024
			{req: fnReq("f", 1024), want: "a"}, // all 1024: by name
			{req: fnReq("f", 1024), want: "b"},
			{req: fnReq("f", 1024), want: "c"},
			{req: fnReq("f", 1), want: ""}, // all full
		}},
		{"exact fit", func(l *Ledger, c *fakeClock) {
			l.Heartbeat(hb("a", 1000, nil))
		}, []step{{req: fnReq("f", 1001), want: ""}, {req: fnReq("f", 1000), want: "a"}, {req: fnReq("f", 0), want: "a"}}},
		{"no workers", func(l *Ledger, c *fakeClock) {}, []step{{req: fnReq("f", 128), want: ""}}},
		{"zero capacity", func(l *Ledger, c *fakeClock) {
			l.Heartbeat(hb("a", 0, nil))
		}, []step{{req: fnReq("f", 128), want: ""}}},
		{"warm first", func(l *Ledger, c *fakeClock) {
			l.Heartbeat(hb("a", 1024, map[string]int{"f@1": 1}))
			l.Heartbeat(hb("b", 8192, map[string]int{"g@1": 3, "f@0": 2}))
		}, []step{
			{req: fnReq("f", 128), want: "a"}, // a's idle sandbox
			{req: fnReq("f", 128), want: "b"}, // a's is taken: most free
			{req: fnReq("g", 128), want: "b"},
			{req: GrantRequest{Function: "f", MemoryMB: 128}, want: "b"}, // no key: no warm
		}},
		{"a release gives the sandbox back", func(l *Ledger, c *fakeClock) {
			l.Heartbeat(hb("a", 1024, nil))
			l.Heartbeat(hb("b", 8192, nil))
		}, []step{
			{req: fnReq("f", 128), want: "b"},
			{req: fnReq("f", 128), want: "b", release: true}, // its sandbox is now idle on b
			{req: fnReq("g", 7100), want: "b"},               // b: 8192-128-7100 = 964 free, less than a's 1024
			{req: fnReq("f", 128), want: "b"},                // warm beats more free memory
			{req: fnReq("f", 128), want: "a"},                // no idle sandbox left: most free
		}},
		{"warm but full", func(l *Ledger, c *fakeClock) {
			l.Heartbeat(hb("a", 256, map[string]int{"big@1": 1}))
			l.Heartbeat(hb("b", 4096, nil))
		}, []step{{req: fnReq("big", 512), want: "b"}}},
		{"warm ties: most free, then name", func(l *Ledger, c *fakeClock) {
			l.Heartbeat(hb("c", 2048, map[string]int{"f@1": 1}))
			l.Heartbeat(hb("b", 2048, map[string]int{"f@1": 1}))
			l.Heartbeat(hb("a", 1024, map[string]int{"f@1": 5}))
			l.Heartbeat(hb("d", 9999, nil))
		}, []step{
			{req: fnReq("f", 128), want: "b"},
			{req: fnReq("f", 128), want: "c"},
			{req: fnReq("f", 128), want: "a"},
		}},
		{"dead worker gets nothing", func(l *Ledger, c *fakeClock) {
			l.Heartbeat(hb("a", 9999, map[string]int{"f@1": 9}))
			c.advance(testTimeout / 2)
			l.Heartbeat(hb("b", 1024, nil))
			c.advance(testTimeout / 2) // a: exactly WorkerTimeout since its heartbeat
		}, []step{{req: fnReq("f", 128), want: "b"}, {req: fnReq("f", 1000), want: ""}}},
		{"removed worker gets nothing", func(l *Ledger, c *fakeClock) {
			l.Heartbeat(hb("a", 9999, nil))
			l.Heartbeat(hb("b", 1024, nil))
			l.RemoveWorker("a")
		}, []step{{req: fnReq("f", 128), want: "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, c := newTestLedger(100)
			tt.setup(l, c)
			for i, s := range tt.steps {
				g, err := l.Grant(s.req, 0)
				if s.want == "" {
					wantThrottle(t, err, rpc.ReasonConcurrentInvocationLimitExceeded)
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if g.Worker != s.want || g.WorkerAddr != s.want+":7946" {
					t.Fatalf("step %d: placed on %s (%s), want %s", i, g.Worker, g.WorkerAddr, s.want)
				}
				if s.release {
					l.Release(g.Worker, g.SlotID)
				}
			}
		})
	}
}

// TestLedgerWarmAfterHeartbeat: a heartbeat's warm count is reduced by the
// slots granted on that key and not yet running there.
func TestLedgerWarmAfterHeartbeat(t *testing.T) {
	t.Parallel()
	l, c := newTestLedger(100)
	l.Heartbeat(hb("a", 1024, map[string]int{"f@1": 1}))
	l.Heartbeat(hb("b", 4096, nil))
	g := mustGrant(t, l, fnReq("f", 128), 0)
	if g.Worker != "a" {
		t.Fatalf("placed on %s, want the warm a", g.Worker)
	}
	// The heartbeat was taken before the slot reached a: it still shows the
	// sandbox idle. The ledger must not count on it twice.
	c.advance(time.Second)
	l.Heartbeat(hb("a", 1024, map[string]int{"f@1": 1}))
	if got := mustGrant(t, l, fnReq("f", 128), 0).Worker; got != "b" {
		t.Fatalf("second grant on %s, want b (a's sandbox is spoken for)", got)
	}
	if w := l.Stats().ByWorker["a"].Warm; w != 0 {
		t.Fatalf("a's warm estimate = %d, want 0", w)
	}
	// Now a reports the slot running and another idle sandbox.
	l.Heartbeat(hb("a", 1024, map[string]int{"f@1": 1}, rpc.SlotInfo{ID: g.SlotID, Function: "f", MemoryMB: 128}))
	if got := mustGrant(t, l, fnReq("f", 128), 0).Worker; got != "a" {
		t.Fatalf("third grant on %s, want the warm a", got)
	}
}

func TestLedgerRelease(t *testing.T) {
	t.Parallel()
	l, _ := newTestLedger(100)
	l.Heartbeat(hb("a", 4096, nil))
	l.Heartbeat(hb("b", 4096, nil))
	ga := mustGrant(t, l, fnReq("f", 1024), 0)
	gb := mustGrant(t, l, fnReq("f", 512), 0)
	gc := mustGrant(t, l, fnReq("g", 256), 0)
	if ga.Worker != "a" || gb.Worker != "b" || gc.Worker != "b" {
		t.Fatalf("placement %s %s %s", ga.Worker, gb.Worker, gc.Worker)
	}
	l.Release("a", gb.SlotID)       // wrong worker: ignored
	l.Release("nobody", ga.SlotID)  // unknown worker: ignored
	l.Release("a", 12345, 1, 1<<63) // unknown ids: ignored
	if st := l.Stats(); st.Slots != 3 {
		t.Fatalf("Slots = %d after bogus releases, want 3", st.Slots)
	}
	l.Release("b", gb.SlotID, gc.SlotID, gb.SlotID)
	l.Release("b", gb.SlotID) // again
	st := l.Stats()
	want := LedgerStats{
		Slots: 1, Unreserved: 1,
		ByFunction: map[string]int{"f": 1},
		ByWorker: map[string]WorkerStats{
			"a": {InFlight: 1, MemoryUsedMB: 1024, MemoryMB: 4096, LastHeartbeat: st.ByWorker["a"].LastHeartbeat},
			"b": {InFlight: 0, MemoryUsedMB: 0, MemoryMB: 4096, Warm: 2, LastHeartbeat: st.ByWorker["b"].LastHeartbeat},
		},
	}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("Stats:\n got %+v\nwant %+v", st, want)
	}
}

func TestLedgerRemoveWorker(t *testing.T) {
	t.Parallel()
	l, _ := newTestLedger(100)
	l.Heartbeat(hb("a", 1024, nil))
	l.Heartbeat(hb("b", 1024, nil))
	var onA []uint64
	for i := 0; i < 6; i++ {
		g := mustGrant(t, l, fnReq(fmt.Sprint("f", i%2), 128), 0)
		if g.Worker == "a" {
			onA = append(onA, g.SlotID)
		}
	}
	if got := l.RemoveWorker("a"); !reflect.DeepEqual(got, onA) {
		t.Fatalf("RemoveWorker(a) = %v, want %v", got, onA)
	}
	st := l.Stats()
	if st.Slots != 3 || st.ByWorker["b"].InFlight != 3 || len(st.ByWorker) != 1 || st.Unreserved != 3 {
		t.Fatalf("after RemoveWorker: %+v", st)
	}
	if got := l.RemoveWorker("a"); got != nil {
		t.Fatalf("second RemoveWorker = %v", got)
	}
	l.Release("a", onA...) // late releases of the dead worker's slots: ignored
	if l.Stats().Slots != 3 {
		t.Fatal("late releases changed the count")
	}
	// It comes back empty.
	l.Heartbeat(hb("a", 1024, nil))
	if w := l.Stats().ByWorker["a"]; w.InFlight != 0 || w.MemoryMB != 1024 {
		t.Fatalf("a after it came back: %+v", w)
	}
}

func TestLedgerHeartbeatReconcile(t *testing.T) {
	t.Parallel()
	l, c := newTestLedger(100)
	l.Heartbeat(hb("a", 4096, nil))
	running := mustGrant(t, l, fnReq("f", 128), 0)
	lost := mustGrant(t, l, fnReq("f", 256), 0)
	report := []rpc.SlotInfo{{ID: running.SlotID, Function: "f", MemoryMB: 128}}

	// Within WorkerTimeout an unreported slot may be on its way: kept.
	c.advance(testTimeout)
	l.Heartbeat(hb("a", 4096, nil, report...))
	if n := l.Stats().Slots; n != 2 {
		t.Fatalf("Slots = %d, want 2 (the unreported slot is still young)", n)
	}
	// Past it, it is dropped; a reported slot stays however old.
	c.advance(time.Millisecond)
	l.Heartbeat(hb("a", 4096, nil, report...))
	st := l.Stats()
	if st.Slots != 1 || st.ByWorker["a"].MemoryUsedMB != 128 {
		t.Fatalf("after the timeout: %+v", st)
	}
	l.Release("a", lost.SlotID) // its late release is harmless
	if st := l.Stats(); st.Slots != 1 {
		t.Fatalf("a late release changed the count: %+v", st)
	}

	// A slot the ledger lacks is adopted, and new ids go past it.
	adopted := rpc.SlotInfo{ID: running.SlotID + 1000, Function: "g", MemoryMB: 512}
	l.Heartbeat(hb("a", 4096, nil, append(report, adopted, adopted)...))
	st = l.Stats()
	if st.Slots != 2 || st.ByFunction["g"] != 1 || st.ByWorker["a"].MemoryUsedMB != 640 || st.Unreserved != 2 {
		t.Fatalf("after adoption: %+v", st)
	}
	if g := mustGrant(t, l, fnReq("f", 128), 0); g.SlotID <= adopted.ID {
		t.Fatalf("new slot id %d is not past the adopted %d", g.SlotID, adopted.ID)
	}
	// A slot without a function is not adopted.
	l.Heartbeat(hb("a", 4096, nil, append(report, adopted, rpc.SlotInfo{ID: 5})...))
	if st := l.Stats(); st.Slots != 3 {
		t.Fatalf("Slots = %d, want 3", st.Slots)
	}
	// A heartbeat with a new capacity and address updates the worker.
	l.Heartbeat(&rpc.HeartbeatRequest{Node: "a", Addr: "10.0.0.9:1", MemoryMB: 8192})
	if g := mustGrant(t, l, fnReq("f", 128), 0); g.WorkerAddr != "10.0.0.9:1" {
		t.Fatalf("address = %s", g.WorkerAddr)
	}
	l.Heartbeat(nil)                     // ignored
	l.Heartbeat(&rpc.HeartbeatRequest{}) // no name: ignored
	if n := len(l.Stats().ByWorker); n != 1 {
		t.Fatalf("%d workers, want 1", n)
	}
}

// TestLedgerStaleHeartbeat: a heartbeat sent before a release but received
// after it does not bring the finished slot back.
func TestLedgerStaleHeartbeat(t *testing.T) {
	t.Parallel()
	l, c := newTestLedger(100)
	l.Heartbeat(hb("a", 4096, nil))
	g := mustGrant(t, l, fnReq("f", 128), 0)
	report := func(id uint64) *rpc.HeartbeatRequest {
		return hb("a", 4096, nil, rpc.SlotInfo{ID: id, Function: "f", MemoryMB: 128})
	}
	l.Release("a", g.SlotID)
	l.Heartbeat(report(g.SlotID))
	if n := l.Stats().Slots; n != 0 {
		t.Fatalf("a stale heartbeat adopted a released slot: Slots = %d", n)
	}
	// However late: the ledger handed it out and saw it end.
	c.advance(3 * testTimeout)
	l.Heartbeat(report(g.SlotID))
	if n := l.Stats().Slots; n != 0 {
		t.Fatalf("a late stale heartbeat adopted a released slot: Slots = %d", n)
	}

	// After a leader change, the previous leader's slots are foreign.
	l.Reset(nil)
	// Released at the new leader before the worker's first heartbeat.
	l.Release("a", g.SlotID)
	l.Heartbeat(report(g.SlotID))
	if n := l.Stats().Slots; n != 0 {
		t.Fatalf("a slot released before its adoption was adopted: Slots = %d", n)
	}
	// Adopted, released, then reported by a stale heartbeat.
	foreign := g.SlotID - 1
	l.Heartbeat(report(foreign))
	if n := l.Stats().Slots; n != 1 {
		t.Fatalf("Slots = %d, want the foreign slot adopted", n)
	}
	l.Release("a", foreign)
	l.Heartbeat(report(foreign))
	if n := l.Stats().Slots; n != 0 {
		t.Fatalf("a stale heartbeat adopted a released foreign slot: Slots = %d", n)
	}
	// A foreign release is remembered at least WorkerTimeout...
	c.advance(testTimeout)
	l.Heartbeat(report(foreign))
	if n := l.Stats().Slots; n != 0 {
		t.Fatalf("a released foreign slot was adopted after WorkerTimeout: Slots = %d", n)
	}
	// ...and at most twice that: a slot still reported then is believed.
	c.advance(testTimeout)
	l.Heartbeat(report(foreign))
	if n := l.Stats().Slots; n != 1 {
		t.Fatalf("Slots = %d, want the still-reported slot adopted", n)
	}
}

// TestLedgerLateSlots: a slot the ledger dropped or freed with its worker,
// then reported running, is adopted again; released, it stays gone.
func TestLedgerLateSlots(t *testing.T) {
	t.Parallel()
	l, c := newTestLedger(100)
	l.Heartbeat(hb("a", 4096, nil))
	late := mustGrant(t, l, fnReq("f", 128), 0)
	c.advance(testTimeout + time.Millisecond)
	l.Heartbeat(hb("a", 4096, nil))
	if n := l.Stats().Slots; n != 0 {
		t.Fatalf("Slots = %d, want the unreported slot dropped", n)
	}
	reportLate := hb("a", 4096, nil, rpc.SlotInfo{ID: late.SlotID, Function: "f", MemoryMB: 128})
	l.Heartbeat(reportLate) // it reached the worker after all
	if n := l.Stats().Slots; n != 1 {
		t.Fatalf("Slots = %d, want the late slot adopted again", n)
	}
	l.Release("a", late.SlotID)
	l.Heartbeat(reportLate) // stale
	if n := l.Stats().Slots; n != 0 {
		t.Fatalf("Slots = %d, want the released slot to stay gone", n)
	}

	// The worker was removed (gossip thought it dead) but goes on running.
	g := mustGrant(t, l, fnReq("f", 128), 0)
	l.RemoveWorker("a")
	l.Heartbeat(hb("a", 4096, nil, rpc.SlotInfo{ID: g.SlotID, Function: "f", MemoryMB: 128}))
	if st := l.Stats(); st.Slots != 1 || st.ByWorker["a"].InFlight != 1 {
		t.Fatalf("after the removed worker's heartbeat: %+v", st)
	}
}

func TestLedgerReset(t *testing.T) {
	t.Parallel()
	l, c := newTestLedger(10)
	l.Heartbeat(hb("a", 4096, nil))
	l.Heartbeat(hb("b", 4096, nil))
	var before []Grant
	for i := 0; i < 4; i++ {
		before = append(before, mustGrant(t, l, fnReq("f", 128), 0))
	}

	// The new leader knows a, b and c (c will not answer).
	l.Reset([]string{"a", "b", "c"})
	st := l.Stats()
	if st.Slots != 0 || len(st.ByWorker) != 0 || !st.Recovering {
		t.Fatalf("after Reset: %+v", st)
	}
	if _, err := l.Grant(fnReq("f", 128), 0); !errors.Is(err, ErrLedgerRecovering) {
		t.Fatalf("Grant while recovering: %v", err)
	}
	reports := map[string][]rpc.SlotInfo{}
	for _, g := range before {
		reports[g.Worker] = append(reports[g.Worker], rpc.SlotInfo{ID: g.SlotID, Function: "f", MemoryMB: 128})
	}
	l.Heartbeat(hb("a", 4096, nil, reports["a"]...))
	l.Heartbeat(hb("b", 4096, nil, reports["b"]...))
	if _, err := l.Grant(fnReq("f", 128), 0); !errors.Is(err, ErrLedgerRecovering) {
		t.Fatalf("Grant while c is awaited: %v", err)
	}
	// The counts are what the workers reported.
	st = l.Stats()
	if st.Slots != 4 || st.ByFunction["f"] != 4 ||
		st.ByWorker["a"].InFlight != len(reports["a"]) || st.ByWorker["b"].InFlight != len(reports["b"]) {
		t.Fatalf("rebuilt counts: %+v", st)
	}
	// c is removed (gossip says dead): recovery ends.
	l.RemoveWorker("c")
	g := mustGrant(t, l, fnReq("f", 128), 0)
	for _, old := range before {
		if g.SlotID <= old.SlotID {
			t.Fatalf("new slot id %d is not past the adopted %d", g.SlotID, old.SlotID)
		}
	}
	// The limit counts the adopted slots.
	for i := 0; i < 5; i++ {
		mustGrant(t, l, fnReq("f", 128), 0)
	}
	_, err := l.Grant(fnReq("f", 128), 0)
	wantThrottle(t, err, rpc.ReasonConcurrentInvocationLimitExceeded)

	// Recovery ends after the grace even if a worker never answers.
	l.Reset([]string{"a", "silent"})
	l.Heartbeat(hb("a", 4096, nil))
	c.advance(testGrace - time.Millisecond)
	if _, err := l.Grant(fnReq("f", 128), 0); !errors.Is(err, ErrLedgerRecovering) {
		t.Fatalf("Grant before the grace: %v", err)
	}
	c.advance(time.Millisecond)
	mustGrant(t, l, fnReq("f", 128), 0)
	if l.Stats().Recovering {
		t.Fatal("still recovering after the grace")
	}

	// Without known workers there is nothing to wait for.
	l.Reset(nil)
	l.Heartbeat(hb("a", 4096, nil))
	mustGrant(t, l, fnReq("f", 128), 0)
}

// TestLedgerConcurrent hammers one ledger from many goroutines (for -race)
// and checks that nothing leaks.
func TestLedgerConcurrent(t *testing.T) {
	t.Parallel()
	l, _ := newTestLedger(64)
	for i := 0; i < 4; i++ {
		l.Heartbeat(hb(fmt.Sprint("w", i), 4096, nil))
	}
	var wg sync.WaitGroup
	var granted atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := reservedReq(fmt.Sprint("f", g), 128, 10)
			if g%2 == 0 {
				req = fnReq(fmt.Sprint("f", g), 128)
			}
			for i := 0; i < 500; i++ {
				gr, err := l.Grant(req, 40)
				if err != nil {
					if !errors.Is(err, rpc.ErrTooManyRequests) {
						t.Error(err)
						return
					}
					continue
				}
				granted.Add(1)
				if st := l.Stats(); st.Slots > 64 {
					t.Errorf("Slots = %d > 64", st.Slots)
				}
				l.Release(gr.Worker, gr.SlotID)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			l.Heartbeat(hb(fmt.Sprint("w", i%4), 4096, map[string]int{"f0@1": 1}))
		}
	}()
	wg.Wait()
	if st := l.Stats(); st.Slots != 0 || st.Unreserved != 0 || len(st.ByFunction) != 0 {
		t.Fatalf("leaked: %+v", st)
	}
	if granted.Load() == 0 {
		t.Fatal("nothing was granted")
	}
}

// BenchmarkLedgerGrantRelease measures one Grant and its Release, on one
// goroutine, with the real clock, 8 workers and 100 slots already running.
func BenchmarkLedgerGrantRelease(b *testing.B) {
	l := benchLedger(b)
	req := fnReq("hot", 128)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		g, err := l.Grant(req, 100)
		if err != nil {
			b.Fatal(err)
		}
		l.Release(g.Worker, g.SlotID)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}

// BenchmarkLedgerGrantReleaseParallel is the same from GOMAXPROCS
// goroutines, each its own function (half of them reserved): the cost of
// the one mutex under contention.
func BenchmarkLedgerGrantReleaseParallel(b *testing.B) {
	l := benchLedger(b)
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := n.Add(1)
		req := fnReq(fmt.Sprint("par", i), 128)
		if i%2 == 0 {
			req = reservedReq(req.Function, 128, 50)
		}
		for pb.Next() {
			g, err := l.Grant(req, 100)
			if err != nil {
				b.Error(err)
				return
			}
			l.Release(g.Worker, g.SlotID)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}

func benchLedger(b *testing.B) *Ledger {
	b.Helper()
	l := NewLedger(LedgerOptions{})
	for i := 0; i < 8; i++ {
		l.Heartbeat(hb(fmt.Sprint("worker-", i), 64*1024, map[string]int{"hot@1": 2, "cold@1": 1}))
	}
	for i := 0; i < 100; i++ {
		if _, err := l.Grant(fnReq(fmt.Sprint("bg", i%10), 128), 100); err != nil {
			b.Fatal(err)
		}
	}
	return l
}

func TestLedgerAvoid(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLedger(LedgerOptions{AccountLimit: 10, Now: func() time.Time { return now }})
	l.Reset(nil)
	for _, w := range []string{"a", "b"} {
		l.Heartbeat(&rpc.HeartbeatRequest{Node: w, Addr: w + ":1", MemoryMB: 1024, Warm: map[string]int{"f@1": 1}})
	}
	g, err := l.Grant(GrantRequest{Function: "f", Key: "f@1", MemoryMB: 128, Avoid: []string{"a"}}, 0)
	if err != nil || g.Worker != "b" {
		t.Fatalf("grant avoiding a: %+v, %v; want worker b", g, err)
	}
	if _, err := l.Grant(GrantRequest{Function: "f", MemoryMB: 128, Avoid: []string{"a", "b"}}, 0); !errors.Is(err, rpc.ErrTooManyRequests) {
		t.Fatalf("grant avoiding every worker: %v, want TooManyRequestsException", err)
	}
}
