package logstore

import (
	"strings"
	"testing"

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
