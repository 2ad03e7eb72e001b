package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	dto "github.com/prometheus/client_model/go"

	"nimbus/rpc"
)

// startAsyncNode starts a dev node with the async timings mod sets.
func startAsyncNode(t *testing.T, mod func(*Config)) (*Node, *rpc.Client) {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	if err := linkTree(sharedImage, filepath.Join(dir, "images")); err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: dir}
	if mod != nil {
		mod(&cfg)
	}
	return startNodeConfig(t, cfg)
}

// starts counts the invocations of each request id in a function's log
// (its START lines).
func starts(t testing.TB, cl *rpc.Client, fn string) map[string][]time.Time {
	t.Helper()
	out, err := tryStarts(ctxT(t), cl, fn)
	if err != nil {
		t.Fatalf("read logs of %s: %v", fn, err)
	}
	return out
}

// tryStarts is starts that returns the read's error (the log store may be
// electing a leader after a node went away).
func tryStarts(ctx context.Context, cl *rpc.Client, fn string) (map[string][]time.Time, error) {
	out := map[string][]time.Time{}
	req := &rpc.ReadLogsRequest{FunctionName: fn}
	for {
		res, err := cl.ReadLogs(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, e := range res.Events {
			if strings.HasPrefix(e.Line, "START RequestId: ") {
				out[e.RequestID] = append(out[e.RequestID], time.UnixMilli(e.TimeMs))
			}
		}
		if len(res.Events) == 0 || res.Next == req.After {
			return out, nil
		}
		req.After = res.Next
	}
}

// waitLong is waitFor with a deadline of its own.
func waitLong(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func invokeEvent(ctx context.Context, cl *rpc.Client, fn, payload string) (*rpc.InvokeResponse, error) {
	return cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: fn, InvocationType: rpc.InvocationEvent, Payload: []byte(payload)})
}

// TestAsyncInvoke: concurrent Event invocations are answered 202 with a
// request id once committed, each runs (under its own request id), and the
// queue is empty afterwards.
func TestAsyncInvoke(t *testing.T) {
	t.Parallel()
	nd, cl := startAsyncNode(t, func(c *Config) { c.AsyncRetryBase = 100 * time.Millisecond })
	create(t, cl, "async-echo", behaveZip(t, "v1"), func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = 60 })
	// A reservation of 4: the dispatcher is throttled by the ledger, as a
	// sync caller would be, and the events wait their turn (also sparing
	// a small machine 60 cold starts at once).
	reserve(t, cl, "async-echo", 4)

	const events = 60
	ids := make([]string, events)
	var wg sync.WaitGroup
	errs := make(chan error, events)
	for i := 0; i < events; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := invokeEvent(ctxT(t), cl, "async-echo", fmt.Sprintf(`{"n":%d}`, i))
			if err != nil {
				errs <- err
				return
			}
			if res.StatusCode != rpc.StatusAccepted || !validRequestID(res.RequestID) {
				errs <- fmt.Errorf("answer %+v", res)
				return
			}
			ids[i] = res.RequestID
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var seen map[string][]time.Time
	waitLong(t, time.Minute, "every event to run", func() bool {
		seen = starts(t, cl, "async-echo")
		for _, id := range ids {
			if len(seen[id]) == 0 {
				return false
			}
		}
		return true
	})
	dups := 0
	for _, id := range ids {
		dups += len(seen[id]) - 1
	}
	t.Logf("%d events ran, %d duplicate runs", events, dups)
	waitLong(t, time.Minute, "the queue to empty", func() bool { return nd.fsm.AsyncLen() == 0 })
	// Each event's payload reached the function.
	lines := readAll(t, cl, "async-echo")
	for i := 0; i < events; i++ {
		want := fmt.Sprintf(`event: {"n":%d}`, i)
		found := false
		for _, e := range lines {
			if e.RequestID == ids[i] && e.Line == want {
				found = true
			}
		}
		if !found {
			t.Errorf("event %d (%s): no line %q", i, ids[i], want)
		}
	}
}

