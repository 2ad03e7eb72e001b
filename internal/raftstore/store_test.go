package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func entries(from, to, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: term, Type: raft.LogCommand,
			Data: fmt.Appendf(nil, "entry %d term %d", i, term), AppendedAt: time.Unix(1700000000, int64(i))})
	}
	return out
}

func bounds(t *testing.T, s *Store) (uint64, uint64) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return first, last
}

func TestLogRoundTripAndRanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := open(t, path)
	if f, l := bounds(t, s); f != 0 || l != 0 {
		t.Fatalf("empty store: first %d last %d, want 0 0", f, l)
	}
	var got raft.Log
	if err := s.GetLog(1, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog on empty store: %v, want ErrLogNotFound", err)
	}
	want := entries(1, 100, 1)
	want[7].Extensions = []byte("ext")
	want[8].Data = nil
	want[9].AppendedAt = time.Time{}
	if err := s.StoreLogs(want); err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if err := s.GetLog(w.Index, &got); err != nil {
			t.Fatal(err)
		}
		if got.Index != w.Index || got.Term != w.Term || got.Type != w.Type || !bytes.Equal(got.Data, w.Data) ||
			!bytes.Equal(got.Extensions, w.Extensions) || !got.AppendedAt.Equal(w.AppendedAt) {
			t.Fatalf("entry %d: got %+v, want %+v", w.Index, got, *w)
		}
	}
	// A prefix, as after a snapshot; then a suffix, as on a conflict.
	if err := s.DeleteRange(1, 40); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(91, 100); err != nil {
		t.Fatal(err)
	}
	if f, l := bounds(t, s); f != 41 || l != 90 {
		t.Fatalf("after deletes: first %d last %d, want 41 90", f, l)
	}
	if err := s.GetLog(40, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("deleted entry 40: %v", err)
	}
	// Overwrite the tail with a new term's entries, reopen, read them back.
	if err := s.StoreLogs(entries(91, 95, 2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	if f, l := bounds(t, s); f != 41 || l != 95 {
		t.Fatalf("after reopen: first %d last %d, want 41 95", f, l)
	}
	if err := s.GetLog(93, &got); err != nil || got.Term != 2 || string(got.Data) != "entry 93 term 2" {
		t.Fatalf("entry 93 after reopen: %+v %v", got, err)
	}
}

func TestStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := open(t, path)
	if v, err := s.GetUint64([]byte("CurrentTerm")); v != 0 || err != nil {
		t.Fatalf("unset uint64: %d %v", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); len(v) != 0 || err != nil {
		t.Fatalf("unset value: %q %v", v, err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	if v, err := s.GetUint64([]byte("CurrentTerm")); v != 7 || err != nil {
		t.Fatalf("CurrentTerm after reopen: %d %v", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); string(v) != "node-2" || err != nil {
		t.Fatalf("LastVoteCand after reopen: %q %v", v, err)
	}
	if _, err := s.GetUint64([]byte("LastVoteCand")); err == nil {
		t.Fatal("GetUint64 of a 6-byte value: no error")
	}
}

func TestOpenLockedFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := open(t, path)
	defer s.Close()
	start := time.Now()
	if _, err := Open(path); err == nil {
		t.Fatal("second Open of a held store succeeded")
	}
	if time.Since(start) > time.Minute {
		t.Fatal("second Open waited instead of failing")
	}
}

func TestDecodeRejectsCorrupt(t *testing.T) {
	good := appendLog(nil, entries(1, 1, 3)[0])
	for name, v := range map[string][]byte{
		"empty":        {},
		"format":       append([]byte{9}, good[1:]...),
		"truncated":    good[:len(good)-1],
		"trailing":     append(bytes.Clone(good), 0),
		"huge length":  {formatV1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"only format":  {formatV1},
		"no extension": {formatV1, 1, 0, 0, 0},
	} {
		var l raft.Log
		if err := decodeLog(v, &l); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: %v, want errCorrupt", name, err)
		}
	}
}

func FuzzDecodeLog(f *testing.F) {
	f.Add(appendLog(nil, entries(5, 5, 2)[0]))
	f.Add(appendLog(nil, &raft.Log{Index: 1, Type: raft.LogConfiguration, Extensions: []byte{1, 2}}))
	f.Add([]byte{formatV1, 0x80})
	f.Fuzz(func(t *testing.T, v []byte) {
		var l raft.Log
		if err := decodeLog(v, &l); err != nil {
			return
		}
		if len(l.Data)+len(l.Extensions) > len(v) {
			t.Fatalf("decoded %d bytes from a %d-byte value", len(l.Data)+len(l.Extensions), len(v))
		}
		// What decodes encodes and decodes to the same entry.
		var again raft.Log
		if err := decodeLog(appendLog(nil, &l), &again); err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if again.Term != l.Term || again.Type != l.Type || !bytes.Equal(again.Data, l.Data) ||
			!bytes.Equal(again.Extensions, l.Extensions) || !again.AppendedAt.Equal(l.AppendedAt) {
			t.Fatalf("round trip differs: %+v then %+v", l, again)
		}
	})
}
