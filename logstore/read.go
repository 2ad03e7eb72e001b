package logstore

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"nimbus/rpc"
)

// Limits of one Read.
const (
	DefaultReadLimit = 1000
	MaxReadLimit     = 10000
	// maxReadBytes bounds the lines of one response (counting
	// eventOverhead per event); a response holds at least one event.
	maxReadBytes = 4 << 20
	// maxScan bounds the time one Read spends scanning; past it the answer
	// says More and the caller asks again from Next.
	maxScan = 2 * time.Second
	// clockSkew is the margin between a worker's clock (events' times)
	// and a server's (the time a batch was stored) that a time range
	// allows for when it picks where to start scanning.
	clockSkew = 5 * time.Second
	// lateBatch is how long after an event its batch may have been stored
	// (a worker that buffered through an outage) and still count for an
	// UntilMs: the scan stops at batches stored later than that.
	lateBatch = time.Minute
	// visibleWait is how long a long-poll woken by a new batch keeps
	// looking for it in the stream (the wake-up follows the store's
	// acknowledgement, but a read may reach a replica a moment behind).
	visibleWait = 2 * time.Second
	// settleMax is how long a Read waits for this node's own unpublished
	// lines of the function.
	settleMax = 500 * time.Millisecond
)

// Read returns the events of req.FunctionName after the cursor req.After
// (0: from the oldest kept, or from SinceMs) that fall in [SinceMs,
// UntilMs], belong to RequestID when set and match FilterPattern, in the
// order the store keeps them: at most Limit (0 means 1000, more than 10000
// means 10000) and about 4 MiB. Next is the cursor to ask from next time:
// the last event returned, or the last one looked at when none matched.
// Cursors are the store's sequence, the same on every node.
//
// When there is nothing and WaitMs > 0, Read waits for new lines up to
// WaitMs. A cursor whose lines retention deleted resumes from the oldest
// line kept, with Expired set.
func (s *Store) Read(ctx context.Context, req *rpc.ReadLogsRequest) (*rpc.ReadLogsResponse, error) {
	if req == nil {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "missing request")
	}
	if err := checkName(req.FunctionName); err != nil {
		return nil, err
	}
	if req.SinceMs != 0 && req.UntilMs != 0 && req.SinceMs > req.UntilMs {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "the start time is after the end time")
	}
	filter, err := ParseFilter(req.FilterPattern)
	if err != nil {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "%v", err)
	}
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	limit = min(limit, MaxReadLimit)
	js, err := s.jetStream()
	if err != nil {
		return nil, err
	}
	s.settle(req.FunctionName, settleMax)
	sc := &scan{
		fn: req.FunctionName, after: req.After, since: req.SinceMs, until: req.UntilMs,
		requestID: req.RequestID, filter: filter, limit: limit,
	}

	var (
		sub       *nats.Subscription
		wake      chan *nats.Msg
		timer     *time.Timer
		pollUntil time.Time
	)
	defer func() {
		if sub != nil {
			sub.Unsubscribe()
		}
	}()
	for {
		res, err := sc.run(ctx, js)
		if err != nil {
			return nil, err
		}
		if len(res.Events) > 0 || req.WaitMs <= 0 || res.More {
			return res, nil
		}
		sc.after = res.Next
		if sub == nil {
			// Subscribe, then look once more: a batch stored between the
			// scan and the subscription is not missed.
			s.conn.RLock()
			nc := s.nc
			s.conn.RUnlock()
			wake = make(chan *nats.Msg, 64)
			if sub, err = nc.ChanSubscribe(wakeSubjectOf(req.FunctionName), wake); err != nil {
				return nil, rpc.Errorf(rpc.CodeService, "log store: %v", err)
			}
			timer = time.NewTimer(time.Duration(req.WaitMs) * time.Millisecond)
			defer timer.Stop()
			continue
		}
		var poll <-chan time.Time
		if time.Now().Before(pollUntil) {
			poll = time.After(10 * time.Millisecond)
		}
		select {
		case <-wake:
			for len(wake) > 0 {
				<-wake
			}
			pollUntil = time.Now().Add(visibleWait)
		case <-poll:
		case <-timer.C:
			res.Events = nil
			return res, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// scan is one Read's position and criteria.
type scan struct {
	fn           string
	after        uint64
	since, until int64
	requestID    string
	filter       *Filter
	limit        int
}

// run reads from sc.after once, without waiting.
func (sc *scan) run(ctx context.Context, js jetstream.JetStream) (*rpc.ReadLogsResponse, error) {
	resp := &rpc.ReadLogsResponse{Next: sc.after}
	st, err := streamInfo(ctx, js, sc.fn)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return resp, nil // nothing logged yet
	}
	if err != nil {
		return nil, storeErr(err)
	}
	state := st.CachedInfo().State
	if state.Msgs == 0 || state.LastSeq < state.FirstSeq {
		return resp, nil
	}
	subject := subjectOf(sc.fn)
	afterSeq, afterIdx := seqOf(sc.after)
	start := afterSeq
	if sc.after == 0 {
		start = state.FirstSeq
		if sc.since != 0 {
			if start, err = findTime(ctx, st, subject, state.FirstSeq, state.LastSeq, time.UnixMilli(sc.since).Add(-clockSkew)); err != nil {
				return nil, err
			}
			// The batches before start are older than the range: the
			// cursor passes them, so a follower does not read them later.
			if start > state.FirstSeq {
				resp.Next = cursorOf(start-1, maxBatchEvents-1)
			}
		}
	} else if afterSeq+1 < state.FirstSeq {
		resp.Expired = true
		start = state.FirstSeq
	}
	deadline := time.Now().Add(maxScan)
	var stopAt time.Time
	if sc.until != 0 {
		stopAt = time.UnixMilli(sc.until).Add(lateBatch)
	}
	bytes := 0
	for seq := start; seq <= state.LastSeq; {
		if time.Now().After(deadline) {
			resp.More = true
			return resp, nil
		}
		msg, err := getMsg(ctx, st, seq, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, storeErr(err)
		}
		if !stopAt.IsZero() && msg.Time.After(stopAt) {
			break
		}
		_, events, err := decodeBatch(msg.Data)
		if err != nil {
			// A batch no publisher of ours wrote: skip it.
			resp.Next = max(resp.Next, cursorOf(msg.Sequence, maxBatchEvents-1))
			seq = msg.Sequence + 1
			continue
		}
		for i := range events {
			cur := cursorOf(msg.Sequence, i)
			if msg.Sequence == afterSeq && sc.after != 0 && i <= afterIdx {
				continue
			}
			ev := &events[i]
			if sc.matches(ev) {
				sz := eventSize(ev)
				if len(resp.Events) == sc.limit || (len(resp.Events) > 0 && bytes+sz > maxReadBytes) {
					resp.More = true
					return resp, nil
				}
				ev.Seq = cur
				resp.Events = append(resp.Events, *ev)
				bytes += sz
			}
			resp.Next = max(resp.Next, cur)
		}
		seq = msg.Sequence + 1
	}
	return resp, nil
}

func (sc *scan) matches(ev *rpc.LogEvent) bool {
	if sc.since != 0 && ev.TimeMs < sc.since {
		return false
	}
	if sc.until != 0 && ev.TimeMs > sc.until {
		return false
	}
	if sc.requestID != "" && ev.RequestID != sc.requestID {
		return false
	}
	return sc.filter.Match(ev.Line)
}

// findTime returns the first sequence in [first, last] whose batch was
// stored at or after t (last+1 if none), by binary search: the store's
// times grow with its sequence.
func findTime(ctx context.Context, st jetstream.Stream, subject string, first, last uint64, t time.Time) (uint64, error) {
	lo, hi := first, last+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		msg, err := getMsg(ctx, st, mid, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			hi = mid
			continue
		}
		if err != nil {
			return 0, storeErr(err)
		}
		if msg.Sequence >= hi {
			hi = mid // nothing in [mid, hi)
			continue
		}
		if msg.Time.Before(t) {
			lo = msg.Sequence + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// storeErr turns an error of the engine into a ServiceException.
func storeErr(err error) error {
	var re *rpc.Error
	if errors.As(err, &re) || errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return rpc.Errorf(rpc.CodeService, "log store: no answer in time (electing a leader?); try again")
	}
	return rpc.Errorf(rpc.CodeService, "log store: %v", err)
}

// apiTimeout bounds one request to JetStream: a stream electing a new
// leader does not answer, and the caller should hear so and try again
// rather than wait out its whole deadline.
const apiTimeout = 3 * time.Second

func streamInfo(ctx context.Context, js jetstream.JetStream, fn string) (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	return js.Stream(ctx, streamOf(fn))
}

// getMsg returns the first batch of subject at or after seq.
func getMsg(ctx context.Context, st jetstream.Stream, seq uint64, subject string) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	return st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
}
