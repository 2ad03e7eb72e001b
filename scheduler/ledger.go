package scheduler

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"nimbus/rpc"
)

// The concurrency ledger: the leader's count of running invocations.
//
// A slot is one invocation running, or about to run, on a worker. The
// leader grants it before the invocation starts and the invoking node
// releases it when the invocation ends. The ledger is soft state: it lives
// only in the Raft leader's memory, is never replicated, and is rebuilt
// after an election from the workers' heartbeats (each lists the slots the
// worker is running). A sync invoke therefore never pays a Raft commit.
//
// Lifecycle of a slot, as the ledger sees it:
//
//	Grant ---------> granted --(the worker reports it)--> running
//	                    |                                    |
//	                    | not reported by a heartbeat        | Release, RemoveWorker,
//	                    | more than WorkerTimeout after      | or not reported by a
//	                    | the grant (it never arrived)       | heartbeat once WorkerTimeout
//	                    v                                    v   has passed since the grant
//	                  gone <------------------------------ gone
//
//	Heartbeat --(a reported slot the ledger lacks and has not seen end:
//	             the previous leader's, or one that reached its worker late)--> running (adopted)
//
// A heartbeat sent before a release but received after it must not adopt
// the finished slot again; ledger_ids.go says how the ledger tells such a
// slot from one it really lacks, without remembering every release.

// ErrLedgerRecovering is returned by Ledger.Grant after Reset until every
// worker the new leader knows of has sent a heartbeat, or the recovery grace
// has passed. Until then the ledger does not know what is running, so it
// grants nothing; the caller waits a little and retries.
var ErrLedgerRecovering = errors.New("scheduler: concurrency ledger is recovering after a leader change; retry shortly")

// Defaults of LedgerOptions.
const (
	DefaultRecoveryGrace = 3 * time.Second
	DefaultWorkerTimeout = 5 * time.Second
)

// LedgerOptions configures a Ledger. Zero values mean the defaults.
type LedgerOptions struct {
	// AccountLimit is the most slots granted at once, all functions
	// together (default DefaultAccountLimit, 1000).
	AccountLimit int
	// RecoveryGrace is how long, after Reset, Grant waits for every known
	// worker's heartbeat before granting anyway (default 3s).
	RecoveryGrace time.Duration
	// WorkerTimeout: a worker with no heartbeat for this long gets no new
	// slots; a granted slot its worker has not reported this long after the
	// grant is dropped; the ledger remembers a few ids this long (see
	// ledger_ids.go) (default 5s).
	WorkerTimeout time.Duration
	// Now is the clock, for tests (default time.Now).
	Now func() time.Time
}

// GrantRequest asks for one slot.
type GrantRequest struct {
	// Function is the function's name: the unit of reserved concurrency.
	Function string
	// Key is name@revision, the key of the function's warm sandboxes on
	// workers (empty: no warm placement).
	Key string
	// MemoryMB is the function's memory: what the slot takes of its
	// worker's capacity.
	MemoryMB int
	// Reserved is the function's reserved concurrency when HasReserved (as
	// FSM.Reserved returns them). A function with a reservation draws only
	// from it, and Reserved 0 throttles it always.
	Reserved    int
	HasReserved bool
	// Avoid lists workers not to place on: the frontend could not reach
	// them with an earlier grant of the same invocation.
	Avoid []string
}

// Grant is a slot granted on a worker. The invoking node runs the
// invocation there and releases the slot with Release(Worker, SlotID).
type Grant struct {
	SlotID     uint64
	Worker     string
	WorkerAddr string
}

// LedgerStats is a copy of the ledger's counts.
type LedgerStats struct {
	// Slots is the number of live slots (granted, running or adopted).
	Slots int
	// Unreserved is the number of those slots counted against the
	// unreserved pool.
	Unreserved int
	// Recovering is true while Grant returns ErrLedgerRecovering.
	Recovering bool
	// ByFunction counts live slots by function name (functions with none
	// are absent).
	ByFunction map[string]int
	// ByWorker holds every worker the ledger knows, live or not.
	ByWorker map[string]WorkerStats
}

// WorkerStats is one worker as the ledger sees it.
type WorkerStats struct {
	InFlight      int // live slots on the worker
	MemoryUsedMB  int // the memory of those slots
	MemoryMB      int // capacity, from the last heartbeat
	Warm          int // idle warm sandboxes, as the ledger estimates them (see Ledger)
	LastHeartbeat time.Time
}

