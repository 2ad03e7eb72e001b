package node

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"nimbus/rpc"
)

// scrape reads the node's /metrics with Prometheus's own text parser.
func scrape(t *testing.T, n *Node) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	n.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of family's series with the given label, or -1.
func value(fams map[string]*dto.MetricFamily, family, label, want string) float64 {
	f := fams[family]
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		match := label == ""
		for _, l := range m.Label {
			if l.GetName() == label && l.GetValue() == want {
				match = true
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetricsAfterKnownWork: three invocations (one a function error) and
// one throttle give exactly those numbers in /metrics and in Function.Metrics;
// a deleted function stops being exported.
func TestMetricsAfterKnownWork(t *testing.T) {
	t.Parallel()
	n, cl := startNode(t, t.TempDir())
	ctx := ctxT(t)
	create(t, cl, "counted", behaveZip(t, "m"), nil)
	for _, p := range []string{`{"a":1}`, `{"a":2}`, `"error"`} {
		invoke(t, cl, "counted", p)
	}
	if err := cl.Call(ctx, rpc.MethodConcurrencyPut, &rpc.PutConcurrencyRequest{Name: "counted", Reserved: 0}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "counted"}); !errors.Is(err, rpc.ErrTooManyRequests) {
		t.Fatalf("invoke at reserved concurrency 0: %v, want TooManyRequestsException", err)
	}

	fams := scrape(t, n)
	for _, c := range []struct {
		family string
		want   float64
	}{
		{"nimbus_function_invocations_total", 3},
		{"nimbus_function_errors_total", 1},
		{"nimbus_function_throttles_total", 1},
		{"nimbus_function_cold_starts_total", 1},
		{"nimbus_function_duration_milliseconds", 3},
		{"nimbus_function_init_duration_milliseconds", 1},
		{"nimbus_function_concurrent_executions", 0},
	} {
		if got := value(fams, c.family, "function", "counted"); got != c.want {
			t.Errorf("%s{function=counted} = %v, want %v", c.family, got, c.want)
		}
	}
	if got := value(fams, "nimbus_rpc_requests_total", "method", rpc.MethodInvoke); got < 3 {
		t.Errorf("rpc requests for %s = %v, want at least 3", rpc.MethodInvoke, got)
	}
	if got := value(fams, "nimbus_raft_state", "state", "Leader"); got != 1 {
		t.Errorf("nimbus_raft_state{state=Leader} = %v on a dev node", got)
	}
	if got := value(fams, "nimbus_ledger_refusals_total", "reason", rpc.ReasonReservedFunctionConcurrentInvocationLimit); got != 1 {
		t.Errorf("ledger refusals for reserved concurrency = %v, want 1", got)
	}
	if idle, frozen := value(fams, "nimbus_sandboxes", "state", "idle"), value(fams, "nimbus_sandboxes", "state", "frozen"); idle+frozen != 1 ||
		value(fams, "nimbus_sandboxes", "state", "busy") != 0 {
		t.Errorf("sandboxes: idle %v, frozen %v, busy %v; want the one warm sandbox", idle, frozen, value(fams, "nimbus_sandboxes", "state", "busy"))
	}
	if got := value(fams, "nimbus_sandbox_starts_total", "", ""); got != 1 {
		t.Errorf("sandbox starts = %v, want 1 (one cold start, then warm)", got)
	}
	if got := value(fams, "nimbus_sandbox_failures_total", "reason", "other"); got != 0 {
		t.Errorf("sandbox failures = %v: a function error is not a sandbox failure", got)
	}
	if got := value(fams, "nimbus_log_lines_total", "outcome", "dropped"); got != 0 {
		t.Errorf("log lines dropped = %v", got)
	}
	if got := value(fams, "nimbus_ledger_grants_total", "", ""); got != 3 {
		t.Errorf("ledger grants = %v, want 3", got)
	}

	m, err := cl.FunctionMetrics(ctx, &rpc.FunctionMetricsRequest{FunctionName: "counted", SinceSec: 600})
	if err != nil {
		t.Fatal(err)
	}
	if m.Invocations != 3 || m.Errors != 1 || m.Throttles != 1 || m.ColdStarts != 1 || m.DurationCount != 3 || m.MaxConcurrency != 1 {
		t.Fatalf("Function.Metrics = %+v", m)
	}
	if m.DurationP50 <= 0 || m.DurationP99 < m.DurationP50 || len(m.Nodes) != 1 || m.Nodes[0] != n.Name() {
		t.Fatalf("Function.Metrics percentiles or nodes: %+v", m)
	}
	if _, err := cl.FunctionMetrics(ctx, &rpc.FunctionMetricsRequest{FunctionName: "absent"}); !errors.Is(err, rpc.ErrResourceNotFound) {
		t.Fatalf("metrics of an unknown function: %v", err)
	}
	if _, err := cl.FunctionMetrics(ctx, &rpc.FunctionMetricsRequest{FunctionName: "counted", SinceSec: 7200}); !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Fatalf("a window of 2h: %v", err)
	}

	if _, err := cl.DeleteFunction(ctx, &rpc.GetFunctionRequest{Name: "counted"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted function's series gone", func() bool {
		return value(scrape(t, n), "nimbus_function_invocations_total", "function", "counted") == -1
	})
}

// TestMetricsFunctionLimit: past the limit, functions share one series.
func TestMetricsFunctionLimit(t *testing.T) {
	s := newFnStats(2, time.Now())
	s.get("a").invocations.Add(1)
	s.get("b").invocations.Add(1)
	s.get("c").invocations.Add(1)
	s.get("d").invocations.Add(1)
	if got := s.names(); strings.Join(got, ",") != "a,b,other" {
		t.Fatalf("series %v, want a, b and other", got)
	}
	if got := s.counters(otherFunctions).invocations.Load(); got != 2 {
		t.Fatalf("other counted %d, want 2", got)
	}
	s.forget("a")
	if got := s.names(); strings.Join(got, ",") != "b,other" {
		t.Fatalf("after forget: %v", got)
	}
}

// TestMetricsWindow: a window counts only what happened inside it, from
// the one-minute samples.
func TestMetricsWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s := newFnStats(10, t0)
	c := s.get("f")
	for i := 0; i < 5; i++ {
		c.invocations.Add(1)
		c.duration.observe(3 * time.Millisecond)
	}
	s.tick(t0.Add(time.Minute))
	for i := 0; i < 2; i++ {
		c.invocations.Add(1)
		c.errors.Add(1)
		c.duration.observe(700 * time.Millisecond)
	}
	now := t0.Add(90 * time.Second)
	if w := s.window("f", 0, now); w.Invocations != 7 || w.DurationCount != 7 {
		t.Fatalf("whole window: %+v", w)
	}
	w := s.window("f", 30*time.Second, now)
	if w.Invocations != 2 || w.Errors != 2 || w.DurationCount != 2 {
		t.Fatalf("last 30 s: %+v", w)
	}
	w.Percentiles()
	if w.DurationP50 < 500 || w.DurationP50 > 1000 {
		t.Fatalf("p50 of two 700 ms durations = %v, want within the 500-1000 ms bucket", w.DurationP50)
	}
}

