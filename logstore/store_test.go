package logstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"nimbus/rpc"
)

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// epoch is the time the tests' lines are stamped relative to: now, so that
// the age retention (7 days by default, applied at Open) keeps them.
var epoch = time.Now().UnixMilli()

// line is an event ms milliseconds after epoch.
func line(ms int64, rid, text string) rpc.LogEvent {
	return rpc.LogEvent{TimeMs: epoch + ms, RequestID: rid, Line: text}
}

func mustAppend(t testing.TB, s *Store, fn string, evs ...rpc.LogEvent) {
	t.Helper()
	if err := s.Append(fn, evs...); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func mustRead(t testing.TB, s *Store, req rpc.ReadLogsRequest) *rpc.ReadLogsResponse {
	t.Helper()
	resp, err := s.Read(context.Background(), &req)
	if err != nil {
		t.Fatalf("Read(%+v): %v", req, err)
	}
	return resp
}

// waitForWaiter polls until a Read waits on fn's log, so that a test
// exercises the wake-up rather than finding the lines at once.
func waitForWaiter(t *testing.T, s *Store, fn string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.RLock()
		fl := s.funcs[fn]
		s.mu.RUnlock()
		if fl != nil {
			fl.mu.Lock()
			waiting := fl.wake != nil
			fl.mu.Unlock()
			if waiting {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Read waits on %s", fn)
		}
		time.Sleep(time.Millisecond)
	}
}

// lines returns the Line of each event.
func lines(evs []rpc.LogEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Line
	}
	return out
}

// checkSeqs fails unless evs have Seqs from, from+1, ...
func checkSeqs(t *testing.T, evs []rpc.LogEvent, from uint64) {
	t.Helper()
	for i, ev := range evs {
		if ev.Seq != from+uint64(i) {
			t.Fatalf("event %d has Seq %d, want %d (all: %v)", i, ev.Seq, from+uint64(i), evs)
		}
	}
}

func TestAppendReadOrderAndCursor(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{})
	mustAppend(t, s, "fn", rpc.LogEvent{Seq: 99, TimeMs: epoch + 1, RequestID: "r1", Line: "a"}, line(2, "r1", "b"))
	mustAppend(t, s, "fn", line(3, "r2", "c"))
	mustAppend(t, s, "other", line(4, "", "x"))
	mustAppend(t, s, "fn") // no events: nothing happens

	resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"})
	checkSeqs(t, resp.Events, 1)
	if got := strings.Join(lines(resp.Events), ","); got != "a,b,c" || resp.Next != 3 {
		t.Fatalf("got %s next %d, want a,b,c next 3", got, resp.Next)
	}
	if ev := resp.Events[0]; ev.TimeMs != epoch+1 || ev.RequestID != "r1" {
		t.Fatalf("fields not kept: %+v", ev)
	}

	resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn", After: 1})
	if got := strings.Join(lines(resp.Events), ","); got != "b,c" || resp.Next != 3 {
		t.Fatalf("after 1: got %s next %d", got, resp.Next)
	}
	resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn", After: 3})
	if len(resp.Events) != 0 || resp.Next != 3 {
		t.Fatalf("at the end: got %v next %d", resp.Events, resp.Next)
	}
	resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn", After: 50})
	if len(resp.Events) != 0 || resp.Next != 50 {
		t.Fatalf("past the end: got %v next %d, want none and After kept", resp.Events, resp.Next)
	}
	resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "other"})
	checkSeqs(t, resp.Events, 1)
	resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "nobody"})
	if len(resp.Events) != 0 || resp.Next != 0 {
		t.Fatalf("unknown function: %+v", resp)
	}
}

func TestSinceAndLimit(t *testing.T) {
	t.Parallel()
	// Run against the window and against the files (after a restart the
	// window is empty).
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openStore(t, dir, Options{SegmentBytes: 512})
			now := epoch + 100
			for i := range 100 {
				mustAppend(t, s, "fn", line(int64(i), "r", fmt.Sprintf("line %d", i)))
			}
			if restart {
				s.Close()
				s = openStore(t, dir, Options{SegmentBytes: 512})
			}
			resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn", SinceMs: now - 10})
			checkSeqs(t, resp.Events, 91)
			if len(resp.Events) != 10 || resp.Next != 100 {
				t.Fatalf("since: %d events, next %d", len(resp.Events), resp.Next)
			}
			resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn", Limit: 7, After: 20})
			checkSeqs(t, resp.Events, 21)
			if len(resp.Events) != 7 || resp.Next != 27 {
				t.Fatalf("limit: %d events, next %d", len(resp.Events), resp.Next)
			}
			resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn", Limit: 5, SinceMs: now - 30, After: 90})
			checkSeqs(t, resp.Events, 91)
			if len(resp.Events) != 5 {
				t.Fatalf("since+after+limit: %d events", len(resp.Events))
			}
			resp = mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn", SinceMs: now + 1})
			if len(resp.Events) != 0 || resp.Next != 0 {
				t.Fatalf("since the future: %+v", resp)
			}
		})
	}
}

