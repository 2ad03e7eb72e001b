package logstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"nimbus/rpc"
)

// testServerConfig bounds an embedded server for tests: many run in one
// process on a small machine.
func testServerConfig(t testing.TB, name string) ServerConfig {
	return ServerConfig{
		Name:      name,
		Dir:       t.TempDir(),
		MaxMemory: 16 << 20,
		MaxStore:  256 << 20,
	}
}

// devStore starts a standalone server and a Store on it.
func devStore(t testing.TB, opts Options) (*Server, *Store) {
	t.Helper()
	cfg := testServerConfig(t, "dev")
	cfg.Standalone = true
	srv, err := StartServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if opts.Node == "" {
		opts.Node = "n1"
	}
	opts.Connect = func() (*nats.Conn, error) { return srv.Connect(opts.Node) }
	if opts.GroupMaxBytes == 0 {
		opts.GroupMaxBytes = 8 << 20
	}
	st, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return srv, st
}

// waitPublished waits until the store has acknowledged n events.
func waitPublished(t testing.TB, st *Store, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for st.Stats().Published < n {
		if time.Now().After(deadline) {
			t.Fatalf("published %d of %d events (stats %+v)", st.Stats().Published, n, st.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readAll reads fn's whole log from after, following More.
func readAll(t testing.TB, st *Store, req rpc.ReadLogsRequest) []rpc.LogEvent {
	t.Helper()
	var out []rpc.LogEvent
	for {
		res, err := st.Read(context.Background(), &req)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Events...)
		if !res.More && len(res.Events) == 0 {
			return out
		}
		req.After = res.Next
	}
}

func TestAppendRead(t *testing.T) {
	_, st := devStore(t, Options{})
	now := time.Now().UnixMilli()
	var n int
	for i := 0; i < 50; i++ {
		evs := []rpc.LogEvent{{TimeMs: now + int64(i), RequestID: fmt.Sprintf("r%d", i%3), Line: fmt.Sprintf("line %d", i)}}
		if i%10 == 0 {
			evs = append(evs, rpc.LogEvent{TimeMs: now + int64(i), RequestID: "r0", Line: "START RequestId: r0 Version: $LATEST"})
		}
		n += len(evs)
		if err := st.Append("fn1", evs...); err != nil {
			t.Fatal(err)
		}
	}
	waitPublished(t, st, uint64(n))
	got := readAll(t, st, rpc.ReadLogsRequest{FunctionName: "fn1", Limit: 7})
	if len(got) != n {
		t.Fatalf("read %d events, want %d", len(got), n)
	}
	var last uint64
	i := 0
	for _, e := range got {
		if e.Seq <= last {
			t.Fatalf("cursor %d after %d", e.Seq, last)
		}
		last = e.Seq
		if e.Node != "n1" {
			t.Fatalf("node %q", e.Node)
		}
		if strings.HasPrefix(e.Line, "START") {
			if e.Stream != StreamPlatform {
				t.Fatalf("START line on stream %q", e.Stream)
			}
			continue
		}
		if want := fmt.Sprintf("line %d", i); e.Line != want || e.Stream != StreamStdout {
			t.Fatalf("event %d = %q on %q, want %q on stdout", i, e.Line, e.Stream, want)
		}
		i++
	}
	// By request id, by filter, by time.
	if got := readAll(t, st, rpc.ReadLogsRequest{FunctionName: "fn1", RequestID: "r1"}); len(got) != 17 {
		t.Fatalf("request r1: %d events, want 17", len(got))
	}
	if got := readAll(t, st, rpc.ReadLogsRequest{FunctionName: "fn1", FilterPattern: `"line 4" -"line 4 "`}); len(got) != 11 {
		t.Fatalf("filter: %d events, want 11 (line 4, 40-49)", len(got))
	}
	if got := readAll(t, st, rpc.ReadLogsRequest{FunctionName: "fn1", SinceMs: now + 45, UntilMs: now + 47, FilterPattern: "line"}); len(got) != 3 {
		t.Fatalf("time range: %d events, want 3", len(got))
	}
	if _, err := st.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "fn1", SinceMs: 2, UntilMs: 1}); err == nil {
		t.Fatal("since after until accepted")
	}
	if _, err := st.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "fn1", FilterPattern: `{ $.a = }`}); err == nil || !strings.Contains(err.Error(), "position 9") {
		t.Fatalf("bad pattern: %v, want an error at position 9", err)
	}
	// Unknown function: empty.
	if got := readAll(t, st, rpc.ReadLogsRequest{FunctionName: "nothing"}); len(got) != 0 {
		t.Fatalf("unknown function has %d events", len(got))
	}
}

func TestFollowWakes(t *testing.T) {
	_, st := devStore(t, Options{})
	done := make(chan *rpc.ReadLogsResponse, 1)
	errc := make(chan error, 1)
	go func() {
		res, err := st.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "f", WaitMs: 20_000})
		if err != nil {
			errc <- err
			return
		}
		done <- res
	}()
	// The reader may not have subscribed yet: append until it answers.
	for i := 0; ; i++ {
		st.Append("f", rpc.LogEvent{TimeMs: time.Now().UnixMilli(), Line: fmt.Sprintf("hello %d", i)})
		select {
		case res := <-done:
			if len(res.Events) == 0 || !strings.HasPrefix(res.Events[0].Line, "hello") {
				t.Fatalf("woke with %+v", res)
			}
			return
		case err := <-errc:
			t.Fatal(err)
		case <-time.After(100 * time.Millisecond):
		}
		if i > 300 {
			t.Fatal("the long poll never answered")
		}
	}
}

