package node

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// metrics is the node's Prometheus registry (its own: no global state) and
// the counters the hot paths add to. Function numbers live in fnStats, as
// atomics the invoke path adds to without a lock or a map of label values;
// they, and every gauge of the node's state (sandboxes, Raft, gossip, the
// ledger, connections), are read only when /metrics is scraped.
type metrics struct {
	reg       *prometheus.Registry
	fns       *fnStats
	sandboxes sandboxCounters

	rpcRequests  *prometheus.CounterVec   // method, code
	rpcLatency   *prometheus.HistogramVec // method
	grants       prometheus.Counter
	refusals     *prometheus.CounterVec // reason
	leaderChange prometheus.Counter
	raftApply    prometheus.Histogram
}

func newMetrics(n *Node, functionLimit int) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		fns: newFnStats(functionLimit, time.Now()),
		rpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_rpc_requests_total", Help: "rpc requests answered, by method and error code (OK on success).",
		}, []string{"method", "code"}),
		rpcLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "nimbus_rpc_request_duration_seconds", Help: "Time handlers took, by method.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30, 120, 900},
		}, []string{"method"}),
		grants: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nimbus_ledger_grants_total", Help: "Slots the leader's ledger granted while this node led.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_ledger_refusals_total", Help: "Slot requests the ledger refused, by reason.",
		}, []string{"reason"}),
		leaderChange: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nimbus_raft_leader_changes_total", Help: "Leader changes this node observed.",
		}),
		raftApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nimbus_raft_apply_duration_seconds", Help: "Time from proposing a write to its commit and apply, on the leader (group-committed entries included).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}),
	}
	m.reg.MustRegister(m.rpcRequests, m.rpcLatency, m.grants, m.refusals, m.leaderChange, m.raftApply,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&nodeCollector{n: n})
	return m
}

// observeLeaders counts the leader changes Raft reports to this server.
func (n *Node) observeLeaders() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		defer n.raft.DeregisterObserver(obs)
		for {
			select {
			case <-n.stopping:
				return
			case <-ch:
				n.metrics.leaderChange.Inc()
			}
		}
	}()
}

// observeRPC counts one answered request (rpc.ServerOptions.Observe). Only
// registered methods reach it, so its labels are bounded.
func (m *metrics) observeRPC(method string, err error, took time.Duration) {
	code := "OK"
	if err != nil {
		code = rpc.AsError(err).Code
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			code = "Canceled"
		}
	}
	m.rpcRequests.WithLabelValues(method, code).Inc()
	m.rpcLatency.WithLabelValues(method).Observe(took.Seconds())
}

// observeGrant counts a ledger decision.
func (m *metrics) observeGrant(err error) {
	if err == nil {
		m.grants.Inc()
		return
	}
	var re *rpc.Error
	reason := "other"
	if errors.As(err, &re) {
		reason = re.Code
		if re.Reason != "" {
			reason = re.Reason
		}
	} else if errors.Is(err, scheduler.ErrLedgerRecovering) {
		reason = "Recovering"
	}
	m.refusals.WithLabelValues(reason).Inc()
}

// Handler serves the registry in Prometheus's text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// MetricsHandler serves the node's metrics (GET /metrics).
func (n *Node) MetricsHandler() http.Handler { return n.metrics.handler() }

// sampleLoop records the one-minute samples that `fn metrics --since` uses.
func (n *Node) sampleLoop() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-n.stopping:
			return
		case now := <-t.C:
			n.metrics.fns.tick(now)
		}
	}
}

// fnLabels are the labels of every function series: see fnKey.
var fnLabels = []string{"function", "version", "alias"}

