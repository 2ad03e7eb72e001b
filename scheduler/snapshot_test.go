package scheduler

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// bufferSink is a raft.SnapshotSink into memory.
type bufferSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *bufferSink) ID() string    { return "test" }
func (s *bufferSink) Close() error  { s.closed = true; return nil }
func (s *bufferSink) Cancel() error { s.cancelled = true; return nil }

// persist snapshots f and returns the bytes Persist wrote.
func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v, want closed only", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func restore(f *FSM, data []byte) error {
	return f.Restore(io.NopCloser(bytes.NewReader(data)))
}

// populated returns an FSM holding functions of every shape, two of them
// with a reservation (one of 0).
func populated(t testing.TB) *FSM {
	t.Helper()
	f := NewFSM(FSMOptions{})
	noEnv := fullFunction("no-env")
	noEnv.Env = nil
	minimal := &rpc.FunctionConfig{Name: "m"}
	for i, fc := range []*rpc.FunctionConfig{fullFunction("full"), noEnv, minimal, fullFunction("zz-last")} {
		if res := apply(t, f, uint64(i+1), CmdPutFunction, PutFunctionCommand{Function: fc, Mode: PutCreate}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	for i, r := range []PutConcurrencyCommand{{Name: "full", Reserved: 50}, {Name: "m", Reserved: 0}} {
		if res := apply(t, f, uint64(5+i), CmdPutConcurrency, r); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	upd := fullFunction("full")
	upd.TimeoutSec = 900
	if res := apply(t, f, 9, CmdPutFunction, PutFunctionCommand{Function: upd, Mode: PutUpdate}); res.Err != nil {
		t.Fatal(res.Err)
	}
	return f
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	src := populated(t)
	data := persist(t, src)

	dst, rec := newRecordedFSM()
	if err := restore(dst, data); err != nil {
		t.Fatal(err)
	}
	if got, want := dst.Functions(), src.Functions(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored:\n got %+v\nwant %+v", got, want)
	}
	if got, want := reservations(dst), map[string]int{"full": 50, "m": 0}; !reflect.DeepEqual(got, want) {
		t.Fatalf("restored reservations = %v, want %v", got, want)
	}
	if got := dst.ReservedTotal(); got != 50 {
		t.Fatalf("restored ReservedTotal = %d, want 50", got)
	}
	checkReservations(t, dst)
	// A fresh replica learns of every function through the callback.
	wantChanges := []change{{"", "full@9"}, {"", "m@3"}, {"", "no-env@2"}, {"", "zz-last@4"}}
	if got := rec.take(); !reflect.DeepEqual(got, wantChanges) {
		t.Fatalf("OnFunctionChange on restore:\n got %v\nwant %v", got, wantChanges)
	}
	// Persisting the restored state gives the same bytes.
	if again := persist(t, dst); !bytes.Equal(again, data) {
		t.Fatal("restored state persists differently")
	}
	// The restored FSM goes on applying.
	if res := apply(t, dst, 10, CmdDeleteFunction, DeleteFunctionCommand{Name: "m"}); res.Err != nil {
		t.Fatal(res.Err)
	}
}

func TestSnapshotEmpty(t *testing.T) {
	t.Parallel()
	data := persist(t, NewFSM(FSMOptions{}))
	f := populated(t)
	if err := restore(f, data); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Functions()); n != 0 {
		t.Fatalf("restoring an empty snapshot left %d functions", n)
	}
	if n, total := len(reservations(f)), f.ReservedTotal(); n != 0 || total != 0 {
		t.Fatalf("restoring an empty snapshot left %d reservations (total %d)", n, total)
	}
}

// TestSnapshotIsPointInTime: what is applied after Snapshot is not in it.
func TestSnapshotIsPointInTime(t *testing.T) {
	t.Parallel()
	f := populated(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	apply(t, f, 20, CmdDeleteFunction, DeleteFunctionCommand{Name: "full"})
	apply(t, f, 21, CmdPutFunction, PutFunctionCommand{Function: fullFunction("later"), Mode: PutCreate})
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	dst := NewFSM(FSMOptions{})
	if err := restore(dst, sink.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, ok := dst.Function("full"); !ok {
		t.Fatal("snapshot lost a function deleted after it was taken")
	}
	if _, ok := dst.Function("later"); ok {
		t.Fatal("snapshot holds a function created after it was taken")
	}
}

// TestRestoreReportsDifferences: a replica that catches up through a
// snapshot hears of every function added, changed or removed.
func TestRestoreReportsDifferences(t *testing.T) {
	t.Parallel()
	src := populated(t) // full@9, no-env@2, m@3, zz-last@4
	apply(t, src, 10, CmdDeleteFunction, DeleteFunctionCommand{Name: "m"})
	apply(t, src, 11, CmdPutFunction, PutFunctionCommand{Function: fullFunction("new"), Mode: PutCreate})
	data := persist(t, src)

	dst, rec := newRecordedFSM()
	for i, name := range []string{"full", "m", "no-env", "stale"} {
		apply(t, dst, uint64(i+1), CmdPutFunction, PutFunctionCommand{Function: fullFunction(name), Mode: PutCreate})
	}
	// dst's no-env@3 is a different revision from src's no-env@2.
	rec.take()
	if err := restore(dst, data); err != nil {
		t.Fatal(err)
	}
	want := []change{
		{"full@1", "full@9"},
		{"m@2", ""},
		{"", "new@11"},
		{"no-env@3", "no-env@2"},
		{"stale@4", ""},
		{"", "zz-last@4"},
	}
	if got := rec.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("changes:\n got %v\nwant %v", got, want)
	}
}

// TestRestoreSnapshotWithoutReservations: a snapshot written before
// reservations existed (functions only) restores, without reservations.
func TestRestoreSnapshotWithoutReservations(t *testing.T) {
	t.Parallel()
	old := snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
		enc.SetSortMapKeys(true) // as Persist writes
		for _, name := range []string{"a", "b"} {
			fc := fullFunction(name)
			fc.Revision = 3
			_ = enc.EncodeUint8(uint8(recordFunction))
			_ = enc.Encode(fc)
		}
		_ = enc.EncodeUint8(uint8(recordEnd))
		_ = enc.EncodeUint64(2)
	})
	f := populated(t)
	if err := restore(f, old); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Functions()); n != 2 {
		t.Fatalf("restored %d functions, want 2", n)
	}
	if r, total := reservations(f), f.ReservedTotal(); len(r) != 0 || total != 0 {
		t.Fatalf("reservations = %v (total %d), want none", r, total)
	}
	// A state without reservations persists to the same bytes as before.
	if again := persist(t, f); !bytes.Equal(again, old) {
		t.Fatal("a state without reservations persists differently from the old format")
	}
}

