package scheduler

import (
	"sort"
	"strconv"
	"strings"

	"nimbus/rpc"
)

// Asynchronous invocation configuration: a function's retry limit, maximum
// event age and destinations (Lambda's FunctionEventInvokeConfig), the
// function's own and its versions' and aliases', kept beside the registry
// like reserved concurrency. An event uses the configuration of the
// qualifier it was sent to (none: the function's own); deleting a
// function deletes all of them, deleting a version or an alias its own.

// PutEventConfigCommand stores a whole event configuration
// (CmdPutEventConfig for the function's own, CmdPutQualifiedEventConfig
// for a version's or an alias's). It fails with ResourceNotFoundException
// if the function, or the version or alias, does not exist. The proposer
// validates it (ValidateEventConfig) and sets LastModifiedMs.
type PutEventConfigCommand struct {
	Config *rpc.EventConfig `msgpack:"config"`
}

// DeleteEventConfigCommand removes an event configuration
// (CmdDeleteEventConfig, or CmdDeleteQualifiedEventConfig with a
// qualifier); ResourceNotFoundException if there is none.
type DeleteEventConfigCommand struct {
	Name      string `msgpack:"name"`
	Qualifier string `msgpack:"qualifier,omitempty"`
}

// CommandType is CmdPutEventConfig for the function's own configuration
// and CmdPutQualifiedEventConfig for a version's or an alias's.
func (c PutEventConfigCommand) CommandType() CommandType {
	if c.Config != nil && isQualified(c.Config.Qualifier) {
		return CmdPutQualifiedEventConfig
	}
	return CmdPutEventConfig
}

// CommandType is CmdDeleteEventConfig, or CmdDeleteQualifiedEventConfig
// with a qualifier.
func (c DeleteEventConfigCommand) CommandType() CommandType {
	if isQualified(c.Qualifier) {
		return CmdDeleteQualifiedEventConfig
	}
	return CmdDeleteEventConfig
}

func isQualified(q string) bool { return q != "" && q != rpc.VersionLatest }

// eventConfigKey is where an event configuration lives in the state: the
// function's name, or name:qualifier for a version's or alias's.
func eventConfigKey(name, qualifier string) string {
	if !isQualified(qualifier) {
		return name
	}
	return name + ":" + qualifier
}

// qualifierExists reports whether qualifier names a published version or
// an alias of fn.
func (s *fsmState) qualifierExists(fn, qualifier string) bool {
	if n, err := strconv.Atoi(qualifier); err == nil {
		_, ok := s.versions.byFn[fn][n]
		return ok
	}
	_, ok := s.versions.aliases[fn][qualifier]
	return ok
}

func (f *FSM) applyPutEventConfig(t CommandType, body []byte) ApplyResult {
	var cmd PutEventConfigCommand
	if err := decodeCommand(t, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if cmd.Config == nil || cmd.Config.FunctionName == "" {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: no function", t)}
	}
	c := *cmd.Config
	if t == CmdPutEventConfig || c.Qualifier == rpc.VersionLatest {
		c.Qualifier = "" // the function's own, whatever the entry carries
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		if _, ok := s.functions[c.FunctionName]; !ok {
			return ApplyResult{Err: errFunctionNotFound(c.FunctionName)}, nil
		}
		if c.Qualifier != "" && !s.qualifierExists(c.FunctionName, c.Qualifier) {
			return ApplyResult{Err: errQualifierNotFound(f.arns, c.FunctionName, c.Qualifier)}, nil
		}
		s.eventConfigs[eventConfigKey(c.FunctionName, c.Qualifier)] = &c
		return ApplyResult{}, nil
	})
}

func (f *FSM) applyDeleteEventConfig(t CommandType, body []byte) ApplyResult {
	var cmd DeleteEventConfigCommand
	if err := decodeCommand(t, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if t == CmdDeleteEventConfig {
		cmd.Qualifier = ""
	}
	key := eventConfigKey(cmd.Name, cmd.Qualifier)
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		if _, ok := s.eventConfigs[key]; !ok {
			return ApplyResult{Err: errEventConfigNotFound(f.arns, cmd.Name, cmd.Qualifier)}, nil
		}
		delete(s.eventConfigs, key)
		return ApplyResult{}, nil
	})
}

// dropEventConfigs deletes every event configuration of fn.
func (s *fsmState) dropEventConfigs(fn string) {
	for k, c := range s.eventConfigs {
		if c.FunctionName == fn {
			delete(s.eventConfigs, k)
		}
	}
}

func errEventConfigNotFound(arns rpc.ARNScope, name, qualifier string) error {
	arn := arns.Function(name, "")
	if isQualified(qualifier) {
		arn += ":" + qualifier
	}
	return rpc.Errorf(rpc.CodeResourceNotFound, "The function %s doesn't have an EventInvokeConfig", arn)
}

func errQualifierNotFound(arns rpc.ARNScope, name, qualifier string) error {
	return rpc.Errorf(rpc.CodeResourceNotFound, "Function not found: %s", arns.Function(name, qualifier))
}

