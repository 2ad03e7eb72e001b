package node

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// Destinations: when an async event ends, its function's event
// configuration may name where the outcome goes. A function destination is
// invoked asynchronously with Lambda's invocation record as its event: the
// dispatcher attaches that event to the op that finishes the original
// (AsyncOp.Then), so both happen in one apply.

// Conditions of an invocation record, as Lambda names them.
const (
	conditionSuccess          = "Success"
	conditionRetriesExhausted = "RetriesExhausted"
	conditionEventAgeExceeded = "EventAgeExceeded"
)

// invocationRecord is Lambda's destination record, field for field.
type invocationRecord struct {
	Version         string           `json:"version"`
	Timestamp       string           `json:"timestamp"`
	RequestContext  recordRequest    `json:"requestContext"`
	RequestPayload  json.RawMessage  `json:"requestPayload"`
	ResponseContext *recordResponse  `json:"responseContext,omitempty"`
	ResponsePayload *json.RawMessage `json:"responsePayload,omitempty"`
}

type recordRequest struct {
	RequestID              string `json:"requestId"`
	FunctionARN            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

type recordResponse struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	FunctionError   string `json:"functionError,omitempty"`
}

// asJSON returns b if it is JSON, else b as a JSON string.
func asJSON(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

// destinationEvent returns the event for the destination of an ended
// event (nil when there is none, or the chain is too long), and logs a
// stopped loop. resp is the last run's answer (nil when the event ended
// without one); invokes is how many times it ran.
func (n *Node) destinationEvent(e *scheduler.AsyncEvent, condition string, invokes int, resp *rpc.InvokeResponse) *scheduler.AsyncEvent {
	cfg, ok := n.fsm.EventConfigFor(e.Function, e.Qualifier)
	if !ok {
		return nil
	}
	dest := cfg.OnFailure
	if condition == conditionSuccess {
		dest = cfg.OnSuccess
	}
	if dest == "" {
		return nil
	}
	d, err := scheduler.ParseDestination(dest)
	if err == nil && d.Kind == scheduler.DestinationQueue {
		return nil // destinationMessages delivers it
	}
	if err != nil || d.Kind != scheduler.DestinationFunction {
		n.log.Warn("async destination not delivered: not a function", "request_id", e.RequestID, "function", e.Function, "destination", dest)
		n.metrics.fns.get(e.Function).destinationFailures.Add(1)
		return nil
	}
	if _, ok := n.fsm.Function(d.Name); !ok {
		n.log.Warn("async destination not delivered: the function does not exist", "request_id", e.RequestID, "function", e.Function, "destination", dest)
		n.metrics.fns.get(e.Function).destinationFailures.Add(1)
		return nil
	}
	if e.Depth+1 > rpc.MaxDestinationDepth {
		n.log.Warn("recursive invocation loop stopped: the destination chain reached its limit",
			"request_id", e.RequestID, "function", e.Function, "destination", dest, "depth", e.Depth, "limit", rpc.MaxDestinationDepth)
		return nil
	}
	body, ok := n.recordBody(e, condition, invokes, resp)
	if !ok {
		n.metrics.fns.get(e.Function).destinationFailures.Add(1)
		return nil
	}
	now := time.Now()
	return &scheduler.AsyncEvent{
		RequestID:  newRequestID(),
		Function:   d.Name,
		Payload:    body,
		AcceptedMs: now.UnixMilli(),
		DueMs:      now.UnixMilli(),
		Depth:      e.Depth + 1,
	}
}

// recordBody returns Lambda's invocation record of an ended event, false
// (logged) when it is too large to deliver.
func (n *Node) recordBody(e *scheduler.AsyncEvent, condition string, invokes int, resp *rpc.InvokeResponse) ([]byte, bool) {
	now := time.Now()
	rec := invocationRecord{
		Version:   "1.0",
		Timestamp: now.UTC().Format("2006-01-02T15:04:05.000Z"),
		RequestContext: recordRequest{
			RequestID:              e.RequestID,
			FunctionARN:            n.cfg.ARNs.Function(e.Function, eventQualifier(e)),
			Condition:              condition,
			ApproximateInvokeCount: invokes,
		},
		RequestPayload: asJSON(e.Payload),
	}
	if resp != nil {
		rec.ResponseContext = &recordResponse{StatusCode: resp.StatusCode, ExecutedVersion: resp.ExecutedVersion, FunctionError: resp.FunctionError}
		p := asJSON(resp.Payload)
		if len(resp.Payload) == 0 {
			p = json.RawMessage("null")
		}
		rec.ResponsePayload = &p
	}
	body, err := json.Marshal(rec)
	if err != nil || len(body) > rpc.MaxAsyncPayload {
		n.log.Warn("async destination not delivered: the record is too large", "request_id", e.RequestID, "function", e.Function, "bytes", len(body))
		return nil, false
	}
	return body, true
}

// destinationMessages returns the queue messages an ended event sends: its
// queue destination's record (on-success or on-failure) and, on failure,
// the legacy dead-letter queue's copy of the event, with the attributes
// RequestID, ErrorCode and ErrorMessage (Lambda's). They travel with the
// op that finishes the event (AsyncOp.ThenMessages), so they are sent in
// the same apply; none is sent while some server does not apply queues
// yet (it would skip them and diverge).
func (n *Node) destinationMessages(e *scheduler.AsyncEvent, condition string, invokes int, resp *rpc.InvokeResponse) []scheduler.QueueMessage {
	var out []scheduler.QueueMessage
	var failed []*atomic.Uint64 // the counter of each message in out
	fc := n.metrics.fns.get(e.Function)
	now := time.Now().UnixMilli()
	msg := func(queue string, body []byte, attrs map[string]string, failures *atomic.Uint64) {
		q, ok := n.fsm.Queue(queue)
		if !ok || q.FIFO || len(body) > q.MaxMessageSize {
			n.log.Warn("async outcome not sent to its queue: the queue is missing, FIFO or its limit is smaller", "request_id", e.RequestID, "function", e.Function, "queue", queue, "bytes", len(body))
			failures.Add(1)
			return
		}
		out = append(out, scheduler.QueueMessage{ID: newRequestID(), Queue: queue, Body: body, Attrs: attrs,
			SentMs: now, Sender: n.cfg.ARNs.Account, VisibleMs: now + int64(q.DelaySec)*1000})
		failed = append(failed, failures)
	}
	if cfg, ok := n.fsm.EventConfigFor(e.Function, e.Qualifier); ok {
		dest := cfg.OnFailure
		if condition == conditionSuccess {
			dest = cfg.OnSuccess
		}
		if d, err := scheduler.ParseDestination(dest); dest != "" && err == nil && d.Kind == scheduler.DestinationQueue {
			if body, ok := n.recordBody(e, condition, invokes, resp); ok {
				msg(d.Name, body, nil, &fc.destinationFailures)
			} else {
				fc.destinationFailures.Add(1)
			}
		}
	}
	if fn, ok := n.fsm.Function(e.Function); ok && fn.DeadLetter != "" && condition != conditionSuccess {
		if d, err := scheduler.ParseDestination(fn.DeadLetter); err == nil && d.Kind == scheduler.DestinationQueue {
			code, text := "500", condition
			if resp != nil {
				code = strconv.Itoa(resp.StatusCode)
				text = errorMessageOf(resp.Payload)
			}
			msg(d.Name, e.Payload, map[string]string{"RequestID": e.RequestID, "ErrorCode": code, "ErrorMessage": text}, &fc.deadLetterErrors)
		}
	}
	if len(out) > 0 && n.serversSupport(scheduler.CmdQueueSend) != nil {
		n.log.Warn("async outcome not sent to its queue: some server does not apply queues yet", "request_id", e.RequestID, "function", e.Function)
		for _, c := range failed {
			c.Add(1)
		}
		return nil
	}
	return out
}

// errorMessageOf returns a function error's message (its errorMessage
// field, else the payload), at most 1 KB, as Lambda's ErrorMessage
// attribute.
func errorMessageOf(payload []byte) string {
	var fe struct {
		ErrorMessage string `json:"errorMessage"`
	}
	text := string(payload)
	if json.Unmarshal(payload, &fe) == nil && fe.ErrorMessage != "" {
		text = fe.ErrorMessage
	}
	if len(text) > 1024 {
		text = text[:1024]
	}
	if text == "" {
		text = "Unhandled"
	}
	return strings.ToValidUTF8(text, "?")
}

// finishWith sets the follow-ups of an op that finishes an event: its
// destination function's event and its queue messages.
func (n *Node) finishWith(op *scheduler.AsyncOp, e *scheduler.AsyncEvent, condition string, invokes int, resp *rpc.InvokeResponse) {
	op.Then = n.destinationEvent(e, condition, invokes, resp)
	op.ThenMessages = n.destinationMessages(e, condition, invokes, resp)
	if condition != conditionSuccess && op.Then == nil && len(op.ThenMessages) == 0 {
		// Counted when the op is built: an op a lost lease discards (the
		// event runs again) may count twice, as at-least-once allows.
		n.metrics.fns.get(e.Function).asyncDropped.Add(1)
	}
}

// eventQualifier is the qualifier of an event's invoked ARN in its
// invocation record: the version or alias it was sent to, else $LATEST.
func eventQualifier(e *scheduler.AsyncEvent) string {
	if e.Qualifier == "" {
		return rpc.VersionLatest
	}
	return e.Qualifier
}
