package node

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"nimbus/rpc"
)

// otherFunctions is the series that functions past the label limit fold
// into, so that the number of series stays bounded.
const otherFunctions = "other"

// fnCounters are one function's numbers on this node since it started.
// Every field is atomic: the invoke path only adds.
type fnCounters struct {
	invocations, errors, throttles, coldStarts atomic.Uint64
	concurrent                                 atomic.Int64
	// peak is the most concurrent invocations since the last window sample.
	peak     atomic.Int64
	duration histo
	initDur  histo

	// Asynchronous invocations (Lambda's AsyncEventsReceived,
	// AsyncEventsDropped, AsyncEventAge) and queue triggers' batches.
	asyncReceived, asyncDropped atomic.Uint64
	asyncAge                    histo
	// Outcomes of ended events that could not be delivered: to the
	// dead-letter queue (Lambda's DeadLetterErrors), to an on-success or
	// on-failure destination (DestinationDeliveryFailures).
	deadLetterErrors, destinationFailures atomic.Uint64
	batchSizes                            countHisto
}

// batchBuckets are the upper bounds of countHisto's buckets: a queue
// trigger's batch holds 1 to 10,000 messages.
var batchBuckets = []float64{1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000}

// countHisto is a histogram of counts over batchBuckets, one more bucket
// for larger values, and the sum.
type countHisto struct {
	buckets [11]atomic.Uint64
	sum     atomic.Uint64
}

func (h *countHisto) observe(n int) {
	h.buckets[sort.SearchFloat64s(batchBuckets, float64(n))].Add(1)
	h.sum.Add(uint64(n))
}

// histo is a histogram over rpc.DurationBucketsMs, one more bucket for
// larger values, and the sum in microseconds.
type histo struct {
	buckets [20]atomic.Uint64
	sumUs   atomic.Uint64
}

func (h *histo) observe(d time.Duration) {
	ms := float64(d) / float64(time.Millisecond)
	i := sort.SearchFloat64s(rpc.DurationBucketsMs, ms) // first bound >= ms
	h.buckets[i].Add(1)
	h.sumUs.Add(uint64(d / time.Microsecond))
}

func (h *histo) counts() []uint64 {
	out := make([]uint64, len(h.buckets))
	for i := range h.buckets {
		out[i] = h.buckets[i].Load()
	}
	return out
}

