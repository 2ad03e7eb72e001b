package logstore

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"nimbus/rpc"
)

// Sizes of the in-memory parts of one function's log.
const (
	// writeBufferBytes is the write buffer of the active segment.
	writeBufferBytes = 32 << 10
	// windowLines and windowBytes bound the recent window: the newest lines
	// of a function, kept in memory for Tail and for fast Read.
	windowLines = 2048
	windowBytes = 256 << 10
	// idlePasses is how many age-retention passes (one a second) without
	// an Append make a log idle: its file is closed and its buffer and
	// window freed, so that thousands of quiet functions cost no file
	// descriptors and little memory.
	idlePasses = 300
	// eventOverhead is what an event costs beyond its strings, in memory and
	// in a response, for the byte limits.
	eventOverhead = 32
)

const segmentExt = ".log"

// segment describes one segment file. The last segment of a funcLog is the
// active one, the only one written to; the others never change until they
// are removed.
type segment struct {
	first uint64 // Seq of its first record, also its file name; all its records have Seq >= first
	last  uint64 // Seq of its last record; first-1 when it has none
	maxMs int64  // newest TimeMs among its records; math.MinInt64 when it has none
	size  int64  // bytes, counting records still in the write buffer
	path  string
}

func (sg *segment) hasRecords() bool { return sg.last >= sg.first }

func segmentPath(dir string, first uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", first, segmentExt))
}

// parseSegmentName returns the first Seq a segment file name encodes.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	first, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || first == 0 {
		return 0, false
	}
	return first, true
}

// funcLog is the log of one function: its segment files on disk, the write
// buffer of the active segment and the recent window in memory.
//
// mu guards every field but name and dir, which never change. A funcLog is
// reached through Store.funcs; once gone is set (Delete or Close) it is out
// of the map for good and every operation on it must look the function up
// again.
type funcLog struct {
	name string
	dir  string

	mu        sync.Mutex
	segs      []segment     // oldest first; retained files only
	f         *os.File      // the active segment open for append, nil until the first Append
	w         *bufio.Writer // buffers f
	werr      error         // sticky write error; the next Append starts a new segment
	forceRoll bool          // the active segment is unusable: start a new one
	dirty     bool          // w holds bytes and the funcLog is on Store's dirty list
	lastSeq   uint64        // Seq of the newest event, 0 when none ever
	total     int64         // sum of segs[i].size
	win       window
	wake      chan struct{} // closed on the next change; nil when no one waits
	gone      bool
	appended  bool // an Append happened since the last retention pass
	idle      int  // retention passes in a row without an Append
}

func newFuncLog(name, dir string) *funcLog {
	return &funcLog{name: name, dir: dir}
}

// waitChan returns a channel closed on the next Append, Delete or Close.
func (fl *funcLog) waitChan() <-chan struct{} {
	if fl.wake == nil {
		fl.wake = make(chan struct{})
	}
	return fl.wake
}

// notify wakes the waiters of waitChan.
func (fl *funcLog) notify() {
	if fl.wake != nil {
		close(fl.wake)
		fl.wake = nil
	}
}

// oldestSeq is the smallest Seq the log may still hold.
func (fl *funcLog) oldestSeq() uint64 {
	if len(fl.segs) > 0 {
		return fl.segs[0].first
	}
	return fl.lastSeq + 1
}

// append assigns Seqs to events, writes them to the active segment's buffer
// and to the window, and applies the byte retention. The events are in the
// window and readable even when writing them to disk fails; the error says
// so. The caller holds mu.
func (fl *funcLog) append(events []rpc.LogEvent, opts *Options) error {
	var diskErr error
	if fl.werr != nil {
		// The buffer's contents were lost with the error: abandon the
		// segment; its valid prefix stays readable.
		if fl.f != nil {
			fl.f.Close()
			fl.f = nil
		}
		fl.werr = nil
		fl.forceRoll = true
	}
	for i := range events {
		ev := rpc.LogEvent{
			Seq:       fl.lastSeq + 1,
			TimeMs:    events[i].TimeMs,
			RequestID: clip(events[i].RequestID, maxRequestIDBytes),
			Line:      clip(events[i].Line, maxLineBytes),
		}
		fl.lastSeq = ev.Seq
		if diskErr == nil {
			diskErr = fl.write(&ev, opts.SegmentBytes)
		}
		fl.win.push(ev)
	}
	fl.win.evict(windowLines, windowBytes)
	fl.appended = true
	for fl.total > opts.RetainBytes && len(fl.segs) > 1 {
		fl.dropOldest()
	}
	fl.notify()
	if diskErr != nil {
		return fmt.Errorf("logstore: %s: %w", fl.name, diskErr)
	}
	return nil
}