var (
	descInvocations  = prometheus.NewDesc("nimbus_function_invocations_total", "Invocations (Lambda's Invocations): function errors included, throttles not.", fnLabels, nil)
	descErrors       = prometheus.NewDesc("nimbus_function_errors_total", "Invocations that ended in a function error or timeout (Lambda's Errors).", fnLabels, nil)
	descThrottles    = prometheus.NewDesc("nimbus_function_throttles_total", "Invocations refused over a concurrency limit (Lambda's Throttles).", fnLabels, nil)
	descColdStarts   = prometheus.NewDesc("nimbus_function_cold_starts_total", "Invocations that started a new sandbox.", fnLabels, nil)
	descConcurrent   = prometheus.NewDesc("nimbus_function_concurrent_executions", "Invocations running now (Lambda's ConcurrentExecutions).", fnLabels, nil)
	descDuration     = prometheus.NewDesc("nimbus_function_duration_milliseconds", "Time the function ran (Lambda's Duration).", fnLabels, nil)
	descInitDuration = prometheus.NewDesc("nimbus_function_init_duration_milliseconds", "Init Duration of cold starts.", fnLabels, nil)
	descSandboxes    = prometheus.NewDesc("nimbus_sandboxes", "Sandboxes on this worker by state.", []string{"state"}, nil)
	descMemOffered   = prometheus.NewDesc("nimbus_worker_memory_offered_mb", "Memory this worker offers to sandboxes.", nil, nil)
	descMemGranted   = prometheus.NewDesc("nimbus_worker_memory_granted_mb", "Memory of the invocations running on this worker.", nil, nil)
	descRaftState    = prometheus.NewDesc("nimbus_raft_state", "1 for this server's Raft state.", []string{"state"}, nil)
	descRaftTerm     = prometheus.NewDesc("nimbus_raft_term", "This server's Raft term.", nil, nil)
	descRaftApplied  = prometheus.NewDesc("nimbus_raft_last_applied_index", "The last Raft index this server applied.", nil, nil)
	descRaftCommit   = prometheus.NewDesc("nimbus_raft_commit_index", "The Raft commit index this server knows.", nil, nil)
	descMembers      = prometheus.NewDesc("nimbus_gossip_members", "Members this node knows, by status.", []string{"status"}, nil)
	descSlots        = prometheus.NewDesc("nimbus_ledger_slots", "Slots in use in the leader's ledger (on the leader).", nil, nil)
	descConns        = prometheus.NewDesc("nimbus_rpc_connections", "rpc connections open on this node's port.", nil, nil)
	descConnsRefused = prometheus.NewDesc("nimbus_rpc_connections_refused_total", "rpc connections refused at a limit.", nil, nil)
	descAPIConns     = prometheus.NewDesc("nimbus_runtime_api_connections", "Runtime API connections open in this worker's sandboxes.", nil, nil)
	descAPIRefused   = prometheus.NewDesc("nimbus_runtime_api_connections_refused_total", "Runtime API connections a sandbox opened past its limit, closed at once.", nil, nil)
	descLogLines     = prometheus.NewDesc("nimbus_log_lines_total", "Function log lines this node shipped to the log store, or dropped.", []string{"outcome"}, nil)
	descLogBuffered  = prometheus.NewDesc("nimbus_log_lines_buffered", "Function log lines waiting to be shipped.", nil, nil)
	descLogBatches   = prometheus.NewDesc("nimbus_log_batches_total", "Batches of log lines the log store acknowledged, and those published again, one at a time, after their pipelined publish failed.", []string{"outcome"}, nil)
	descStarts       = prometheus.NewDesc("nimbus_sandbox_starts_total", "Sandboxes started on this worker (cold starts).", nil, nil)
	descAsyncRecv    = prometheus.NewDesc("nimbus_function_async_events_received_total", "Asynchronous invocations accepted (Lambda's AsyncEventsReceived), on the leader that committed them.", fnLabels, nil)
	descAsyncDropped = prometheus.NewDesc("nimbus_function_async_events_dropped_total", "Asynchronous invocations that failed or expired with no destination or dead-letter queue to take them (Lambda's AsyncEventsDropped).", fnLabels, nil)
	descAsyncAge     = prometheus.NewDesc("nimbus_function_async_event_age_milliseconds", "Time from an event's accept to each of its dispatches (Lambda's AsyncEventAge).", fnLabels, nil)
	descAsyncQueued  = prometheus.NewDesc("nimbus_async_events_queued", "Asynchronous events accepted and not yet finished (on the leader).", nil, nil)
	descBatchSize    = prometheus.NewDesc("nimbus_queue_trigger_batch_size", "Messages per batch a queue trigger handed its function.", fnLabels, nil)
	descQueueMsgs    = prometheus.NewDesc("nimbus_queue_messages", "Messages in the built-in queues, all queues together (on the leader).", nil, nil)
	descImageBytes   = prometheus.NewDesc("nimbus_image_store_bytes", "Bytes of each managed runtime's image in this worker's image store.", []string{"runtime"}, nil)
	descCodeBytes    = prometheus.NewDesc("nimbus_code_store_bytes", "Bytes of function code zips in this node's code store.", nil, nil)
	descDLQErrors    = prometheus.NewDesc("nimbus_function_dead_letter_errors_total", "Failed asynchronous events whose copy could not be sent to the function's dead-letter queue (Lambda's DeadLetterErrors).", fnLabels, nil)
	descDestFailures = prometheus.NewDesc("nimbus_function_destination_delivery_failures_total", "Ended asynchronous events whose record could not be sent to their on-success or on-failure destination (Lambda's DestinationDeliveryFailures).", fnLabels, nil)
	descFailures     = prometheus.NewDesc("nimbus_sandbox_failures_total", "Invocations a sandbox failed, by Lambda's error type.", []string{"reason"}, nil)
)

