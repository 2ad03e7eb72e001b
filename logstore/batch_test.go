package logstore

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"nimbus/rpc"
)

func TestBatchRoundTrip(t *testing.T) {
	evs := []rpc.LogEvent{
		{TimeMs: 1700000000000, RequestID: "abc", Stream: StreamStdout, Line: "hello"},
		{TimeMs: -5, Stream: StreamPlatform, Line: ""},
		{TimeMs: 3, RequestID: "r", Stream: StreamStderr, Line: strings.Repeat("compressible ", 500)},
	}
	for _, n := range []int{1, 2, 3} {
		b := encodeBatch("node-1", evs[:n], nil)
		if n == 3 && b[0] != batchS2 {
			t.Fatal("a compressible batch was not compressed")
		}
		node, got, err := decodeBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		if node != "node-1" || len(got) != n {
			t.Fatalf("node %q, %d events", node, len(got))
		}
		for i := range got {
			want := evs[i]
			want.Node = "node-1"
			if got[i] != want {
				t.Fatalf("event %d = %+v, want %+v", i, got[i], want)
			}
		}
	}
}

// FuzzDecodeBatch: a batch read from the store is untrusted; decoding any
// bytes must fail cleanly or give events within the bounds.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch("n", []rpc.LogEvent{{TimeMs: 1, Line: "x"}}, nil))
	f.Add(encodeBatch("n", []rpc.LogEvent{{TimeMs: 1, RequestID: "r", Line: strings.Repeat("ab", 600)}}, nil))
	f.Add([]byte{batchRaw, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{batchS2, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, evs, err := decodeBatch(b)
		if err != nil {
			return
		}
		if len(evs) == 0 || len(evs) > maxBatchEvents {
			t.Fatalf("%d events", len(evs))
		}
		for _, e := range evs {
			if len(e.Line) > MaxLineBytes || len(e.RequestID) > maxRequestID {
				t.Fatal("field past its bound")
			}
		}
	})
}

// TestQueuedBatches: lines are encoded as they are appended straight into
// the batches that will carry them; each stays within the bounds, decodes
// to its lines in the order appended, and taking them hands back the
// buffer's accounting. (The queue is the test's own, so that no publisher
// takes from it.)
func TestQueuedBatches(t *testing.T) {
	st, err := Open(Options{Node: "node-1", BufferBytes: 64 << 20,
		Connect: func() (*nats.Conn, error) { return nil, errors.New("no store in this test") }})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 20000
	long := strings.Repeat("x", 300)
	q := &queue{fn: "fn"}
	st.mu.Lock()
	for i := 0; i < n; i++ {
		st.enqueue(q, rpc.LogEvent{TimeMs: int64(i), RequestID: "rid", Line: fmt.Sprintf("line %d %s", i, long[:i%300])})
	}
	buffered := st.buffered
	st.mu.Unlock()
	if q.lines != n || q.bytes != buffered {
		t.Fatalf("%d lines, %d bytes queued; %d bytes buffered", q.lines, q.bytes, buffered)
	}
	next, batches := 0, 0
	for {
		p := st.take(q, false)
		if p == nil {
			break
		}
		batches++
		raw := p.raw("node-1")
		if p.size > maxBatchBytes || len(raw) > maxBatchBytes+st.hdrRoom || p.count >= maxBatchEvents {
			t.Fatalf("batch of %d events, %d bytes (%d raw)", p.count, p.size, len(raw))
		}
		for _, data := range [][]byte{raw, compressBatch(raw, nil)} {
			node, evs, err := decodeBatch(data)
			if err != nil || node != "node-1" || len(evs) != p.count {
				t.Fatalf("decode: %v, node %q, %d events of %d", err, node, len(evs), p.count)
			}
			for j, ev := range evs {
				i := next + j
				if want := fmt.Sprintf("line %d %s", i, long[:i%300]); ev.Line != want || ev.TimeMs != int64(i) || ev.RequestID != "rid" || ev.Stream != StreamStdout {
					t.Fatalf("event %d = %+v", i, ev)
				}
			}
		}
		next += p.count
		st.acked(p)
	}
	if next != n || batches < 2 {
		t.Fatalf("%d lines in %d batches, want %d in several", next, batches, n)
	}
	if s := st.Stats(); s.Buffered != 0 || q.lines != 0 || q.bytes != 0 {
		t.Fatalf("after taking every batch: %+v, queue %d lines %d bytes", s, q.lines, q.bytes)
	}
}
