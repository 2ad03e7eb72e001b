package scheduler

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"nimbus/rpc"
)

func validCreate() *rpc.CreateFunctionRequest {
	return &rpc.CreateFunctionRequest{
		Name:    "hello-world_1",
		Runtime: "provided.al2023",
		Handler: "bootstrap",
		Env:     map[string]string{"GREETING": "hi"},
		ZipFile: []byte("PK"),
	}
}

func intPtr(n int) *int { return &n }

// wantInvalid checks that err is an InvalidParameterValueException whose
// message contains want (an exact message when exact is set).
func wantInvalid(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var e *rpc.Error
	if !errors.As(err, &e) || !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Fatalf("err = %v (%T), want an InvalidParameterValueException", err, err)
	}
	if !strings.Contains(e.Message, want) {
		t.Fatalf("message = %q\nwant it to contain %q", e.Message, want)
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	const pattern = "Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+"
	tests := []struct {
		name string
		want string
	}{
		{"a", ""},
		{"Hello-World_42", ""},
		{strings.Repeat("x", 64), ""},
		{"", "1 validation error detected: Value '' at 'functionName' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{strings.Repeat("x", 65), "Member must have length less than or equal to 64"},
		{"has space", "Value 'has space' at 'functionName' failed to satisfy constraint: " + pattern},
		{"dot.name", pattern},
		{"colon:name", pattern},
		{"arn:aws:lambda:us-east-1:123456789012:function:f", pattern},
		{"héllo", pattern},
		{"tab\tname", pattern},
		{strings.Repeat("é", 65), "2 validation errors detected: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantInvalid(t, ValidateName(tt.name), tt.want)
		})
	}
}

