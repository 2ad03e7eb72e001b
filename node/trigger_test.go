package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"nimbus/bundle"
	"nimbus/rpc"
)

var testFns struct {
	mu   sync.Mutex
	zips map[string][]byte
}

// sqsfnZip is testdata/sqsfn built once per test binary, zipped.
func sqsfnZip(t testing.TB) []byte { return testFnZip(t, "sqsfn") }

// testFnZip is the Go function in testdata/NAME built once per test
// binary, zipped.
func testFnZip(t testing.TB, name string) []byte {
	t.Helper()
	requireRoot(t)
	testFns.mu.Lock()
	defer testFns.mu.Unlock()
	if z, ok := testFns.zips[name]; ok {
		return z
	}
	dir := filepath.Join(filepath.Dir(filepath.Dir(helloBin)), name)
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "bootstrap"), "./testdata/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/%s: %v\n%s", name, err, out)
	}
	z, err := bundle.ZipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if testFns.zips == nil {
		testFns.zips = map[string][]byte{}
	}
	testFns.zips[name] = z
	return z
}

// recordLines returns the function's "record" log lines as field maps.
func recordLines(t testing.TB, cl *rpc.Client, fn string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, e := range readAll(t, cl, fn) {
		i := strings.Index(e.Line, "record ")
		if i < 0 {
			continue
		}
		f := map[string]string{}
		for _, kv := range strings.Fields(e.Line[i+len("record "):]) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		out = append(out, f)
	}
	return out
}

// maxOverlap returns the most invocations of fn that ran at once, from
// its "begin MS" and "end MS" log lines, counting only those that began
// at or after since.
func maxOverlap(t testing.TB, cl *rpc.Client, fn string, since int64) (most, runs int) {
	t.Helper()
	type edge struct {
		at    int64
		delta int
	}
	var edges []edge
	begun := map[int64]bool{}
	for _, e := range readAll(t, cl, fn) {
		for _, tag := range []string{"begin ", "end "} {
			i := strings.Index(e.Line, tag)
			if i < 0 || (tag == "end " && strings.Contains(e.Line, "record ")) {
				continue
			}
			ms, err := strconv.ParseInt(strings.TrimSpace(e.Line[i+len(tag):]), 10, 64)
			if err != nil || ms < since {
				continue
			}
			if tag == "begin " {
				edges = append(edges, edge{ms, 1})
				begun[ms] = true
				runs++
			} else {
				edges = append(edges, edge{ms, -1})
			}
		}
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta < edges[j].delta // an end before a begin at the same ms
	})
	cur := 0
	for _, e := range edges {
		cur += e.delta
		most = max(most, cur)
	}
	return most, runs
}

