package rpc

import "context"

// MethodFunctionMetrics returns one function's numbers as the whole
// cluster counted them (`nimbus fn metrics`).
const MethodFunctionMetrics = "Function.Metrics"

// DurationBucketsMs are the upper bounds, in milliseconds, of the duration
// histograms every node keeps (the last bucket, +Inf, is implicit): 1 ms
// to Lambda's longest timeout, 900 s.
var DurationBucketsMs = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000, 300000, 600000, 900000}

// FunctionMetricsRequest asks for a function's numbers over the last
// SinceSec seconds (at most MaxMetricsWindowSec; 0 means all of it).
type FunctionMetricsRequest struct {
	FunctionName string `msgpack:"function_name"`
	SinceSec     int    `msgpack:"since_sec,omitempty"`
	// Local asks for the answering node's own numbers only (nodes use it
	// among themselves when one gathers them from all).
	Local bool `msgpack:"local,omitempty"`
}

// MaxMetricsWindowSec is the longest window a node keeps: one hour, in
// one-minute steps.
const MaxMetricsWindowSec = 3600

// FunctionMetrics are a function's numbers. Counters are over the window
// asked; a window longer than a node has run counts from its start.
type FunctionMetrics struct {
	FunctionName string `msgpack:"function_name" json:"FunctionName"`
	SinceSec     int    `msgpack:"since_sec" json:"SinceSeconds"`
	Invocations  uint64 `msgpack:"invocations" json:"Invocations"`
	Errors       uint64 `msgpack:"errors" json:"Errors"`
	Throttles    uint64 `msgpack:"throttles" json:"Throttles"`
	ColdStarts   uint64 `msgpack:"cold_starts" json:"ColdStarts"`
	// MaxConcurrency is the most invocations of the function that ran at
	// once, summed over nodes (each node's own peak in the window).
	MaxConcurrency int64 `msgpack:"max_concurrency" json:"MaxConcurrency"`
	// DurationBuckets counts durations per bucket of DurationBucketsMs,
	// with one more for longer ones; DurationP50/P90/P99 are estimated
	// from them (ms).
	DurationBuckets []uint64 `msgpack:"duration_buckets" json:"-"`
	DurationCount   uint64   `msgpack:"duration_count" json:"DurationCount"`
	DurationP50     float64  `msgpack:"p50_ms" json:"DurationP50Ms"`
	DurationP90     float64  `msgpack:"p90_ms" json:"DurationP90Ms"`
	DurationP99     float64  `msgpack:"p99_ms" json:"DurationP99Ms"`
	// Nodes are the nodes whose numbers are in the sum.
	Nodes []string `msgpack:"nodes" json:"Nodes"`
}

// Add sums o into m (same function, same window).
func (m *FunctionMetrics) Add(o *FunctionMetrics) {
	m.Invocations += o.Invocations
	m.Errors += o.Errors
	m.Throttles += o.Throttles
	m.ColdStarts += o.ColdStarts
	m.MaxConcurrency += o.MaxConcurrency
	m.DurationCount += o.DurationCount
	if len(m.DurationBuckets) < len(o.DurationBuckets) {
		m.DurationBuckets = append(m.DurationBuckets, make([]uint64, len(o.DurationBuckets)-len(m.DurationBuckets))...)
	}
	for i, c := range o.DurationBuckets {
		m.DurationBuckets[i] += c
	}
	m.Nodes = append(m.Nodes, o.Nodes...)
}

// Percentiles fills DurationP50/P90/P99 from the buckets, interpolating
// linearly inside the bucket a rank falls in (the +Inf bucket reports its
// lower bound).
func (m *FunctionMetrics) Percentiles() {
	m.DurationP50 = m.quantile(0.50)
	m.DurationP90 = m.quantile(0.90)
	m.DurationP99 = m.quantile(0.99)
}

func (m *FunctionMetrics) quantile(q float64) float64 {
	var total uint64
	for _, c := range m.DurationBuckets {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen uint64
	for i, c := range m.DurationBuckets {
		if c == 0 {
			continue
		}
		if float64(seen+c) >= rank {
			lo := 0.0
			if i > 0 {
				lo = DurationBucketsMs[i-1]
			}
			if i >= len(DurationBucketsMs) {
				return lo
			}
			hi := DurationBucketsMs[i]
			return lo + (hi-lo)*(rank-float64(seen))/float64(c)
		}
		seen += c
	}
	return DurationBucketsMs[len(DurationBucketsMs)-1]
}

// FunctionMetrics returns a function's numbers from every node
// (MethodFunctionMetrics).
func (c *Client) FunctionMetrics(ctx context.Context, req *FunctionMetricsRequest) (*FunctionMetrics, error) {
	return callTyped[FunctionMetrics](ctx, c, MethodFunctionMetrics, req)
}
