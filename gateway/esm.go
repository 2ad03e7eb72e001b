package gateway

import (
	"net/http"
	"strings"

	"nimbus/rpc"
)

// Create/Get/Update/Delete/ListEventSourceMappings over the node's queue
// triggers: an event source is a built-in queue, named by its SQS ARN.

const (
	opCreateEventSourceMapping = "CreateEventSourceMapping"
	opListEventSourceMappings  = "ListEventSourceMappings"
	opGetEventSourceMapping    = "GetEventSourceMapping"
	opUpdateEventSourceMapping = "UpdateEventSourceMapping"
	opDeleteEventSourceMapping = "DeleteEventSourceMapping"
)

func (g *Gateway) esmHandler(op string) handlerFunc {
	switch op {
	case opCreateEventSourceMapping:
		return g.createEventSourceMapping
	case opListEventSourceMappings:
		return g.listEventSourceMappings
	case opGetEventSourceMapping:
		return g.getEventSourceMapping
	case opUpdateEventSourceMapping:
		return g.updateEventSourceMapping
	case opDeleteEventSourceMapping:
		return g.deleteEventSourceMapping
	}
	return nil
}

type scalingConfig struct {
	MaximumConcurrency *int `json:"MaximumConcurrency,omitempty"`
}

// esmInput is the body of Create and Update (Update takes no
// EventSourceArn, and FunctionName only to check it).
type esmInput struct {
	EventSourceArn                 string         `json:"EventSourceArn"`
	FunctionName                   string         `json:"FunctionName"`
	Enabled                        *bool          `json:"Enabled"`
	BatchSize                      *int           `json:"BatchSize"`
	MaximumBatchingWindowInSeconds *int           `json:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          *[]string      `json:"FunctionResponseTypes"`
	ScalingConfig                  *scalingConfig `json:"ScalingConfig"`
}

// eventSourceMapping is Lambda's EventSourceMappingConfiguration shape, for
// an SQS source.
type eventSourceMapping struct {
	UUID                           string         `json:"UUID"`
	EventSourceArn                 string         `json:"EventSourceArn"`
	FunctionArn                    string         `json:"FunctionArn"`
	BatchSize                      int            `json:"BatchSize"`
	MaximumBatchingWindowInSeconds int            `json:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          []string       `json:"FunctionResponseTypes"`
	ScalingConfig                  *scalingConfig `json:"ScalingConfig,omitempty"`
	State                          string         `json:"State"`
	StateTransitionReason          string         `json:"StateTransitionReason"`
	LastModified                   float64        `json:"LastModified"`
}

func (g *Gateway) esmShape(t *rpc.Trigger, state string) eventSourceMapping {
	out := eventSourceMapping{
		UUID:                           t.UUID,
		EventSourceArn:                 g.opts.ARNs.Queue(t.Queue),
		FunctionArn:                    g.opts.ARNs.Function(t.Function, ""),
		BatchSize:                      t.BatchSize,
		MaximumBatchingWindowInSeconds: t.BatchWindowSec,
		FunctionResponseTypes:          []string{},
		StateTransitionReason:          "USER_INITIATED",
		LastModified:                   float64(t.LastModifiedMs) / 1000,
	}
	if t.ReportBatchItemFailures {
		out.FunctionResponseTypes = []string{rpc.FunctionResponseReportBatchItemFailures}
	}
	if t.MaxConcurrency > 0 {
		mc := t.MaxConcurrency
		out.ScalingConfig = &scalingConfig{MaximumConcurrency: &mc}
	}
	switch {
	case state != "":
		out.State = state
	case t.Enabled:
		out.State = "Enabled"
	default:
		out.State = "Disabled"
	}
	return out
}

// reportFailures reads FunctionResponseTypes: empty, or the one type.
func reportFailures(types []string) (bool, error) {
	switch {
	case len(types) == 0:
		return false, nil
	case len(types) == 1 && types[0] == rpc.FunctionResponseReportBatchItemFailures:
		return true, nil
	}
	return false, rpc.Errorf(rpc.CodeInvalidParameterValue,
		"1 validation error detected: Value '[%s]' at 'functionResponseTypes' failed to satisfy constraint: Member must satisfy enum value set: [ReportBatchItemFailures]", strings.Join(types, ", "))
}

// esmFunction reads the function of a mapping: a name or an ARN, no
// qualifier (a trigger invokes $LATEST).
func esmFunction(s string) (string, error) {
	if s == "" {
		return "", rpc.Errorf(rpc.CodeInvalidParameterValue, "FunctionName is required")
	}
	ref, err := parseFunctionRef(s, "")
	if err != nil {
		return "", err
	}
	if ref.Qualifier != "" && ref.Qualifier != rpc.VersionLatest {
		return "", rpc.Errorf(rpc.CodeInvalidParameterValue, "An event source mapping invokes $LATEST: qualifier %s is not taken", ref.Qualifier)
	}
	return ref.Name, nil
}

