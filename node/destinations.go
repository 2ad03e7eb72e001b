package node

import (
	"encoding/json"
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
	cfg, ok := n.fsm.EventConfig(e.Function)
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
	if err != nil || d.Kind != scheduler.DestinationFunction {
		n.log.Warn("async destination not delivered: not a function", "request_id", e.RequestID, "function", e.Function, "destination", dest)
		return nil
	}
	if e.Depth+1 > rpc.MaxDestinationDepth {
		n.log.Warn("recursive invocation loop stopped: the destination chain reached its limit",
			"request_id", e.RequestID, "function", e.Function, "destination", dest, "depth", e.Depth, "limit", rpc.MaxDestinationDepth)
		return nil
	}
	now := time.Now()
	rec := invocationRecord{
		Version:   "1.0",
		Timestamp: now.UTC().Format("2006-01-02T15:04:05.000Z"),
		RequestContext: recordRequest{
			RequestID:              e.RequestID,
			FunctionARN:            rpc.DefaultFunctionARN(e.Function) + ":" + eventQualifier(e),
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
		return nil
	}
	return &scheduler.AsyncEvent{
		RequestID:  newRequestID(),
		Function:   d.Name,
		Payload:    body,
		AcceptedMs: now.UnixMilli(),
		DueMs:      now.UnixMilli(),
		Depth:      e.Depth + 1,
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