func TestNormalizeCreate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(r *rpc.CreateFunctionRequest)
		want   string // "" means valid
	}{
		{"valid", func(*rpc.CreateFunctionRequest) {}, ""},
		// runtime
		{"runtime provided", func(r *rpc.CreateFunctionRequest) { r.Runtime = "provided" }, ""},
		{"runtime provided.al2", func(r *rpc.CreateFunctionRequest) { r.Runtime = "provided.al2" }, ""},
		{"runtime python", func(r *rpc.CreateFunctionRequest) { r.Runtime = "python3.12" },
			"1 validation error detected: Value 'python3.12' at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [nodejs20.x, python3.13, java21, ruby3.3, provided, provided.al2, provided.al2023]"},
		{"runtime empty", func(r *rpc.CreateFunctionRequest) { r.Runtime = "" }, "Value '' at 'runtime'"},
		{"runtime case", func(r *rpc.CreateFunctionRequest) { r.Runtime = "Provided" }, "enum value set"},
		// name
		{"name bad", func(r *rpc.CreateFunctionRequest) { r.Name = "a/b" }, "at 'functionName'"},
		{"name empty", func(r *rpc.CreateFunctionRequest) { r.Name = "" }, "Member must have length greater than or equal to 1"},
		// handler
		{"handler empty is bootstrap", func(r *rpc.CreateFunctionRequest) { r.Handler = "" }, ""},
		{"handler dotted", func(r *rpc.CreateFunctionRequest) { r.Handler = "main.handler" }, ""},
		{"handler 128", func(r *rpc.CreateFunctionRequest) { r.Handler = strings.Repeat("h", 128) }, ""},
		{"handler 129", func(r *rpc.CreateFunctionRequest) { r.Handler = strings.Repeat("h", 129) },
			"at 'handler' failed to satisfy constraint: Member must have length less than or equal to 128"},
		{"handler space", func(r *rpc.CreateFunctionRequest) { r.Handler = "my handler" },
			"Value 'my handler' at 'handler' failed to satisfy constraint: Member must satisfy regular expression pattern: [^\\s\\p{Cc}]+"},
		{"handler newline", func(r *rpc.CreateFunctionRequest) { r.Handler = "boot\nstrap" }, "at 'handler'"},
		{"handler control", func(r *rpc.CreateFunctionRequest) { r.Handler = "boot\x00strap" }, "at 'handler'"},
		{"handler DEL", func(r *rpc.CreateFunctionRequest) { r.Handler = "boot\x7fstrap" }, "at 'handler'"},
		{"handler nbsp", func(r *rpc.CreateFunctionRequest) { r.Handler = "boot\u00a0strap" }, "at 'handler'"},
		{"handler invalid utf8", func(r *rpc.CreateFunctionRequest) { r.Handler = "boot\xffstrap" }, "at 'handler'"},
		// memory
		{"memory default", func(r *rpc.CreateFunctionRequest) { r.MemoryMB = 0 }, ""},
		{"memory 128", func(r *rpc.CreateFunctionRequest) { r.MemoryMB = 128 }, ""},
		{"memory 10240", func(r *rpc.CreateFunctionRequest) { r.MemoryMB = 10240 }, ""},
		{"memory 127", func(r *rpc.CreateFunctionRequest) { r.MemoryMB = 127 },
			"1 validation error detected: Value '127' at 'memorySize' failed to satisfy constraint: Member must have value greater than or equal to 128"},
		{"memory 20000", func(r *rpc.CreateFunctionRequest) { r.MemoryMB = 20000 },
			"1 validation error detected: Value '20000' at 'memorySize' failed to satisfy constraint: Member must have value less than or equal to 10240"},
		{"memory negative", func(r *rpc.CreateFunctionRequest) { r.MemoryMB = -1 }, "Value '-1' at 'memorySize'"},
		// timeout
		{"timeout default", func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = 0 }, ""},
		{"timeout 1", func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = 1 }, ""},
		{"timeout 900", func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = 900 }, ""},
		{"timeout 901", func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = 901 },
			"Value '901' at 'timeout' failed to satisfy constraint: Member must have value less than or equal to 900"},
		{"timeout negative", func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = -5 },
			"Value '-5' at 'timeout' failed to satisfy constraint: Member must have value greater than or equal to 1"},
		// environment keys
		{"env nil", func(r *rpc.CreateFunctionRequest) { r.Env = nil }, ""},
		{"env two chars", func(r *rpc.CreateFunctionRequest) { r.Env = map[string]string{"AB": ""} }, ""},
		{"env underscore digits", func(r *rpc.CreateFunctionRequest) { r.Env = map[string]string{"a_1_B": "x"} }, ""},
		{"env one char", func(r *rpc.CreateFunctionRequest) { r.Env = map[string]string{"A": "x"} },
			"1 validation error detected: Value 'A' at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]"},
		{"env leading digit", func(r *rpc.CreateFunctionRequest) { r.Env = map[string]string{"1ABC": "x"} }, "Value '1ABC' at 'environment.variables'"},
		{"env leading underscore", func(r *rpc.CreateFunctionRequest) { r.Env = map[string]string{"_ABC": "x"} }, "Value '_ABC'"},
		{"env dash", func(r *rpc.CreateFunctionRequest) { r.Env = map[string]string{"MY-VAR": "x"} }, "Value 'MY-VAR'"},
		{"env empty key", func(r *rpc.CreateFunctionRequest) { r.Env = map[string]string{"": "x"} }, "Value '' at 'environment.variables'"},
		// environment reserved keys: each of Lambda's list
		{"env reserved several", func(r *rpc.CreateFunctionRequest) {
			r.Env = map[string]string{"AWS_SESSION_TOKEN": "x", "AWS_REGION": "y", "OK_KEY": "z"}
		}, "contains reserved keys that are currently not supported for modification. Reserved keys used in this request: AWS_REGION, AWS_SESSION_TOKEN"},
		// _HANDLER and _X_AMZN_TRACE_ID fail the key pattern before the reserved check, as in Lambda.
		{"env reserved underscore", func(r *rpc.CreateFunctionRequest) { r.Env = map[string]string{"_HANDLER": "x"} },
			"Value '_HANDLER' at 'environment.variables' failed to satisfy constraint"},
		{"env reserved-like is fine", func(r *rpc.CreateFunctionRequest) {
			r.Env = map[string]string{"AWS_REGION_NAME": "x", "aws_region": "y"}
		}, ""},
		// environment size
		{"env at 4KB", func(r *rpc.CreateFunctionRequest) { r.Env = envOfSize(MaxEnvSize) }, ""},
		{"env over 4KB", func(r *rpc.CreateFunctionRequest) { r.Env = envOfSize(MaxEnvSize + 1) },
			"exceeded the 4KB limit. String measured: 4097 bytes"},
		{"env size counts JSON escapes", func(r *rpc.CreateFunctionRequest) {
			r.Env = map[string]string{"QUOTES": strings.Repeat(`"`, 2100)} // 4200 escaped
		}, "exceeded the 4KB limit"},
		// several at once, in field order
		{"several", func(r *rpc.CreateFunctionRequest) { r.MemoryMB = 1; r.TimeoutSec = 1000 },
			"2 validation errors detected: Value '1' at 'memorySize' failed to satisfy constraint: Member must have value greater than or equal to 128; Value '1000' at 'timeout' failed to satisfy constraint: Member must have value less than or equal to 900"},
	}
	for _, key := range sortedReservedKeys() {
		want := "Reserved keys used in this request: " + key
		if !validEnvKey(key) {
			want = "Value '" + key + "' at 'environment.variables'"
		}
		tests = append(tests, struct {
			name   string
			change func(r *rpc.CreateFunctionRequest)
			want   string
		}{"env reserved " + key, func(r *rpc.CreateFunctionRequest) { r.Env = map[string]string{key: "v"} }, want})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := validCreate()
			tt.change(req)
			fc, err := NormalizeCreate(req)
			wantInvalid(t, err, tt.want)
			if verr := ValidateCreate(req); (verr == nil) != (err == nil) {
				t.Fatalf("ValidateCreate = %v, NormalizeCreate = %v", verr, err)
			}
			if tt.want != "" && fc != nil {
				t.Fatalf("invalid request returned a config: %+v", fc)
			}
		})
	}
}

