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

// LogSink receives a function's log lines in order: what the function wrote
// on stdout and stderr, and the START, END and REPORT lines of each
// invocation. The node backs it with the log store.
type LogSink interface {
	Append(function string, events ...rpc.LogEvent) error
}

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
// so the bytes are in the pipe by then; sync waits until the reader has
// consumed everything the pipe held when sync was called.
type logPipe struct {
	r, w     *os.File
	function string
	sink     LogSink

	mu        sync.Mutex // guards everything below; sink.Append runs under it to keep order
	cond      *sync.Cond
	readTotal int64
	eof       bool
	partial   []byte
	reqID     string
	tail      *strings.Builder // non-nil while the current invocation wants its tail
}

func newLogPipe(function string, sink LogSink) (*logPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &logPipe{r: r, w: w, function: function, sink: sink}
	p.cond = sync.NewCond(&p.mu)
	return p, nil
}

// run reads until every writer has closed the pipe.
func (p *logPipe) run() {
	buf := make([]byte, 64<<10)
	for {
		n, err := p.r.Read(buf)
		p.mu.Lock()
		if n > 0 {
			p.consume(buf[:n])
			p.readTotal += int64(n)
		}
		if err != nil {
			p.flushPartial()
			p.eof = true
		}
		p.cond.Broadcast()
		p.mu.Unlock()
		if err != nil {
			p.r.Close()
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

// sync waits until every byte written to the pipe before the call has been
// turned into events, and flushes an unterminated last line.
func (p *logPipe) sync() {
	// FIONREAD through the poller's fd: Fd() would make the pipe blocking.
	pending, err := 0, error(nil)
	if rc, cerr := p.r.SyscallConn(); cerr == nil {
		cerr = rc.Control(func(fd uintptr) {
			pending, err = unix.IoctlGetInt(int(fd), unix.TIOCINQ)
		})
		if cerr != nil {
			err = cerr
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && pending > 0 {
		target := p.readTotal + int64(pending)
		for p.readTotal < target && !p.eof {
			p.cond.Wait()
		}
	}
	p.flushPartial()
}

// begin attributes the lines read from now on to reqID and emits START.
func (p *logPipe) begin(reqID string, wantTail bool, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqID = reqID
	p.tail = nil
	if wantTail {
		p.tail = &strings.Builder{}
	}
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
