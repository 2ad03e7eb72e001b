package scheduler

import (
	"fmt"
	"sort"

	"nimbus/rpc"
)

// Queue triggers (Lambda's event source mappings for SQS): which queue
// invokes which function, in what batches. The state holds their
// configurations; the leader's pollers (node/trigger.go) run them.
//
// A trigger may outlive its function or its queue (as Lambda's mappings
// may): its poller then idles until they exist again or it is deleted.

// PutTriggerCommand stores a trigger (CmdPutTrigger): PutCreate fails with
// ResourceConflictException if the UUID exists, PutUpdate with
// ResourceNotFoundException if it does not. The proposer validates it
// (ValidateTrigger) and sets UUID and LastModifiedMs.
type PutTriggerCommand struct {
	Trigger *rpc.Trigger `msgpack:"trigger"`
	Mode    PutMode      `msgpack:"mode"`
}

// DeleteTriggerCommand removes a trigger (CmdDeleteTrigger);
// ResourceNotFoundException if there is none.
type DeleteTriggerCommand struct {
	UUID string `msgpack:"uuid"`
}

func (PutTriggerCommand) CommandType() CommandType    { return CmdPutTrigger }
func (DeleteTriggerCommand) CommandType() CommandType { return CmdDeleteTrigger }

// MaxTriggers bounds the triggers the state holds.
const MaxTriggers = 10_000

// checkTrigger is what Apply and Restore require of a trigger.
func checkTrigger(t *rpc.Trigger) error {
	switch {
	case t == nil:
		return fmt.Errorf("no trigger")
	case t.UUID == "" || len(t.UUID) > 64:
		return fmt.Errorf("trigger uuid of %d bytes", len(t.UUID))
	case ValidateName(t.Function) != nil:
		return fmt.Errorf("trigger %s function %q", t.UUID, t.Function)
	case ValidateQueueName(t.Queue, IsFIFOName(t.Queue)) != nil:
		return fmt.Errorf("trigger %s queue %q", t.UUID, t.Queue)
	case checkBatch(t.BatchSize, t.BatchWindowSec) != nil:
		return fmt.Errorf("trigger %s batch %d/%d", t.UUID, t.BatchSize, t.BatchWindowSec)
	case t.MaxConcurrency != 0 && (t.MaxConcurrency < rpc.MinTriggerConcurrency || t.MaxConcurrency > rpc.MaxTriggerConcurrency):
		return fmt.Errorf("trigger %s max concurrency %d", t.UUID, t.MaxConcurrency)
	}
	return nil
}

func checkBatch(size, window int) error {
	switch {
	case size < 1 || size > rpc.MaxTriggerBatchSize:
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value %d at 'batchSize' failed to satisfy constraint: Member must have value less than or equal to %d and greater than or equal to 1", size, rpc.MaxTriggerBatchSize)
	case window < 0 || window > rpc.MaxTriggerBatchWindowSec:
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value %d at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member must have value less than or equal to %d and greater than or equal to 0", window, rpc.MaxTriggerBatchWindowSec)
	case size > rpc.MaxTriggerSmallBatch && window < 1:
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than %d", rpc.MaxTriggerSmallBatch)
	}
	return nil
}

func checkConcurrency(c int) error {
	if c != 0 && (c < rpc.MinTriggerConcurrency || c > rpc.MaxTriggerConcurrency) {
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value %d at 'scalingConfig.maximumConcurrency' failed to satisfy constraint: Member must have value between %d and %d", c, rpc.MinTriggerConcurrency, rpc.MaxTriggerConcurrency)
	}
	return nil
}