func sortedReservedKeys() []string {
	keys := []string{
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
		"AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME",
		"AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "_HANDLER", "_X_AMZN_TRACE_ID",
		"AWS_EXECUTION_ENV",
	}
	if len(keys) != len(reservedEnvKeys) {
		panic(fmt.Sprintf("test lists %d reserved keys, the package %d", len(keys), len(reservedEnvKeys)))
	}
	return keys
}

// envOfSize returns an environment whose JSON form is exactly n bytes.
func envOfSize(n int) map[string]string {
	// {"KEY":"vvv"} is 10 bytes of framing around the value.
	return map[string]string{"KEY": strings.Repeat("v", n-len(`{"KEY":""}`))}
}

func TestNormalizeCreateResult(t *testing.T) {
	t.Parallel()
	req := &rpc.CreateFunctionRequest{
		Name:    "f",
		Runtime: "provided",
		Env:     map[string]string{"GREETING": "hi"},
		ZipFile: []byte("PK"),
	}
	fc, err := NormalizeCreate(req)
	if err != nil {
		t.Fatal(err)
	}
	want := &rpc.FunctionConfig{
		Name: "f", Runtime: "provided", Handler: "bootstrap",
		MemoryMB: 128, TimeoutSec: 3, Env: map[string]string{"GREETING": "hi"}, EphemeralStorageMB: 512,
	}
	if !reflect.DeepEqual(fc, want) {
		t.Fatalf("NormalizeCreate = %+v, want %+v", fc, want)
	}
	req.Env["GREETING"] = "changed"
	if fc.Env["GREETING"] != "hi" {
		t.Fatal("the config shares the request's env map")
	}
	req.Env = map[string]string{}
	if fc, _ := NormalizeCreate(req); fc.Env != nil {
		t.Fatalf("empty env = %#v, want nil", fc.Env)
	}
	wantInvalid(t, ValidateCreate(nil), "missing request")
}