// sandboxFailureReasons are the platform error types counted by name; any
// other (a runtime may post any type) is counted as "other".
var sandboxFailureReasons = []string{"Sandbox.Timedout", "Runtime.OutOfMemory", "Runtime.ExitError", "Runtime.InvalidEntrypoint", "Runtime.Unknown", "other"}

// sandboxCounters count what the worker's sandboxes did.
type sandboxCounters struct {
	starts   atomic.Uint64
	failures [6]atomic.Uint64 // by sandboxFailureReasons
}

func (c *sandboxCounters) failed(errorType string) {
	i := len(sandboxFailureReasons) - 1
	for j, r := range sandboxFailureReasons[:i] {
		if r == errorType {
			i = j
			break
		}
	}
	c.failures[i].Add(1)
}

// countInvocation counts an invocation that ran (sync or async) under the
// version that ran and the alias the caller named: Lambda's Invocations,
// and Errors when it ended in a function error.
func (m *metrics) countInvocation(fn, qualifier string, resp *rpc.InvokeResponse) {
	c := m.fns.getKey(invokedKey(fn, qualifier, resp.ExecutedVersion))
	c.invocations.Add(1)
	if resp.FunctionError != "" {
		c.errors.Add(1)
	}
}

// nodeCollector reads the node's state when scraped.
type nodeCollector struct{ n *Node }

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInvocations, descErrors, descThrottles, descColdStarts, descConcurrent,
		descDuration, descInitDuration, descSandboxes, descMemOffered, descMemGranted, descRaftState, descRaftTerm,
		descRaftApplied, descRaftCommit, descMembers, descSlots, descConns, descConnsRefused, descAPIConns, descAPIRefused,
		descLogLines, descLogBuffered, descLogBatches, descStarts, descFailures,
		descAsyncRecv, descAsyncDropped, descDLQErrors, descDestFailures, descAsyncAge, descAsyncQueued, descBatchSize, descQueueMsgs, descCodeBytes, descImageBytes} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	for _, k := range n.metrics.fns.keys() {
		fc := n.metrics.fns.counters(k)
		if fc == nil {
			continue
		}
		lv := []string{k.function, k.version, k.alias}
		own := k.version == "" && k.alias == "" // the function's own key: see fnKey
		ran := fc.invocations.Load() > 0 || fc.duration.sumUs.Load() > 0 || fc.duration.counts()[0] > 0
		if own || ran || fc.throttles.Load() > 0 {
			ch <- prometheus.MustNewConstMetric(descInvocations, prometheus.CounterValue, float64(fc.invocations.Load()), lv...)
			ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(fc.errors.Load()), lv...)
			ch <- prometheus.MustNewConstMetric(descThrottles, prometheus.CounterValue, float64(fc.throttles.Load()), lv...)
			ch <- prometheus.MustNewConstMetric(descColdStarts, prometheus.CounterValue, float64(fc.coldStarts.Load()), lv...)
			ch <- constHisto(descDuration, &fc.duration, lv...)
			ch <- constHisto(descInitDuration, &fc.initDur, lv...)
		}
		if own {
			ch <- prometheus.MustNewConstMetric(descConcurrent, prometheus.GaugeValue, float64(fc.concurrent.Load()), lv...)
		}
		if v := fc.asyncReceived.Load(); v > 0 {
			ch <- prometheus.MustNewConstMetric(descAsyncRecv, prometheus.CounterValue, float64(v), lv...)
		}
		if v := fc.asyncDropped.Load(); v > 0 {
			ch <- prometheus.MustNewConstMetric(descAsyncDropped, prometheus.CounterValue, float64(v), lv...)
		}
		if v := fc.deadLetterErrors.Load(); v > 0 {
			ch <- prometheus.MustNewConstMetric(descDLQErrors, prometheus.CounterValue, float64(v), lv...)
		}
		if v := fc.destinationFailures.Load(); v > 0 {
			ch <- prometheus.MustNewConstMetric(descDestFailures, prometheus.CounterValue, float64(v), lv...)
		}
		if fc.asyncAge.sumUs.Load() > 0 || fc.asyncAge.counts()[0] > 0 {
			ch <- constHisto(descAsyncAge, &fc.asyncAge, lv...)
		}
		if fc.batchSizes.sum.Load() > 0 {
			ch <- constCountHisto(descBatchSize, &fc.batchSizes, lv...)
		}
	}
	if b, err := dirBytes(filepath.Join(n.cfg.DataDir, "code", "zips")); err == nil {
		ch <- prometheus.MustNewConstMetric(descCodeBytes, prometheus.GaugeValue, float64(b))
	}
	if n.sandboxes != nil {
		st := n.sandboxes.Stats()
		ch <- prometheus.MustNewConstMetric(descSandboxes, prometheus.GaugeValue, float64(st.Initializing), "initializing")
		ch <- prometheus.MustNewConstMetric(descSandboxes, prometheus.GaugeValue, float64(st.Running), "busy")
		ch <- prometheus.MustNewConstMetric(descSandboxes, prometheus.GaugeValue, float64(st.Thawed), "idle")
		ch <- prometheus.MustNewConstMetric(descSandboxes, prometheus.GaugeValue, float64(st.Frozen), "frozen")
		ch <- prometheus.MustNewConstMetric(descSandboxes, prometheus.GaugeValue, float64(st.Ready), "ready")
		ch <- prometheus.MustNewConstMetric(descAPIConns, prometheus.GaugeValue, float64(st.RuntimeAPIConns))
		ch <- prometheus.MustNewConstMetric(descAPIRefused, prometheus.CounterValue, float64(st.RuntimeAPIRefused))
		ch <- prometheus.MustNewConstMetric(descMemOffered, prometheus.GaugeValue, float64(n.cfg.MemoryMB))
		if images := n.imageStore(); images != nil {
			for _, im := range images.List() {
				ch <- prometheus.MustNewConstMetric(descImageBytes, prometheus.GaugeValue, float64(im.SizeBytes), im.Runtime)
			}
		}
		granted := 0
		for _, s := range n.work.list() {
			granted += s.MemoryMB
		}
		ch <- prometheus.MustNewConstMetric(descMemGranted, prometheus.GaugeValue, float64(granted))
		sc := &n.metrics.sandboxes
		ch <- prometheus.MustNewConstMetric(descStarts, prometheus.CounterValue, float64(sc.starts.Load()))
		for i, r := range sandboxFailureReasons {
			ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(sc.failures[i].Load()), r)
		}
	}
	if n.logs != nil {
		ls := n.logs.Stats()
		ch <- prometheus.MustNewConstMetric(descLogLines, prometheus.CounterValue, float64(ls.Published), "shipped")
		ch <- prometheus.MustNewConstMetric(descLogLines, prometheus.CounterValue, float64(ls.Dropped), "dropped")
		ch <- prometheus.MustNewConstMetric(descLogBuffered, prometheus.GaugeValue, float64(ls.BufferedLines))
		ch <- prometheus.MustNewConstMetric(descLogBatches, prometheus.CounterValue, float64(ls.Batches), "acknowledged")
		ch <- prometheus.MustNewConstMetric(descLogBatches, prometheus.CounterValue, float64(ls.Republished), "republished")
	}
	if n.raft != nil {
		state := n.raft.State()
		for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
			v := 0.0
			if s == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descRaftState, prometheus.GaugeValue, v, s.String())
		}
		stats := n.raft.Stats()
		for _, kv := range []struct {
			d *prometheus.Desc
			k string
		}{{descRaftTerm, "term"}, {descRaftApplied, "applied_index"}, {descRaftCommit, "commit_index"}} {
			if v, err := strconv.ParseUint(stats[kv.k], 10, 64); err == nil {
				ch <- prometheus.MustNewConstMetric(kv.d, prometheus.GaugeValue, float64(v))
			}
		}
		if n.isLeader() {
			ch <- prometheus.MustNewConstMetric(descSlots, prometheus.GaugeValue, float64(n.ledger.Stats().Slots))
			ch <- prometheus.MustNewConstMetric(descAsyncQueued, prometheus.GaugeValue, float64(n.fsm.AsyncLen()))
			msgs, _, _ := n.fsm.QueueStats()
			ch <- prometheus.MustNewConstMetric(descQueueMsgs, prometheus.GaugeValue, float64(msgs))
		}
	}
	if n.members != nil {
		by := map[string]int{}
		for _, st := range n.members.snapshot() {
			by[st.status]++
		}
		statuses := make([]string, 0, len(by))
		for s := range by {
			statuses = append(statuses, s)
		}
		sort.Strings(statuses)
		for _, s := range statuses {
			ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(by[s]), s)
		}
	}
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(n.limiter.Open()))
	ch <- prometheus.MustNewConstMetric(descConnsRefused, prometheus.CounterValue, float64(n.limiter.Refused()))
}