// snapshotBytes builds a snapshot by hand: header, then the given records.
func snapshotBytes(t testing.TB, version uint16, records func(enc *msgpack.Encoder)) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.Write(snapshotMagic[:])
	_ = binary.Write(&buf, binary.BigEndian, version)
	records(msgpack.NewEncoder(&buf))
	return buf.Bytes()
}

func TestRestoreRejectsGarbage(t *testing.T) {
	t.Parallel()
	valid := persist(t, populated(t))
	fn := func(enc *msgpack.Encoder, fc *rpc.FunctionConfig) {
		_ = enc.EncodeUint8(uint8(recordFunction))
		_ = enc.Encode(fc)
	}
	rsv := func(enc *msgpack.Encoder, v any) {
		_ = enc.EncodeUint8(uint8(recordReservation))
		_ = enc.Encode(v)
	}
	end := func(enc *msgpack.Encoder, n uint64) {
		_ = enc.EncodeUint8(uint8(recordEnd))
		_ = enc.EncodeUint64(n)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "reading header"},
		{"short header", valid[:5], "reading header"},
		{"bad magic", append([]byte("NOTNIMBS"), valid[8:]...), "bad magic"},
		{"json", []byte(`{"functions":[]}`), "bad magic"},
		{"newer version", snapshotBytes(t, 2, func(enc *msgpack.Encoder) { end(enc, 0) }), "unsupported snapshot version 2"},
		{"no records", snapshotBytes(t, 1, func(*msgpack.Encoder) {}), "truncated"},
		{"no end record", snapshotBytes(t, 1, func(enc *msgpack.Encoder) { fn(enc, fullFunction("a")) }), "truncated"},
		{"unknown record", snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
			_ = enc.EncodeUint8(42)
			_ = enc.Encode("x")
			end(enc, 1)
		}), "unknown record type 42"},
		{"record type not a number", snapshotBytes(t, 1, func(enc *msgpack.Encoder) { _ = enc.Encode("function") }), "record 0"},
		{"nil function", snapshotBytes(t, 1, func(enc *msgpack.Encoder) { fn(enc, nil); end(enc, 1) }), "without a name"},
		{"nameless function", snapshotBytes(t, 1, func(enc *msgpack.Encoder) { fn(enc, &rpc.FunctionConfig{}); end(enc, 1) }), "without a name"},
		{"function not a map", snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
			_ = enc.EncodeUint8(uint8(recordFunction))
			_ = enc.Encode([]int{1})
			end(enc, 1)
		}), "function:"},
		{"duplicate", snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
			fn(enc, fullFunction("a"))
			fn(enc, fullFunction("a"))
			end(enc, 2)
		}), `"a" appears twice`},
		{"wrong count", snapshotBytes(t, 1, func(enc *msgpack.Encoder) { fn(enc, fullFunction("a")); end(enc, 2) }), "counts 2 records, read 1"},
		{"end without count", snapshotBytes(t, 1, func(enc *msgpack.Encoder) { _ = enc.EncodeUint8(uint8(recordEnd)) }), "truncated"},
		{"data after end", append(bytes.Clone(valid), 0xc0), "data after end record"},
		{"reservation of no function", snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
			rsv(enc, reservationRecord{Name: "ghost", Reserved: 1})
			end(enc, 1)
		}), `"ghost", which is not a function before it`},
		{"reservation before its function", snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
			rsv(enc, reservationRecord{Name: "a", Reserved: 1})
			fn(enc, fullFunction("a"))
			end(enc, 2)
		}), "not a function before it"},
		{"reservation negative", snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
			fn(enc, fullFunction("a"))
			rsv(enc, reservationRecord{Name: "a", Reserved: -3})
			end(enc, 2)
		}), "negative"},
		{"reservation twice", snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
			fn(enc, fullFunction("a"))
			rsv(enc, reservationRecord{Name: "a", Reserved: 1})
			rsv(enc, reservationRecord{Name: "a", Reserved: 2})
			end(enc, 3)
		}), `"a" appears twice`},
		{"reservations overflow", snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
			fn(enc, fullFunction("a"))
			fn(enc, fullFunction("b"))
			rsv(enc, reservationRecord{Name: "a", Reserved: math.MaxInt})
			rsv(enc, reservationRecord{Name: "b", Reserved: 1})
			end(enc, 4)
		}), "overflow"},
		{"reservation nil", snapshotBytes(t, 1, func(enc *msgpack.Encoder) { rsv(enc, nil); end(enc, 1) }), "without a function name"},
		{"reservation nameless", snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
			rsv(enc, reservationRecord{Reserved: 1})
			end(enc, 1)
		}), "without a function name"},
		{"reservation not a map", snapshotBytes(t, 1, func(enc *msgpack.Encoder) { rsv(enc, "a"); end(enc, 1) }), "reservation:"},
		{"reservation truncated", snapshotBytes(t, 1, func(enc *msgpack.Encoder) {
			fn(enc, fullFunction("a"))
			_ = enc.EncodeUint8(uint8(recordReservation))
		}), "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, rec := newRecordedFSM()
			apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("keep"), Mode: PutCreate})
			apply(t, f, 2, CmdPutConcurrency, PutConcurrencyCommand{Name: "keep", Reserved: 4})
			rec.take()
			before := f.Functions()

			err := restore(f, tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Restore err = %v, want one containing %q", err, tt.want)
			}
			if !reflect.DeepEqual(f.Functions(), before) {
				t.Fatal("a failed Restore changed the state")
			}
			if r, total := reservations(f), f.ReservedTotal(); !reflect.DeepEqual(r, map[string]int{"keep": 4}) || total != 4 {
				t.Fatalf("a failed Restore changed the reservations: %v (total %d)", r, total)
			}
			if c := rec.take(); len(c) != 0 {
				t.Fatalf("a failed Restore called OnFunctionChange: %v", c)
			}
		})
	}
}

