package rpc

import (
	"errors"
	"fmt"
)

// Error codes carried on the wire. They are the exception names AWS Lambda
// uses, so that callers moving from Lambda can match on the same strings.
const (
	CodeResourceNotFound      = "ResourceNotFoundException"
	CodeInvalidParameterValue = "InvalidParameterValueException"
	CodeTooManyRequests       = "TooManyRequestsException"
	CodeRequestTooLarge       = "RequestTooLargeException"
	CodeResourceConflict      = "ResourceConflictException"
	CodeService               = "ServiceException"
	CodeAccessDenied          = "AccessDeniedException"
	// CodePreconditionFailed: the caller's RevisionId is not the function's.
	CodePreconditionFailed = "PreconditionFailedException"
)

// Throttle reasons, as Lambda reports them with TooManyRequestsException.
const (
	ReasonConcurrentInvocationLimitExceeded         = "ConcurrentInvocationLimitExceeded"
	ReasonReservedFunctionConcurrentInvocationLimit = "ReservedFunctionConcurrentInvocationLimitExceeded"
)

// Error is a platform error that crosses the wire. Code is one of the Code*
// constants; Message is for people; Reason refines some codes (throttling).
//
// Two errors match under errors.Is when their codes are equal, so callers test
// with errors.Is(err, rpc.ErrResourceNotFound) whatever the message.
type Error struct {
	Code    string `msgpack:"code" json:"Type"`
	Message string `msgpack:"message" json:"Message"`
	Reason  string `msgpack:"reason,omitempty" json:"Reason,omitempty"`
}

func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, e.Reason)
	}
	return e.Code + ": " + e.Message
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is. Never mutate them; build new errors with Errorf.
var (
	ErrResourceNotFound      = &Error{Code: CodeResourceNotFound}
	ErrInvalidParameterValue = &Error{Code: CodeInvalidParameterValue}
	ErrTooManyRequests       = &Error{Code: CodeTooManyRequests}
	ErrRequestTooLarge       = &Error{Code: CodeRequestTooLarge}
	ErrResourceConflict      = &Error{Code: CodeResourceConflict}
	ErrService               = &Error{Code: CodeService}
	ErrAccessDenied          = &Error{Code: CodeAccessDenied}
	ErrPreconditionFailed    = &Error{Code: CodePreconditionFailed}
)

// Errorf returns a new *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError converts any error into an *Error for the wire: the first *Error
// in the chain is returned as it is; anything else becomes a
// ServiceException carrying the error's text.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeService, Message: err.Error()}
}

// SQS's error codes, for the built-in queues (queue.go). SQS names them
// without the "Exception" suffix.
const (
	CodeQueueDoesNotExist      = "QueueDoesNotExist"
	CodeQueueNameExists        = "QueueNameExists"
	CodeSQSInvalidParameter    = "InvalidParameterValue"
	CodeSQSMissingParameter    = "MissingParameter"
	CodeReceiptHandleIsInvalid = "ReceiptHandleIsInvalid"
	CodeMessageNotInflight     = "MessageNotInflight"
	CodeOverLimit              = "OverLimit"
	CodeInvalidAttributeName   = "InvalidAttributeName"
)

// Sentinels of the SQS codes, for errors.Is.
var (
	ErrQueueDoesNotExist      = &Error{Code: CodeQueueDoesNotExist}
	ErrQueueNameExists        = &Error{Code: CodeQueueNameExists}
	ErrSQSInvalidParameter    = &Error{Code: CodeSQSInvalidParameter}
	ErrSQSMissingParameter    = &Error{Code: CodeSQSMissingParameter}
	ErrReceiptHandleIsInvalid = &Error{Code: CodeReceiptHandleIsInvalid}
	ErrOverLimit              = &Error{Code: CodeOverLimit}
)