func (g *Gateway) createEventSourceMapping(w http.ResponseWriter, r *http.Request, _ pathArgs) error {
	var in esmInput
	if err := g.decodeJSON(w, r, maxConfigBody, opCreateEventSourceMapping, &in); err != nil {
		return err
	}
	fn, err := esmFunction(in.FunctionName)
	if err != nil {
		return err
	}
	if in.EventSourceArn == "" {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "EventSourceArn is required: the ARN of a queue (arn:aws:sqs:REGION:ACCOUNT:NAME)")
	}
	if !strings.HasPrefix(in.EventSourceArn, "arn:aws:sqs:") {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "Unsupported event source %s: the event sources here are queues (arn:aws:sqs:...)", in.EventSourceArn)
	}
	req := &rpc.CreateTriggerRequest{Function: fn, Queue: in.EventSourceArn, BatchSize: in.BatchSize, BatchWindowSec: in.MaximumBatchingWindowInSeconds}
	if in.FunctionResponseTypes != nil {
		if req.ReportBatchItemFailures, err = reportFailures(*in.FunctionResponseTypes); err != nil {
			return err
		}
	}
	if in.ScalingConfig != nil {
		req.MaxConcurrency = in.ScalingConfig.MaximumConcurrency
	}
	if in.Enabled != nil {
		req.Disabled = !*in.Enabled
	}
	resp, err := g.opts.Ops.CreateTrigger(r.Context(), req)
	if err != nil {
		return err
	}
	state := "Creating"
	if req.Disabled {
		state = "Disabled"
	}
	writeJSON(w, http.StatusAccepted, g.esmShape(resp.Trigger, state))
	return nil
}

func (g *Gateway) getEventSourceMapping(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	resp, err := g.opts.Ops.GetTrigger(r.Context(), &rpc.TriggerRequest{UUID: a.Name})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g.esmShape(resp.Trigger, ""))
	return nil
}

func (g *Gateway) updateEventSourceMapping(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	var in esmInput
	if err := g.decodeJSON(w, r, maxConfigBody, opUpdateEventSourceMapping, &in); err != nil {
		return err
	}
	if in.EventSourceArn != "" {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "An event source mapping's EventSourceArn cannot be changed")
	}
	cur, err := g.opts.Ops.GetTrigger(r.Context(), &rpc.TriggerRequest{UUID: a.Name})
	if err != nil {
		return err
	}
	if in.FunctionName != "" {
		fn, err := esmFunction(in.FunctionName)
		if err != nil {
			return err
		}
		if fn != cur.Trigger.Function {
			return rpc.Errorf(rpc.CodeInvalidParameterValue,
				"An event source mapping's function cannot be changed here (%s to %s): delete it and create another", cur.Trigger.Function, fn)
		}
	}
	req := &rpc.UpdateTriggerRequest{UUID: a.Name, BatchSize: in.BatchSize, BatchWindowSec: in.MaximumBatchingWindowInSeconds, Enabled: in.Enabled}
	if in.FunctionResponseTypes != nil {
		report, err := reportFailures(*in.FunctionResponseTypes)
		if err != nil {
			return err
		}
		req.ReportBatchItemFailures = &report
	}
	if in.ScalingConfig != nil {
		mc := 0 // an empty ScalingConfig removes the limit
		if in.ScalingConfig.MaximumConcurrency != nil {
			mc = *in.ScalingConfig.MaximumConcurrency
		}
		req.MaxConcurrency = &mc
	}
	resp, err := g.opts.Ops.UpdateTrigger(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, g.esmShape(resp.Trigger, ""))
	return nil
}

func (g *Gateway) deleteEventSourceMapping(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	resp, err := g.opts.Ops.DeleteTrigger(r.Context(), &rpc.TriggerRequest{UUID: a.Name})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, g.esmShape(resp.Trigger, "Deleting"))
	return nil
}

type listESMOutput struct {
	EventSourceMappings []eventSourceMapping `json:"EventSourceMappings"`
	NextMarker          string               `json:"NextMarker,omitempty"`
}

func (g *Gateway) listEventSourceMappings(w http.ResponseWriter, r *http.Request, _ pathArgs) error {
	q := r.URL.Query()
	limit, err := pageLimit(q)
	if err != nil {
		return err
	}
	req := &rpc.ListTriggersRequest{}
	if s := q.Get("FunctionName"); s != "" {
		if req.Function, err = esmFunction(s); err != nil {
			return err
		}
	}
	source := q.Get("EventSourceArn")
	resp, err := g.opts.Ops.ListTriggers(r.Context(), req)
	if err != nil {
		return err
	}
	var ts []*rpc.Trigger
	for _, t := range resp.Triggers {
		if source == "" || g.opts.ARNs.Queue(t.Queue) == source {
			ts = append(ts, t)
		}
	}
	keys := make([]string, len(ts))
	for i, t := range ts {
		keys[i] = t.UUID
	}
	from, to, next, err := page(keys, q.Get("Marker"), limit)
	if err != nil {
		return err
	}
	out := listESMOutput{EventSourceMappings: []eventSourceMapping{}, NextMarker: next}
	for _, t := range ts[from:to] {
		out.EventSourceMappings = append(out.EventSourceMappings, g.esmShape(t, ""))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
