package sandbox

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A flood beyond the rate limit is dropped and counted, exactly: what the
// sink got plus what the drop line reports is what was written; the tail
// stays 4 KB however much goes through.
func TestLogPipeRateLimitAndTailRing(t *testing.T) {
	sink := &memSink{}
	p, err := newLogPipe("flood", sink)
	if err != nil {
		t.Fatal(err)
	}
	frozen := time.Unix(1_000_000, 0)
	p.now = func() time.Time { return frozen } // the bucket never refills
	p.refilled = frozen
	p.collectTail(true)
	p.begin("req", "START")
	go p.run()

	line := bytes.Repeat([]byte("x"), 99)
	line = append(line, '\n')
	written := 0
	for ; written < 3*logBurst; written += len(line) {
		if _, err := p.w.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	p.w.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p.mu.Lock()
		eof := p.eof
		p.mu.Unlock()
		if eof {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reader never saw the end of the pipe")
		}
		time.Sleep(5 * time.Millisecond)
	}
	tail := p.end("END")

	delivered, dropped := 0, int64(-1)
	for _, l := range sink.lines("flood") {
		switch {
		case strings.HasPrefix(l, "RequestId: req Warning: "):
			f := strings.Fields(l)
			dropped, _ = strconv.ParseInt(f[3], 10, 64)
		case l == "START" || l == "END":
		default:
			delivered += len(l) + 1
		}
	}
	if delivered > logBurst || delivered < logBurst-len(p.buf) {
		t.Errorf("delivered %d bytes, want the burst of %d (less at most one read)", delivered, logBurst)
	}
	if int64(delivered)+dropped != int64(written) {
		t.Errorf("delivered %d + dropped %d != written %d", delivered, dropped, written)
	}
	if len(tail) > tailBytes || !strings.HasSuffix(tail, "END\n") || !strings.Contains(tail, "Warning: ") {
		t.Errorf("tail of %d bytes ending %q", len(tail), tail[max(0, len(tail)-80):])
	}
	if p.tail != nil {
		t.Error("the tail outlived end")
	}
}

func TestTailRing(t *testing.T) {
	var r tailRing
	var all strings.Builder
	for i := 0; i < 5000; i++ {
		s := strconv.Itoa(i) + "\n"
		r.write(s)
		all.WriteString(s)
		if cap(r.buf) > 4*tailBytes {
			t.Fatalf("ring grew to %d bytes", cap(r.buf))
		}
	}
	r.write(strings.Repeat("y", 3*tailBytes))
	want := all.String() + strings.Repeat("y", 3*tailBytes)
	if got := r.String(); got != want[len(want)-tailBytes:] {
		t.Fatalf("ring holds %q...", got[:40])
	}
}
