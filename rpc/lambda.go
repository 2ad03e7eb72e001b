package rpc

import (
	"fmt"
	"regexp"
	"strconv"
)

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
	ErrTypeExtensionLaunch   = "Extension.LaunchError" // an external extension could not be started
	ErrTypeExtensionCrash    = "Extension.Crash"       // an external extension ended during init
)

// Runtime API errors: the errorType of the body the Runtime API answers a
// runtime with when it refuses a call.
const (
	APIErrInvalidStateTransition = "InvalidStateTransition"
	APIErrInvalidRequestID       = "InvalidRequestID"
	APIErrRequestEntityTooLarge  = "RequestEntityTooLarge"
	APIErrInvalidRequest         = "InvalidRequest"
)

// The region and account of every ARN a cluster builds unless its agents
// are given others (--region, --account-id).
const (
	DefaultRegion  = "local"
	DefaultAccount = "000000000000"
)

// ARNScope is the region and account a cluster's ARNs name: functions,
// queues and layers, in answers, error messages, events and sandboxes'
// environments. The zero value is the default scope.
type ARNScope struct {
	Region  string `msgpack:"region" json:"region"`
	Account string `msgpack:"account" json:"account"`
}

// regionPattern is what a region may be: "local", or AWS's form
// (us-east-1, eu-central-2, us-gov-west-1).
var regionPattern = regexp.MustCompile(`^(local|[a-z]{2}(-[a-z]+)+-[0-9]{1,2})$`)

// accountPattern is what an account id may be: twelve digits.
var accountPattern = regexp.MustCompile(`^[0-9]{12}$`)

// NewARNScope checks region and account ("" for the default) and returns
// their scope.
func NewARNScope(region, account string) (ARNScope, error) {
	s := ARNScope{Region: region, Account: account}.orDefault()
	if !regionPattern.MatchString(s.Region) {
		return ARNScope{}, fmt.Errorf("region %q: want local or a region as AWS names them (us-east-1)", s.Region)
	}
	if !accountPattern.MatchString(s.Account) {
		return ARNScope{}, fmt.Errorf("account id %q: want twelve digits", s.Account)
	}
	return s, nil
}

func (s ARNScope) orDefault() ARNScope {
	if s.Region == "" {
		s.Region = DefaultRegion
	}
	if s.Account == "" {
		s.Account = DefaultAccount
	}
	return s
}

// Function is a function's ARN (qualifier "": unqualified).
func (s ARNScope) Function(name, qualifier string) string {
	s = s.orDefault()
	arn := "arn:aws:lambda:" + s.Region + ":" + s.Account + ":function:" + name
	if qualifier != "" {
		arn += ":" + qualifier
	}
	return arn
}

// Queue is a queue's ARN.
func (s ARNScope) Queue(name string) string {
	s = s.orDefault()
	return "arn:aws:sqs:" + s.Region + ":" + s.Account + ":" + name
}

// Layer is a layer's ARN (version 0: the layer itself, else the
// version's).
func (s ARNScope) Layer(name string, version int64) string {
	s = s.orDefault()
	arn := "arn:aws:lambda:" + s.Region + ":" + s.Account + ":layer:" + name
	if version > 0 {
		arn += ":" + strconv.FormatInt(version, 10)
	}
	return arn
}

// AWSRegion is the region as AWS_REGION and events carry it.
func (s ARNScope) AWSRegion() string { return s.orDefault().Region }

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
