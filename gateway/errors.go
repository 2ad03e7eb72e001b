package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"

	"nimbus/rpc"
)

// Error types that only the HTTP side produces. The others are rpc's
// (rpc.Code*), carried through as they are.
const (
	// CodeUnknownOperation: no operation has this method and path.
	CodeUnknownOperation = "UnknownOperationException"
	// CodeInvalidRequestContent: the body is not the JSON the operation
	// takes.
	CodeInvalidRequestContent = "InvalidRequestContentException"
	// CodeRequestEntityTooLarge: the request body is over the operation's
	// limit before it is even decoded.
	CodeRequestEntityTooLarge = "RequestEntityTooLargeException"
	// CodeIncompleteSignature: the Authorization header is not a
	// well-formed SigV4 header.
	CodeIncompleteSignature = "IncompleteSignatureException"
	// CodeNotImplemented: a Lambda operation (or an option of one) that
	// nimbus does not offer yet. 501, which the SDKs do not retry.
	CodeNotImplemented = "NotImplementedException"
)

// retryAfterSeconds is the Retry-After sent with TooManyRequestsException:
// slots free as invocations end, so a second is a fair first wait.
const retryAfterSeconds = 1

// statusOf maps an error type to Lambda's HTTP status.
func statusOf(code string) int {
	switch code {
	case rpc.CodeResourceNotFound, CodeUnknownOperation:
		return http.StatusNotFound
	case rpc.CodeInvalidParameterValue, CodeInvalidRequestContent, CodeIncompleteSignature, rpc.CodeCodeStorageExceeded:
		return http.StatusBadRequest
	case rpc.CodeResourceConflict:
		return http.StatusConflict
	case rpc.CodePreconditionFailed:
		return http.StatusPreconditionFailed
	case rpc.CodeRequestTooLarge, CodeRequestEntityTooLarge:
		return http.StatusRequestEntityTooLarge
	case rpc.CodeTooManyRequests:
		return http.StatusTooManyRequests
	case rpc.CodeAccessDenied:
		return http.StatusForbidden
	case CodeNotImplemented:
		return http.StatusNotImplemented
	default:
		return http.StatusInternalServerError
	}
}

// errorBody is Lambda's error document. Lambda's shapes name the text
// "Message" for some exceptions and "message" for others, so both are
// sent; Type is "User" for the caller's faults and "Service" for ours.
type errorBody struct {
	Type     string `json:"Type"`
	Message  string `json:"Message"`
	LMessage string `json:"message"`
	Reason   string `json:"Reason,omitempty"`
}

// apiError builds an *rpc.Error with a gateway code.
func apiError(code, format string, args ...any) error {
	return rpc.Errorf(code, format, args...)
}

// writeError answers err as Lambda would: the status for its type,
// X-Amzn-ErrorType, and the error document. Anything that is not an
// *rpc.Error is a ServiceException.
func writeError(w http.ResponseWriter, err error) {
	e := rpc.AsError(err)
	status := statusOf(e.Code)
	h := w.Header()
	h.Set("X-Amzn-ErrorType", e.Code)
	h.Set("Content-Type", "application/json")
	if e.Code == rpc.CodeTooManyRequests {
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	typ := "User"
	if status >= 500 && e.Code != CodeNotImplemented {
		typ = "Service"
	}
	body, _ := json.Marshal(errorBody{Type: typ, Message: e.Message, LMessage: e.Message, Reason: e.Reason})
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
