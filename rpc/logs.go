package rpc

// MethodLogsRead reads a function's log; with WaitMs it long-polls, which is
// how `nimbus logs tail --follow` follows a log live.
const MethodLogsRead = "Logs.Read"

// LogEvent is one line of a function's log. Seq is its cursor in the
// replicated store: strictly increasing per function, the same on every
// node. Node is the node that ran the invocation.
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
}

// ReadLogsResponse holds events in the store's order and the cursor to
// pass as After next time (the same on every node).
type ReadLogsResponse struct {
	Events []LogEvent `msgpack:"events"`
	Next   uint64     `msgpack:"next"`
	// Expired is set when lines after the cursor asked for were deleted
	// by retention: the answer resumes from the oldest line kept.
	Expired bool `msgpack:"expired,omitempty"`
	// More is set when the answer stopped before the end of the log (a
	// bound on one read's work, not on matches): ask again from Next.
	More bool `msgpack:"more,omitempty"`
}
