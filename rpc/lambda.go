package rpc

// Lambda's vocabulary, defined once: the version literal, the error types a
// function error carries in its errorType, the ARN format and the
// environment keys the platform reserves. The Code* exception names of
// platform errors are in errors.go.

// LatestVersion is the version a function's unpublished code runs as, as
// Lambda spells it.
const LatestVersion = "$LATEST"

// Error types of function errors raised by the platform, as Lambda names
// them. They appear as errorType in the error body and in REPORT lines.
const (
	ErrTypeUnknown           = "Runtime.Unknown"
	ErrTypeExit              = "Runtime.ExitError"
	ErrTypeOutOfMemory       = "Runtime.OutOfMemory"
	ErrTypeInitTimeout       = "Runtime.InitTimeout"
	ErrTypeInvalidEntrypoint = "Runtime.InvalidEntrypoint"
	ErrTypeResponseError     = "Runtime.ResponseError"
	ErrTypeTimedout          = "Sandbox.Timedout"
	ErrTypeResponseTooLarge  = "Function.ResponseSizeTooLarge"
)

// Runtime API errors: the errorType of the body the Runtime API answers a
// runtime with when it refuses a call.
const (
	APIErrInvalidStateTransition = "InvalidStateTransition"
	APIErrInvalidRequestID       = "InvalidRequestID"
	APIErrRequestEntityTooLarge  = "RequestEntityTooLarge"
	APIErrInvalidRequest         = "InvalidRequest"
)

// FunctionARN is a function's ARN in region and account.
func FunctionARN(region, account, name string) string {
	return "arn:aws:lambda:" + region + ":" + account + ":function:" + name
}

// ReservedEnvKeys are the variables the platform sets in every sandbox; a
// function may not set them (Lambda's list). TZ, PATH, LANG and
// LD_LIBRARY_PATH are not among them: the platform gives them defaults and
// a function's own values win.
var ReservedEnvKeys = []string{
	"AWS_REGION", "AWS_DEFAULT_REGION",
	"AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
	"AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
	"_HANDLER", "_X_AMZN_TRACE_ID", "AWS_EXECUTION_ENV",
}

// IsReservedEnvKey reports whether key is one of ReservedEnvKeys.
func IsReservedEnvKey(key string) bool {
	for _, k := range ReservedEnvKeys {
		if k == key {
			return true
		}
	}
	return false
}

// MaxResponsePayload is the largest response a function may return to a
// synchronous invocation: Lambda's limit, a little over MaxSyncPayload.
const MaxResponsePayload = 6_291_556

// CodeInvalidRequestContent is Lambda's exception for a payload that is not
// JSON.
const CodeInvalidRequestContent = "InvalidRequestContentException"

// ErrInvalidRequestContent matches, under errors.Is, an error with
// CodeInvalidRequestContent.
var ErrInvalidRequestContent = &Error{Code: CodeInvalidRequestContent}
