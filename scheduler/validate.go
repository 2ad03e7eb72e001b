package scheduler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"nimbus/rpc"
)

// Request rules, as Lambda's, with Lambda's messages. They run in the node
// that proposes a command, never in Apply (see functions.go).

// Limits and defaults of a function's configuration.
const (
	MinMemoryMB       = 128
	MaxMemoryMB       = 10240
	DefaultMemoryMB   = 128
	MinTimeoutSec     = 1
	MaxTimeoutSec     = 900
	DefaultTimeoutSec = 3
	// The size of /tmp (Lambda's ephemeral storage), apart from memory.
	MinEphemeralStorageMB = 512
	MaxEphemeralStorageMB = 10240
	MaxNameLength         = 64
	MaxHandlerLength      = 128
	DefaultHandler        = "bootstrap"
	// MaxEnvSize is the limit on the environment, measured as Lambda does:
	// the length in bytes of the variables written as one JSON object.
	MaxEnvSize = 4 * 1024
)

// Concurrency limits, as Lambda's defaults.
const (
	// DefaultAccountLimit is the account's concurrency limit when none is
	// configured: the most invocations running at once, all functions
	// together.
	DefaultAccountLimit = 1000
	// unreservedMinDivisor: the unreserved pool may not fall below
	// accountLimit/unreservedMinDivisor (100 at the default limit).
	unreservedMinDivisor = 10
)

// MinUnreserved returns the smallest unreserved pool reservations may leave
// of an account limit: a tenth of it (100 of 1000). A limit <= 0 means
// DefaultAccountLimit.
func MinUnreserved(accountLimit int) int {
	if accountLimit <= 0 {
		accountLimit = DefaultAccountLimit
	}
	return accountLimit / unreservedMinDivisor
}

// MaxReservedTotal returns the most concurrency all functions together may
// reserve under an account limit (900 of 1000): the MaxTotal a proposer puts
// in a PutConcurrencyCommand. A limit <= 0 means DefaultAccountLimit.
func MaxReservedTotal(accountLimit int) int {
	if accountLimit <= 0 {
		accountLimit = DefaultAccountLimit
	}
	return accountLimit - MinUnreserved(accountLimit)
}

// ValidateReservation checks a PutFunctionConcurrency request as Lambda
// does: a valid function name, reserved >= 0, and the account's unreserved
// pool (accountLimit minus every reservation, this one included) left at or
// above MinUnreserved(accountLimit). currentTotalExcludingThisFunction is
// ReservedTotal minus the function's current reservation, so that changing
// an existing reservation counts it once. An accountLimit <= 0 means
// DefaultAccountLimit. Errors are *rpc.Error with
// CodeInvalidParameterValue.
func ValidateReservation(name string, reserved int, accountLimit int, currentTotalExcludingThisFunction int) error {
	var v violations
	v.name(name)
	if reserved < 0 {
		v.add(strconv.Itoa(reserved), "reservedConcurrentExecutions", "Member must have value greater than or equal to 0")
	}
	if err := v.err(); err != nil {
		return err
	}
	others := max(currentTotalExcludingThisFunction, 0)
	// reserved > MaxReservedTotal - others, written so that it cannot
	// overflow whatever reserved is.
	if reserved > MaxReservedTotal(accountLimit)-others {
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [%d].",
			MinUnreserved(accountLimit))
	}
	return nil
}

// runtimes are the runtimes nimbus runs: the managed ones (an image built
// by `nimbus image build`) and Lambda's custom runtimes, where the code's
// bootstrap executable implements the Runtime API (issue 10).
var runtimes = rpc.Runtimes

// reservedEnvKeys are the variables the platform sets in every sandbox; a
// function may not set them (Lambda's list).
var reservedEnvKeys = map[string]bool{
	"AWS_REGION":                      true,
	"AWS_DEFAULT_REGION":              true,
	"AWS_LAMBDA_FUNCTION_NAME":        true,
	"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": true,
	"AWS_LAMBDA_FUNCTION_VERSION":     true,
	"AWS_LAMBDA_INITIALIZATION_TYPE":  true,
	"AWS_LAMBDA_LOG_GROUP_NAME":       true,
	"AWS_LAMBDA_LOG_STREAM_NAME":      true,
	"AWS_ACCESS_KEY_ID":               true,
	"AWS_SECRET_ACCESS_KEY":           true,
	"AWS_SESSION_TOKEN":               true,
	"AWS_LAMBDA_RUNTIME_API":          true,
	"LAMBDA_TASK_ROOT":                true,
	"LAMBDA_RUNTIME_DIR":              true,
	"_HANDLER":                        true,
	"_X_AMZN_TRACE_ID":                true,
	"AWS_EXECUTION_ENV":               true,
}