func (c *fnCounters) running(delta int64) {
	n := c.concurrent.Add(delta)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// fnSample is a function's cumulative numbers at one moment, and its peak
// concurrency in the minute before it.
type fnSample struct {
	invocations, errors, throttles, coldStarts uint64
	peak                                       int64
	buckets                                    []uint64
}

func (c *fnCounters) sample(resetPeak bool) fnSample {
	s := fnSample{
		invocations: c.invocations.Load(),
		errors:      c.errors.Load(),
		throttles:   c.throttles.Load(),
		coldStarts:  c.coldStarts.Load(),
		buckets:     c.duration.counts(),
	}
	if resetPeak {
		s.peak = c.peak.Swap(c.concurrent.Load())
	} else {
		s.peak = c.peak.Load()
	}
	return s
}

// fnKey names one series of a function's numbers: the function, and,
// where they exist, the version that ran (Lambda's ExecutedVersion:
// "$LATEST" or a number) and the alias the caller named. A function's
// numbers are the sum of its keys' (PromQL: sum by (function)). The
// function's own key (no version, no alias) holds what has no version:
// concurrency, throttles of unqualified calls, the async and trigger
// numbers.
type fnKey struct {
	function, version, alias string
}

// invokedKey is the key an invocation of fn through qualifier counts
// under, once version (the one that ran; "" when none ran) is known: a
// numeric qualifier or $LATEST names the version, any other names an
// alias.
func invokedKey(fn, qualifier, version string) fnKey {
	k := fnKey{function: fn, version: version}
	switch {
	case qualifier == "" || qualifier == rpc.LatestVersion:
	case isVersionNumber(qualifier):
		if k.version == "" {
			k.version = qualifier
		}
	default:
		k.alias = qualifier
	}
	return k
}

func isVersionNumber(q string) bool {
	if q == "" || len(q) > 10 {
		return false
	}
	for _, c := range q {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// fnStats holds the counters of every function this node has counted, at
// most limit series (keys) in all (the rest share otherFunctions), and a
// ring of one-minute samples for windows up to rpc.MaxMetricsWindowSec. mu
// guards the maps and the ring; the counters are atomic.
type fnStats struct {
	limit int
	start time.Time

	mu      sync.RWMutex
	by      map[fnKey]*fnCounters
	samples []windowSample // oldest first, at most windowSamples
}

type windowSample struct {
	at time.Time
	by map[fnKey]fnSample
}

const windowSamples = rpc.MaxMetricsWindowSec / 60

func newFnStats(limit int, now time.Time) *fnStats {
	if limit <= 0 {
		limit = 1000
	}
	return &fnStats{limit: limit, start: now, by: map[fnKey]*fnCounters{}}
}

// get returns the counters of a function's own key.
func (s *fnStats) get(name string) *fnCounters { return s.getKey(fnKey{function: name}) }

// getKey returns the counters of a key, creating them (or folding it into
// otherFunctions past the limit).
func (s *fnStats) getKey(k fnKey) *fnCounters {
	s.mu.RLock()
	c := s.by[k]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.by[k]; c != nil {
		return c
	}
	if len(s.by) >= s.limit {
		k = fnKey{function: otherFunctions}
		if c = s.by[k]; c != nil {
			return c
		}
	}
	c = &fnCounters{}
	s.by[k] = c
	return c
}

// forget drops a deleted function's series, every version and alias.
func (s *fnStats) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.by {
		if k.function == name {
			delete(s.by, k)
		}
	}
	for _, w := range s.samples {
		for k := range w.by {
			if k.function == name {
				delete(w.by, k)
			}
		}
	}
}

// keys returns the series counted, sorted by function, version, alias.
func (s *fnStats) keys() []fnKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]fnKey, 0, len(s.by))
	for k := range s.by {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.function != b.function {
			return a.function < b.function
		}
		if a.version != b.version {
			return a.version < b.version
		}
		return a.alias < b.alias
	})
	return out
}

// names returns the functions counted, sorted.
func (s *fnStats) names() []string {
	var out []string
	for _, k := range s.keys() {
		if len(out) == 0 || out[len(out)-1] != k.function {
			out = append(out, k.function)
		}
	}
	return out
}

func (s *fnStats) counters(k fnKey) *fnCounters {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.by[k]
}

// tick records a sample of every function (once a minute).
func (s *fnStats) tick(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := windowSample{at: now, by: make(map[fnKey]fnSample, len(s.by))}
	for k, c := range s.by {
		w.by[k] = c.sample(true)
	}
	s.samples = append(s.samples, w)
	if len(s.samples) > windowSamples {
		s.samples = s.samples[len(s.samples)-windowSamples:]
	}
}

// window returns a function's numbers over the last since (0: since the
// node started), as this node counted them, every version and alias
// summed.
func (s *fnStats) window(name string, since time.Duration, now time.Time) *rpc.FunctionMetrics {
	out := &rpc.FunctionMetrics{FunctionName: name, SinceSec: int(since / time.Second), DurationBuckets: make([]uint64, len(rpc.DurationBucketsMs)+1)}
	var from time.Time
	if since > 0 {
		from = now.Add(-since)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k, c := range s.by {
		if k.function != name {
			continue
		}
		cur := c.sample(false)
		var base fnSample
		peak := cur.peak
		// The newest sample at or before the window's start is its base;
		// the peaks of the samples inside the window count.
		for _, w := range s.samples {
			if since > 0 && !w.at.After(from) {
				base = w.by[k]
				continue
			}
			if p := w.by[k].peak; p > peak {
				peak = p
			}
		}
		out.Invocations += cur.invocations - base.invocations
		out.Errors += cur.errors - base.errors
		out.Throttles += cur.throttles - base.throttles
		out.ColdStarts += cur.coldStarts - base.coldStarts
		// Concurrency is counted under the function's own key alone.
		if k.version == "" && k.alias == "" {
			out.MaxConcurrency = peak
		}
		for i := range out.DurationBuckets {
			b := cur.buckets[i]
			if base.buckets != nil {
				b -= base.buckets[i]
			}
			out.DurationBuckets[i] += b
			out.DurationCount += b
		}
	}
	return out
}