func TestReadLimitDefaults(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{})
	evs := make([]rpc.LogEvent, 12000)
	for i := range evs {
		evs[i] = line(int64(i), "", "x")
	}
	mustAppend(t, s, "fn", evs...)
	for _, tt := range []struct{ limit, want int }{{0, DefaultReadLimit}, {-3, DefaultReadLimit}, {20000, MaxReadLimit}, {10, 10}} {
		resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn", Limit: tt.limit})
		if len(resp.Events) != tt.want {
			t.Errorf("Limit %d: %d events, want %d", tt.limit, len(resp.Events), tt.want)
		}
		checkSeqs(t, resp.Events, 1)
	}
}

func TestLongPollWakesOnAppend(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{})
	mustAppend(t, s, "fn", line(1, "", "old"))
	got := make(chan *rpc.ReadLogsResponse, 1)
	go func() {
		resp, err := s.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "fn", After: 1, WaitMs: 10000})
		if err != nil {
			t.Errorf("Read: %v", err)
		}
		got <- resp
	}()
	// A follower of a function with no log yet waits too.
	gotNew := make(chan *rpc.ReadLogsResponse, 1)
	go func() {
		resp, _ := s.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "fresh", WaitMs: 10000})
		gotNew <- resp
	}()
	waitForWaiter(t, s, "fn")
	waitForWaiter(t, s, "fresh")
	mustAppend(t, s, "fn", line(2, "", "new"))
	mustAppend(t, s, "fresh", line(2, "", "first"))
	for _, c := range []struct {
		ch   chan *rpc.ReadLogsResponse
		want string
		next uint64
	}{{got, "new", 2}, {gotNew, "first", 1}} {
		select {
		case resp := <-c.ch:
			if resp == nil || len(resp.Events) != 1 || resp.Events[0].Line != c.want || resp.Next != c.next {
				t.Fatalf("woken read: %+v, want %s", resp, c.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Read not woken by Append")
		}
	}
}

func TestLongPollSkipsNonMatchingLines(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{})
	got := make(chan *rpc.ReadLogsResponse, 1)
	go func() {
		resp, _ := s.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "fn", SinceMs: epoch + 1000, WaitMs: 10000})
		got <- resp
	}()
	waitForWaiter(t, s, "fn")
	mustAppend(t, s, "fn", line(5, "", "too old"))
	mustAppend(t, s, "fn", line(2000, "", "recent"))
	select {
	case resp := <-got:
		if len(resp.Events) != 1 || resp.Events[0].Line != "recent" || resp.Next != 2 {
			t.Fatalf("got %+v", resp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read not woken")
	}
}

func TestLongPollTimesOut(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{})
	mustAppend(t, s, "fn", line(1, "", "a"))
	start := time.Now()
	resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn", After: 1, WaitMs: 60})
	if d := time.Since(start); d < 60*time.Millisecond || d > 5*time.Second {
		t.Fatalf("waited %v, want about 60ms", d)
	}
	if len(resp.Events) != 0 || resp.Next != 1 {
		t.Fatalf("timed-out read: %+v", resp)
	}
}

func TestLongPollContextCancel(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Read(ctx, &rpc.ReadLogsRequest{FunctionName: "fn", WaitMs: 60000})
		errc <- err
	}()
	waitForWaiter(t, s, "fn")
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read ignored the cancelled context")
	}
}

func TestCloseWakesReadersAndRefusesCalls(t *testing.T) {
	t.Parallel()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "fn", WaitMs: 60000})
		errc <- err
	}()
	waitForWaiter(t, s, "fn")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting Read: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the Read")
	}
	if err := s.Append("fn", line(1, "", "x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := s.Delete("fn"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Delete after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestInvalidNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	for _, name := range []string{"", "../escape", "a/b", ".deleted-x", strings.Repeat("n", 65)} {
		if err := s.Append(name, line(1, "", "x")); !errors.Is(err, rpc.ErrInvalidParameterValue) {
			t.Errorf("Append(%q): %v", name, err)
		}
		if _, err := s.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: name}); !errors.Is(err, rpc.ErrInvalidParameterValue) {
			t.Errorf("Read(%q): %v", name, err)
		}
		if err := s.Delete(name); !errors.Is(err, rpc.ErrInvalidParameterValue) {
			t.Errorf("Delete(%q): %v", name, err)
		}
		if got := s.Tail(name, "r", 100); got != "" {
			t.Errorf("Tail(%q) = %q", name, got)
		}
	}
	if _, err := s.Read(context.Background(), nil); !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Errorf("Read(nil): %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape")); !os.IsNotExist(err) {
		t.Errorf("a path escaped the store: %v", err)
	}
}