// write appends one record to the active segment, rolling first when it is
// full. The caller holds mu.
func (fl *funcLog) write(ev *rpc.LogEvent, segmentBytes int64) error {
	n := len(fl.segs)
	if n == 0 || fl.forceRoll || (fl.segs[n-1].hasRecords() && fl.segs[n-1].size >= segmentBytes) {
		if err := fl.newSegment(ev.Seq); err != nil {
			return err
		}
	} else if fl.f == nil {
		if err := fl.openActive(); err != nil {
			return err
		}
	}
	b := appendRecord(fl.w.AvailableBuffer(), ev)
	if _, err := fl.w.Write(b); err != nil {
		fl.werr = err
		return err
	}
	sg := &fl.segs[len(fl.segs)-1]
	sg.size += int64(len(b))
	fl.total += int64(len(b))
	sg.last = ev.Seq
	if ev.TimeMs > sg.maxMs {
		sg.maxMs = ev.TimeMs
	}
	return nil
}

// openActive opens the last segment, found at Open, for appending.
func (fl *funcLog) openActive() error {
	sg := &fl.segs[len(fl.segs)-1]
	f, err := os.OpenFile(sg.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		fl.forceRoll = true
		return err
	}
	fl.setFile(f)
	return nil
}

func (fl *funcLog) setFile(f *os.File) {
	fl.f = f
	if fl.w == nil {
		fl.w = bufio.NewWriterSize(f, writeBufferBytes)
	} else {
		fl.w.Reset(f)
	}
}

// newSegment closes the active segment and starts a new one whose first
// record will have Seq first. The caller holds mu.
func (fl *funcLog) newSegment(first uint64) error {
	if fl.f != nil {
		err := fl.flush()
		if cerr := fl.f.Close(); err == nil {
			err = cerr
		}
		fl.f = nil
		if err != nil {
			fl.werr = nil
			fl.forceRoll = true
			return err
		}
	}
	if err := os.MkdirAll(fl.dir, 0o755); err != nil {
		return err
	}
	path := segmentPath(fl.dir, first)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		fl.forceRoll = true
		return err
	}
	fl.setFile(f)
	fl.w.WriteString(segmentMagic) // cannot fail: the buffer was just reset
	fl.segs = append(fl.segs, segment{first: first, last: first - 1, maxMs: math.MinInt64, size: int64(len(segmentMagic)), path: path})
	fl.total += int64(len(segmentMagic))
	fl.forceRoll = false
	return nil
}

// flush writes the buffer to the active segment. The caller holds mu.
func (fl *funcLog) flush() error {
	if fl.w == nil || fl.f == nil || fl.w.Buffered() == 0 {
		return fl.werr
	}
	if err := fl.w.Flush(); err != nil {
		fl.werr = err
		return err
	}
	return nil
}

// dropOldest removes the oldest segment, and from the window the events it
// held. The caller holds mu.
func (fl *funcLog) dropOldest() {
	sg := fl.segs[0]
	if len(fl.segs) == 1 && fl.f != nil {
		fl.f.Close()
		fl.f = nil
	}
	os.Remove(sg.path) // a file left behind is found and dropped again at the next Open
	fl.total -= sg.size
	fl.segs = append(fl.segs[:0], fl.segs[1:]...)
	fl.win.dropBelow(fl.oldestSeq())
}

