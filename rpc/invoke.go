package rpc

// MethodInvoke runs a function.
const MethodInvoke = "Invoke.Invoke"

// MethodInvokeStream runs a function and streams its response as the
// runtime sends it (Lambda's InvokeWithResponseStream, up to 200 MB): a
// streamed method (HandleStream) whose parts are InvokeStreamPart, then an
// InvokeResponse whose Payload is empty, or the error's body when
// FunctionError is set (a function may fail midway, after parts).
const MethodInvokeStream = "Invoke.Stream"

// InvokeStreamPart is one part of a streamed response. The first part
// comes when the runtime starts its response and carries its Content-Type
// (application/octet-stream when it gave none); Data may be empty.
type InvokeStreamPart struct {
	ContentType string `msgpack:"content_type,omitempty"`
	// ExecutedVersion, on the first part, is the version that runs.
	ExecutedVersion string `msgpack:"executed_version,omitempty"`
	Data            []byte `msgpack:"data"`
}

// MaxStreamedResponse is Lambda's limit on a streamed response.
const MaxStreamedResponse = 200 << 20

// Invocation types, as Lambda names them.
const (
	InvocationRequestResponse = "RequestResponse"
	InvocationEvent           = "Event"
	InvocationDryRun          = "DryRun"
)

// Log types for InvokeRequest.LogType.
const (
	LogTypeNone = "None"
	LogTypeTail = "Tail"
)

// FunctionErrorUnhandled is InvokeResponse.FunctionError when the function
// failed (it returned an error, crashed, ran out of memory or timed out).
const FunctionErrorUnhandled = "Unhandled"

// Payload limits, as Lambda's (1 MB is Lambda's current async limit).
const (
	MaxSyncPayload  = 6 * 1024 * 1024
	MaxAsyncPayload = 1024 * 1024
)

// StatusAccepted is InvokeResponse.StatusCode of an Event invocation once
// its event is committed.
const StatusAccepted = 202

// InvokeRequest invokes a function.
type InvokeRequest struct {
	FunctionName   string `msgpack:"function_name"`
	InvocationType string `msgpack:"invocation_type,omitempty"` // "" means RequestResponse
	LogType        string `msgpack:"log_type,omitempty"`        // "Tail" returns the last 4 KB of log
	Payload        []byte `msgpack:"payload"`
	// Qualifier names a version or an alias ("" or $LATEST: $LATEST).
	// FunctionName may carry it too, as `name:qualifier` or a qualified
	// ARN (ParseFunctionRef); when both do they must agree.
	Qualifier string `msgpack:"qualifier,omitempty"`
	// ClientContext is the invoking client's context, a JSON object
	// (Lambda's ClientContext, decoded from its base64), at most
	// MaxClientContext bytes as base64. The runtime receives it in the
	// Lambda-Runtime-Client-Context header of its /next, for synchronous
	// invocations only, as Lambda passes it.
	ClientContext []byte `msgpack:"client_context,omitempty"`
}

// MaxClientContext is Lambda's limit on a client context, in bytes of its
// base64 form.
const MaxClientContext = 3583

// InvokeResponse is the outcome of an invocation. A function error is not a
// platform error: it arrives here with FunctionError set and Payload holding
// {"errorType": ..., "errorMessage": ...}.
type InvokeResponse struct {
	RequestID       string `msgpack:"request_id"`
	StatusCode      int    `msgpack:"status_code"`
	FunctionError   string `msgpack:"function_error,omitempty"`
	Payload         []byte `msgpack:"payload"`
	LogResult       []byte `msgpack:"log_result,omitempty"` // raw text, not base64
	ExecutedVersion string `msgpack:"executed_version"`
}

// FunctionErrorPayload is the JSON body of a function error, as Lambda's.
type FunctionErrorPayload struct {
	ErrorType    string   `json:"errorType"`
	ErrorMessage string   `json:"errorMessage"`
	StackTrace   []string `json:"stackTrace,omitempty"`
}