// TestMetricsAsyncAndTriggers: after two async events (one succeeds, one
// fails with no retry and nowhere to go) and three messages through a queue
// trigger, the async and trigger series say so.
func TestMetricsAsyncAndTriggers(t *testing.T) {
	t.Parallel()
	n, cl := startNode(t, t.TempDir())
	ctx := ctxT(t)
	create(t, cl, "asyncm", behaveZip(t, "m"), nil)
	zero := 0
	if _, err := cl.PutEventConfig(ctx, &rpc.PutEventConfigRequest{FunctionName: "asyncm", MaxRetryAttempts: &zero}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{`{"a":1}`, `"error"`} {
		if res, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "asyncm", InvocationType: rpc.InvocationEvent, Payload: []byte(p)}); err != nil || res.StatusCode != rpc.StatusAccepted {
			t.Fatalf("event %s: %+v %v", p, res, err)
		}
	}
	waitFor(t, "both events to finish", func() bool { return n.fsm.AsyncLen() == 0 })

	create(t, cl, "trig", behaveZip(t, "m"), nil)
	if _, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: "mq"}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"m1", "m2", "m3"} {
		if _, err := cl.SendMessage(ctx, &rpc.SendMessageRequest{Queue: "mq", Body: b}); err != nil {
			t.Fatal(err)
		}
	}
	ten := 10
	if _, err := cl.CreateTrigger(ctx, &rpc.CreateTriggerRequest{Function: "trig", Queue: "mq", BatchSize: &ten}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the trigger to consume the queue", func() bool {
		q, err := cl.GetQueue(ctx, "mq")
		return err == nil && q.Visible+q.NotVisible+q.Delayed == 0
	})

	fams := scrape(t, n)
	for _, c := range []struct {
		family, function string
		want             float64
	}{
		{"nimbus_function_async_events_received_total", "asyncm", 2},
		{"nimbus_function_async_events_dropped_total", "asyncm", 1},
		{"nimbus_function_async_event_age_milliseconds", "asyncm", 2}, // one dispatch each
		{"nimbus_function_invocations_total", "asyncm", 2},
		{"nimbus_function_errors_total", "asyncm", 1},
	} {
		if got := value(fams, c.family, "function", c.function); got != c.want {
			t.Errorf("%s{function=%s} = %v, want %v", c.family, c.function, got, c.want)
		}
	}
	// The three messages, in batches of up to ten: every message in one.
	var batches, messages float64
	for _, m := range fams["nimbus_queue_trigger_batch_size"].GetMetric() {
		batches += float64(m.Histogram.GetSampleCount())
		messages += m.Histogram.GetSampleSum()
	}
	if messages != 3 || batches < 1 || batches > 3 {
		t.Errorf("trigger batches: %v batches holding %v messages, want 3 messages", batches, messages)
	}
	if got := value(fams, "nimbus_async_events_queued", "", ""); got != 0 {
		t.Errorf("async events queued = %v, want 0", got)
	}
	if got := value(fams, "nimbus_queue_messages", "", ""); got != 0 {
		t.Errorf("queue messages = %v, want 0", got)
	}
	if got := value(fams, "nimbus_code_store_bytes", "", ""); got <= 0 {
		t.Errorf("code store bytes = %v, want the two zips", got)
	}
	if images := n.imageStore(); images != nil {
		for _, im := range images.List() {
			if got := value(fams, "nimbus_image_store_bytes", "runtime", im.Runtime); got != float64(im.SizeBytes) {
				t.Errorf("image store bytes of %s = %v, want %d", im.Runtime, got, im.SizeBytes)
			}
		}
	}
	if got := value(fams, "nimbus_raft_apply_duration_seconds", "", ""); got < 4 {
		t.Errorf("raft applies observed = %v, want at least the creates, the config and the queue", got)
	}
}
