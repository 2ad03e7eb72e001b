package logstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"nimbus/rpc"
)

// segmentFiles lists the segment files of a function, oldest first.
func segmentFiles(t *testing.T, dir, fn string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, fn, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestRestartKeepsSeqAndLines(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := Options{SegmentBytes: 128}
	s := openStore(t, dir, opts)
	for i := range 20 {
		mustAppend(t, s, "fn", line(int64(i), "r", fmt.Sprintf("before %d", i)))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentFiles(t, dir, "fn")); n < 3 {
		t.Fatalf("%d segments, want several", n)
	}

	s = openStore(t, dir, opts)
	mustAppend(t, s, "fn", line(100, "r", "after"))
	resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"})
	checkSeqs(t, resp.Events, 1)
	if len(resp.Events) != 21 || resp.Events[20].Line != "after" || resp.Events[3].Line != "before 3" {
		t.Fatalf("after restart: %v", lines(resp.Events))
	}
	// A follower's cursor from before the restart still works.
	resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn", After: 19})
	checkSeqs(t, resp.Events, 20)
}

// TestUnflushedLinesReachDisk checks the background flush: without Close,
// the files hold the lines after a flush interval.
func TestUnflushedLinesReachDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	mustAppend(t, s, "fn", line(1, "", "buffered"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		files := segmentFiles(t, dir, "fn")
		if len(files) == 1 {
			if b, _ := os.ReadFile(files[0]); strings.Contains(string(b), "buffered") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("line never flushed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTornTailTruncated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tear func(path string, size int64) error
		want int // lines kept of 5
	}{
		{"half a record", func(p string, size int64) error { return os.Truncate(p, size-3) }, 4},
		{"garbage appended", func(p string, _ int64) error { return appendFile(p, []byte("\x10\x00\x00\x00garbage")) }, 5},
		{"huge length appended", func(p string, _ int64) error { return appendFile(p, []byte{0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4}) }, 5},
		{"bit flip in last record", func(p string, size int64) error { return flipByte(p, size-2) }, 4},
		{"torn magic", func(p string, _ int64) error { return os.Truncate(p, 3) }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openStore(t, dir, Options{})
			for i := range 5 {
				mustAppend(t, s, "fn", line(int64(i), "", fmt.Sprintf("l%d", i)))
			}
			s.Close()
			path := segmentFiles(t, dir, "fn")[0]
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.tear(path, fi.Size()); err != nil {
				t.Fatal(err)
			}

			s = openStore(t, dir, Options{})
			resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"})
			checkSeqs(t, resp.Events, 1)
			if len(resp.Events) != tt.want {
				t.Fatalf("%d lines survived, want %d", len(resp.Events), tt.want)
			}
			mustAppend(t, s, "fn", line(9, "", "next"))
			resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"})
			checkSeqs(t, resp.Events, 1)
			if got := resp.Events[len(resp.Events)-1]; got.Line != "next" || got.Seq != uint64(tt.want+1) {
				t.Fatalf("appended after recovery: %+v", got)
			}
			s.Close()
			// The store is whole again: a second Open sees the same.
			s = openStore(t, dir, Options{})
			if resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"}); len(resp.Events) != tt.want+1 {
				t.Fatalf("second open: %d lines", len(resp.Events))
			}
		})
	}
}

func appendFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func flipByte(path string, off int64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b[off] ^= 0xff
	return os.WriteFile(path, b, 0o644)
}

func TestOpenRefusesForeignSegment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "fn"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(segmentPath(filepath.Join(dir, "fn"), 1), []byte("NOT A SEGMENT FILE"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir, Options{}); err == nil {
		s.Close()
		t.Fatal("Open accepted a file that is not a segment")
	}
}

func TestRetentionByBytes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1024, RetainBytes: 4096}
	s := openStore(t, dir, opts)
	text := strings.Repeat("x", 90)
	for i := range 400 {
		mustAppend(t, s, "fn", line(0, "", fmt.Sprintf("%03d %s", i, text)))
	}
	var total int64
	files := segmentFiles(t, dir, "fn")
	s.Close()
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		total += fi.Size()
	}
	if total > opts.RetainBytes {
		t.Fatalf("%d bytes on disk in %d files, want at most %d", total, len(files), opts.RetainBytes)
	}

	s = openStore(t, dir, opts)
	resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"})
	if len(resp.Events) == 0 || len(resp.Events) > 45 || resp.Events[0].Seq == 1 {
		t.Fatalf("kept %d events from Seq %d", len(resp.Events), resp.Events[0].Seq)
	}
	checkSeqs(t, resp.Events, resp.Events[0].Seq)
	if last := resp.Events[len(resp.Events)-1]; last.Seq != 400 || !strings.HasPrefix(last.Line, "399 ") {
		t.Fatalf("newest kept: %+v", last.Seq)
	}
}

