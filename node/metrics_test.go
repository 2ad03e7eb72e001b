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

// value returns the sum of family's series with the given label (every
// series when label is ""), or -1 when none has it. A histogram counts
// its observations.
func value(fams map[string]*dto.MetricFamily, family, label, want string) float64 {
	if label == "" {
		return series(fams, family, nil)
	}
	return series(fams, family, map[string]string{label: want})
}

// series returns the sum of family's series whose labels include every
// one of labels (an absent label reads as ""), or -1 when none does.
func series(fams map[string]*dto.MetricFamily, family string, labels map[string]string) float64 {
	f := fams[family]
	if f == nil {
		return -1
	}
	sum, found := 0.0, false
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			if have[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	if !found {
		return -1
	}
	return sum
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
	// The warm sandbox's runtime waits in /next on one connection.
	if open, refused := value(fams, "nimbus_runtime_api_connections", "", ""), value(fams, "nimbus_runtime_api_connections_refused_total", "", ""); open < 1 || open > 2 || refused != 0 {
		t.Errorf("Runtime API connections: %v open, %v refused; want the runtime's one, none refused", open, refused)
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
	if got := value(fams, "nimbus_log_batches_total", "outcome", "republished"); got != 0 {
		t.Errorf("log batches republished = %v: a healthy store needs no second publish", got)
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
	if got := s.counters(fnKey{function: otherFunctions}).invocations.Load(); got != 2 {
		t.Fatalf("other counted %d, want 2", got)
	}
	s.forget("a")
	if got := s.names(); strings.Join(got, ",") != "b,other" {
		t.Fatalf("after forget: %v", got)
	}
	// The limit counts series: a version of b is one more, and folds.
	s.getKey(fnKey{function: "b", version: "1"}).invocations.Add(1)
	s.getKey(fnKey{function: "b", version: "2"}).invocations.Add(1)
	if got := len(s.keys()); got != 2 {
		t.Fatalf("%d series past a limit of 2", got)
	}
	if got := s.counters(fnKey{function: otherFunctions}).invocations.Load(); got != 4 {
		t.Fatalf("other counted %d, want 4", got)
	}
}

// TestMetricsKeys: the key an invocation counts under.
func TestMetricsKeys(t *testing.T) {
	for _, c := range []struct {
		qualifier, version string
		want               fnKey
	}{
		{"", "$LATEST", fnKey{"f", "$LATEST", ""}},
		{"$LATEST", "$LATEST", fnKey{"f", "$LATEST", ""}},
		{"3", "3", fnKey{"f", "3", ""}},
		{"3", "", fnKey{"f", "3", ""}}, // a throttle of a version
		{"live", "2", fnKey{"f", "2", "live"}},
		{"live", "", fnKey{"f", "", "live"}}, // a throttle of an alias
		{"", "", fnKey{"f", "", ""}},
	} {
		if got := invokedKey("f", c.qualifier, c.version); got != c.want {
			t.Errorf("invokedKey(f, %q, %q) = %+v, want %+v", c.qualifier, c.version, got, c.want)
		}
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

// TestMetricsVersionsAndDeliveryFailures: invocations count under the
// version that ran and the alias the caller named (and sum to the
// function's); a failed event whose dead-letter queue and on-failure
// destination are gone counts one dead-letter error and one destination
// delivery failure.
func TestMetricsVersionsAndDeliveryFailures(t *testing.T) {
	t.Parallel()
	n, cl := startNode(t, t.TempDir())
	ctx := ctxT(t)
	create(t, cl, "vm", behaveZip(t, "m"), nil)
	if _, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "vm"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateAlias(ctx, &rpc.CreateAliasRequest{FunctionName: "vm", Name: "live", FunctionVersion: "1"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"live", "live", "1", ""} {
		res, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "vm", Qualifier: q, Payload: []byte(`{}`)})
		if err != nil || res.FunctionError != "" {
			t.Fatalf("invoke vm:%s: %+v %v", q, res, err)
		}
	}
	if _, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "vm", Qualifier: "live", Payload: []byte(`"error"`)}); err != nil {
		t.Fatal(err)
	}

	// Delivery failures: the dead-letter queue and the on-failure
	// destination function exist when configured, and are deleted before
	// the event fails.
	create(t, cl, "failing", behaveZip(t, "m"), nil)
	create(t, cl, "gone", behaveZip(t, "m"), nil)
	if _, err := cl.CreateQueue(ctx, &rpc.CreateQueueRequest{Name: "dlq-gone"}); err != nil {
		t.Fatal(err)
	}
	dlq := "queue:dlq-gone"
	if _, err := cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: "failing", DeadLetter: &dlq}); err != nil {
		t.Fatal(err)
	}
	zero := 0
	if _, err := cl.PutEventConfig(ctx, &rpc.PutEventConfigRequest{FunctionName: "failing", MaxRetryAttempts: &zero, OnFailure: "function:gone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.DeleteQueue(ctx, "dlq-gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.DeleteFunction(ctx, &rpc.GetFunctionRequest{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if res, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "failing", InvocationType: rpc.InvocationEvent, Payload: []byte(`"error"`)}); err != nil || res.StatusCode != rpc.StatusAccepted {
		t.Fatalf("event: %+v %v", res, err)
	}
	waitFor(t, "the event to end", func() bool { return n.fsm.AsyncLen() == 0 })

	fams := scrape(t, n)
	for _, c := range []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"nimbus_function_invocations_total", map[string]string{"function": "vm", "version": "1", "alias": "live"}, 3},
		{"nimbus_function_errors_total", map[string]string{"function": "vm", "version": "1", "alias": "live"}, 1},
		{"nimbus_function_invocations_total", map[string]string{"function": "vm", "version": "1", "alias": ""}, 1},
		{"nimbus_function_invocations_total", map[string]string{"function": "vm", "version": "$LATEST", "alias": ""}, 1},
		{"nimbus_function_invocations_total", map[string]string{"function": "vm"}, 5},
		{"nimbus_function_duration_milliseconds", map[string]string{"function": "vm", "version": "1", "alias": "live"}, 3},
		{"nimbus_function_duration_milliseconds", map[string]string{"function": "vm"}, 5},
		{"nimbus_function_concurrent_executions", map[string]string{"function": "vm", "version": "", "alias": ""}, 0},
		{"nimbus_function_dead_letter_errors_total", map[string]string{"function": "failing"}, 1},
		{"nimbus_function_destination_delivery_failures_total", map[string]string{"function": "failing"}, 1},
		{"nimbus_function_async_events_dropped_total", map[string]string{"function": "failing"}, 1},
	} {
		if got := series(fams, c.family, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.family, c.labels, got, c.want)
		}
	}
	m, err := cl.FunctionMetrics(ctx, &rpc.FunctionMetricsRequest{FunctionName: "vm"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Invocations != 5 || m.Errors != 1 || m.DurationCount != 5 || m.MaxConcurrency != 1 {
		t.Fatalf("Function.Metrics of vm, every version and alias: %+v", m)
	}
}
