package gateway

import (
	"errors"
	"net/http"

	"nimbus/rpc"
)

// Put/Update/Get/Delete/ListFunctionEventInvokeConfig(s) over the node's
// asynchronous invocation configuration: the function's own (no qualifier,
// or $LATEST) and each version's and alias's (Qualifier), each used by
// the events sent to it.

const (
	opPutEventInvokeConfig    = "PutFunctionEventInvokeConfig"
	opUpdateEventInvokeConfig = "UpdateFunctionEventInvokeConfig"
	opGetEventInvokeConfig    = "GetFunctionEventInvokeConfig"
	opDeleteEventInvokeConfig = "DeleteFunctionEventInvokeConfig"
	opListEventInvokeConfigs  = "ListFunctionEventInvokeConfigs"
)

func (g *Gateway) eventConfigHandler(op string) handlerFunc {
	switch op {
	case opPutEventInvokeConfig:
		return g.putEventInvokeConfig
	case opUpdateEventInvokeConfig:
		return g.updateEventInvokeConfig
	case opGetEventInvokeConfig:
		return g.getEventInvokeConfig
	case opDeleteEventInvokeConfig:
		return g.deleteEventInvokeConfig
	case opListEventInvokeConfigs:
		return g.listEventInvokeConfigs
	}
	return nil
}

type destination struct {
	Destination *string `json:"Destination"`
}

type destinationConfig struct {
	OnSuccess *destination `json:"OnSuccess,omitempty"`
	OnFailure *destination `json:"OnFailure,omitempty"`
}

// eventInvokeConfigInput is the body of Put and Update.
type eventInvokeConfigInput struct {
	MaximumRetryAttempts     *int               `json:"MaximumRetryAttempts"`
	MaximumEventAgeInSeconds *int               `json:"MaximumEventAgeInSeconds"`
	DestinationConfig        *destinationConfig `json:"DestinationConfig"`
}

// eventInvokeConfig is Lambda's FunctionEventInvokeConfig shape.
// LastModified is a timestamp: seconds since the epoch, as restJson1
// writes one.
type eventInvokeConfig struct {
	LastModified             float64           `json:"LastModified"`
	FunctionArn              string            `json:"FunctionArn"`
	MaximumRetryAttempts     int               `json:"MaximumRetryAttempts"`
	MaximumEventAgeInSeconds int               `json:"MaximumEventAgeInSeconds"`
	DestinationConfig        destinationConfig `json:"DestinationConfig"`
}

func (g *Gateway) eventConfigShape(c *rpc.EventConfig) eventInvokeConfig {
	out := eventInvokeConfig{
		LastModified:             float64(c.LastModifiedMs) / 1000,
		FunctionArn:              g.opts.ARNs.Function(c.FunctionName, qualifierOr(c.Qualifier)),
		MaximumRetryAttempts:     c.Retries(),
		MaximumEventAgeInSeconds: c.MaxAgeSec(),
	}
	if c.OnSuccess != "" {
		d := c.OnSuccess
		out.DestinationConfig.OnSuccess = &destination{Destination: &d}
	}
	if c.OnFailure != "" {
		d := c.OnFailure
		out.DestinationConfig.OnFailure = &destination{Destination: &d}
	}
	return out
}

// qualifierOr is a configuration's qualifier as its ARN ends: $LATEST for
// the function's own.
func qualifierOr(q string) string {
	if q == "" {
		return rpc.VersionLatest
	}
	return q
}

// eventConfigTarget reads the function and qualifier of an event config
// operation.
func (g *Gateway) eventConfigTarget(r *http.Request, a pathArgs) (rpc.FunctionRef, error) {
	return g.target(r.URL.Query(), a)
}

func destinationOf(d *destination) string {
	if d == nil || d.Destination == nil {
		return ""
	}
	return *d.Destination
}

func (g *Gateway) putEventInvokeConfig(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	return g.writeEventInvokeConfig(w, r, a, false)
}

func (g *Gateway) updateEventInvokeConfig(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	return g.writeEventInvokeConfig(w, r, a, true)
}

// writeEventInvokeConfig is Put (the body is the whole configuration) and
// Update (the body's fields change the stored configuration, the rest is
// kept).
func (g *Gateway) writeEventInvokeConfig(w http.ResponseWriter, r *http.Request, a pathArgs, merge bool) error {
	ref, err := g.eventConfigTarget(r, a)
	if err != nil {
		return err
	}
	var in eventInvokeConfigInput
	if err := g.decodeJSON(w, r, maxConfigBody, opPutEventInvokeConfig, &in); err != nil {
		return err
	}
	req := &rpc.PutEventConfigRequest{FunctionName: ref.Name, Qualifier: ref.Qualifier}
	if merge {
		cur, err := g.opts.Ops.GetEventConfig(r.Context(), &rpc.GetEventConfigRequest{FunctionName: ref.Name, Qualifier: ref.Qualifier})
		switch {
		case err == nil:
			c := cur.Config
			req.MaxRetryAttempts, req.MaxEventAgeSec, req.OnSuccess, req.OnFailure = c.MaxRetryAttempts, c.MaxEventAgeSec, c.OnSuccess, c.OnFailure
		case !errors.Is(err, rpc.ErrResourceNotFound):
			return err
		}
	}
	if in.MaximumRetryAttempts != nil || !merge {
		req.MaxRetryAttempts = in.MaximumRetryAttempts
	}
	if in.MaximumEventAgeInSeconds != nil || !merge {
		req.MaxEventAgeSec = in.MaximumEventAgeInSeconds
	}
	if dc := in.DestinationConfig; dc != nil {
		if dc.OnSuccess != nil || !merge {
			req.OnSuccess = destinationOf(dc.OnSuccess)
		}
		if dc.OnFailure != nil || !merge {
			req.OnFailure = destinationOf(dc.OnFailure)
		}
	} else if !merge {
		req.OnSuccess, req.OnFailure = "", ""
	}
	resp, err := g.opts.Ops.PutEventConfig(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g.eventConfigShape(resp.Config))
	return nil
}

func (g *Gateway) getEventInvokeConfig(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	ref, err := g.eventConfigTarget(r, a)
	if err != nil {
		return err
	}
	resp, err := g.opts.Ops.GetEventConfig(r.Context(), &rpc.GetEventConfigRequest{FunctionName: ref.Name, Qualifier: ref.Qualifier})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g.eventConfigShape(resp.Config))
	return nil
}

func (g *Gateway) deleteEventInvokeConfig(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	ref, err := g.eventConfigTarget(r, a)
	if err != nil {
		return err
	}
	if _, err := g.opts.Ops.DeleteEventConfig(r.Context(), &rpc.GetEventConfigRequest{FunctionName: ref.Name, Qualifier: ref.Qualifier}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type listEventInvokeConfigsOutput struct {
	FunctionEventInvokeConfigs []eventInvokeConfig `json:"FunctionEventInvokeConfigs"`
}

func (g *Gateway) listEventInvokeConfigs(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	if _, err := pageLimit(r.URL.Query()); err != nil {
		return err
	}
	out := listEventInvokeConfigsOutput{FunctionEventInvokeConfigs: []eventInvokeConfig{}}
	resp, err := g.opts.Ops.ListEventConfigs(r.Context(), &rpc.GetEventConfigRequest{FunctionName: name})
	if err != nil {
		return err
	}
	for _, c := range resp.Configs {
		out.FunctionEventInvokeConfigs = append(out.FunctionEventInvokeConfigs, g.eventConfigShape(c))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