// ValidateTrigger checks a CreateTrigger request and returns the trigger
// to store (UUID and LastModifiedMs left for the proposer). functionExists
// and queueExists read the state: a trigger is created only for an
// existing function and queue.
func ValidateTrigger(arns rpc.ARNScope, req *rpc.CreateTriggerRequest, functionExists, queueExists func(string) bool) (*rpc.Trigger, error) {
	if err := ValidateName(req.Function); err != nil {
		return nil, err
	}
	if req.Queue == "" {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "The event source (a queue) is required.")
	}
	queue, err := ParseQueueRef(req.Queue)
	if err != nil {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Invalid event source %q: %s", req.Queue, rpc.AsError(err).Message)
	}
	t := &rpc.Trigger{Function: req.Function, Queue: queue, BatchSize: rpc.DefaultTriggerBatchSize,
		ReportBatchItemFailures: req.ReportBatchItemFailures, Enabled: !req.Disabled}
	if req.BatchSize != nil {
		t.BatchSize = *req.BatchSize
	}
	if req.BatchWindowSec != nil {
		t.BatchWindowSec = *req.BatchWindowSec
	}
	if err := checkBatch(t.BatchSize, t.BatchWindowSec); err != nil {
		return nil, err
	}
	if req.MaxConcurrency != nil {
		if *req.MaxConcurrency == 0 {
			return nil, checkConcurrency(-1)
		}
		t.MaxConcurrency = *req.MaxConcurrency
	}
	if err := checkConcurrency(t.MaxConcurrency); err != nil {
		return nil, err
	}
	if !functionExists(t.Function) {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "Function not found: %s", arns.Function(t.Function, ""))
	}
	if !queueExists(queue) {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Error occurred while ReceiveMessage. SQS Error Code: QueueDoesNotExist. The queue %s does not exist.", arns.Queue(queue))
	}
	return t, nil
}

// ApplyTriggerUpdate returns cur changed as req says (cur unchanged).
func ApplyTriggerUpdate(cur *rpc.Trigger, req *rpc.UpdateTriggerRequest) (*rpc.Trigger, error) {
	next := *cur
	if req.BatchSize != nil {
		next.BatchSize = *req.BatchSize
	}
	if req.BatchWindowSec != nil {
		next.BatchWindowSec = *req.BatchWindowSec
	}
	if err := checkBatch(next.BatchSize, next.BatchWindowSec); err != nil {
		return nil, err
	}
	if req.MaxConcurrency != nil {
		next.MaxConcurrency = *req.MaxConcurrency
	}
	if err := checkConcurrency(next.MaxConcurrency); err != nil {
		return nil, err
	}
	if req.ReportBatchItemFailures != nil {
		next.ReportBatchItemFailures = *req.ReportBatchItemFailures
	}
	if req.Enabled != nil {
		next.Enabled = *req.Enabled
	}
	return &next, nil
}

func errTriggerNotFound(uuid string) error {
	return rpc.Errorf(rpc.CodeResourceNotFound, "The resource you requested does not exist. (event source mapping %s)", uuid)
}

func (f *FSM) applyPutTrigger(body []byte) ApplyResult {
	var cmd PutTriggerCommand
	if err := decodeCommand(CmdPutTrigger, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if err := checkTrigger(cmd.Trigger); err != nil || cmd.Mode != PutCreate && cmd.Mode != PutUpdate {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: %v (mode %d)", CmdPutTrigger, err, cmd.Mode)}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		_, exists := s.triggers[cmd.Trigger.UUID]
		switch {
		case cmd.Mode == PutCreate && exists:
			return ApplyResult{Err: rpc.Errorf(rpc.CodeResourceConflict, "The event source mapping %s already exists", cmd.Trigger.UUID)}, nil
		case cmd.Mode == PutUpdate && !exists:
			return ApplyResult{Err: errTriggerNotFound(cmd.Trigger.UUID)}, nil
		case cmd.Mode == PutCreate && len(s.triggers) >= MaxTriggers:
			return ApplyResult{Err: rpc.Errorf(rpc.CodeResourceConflict, "at most %d event source mappings", MaxTriggers)}, nil
		}
		t := *cmd.Trigger
		s.triggers[t.UUID] = &t
		return ApplyResult{Outputs: []any{&t}}, nil
	})
}

func (f *FSM) applyDeleteTrigger(body []byte) ApplyResult {
	var cmd DeleteTriggerCommand
	if err := decodeCommand(CmdDeleteTrigger, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		t, ok := s.triggers[cmd.UUID]
		if !ok {
			return ApplyResult{Err: errTriggerNotFound(cmd.UUID)}, nil
		}
		delete(s.triggers, cmd.UUID)
		return ApplyResult{Outputs: []any{t}}, nil
	})
}

// Trigger returns a trigger (immutable).
func (f *FSM) Trigger(uuid string) (*rpc.Trigger, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.state.triggers[uuid]
	return t, ok
}

// Triggers returns the triggers, of one function when fn is not "", sorted
// by UUID.
func (f *FSM) Triggers(fn string) []*rpc.Trigger {
	f.mu.RLock()
	out := make([]*rpc.Trigger, 0, len(f.state.triggers))
	for _, t := range f.state.triggers {
		if fn == "" || t.Function == fn {
			out = append(out, t)
		}
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].UUID < out[j].UUID })
	return out
}
