package rpc

// Method names of asynchronous invocation configuration.
const (
	MethodEventConfigPut    = "Function.PutEventConfig"
	MethodEventConfigGet    = "Function.GetEventConfig"
	MethodEventConfigDelete = "Function.DeleteEventConfig"
	MethodEventConfigList   = "Function.ListEventConfigs"
)

// Limits and defaults of asynchronous invocation, as Lambda's.
const (
	DefaultMaxRetryAttempts = 2
	MaxMaxRetryAttempts     = 2
	DefaultMaxEventAgeSec   = 21600
	MinMaxEventAgeSec       = 60
	MaxMaxEventAgeSec       = 21600
	// MaxDestinationDepth is how many hops a chain of functions invoking
	// each other through destinations may make before it is stopped
	// (Lambda's recursive loop detection).
	MaxDestinationDepth = 16
)

// EventConfig is a function's asynchronous invocation configuration
// (Lambda's FunctionEventInvokeConfig). A nil limit means Lambda's
// default. Destinations are stored as the caller gave them (a short form
// `function:NAME` or an ARN); Destination* fields in JSON hold them.
// A stored EventConfig is immutable.
type EventConfig struct {
	FunctionName string `msgpack:"function" json:"-"`
	// Qualifier is the version or alias the configuration is for ("" for
	// the function's own, which unqualified and $LATEST events use): an
	// event uses the configuration of the qualifier it was sent to, and
	// none other, as on Lambda.
	Qualifier        string `msgpack:"qualifier,omitempty" json:"-"`
	MaxRetryAttempts *int   `msgpack:"max_retries,omitempty" json:"MaximumRetryAttempts,omitempty"`
	MaxEventAgeSec   *int   `msgpack:"max_age,omitempty" json:"MaximumEventAgeInSeconds,omitempty"`
	OnSuccess        string `msgpack:"on_success,omitempty" json:"-"`
	OnFailure        string `msgpack:"on_failure,omitempty" json:"-"`
	LastModifiedMs   int64  `msgpack:"last_modified_ms" json:"-"`
}

// Retries returns MaxRetryAttempts or its default.
func (c *EventConfig) Retries() int {
	if c == nil || c.MaxRetryAttempts == nil {
		return DefaultMaxRetryAttempts
	}
	return *c.MaxRetryAttempts
}

// MaxAgeSec returns MaxEventAgeSec or its default.
func (c *EventConfig) MaxAgeSec() int {
	if c == nil || c.MaxEventAgeSec == nil {
		return DefaultMaxEventAgeSec
	}
	return *c.MaxEventAgeSec
}

// PutEventConfigRequest sets a function's whole event configuration: a
// limit left nil takes its default (Lambda's PutFunctionEventInvokeConfig).
type PutEventConfigRequest struct {
	// FunctionName may carry a qualifier (`name:qualifier`, a qualified
	// ARN), as may Qualifier: a version or alias ("" or $LATEST: the
	// function's own configuration).
	FunctionName     string `msgpack:"function_name"`
	Qualifier        string `msgpack:"qualifier,omitempty"`
	MaxRetryAttempts *int   `msgpack:"max_retries,omitempty"`
	MaxEventAgeSec   *int   `msgpack:"max_age,omitempty"`
	OnSuccess        string `msgpack:"on_success,omitempty"`
	OnFailure        string `msgpack:"on_failure,omitempty"`
}

// GetEventConfigRequest names the function of Get and Delete.
type GetEventConfigRequest struct {
	FunctionName string `msgpack:"function_name"` // may carry a qualifier
	Qualifier    string `msgpack:"qualifier,omitempty"`
}

// ListEventConfigsResponse holds a function's event configurations, its
// own first, then its versions' and aliases' by qualifier.
type ListEventConfigsResponse struct {
	Configs []*EventConfig `msgpack:"configs"`
}

// EventConfigResponse is a function's event configuration.
type EventConfigResponse struct {
	Config *EventConfig `msgpack:"config"`
}

// DeleteEventConfigResponse answers MethodEventConfigDelete.
type DeleteEventConfigResponse struct{}
