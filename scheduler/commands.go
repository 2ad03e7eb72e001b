package scheduler

import (
	"bytes"
	"fmt"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// CommandType is the first byte of every Raft log entry this FSM applies; the
// rest of the entry is the msgpack encoding of the command's struct.
//
// The values are written to durable logs and snapshots: they are append-only.
// Never renumber or reuse one; a retired command keeps its number.
//
// Adding a command is one place here (its constant, its line in
// commandSpecs, its struct with a CommandType method) plus its case in
// FSM.Apply. A value with CmdIgnorable set may be skipped by a release
// that does not know it (Consul's rule): use it only for a command whose
// loss leaves every replica's state the same, e.g. a hint. Any other
// unknown value stops the apply loop (Apply panics), because skipping it
// would let replicas diverge.
type CommandType uint8

const (
	CmdPutFunction       CommandType = 1 // PutFunctionCommand
	CmdDeleteFunction    CommandType = 2 // DeleteFunctionCommand
	CmdPutConcurrency    CommandType = 3 // PutConcurrencyCommand
	CmdDeleteConcurrency CommandType = 4 // DeleteConcurrencyCommand
	CmdAsyncAccept       CommandType = 5 // AsyncAcceptCommand
	CmdAsyncUpdate       CommandType = 6 // AsyncUpdateCommand
	CmdPutEventConfig    CommandType = 7 // PutEventConfigCommand
	CmdDeleteEventConfig CommandType = 8 // DeleteEventConfigCommand

	// Versions, aliases and function URLs (versions.go, aliases.go,
	// urls.go): 9-19 are theirs.
	CmdPublishVersion CommandType = 9  // PublishVersionCommand
	CmdDeleteVersion  CommandType = 10 // DeleteVersionCommand
	CmdPutAlias       CommandType = 11 // PutAliasCommand
	CmdDeleteAlias    CommandType = 12 // DeleteAliasCommand
	CmdPutURL         CommandType = 13 // PutURLCommand
	CmdDeleteURL      CommandType = 14 // DeleteURLCommand
	// A version's or alias's event configuration (eventconfig.go): the
	// bodies of CmdPutEventConfig and CmdDeleteEventConfig with a
	// qualifier, FSM version 4, so that no server that would drop the
	// qualifier (and overwrite the function's own configuration) applies
	// one.
	CmdPutQualifiedEventConfig    CommandType = 15 // PutEventConfigCommand
	CmdDeleteQualifiedEventConfig CommandType = 16 // DeleteEventConfigCommand
	// Queues and queue triggers (queue.go, trigger.go): 20-39, FSM version 3.
	CmdPutQueue      CommandType = 20 // PutQueueCommand
	CmdDeleteQueue   CommandType = 21 // DeleteQueueCommand
	CmdQueueSend     CommandType = 22 // QueueSendCommand
	CmdQueueOps      CommandType = 23 // QueueOpsCommand
	CmdPutTrigger    CommandType = 24 // PutTriggerCommand
	CmdDeleteTrigger CommandType = 25 // DeleteTriggerCommand

	// CmdIgnorable is a flag bit, not a command: an entry whose type has it
	// and that this release does not know is skipped instead of stopping
	// the apply loop.
	CmdIgnorable CommandType = 128
)

// commandSpec is what the FSM knows of a command type: its name and the
// FSM version that introduced it.
type commandSpec struct {
	name  string
	since int
}

// commandSpecs lists every command this release applies.
var commandSpecs = map[CommandType]commandSpec{
	CmdPutFunction:       {"PutFunction", 1},
	CmdDeleteFunction:    {"DeleteFunction", 1},
	CmdPutConcurrency:    {"PutConcurrency", 1},
	CmdDeleteConcurrency: {"DeleteConcurrency", 1},
	CmdAsyncAccept:       {"AsyncAccept", 2},
	CmdAsyncUpdate:       {"AsyncUpdate", 2},
	CmdPutEventConfig:    {"PutEventConfig", 2},
	CmdDeleteEventConfig: {"DeleteEventConfig", 2},

	// Versions, aliases and function URLs.
	CmdPublishVersion: {"PublishVersion", 3},
	CmdDeleteVersion:  {"DeleteVersion", 3},
	CmdPutAlias:       {"PutAlias", 3},
	CmdDeleteAlias:    {"DeleteAlias", 3},
	CmdPutURL:         {"PutURL", 3},
	CmdDeleteURL:      {"DeleteURL", 3},
	// Event configuration of versions and aliases.
	CmdPutQualifiedEventConfig:    {"PutQualifiedEventConfig", 4},
	CmdDeleteQualifiedEventConfig: {"DeleteQualifiedEventConfig", 4},
	// Queues and queue triggers.
	CmdPutQueue:      {"PutQueue", 3},
	CmdDeleteQueue:   {"DeleteQueue", 3},
	CmdQueueSend:     {"QueueSend", 3},
	CmdQueueOps:      {"QueueOps", 3},
	CmdPutTrigger:    {"PutTrigger", 3},
	CmdDeleteTrigger: {"DeleteTrigger", 3},
	// Layers (issue 10; layers.go).
	CmdPublishLayer:       {"PublishLayer", 3},
	CmdDeleteLayerVersion: {"DeleteLayerVersion", 3},
}

// FSMVersion is the newest command set this release applies: the highest
// "since" of commandSpecs. A node advertises it in gossip, and a leader
// proposes a command only once every server advertises at least the
// command's version (CommandVersion), so that no replica meets an entry it
// cannot apply.
const FSMVersion = 4

// CommandVersion returns the FSM version that introduced t (0 when this
// release does not know t).
func CommandVersion(t CommandType) int {
	return commandSpecs[t].since
}

// Command is a command struct: it knows its own type byte.
type Command interface {
	CommandType() CommandType
}

func (PutFunctionCommand) CommandType() CommandType       { return CmdPutFunction }
func (DeleteFunctionCommand) CommandType() CommandType    { return CmdDeleteFunction }
func (PutConcurrencyCommand) CommandType() CommandType    { return CmdPutConcurrency }
func (DeleteConcurrencyCommand) CommandType() CommandType { return CmdDeleteConcurrency }

func (t CommandType) String() string {
	if s, ok := commandSpecs[t]; ok {
		return s.name
	}
	return fmt.Sprintf("CommandType(%d)", uint8(t))
}

// PutMode says whether a PutFunctionCommand creates or updates a function.
// Like CommandType, its values are durable and append-only.
type PutMode uint8

const (
	// PutCreate fails with ResourceConflictException if the name exists.
	PutCreate PutMode = 1
	// PutUpdate fails with ResourceNotFoundException if the name does not
	// exist.
	PutUpdate PutMode = 2
)

func (m PutMode) String() string {
	switch m {
	case PutCreate:
		return "create"
	case PutUpdate:
		return "update"
	}
	return fmt.Sprintf("PutMode(%d)", uint8(m))
}

// PutFunctionCommand stores a function's whole configuration (CmdPutFunction).
//
// The proposer builds Function with NormalizeCreate or ApplyConfigUpdate,
// fills the code fields and sets LastModifiedMs from its clock. Apply stores a
// copy whose Revision is the log index of the entry; the Revision in the
// command is ignored.
type PutFunctionCommand struct {
	Function *rpc.FunctionConfig `msgpack:"function"`
	// Mode: PutCreate fails with ResourceConflictException if the name
	// exists; PutUpdate fails with ResourceNotFoundException if it does not.
	Mode PutMode `msgpack:"mode"`
	// IfRevision, if not 0, makes a PutUpdate fail with
	// ResourceConflictException unless the stored function's Revision equals
	// it. A proposer that read the function, changed a copy and proposes it
	// sets IfRevision to the Revision it read, so that two concurrent updates
	// cannot silently undo each other (Lambda's RevisionId precondition).
	IfRevision uint64 `msgpack:"if_revision,omitempty"`
}

// DeleteFunctionCommand removes a function (CmdDeleteFunction). It fails with
// ResourceNotFoundException if the name does not exist.
type DeleteFunctionCommand struct {
	Name string `msgpack:"name"`
}

// PutConcurrencyCommand sets a function's reserved concurrency
// (CmdPutConcurrency), replacing any reservation it had. It fails with
// ResourceNotFoundException if the function does not exist. Reserved 0 is a
// valid reservation: the function is throttled on every invocation.
//
// The proposer checks the request with ValidateReservation against the
// total it read (ReservedTotal minus the function's current reservation).
type PutConcurrencyCommand struct {
	Name     string `msgpack:"name"`
	Reserved int    `msgpack:"reserved"`
	// MaxTotal, if not 0, makes an increase fail with
	// ResourceConflictException when the sum of every function's
	// reservation would then exceed it. The proposer sets it to
	// MaxReservedTotal(accountLimit): two reservations validated at the same
	// time against the same total cannot then together take the unreserved
	// pool below its minimum; the loser re-reads and re-validates. A
	// decrease is never refused.
	MaxTotal int `msgpack:"max_total,omitempty"`
}

// DeleteConcurrencyCommand removes a function's reserved concurrency
// (CmdDeleteConcurrency), so that it draws from the unreserved pool again.
// It fails with ResourceNotFoundException if the function does not exist,
// and succeeds without a change if it has no reservation (as Lambda's
// DeleteFunctionConcurrency).
type DeleteConcurrencyCommand struct {
	Name string `msgpack:"name"`
}

// EncodeCommand returns the log entry for cmd: its type byte followed by
// its msgpack encoding. A nil pointer or a type this release does not apply
// is an error, so a proposer cannot put an entry in the log that every
// replica would then refuse.
func EncodeCommand(cmd Command) ([]byte, error) {
	return EncodeCommandSized(cmd, 0)
}

// EncodeCommandSized is EncodeCommand with room for about sizeHint bytes
// made at once. A group-committed entry of many events is large: its
// encoding was 7.5% of a leader's CPU under load, and growing its buffer by
// doubling (each new buffer cleared, the bytes copied) about a third of
// that.
func EncodeCommandSized(cmd Command, sizeHint int) ([]byte, error) {
	if cmd == nil || reflect.ValueOf(cmd).Kind() == reflect.Pointer && reflect.ValueOf(cmd).IsNil() {
		return nil, fmt.Errorf("scheduler: encode command: nil command %T", cmd)
	}
	t := cmd.CommandType()
	if _, ok := commandSpecs[t]; !ok {
		return nil, fmt.Errorf("scheduler: encode command: unknown command type %d", uint8(t))
	}
	var buf bytes.Buffer
	buf.Grow(1 + max(sizeHint, 0))
	buf.WriteByte(byte(t))
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true) // the same command always encodes to the same bytes
	if err := enc.Encode(cmd); err != nil {
		return nil, fmt.Errorf("scheduler: encode %s: %w", t, err)
	}
	return buf.Bytes(), nil
}

// splitEntry separates a log entry into its type and msgpack body.
func splitEntry(data []byte) (CommandType, []byte, error) {
	if len(data) == 0 {
		return 0, nil, rpc.Errorf(rpc.CodeService, "empty log entry")
	}
	return CommandType(data[0]), data[1:], nil
}

// decodeCommand decodes body into cmd, refusing trailing bytes: an entry is
// exactly one type byte and one msgpack value.
func decodeCommand(t CommandType, body []byte, cmd any) error {
	r := bytes.NewReader(body)
	if err := msgpack.NewDecoder(r).Decode(cmd); err != nil {
		return rpc.Errorf(rpc.CodeService, "malformed %s entry: %v", t, err)
	}
	if r.Len() != 0 {
		return rpc.Errorf(rpc.CodeService, "malformed %s entry: %d trailing bytes", t, r.Len())
	}
	return nil
}