// TestRestoreRejectsEveryTruncation cuts a valid snapshot at every length.
func TestRestoreRejectsEveryTruncation(t *testing.T) {
	t.Parallel()
	valid := persist(t, populated(t))
	for n := 0; n < len(valid); n++ {
		if err := restore(NewFSM(FSMOptions{}), valid[:n]); err == nil {
			t.Fatalf("a snapshot cut to %d of %d bytes was accepted", n, len(valid))
		}
	}
}

// closeRecorder records whether Restore closed its reader.
type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestRestoreClosesReader(t *testing.T) {
	t.Parallel()
	for _, data := range [][]byte{persist(t, populated(t)), []byte("garbage")} {
		rc := &closeRecorder{Reader: bytes.NewReader(data)}
		_ = NewFSM(FSMOptions{}).Restore(rc)
		if !rc.closed {
			t.Fatal("Restore did not close its reader")
		}
	}
}

// failingSink fails its writes.
type failingSink struct{ bufferSink }

func (s *failingSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestPersistCancelsOnError(t *testing.T) {
	t.Parallel()
	snap, err := populated(t).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink failingSink
	if err := snap.Persist(&sink); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Persist err = %v", err)
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("sink cancelled=%v closed=%v, want cancelled only", sink.cancelled, sink.closed)
	}
}