// Ledger is the leader's in-memory concurrency ledger: which slots are
// live, on which worker, for which function, and which workers are alive
// with how much memory and which warm sandboxes. See the lifecycle above.
//
// Rules Grant enforces (each checked before a slot is taken, so a grant
// never breaks one; heartbeats may report more, e.g. after the limit was
// lowered, and then Grant refuses until enough slots end):
//   - live slots <= AccountLimit;
//   - a function with a reservation R has at most R slots, and never takes
//     a slot from the unreserved pool;
//   - the slots of functions without a reservation number at most
//     AccountLimit - reservedTotal (the unreserved pool);
//   - a worker's slots' memory <= its capacity; a worker with no heartbeat
//     for WorkerTimeout gets no slot.
//
// Which pool a function's slots count against follows what the last
// GrantRequest for it said (HasReserved): a function that gains or loses a
// reservation moves its live slots with it on its next grant. Slots adopted
// from a heartbeat for a function not granted since Reset count against the
// unreserved pool, the safe side, until its next grant.
//
// Warm estimate: a heartbeat's warm counts, minus the slots of each key
// granted on that worker and not yet reported running, are the idle warm
// sandboxes. A grant placed on one takes it (so two grants never count on
// the same sandbox); a release gives one back (the sandbox goes idle again
// on the worker, unless it died: the next heartbeat corrects the guess).
//
// Locking: one mutex, mu, guards every field below it; each method takes it
// once and holds it for O(workers) work in Grant, O(ids) in Release and
// O(the worker's slots) in Heartbeat and RemoveWorker. The clock is read
// before mu is taken. Nothing it returns shares memory with it. All
// methods may be called from any goroutine.
type Ledger struct {
	now           func() time.Time
	recoveryGrace time.Duration
	workerTimeout time.Duration

	mu           sync.Mutex
	accountLimit int
	lastID       uint64  // the last slot id handed out or adopted
	issued       []idRun // the ids Grant handed out since Reset, in runs
	slots        map[uint64]*slot
	functions    map[string]*functionUse // kept at count 0: remembers the pool
	unreserved   int                     // slots of functions with !reserved
	workers      map[string]*workerState
	order        []*workerState // workers sorted by name: placement's order

	// Exceptions to the adoption rule (ledger_ids.go): released ids the
	// ledger did not hand out, and handed-out ids it dropped.
	released agedIDs
	lost     agedIDs

	recovering bool
	recoverBy  time.Time
	awaiting   map[string]struct{} // known workers not heard from since Reset
}

// slot is one live slot. Its fields do not change after it is created.
type slot struct {
	id       uint64
	worker   *workerState
	fn       *functionUse
	key      string // "" for an adopted slot (its revision is unknown)
	memoryMB int
	granted  time.Time // or adopted
}

// functionUse counts one function's live slots.
type functionUse struct {
	name     string
	count    int
	reserved bool // its slots count against its reservation, not the pool
}

// workerState is one worker. idle and slots are the ledger's own maps.
type workerState struct {
	name          string
	addr          string
	memoryMB      int // capacity
	usedMB        int // sum of its slots' memory
	lastHeartbeat time.Time
	slots         map[uint64]*slot
	idle          map[string]int // key -> estimated idle warm sandboxes (> 0)
}