func TestLongLineTruncated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	long := strings.Repeat("é", maxLineBytes) // twice the limit in bytes
	mustAppend(t, s, "fn", line(1, strings.Repeat("r", 2000), long), line(2, "", "short"))
	check := func(s *Store) {
		resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: "fn"})
		if len(resp.Events) != 2 {
			t.Fatalf("%d events", len(resp.Events))
		}
		ev := resp.Events[0]
		if len(ev.Line) != maxLineBytes || !strings.HasPrefix(long, ev.Line) || len(ev.RequestID) != maxRequestIDBytes {
			t.Fatalf("line %d bytes, request id %d bytes", len(ev.Line), len(ev.RequestID))
		}
		if resp.Events[1].Line != "short" {
			t.Fatalf("next line: %q", resp.Events[1].Line)
		}
	}
	check(s)
	s.Close()
	check(openStore(t, dir, Options{}))
}

func TestConcurrentAppends(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, Options{SegmentBytes: 4096})
	const writers, per = 8, 300
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn := []string{"a", "b"}[w%2]
			for i := range per {
				if err := s.Append(fn, line(int64(i), fmt.Sprint(w), fmt.Sprintf("%d %d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// A reader follows "a" while the writers run.
	var followed []rpc.LogEvent
	done := make(chan struct{})
	go func() {
		defer close(done)
		var after uint64
		for len(followed) < writers/2*per {
			resp, err := s.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "a", After: after, Limit: 50, WaitMs: 5000})
			if err != nil || len(resp.Events) == 0 {
				t.Errorf("follow: %v, %d events", err, len(resp.Events))
				return
			}
			followed = append(followed, resp.Events...)
			after = resp.Next
		}
	}()
	wg.Wait()
	<-done
	checkSeqs(t, followed, 1)

	check := func(s *Store) {
		for _, fn := range []string{"a", "b"} {
			var all []rpc.LogEvent
			var after uint64
			for {
				resp := mustRead(t, s, rpc.ReadLogsRequest{FunctionName: fn, After: after, Limit: MaxReadLimit})
				if len(resp.Events) == 0 {
					break
				}
				all, after = append(all, resp.Events...), resp.Next
			}
			if len(all) != writers/2*per {
				t.Fatalf("%s: %d events, want %d", fn, len(all), writers/2*per)
			}
			checkSeqs(t, all, 1)
			// Each writer's lines keep their order.
			next := map[string]int{}
			for _, ev := range all {
				var w, i int
				fmt.Sscanf(ev.Line, "%d %d", &w, &i)
				if i != next[ev.RequestID] {
					t.Fatalf("%s: writer %s line %d out of order", fn, ev.RequestID, i)
				}
				next[ev.RequestID]++
			}
		}
	}
	check(s)
	s.Close()
	check(openStore(t, dir, Options{SegmentBytes: 4096}))
}

// BenchmarkAppend measures the hot path: one invocation's worth of lines
// appended one call at a time, as the node does, spread over functions.
func BenchmarkAppend(b *testing.B) {
	s := openStore(b, b.TempDir(), Options{})
	ev := line(0, "8f5e0a8c-7d5b-4b4e-9b8e-0c6f1e2d3a4b", "2024-01-01T00:00:00.000Z\tINFO\tprocessed order 12345 in 3.2ms")
	fns := []string{"fn-0", "fn-1", "fn-2", "fn-3"}
	b.ReportAllocs()
	b.SetBytes(int64(len(ev.Line)))
	for i := 0; b.Loop(); i++ {
		if err := s.Append(fns[i&3], ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendParallel(b *testing.B) {
	s := openStore(b, b.TempDir(), Options{})
	ev := line(0, "8f5e0a8c-7d5b-4b4e-9b8e-0c6f1e2d3a4b", "2024-01-01T00:00:00.000Z\tINFO\tprocessed order 12345 in 3.2ms")
	b.ReportAllocs()
	b.SetBytes(int64(len(ev.Line)))
	var n sync.Mutex
	next := 0
	b.RunParallel(func(pb *testing.PB) {
		n.Lock()
		fn := fmt.Sprintf("fn-%d", next%16)
		next++
		n.Unlock()
		for pb.Next() {
			if err := s.Append(fn, ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
