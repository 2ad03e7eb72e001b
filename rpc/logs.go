package rpc

// MethodLogsRead reads a function's log; with WaitMs it long-polls, which is
// how `nimbus logs tail --follow` follows a log live.
const MethodLogsRead = "Logs.Read"

// LogEvent is one line of a function's log. Seq is strictly increasing per
// function on the node that keeps the line (Node) and is the cursor for
// that node's log.
type LogEvent struct {
	Node      string `msgpack:"node,omitempty" json:"node,omitempty"`
	Seq       uint64 `msgpack:"seq" json:"seq"`
	TimeMs    int64  `msgpack:"time_ms" json:"timestamp"`
	RequestID string `msgpack:"request_id,omitempty" json:"requestId,omitempty"`
	// Stream is stdout, stderr or platform (START, END, REPORT and the
	// platform's own notes).
	Stream string `msgpack:"stream,omitempty" json:"stream,omitempty"`
	Line   string `msgpack:"line" json:"message"`
}

// ReadLogsRequest asks for the lines of a function after a cursor.
type ReadLogsRequest struct {
	FunctionName string `msgpack:"function_name"`
	// After returns only events with Seq > After. 0 means from the start of
	// what is retained (or of SinceMs).
	After uint64 `msgpack:"after"`
	// SinceMs, if not 0, skips events older than this Unix time in ms.
	SinceMs int64 `msgpack:"since_ms,omitempty"`
	// UntilMs, if not 0, skips events newer than this Unix time in ms.
	UntilMs int64 `msgpack:"until_ms,omitempty"`
	// FilterPattern keeps only the events it matches (CloudWatch's filter
	// pattern syntax); "" keeps all.
	FilterPattern string `msgpack:"filter,omitempty"`
	// RequestID, if set, keeps only the events of that invocation.
	RequestID string `msgpack:"request_id,omitempty"`
	// Limit caps the number of events returned (0 means a server default).
	Limit int `msgpack:"limit,omitempty"`
	// WaitMs, if not 0 and nothing is available, waits up to this long for
	// the next event before answering with none.
	WaitMs int `msgpack:"wait_ms,omitempty"`
	// Cursors holds, in a cluster, the After of each node's log by node
	// name (from the last response); a node missing from it starts at 0.
	// When set, After is ignored.
	Cursors map[string]uint64 `msgpack:"cursors,omitempty"`
	// Local asks for the answering node's own lines only (nodes use it
	// among themselves when one gathers a function's log from all).
	Local bool `msgpack:"local,omitempty"`
}

// ReadLogsResponse holds events in time order and the cursors to pass next
// time: Next for the answering node's own log (After), Cursors for every
// node's (Cursors).
type ReadLogsResponse struct {
	Events  []LogEvent        `msgpack:"events"`
	Next    uint64            `msgpack:"next"`
	Cursors map[string]uint64 `msgpack:"cursors,omitempty"`
	// Expired is set when lines after the cursor asked for were deleted
	// by retention: the answer resumes from the oldest line kept.
	Expired bool `msgpack:"expired,omitempty"`
	// More is set when the answer stopped before the end of the log (a
	// bound on one read's work, not on matches): ask again from Next.
	More bool `msgpack:"more,omitempty"`
}
