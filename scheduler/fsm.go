package scheduler

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"nimbus/rpc"
)

// FSM is nimbus's replicated state machine (raft.FSM).
//
// Locks and mutation:
//   - mu guards state. Apply and Restore take it for writing; every reader
//     (Function, Functions, Reserved, ReservedTotal, Snapshot) takes it for
//     reading.
//   - Objects reachable from state are immutable once stored: an apply
//     copies, changes the copy and stores the copy. So readers may keep and
//     share the pointers they get, and Snapshot only copies the map.
//   - notifyMu orders OnFunctionChange calls: a writer takes it before it
//     releases mu and holds it while it calls the callback, so callbacks run
//     outside mu, one at a time, in the order the changes were applied.
//
// Raft calls Apply, Snapshot and Restore from one goroutine; the readers may
// be called from any goroutine.
type FSM struct {
	arns             rpc.ARNScope // in the ARNs of error messages
	onFunctionChange func(old, new *rpc.FunctionConfig)
	onAsyncReady     func()
	onQueueReady     func(queue string)

	mu    sync.RWMutex
	state *fsmState

	notifyMu sync.Mutex
}

// FSMOptions configures an FSM.
type FSMOptions struct {
	// ARNs is the region and account the ARNs in its error messages name
	// (the zero value: the default scope). Every server of a cluster is
	// given the same, so that a replica's answers match the leader's.
	ARNs rpc.ARNScope
	// OnFunctionChange, if set, is called after an apply that changed a
	// function (old nil on create, new nil on delete), outside the FSM lock,
	// in apply order. The node uses it to retire warm sandboxes of old
	// revisions and to drop logs/code.
	//
	// Restore calls it too, once per function that the restored state adds,
	// removes or changes (in name order), so that a replica that catches up
	// through a snapshot learns of the changes it did not apply one by one.
	// On start-up that means one (nil, f) call per function in the snapshot.
	//
	// It runs on Raft's FSM goroutine: it must be quick and must not call
	// Apply or Restore. It may read the FSM (Function, Functions).
	OnFunctionChange func(old, new *rpc.FunctionConfig)
	// OnAsyncReady, if set, is called after an apply that may have made an
	// async event due sooner (an accept or a retry), outside the FSM lock.
	// The leader's dispatcher uses it to wake up. It must not block.
	OnAsyncReady func()
	// OnQueueReady, if set, is called with a queue's name after an apply
	// that may have made a message of it receivable (a send, a redrive into
	// it, a visibility change to now), outside the FSM lock. The leader's
	// long-polling receives use it to wake up. It must not block.
	OnQueueReady func(queue string)
}

// fsmState is the whole replicated state. A state is never changed after
// Restore has swapped it out; maps inside it are changed only by applyX
// functions under FSM.mu, and the values they hold are immutable.
//
// Invariants: every name in reserved and in eventConfigs is a name in
// functions (deleting a function deletes its reservation and its event
// configuration); reservedTotal is the sum of reserved.
//
// async holds the events in flight (async.go). Membership comes here later,
// with its commands and snapshot records. The concurrency ledger does not:
// in-flight counts are the leader's soft state (Ledger), never replicated.
type fsmState struct {
	functions     map[string]*rpc.FunctionConfig
	reserved      map[string]int // function name -> reserved concurrency (>= 0)
	reservedTotal int
	eventConfigs  map[string]*rpc.EventConfig // eventConfigKey -> its config
	async         asyncQueue

	// versions holds versions, aliases and function URLs (versions.go).
	versions versionState
	// Queues and triggers (queue_state.go, trigger.go).
	queues   queueSet
	triggers map[string]*rpc.Trigger
	// Layers (issue 10): layer name -> its versions and next number.
	layers map[string]*layerState
}

func newFSMState() *fsmState {
	return &fsmState{
		functions:    make(map[string]*rpc.FunctionConfig),
		reserved:     make(map[string]int),
		eventConfigs: make(map[string]*rpc.EventConfig),
		async:        newAsyncQueue(),
		versions:     newVersionState(),
		queues:       newQueueSet(),
		triggers:     make(map[string]*rpc.Trigger),
		layers:       make(map[string]*layerState),
	}
}

// ApplyResult is what Apply returns for every entry (raft.ApplyFuture's
// Response). Err is nil or an *rpc.Error; when it is set, Apply changed
// nothing. Function is the stored value after a put and the removed value
// after a delete of a function (nil for the other commands); it is
// immutable. Items holds one result per item of a batch command
// (AsyncAccept, AsyncUpdate): nil or an *rpc.Error, the item's alone.
// Ignored is set when the entry was an unknown ignorable command.
type ApplyResult struct {
	Function *rpc.FunctionConfig
	Items    []error
	Ignored  bool
	Err      error

	// Alias is the stored alias after a put and the removed one after a
	// delete; URL likewise for function URLs.
	Alias *rpc.Alias
	URL   *rpc.FunctionURL
	// Outputs, for commands whose items answer with data (queue sends and
	// receives, queue and trigger puts), holds one value per item (nil for
	// a failed item); nil for the other commands.
	Outputs []any
	// Layer is the stored version after a publish and the removed one after
	// a delete (issue 10).
	Layer *rpc.LayerVersion
}