// EventConfig returns a function's own event configuration (immutable),
// false when it has none.
func (f *FSM) EventConfig(name string) (*rpc.EventConfig, bool) {
	return f.EventConfigFor(name, "")
}

// EventConfigFor returns the event configuration an event sent to
// name:qualifier uses ("" or $LATEST: the function's own), false when
// there is none: a version or alias without its own has none, as on
// Lambda.
func (f *FSM) EventConfigFor(name, qualifier string) (*rpc.EventConfig, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c, ok := f.state.eventConfigs[eventConfigKey(name, qualifier)]
	return c, ok
}

// EventConfigs returns every event configuration of a function, its own
// first, then by qualifier.
func (f *FSM) EventConfigs(name string) []*rpc.EventConfig {
	f.mu.RLock()
	var out []*rpc.EventConfig
	for _, c := range f.state.eventConfigs {
		if c.FunctionName == name {
			out = append(out, c)
		}
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Qualifier < out[j].Qualifier })
	return out
}

// DestinationKind says where a destination delivers.
type DestinationKind uint8

const (
	DestinationFunction DestinationKind = 1
	DestinationQueue    DestinationKind = 2
)

// Destination is a parsed destination: a function or a queue by name.
type Destination struct {
	Kind DestinationKind
	Name string
}

// ParseDestination reads `function:NAME`, `queue:NAME` or the matching ARN
// (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`,
// `arn:aws:sqs:REGION:ACCOUNT:NAME`).
func ParseDestination(s string) (Destination, error) {
	bad := func() (Destination, error) {
		return Destination{}, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"The destination ARN %s is invalid: use function:NAME, queue:NAME, arn:aws:lambda:REGION:ACCOUNT:function:NAME or arn:aws:sqs:REGION:ACCOUNT:NAME", s)
	}
	if name, ok := strings.CutPrefix(s, "function:"); ok {
		if ValidateName(name) != nil {
			return bad()
		}
		return Destination{DestinationFunction, name}, nil
	}
	if name, ok := strings.CutPrefix(s, "queue:"); ok {
		return Destination{DestinationQueue, name}, nil
	}
	parts := strings.Split(s, ":")
	switch {
	case len(parts) == 7 && parts[0] == "arn" && parts[2] == "lambda" && parts[5] == "function" && ValidateName(parts[6]) == nil:
		return Destination{DestinationFunction, parts[6]}, nil
	case len(parts) == 6 && parts[0] == "arn" && parts[2] == "sqs" && parts[5] != "":
		return Destination{DestinationQueue, parts[5]}, nil
	}
	return bad()
}

// ValidateEventConfig checks a request with Lambda's rules and returns the
// configuration to store. exists reports whether a function exists (a
// function destination must); queue reads a queue (a queue destination
// must exist and be a standard queue).
func ValidateEventConfig(arns rpc.ARNScope, req *rpc.PutEventConfigRequest, exists func(name string) bool, queue func(name string) (*rpc.Queue, bool)) (*rpc.EventConfig, error) {
	if err := ValidateName(req.FunctionName); err != nil {
		return nil, err
	}
	if r := req.MaxRetryAttempts; r != nil && (*r < 0 || *r > rpc.MaxMaxRetryAttempts) {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%d' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value less than or equal to %d and greater than or equal to 0", *r, rpc.MaxMaxRetryAttempts)
	}
	if a := req.MaxEventAgeSec; a != nil && (*a < rpc.MinMaxEventAgeSec || *a > rpc.MaxMaxEventAgeSec) {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%d' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value between %d and %d", *a, rpc.MinMaxEventAgeSec, rpc.MaxMaxEventAgeSec)
	}
	for _, d := range []string{req.OnSuccess, req.OnFailure} {
		if d == "" {
			continue
		}
		dest, err := ParseDestination(d)
		if err != nil {
			return nil, err
		}
		switch dest.Kind {
		case DestinationFunction:
			if !exists(dest.Name) {
				return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "The destination function %s does not exist", arns.Function(dest.Name, ""))
			}
		case DestinationQueue:
			if err := CheckQueueTarget(arns, dest.Name, queue); err != nil {
				return nil, err
			}
		}
	}
	qualifier := req.Qualifier
	if !isQualified(qualifier) {
		qualifier = ""
	}
	return &rpc.EventConfig{
		FunctionName:     req.FunctionName,
		Qualifier:        qualifier,
		MaxRetryAttempts: req.MaxRetryAttempts,
		MaxEventAgeSec:   req.MaxEventAgeSec,
		OnSuccess:        req.OnSuccess,
		OnFailure:        req.OnFailure,
	}, nil
}

// CheckQueueTarget checks a queue named as a destination or a dead-letter
// target: it must exist and be a standard queue (Lambda sends to those).
func CheckQueueTarget(arns rpc.ARNScope, name string, queue func(name string) (*rpc.Queue, bool)) error {
	if ValidateQueueName(name, IsFIFOName(name)) != nil {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "The destination queue name %q is invalid", name)
	}
	q, ok := queue(name)
	if !ok {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "The destination queue %s does not exist", arns.Queue(name))
	}
	if q.FIFO {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "The destination queue %s is a FIFO queue: only standard queues are supported", arns.Queue(name))
	}
	return nil
}