func TestApplyConfigUpdate(t *testing.T) {
	t.Parallel()
	cur := fullFunction("f")
	cur.Revision = 5
	snapshotOfCur := cur.Clone()

	tests := []struct {
		name  string
		req   *rpc.UpdateConfigRequest
		check func(t *testing.T, got *rpc.FunctionConfig)
		want  string
		code  *rpc.Error
	}{
		{name: "nothing", req: &rpc.UpdateConfigRequest{Name: "f"}, check: func(t *testing.T, got *rpc.FunctionConfig) {
			if !reflect.DeepEqual(got, cur) || got == cur {
				t.Fatalf("got %+v, want an equal copy", got)
			}
		}},
		{name: "memory and timeout", req: &rpc.UpdateConfigRequest{Name: "f", MemoryMB: intPtr(2048), TimeoutSec: intPtr(900)},
			check: func(t *testing.T, got *rpc.FunctionConfig) {
				if got.MemoryMB != 2048 || got.TimeoutSec != 900 || !reflect.DeepEqual(got.Env, cur.Env) {
					t.Fatalf("got %+v", got)
				}
			}},
		{name: "env replaced", req: &rpc.UpdateConfigRequest{Name: "f", Env: map[string]string{"NEW_KEY": "v"}},
			check: func(t *testing.T, got *rpc.FunctionConfig) {
				if !reflect.DeepEqual(got.Env, map[string]string{"NEW_KEY": "v"}) {
					t.Fatalf("env = %v", got.Env)
				}
			}},
		{name: "env cleared", req: &rpc.UpdateConfigRequest{Name: "f", Env: map[string]string{}},
			check: func(t *testing.T, got *rpc.FunctionConfig) {
				if got.Env != nil {
					t.Fatalf("env = %#v, want nil", got.Env)
				}
			}},
		{name: "memory zero", req: &rpc.UpdateConfigRequest{Name: "f", MemoryMB: intPtr(0)},
			want: "Value '0' at 'memorySize' failed to satisfy constraint: Member must have value greater than or equal to 128", code: rpc.ErrInvalidParameterValue},
		{name: "memory too big", req: &rpc.UpdateConfigRequest{Name: "f", MemoryMB: intPtr(10241)},
			want: "Member must have value less than or equal to 10240", code: rpc.ErrInvalidParameterValue},
		{name: "timeout zero", req: &rpc.UpdateConfigRequest{Name: "f", TimeoutSec: intPtr(0)},
			want: "Value '0' at 'timeout'", code: rpc.ErrInvalidParameterValue},
		{name: "timeout too big", req: &rpc.UpdateConfigRequest{Name: "f", TimeoutSec: intPtr(901)},
			want: "Member must have value less than or equal to 900", code: rpc.ErrInvalidParameterValue},
		{name: "env bad key", req: &rpc.UpdateConfigRequest{Name: "f", Env: map[string]string{"9X": "v"}},
			want: "Value '9X' at 'environment.variables'", code: rpc.ErrInvalidParameterValue},
		{name: "env reserved", req: &rpc.UpdateConfigRequest{Name: "f", Env: map[string]string{"LAMBDA_TASK_ROOT": "/x"}},
			want: "Reserved keys used in this request: LAMBDA_TASK_ROOT", code: rpc.ErrInvalidParameterValue},
		{name: "env too big", req: &rpc.UpdateConfigRequest{Name: "f", Env: envOfSize(5000)},
			want: "exceeded the 4KB limit", code: rpc.ErrInvalidParameterValue},
		{name: "bad name", req: &rpc.UpdateConfigRequest{Name: "f g"},
			want: "at 'functionName'", code: rpc.ErrInvalidParameterValue},
		{name: "other function", req: &rpc.UpdateConfigRequest{Name: "g"},
			want: "Function not found: g", code: rpc.ErrResourceNotFound},
		{name: "nil request", req: nil, want: "missing request", code: rpc.ErrInvalidParameterValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ApplyConfigUpdate(cur, tt.req)
			if tt.want != "" {
				if !errors.Is(err, tt.code) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %s containing %q", err, tt.code.Code, tt.want)
				}
				if got != nil {
					t.Fatalf("failed update returned %+v", got)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, got)
			}
			if !reflect.DeepEqual(cur, snapshotOfCur) {
				t.Fatal("ApplyConfigUpdate changed cur in place")
			}
		})
	}

	if _, err := ApplyConfigUpdate(nil, &rpc.UpdateConfigRequest{Name: "f"}); !errors.Is(err, rpc.ErrResourceNotFound) {
		t.Fatalf("nil cur: err = %v", err)
	}
}

func TestValidateReservation(t *testing.T) {
	t.Parallel()
	const below = "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [%d]."
	tests := []struct {
		name     string
		fn       string
		reserved int
		limit    int
		others   int
		want     string // "" means valid
	}{
		{"zero", "f", 0, 1000, 0, ""},
		{"some", "f", 100, 1000, 0, ""},
		{"up to the minimum", "f", 900, 1000, 0, ""},
		{"one over", "f", 901, 1000, 0, fmt.Sprintf(below, 100)},
		{"others count", "f", 400, 1000, 500, ""},
		{"others count, over", "f", 401, 1000, 500, fmt.Sprintf(below, 100)},
		{"others already over: even 0 fails", "f", 0, 1000, 950, fmt.Sprintf(below, 100)},
		{"huge", "f", math.MaxInt, 1000, 0, fmt.Sprintf(below, 100)},
		{"negative others count as 0", "f", 900, 1000, -50, ""},
		{"default limit", "f", 900, 0, 0, ""},
		{"default limit over", "f", 901, -1, 0, fmt.Sprintf(below, 100)},
		{"other limit", "f", 4500, 5000, 0, ""},
		{"other limit over", "f", 4501, 5000, 0, fmt.Sprintf(below, 500)},
		{"small limit", "f", 9, 10, 0, ""},
		{"small limit over", "f", 10, 10, 0, fmt.Sprintf(below, 1)},
		{"negative", "f", -1, 1000, 0,
			"1 validation error detected: Value '-1' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0"},
		{"bad name", "a b", 1, 1000, 0, "Value 'a b' at 'functionName'"},
		{"bad name and negative", "", -2, 1000, 0, "2 validation errors detected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateReservation(tt.fn, tt.reserved, tt.limit, tt.others)
			wantInvalid(t, err, tt.want)
			if tt.want != "" && strings.HasPrefix(tt.want, "Specified") && err.(*rpc.Error).Message != tt.want {
				t.Fatalf("message = %q, want exactly %q", err.(*rpc.Error).Message, tt.want)
			}
		})
	}
	if MinUnreserved(1000) != 100 || MaxReservedTotal(1000) != 900 || MaxReservedTotal(0) != 900 {
		t.Fatalf("MinUnreserved(1000) = %d, MaxReservedTotal(1000) = %d", MinUnreserved(1000), MaxReservedTotal(1000))
	}
}
