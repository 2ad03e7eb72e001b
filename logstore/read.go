package logstore

import (
	"bufio"
	"context"
	"errors"
	"math"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"nimbus/rpc"
)

// Limits of one Read.
const (
	DefaultReadLimit = 1000
	MaxReadLimit     = 10000
	// maxReadBytes bounds the lines of one response (counting eventOverhead
	// per event); a response holds at least one event whatever its size.
	maxReadBytes = 4 << 20
)

// startPrefix starts the line the platform writes when an invocation
// begins; Tail stops looking further back when it meets it.
const startPrefix = "START RequestId: "

// Read returns the events of req.FunctionName with Seq > req.After (and
// TimeMs >= req.SinceMs when set) in Seq order: at most req.Limit (0 means
// 1000, more than 10000 means 10000) and at most about 4 MiB of lines. When
// there are none and req.WaitMs > 0, it waits for one until WaitMs passes
// (answering with none) or ctx ends (answering ctx.Err()). Next is the
// largest of req.After and the last Seq returned.
//
// A function with no log reads as empty. Recent lines are served from
// memory; older ones from the segment files.
func (s *Store) Read(ctx context.Context, req *rpc.ReadLogsRequest) (*rpc.ReadLogsResponse, error) {
	if req == nil {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "missing request")
	}
	if err := checkName(req.FunctionName); err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	limit = min(limit, MaxReadLimit)
	wait := req.WaitMs > 0
	resp := &rpc.ReadLogsResponse{Next: req.After}
	if req.After == math.MaxUint64 {
		return resp, nil // no Seq can follow
	}

	from := req.After + 1
	var timer *time.Timer
	for {
		fl, err := s.lookup(req.FunctionName, wait)
		if err != nil {
			return nil, err
		}
		if fl == nil {
			return resp, nil
		}
		res, err := fl.read(from, req.SinceMs, limit, wait)
		if errors.Is(err, errGone) {
			continue // deleted meanwhile, or closed: look it up again
		}
		if err != nil {
			return nil, err
		}
		if len(res.events) > 0 {
			resp.Events = res.events
			resp.Next = max(req.After, res.events[len(res.events)-1].Seq)
			return resp, nil
		}
		if !wait {
			return resp, nil
		}
		// Nothing up to res.scanned matches: look only past it from now on.
		if res.scanned < math.MaxUint64 {
			from = max(from, res.scanned+1)
		}
		if res.wake == nil {
			continue // lines arrived while the files were read
		}
		if timer == nil {
			timer = time.NewTimer(time.Duration(req.WaitMs) * time.Millisecond)
			defer timer.Stop()
		}
		select {
		case <-res.wake:
		case <-timer.C:
			return resp, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// readResult is what one pass of funcLog.read found.
type readResult struct {
	events []rpc.LogEvent
	// scanned is, when events is empty, the Seq up to which the log was
	// looked at without a match.
	scanned uint64
	// wake, set when events is empty and a wait was asked for, is closed on
	// the next change of the log. It is nil if the log changed during the
	// read, which must then be tried again.
	wake <-chan struct{}
}

// read is one pass of Read over one log: from the window when it holds
// everything from `from` on, else from the files.
func (fl *funcLog) read(from uint64, since int64, limit int, wait bool) (readResult, error) {
	fl.mu.Lock()
	if fl.gone {
		fl.mu.Unlock()
		return readResult{}, errGone
	}
	if len(fl.segs) > 0 {
		from = max(from, fl.segs[0].first)
	}
	last := fl.lastSeq
	if from > last || len(fl.segs) == 0 || fl.win.covers(from) {
		res := readResult{events: fl.win.collect(from, since, limit, maxReadBytes), scanned: max(last, from-1)}
		if len(res.events) == 0 && wait {
			res.wake = fl.waitChan()
		}
		fl.mu.Unlock()
		return res, nil
	}

	// From the files. Flush so that they hold everything up to last, and
	// read them without the lock: Appends go on meanwhile.
	fl.flush()
	var segs []segment
	for _, sg := range fl.segs {
		if sg.hasRecords() && sg.last >= from && (since == 0 || sg.maxMs >= since) {
			segs = append(segs, sg)
		}
	}
	fl.mu.Unlock()

	evs, err := readSegments(segs, from, since, limit, maxReadBytes)
	if err != nil {
		return readResult{}, err
	}
	res := readResult{events: evs, scanned: last}
	if len(evs) == 0 && wait {
		fl.mu.Lock()
		if fl.gone {
			fl.mu.Unlock()
			return readResult{}, errGone
		}
		if fl.lastSeq == last {
			res.wake = fl.waitChan()
		}
		fl.mu.Unlock()
	}
	return res, nil
}

// readSegments reads the events with Seq >= from and TimeMs >= since (when
// since != 0) from segment files, up to limit events and maxBytes (at least
// one event). A file removed meanwhile by the retention or Delete is
// skipped, and so is what follows a corrupt record in a file.
func readSegments(segs []segment, from uint64, since int64, limit, maxBytes int) ([]rpc.LogEvent, error) {
	var out []rpc.LogEvent
	bytes := 0
	sr := &segmentReader{}
	for _, sg := range segs {
		f, err := os.Open(sg.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if sr.r == nil {
			sr.r = bufio.NewReaderSize(f, 64<<10)
		} else {
			sr.r.Reset(f)
		}
		sr.off, sr.limit = int64(len(segmentMagic)), sg.size
		full := false
		if _, err := sr.r.Discard(len(segmentMagic)); err == nil {
			for {
				v, err := sr.next()
				if err != nil {
					break
				}
				if v.seq < from || (since != 0 && v.timeMs < since) {
					continue
				}
				sz := len(v.line) + len(v.requestID) + eventOverhead
				if len(out) == limit || (len(out) > 0 && bytes+sz > maxBytes) {
					full = true
					break
				}
				out = append(out, v.event())
				bytes += sz
			}
		}
		f.Close()
		if full {
			break
		}
	}
	return out, nil
}

// Tail returns the last maxBytes bytes of the lines of one invocation, joined
// with "\n", as Lambda's LogType=Tail does. It looks only at the recent
// window in memory, so it is meant for an invocation that just ended. It
// returns "" when it finds nothing (or the name or request id is invalid).
func (s *Store) Tail(function, requestID string, maxBytes int) string {
	if maxBytes <= 0 || requestID == "" || !validName(function) {
		return ""
	}
	fl, err := s.lookup(function, false)
	if err != nil || fl == nil {
		return ""
	}
	var lines []string
	n := 0 // length of lines joined, plus one
	fl.mu.Lock()
	live := fl.win.live()
	for i := len(live) - 1; i >= 0 && n <= maxBytes; i-- {
		ev := &live[i]
		if ev.RequestID != requestID {
			continue
		}
		lines = append(lines, ev.Line)
		n += len(ev.Line) + 1
		if strings.HasPrefix(ev.Line, startPrefix) {
			break
		}
	}
	fl.mu.Unlock()
	slices.Reverse(lines)
	out := strings.Join(lines, "\n")
	if len(out) > maxBytes {
		out = out[len(out)-maxBytes:]
		for i := 1; i < utf8.UTFMax && len(out) > 0 && !utf8.RuneStart(out[0]); i++ {
			out = out[1:]
		}
	}
	return out
}
