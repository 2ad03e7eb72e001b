package scheduler

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"nimbus/rpc"
)

// TestLedgerProperties drives a ledger with random grants, releases,
// heartbeats, clock jumps, worker removals and leader changes, against a
// model of what it must hold, and checks after every step:
//   - the counts (slots by function and worker, memory, warm estimates,
//     the pool) equal the model's: nothing leaks, nothing is lost;
//   - live slots <= AccountLimit; a reserved function <= its reservation;
//     unreserved functions together <= AccountLimit - reservedTotal; a
//     worker's slots' memory <= its capacity;
//   - every Grant is granted or refused exactly when the model says, with
//     the model's reason, on the worker placement must choose (warm first,
//     then most free memory, by name; never a dead worker);
//   - RemoveWorker returns exactly the worker's slots; after Reset and the
//     workers' heartbeats the counts are what the workers run.
func TestLedgerProperties(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			newLedgerModel(t, seed).run(3000)
		})
	}
}

type simFunction struct {
	name     string
	memoryMB int
	reserved int
	has      bool
}

// simWorker is a worker as it really is (running, pool) and as the model
// says the ledger sees it (lastHB, known, idle).
type simWorker struct {
	name     string
	memoryMB int
	running  map[uint64]*simSlot // slots it runs: it reports them
	pool     map[string]int      // its idle warm sandboxes by key

	known  bool // the ledger has heard from it since it was removed or Reset
	lastHB time.Time
	idle   map[string]int // the ledger's warm estimate
}

type simSlot struct {
	id       uint64
	worker   *simWorker
	fn       string
	key      string
	memoryMB int
	granted  time.Time
}

type ledgerModel struct {
	t     *testing.T
	rng   *rand.Rand
	clock *fakeClock
	l     *Ledger

	limit, reservedTotal int
	fns                  []simFunction
	byName               map[string]simFunction
	workers              []*simWorker // sorted by name

	slots map[uint64]*simSlot // what the ledger holds
	class map[string]bool     // the pool each function's slots count against (true: its reservation)
	ops   map[string]int
}

func newLedgerModel(t *testing.T, seed uint64) *ledgerModel {
	m := &ledgerModel{
		t:     t,
		rng:   rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15)),
		clock: newFakeClock(),
		limit: 16,
		fns: []simFunction{
			{name: "r0", memoryMB: 128, reserved: 0, has: true},
			{name: "r2", memoryMB: 256, reserved: 2, has: true},
			{name: "r4", memoryMB: 128, reserved: 4, has: true},
			{name: "u128", memoryMB: 128},
			{name: "u512", memoryMB: 512},
			{name: "u1024", memoryMB: 1024},
		},
		byName: map[string]simFunction{},
		slots:  map[uint64]*simSlot{},
		class:  map[string]bool{},
		ops:    map[string]int{},
	}
	for _, f := range m.fns {
		m.byName[f.name] = f
		m.reservedTotal += f.reserved
	}
	m.l = NewLedger(LedgerOptions{AccountLimit: m.limit, WorkerTimeout: testTimeout, RecoveryGrace: testGrace, Now: m.clock.now})
	sizes := []int{512, 1024, 2048, 3072}
	for i := 0; i < 4; i++ {
		w := &simWorker{name: fmt.Sprint("w", i), memoryMB: sizes[m.rng.IntN(len(sizes))],
			running: map[uint64]*simSlot{}, pool: map[string]int{}, idle: map[string]int{}}
		m.workers = append(m.workers, w)
		m.heartbeat(w)
	}
	return m
}

func (m *ledgerModel) run(steps int) {
	for i := 0; i < steps; i++ {
		op := m.step()
		m.check(i, op)
		if m.t.Failed() {
			m.t.FailNow()
		}
	}
	if m.ops["granted"] == 0 || m.ops["throttled"] == 0 || m.ops["adopted"] == 0 || m.ops["dropped"] == 0 {
		m.t.Fatalf("the walk missed a path: %v", m.ops)
	}
}