func TestRetentionByAge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := Options{SegmentBytes: 256, RetainAge: time.Hour}
	s := openStore(t, dir, opts)
	now := time.Now()
	old := now.Add(-2 * time.Hour).UnixMilli()
	pad := strings.Repeat("p", 100) // two or three lines per segment
	for i := range 10 {
		ev := rpc.LogEvent{TimeMs: old, Line: fmt.Sprintf("old %d %s", i, pad)}
		mustAppend(t, s, "old", ev)
		mustAppend(t, s, "mixed", ev)
	}
	for i := range 10 {
		mustAppend(t, s, "mixed", rpc.LogEvent{TimeMs: now.UnixMilli(), Line: fmt.Sprintf("new %d", i)})
	}
	s.expire(now)

	resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "old"})
	if len(resp.Events) != 0 {
		t.Fatalf("expired lines still read: %v", lines(resp.Events))
	}
	resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "mixed"})
	if len(resp.Events) < 10 || resp.Events[0].Seq == 1 {
		t.Fatalf("mixed after expiry: %d events from Seq %d", len(resp.Events), resp.Events[0].Seq)
	}
	checkSeqs(t, resp.Events, resp.Events[0].Seq)
	if got := resp.Events[len(resp.Events)-10].Line; got != "new 0" {
		t.Fatalf("new lines not all kept: %q", got)
	}
	if n := len(segmentFiles(t, dir, "old")); n != 1 {
		t.Fatalf("old: %d segment files, want the one empty file that keeps the next Seq", n)
	}

	// The next Seq survives a restart even though every line expired.
	s.Close()
	s = openStore(t, dir, opts)
	mustAppend(t, s, "old", rpc.LogEvent{TimeMs: now.UnixMilli(), Line: "fresh"})
	resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "old"})
	if len(resp.Events) != 1 || resp.Events[0].Seq != 11 {
		t.Fatalf("after expiry and restart: %+v", resp.Events)
	}
}