// NewLedger returns an empty ledger that grants at once: a node that has
// just become leader calls Reset to wait for the workers first.
func NewLedger(opts LedgerOptions) *Ledger {
	l := &Ledger{
		now:           opts.Now,
		recoveryGrace: opts.RecoveryGrace,
		workerTimeout: opts.WorkerTimeout,
		accountLimit:  opts.AccountLimit,
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.recoveryGrace <= 0 {
		l.recoveryGrace = DefaultRecoveryGrace
	}
	if l.workerTimeout <= 0 {
		l.workerTimeout = DefaultWorkerTimeout
	}
	if l.accountLimit <= 0 {
		l.accountLimit = DefaultAccountLimit
	}
	l.clear(l.now())
	return l
}

// clear empties the ledger. Slot ids go on from the clock's nanoseconds (see
// ledger_ids.go). The caller holds mu, or owns l.
func (l *Ledger) clear(now time.Time) {
	if n := now.UnixNano(); n > 0 && uint64(n) > l.lastID {
		l.lastID = uint64(n)
	}
	l.slots = make(map[uint64]*slot)
	l.functions = make(map[string]*functionUse)
	l.unreserved = 0
	l.workers = make(map[string]*workerState)
	l.order = nil
	l.issued = nil
	l.released = agedIDs{}
	l.lost = agedIDs{}
	l.recovering = false
	l.awaiting = nil
}

// Reset clears the ledger on becoming leader. Until every worker in
// knownWorkers has sent a heartbeat (or been removed), or RecoveryGrace has
// passed, Grant returns ErrLedgerRecovering; heartbeats meanwhile rebuild
// the counts from what the workers report.
func (l *Ledger) Reset(knownWorkers []string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear(now)
	if len(knownWorkers) == 0 {
		return
	}
	l.recovering = true
	l.recoverBy = now.Add(l.recoveryGrace)
	l.awaiting = make(map[string]struct{}, len(knownWorkers))
	for _, name := range knownWorkers {
		l.awaiting[name] = struct{}{}
	}
}

// SetAccountLimit changes the account limit (n <= 0 means the default).
// Lowering it below the live slots refuses grants until enough end.
func (l *Ledger) SetAccountLimit(n int) {
	if n <= 0 {
		n = DefaultAccountLimit
	}
	l.mu.Lock()
	l.accountLimit = n
	l.mu.Unlock()
}

// Grant takes a slot for one invocation of req.Function, or fails:
//   - ErrLedgerRecovering while the ledger recovers (see Reset);
//   - *rpc.Error TooManyRequestsException with Reason
//     ReasonReservedFunctionConcurrentInvocationLimit when the function has
//     a reservation and all of it is in use (always when it is 0);
//   - *rpc.Error TooManyRequestsException with Reason
//     ReasonConcurrentInvocationLimitExceeded when the unreserved pool
//     (AccountLimit - reservedTotal) or the account limit is exhausted, or
//     no live worker has req.MemoryMB free;
//   - *rpc.Error InvalidParameterValueException without a function name.
//
// reservedTotal is FSM.ReservedTotal. Placement is placeWorker's.
func (l *Ledger) Grant(req GrantRequest, reservedTotal int) (Grant, error) {
	if req.Function == "" {
		return Grant{}, rpc.Errorf(rpc.CodeInvalidParameterValue, "no function name to grant a slot to")
	}
	mem := max(req.MemoryMB, 0)
	now := l.now()

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.recovering && !l.recoveredLocked(now) {
		return Grant{}, ErrLedgerRecovering
	}
	fu := l.functions[req.Function]
	if fu == nil {
		fu = &functionUse{name: req.Function, reserved: req.HasReserved}
		l.functions[req.Function] = fu
	} else if fu.reserved != req.HasReserved {
		// The reservation came or went: its slots change pools.
		if req.HasReserved {
			l.unreserved -= fu.count
		} else {
			l.unreserved += fu.count
		}
		fu.reserved = req.HasReserved
	}

	if req.HasReserved {
		if fu.count >= req.Reserved {
			return Grant{}, throttled(rpc.ReasonReservedFunctionConcurrentInvocationLimit)
		}
	} else if l.unreserved >= l.accountLimit-min(max(reservedTotal, 0), l.accountLimit) {
		return Grant{}, throttled(rpc.ReasonConcurrentInvocationLimitExceeded)
	}
	if len(l.slots) >= l.accountLimit {
		return Grant{}, throttled(rpc.ReasonConcurrentInvocationLimitExceeded)
	}
	w := l.placeWorker(req.Key, mem, req.Avoid, now)
	if w == nil {
		return Grant{}, &rpc.Error{
			Code:    rpc.CodeTooManyRequests,
			Message: "Rate Exceeded. No worker has the function's memory free.",
			Reason:  rpc.ReasonConcurrentInvocationLimitExceeded,
		}
	}

	s := &slot{id: l.nextSlotID(), worker: w, fn: fu, key: req.Key, memoryMB: mem, granted: now}
	if req.Key != "" {
		if n := w.idle[req.Key]; n > 1 {
			w.idle[req.Key] = n - 1
		} else if n == 1 {
			delete(w.idle, req.Key)
		}
	}
	l.addSlot(s)
	return Grant{SlotID: s.id, Worker: w.name, WorkerAddr: w.addr}, nil
}

func throttled(reason string) error {
	return &rpc.Error{Code: rpc.CodeTooManyRequests, Message: "Rate Exceeded.", Reason: reason}
}

// recoveredLocked ends recovery once every known worker has been heard from
// or the grace has passed, and reports whether it has ended.
func (l *Ledger) recoveredLocked(now time.Time) bool {
	if len(l.awaiting) == 0 || !now.Before(l.recoverBy) {
		l.recovering = false
		l.awaiting = nil
	}
	return !l.recovering
}

// addSlot counts s everywhere. The caller holds mu.
func (l *Ledger) addSlot(s *slot) {
	l.slots[s.id] = s
	s.worker.slots[s.id] = s
	s.worker.usedMB += s.memoryMB
	s.fn.count++
	if !s.fn.reserved {
		l.unreserved++
	}
}

// removeSlot uncounts s everywhere. The caller holds mu.
func (l *Ledger) removeSlot(s *slot) {
	delete(l.slots, s.id)
	delete(s.worker.slots, s.id)
	s.worker.usedMB -= s.memoryMB
	s.fn.count--
	if !s.fn.reserved {
		l.unreserved--
	}
}

// Release frees slots of worker. Ids the ledger does not hold on that
// worker are ignored, so releasing twice is harmless. A release that
// arrives before the slot's adoption (at a new leader, before the worker's
// first heartbeat) is remembered, so the heartbeat does not adopt it.
func (l *Ledger) Release(worker string, ids ...uint64) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if s := l.slots[id]; s != nil {
			if s.worker.name != worker {
				continue
			}
			if s.key != "" {
				s.worker.idle[s.key]++
			}
			l.removeSlot(s)
		}
		l.noteReleased(id, now)
	}
}

