package gateway

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"

	"nimbus/rpc"
)

// maxClientContext is Lambda's limit on X-Amz-Client-Context (base64).
const maxClientContext = rpc.MaxClientContext

// invokeHeaders are Invoke's request headers, decoded.
type invokeHeaders struct {
	InvocationType string
	LogType        string
	ClientContext  []byte // the decoded JSON, nil when absent
}

// parseInvokeHeaders reads X-Amz-Invocation-Type, X-Amz-Log-Type and
// X-Amz-Client-Context with Lambda's rules.
func parseInvokeHeaders(h http.Header) (invokeHeaders, error) {
	var out invokeHeaders
	switch t := h.Get("X-Amz-Invocation-Type"); t {
	case "", rpc.InvocationRequestResponse, rpc.InvocationEvent, rpc.InvocationDryRun:
		out.InvocationType = t
	default:
		return out, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]", t)
	}
	switch t := h.Get("X-Amz-Log-Type"); t {
	case "", rpc.LogTypeNone, rpc.LogTypeTail:
		out.LogType = t
	default:
		return out, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]", t)
	}
	if cc := h.Get("X-Amz-Client-Context"); cc != "" {
		if len(cc) > maxClientContext {
			return out, rpc.Errorf(rpc.CodeInvalidParameterValue, "Client context must be at most %d bytes", maxClientContext)
		}
		b, err := base64.StdEncoding.DecodeString(cc)
		if err != nil || !json.Valid(b) {
			return out, rpc.Errorf(rpc.CodeInvalidParameterValue, "Client context must be a valid Base64-encoded JSON object.")
		}
		out.ClientContext = b
	}
	return out, nil
}

// invokeRequest reads an invocation: the function from the path and the
// Qualifier, the X-Amz-* headers, and the payload within its invocation
// type's limit (op names the operation in that error). The payload is
// the caller's until release.
func (g *Gateway) invokeRequest(w http.ResponseWriter, r *http.Request, a pathArgs, op string) (_ *rpc.InvokeRequest, release func(), err error) {
	ref, err := g.target(r.URL.Query(), a)
	if err != nil {
		return nil, nil, err
	}
	hdr, err := parseInvokeHeaders(r.Header)
	if err != nil {
		return nil, nil, err
	}
	limit := int64(rpc.MaxSyncPayload)
	if hdr.InvocationType == rpc.InvocationEvent {
		limit = rpc.MaxAsyncPayload
	}
	payload, release, err := g.readBody(w, r, limit, func() error {
		return rpc.Errorf(rpc.CodeRequestTooLarge, "Request must be smaller than %d bytes for the %s operation", limit, op)
	})
	if err != nil {
		return nil, nil, err
	}
	return &rpc.InvokeRequest{
		FunctionName:   ref.Name,
		Qualifier:      ref.Qualifier,
		InvocationType: hdr.InvocationType,
		LogType:        hdr.LogType,
		Payload:        payload,
		ClientContext:  hdr.ClientContext,
	}, release, nil
}

func (g *Gateway) invoke(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	req, release, err := g.invokeRequest(w, r, a, "InvokeFunction")
	if err != nil {
		return err
	}
	defer release()
	resp, err := g.opts.Ops.Invoke(r.Context(), req)
	if err != nil {
		return err
	}
	h := w.Header()
	if resp.RequestID != "" {
		h.Set("X-Amzn-RequestId", resp.RequestID)
	}
	if resp.ExecutedVersion != "" {
		h.Set("X-Amz-Executed-Version", resp.ExecutedVersion)
	}
	if resp.FunctionError != "" {
		h.Set("X-Amz-Function-Error", resp.FunctionError)
	}
	if req.LogType == rpc.LogTypeTail && resp.LogResult != nil {
		h.Set("X-Amz-Log-Result", base64.StdEncoding.EncodeToString(resp.LogResult))
	}
	status := resp.StatusCode
	if status == 0 {
		status = http.StatusOK
	}
	if status == http.StatusNoContent || status == http.StatusAccepted {
		w.WriteHeader(status)
		return nil
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(resp.Payload)))
	w.WriteHeader(status)
	_, _ = w.Write(resp.Payload)
	return nil
}