func TestDropsReported(t *testing.T) {
	// A store that cannot connect: everything past the buffer is dropped.
	block := make(chan struct{})
	srvCfg := testServerConfig(t, "late")
	srvCfg.Standalone = true
	srv, err := StartServer(srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	st, err := Open(Options{Node: "n1", BufferBytes: 4096, GroupMaxBytes: 8 << 20, Connect: func() (*nats.Conn, error) {
		<-block
		return srv.Connect("n1")
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	line := strings.Repeat("x", 100)
	for i := 0; i < 200; i++ {
		st.Append("loud", rpc.LogEvent{TimeMs: int64(i + 1), Line: line})
	}
	kept := uint64(4096 / (100 + eventOverhead))
	if s := st.Stats(); s.Dropped != 200-kept {
		t.Fatalf("dropped %d, want %d", s.Dropped, 200-kept)
	}
	close(block)
	waitPublished(t, st, kept+1)
	got := readAll(t, st, rpc.ReadLogsRequest{FunctionName: "loud"})
	if uint64(len(got)) != kept+1 {
		t.Fatalf("read %d events, want %d", len(got), kept+1)
	}
	lastEv := got[len(got)-1]
	if want := fmt.Sprintf("nimbus: %d lines dropped", 200-kept); lastEv.Line != want || lastEv.Stream != StreamPlatform {
		t.Fatalf("last line %q on %q, want %q on platform", lastEv.Line, lastEv.Stream, want)
	}
}

func TestRetention(t *testing.T) {
	_, st := devStore(t, Options{GroupMaxBytes: 64 << 10})
	ctx := context.Background()
	if _, err := st.PutRetention(ctx, "r", 2); err == nil || !strings.Contains(err.Error(), "enum value set") {
		t.Fatalf("2 days accepted: %v", err)
	}
	g, err := st.PutRetention(ctx, "r", 14)
	if err != nil {
		t.Fatal(err)
	}
	if g.RetentionInDays != 14 || g.LogGroupName != "/aws/lambda/r" {
		t.Fatalf("group %+v", g)
	}
	// Size retention: write 4x the bound; the oldest go, the newest stay.
	total := 0
	for i := 0; i < 256; i++ {
		st.Append("r", rpc.LogEvent{TimeMs: int64(i + 1), Line: fmt.Sprintf("%04d %s", i, noise(i, 1000))})
		total++
		if i%32 == 31 {
			waitPublished(t, st, uint64(total))
		}
	}
	waitPublished(t, st, uint64(total))
	g, err = st.Group(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if g.StoredBytes > 64<<10 || g.StoredBytes == 0 {
		t.Fatalf("stored %d bytes, bound 64 KiB", g.StoredBytes)
	}
	got := readAll(t, st, rpc.ReadLogsRequest{FunctionName: "r"})
	if len(got) == 0 || len(got) == total || !strings.HasPrefix(got[len(got)-1].Line, "0255 ") {
		t.Fatalf("kept %d of %d, last %.8q", len(got), total, got[len(got)-1].Line)
	}
	// What is kept is the newest lines, all of them, in order: retention
	// removed the oldest and nothing else.
	first := total - len(got)
	for i, e := range got {
		if want := fmt.Sprintf("%04d ", first+i); !strings.HasPrefix(e.Line, want) {
			t.Fatalf("kept line %d is %.8q, want %q", i, e.Line, want)
		}
	}
	// A cursor before what is kept resumes from the oldest, saying so.
	res, err := st.Read(ctx, &rpc.ReadLogsRequest{FunctionName: "r", After: cursorOf(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Expired || len(res.Events) == 0 || res.Events[0].Line != got[0].Line {
		t.Fatalf("expired cursor: expired=%v, %d events", res.Expired, len(res.Events))
	}
	if g, err = st.PutRetention(ctx, "r", 0); err != nil || g.RetentionInDays != 0 {
		t.Fatalf("delete retention: %+v %v", g, err)
	}
	groups, err := st.Groups(ctx)
	if err != nil || len(groups) != 1 || groups[0].FunctionName != "r" || groups[0].LastEventMs != 256 {
		t.Fatalf("groups %+v %v", groups, err)
	}
}

// noise returns n bytes of hex that do not compress, different for each i.
func noise(i, n int) string {
	var b strings.Builder
	h := sha256.Sum256([]byte(fmt.Sprint(i)))
	for b.Len() < n {
		h = sha256.Sum256(h[:])
		b.WriteString(hex.EncodeToString(h[:]))
	}
	return b.String()[:n]
}

// TestSinceMovesCursor: a read from a time after every stored line answers
// nothing, with a cursor past them, so a follower going on from it never
// prints the old lines.
func TestSinceMovesCursor(t *testing.T) {
	_, st := devStore(t, Options{})
	for i := 0; i < 3; i++ {
		st.Append("old", rpc.LogEvent{TimeMs: int64(i + 1), Line: "old line"})
		waitPublished(t, st, uint64(i+1))
	}
	res, err := st.Read(context.Background(), &rpc.ReadLogsRequest{FunctionName: "old", SinceMs: time.Now().Add(time.Minute).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 0 || res.Next == 0 {
		t.Fatalf("%d events, next %d; want none and a cursor past the old lines", len(res.Events), res.Next)
	}
	st.Append("old", rpc.LogEvent{TimeMs: time.Now().UnixMilli(), Line: "new line"})
	waitPublished(t, st, 4)
	got := readAll(t, st, rpc.ReadLogsRequest{FunctionName: "old", After: res.Next})
	if len(got) != 1 || got[0].Line != "new line" {
		t.Fatalf("after the cursor: %+v", got)
	}
}