// FuzzRestore: Restore never panics; a failed Restore changes nothing; a
// state it accepts persists and restores to the same thing.
func FuzzRestore(f *testing.F) {
	valid := persist(f, populated(f))
	f.Add(valid)
	f.Add(persist(f, NewFSM(FSMOptions{})))
	f.Add(persist(f, withEvents(f)))
	f.Add(persist(f, withVersions(f))) // versions, aliases, URLs (versions_test.go)
	f.Add(valid[:len(valid)/2])
	f.Add(append(bytes.Clone(valid[:10]), 0x01, 0xc0, 0xff, 0x00))
	f.Add([]byte("NMBSFSM\x00\x00\x01"))
	f.Add(snapshotBytes(f, 1, func(enc *msgpack.Encoder) {
		_ = enc.EncodeUint8(uint8(recordFunction))
		_ = enc.Encode(fullFunction("a"))
		_ = enc.EncodeUint8(uint8(recordReservation))
		_ = enc.Encode(reservationRecord{Name: "a", Reserved: 1})
		_ = enc.EncodeUint8(uint8(recordEnd))
		_ = enc.EncodeUint64(2)
	}))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := NewFSM(FSMOptions{})
		apply(t, fsm, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("keep"), Mode: PutCreate})
		apply(t, fsm, 2, CmdPutConcurrency, PutConcurrencyCommand{Name: "keep", Reserved: 4})
		before, beforeRes := fsm.Functions(), reservations(fsm)
		if err := restore(fsm, data); err != nil {
			if !reflect.DeepEqual(fsm.Functions(), before) || !reflect.DeepEqual(reservations(fsm), beforeRes) {
				t.Fatal("a failed Restore changed the state")
			}
			return
		}
		checkReservations(t, fsm)
		checkAsyncIndex(t, fsm)
		again := NewFSM(FSMOptions{})
		if err := restore(again, persist(t, fsm)); err != nil {
			t.Fatalf("re-restoring an accepted state: %v", err)
		}
		if !reflect.DeepEqual(again.Functions(), fsm.Functions()) || !reflect.DeepEqual(reservations(again), reservations(fsm)) ||
			!reflect.DeepEqual(allEvents(again), allEvents(fsm)) {
			t.Fatal("an accepted state does not round-trip")
		}
	})
}