// step takes one random step and names it.
func (m *ledgerModel) step() string {
	switch p := m.rng.IntN(100); {
	case p < 40:
		return m.grant()
	case p < 62:
		return m.release()
	case p < 84:
		// w3 heartbeats rarely, so it is often dead.
		w := m.workers[m.rng.IntN(len(m.workers))]
		if w.name != "w3" || m.rng.IntN(4) == 0 {
			m.heartbeat(w)
			return "heartbeat " + w.name
		}
		return "silence"
	case p < 97:
		d := time.Duration(m.rng.Int64N(int64(2 * time.Second)))
		m.clock.advance(d)
		m.ops["advance"]++
		return "advance " + d.String()
	case p < 99:
		w := m.workers[m.rng.IntN(len(m.workers))]
		m.removeWorker(w)
		return "remove " + w.name
	default:
		m.reset()
		return "reset"
	}
}

func (m *ledgerModel) count(fn string) int {
	n := 0
	for _, s := range m.slots {
		if s.fn == fn {
			n++
		}
	}
	return n
}

func (m *ledgerModel) used(w *simWorker) int {
	n := 0
	for _, s := range m.slots {
		if s.worker == w {
			n += s.memoryMB
		}
	}
	return n
}

// poolUse is the ledger's count of slots against the unreserved pool.
func (m *ledgerModel) poolUse() int {
	n := 0
	for _, s := range m.slots {
		if !m.class[s.fn] {
			n++
		}
	}
	return n
}

// place is placement as specified: warm first, then most free memory,
// ties by name, only live workers with the memory.
func (m *ledgerModel) place(key string, mem int) *simWorker {
	var warm, cold *simWorker
	warmFree, coldFree := -1, -1
	for _, w := range m.workers {
		if !w.known || m.clock.now().Sub(w.lastHB) >= testTimeout {
			continue
		}
		free := w.memoryMB - m.used(w)
		if free < mem {
			continue
		}
		if free > coldFree {
			cold, coldFree = w, free
		}
		if w.idle[key] > 0 && free > warmFree {
			warm, warmFree = w, free
		}
	}
	if warm != nil {
		return warm
	}
	return cold
}

func (m *ledgerModel) grant() string {
	t := m.t
	f := m.fns[m.rng.IntN(len(m.fns))]
	key := f.name + "@1"
	req := GrantRequest{Function: f.name, Key: key, MemoryMB: f.memoryMB, Reserved: f.reserved, HasReserved: f.has}
	m.class[f.name] = f.has

	var wantReason string
	var want *simWorker
	switch {
	case f.has && m.count(f.name) >= f.reserved:
		wantReason = rpc.ReasonReservedFunctionConcurrentInvocationLimit
	case !f.has && m.poolUse() >= m.limit-m.reservedTotal, len(m.slots) >= m.limit:
		wantReason = rpc.ReasonConcurrentInvocationLimitExceeded
	default:
		if want = m.place(key, f.memoryMB); want == nil {
			wantReason = rpc.ReasonConcurrentInvocationLimitExceeded
		}
	}

	g, err := m.l.Grant(req, m.reservedTotal)
	if wantReason != "" {
		m.ops["throttled"]++
		var e *rpc.Error
		if !errors.As(err, &e) || e.Code != rpc.CodeTooManyRequests || e.Reason != wantReason {
			t.Errorf("Grant(%s) = %+v, %v; want a throttle (%s)", f.name, g, err, wantReason)
		}
		return "grant " + f.name + ": throttled"
	}
	if err != nil {
		t.Errorf("Grant(%s): %v; want a slot on %s", f.name, err, want.name)
		return "grant " + f.name
	}
	m.ops["granted"]++
	if g.Worker != want.name {
		t.Errorf("Grant(%s) placed on %s, want %s", f.name, g.Worker, want.name)
		return "grant " + f.name
	}
	if _, dup := m.slots[g.SlotID]; dup {
		t.Errorf("slot id %d handed out twice", g.SlotID)
	}
	s := &simSlot{id: g.SlotID, worker: want, fn: f.name, key: key, memoryMB: f.memoryMB, granted: m.clock.now()}
	m.slots[s.id] = s
	if want.idle[key] > 0 {
		want.idle[key]--
	}
	if m.rng.IntN(100) >= 85 {
		return fmt.Sprintf("grant %s: %d on %s, lost", f.name, s.id, want.name)
	}
	want.running[s.id] = s // it reaches the worker
	if want.pool[key] > 0 {
		want.pool[key]-- // a warm start
	}
	return fmt.Sprintf("grant %s: %d on %s", f.name, s.id, want.name)
}