// Patterns as Lambda states them in its messages.
const (
	namePattern    = `[a-zA-Z0-9-_]+`
	handlerPattern = `[^\s\p{Cc}]+`
	envKeyPattern  = `[a-zA-Z]([a-zA-Z0-9_])+`
)

// ValidateName checks a function name: 1 to 64 characters of [a-zA-Z0-9-_].
func ValidateName(name string) error {
	var v violations
	v.name(name)
	return v.err()
}

// ValidateCreate checks a create request without building the config; see
// NormalizeCreate.
func ValidateCreate(req *rpc.CreateFunctionRequest) error {
	_, err := NormalizeCreate(req)
	return err
}

// NormalizeCreate validates a create request and returns the function's
// configuration with the defaults filled in (memory 128 MB, timeout 3 s,
// handler "bootstrap"). The code fields, Revision and LastModifiedMs are left
// zero: the caller fills CodeSHA256 and CodeSize once it has stored the zip,
// and LastModifiedMs from its clock; Apply sets Revision. The zip itself is
// not checked here. Errors are *rpc.Error with CodeInvalidParameterValue.
func NormalizeCreate(req *rpc.CreateFunctionRequest) (*rpc.FunctionConfig, error) {
	if req == nil {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "missing request")
	}
	fc := &rpc.FunctionConfig{
		Name:        req.Name,
		Runtime:     req.Runtime,
		Handler:     req.Handler,
		MemoryMB:    req.MemoryMB,
		TimeoutSec:  req.TimeoutSec,
		Env:         copyEnv(req.Env),
		Role:        req.Role,
		Description: req.Description,

		EphemeralStorageMB: req.EphemeralStorageMB,
	}
	if fc.Handler == "" {
		fc.Handler = DefaultHandler
	}
	if fc.MemoryMB == 0 {
		fc.MemoryMB = DefaultMemoryMB
	}
	if fc.TimeoutSec == 0 {
		fc.TimeoutSec = DefaultTimeoutSec
	}
	if fc.EphemeralStorageMB == 0 {
		fc.EphemeralStorageMB = rpc.DefaultEphemeralStorageMB
	}

	var v violations
	v.name(fc.Name)
	v.runtime(fc.Runtime)
	v.handler(fc.Handler)
	v.memory(fc.MemoryMB)
	v.timeout(fc.TimeoutSec)
	v.ephemeral(fc.EphemeralStorageMB)
	v.envKeys(fc.Env)
	v.description(fc.Description)
	if err := v.err(); err != nil {
		return nil, err
	}
	if err := checkEnv(fc.Env); err != nil {
		return nil, err
	}
	return fc, nil
}

// ApplyConfigUpdate validates req against the rules and returns a copy of cur
// with the requested changes: nil fields are kept, a non-nil Env replaces the
// whole environment. cur is not changed. The caller sets LastModifiedMs and
// proposes the copy with PutUpdate (IfRevision = cur.Revision).
func ApplyConfigUpdate(cur *rpc.FunctionConfig, req *rpc.UpdateConfigRequest) (*rpc.FunctionConfig, error) {
	if req == nil {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "missing request")
	}
	var v violations
	v.name(req.Name)
	if req.MemoryMB != nil {
		v.memory(*req.MemoryMB)
	}
	if req.TimeoutSec != nil {
		v.timeout(*req.TimeoutSec)
	}
	if req.EphemeralStorageMB != nil {
		v.ephemeral(*req.EphemeralStorageMB)
	}
	v.envKeys(req.Env)
	if req.Description != nil {
		v.description(*req.Description)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if cur == nil || cur.Name != req.Name {
		return nil, errFunctionNotFound(req.Name)
	}
	if err := checkEnv(req.Env); err != nil {
		return nil, err
	}

	next := cur.Clone()
	if req.MemoryMB != nil {
		next.MemoryMB = *req.MemoryMB
	}
	if req.TimeoutSec != nil {
		next.TimeoutSec = *req.TimeoutSec
	}
	if req.EphemeralStorageMB != nil {
		next.EphemeralStorageMB = *req.EphemeralStorageMB
	}
	if req.Env != nil {
		next.Env = copyEnv(req.Env)
	}
	if req.DeadLetter != nil {
		// The proposer checked that it names an existing queue.
		next.DeadLetter = *req.DeadLetter
	}
	if req.Role != nil {
		next.Role = *req.Role
	}
	if req.Description != nil {
		next.Description = *req.Description
	}
	return next, nil
}

// copyEnv returns a copy of env, nil when it is empty.
func copyEnv(env map[string]string) map[string]string {
	if len(env) == 0 {
		return nil
	}
	c := make(map[string]string, len(env))
	for k, v := range env {
		c[k] = v
	}
	return c
}

