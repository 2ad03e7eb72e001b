package sandbox

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

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

	mu      sync.Mutex // guards everything below; sink.Append runs under it to keep order
	buf     []byte
	eof     bool
	partial []byte
	reqID   string
	tail    *strings.Builder // non-nil while the current invocation wants its tail
}

func newLogPipe(function string, sink LogSink) (*logPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &logPipe{r: r, w: w, function: function, sink: sink, buf: make([]byte, 64<<10)}, nil
}

// readLocked reads what the pipe holds now, without blocking, and turns it
// into events. It reports false when the pipe had nothing (EAGAIN). The
// caller holds mu.
func (p *logPipe) readLocked(fd uintptr) bool {
	for !p.eof {
		n, err := unix.Read(int(fd), p.buf)
		switch {
		case n > 0:
			p.consume(p.buf[:n])
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
		p.tail.WriteString(line)
		p.tail.WriteByte('\n')
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
		p.tail = &strings.Builder{}
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
	events := make([]rpc.LogEvent, len(lines))
	for i, l := range lines {
		events[i] = p.event(now, l)
	}
	_ = p.sink.Append(p.function, events...)
	var tail string
	if p.tail != nil {
		tail = p.tail.String()
		if len(tail) > tailBytes {
			tail = tail[len(tail)-tailBytes:]
		}
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