// Heartbeat records a worker's report: it creates or updates the worker
// (address, capacity, warm sandboxes, time of the heartbeat) and reconciles
// its slots with the report:
//   - a slot the worker reports and the ledger lacks is adopted (that is how
//     a new leader learns what runs), unless the ledger knows it has ended
//     (ledger_ids.go);
//   - a slot the ledger holds on the worker, granted more than
//     WorkerTimeout ago and not reported, is dropped (it never arrived, or
//     it ended and its release was lost);
//   - a slot granted more recently and not reported is kept: the worker may
//     not have seen it yet.
//
// SlotInfo.Function is the function's name (as GrantRequest.Function).
func (l *Ledger) Heartbeat(hb *rpc.HeartbeatRequest) {
	if hb == nil || hb.Node == "" {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.workers[hb.Node]
	if w == nil {
		w = &workerState{name: hb.Node, slots: make(map[uint64]*slot)}
		l.workers[w.name] = w
		i, _ := slices.BinarySearchFunc(l.order, w.name, func(x *workerState, name string) int {
			return strings.Compare(x.name, name)
		})
		l.order = slices.Insert(l.order, i, w)
	}
	w.addr = hb.Addr
	w.memoryMB = max(hb.MemoryMB, 0)
	w.lastHeartbeat = now
	delete(l.awaiting, w.name)

	reported := make(map[uint64]struct{}, len(hb.Slots))
	for _, si := range hb.Slots {
		reported[si.ID] = struct{}{}
		if _, known := l.slots[si.ID]; known || si.Function == "" || !l.adoptable(si.ID, now) {
			continue // known (here, or on another worker: the ledger's stands), or ended
		}
		fu := l.functions[si.Function]
		if fu == nil {
			fu = &functionUse{name: si.Function} // the unreserved pool, the safe side
			l.functions[si.Function] = fu
		}
		l.addSlot(&slot{id: si.ID, worker: w, fn: fu, memoryMB: max(si.MemoryMB, 0), granted: now})
		l.noteAdopted(si.ID)
	}

	var transit map[string]int // keys of granted slots not yet running
	for id, s := range w.slots {
		if _, ok := reported[id]; ok {
			continue
		}
		if now.Sub(s.granted) > l.workerTimeout {
			l.removeSlot(s)
			l.noteLost(id, now)
			continue
		}
		if s.key != "" {
			if transit == nil {
				transit = make(map[string]int)
			}
			transit[s.key]++
		}
	}
	w.idle = make(map[string]int, len(hb.Warm))
	for key, n := range hb.Warm {
		if n -= transit[key]; n > 0 && key != "" {
			w.idle[key] = n
		}
	}
}

// RemoveWorker forgets a worker that died or left: its slots are freed and
// their ids returned, in increasing order (nil if it held none). A worker
// that heartbeats again later comes back as new.
func (l *Ledger) RemoveWorker(name string) []uint64 {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.awaiting, name)
	w := l.workers[name]
	if w == nil {
		return nil
	}
	var ids []uint64
	for id, s := range w.slots {
		ids = append(ids, id)
		l.removeSlot(s)
		l.noteLost(id, now)
	}
	slices.Sort(ids)
	delete(l.workers, name)
	l.order = slices.DeleteFunc(l.order, func(x *workerState) bool { return x == w })
	return ids
}

// Stats returns a copy of the ledger's counts.
func (l *Ledger) Stats() LedgerStats {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := LedgerStats{
		Slots:      len(l.slots),
		Unreserved: l.unreserved,
		Recovering: l.recovering && !l.recoveredLocked(now),
		ByFunction: make(map[string]int),
		ByWorker:   make(map[string]WorkerStats, len(l.workers)),
	}
	for name, fu := range l.functions {
		if fu.count > 0 {
			st.ByFunction[name] = fu.count
		}
	}
	for name, w := range l.workers {
		warm := 0
		for _, n := range w.idle {
			warm += n
		}
		st.ByWorker[name] = WorkerStats{
			InFlight:      len(w.slots),
			MemoryUsedMB:  w.usedMB,
			MemoryMB:      w.memoryMB,
			Warm:          warm,
			LastHeartbeat: w.lastHeartbeat,
		}
	}
	return st
}
