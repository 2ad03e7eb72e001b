package rpc

// MethodLogsRead reads a function's log; with WaitMs it long-polls, which is
// how `nimbus logs tail --follow` follows a log live.
const MethodLogsRead = "Logs.Read"

// LogEvent is one line of a function's log. Seq is strictly increasing per
// function and is the cursor for ReadLogsRequest.After.
type LogEvent struct {
	Seq       uint64 `msgpack:"seq" json:"seq"`
	TimeMs    int64  `msgpack:"time_ms" json:"timestamp"`
	RequestID string `msgpack:"request_id,omitempty" json:"requestId,omitempty"`
	Line      string `msgpack:"line" json:"message"`
}

// ReadLogsRequest asks for the lines of a function after a cursor.
type ReadLogsRequest struct {
	FunctionName string `msgpack:"function_name"`
	// After returns only events with Seq > After. 0 means from the start of
	// what is retained (or of SinceMs).
	After uint64 `msgpack:"after"`
	// SinceMs, if not 0, skips events older than this Unix time in ms.
	SinceMs int64 `msgpack:"since_ms,omitempty"`
	// Limit caps the number of events returned (0 means a server default).
	Limit int `msgpack:"limit,omitempty"`
	// WaitMs, if not 0 and nothing is available, waits up to this long for
	// the next event before answering with none.
	WaitMs int `msgpack:"wait_ms,omitempty"`
}

// ReadLogsResponse holds events in Seq order and the cursor to pass as After
// next time.
type ReadLogsResponse struct {
	Events []LogEvent `msgpack:"events"`
	Next   uint64     `msgpack:"next"`
}
