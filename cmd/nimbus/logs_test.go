package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// chatty writes a plain line, a JSON line and a line on stderr per
// invocation.
const chatty = `#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  BODY="$(curl -sS -LD "$HEADERS" "$API/invocation/next")"
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  echo "plain line $BODY"
  echo "{\"level\":\"error\",\"latency\":$BODY}"
  echo "to stderr" >&2
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d '"ok"'
done
`

func TestCLILogs(t *testing.T) {
	t.Parallel()
	addr := startNode(t)
	dir := filepath.Join(t.TempDir(), "chatty")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "bootstrap", chatty, 0o755)
	run := func(args ...string) result { return nimbus(append(args, "--addr", addr)...) }
	// A long timeout: on a loaded machine the default 3 s can run out
	// while the lines are written, and a timed-out sandbox's second cold
	// start adds an INIT_START the count below does not expect.
	if r := run("fn", "create", "chatty", "--dir", dir, "--timeout", "60"); r.code != 0 {
		t.Fatalf("create: %s", r.stderr)
	}
	for _, p := range []string{"150", "7"} {
		if r := run("invoke", "chatty", "--payload", p); r.code != 0 {
			t.Fatalf("invoke: %s %s", r.stdout, r.stderr)
		}
	}

	// JSON lines with the contract's keys.
	r := run("logs", "tail", "chatty", "--format", "json")
	if r.code != 0 {
		t.Fatalf("tail: %s", r.stderr)
	}
	var events []map[string]string
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var ev map[string]string
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		events = append(events, ev)
	}
	// INIT_START for the cold start, then START, 3 lines, END, REPORT per
	// invocation.
	if len(events) != 13 || !strings.HasPrefix(events[0]["message"], "INIT_START") {
		t.Fatalf("%d events, want INIT_START and 12 more:\n%s", len(events), r.stdout)
	}
	e := events[2]
	if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", e["timestamp"]); err != nil || e["function"] != "chatty" ||
		e["stream"] != "stdout" || e["message"] != "plain line 150" || e["node"] == "" || len(e["requestId"]) != 36 {
		t.Fatalf("event %v", e)
	}
	if events[1]["stream"] != "platform" {
		t.Fatalf("START on stream %q", events[1]["stream"])
	}

	// Filters, request ids and time ranges.
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"--filter", `{ $.latency > 100 }`}, 1},
		{[]string{"--filter", `?plain ?stderr`}, 4},
		{[]string{"--filter", `plain -150`}, 1},
		{[]string{"--filter", `%^(START|END)%`}, 4},
		{[]string{"--request-id", e["requestId"]}, 6},
		{[]string{"--since", "1h", "--until", time.Now().Add(time.Hour).Format(time.RFC3339)}, 13},
		{[]string{"--since", "2h", "--until", "1h"}, 0},
	} {
		r := run(append([]string{"logs", "tail", "chatty", "--format", "short"}, c.args...)...)
		if r.code != 0 {
			t.Fatalf("tail %v: %s", c.args, r.stderr)
		}
		if n := strings.Count(r.stdout, "\n"); n != c.want {
			t.Errorf("tail %v printed %d lines, want %d:\n%s", c.args, n, c.want, r.stdout)
		}
	}

	// Bad input.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", "tail", "nosuch"}, "ResourceNotFoundException"},
		{[]string{"logs", "tail", "chatty", "--filter", `{ $.a = }`}, "position 9"},
		{[]string{"logs", "tail", "chatty", "--since", "1m", "--until", "1h"}, "after --until"},
		{[]string{"logs", "tail", "chatty", "--since", "yesterday"}, "RFC 3339"},
		{[]string{"logs", "tail", "chatty", "--format", "xml"}, "--format"},
		{[]string{"logs", "put-retention", "chatty", "--days", "2"}, "enum value set"},
		{[]string{"logs", "put-retention", "chatty"}, "--days is required"},
		{[]string{"logs", "put-retention", "nosuch", "--days", "7"}, "ResourceNotFoundException"},
	} {
		r := run(c.args...)
		if r.code != exitPlatformError || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, r.code, r.stderr, c.want)
		}
	}

	// Retention and groups.
	if r := run("logs", "put-retention", "chatty", "--days", "14"); r.code != 0 || !strings.Contains(r.stdout, "14 days") {
		t.Fatalf("put-retention: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = run("logs", "groups", "-o", "json")
	var groups struct {
		LogGroups []struct {
			LogGroupName    string
			StoredBytes     int64
			RetentionInDays int
			FirstEventMs    int64 `json:"firstEventTimestamp"`
			LastEventMs     int64 `json:"lastEventTimestamp"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &groups); err != nil || len(groups.LogGroups) != 1 {
		t.Fatalf("groups: %v\n%s", err, r.stdout)
	}
	if g := groups.LogGroups[0]; g.LogGroupName != "/aws/lambda/chatty" || g.StoredBytes == 0 || g.RetentionInDays != 14 || g.FirstEventMs == 0 || g.LastEventMs < g.FirstEventMs {
		t.Fatalf("group %+v", g)
	}
	if r := run("logs", "delete-retention", "chatty"); r.code != 0 {
		t.Fatalf("delete-retention: %s", r.stderr)
	}
	if r := run("logs", "groups"); !strings.Contains(r.stdout, "never expire") {
		t.Fatalf("groups after delete-retention:\n%s", r.stdout)
	}

	// Follow: a line written after the follower started is printed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		c := &cli{addr: addr, stdout: &out, stderr: &out}
		o := &tailOptions{function: "chatty", follow: true, format: "short"}
		if err := c.tailLogs(ctx, o); err != nil {
			done <- 1
			return
		}
		done <- 0
	}()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out.String(), "plain line 4242") {
		if time.Now().After(deadline) {
			t.Fatalf("the follower never printed the new line:\n%s", out.String())
		}
		if r := run("invoke", "chatty", "--payload", "4242"); r.code != 0 {
			t.Fatalf("invoke: %s", r.stderr)
		}
		wait := time.Now().Add(5 * time.Second)
		for time.Now().Before(wait) && !strings.Contains(out.String(), "plain line 4242") {
			time.Sleep(10 * time.Millisecond)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("follow ended with an error:\n%s", out.String())
	}
	// It started from the oldest line: each line once, in order.
	if n := strings.Count(out.String(), "plain line 150\n"); n != 1 {
		t.Fatalf("the follower printed an old line %d times, want once:\n%s", n, out.String())
	}
	if i, j := strings.Index(out.String(), "plain line 150"), strings.Index(out.String(), "plain line 7\n"); i < 0 || j < i {
		t.Fatalf("the follower's lines are out of order:\n%s", out.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