// expire drops the segments whose newest line is older than cutoff (Unix
// ms). The active segment is replaced by an empty one named after the next
// Seq first, so that the next Seq survives a restart. The caller holds mu.
func (fl *funcLog) expire(cutoff int64) error {
	for len(fl.segs) > 0 {
		sg := &fl.segs[0]
		if sg.hasRecords() && sg.maxMs >= cutoff {
			return nil
		}
		if len(fl.segs) == 1 {
			if !sg.hasRecords() {
				return nil
			}
			if err := fl.newSegment(fl.lastSeq + 1); err != nil {
				return err
			}
		}
		fl.dropOldest()
	}
	return nil
}

// tick counts one retention pass towards idleness and releases the log's
// file, buffer and window when it becomes idle. The caller holds mu.
func (fl *funcLog) tick() {
	if fl.appended {
		fl.appended, fl.idle = false, 0
		return
	}
	if fl.idle++; fl.idle != idlePasses {
		return
	}
	if fl.f != nil {
		fl.flush()
		fl.f.Close()
		fl.f = nil
	}
	fl.w = nil
	fl.win = window{}
}

// window is the recent window: the newest events of one function, in Seq
// order, bounded in lines and bytes. Seqs are increasing but may have gaps
// (a window is not refilled from disk at Open, and events are not copied
// when a Read returns them: they are immutable).
type window struct {
	evs   []rpc.LogEvent // evs[start:] are live
	start int
	bytes int
}

func eventBytes(ev *rpc.LogEvent) int { return len(ev.Line) + len(ev.RequestID) + eventOverhead }

func (w *window) live() []rpc.LogEvent { return w.evs[w.start:] }

func (w *window) push(ev rpc.LogEvent) {
	w.evs = append(w.evs, ev)
	w.bytes += eventBytes(&ev)
}

// evict drops the oldest events past the bounds, always keeping the newest.
func (w *window) evict(maxLines, maxBytes int) {
	for n := len(w.evs) - w.start; n > 1 && (n > maxLines || w.bytes > maxBytes); n-- {
		w.popFront()
	}
	w.compact()
}

// dropBelow drops the events with Seq < seq.
func (w *window) dropBelow(seq uint64) {
	for w.start < len(w.evs) && w.evs[w.start].Seq < seq {
		w.popFront()
	}
	w.compact()
}

func (w *window) popFront() {
	w.bytes -= eventBytes(&w.evs[w.start])
	w.evs[w.start] = rpc.LogEvent{}
	w.start++
}

// compact moves the live events to the front once half the slice is dead,
// so pushes stay amortized O(1) and memory bounded.
func (w *window) compact() {
	if w.start == len(w.evs) {
		w.evs, w.start = w.evs[:0], 0
		return
	}
	if w.start < 64 || w.start < len(w.evs)/2 {
		return
	}
	n := copy(w.evs, w.evs[w.start:])
	clear(w.evs[n:])
	w.evs, w.start = w.evs[:n], 0
}

// covers reports whether every retained event with Seq >= from is in the
// window.
func (w *window) covers(from uint64) bool {
	live := w.live()
	return len(live) > 0 && from >= live[0].Seq
}

// collect returns up to limit events with Seq >= from and TimeMs >= since
// (when since != 0), stopping before maxBytes (but returning at least one).
func (w *window) collect(from uint64, since int64, limit, maxBytes int) []rpc.LogEvent {
	live := w.live()
	i := sort.Search(len(live), func(i int) bool { return live[i].Seq >= from })
	var out []rpc.LogEvent
	bytes := 0
	for ; i < len(live); i++ {
		ev := &live[i]
		if since != 0 && ev.TimeMs < since {
			continue
		}
		sz := eventBytes(ev)
		if len(out) == limit || (len(out) > 0 && bytes+sz > maxBytes) {
			break
		}
		if out == nil {
			out = make([]rpc.LogEvent, 0, min(limit, len(live)-i))
		}
		out = append(out, *ev)
		bytes += sz
	}
	return out
}

// errGone is returned by funcLog methods once the funcLog was deleted or the
// store closed; the caller looks the function up again.
var errGone = errors.New("logstore: function log gone")
