package scheduler

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// CommandType is the first byte of every Raft log entry this FSM applies; the
// rest of the entry is the msgpack encoding of the command's struct.
//
// The values are written to durable logs and snapshots: they are append-only.
// Never renumber or reuse one; a retired command keeps its number.
type CommandType uint8

const (
	CmdPutFunction       CommandType = 1 // PutFunctionCommand
	CmdDeleteFunction    CommandType = 2 // DeleteFunctionCommand
	CmdPutConcurrency    CommandType = 3 // PutConcurrencyCommand
	CmdDeleteConcurrency CommandType = 4 // DeleteConcurrencyCommand
)

func (t CommandType) String() string {
	switch t {
	case CmdPutFunction:
		return "PutFunction"
	case CmdDeleteFunction:
		return "DeleteFunction"
	case CmdPutConcurrency:
		return "PutConcurrency"
	case CmdDeleteConcurrency:
		return "DeleteConcurrency"
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

// EncodeCommand returns the log entry for cmd: one type byte followed by the
// msgpack encoding of cmd. cmd must be the command type's struct (or a
// pointer to it); a mismatch is an error, so a proposer cannot put an entry
// in the log that every replica would then refuse.
func EncodeCommand(t CommandType, cmd any) ([]byte, error) {
	ok := false
	switch t {
	case CmdPutFunction:
		ok = isCommand[PutFunctionCommand](cmd)
	case CmdDeleteFunction:
		ok = isCommand[DeleteFunctionCommand](cmd)
	case CmdPutConcurrency:
		ok = isCommand[PutConcurrencyCommand](cmd)
	case CmdDeleteConcurrency:
		ok = isCommand[DeleteConcurrencyCommand](cmd)
	default:
		return nil, fmt.Errorf("scheduler: encode command: unknown command type %d", uint8(t))
	}
	if !ok {
		return nil, fmt.Errorf("scheduler: encode command: %s takes a %s, got %T", t, commandStructName(t), cmd)
	}
	var buf bytes.Buffer
	buf.WriteByte(byte(t))
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true) // the same command always encodes to the same bytes
	if err := enc.Encode(cmd); err != nil {
		return nil, fmt.Errorf("scheduler: encode %s: %w", t, err)
	}
	return buf.Bytes(), nil
}

// isCommand reports whether cmd is a C or a non-nil *C.
func isCommand[C any](cmd any) bool {
	switch c := cmd.(type) {
	case C:
		return true
	case *C:
		return c != nil
	}
	return false
}

func commandStructName(t CommandType) string {
	return t.String() + "Command"
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