// TestAsyncBadInput: bad requests get Lambda's errors and store nothing;
// DryRun validates only.
func TestAsyncBadInput(t *testing.T) {
	t.Parallel()
	nd, cl := startAsyncNode(t, nil)
	create(t, cl, "async-bad", behaveZip(t, "v1"), nil)
	ctx := ctxT(t)
	big := `"` + strings.Repeat("x", rpc.MaxAsyncPayload) + `"`
	tests := []struct {
		name, fn, payload string
		want              *rpc.Error
	}{
		{"too large", "async-bad", big, rpc.ErrRequestTooLarge},
		{"unknown function", "nope", "{}", rpc.ErrResourceNotFound},
		{"bad name", "bad name!", "{}", rpc.ErrInvalidParameterValue},
	}
	for _, tt := range tests {
		if _, err := invokeEvent(ctx, cl, tt.fn, tt.payload); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %s", tt.name, err, tt.want.Code)
		}
	}
	if n := nd.fsm.AsyncLen(); n != 0 {
		t.Fatalf("refused requests left %d events", n)
	}
	// The largest payload allowed is accepted.
	ok := `"` + strings.Repeat("y", rpc.MaxAsyncPayload-2) + `"`
	if _, err := invokeEvent(ctx, cl, "async-bad", ok); err != nil {
		t.Fatalf("a payload of exactly %d bytes: %v", rpc.MaxAsyncPayload, err)
	}
	res, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "async-bad", InvocationType: rpc.InvocationDryRun})
	if err != nil || res.StatusCode != 204 {
		t.Fatalf("DryRun: %+v, %v", res, err)
	}
	if _, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "nope", InvocationType: rpc.InvocationDryRun}); !errors.Is(err, rpc.ErrResourceNotFound) {
		t.Fatalf("DryRun of a missing function: %v", err)
	}
	if n := nd.fsm.AsyncLen(); n > 1 {
		t.Fatalf("%d events queued, want the one accepted at most", n)
	}
}

// TestAsyncRetries: a function error is retried twice, the second retry
// twice as long after the first; then the event leaves the queue.
func TestAsyncRetries(t *testing.T) {
	t.Parallel()
	const base = 300 * time.Millisecond
	nd, cl := startAsyncNode(t, func(c *Config) { c.AsyncRetryBase = base })
	create(t, cl, "async-fail", behaveZip(t, "v1"), nil)
	res, err := invokeEvent(ctxT(t), cl, "async-fail", `"error"`)
	if err != nil {
		t.Fatal(err)
	}
	var runs []time.Time
	waitLong(t, time.Minute, "three attempts", func() bool {
		runs = starts(t, cl, "async-fail")[res.RequestID]
		return len(runs) >= 3
	})
	waitFor(t, "the failed event to leave the queue", func() bool { return nd.fsm.AsyncLen() == 0 })
	if len(runs) != 3 {
		t.Fatalf("%d attempts, want 3 (1 + MaximumRetryAttempts 2)", len(runs))
	}
	// Lower bounds only: a loaded machine can make the gaps longer, never
	// shorter. Log times have millisecond resolution.
	if gap := runs[1].Sub(runs[0]); gap < base-time.Millisecond {
		t.Errorf("first retry %s after the attempt, want >= %s", gap, base)
	}
	if gap := runs[2].Sub(runs[1]); gap < 2*base-time.Millisecond {
		t.Errorf("second retry %s after the first, want >= %s", gap, 2*base)
	}
	// No more attempts after the queue emptied.
	if got := len(starts(t, cl, "async-fail")[res.RequestID]); got != 3 {
		t.Errorf("%d attempts after the event finished", got)
	}
}

// TestAsyncReservedZero: with reserved concurrency 0 an event never runs;
// it leaves the queue at once (as failed).
func TestAsyncReservedZero(t *testing.T) {
	t.Parallel()
	nd, cl := startAsyncNode(t, nil)
	create(t, cl, "async-zero", behaveZip(t, "v1"), nil)
	reserve(t, cl, "async-zero", 0)
	res, err := invokeEvent(ctxT(t), cl, "async-zero", `{}`)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event to leave the queue", func() bool { return nd.fsm.AsyncLen() == 0 })
	if n := len(starts(t, cl, "async-zero")[res.RequestID]); n != 0 {
		t.Fatalf("ran %d times with reserved concurrency 0", n)
	}
}