func (m *ledgerModel) release() string {
	if len(m.slots) == 0 {
		m.l.Release("w0", 42) // an unknown id: nothing
		return "release unknown"
	}
	ids := slices.Sorted(maps.Keys(m.slots))
	s := m.slots[ids[m.rng.IntN(len(ids))]]
	switch m.rng.IntN(10) {
	case 0: // the wrong worker: ignored
		m.l.Release(s.worker.name+"x", s.id)
		return "release on the wrong worker"
	case 1: // twice
		m.l.Release(s.worker.name, s.id, s.id)
	default:
		m.l.Release(s.worker.name, s.id)
	}
	m.ops["released"]++
	delete(m.slots, s.id)
	if s.key != "" {
		s.worker.idle[s.key]++
	}
	if rs, ok := s.worker.running[s.id]; ok {
		delete(s.worker.running, s.id)
		s.worker.pool[rs.key]++ // the sandbox goes back to the warm pool (an adopted slot's key is the worker's)
	}
	return fmt.Sprintf("release %d on %s", s.id, s.worker.name)
}

func (m *ledgerModel) heartbeat(w *simWorker) {
	now := m.clock.now()
	req := &rpc.HeartbeatRequest{Node: w.name, Addr: w.name + ":1", MemoryMB: w.memoryMB, Warm: maps.Clone(w.pool)}
	for _, id := range slices.Sorted(maps.Keys(w.running)) {
		s := w.running[id]
		req.Slots = append(req.Slots, rpc.SlotInfo{ID: id, Function: s.fn, MemoryMB: s.memoryMB})
	}
	m.l.Heartbeat(req)
	m.ops["heartbeat"]++

	w.known, w.lastHB = true, now
	for id, s := range w.running {
		if _, ok := m.slots[id]; !ok { // adopted: no key, granted now
			m.slots[id] = &simSlot{id: id, worker: w, fn: s.fn, memoryMB: s.memoryMB, granted: now}
			if _, ok := m.class[s.fn]; !ok {
				m.class[s.fn] = false
			}
			m.ops["adopted"]++
		}
	}
	transit := map[string]int{}
	for id, s := range m.slots {
		if s.worker != w || w.running[id] != nil {
			continue
		}
		if now.Sub(s.granted) > testTimeout {
			delete(m.slots, id) // lost on its way
			m.ops["dropped"]++
			continue
		}
		transit[s.key]++
	}
	w.idle = map[string]int{}
	for key, n := range w.pool {
		if n-transit[key] > 0 {
			w.idle[key] = n - transit[key]
		}
	}
}

func (m *ledgerModel) removeWorker(w *simWorker) {
	var want []uint64
	for id, s := range m.slots {
		if s.worker == w {
			want = append(want, id)
			delete(m.slots, id)
		}
	}
	slices.Sort(want)
	if got := m.l.RemoveWorker(w.name); !reflect.DeepEqual(got, want) {
		m.t.Errorf("RemoveWorker(%s) = %v, want %v", w.name, got, want)
	}
	m.ops["remove"]++
	// It restarts empty and heartbeats again later.
	w.known = false
	w.running = map[uint64]*simSlot{}
	w.pool = map[string]int{}
	w.idle = map[string]int{}
}