func constHisto(d *prometheus.Desc, h *histo, labels ...string) prometheus.Metric {
	counts := h.counts()
	buckets := make(map[float64]uint64, len(rpc.DurationBucketsMs))
	var cum uint64
	for i, le := range rpc.DurationBucketsMs {
		cum += counts[i]
		buckets[le] = cum
	}
	total := cum + counts[len(counts)-1]
	return prometheus.MustNewConstHistogram(d, total, float64(h.sumUs.Load())/1000, buckets, labels...)
}

func constCountHisto(d *prometheus.Desc, h *countHisto, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(batchBuckets))
	var cum uint64
	for i, le := range batchBuckets {
		cum += h.buckets[i].Load()
		buckets[le] = cum
	}
	total := cum + h.buckets[len(batchBuckets)].Load()
	return prometheus.MustNewConstHistogram(d, total, float64(h.sum.Load()), buckets, labels...)
}

// dirBytes is the size of the regular files directly in dir.
func dirBytes(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			total += info.Size()
		}
	}
	return total, nil
}

// functionMetrics is Function.Metrics: the function's numbers from every
// live node, summed (or, Local, this node's own).
func (n *Node) functionMetrics(ctx context.Context, req *rpc.FunctionMetricsRequest) (*rpc.FunctionMetrics, error) {
	if err := scheduler.ValidateName(req.FunctionName); err != nil {
		return nil, err
	}
	if req.SinceSec < 0 || req.SinceSec > rpc.MaxMetricsWindowSec {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "since must be between 0 and %d seconds", rpc.MaxMetricsWindowSec)
	}
	since := time.Duration(req.SinceSec) * time.Second
	if req.Local {
		out := n.metrics.fns.window(req.FunctionName, since, time.Now())
		out.Nodes = []string{n.name}
		return out, nil
	}
	var fr rpc.FunctionResponse
	if _, err := n.getFunctionAnywhere(ctx, rpc.FunctionRef{Name: req.FunctionName}, &fr); err != nil {
		return nil, err
	}
	sum := &rpc.FunctionMetrics{FunctionName: req.FunctionName, SinceSec: req.SinceSec}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range n.members.alive("") {
		local := *req
		local.Local = true
		if name == n.name {
			one, _ := n.functionMetrics(ctx, &local)
			mu.Lock()
			sum.Add(one)
			mu.Unlock()
			continue
		}
		addr, ok := n.members.rpcAddr(name)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			var one rpc.FunctionMetrics
			if err := n.peers.call(cctx, addr, rpc.MethodFunctionMetrics, &local, &one); err != nil {
				n.log.Debug("metrics not gathered", "from", name, "err", err)
				return
			}
			mu.Lock()
			sum.Add(&one)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Strings(sum.Nodes)
	sum.Percentiles()
	return sum, nil
}