func TestTail(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{})
	mustAppend(t, s, "fn",
		line(1, "A", "START RequestId: A Version: $LATEST"),
		line(1, "B", "START RequestId: B Version: $LATEST"),
		line(2, "A", "a1"),
		line(2, "B", "b1"),
		line(3, "A", "a2"),
		line(4, "A", "END RequestId: A"),
	)
	mustAppend(t, s, "other", line(1, "A", "not mine"))
	tests := []struct {
		fn, rid string
		max     int
		want    string
	}{
		{"fn", "A", 4096, "START RequestId: A Version: $LATEST\na1\na2\nEND RequestId: A"},
		{"fn", "B", 4096, "START RequestId: B Version: $LATEST\nb1"},
		{"fn", "A", 19, "a2\nEND RequestId: A"},
		{"fn", "A", 3, ": A"},
		{"fn", "A", 0, ""},
		{"fn", "C", 4096, ""},
		{"fn", "", 4096, ""},
		{"nobody", "A", 4096, ""},
	}
	for _, tt := range tests {
		if got := s.Tail(tt.fn, tt.rid, tt.max); got != tt.want {
			t.Errorf("Tail(%s, %s, %d) = %q, want %q", tt.fn, tt.rid, tt.max, got, tt.want)
		}
	}
	mustAppend(t, s, "fn", line(5, "U", "ünï"))
	if got := s.Tail("fn", "U", 4); got != "nï" {
		t.Errorf("Tail cut inside a rune: %q", got)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	mustAppend(t, s, "fn", line(1, "r", "a"), line(2, "r", "b"))
	mustAppend(t, s, "keep", line(1, "r", "k"))
	if err := s.Delete("fn"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("never-logged"); err != nil {
		t.Fatalf("Delete of a function with no log: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "fn")); !os.IsNotExist(err) {
		t.Fatalf("directory left: %v", err)
	}
	if resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"}); len(resp.Events) != 0 {
		t.Fatalf("read after delete: %v", resp.Events)
	}
	if got := s.Tail("fn", "r", 100); got != "" {
		t.Fatalf("Tail after delete: %q", got)
	}
	mustAppend(t, s, "fn", line(3, "r", "again"))
	resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"})
	if len(resp.Events) != 1 || resp.Events[0].Seq != 1 || resp.Events[0].Line != "again" {
		t.Fatalf("new log after delete: %+v", resp.Events)
	}
	s.Close()
	s = openStore(t, dir, Options{})
	if resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "keep"}); len(resp.Events) != 1 {
		t.Fatalf("other function's log: %v", resp.Events)
	}
	if resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"}); len(resp.Events) != 1 {
		t.Fatalf("recreated log after restart: %v", resp.Events)
	}
}

func TestOpenRemovesInterruptedDelete(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tomb := filepath.Join(dir, tombPrefix+"fn-1-1")
	if err := os.MkdirAll(tomb, 0o755); err != nil {
		t.Fatal(err)
	}
	openStore(t, dir, Options{})
	if _, err := os.Stat(tomb); !os.IsNotExist(err) {
		t.Fatalf("tomb left: %v", err)
	}
}

// TestReadOlderThanWindow reads lines that have left the recent window, so
// they come from the files while Appends go on.
func TestReadOlderThanWindow(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{SegmentBytes: 64 << 10})
	const n = windowLines * 3
	for i := range n {
		mustAppend(t, s, "fn", line(int64(i), "", fmt.Sprint(i)))
	}
	var after uint64
	got := 0
	for {
		resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn", After: after, Limit: 777})
		if len(resp.Events) == 0 {
			break
		}
		checkSeqs(t, resp.Events, after+1)
		got += len(resp.Events)
		after = resp.Next
	}
	if got != n {
		t.Fatalf("read %d lines, want %d", got, n)
	}
}

// TestIdleLogReleased checks that a quiet log gives back its file and
// memory, and works on afterwards.
func TestIdleLogReleased(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{})
	mustAppend(t, s, "fn", line(1, "r", "a"))
	for range idlePasses + 1 { // the first pass sees the Append
		s.expire(time.Now())
	}
	fl, _ := s.lookup("fn", false)
	fl.mu.Lock()
	released := fl.f == nil && fl.w == nil && len(fl.win.live()) == 0
	fl.mu.Unlock()
	if !released {
		t.Fatal("idle log kept its file or window")
	}
	if resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"}); len(resp.Events) != 1 || resp.Events[0].Line != "a" {
		t.Fatalf("read of an idle log: %+v", resp.Events)
	}
	mustAppend(t, s, "fn", line(2, "r", "b"))
	resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"})
	checkSeqs(t, resp.Events, 1)
	if len(resp.Events) != 2 || s.Tail("fn", "r", 100) != "b" {
		t.Fatalf("after idle: %v, tail %q", lines(resp.Events), s.Tail("fn", "r", 100))
	}
}
