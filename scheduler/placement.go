package scheduler

import (
	"slices"
	"time"
)

// Placement: which worker a granted slot goes to.
//
// Only live workers (a heartbeat less than WorkerTimeout ago), not in the
// request's Avoid list, with the
// slot's memory free (capacity minus the memory of their slots) are
// candidates. Among them:
//
//  1. a worker with an idle warm sandbox of the slot's key that no other
//     granted slot already counts on (see Ledger's warm estimate): a warm
//     start beats everything else;
//  2. otherwise, the worker with the most free memory, which spreads load
//     and keeps room for large functions.
//
// Among warm workers the one with the most free memory wins too. Ties go to
// the first name in byte order, so the same ledger state always places the
// same way.

// placeWorker returns the worker for a slot of key needing memMB, or nil if
// no live worker has the memory. It is O(workers). The caller holds mu.
func (l *Ledger) placeWorker(key string, memMB int, avoid []string, now time.Time) *workerState {
	var warm, cold *workerState
	warmFree, coldFree := -1, -1
	for _, w := range l.order { // by name: the first of equals wins
		if now.Sub(w.lastHeartbeat) >= l.workerTimeout || slices.Contains(avoid, w.name) {
			continue
		}
		free := w.memoryMB - w.usedMB
		if free < memMB {
			continue
		}
		if free > coldFree {
			cold, coldFree = w, free
		}
		if key != "" && w.idle[key] > 0 && free > warmFree {
			warm, warmFree = w, free
		}
	}
	if warm != nil {
		return warm
	}
	return cold
}