// reset is a leader change: the ledger starts empty and rebuilds itself
// from the heartbeats of the workers it knows.
func (m *ledgerModel) reset() {
	var known []string
	for _, w := range m.workers {
		if w.known {
			known = append(known, w.name)
		}
	}
	m.l.Reset(known)
	m.ops["reset"]++
	m.slots = map[uint64]*simSlot{}
	m.class = map[string]bool{}
	for _, w := range m.workers {
		w.known = false
		w.idle = map[string]int{}
	}
	if len(known) > 0 {
		if _, err := m.l.Grant(GrantRequest{Function: "u128", MemoryMB: 128}, m.reservedTotal); !errors.Is(err, ErrLedgerRecovering) {
			m.t.Errorf("Grant right after Reset(%v): %v, want ErrLedgerRecovering", known, err)
		}
	}
	for _, w := range m.workers {
		if slices.Contains(known, w.name) {
			m.heartbeat(w)
		}
	}
	if st := m.l.Stats(); st.Recovering {
		m.t.Error("still recovering after every known worker's heartbeat")
	}
	// What the ledger holds now is what the workers run.
	for _, w := range m.workers {
		for id := range w.running {
			if m.slots[id] == nil {
				m.t.Errorf("slot %d runs on %s but is not in the model after Reset", id, w.name)
			}
		}
	}
}

func (m *ledgerModel) check(i int, op string) {
	step := fmt.Sprintf("%d (%s)", i, op)
	t := m.t
	st := m.l.Stats()
	byFn := map[string]int{}
	for _, s := range m.slots {
		byFn[s.fn]++
	}
	if st.Slots != len(m.slots) || !reflect.DeepEqual(st.ByFunction, byFn) || st.Unreserved != m.poolUse() {
		t.Errorf("step %s: Slots %d, ByFunction %v, Unreserved %d; model %d, %v, %d",
			step, st.Slots, st.ByFunction, st.Unreserved, len(m.slots), byFn, m.poolUse())
	}
	for _, w := range m.workers {
		ws, ok := st.ByWorker[w.name]
		if ok != w.known {
			t.Errorf("step %s: worker %s known to the ledger: %v, model %v", step, w.name, ok, w.known)
			continue
		}
		if !ok {
			continue
		}
		inFlight, warm := 0, 0
		for _, s := range m.slots {
			if s.worker == w {
				inFlight++
			}
		}
		for _, n := range w.idle {
			warm += n
		}
		want := WorkerStats{InFlight: inFlight, MemoryUsedMB: m.used(w), MemoryMB: w.memoryMB, Warm: warm, LastHeartbeat: w.lastHB}
		if ws != want {
			t.Errorf("step %s: worker %s = %+v, model %+v", step, w.name, ws, want)
		}
		if ws.MemoryUsedMB > ws.MemoryMB {
			t.Errorf("step %s: worker %s uses %d MB of %d", step, w.name, ws.MemoryUsedMB, ws.MemoryMB)
		}
	}
	// The invariants, from the functions' real reservations.
	if st.Slots > m.limit {
		t.Errorf("step %s: %d slots over the limit %d", step, st.Slots, m.limit)
	}
	unreserved := 0
	for _, f := range m.fns {
		if f.has && byFn[f.name] > f.reserved {
			t.Errorf("step %s: %s has %d slots, reservation %d", step, f.name, byFn[f.name], f.reserved)
		}
		if !f.has {
			unreserved += byFn[f.name]
		}
	}
	if unreserved > m.limit-m.reservedTotal {
		t.Errorf("step %s: unreserved functions hold %d slots, pool %d", step, unreserved, m.limit-m.reservedTotal)
	}
}