// TestAsyncFailover: events accepted on a three-server cluster all run
// although the leader (a server without sandboxes, so no log is lost with
// it) stops while they are dispatched: the new leader dispatches the
// events it finds, including those whose lease the old leader held, once
// that lease expires. Then, with two servers gone, an accept is refused
// with ServiceException: there is no quorum to commit it.
func TestAsyncFailover(t *testing.T) {
	tc := startCluster(t, 3, func(i int, c *Config) {
		c.Worker = i != 0
		// Raft's default timings: the fast ones flap on a loaded machine,
		// and each flap abandons the runs in flight until their leases
		// expire.
		c.FastTimings = false
		c.AsyncLeaseMargin = time.Second
		c.AsyncRetryBase = 100 * time.Millisecond
	})
	ctx := ctxT(t)
	// The stop below is of an established log store: JetStream elects its
	// first meta leader only with the votes of all three servers (servers
	// with empty logs never make a quorum among themselves), so a server
	// lost before that leaves the store unavailable until it returns. On a
	// loaded machine that first election can take longer than the accepts
	// below (docs/ARCHITECTURE.md, Logs).
	for _, nd := range tc.nodes {
		if err := nd.logs.WaitReady(ctx); err != nil {
			t.Fatalf("%s's log store: %v", nd.Name(), err)
		}
	}
	// Make n1, the node without sandboxes, the leader.
	if lead := tc.waitLeader(); lead != 0 {
		n1 := tc.nodes[0]
		if err := tc.nodes[lead].raft.LeadershipTransferToServer("n1", raftAddr(n1)).Error(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "n1 to lead", func() bool { return tc.waitLeader() == 0 })
	}
	create(t, tc.clients[1], "async-fo", behaveZip(t, "v1"), func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = 10 })
	reserve(t, tc.clients[1], "async-fo", 4)

	const events = 100
	ids := make([]string, 0, events)
	for i := 0; i < events; i++ {
		// Fast timings on a loaded machine: the leader may step down now
		// and then. A refused accept (ServiceException) is retried, as a
		// client would; only the accepted ones are counted.
		var res *rpc.InvokeResponse
		var err error
		waitFor(t, fmt.Sprintf("event %d to be accepted", i), func() bool {
			res, err = invokeEvent(ctx, tc.clients[1+i%2], "async-fo", fmt.Sprintf(`{"n":%d}`, i))
			if err != nil && !errors.Is(err, rpc.ErrService) {
				t.Fatalf("event %d: %v", i, err)
			}
			return err == nil
		})
		ids = append(ids, res.RequestID)
	}
	tc.stop(0)
	lead := tc.waitLeader()
	var seen map[string][]time.Time
	missing := 0
	deadline := time.Now().Add(3 * time.Minute)
	var lastState time.Time
	for {
		// Each read has a context of its own: the test's (ctx, two minutes
		// from the start) can run out within this loop's deadline on a
		// loaded machine, and every read would then fail at once.
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var err error
		seen, err = tryStarts(rctx, tc.clients[lead], "async-fo")
		cancel()
		if err != nil {
			// The log store is electing a leader after the stop: read again.
			if time.Since(lastState) > 10*time.Second || time.Now().After(deadline) {
				lastState = time.Now()
				t.Logf("reading the logs: %v", err)
				for _, nd := range tc.nodes[1:] {
					t.Log(nd.logRole.server().ClusterState())
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("reading the logs: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		missing = 0
		for _, id := range ids {
			if len(seen[id]) == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events never ran; %d still queued", missing, events, tc.nodes[lead].fsm.AsyncLen())
		}
		time.Sleep(100 * time.Millisecond)
	}
	dups := 0
	for _, id := range ids {
		dups += len(seen[id]) - 1
	}
	t.Logf("%d events ran, %d duplicate runs", events, dups)
	waitLong(t, time.Minute, "the queue to empty", func() bool { return tc.nodes[lead].fsm.AsyncLen() == 0 })

	// n1 left gracefully, so the Raft configuration is the two others now.
	// Crash the leader (no leave, no leadership transfer): the survivor
	// alone is no quorum, so no 202.
	survivor := 3 - lead // the other of n2 (1) and n3 (2)
	crash(tc.nodes[lead])
	_, err := invokeEvent(ctxT(t), tc.clients[survivor], "async-fo", `{}`)
	if !errors.Is(err, rpc.ErrService) {
		t.Fatalf("accept without quorum: %v, want ServiceException", err)
	}
}

// raftAddr is a server's Raft address (its rpc address).
func raftAddr(n *Node) raft.ServerAddress { return raft.ServerAddress(n.cfg.Advertise) }

func reserve(t testing.TB, cl *rpc.Client, fn string, n int) {
	t.Helper()
	if err := cl.Call(ctxT(t), rpc.MethodConcurrencyPut, &rpc.PutConcurrencyRequest{Name: fn, Reserved: n}, &rpc.ConcurrencyResponse{}); err != nil {
		t.Fatal(err)
	}
}

// recordsIn returns the invocation records a sink function received (its
// "event: " lines), by the source request id.
func recordsIn(t testing.TB, cl *rpc.Client, sink string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, e := range readAll(t, cl, sink) {
		body, ok := strings.CutPrefix(e.Line, "event: ")
		if !ok {
			continue
		}
		var rec map[string]any
		if json.Unmarshal([]byte(body), &rec) != nil {
			continue
		}
		if rc, ok := rec["requestContext"].(map[string]any); ok {
			out[rc["requestId"].(string)] = rec
		}
	}
	return out
}

// TestAsyncDestinations: success and failure records reach a function
// destination in Lambda's shape, field by field; a function that is its
// own destination is stopped after 16 hops.
func TestAsyncDestinations(t *testing.T) {
	t.Parallel()
	nd, cl := startAsyncNode(t, func(c *Config) { c.AsyncRetryBase = 100 * time.Millisecond })
	ctx := ctxT(t)
	create(t, cl, "dst-src", behaveZip(t, "v1"), nil)
	create(t, cl, "dst-sink", behaveZip(t, "v1"), nil)
	zero := 0
	if _, err := cl.PutEventConfig(ctx, &rpc.PutEventConfigRequest{FunctionName: "dst-src", MaxRetryAttempts: &zero,
		OnSuccess: "function:dst-sink", OnFailure: (rpc.ARNScope{}).Function("dst-sink", "")}); err != nil {
		t.Fatal(err)
	}
	got, err := cl.GetEventConfig(ctx, &rpc.GetEventConfigRequest{FunctionName: "dst-src"})
	if err != nil || got.Config.Retries() != 0 || got.Config.MaxAgeSec() != rpc.DefaultMaxEventAgeSec || got.Config.OnSuccess != "function:dst-sink" {
		t.Fatalf("get-event-config: %+v, %v", got, err)
	}
	for _, bad := range []*rpc.PutEventConfigRequest{
		{FunctionName: "dst-src", OnFailure: "function:nope"},
		{FunctionName: "dst-src", MaxEventAgeSec: &zero},
	} {
		if _, err := cl.PutEventConfig(ctx, bad); !errors.Is(err, rpc.ErrInvalidParameterValue) {
			t.Errorf("put-event-config %+v: %v", bad, err)
		}
	}
	if _, err := cl.PutEventConfig(ctx, &rpc.PutEventConfigRequest{FunctionName: "nope"}); !errors.Is(err, rpc.ErrResourceNotFound) {
		t.Errorf("put-event-config of a missing function: %v", err)
	}

	okRes, err := invokeEvent(ctx, cl, "dst-src", `{"k":"ok"}`)
	if err != nil {
		t.Fatal(err)
	}
	failRes, err := invokeEvent(ctx, cl, "dst-src", `"error"`)
	if err != nil {
		t.Fatal(err)
	}
	var recs map[string]map[string]any
	waitLong(t, time.Minute, "both records at the destination", func() bool {
		recs = recordsIn(t, cl, "dst-sink")
		return recs[okRes.RequestID] != nil && recs[failRes.RequestID] != nil
	})
	check := func(rec map[string]any, condition string, payload, response any, functionError string) {
		t.Helper()
		if rec["version"] != "1.0" {
			t.Errorf("version %v", rec["version"])
		}
		if ts, _ := rec["timestamp"].(string); ts == "" {
			t.Errorf("timestamp %v", rec["timestamp"])
		} else if _, err := time.Parse("2006-01-02T15:04:05.000Z", ts); err != nil {
			t.Errorf("timestamp %q: %v", ts, err)
		}
		rc := rec["requestContext"].(map[string]any)
		if rc["functionArn"] != (rpc.ARNScope{}).Function("dst-src", "")+":$LATEST" || rc["condition"] != condition || rc["approximateInvokeCount"] != float64(1) {
			t.Errorf("requestContext %v", rc)
		}
		if !reflect.DeepEqual(rec["requestPayload"], payload) {
			t.Errorf("requestPayload %v, want %v", rec["requestPayload"], payload)
		}
		resp, _ := rec["responseContext"].(map[string]any)
		if resp["statusCode"] != float64(200) || resp["executedVersion"] != "$LATEST" {
			t.Errorf("responseContext %v", resp)
		}
		if fe, _ := resp["functionError"].(string); fe != functionError {
			t.Errorf("functionError %q, want %q", fe, functionError)
		}
		if !reflect.DeepEqual(rec["responsePayload"], response) {
			t.Errorf("responsePayload %v, want %v", rec["responsePayload"], response)
		}
		if len(rec) != 6 {
			t.Errorf("record has %d fields: %v", len(rec), rec)
		}
	}
	check(recs[okRes.RequestID], "Success", map[string]any{"k": "ok"},
		map[string]any{"echo": map[string]any{"k": "ok"}, "version": "v1", "greeting": ""}, "")
	check(recs[failRes.RequestID], "RetriesExhausted", "error",
		map[string]any{"errorType": "MyError", "errorMessage": "something broke"}, rpc.FunctionErrorUnhandled)

	// A function that is its own success destination: the original run
	// and 16 hops, then the chain stops.
	// It answers {} whatever its event: a record holds the previous one
	// twice (request and response), and an echo would double it per hop.
	create(t, cl, "dst-loop", mkzip(t, exe("bootstrap", quietRuntime)), nil)
	if _, err := cl.PutEventConfig(ctx, &rpc.PutEventConfigRequest{FunctionName: "dst-loop", OnSuccess: "function:dst-loop"}); err != nil {
		t.Fatal(err)
	}
	if _, err := invokeEvent(ctx, cl, "dst-loop", `{"hop":0}`); err != nil {
		t.Fatal(err)
	}
	runs := func() int {
		n := 0
		for _, ts := range starts(t, cl, "dst-loop") {
			n += len(ts)
		}
		return n
	}
	waitLong(t, 2*time.Minute, "17 runs of the loop", func() bool { return runs() >= 1+rpc.MaxDestinationDepth })
	waitLong(t, time.Minute, "the queue to empty", func() bool { return nd.fsm.AsyncLen() == 0 })
	if got := runs(); got != 1+rpc.MaxDestinationDepth {
		t.Errorf("the loop ran %d times, want %d", got, 1+rpc.MaxDestinationDepth)
	}

	if _, err := cl.DeleteEventConfig(ctx, &rpc.GetEventConfigRequest{FunctionName: "dst-src"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GetEventConfig(ctx, &rpc.GetEventConfigRequest{FunctionName: "dst-src"}); !errors.Is(err, rpc.ErrResourceNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}

// quietRuntime is a provided runtime that answers {} to every event.
const quietRuntime = `#!/bin/sh
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  H="$(mktemp)"
  curl -sS -o /dev/null -D "$H" "$API/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$H"
  curl -sS -o /dev/null -X POST "$API/invocation/$ID/response" -d '{}'
done
`

// crash stops a node's Raft as a kill would: no leave, no leadership
// transfer, no removal from the configuration (the test's cleanup closes
// the rest).
func crash(n *Node) {
	_ = n.raft.Shutdown().Error()
}

// TestAsyncMaxEventAge: an event that keeps failing is retried until it is
// older than MaximumEventAgeInSeconds (its minimum, 60 s), then goes to
// the failure destination with condition EventAgeExceeded instead of
// running again. The retry base is shrunk to 25 s: attempts at 0 s and
// 25 s, and the second retry (due at 75 s) finds the event too old.
func TestAsyncMaxEventAge(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits out a 60 s maximum event age")
	}
	_, cl := startAsyncNode(t, func(c *Config) { c.AsyncRetryBase = 25 * time.Second })
	ctx := ctxT(t)
	create(t, cl, "age-src", behaveZip(t, "v1"), nil)
	create(t, cl, "age-sink", behaveZip(t, "v1"), nil)
	age := rpc.MinMaxEventAgeSec
	if _, err := cl.PutEventConfig(ctx, &rpc.PutEventConfigRequest{FunctionName: "age-src", MaxEventAgeSec: &age, OnFailure: "function:age-sink"}); err != nil {
		t.Fatal(err)
	}
	res, err := invokeEvent(ctx, cl, "age-src", `"error"`)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	waitLong(t, 3*time.Minute, "the EventAgeExceeded record", func() bool {
		rec = recordsIn(t, cl, "age-sink")[res.RequestID]
		return rec != nil
	})
	rc := rec["requestContext"].(map[string]any)
	if rc["condition"] != "EventAgeExceeded" || rc["approximateInvokeCount"] != float64(2) || rec["requestPayload"] != "error" {
		t.Errorf("record %v", rec)
	}
	if _, ok := rec["responseContext"]; ok {
		t.Errorf("an event that expired unrun carries a response: %v", rec)
	}
	if n := len(starts(t, cl, "age-src")[res.RequestID]); n != 2 {
		t.Errorf("ran %d times, want 2 (then too old)", n)
	}
}

// TestAsyncForwardedInBatches: a node that does not lead forwards its
// callers' concurrent Event invocations to the leader in Async.AcceptBatch
// calls; each caller gets its own answer (202 with a request id only for
// an event the leader's FSM holds, ResourceNotFoundException for the one
// naming a missing function, in the same batches).
func TestAsyncForwardedInBatches(t *testing.T) {
	// No workers: the events stay queued, so the leader's FSM shows
	// every accepted one.
	tc := startCluster(t, 3, func(i int, c *Config) { c.Worker = false })
	ctx := ctxT(t)
	lead := tc.waitLeader()
	follower := (lead + 1) % 3
	cl := tc.clients[follower]
	create(t, cl, "fwd-batch", behaveZip(t, "v1"), nil)

	const events = 200
	ids := make([]string, events)
	errs := make([]error, events)
	var wg sync.WaitGroup
	for i := 0; i < events; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := "fwd-batch"
			if i == events/2 {
				name = "fwd-missing"
			}
			res, err := invokeEvent(ctx, cl, name, fmt.Sprintf(`{"n":%d}`, i))
			if err == nil {
				ids[i] = res.RequestID
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	ld := tc.nodes[lead]
	for i := 0; i < events; i++ {
		if i == events/2 {
			if !errors.Is(errs[i], rpc.ErrResourceNotFound) {
				t.Errorf("event for a missing function: %v, want ResourceNotFoundException", errs[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("event %d: %v", i, errs[i])
			continue
		}
		if !validRequestID(ids[i]) {
			t.Errorf("event %d: request id %q", i, ids[i])
			continue
		}
		if _, ok := ld.fsm.AsyncEvent(ids[i]); !ok {
			t.Errorf("event %d (%s) answered 202 but is not in the leader's FSM", i, ids[i])
		}
	}
	var m dto.Metric
	if err := ld.metrics.rpcRequests.WithLabelValues(methodAsyncAcceptBatch, "OK").Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n == 0 {
		t.Fatal("the leader served no Async.AcceptBatch call: the follower forwarded event by event")
	} else {
		t.Logf("%d events in %v batches", events, n)
	}
}
