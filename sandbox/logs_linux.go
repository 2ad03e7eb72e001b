package sandbox

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"nimbus/internal/rawio"
	"nimbus/rpc"
)

// maxLogLine is the longest line kept whole; longer ones are cut.
const maxLogLine = 256 << 10

// tailBytes is how much of an invocation's log LogType=Tail returns.
const tailBytes = 4096

// logPipe captures a sandbox's stdout and stderr (one pipe, as Lambda merges
// them) and turns it into log events attributed to the invocation running
// when each line was read.
//
// Order: a line the function wrote before answering must appear before the
// END line. The function's write finished before its HTTP answer was sent,
// so the bytes are in the pipe by then; sync drains the pipe itself. Every
// read of the pipe, the reader goroutine's and sync's, happens under mu, so
// when sync sees the pipe empty no byte is left in flight elsewhere.
type logPipe struct {
	r, w     *os.File
	function string
	sink     LogSink

	now func() time.Time // the clock of the rate limit; time.Now but in tests

	mu      sync.Mutex // guards everything below; sink.Append runs under it to keep order
	buf     []byte
	eof     bool
	partial []byte
	reqID   string
	tail    *tailRing // non-nil while the current invocation wants its tail

	// The rate limit: a bucket of logBurst bytes refilled at logRate.
	// Bytes read while it is empty are dropped whole, without being split
	// into lines, and counted; the count is reported before the next END.
	tokens   float64
	refilled time.Time
	dropped  int64
}

// The log rate limit per sandbox. A function that floods its output costs
// the agent a read per 64 KB beyond it, not a line split and a store
// append per line.
const (
	logRate  = 1 << 20 // bytes per second
	logBurst = 4 << 20
	// readsPerTurn bounds how long one reader holds mu under a flood.
	readsPerTurn = 16
)

func newLogPipe(function string, sink LogSink) (*logPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &logPipe{r: r, w: w, function: function, sink: sink, buf: make([]byte, 64<<10), now: time.Now, tokens: logBurst}
	p.refilled = p.now()
	return p, nil
}

// admit takes n bytes from the bucket, or reports false (and counts them
// dropped) when it holds fewer. The caller holds mu.
func (p *logPipe) admit(n int) bool {
	now := p.now()
	if d := now.Sub(p.refilled); d > 0 {
		p.tokens = min(logBurst, p.tokens+d.Seconds()*logRate)
		p.refilled = now
	}
	if p.tokens < float64(n) {
		// A line cut by a drop is dropped whole, not glued to the next.
		p.dropped += int64(n + len(p.partial))
		p.partial = p.partial[:0]
		return false
	}
	p.tokens -= float64(n)
	return true
}

// tailRing keeps the last tailBytes bytes written to it, in at most twice
// that much memory, however much goes through.
type tailRing struct{ buf []byte }

func (t *tailRing) write(s string) {
	if len(s) > tailBytes {
		s = s[len(s)-tailBytes:]
	}
	t.buf = append(t.buf, s...)
	if len(t.buf) > 2*tailBytes {
		n := copy(t.buf, t.buf[len(t.buf)-tailBytes:])
		t.buf = t.buf[:n]
	}
}

func (t *tailRing) String() string {
	b := t.buf
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
	}
	return string(b)
}

// readLocked reads what the pipe holds now, without blocking, and turns it
// into events. It reports false when the pipe had nothing (EAGAIN). The
// caller holds mu.
func (p *logPipe) readLocked(fd uintptr) bool {
	for reads := 0; !p.eof; reads++ {
		if reads == readsPerTurn {
			return true // let sync and end in; the reader comes back
		}
		n, err := rawio.Read(fd, p.buf) // a non-blocking pipe
		switch {
		case n > 0:
			if p.admit(n) {
				p.consume(p.buf[:n])
			}
			if n < len(p.buf) {
				return true
			}
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return false
		default: // 0 bytes: every writer closed it; or a read error
			p.flushPartial()
			p.eof = true
		}
	}
	return true
}

// run reads until every writer has closed the pipe.
func (p *logPipe) run() {
	defer p.r.Close()
	rc, err := p.r.SyscallConn()
	if err != nil {
		return
	}
	for {
		err := rc.Read(func(fd uintptr) bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.readLocked(fd)
		})
		p.mu.Lock()
		done := p.eof || err != nil
		p.eof = done
		p.mu.Unlock()
		if done {
			return
		}
	}
}

// consume splits data into lines; the caller holds mu.
func (p *logPipe) consume(data []byte) {
	now := time.Now().UnixMilli()
	var events []rpc.LogEvent
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			p.partial = append(p.partial, data...)
			if len(p.partial) >= maxLogLine {
				events = append(events, p.event(now, string(p.partial[:maxLogLine])))
				p.partial = p.partial[:0]
			}
			break
		}
		var line string
		if len(p.partial) > 0 {
			p.partial = append(p.partial, data[:i]...)
			line = string(p.partial)
			p.partial = p.partial[:0]
		} else {
			line = string(data[:i])
		}
		if len(line) > maxLogLine {
			line = line[:maxLogLine]
		}
		events = append(events, p.event(now, strings.TrimSuffix(line, "\r")))
		data = data[i+1:]
	}
	if len(events) > 0 {
		_ = p.sink.Append(p.function, events...)
	}
}

func (p *logPipe) event(now int64, line string) rpc.LogEvent {
	if p.tail != nil {
		p.tail.write(line)
		p.tail.write("\n")
	}
	return rpc.LogEvent{TimeMs: now, RequestID: p.reqID, Line: line}
}

func (p *logPipe) flushPartial() {
	if len(p.partial) == 0 {
		return
	}
	ev := p.event(time.Now().UnixMilli(), string(p.partial))
	p.partial = p.partial[:0]
	_ = p.sink.Append(p.function, ev)
}

// sync turns every byte written to the pipe before the call into events,
// and flushes an unterminated last line.
func (p *logPipe) sync() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.eof {
		if rc, err := p.r.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { p.readLocked(fd) })
		}
	}
	p.flushPartial()
}

// collectTail starts (or, with want false, stops) collecting the tail of
// the invocation about to begin.
func (p *logPipe) collectTail(want bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tail = nil
	if want {
		p.tail = &tailRing{}
	}
}

// begin attributes the lines read from now on to reqID and emits START.
func (p *logPipe) begin(reqID string, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqID = reqID
	_ = p.sink.Append(p.function, p.event(time.Now().UnixMilli(), line))
}

// end emits the closing lines and returns the invocation's tail (if asked).
func (p *logPipe) end(lines ...string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now().UnixMilli()
	events := make([]rpc.LogEvent, 0, len(lines)+1)
	if p.dropped > 0 {
		events = append(events, p.event(now, droppedLine(p.reqID, p.dropped)))
		p.dropped = 0
	}
	for _, l := range lines {
		events = append(events, p.event(now, l))
	}
	_ = p.sink.Append(p.function, events...)
	var tail string
	if p.tail != nil {
		tail = p.tail.String()
	}
	p.reqID = ""
	p.tail = nil
	return tail
}

// emit writes one platform line attributed to the current invocation.
func (p *logPipe) emit(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.sink.Append(p.function, p.event(time.Now().UnixMilli(), line))
}

// droppedLine reports what the rate limit dropped.
func droppedLine(reqID string, n int64) string {
	return "RequestId: " + reqID + " Warning: " + strconv.FormatInt(n, 10) +
		" bytes of log output dropped: over the sandbox's log rate of " + strconv.Itoa(logRate>>20) + " MB/s"
}