// functionChange is one change to report through OnFunctionChange.
type functionChange struct {
	old, new *rpc.FunctionConfig
}

// NewFSM returns an FSM with an empty state.
func NewFSM(opts FSMOptions) *FSM {
	return &FSM{
		onFunctionChange: opts.OnFunctionChange,
		onAsyncReady:     opts.OnAsyncReady,
		onQueueReady:     opts.OnQueueReady,
		arns:             opts.ARNs,
		state:            newFSMState(),
	}
}

var _ raft.FSM = (*FSM)(nil)

// Apply applies one committed log entry. It is deterministic: the result and
// the new state depend only on the state and the entry. A garbled entry of a
// known type returns an ApplyResult with Err set and leaves the state as it
// was. An entry of an unknown type with CmdIgnorable set is skipped; any
// other unknown type panics, stopping the apply loop: this replica is older
// than the log it follows, and applying the rest without that entry would
// make it diverge silently (the node must be upgraded, not kept serving).
func (f *FSM) Apply(l *raft.Log) interface{} {
	t, body, err := splitEntry(l.Data)
	if err != nil {
		return ApplyResult{Err: err}
	}
	switch t {
	case CmdPutFunction:
		return f.applyPutFunction(l.Index, body)
	case CmdDeleteFunction:
		return f.applyDeleteFunction(l.Index, body)
	case CmdPutConcurrency:
		return f.applyPutConcurrency(body)
	case CmdDeleteConcurrency:
		return f.applyDeleteConcurrency(body)
	case CmdAsyncAccept:
		return f.applyAsyncAccept(l.Index, body)
	case CmdAsyncUpdate:
		return f.applyAsyncUpdate(l.Index, body)
	case CmdPutEventConfig, CmdPutQualifiedEventConfig:
		return f.applyPutEventConfig(t, body)
	case CmdDeleteEventConfig, CmdDeleteQualifiedEventConfig:
		return f.applyDeleteEventConfig(t, body)

	// Versions, aliases and function URLs.
	case CmdPublishVersion:
		return f.applyPublishVersion(body)
	case CmdDeleteVersion:
		return f.applyDeleteVersion(body)
	case CmdPutAlias:
		return f.applyPutAlias(l.Index, body)
	case CmdDeleteAlias:
		return f.applyDeleteAlias(body)
	case CmdPutURL:
		return f.applyPutURL(body)
	case CmdDeleteURL:
		return f.applyDeleteURL(body)
	// Queues and queue triggers.
	case CmdPutQueue:
		return f.applyPutQueue(body)
	case CmdDeleteQueue:
		return f.applyDeleteQueue(body)
	case CmdQueueSend:
		return f.applyQueueSend(l.Index, body)
	case CmdQueueOps:
		return f.applyQueueOps(l.Index, body)
	case CmdPutTrigger:
		return f.applyPutTrigger(body)
	case CmdDeleteTrigger:
		return f.applyDeleteTrigger(body)
	// Layers (issue 10).
	case CmdPublishLayer:
		return f.applyPublishLayer(body)
	case CmdDeleteLayerVersion:
		return f.applyDeleteLayerVersion(body)
	}
	if t&CmdIgnorable != 0 {
		return ApplyResult{Ignored: true}
	}
	panic(fmt.Sprintf("scheduler: unknown command type %d at index %d: this release (FSM version %d) cannot apply the log; upgrade it", uint8(t), l.Index, FSMVersion))
}

// update runs fn with the state locked for writing and then reports the
// changes fn returns, outside mu and in order (see FSM).
func (f *FSM) update(fn func(s *fsmState) (ApplyResult, []functionChange)) ApplyResult {
	f.mu.Lock()
	res, changes := fn(f.state)
	if len(changes) == 0 || f.onFunctionChange == nil {
		f.mu.Unlock()
		return res
	}
	f.notifyMu.Lock()
	f.mu.Unlock()
	defer f.notifyMu.Unlock()
	for _, c := range changes {
		f.onFunctionChange(c.old, c.new)
	}
	return res
}

// replace swaps in a whole new state (Restore) and reports every function
// that differs between the two, in name order.
func (f *FSM) replace(next *fsmState) {
	f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		f.state = next
		return ApplyResult{}, diffFunctions(s.functions, next.functions)
	})
}