// TestTriggerBatchItemFailures: a trigger invokes the function with an
// SQSEvent; with ReportBatchItemFailures only the listed items reappear
// (and, received twice, end in the dead-letter queue), and an answer that
// names an item not in the batch fails the whole batch.
func TestTriggerBatchItemFailures(t *testing.T) {
	t.Parallel()
	_, cl := startAsyncNode(t, nil)
	ctx := ctxT(t)
	create(t, cl, "trig-fn", sqsfnZip(t), nil)
	// A warm sandbox: a cold start longer than the visibility timeout
	// would let a batch reappear while it runs (as on Lambda, the queue's
	// visibility timeout must exceed the function's run).
	invoke(t, cl, "trig-fn", `{"Records":[]}`)
	for _, q := range []string{"tq", "tb"} {
		mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: q + "-dlq"})
		mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: q, VisibilitySec: intp(5), DeadLetterQueue: q + "-dlq", MaxReceiveCount: 2})
	}
	ids := map[string]string{}
	for _, b := range []string{"ok1", "ok2", "ok3", "fail1", "fail2"} {
		ids[b] = mustSend(t, cl, &rpc.SendMessageRequest{Queue: "tq", Body: b, Attributes: map[string]string{"k": "v-" + b}})
	}
	for _, b := range []string{"bad", "okx"} {
		ids[b] = mustSend(t, cl, &rpc.SendMessageRequest{Queue: "tb", Body: b})
	}
	var uuids []string
	for _, q := range []string{"tq", "tb"} {
		r, err := cl.CreateTrigger(ctx, &rpc.CreateTriggerRequest{Function: "trig-fn", Queue: q, BatchSize: intp(10), BatchWindowSec: intp(1), ReportBatchItemFailures: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Trigger.UUID == "" || !r.Trigger.Enabled || r.Trigger.BatchSize != 10 || !r.Trigger.ReportBatchItemFailures {
			t.Fatalf("created %+v", r.Trigger)
		}
		uuids = append(uuids, r.Trigger.UUID)
	}
	if l, err := cl.ListTriggers(ctx, "trig-fn"); err != nil || len(l.Triggers) != 2 {
		t.Fatalf("list: %+v, %v", l, err)
	}

	dead := func(q string, n int) map[string]bool {
		got := map[string]bool{}
		waitLong(t, 2*time.Minute, fmt.Sprintf("%d messages in %s", n, q), func() bool {
			for _, m := range mustReceive(t, cl, &rpc.ReceiveMessageRequest{Queue: q, Max: 10, WaitSec: 1, VisibilitySec: intp(600)}) {
				got[m.Body] = true
			}
			return len(got) >= n
		})
		return got
	}
	if got := dead("tq-dlq", 2); !got["fail1"] || !got["fail2"] || len(got) != 2 {
		t.Fatalf("tq's dead-letter queue holds %v, want the two reported failures", got)
	}
	if got := dead("tb-dlq", 2); !got["bad"] || !got["okx"] {
		t.Fatalf("tb's dead-letter queue holds %v, want the whole batch of the invalid answer", got)
	}
	waitLong(t, time.Minute, "tq to empty", func() bool {
		r, err := cl.GetQueue(ctx, "tq")
		return err == nil && r.Visible+r.NotVisible+r.Delayed == 0
	})

	recs := recordLines(t, cl, "trig-fn")
	runs := map[string][]string{} // body -> receive counts seen
	for _, r := range recs {
		runs[r["body"]] = append(runs[r["body"]], r["receives"])
		if r["source"] != "aws:sqs" || r["region"] != rpc.DefaultRegion || r["handle"] != "true" || r["sender"] != rpc.DefaultAccount ||
			r["id"] != ids[r["body"]] || r["sent"] == "" || r["first"] == "0" {
			t.Errorf("record %v", r)
		}
		if q := map[bool]string{true: "tb", false: "tq"}[r["body"] == "bad" || r["body"] == "okx"]; r["arn"] != (rpc.ARNScope{}).Queue(q) {
			t.Errorf("record %v: arn, want %s", r, (rpc.ARNScope{}).Queue(q))
		}
		if strings.HasPrefix(r["body"], "ok") && r["body"] != "okx" && r["attr"] != "v-"+r["body"]+"/String" {
			t.Errorf("record %v: message attribute", r)
		}
	}
	for _, b := range []string{"ok1", "ok2", "ok3"} {
		if fmt.Sprint(runs[b]) != "[1]" {
			t.Errorf("%s ran with receive counts %v, want once", b, runs[b])
		}
	}
	for _, b := range []string{"fail1", "fail2", "bad", "okx"} {
		if fmt.Sprint(runs[b]) != "[1 2]" {
			t.Errorf("%s ran with receive counts %v, want 1 then 2", b, runs[b])
		}
	}
	for _, u := range uuids {
		if _, err := cl.DeleteTrigger(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTriggerMaxConcurrency: a backlog scales the trigger up to its
// max-concurrency and no further; the function's reserved concurrency
// caps it lower.
func TestTriggerMaxConcurrency(t *testing.T) {
	t.Parallel()
	_, cl := startAsyncNode(t, nil)
	ctx := ctxT(t)
	create(t, cl, "mc-fn", sqsfnZip(t), nil)
	mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "mc", VisibilitySec: intp(60)})
	fill := func(n int) {
		for i := 0; i < n; i++ {
			mustSend(t, cl, &rpc.SendMessageRequest{Queue: "mc", Body: "sleep:400"})
		}
	}
	empty := func() bool {
		r, err := cl.GetQueue(ctx, "mc")
		return err == nil && r.Visible+r.NotVisible+r.Delayed == 0
	}
	fill(12)
	start := time.Now().UnixMilli()
	tr, err := cl.CreateTrigger(ctx, &rpc.CreateTriggerRequest{Function: "mc-fn", Queue: "mc", BatchSize: intp(1), MaxConcurrency: intp(2)})
	if err != nil {
		t.Fatal(err)
	}
	waitLong(t, 2*time.Minute, "the backlog to be processed", empty)
	most, runs := maxOverlap(t, cl, "mc-fn", start)
	t.Logf("max-concurrency 2: %d runs, at most %d at once", runs, most)
	if runs < 12 || most != 2 {
		t.Fatalf("%d runs, %d at once; want 12 runs, 2 at once (scaled up to max-concurrency, not past it)", runs, most)
	}

	// Reserved concurrency 1 caps the trigger below its max-concurrency.
	reserve(t, cl, "mc-fn", 1)
	start = time.Now().UnixMilli()
	fill(6)
	waitLong(t, 2*time.Minute, "the second backlog to be processed", empty)
	most, runs = maxOverlap(t, cl, "mc-fn", start)
	t.Logf("reserved 1: %d runs, at most %d at once", runs, most)
	if runs < 6 || most != 1 {
		t.Fatalf("%d runs, %d at once with reserved concurrency 1", runs, most)
	}
	// Disabled, it invokes nothing.
	if _, err := cl.UpdateTrigger(ctx, &rpc.UpdateTriggerRequest{UUID: tr.Trigger.UUID, Enabled: new(bool)}); err != nil {
		t.Fatal(err)
	}
	fill(1)
	time.Sleep(2 * time.Second)
	if r, _ := cl.GetQueue(ctx, "mc"); r.Visible != 1 {
		t.Fatalf("a disabled trigger took messages: %+v", r)
	}
}

// TestTriggerFIFO: a trigger on a FIFO queue runs each message group in
// order, one batch of a group at a time, while groups run side by side.
func TestTriggerFIFO(t *testing.T) {
	t.Parallel()
	_, cl := startAsyncNode(t, nil)
	ctx := ctxT(t)
	create(t, cl, "fifo-fn", sqsfnZip(t), nil)
	invoke(t, cl, "fifo-fn", `{"Records":[]}`) // warm
	mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "tf.fifo", VisibilitySec: intp(60)})
	const groups, per = 3, 6
	for i := 0; i < per; i++ {
		for g := 0; g < groups; g++ {
			body := fmt.Sprintf("sleep:100:g%d-%d", g, i)
			mustSend(t, cl, &rpc.SendMessageRequest{Queue: "tf.fifo", Body: body, GroupID: fmt.Sprint("g", g), DedupID: body})
		}
	}
	start := time.Now().UnixMilli()
	if _, err := cl.CreateTrigger(ctx, &rpc.CreateTriggerRequest{Function: "fifo-fn", Queue: "tf.fifo", BatchSize: intp(2), MaxConcurrency: intp(3)}); err != nil {
		t.Fatal(err)
	}
	waitLong(t, 2*time.Minute, "the FIFO queue to drain", func() bool {
		r, err := cl.GetQueue(ctx, "tf.fifo")
		return err == nil && r.Visible+r.NotVisible+r.Delayed == 0
	})
	next := make([]int, groups)
	for _, r := range recordLines(t, cl, "fifo-fn") {
		tag := r["body"][strings.LastIndex(r["body"], ":")+1:]
		var g, i int
		if _, err := fmt.Sscanf(tag, "g%d-%d", &g, &i); err != nil {
			t.Fatalf("record body %q", r["body"])
		}
		if i != next[g] || r["group"] != fmt.Sprint("g", g) {
			t.Fatalf("group %d ran message %d (group attribute %q) when %d was next", g, i, r["group"], next[g])
		}
		next[g]++
	}
	for g, n := range next {
		if n != per {
			t.Fatalf("group %d ran %d of %d messages", g, n, per)
		}
	}
	most, runs := maxOverlap(t, cl, "fifo-fn", start)
	t.Logf("FIFO: %d runs, at most %d at once", runs, most)
	if most < 2 {
		t.Fatalf("at most %d invocation at once: the groups did not run side by side", most)
	}
}
