package node

import (
	"strings"
	"testing"

	"nimbus/rpc"
)

// TestLogsFollow checks Logs.Read as `logs tail --follow` uses it: a long
// poll with nothing new answers empty when its wait ends, and a long poll
// started before an invocation returns that invocation's lines, all of them
// by polling on from the cursor it returns.
func TestLogsFollow(t *testing.T) {
	t.Parallel()
	_, cl := startNode(t, t.TempDir())
	ctx := ctxT(t)
	create(t, cl, "follow", behaveZip(t, "v1"), nil)
	first := invoke(t, cl, "follow", `"first"`)
	invocationLog(t, cl, "follow", first.RequestID)
	cursor := uint64(0)
	for _, e := range readAll(t, cl, "follow") {
		cursor = max(cursor, e.Seq)
	}

	// Nothing new: the wait ends with no events and the cursor unchanged.
	res, err := cl.ReadLogs(ctx, &rpc.ReadLogsRequest{FunctionName: "follow", After: cursor, WaitMs: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 0 || res.Next != cursor {
		t.Fatalf("idle long poll returned %d events, next %d (cursor %d)", len(res.Events), res.Next, cursor)
	}

	// A follower long-polls from the cursor; the invocation starts once the
	// follower's first read is on its way.
	type result struct {
		lines []rpc.LogEvent
		err   error
	}
	started := make(chan struct{})
	got := make(chan result, 1)
	go func() {
		req := &rpc.ReadLogsRequest{FunctionName: "follow", After: cursor, WaitMs: 20_000}
		var all []rpc.LogEvent
		for i := 0; ; i++ {
			if i == 0 {
				close(started)
			}
			res, err := cl.ReadLogs(ctx, req)
			if err != nil {
				got <- result{all, err}
				return
			}
			if len(res.Events) == 0 {
				got <- result{all, nil} // the wait ended with nothing more
				return
			}
			all = append(all, res.Events...)
			req.After = res.Next
			if strings.HasPrefix(all[len(all)-1].Line, "REPORT ") {
				got <- result{all, nil}
				return
			}
		}
	}()
	<-started
	second := invoke(t, cl, "follow", `"second"`)
	r := <-got
	if r.err != nil {
		t.Fatalf("follow: %v", r.err)
	}
	var lines []string
	for i, e := range r.lines {
		if i > 0 && e.Seq <= r.lines[i-1].Seq {
			t.Errorf("Seq %d after %d: not increasing", e.Seq, r.lines[i-1].Seq)
		}
		if e.Seq <= cursor {
			t.Errorf("event %d returned for a read after %d", e.Seq, cursor)
		}
		if e.RequestID == second.RequestID {
			lines = append(lines, e.Line)
		}
	}
	checkFramed(t, lines, second.RequestID, 128, false)
	if !containsLine(lines, `event: "second"`) {
		t.Errorf("the function's own line is missing from %q", lines)
	}
	for _, e := range r.lines {
		if e.RequestID == first.RequestID {
			t.Errorf("the follower got a line from before its cursor: %+v", e)
		}
	}
}
