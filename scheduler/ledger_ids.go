package scheduler

import (
	"sort"
	"time"
)

// Slot ids, and which reported slots a heartbeat adopts.
//
// A heartbeat lists the slots a worker runs. A listed slot the ledger does
// not hold is one of:
//
//	(a) a slot it never knew: granted by a previous leader (or by this
//	    ledger before its last Reset). It runs: adopt it.
//	(b) a slot it handed out and has released since: the heartbeat was sent
//	    before the release and received after it. It has ended: do not.
//	(c) a slot it handed out and then dropped (unreported past
//	    WorkerTimeout: the grant reached the worker late) or freed with
//	    RemoveWorker (the worker was thought dead). It runs: adopt it.
//
// The ledger tells them apart without remembering every release. The ids
// Grant hands out increase, so they are a few runs of consecutive numbers
// (issued; a new run starts only when an adopted id pushes the counter
// forward). An issued id the ledger no longer holds is (b), unless it is in
// lost (c). An id not issued is (a), unless it is in released: a foreign
// slot released before or after its adoption (only slots that ran across a
// leader change are foreign, so released stays small). released and lost
// remember an id for at least WorkerTimeout, at most twice that, which is
// how late a heartbeat may be.
//
// Ids start from the clock's nanoseconds at Reset, so that a new leader's
// ids do not meet the ones its predecessor handed out (which workers may
// still report) unless the two clocks are further apart than the
// predecessor's whole term; an adopted id past the counter moves the
// counter past it too.

// idRun is the ids first..last, all handed out by Grant.
type idRun struct{ first, last uint64 }

// nextSlotID hands out the next id. The caller holds mu.
func (l *Ledger) nextSlotID() uint64 {
	l.lastID++
	if n := len(l.issued); n > 0 && l.issued[n-1].last+1 == l.lastID {
		l.issued[n-1].last = l.lastID
	} else {
		l.issued = append(l.issued, idRun{l.lastID, l.lastID})
	}
	return l.lastID
}

// isIssued reports whether Grant handed out id since the last Reset.
func (l *Ledger) isIssued(id uint64) bool {
	i := sort.Search(len(l.issued), func(i int) bool { return l.issued[i].last >= id })
	return i < len(l.issued) && l.issued[i].first <= id
}

// adoptable reports whether a reported slot the ledger does not hold runs.
func (l *Ledger) adoptable(id uint64, now time.Time) bool {
	if l.isIssued(id) {
		return l.lost.has(id, now, l.workerTimeout)
	}
	return !l.released.has(id, now, l.workerTimeout)
}

// noteAdopted records the adoption of id: later ids go past it. (If id was
// lost, it stays in lost until its release removes it.)
func (l *Ledger) noteAdopted(id uint64) {
	l.lastID = max(l.lastID, id)
}

// noteReleased records a release of id, whether the ledger held it or not.
func (l *Ledger) noteReleased(id uint64, now time.Time) {
	if l.isIssued(id) {
		l.lost.remove(id)
		return
	}
	l.released.add(id, now, l.workerTimeout)
}

// noteLost records that the ledger freed a slot that may still run.
func (l *Ledger) noteLost(id uint64, now time.Time) {
	if l.isIssued(id) {
		l.lost.add(id, now, l.workerTimeout)
	}
}

// agedIDs remembers ids for at least ttl and at most twice that, in two
// generations: an id added to cur is dropped when cur, then prev, has been
// replaced, each replacement ttl after the one before.
type agedIDs struct {
	cur, prev map[uint64]struct{}
	since     time.Time // when cur began
}

func (a *agedIDs) rotate(now time.Time, ttl time.Duration) {
	if now.Sub(a.since) < ttl {
		return
	}
	if now.Sub(a.since) >= 2*ttl {
		a.prev = nil // cur is old enough too
	} else {
		a.prev = a.cur
	}
	a.cur, a.since = nil, now
}

func (a *agedIDs) add(id uint64, now time.Time, ttl time.Duration) {
	a.rotate(now, ttl)
	if a.cur == nil {
		a.cur = make(map[uint64]struct{})
	}
	a.cur[id] = struct{}{}
}

func (a *agedIDs) has(id uint64, now time.Time, ttl time.Duration) bool {
	a.rotate(now, ttl)
	if _, ok := a.cur[id]; ok {
		return true
	}
	_, ok := a.prev[id]
	return ok
}

func (a *agedIDs) remove(id uint64) {
	if len(a.cur) > 0 {
		delete(a.cur, id)
	}
	if len(a.prev) > 0 {
		delete(a.prev, id)
	}
}