// checkEnv applies the rules Lambda checks after the request's shape:
// reserved keys, then the total size.
func checkEnv(env map[string]string) error {
	var reserved []string
	for k := range env {
		if reservedEnvKeys[k] {
			reserved = append(reserved, k)
		}
	}
	if len(reserved) > 0 {
		sort.Strings(reserved)
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"Unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: %s",
			strings.Join(reserved, ", "))
	}
	if size := envSize(env); size > MaxEnvSize {
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"Unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: %d bytes",
			size)
	}
	return nil
}

// envSize measures env as Lambda does: the length of the variables written as
// one JSON object ({"KEY":"value",...}, no HTML escaping).
func envSize(env map[string]string) int {
	if len(env) == 0 {
		return 0
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(env); err != nil {
		// A map[string]string always encodes; count it as too big if not.
		return MaxEnvSize + 1
	}
	return len(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// violations collects constraint failures and formats them as Lambda does:
// "N validation error(s) detected: Value 'v' at 'field' failed to satisfy
// constraint: ...; Value ...".
type violations []string

func (v *violations) add(value, field, constraint string) {
	*v = append(*v, fmt.Sprintf("Value '%s' at '%s' failed to satisfy constraint: %s", value, field, constraint))
}

func (v violations) err() error {
	switch len(v) {
	case 0:
		return nil
	case 1:
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "1 validation error detected: %s", v[0])
	}
	return rpc.Errorf(rpc.CodeInvalidParameterValue, "%d validation errors detected: %s", len(v), strings.Join(v, "; "))
}

// MaxDescription is Lambda's limit on a function's or version's
// description.
const MaxDescription = 256

func (v *violations) description(d string) {
	if len(d) > MaxDescription {
		v.add("...", "description", "Member must have length less than or equal to "+strconv.Itoa(MaxDescription))
	}
}

func (v *violations) name(name string) {
	const field = "functionName"
	if name == "" {
		v.add(name, field, "Member must have length greater than or equal to 1")
		return
	}
	if n := utf8.RuneCountInString(name); n > MaxNameLength {
		v.add(name, field, "Member must have length less than or equal to "+strconv.Itoa(MaxNameLength))
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(isASCIILetter(c) || isASCIIDigit(c) || c == '-' || c == '_') {
			v.add(name, field, "Member must satisfy regular expression pattern: "+namePattern)
			return
		}
	}
}

func (v *violations) runtime(runtime string) {
	for _, r := range runtimes {
		if runtime == r {
			return
		}
	}
	v.add(runtime, "runtime", "Member must satisfy enum value set: ["+strings.Join(runtimes, ", ")+"]")
}

func (v *violations) handler(handler string) {
	const field = "handler"
	if n := utf8.RuneCountInString(handler); n > MaxHandlerLength {
		v.add(handler, field, "Member must have length less than or equal to "+strconv.Itoa(MaxHandlerLength))
	}
	if !utf8.ValidString(handler) || strings.IndexFunc(handler, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}) >= 0 {
		v.add(handler, field, "Member must satisfy regular expression pattern: "+handlerPattern)
	}
}

func (v *violations) memory(mb int) {
	v.intRange(mb, "memorySize", MinMemoryMB, MaxMemoryMB)
}

func (v *violations) timeout(sec int) {
	v.intRange(sec, "timeout", MinTimeoutSec, MaxTimeoutSec)
}

func (v *violations) ephemeral(mb int) {
	v.intRange(mb, "ephemeralStorage.size", MinEphemeralStorageMB, MaxEphemeralStorageMB)
}

func (v *violations) intRange(n int, field string, lo, hi int) {
	switch {
	case n < lo:
		v.add(strconv.Itoa(n), field, "Member must have value greater than or equal to "+strconv.Itoa(lo))
	case n > hi:
		v.add(strconv.Itoa(n), field, "Member must have value less than or equal to "+strconv.Itoa(hi))
	}
}

// envKeys checks every key against Lambda's pattern, in key order so that the
// message is the same for the same request. Values are never echoed.
func (v *violations) envKeys(env map[string]string) {
	keys := make([]string, 0, len(env))
	for k := range env {
		if !validEnvKey(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v.add(k, "environment.variables",
			"Map keys must satisfy constraint: [Member must satisfy regular expression pattern: "+envKeyPattern+"]")
	}
}

// validEnvKey matches [a-zA-Z]([a-zA-Z0-9_])+ : a letter, then one or more
// letters, digits or underscores (so at least two characters, as Lambda).
func validEnvKey(k string) bool {
	if len(k) < 2 || !isASCIILetter(k[0]) {
		return false
	}
	for i := 1; i < len(k); i++ {
		if c := k[i]; !(isASCIILetter(c) || isASCIIDigit(c) || c == '_') {
			return false
		}
	}
	return true
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isASCIIDigit(c byte) bool  { return '0' <= c && c <= '9' }
