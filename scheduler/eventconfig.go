package scheduler

import (
	"strings"

	"nimbus/rpc"
)

// Asynchronous invocation configuration: a function's retry limit, maximum
// event age and destinations (Lambda's FunctionEventInvokeConfig), kept
// beside the registry like reserved concurrency; deleting a function
// deletes its configuration.

// PutEventConfigCommand stores a function's whole event configuration
// (CmdPutEventConfig). It fails with ResourceNotFoundException if the
// function does not exist. The proposer validates it (ValidateEventConfig)
// and sets LastModifiedMs.
type PutEventConfigCommand struct {
	Config *rpc.EventConfig `msgpack:"config"`
}

// DeleteEventConfigCommand removes a function's event configuration
// (CmdDeleteEventConfig); ResourceNotFoundException if it has none.
type DeleteEventConfigCommand struct {
	Name string `msgpack:"name"`
}

func (PutEventConfigCommand) CommandType() CommandType    { return CmdPutEventConfig }
func (DeleteEventConfigCommand) CommandType() CommandType { return CmdDeleteEventConfig }

func (f *FSM) applyPutEventConfig(body []byte) ApplyResult {
	var cmd PutEventConfigCommand
	if err := decodeCommand(CmdPutEventConfig, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if cmd.Config == nil || cmd.Config.FunctionName == "" {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: no function", CmdPutEventConfig)}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		if _, ok := s.functions[cmd.Config.FunctionName]; !ok {
			return ApplyResult{Err: errFunctionNotFound(cmd.Config.FunctionName)}, nil
		}
		c := *cmd.Config
		s.eventConfigs[c.FunctionName] = &c
		return ApplyResult{}, nil
	})
}

func (f *FSM) applyDeleteEventConfig(body []byte) ApplyResult {
	var cmd DeleteEventConfigCommand
	if err := decodeCommand(CmdDeleteEventConfig, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		if _, ok := s.eventConfigs[cmd.Name]; !ok {
			return ApplyResult{Err: errEventConfigNotFound(cmd.Name)}, nil
		}
		delete(s.eventConfigs, cmd.Name)
		return ApplyResult{}, nil
	})
}

func errEventConfigNotFound(name string) error {
	return rpc.Errorf(rpc.CodeResourceNotFound, "The function %s doesn't have an EventInvokeConfig", rpc.DefaultFunctionARN(name))
}

// EventConfig returns a function's event configuration (immutable), false
// when it has none.
func (f *FSM) EventConfig(name string) (*rpc.EventConfig, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c, ok := f.state.eventConfigs[name]
	return c, ok
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
func ValidateEventConfig(req *rpc.PutEventConfigRequest, exists func(name string) bool, queue func(name string) (*rpc.Queue, bool)) (*rpc.EventConfig, error) {
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
				return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "The destination function %s does not exist", rpc.DefaultFunctionARN(dest.Name))
			}
		case DestinationQueue:
			if err := CheckQueueTarget(dest.Name, queue); err != nil {
				return nil, err
			}
		}
	}
	return &rpc.EventConfig{
		FunctionName:     req.FunctionName,
		MaxRetryAttempts: req.MaxRetryAttempts,
		MaxEventAgeSec:   req.MaxEventAgeSec,
		OnSuccess:        req.OnSuccess,
		OnFailure:        req.OnFailure,
	}, nil
}

// CheckQueueTarget checks a queue named as a destination or a dead-letter
// target: it must exist and be a standard queue (Lambda sends to those).
func CheckQueueTarget(name string, queue func(name string) (*rpc.Queue, bool)) error {
	if ValidateQueueName(name, IsFIFOName(name)) != nil {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "The destination queue name %q is invalid", name)
	}
	q, ok := queue(name)
	if !ok {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "The destination queue %s does not exist", rpc.QueueARN(name))
	}
	if q.FIFO {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "The destination queue %s is a FIFO queue: only standard queues are supported", rpc.QueueARN(name))
	}
	return nil
}
