package scheduler

import (
	"fmt"

	"nimbus/rpc"
)

// The built-in queues (SQS semantics): queue configurations and their
// messages, in Raft. A message is committed before `send` answers; every
// receive, delete and visibility change is an op in a QueueOps entry, and
// many share one entry (the leader's group commit), so none costs an fsync
// of its own.
//
// Lifecycle of a message, as the state holds it (times in Unix ms, from
// the proposer's clock carried in the commands):
//
//	Send --> delayed (VisibleMs > now, Receives 0) --time--> visible
//	                                                          |  ^
//	                                   Receive (new Receipt,  |  | VisibleMs passes, or
//	                                   Receives+1, VisibleMs  v  | ChangeVisibility to 0
//	                                   = now + visibility)  in flight
//	                                                          |
//	  Delete (its current Receipt) / Purge / retention ends / | Receive with Receives >=
//	  DeleteQueue --> gone                                    | maxReceiveCount --> moved
//	                                                            to the dead-letter queue
//
// Receive selects the messages in Apply, from the state and the op's NowMs:
// two concurrent receives can never get the same message, and the result
// depends only on the log. A FIFO queue delivers each message group in
// sequence order and never a group whose head is in flight, so one batch
// per group is in flight at a time.
//
// A deleted or expired message leaves the state; snapshots hold only live
// messages, and FIFO deduplication ids for their 5 minutes.

// Limits of the queue state: beyond them a send is refused with OverLimit
// (SQS has no such limit; a node's memory does).
const (
	MaxQueueMessages = 2_000_000
	MaxQueueBytes    = 1 << 30
	MaxQueues        = 10_000
	// maxSweep bounds the messages one Sweep op removes; the leader
	// proposes another while more are due.
	maxSweep = 10_000
	// maxReceiptLen bounds a receipt nonce.
	receiptNonceLen = 16
)

// QueueMessage is one message in a queue. Stored values are immutable.
type QueueMessage struct {
	ID     string            `msgpack:"id"`
	Queue  string            `msgpack:"q"`
	Body   []byte            `msgpack:"b"`
	Attrs  map[string]string `msgpack:"a,omitempty"`
	SentMs int64             `msgpack:"sent"`
	Sender string            `msgpack:"from,omitempty"`
	// GroupID and DedupID: FIFO queues only.
	GroupID string `msgpack:"g,omitempty"`
	DedupID string `msgpack:"dd,omitempty"`
	// VisibleMs: a receive may return the message from then on.
	VisibleMs int64 `msgpack:"vis"`
	// ExpiresMs: the end of its retention (Apply sets it from the queue).
	ExpiresMs int64 `msgpack:"exp"`
	// Receives counts receives (ApproximateReceiveCount).
	Receives       int   `msgpack:"n,omitempty"`
	FirstReceiveMs int64 `msgpack:"first,omitempty"`
	// Receipt is the random nonce of the last receive: a receipt handle
	// is valid only with it. Empty before the first receive.
	Receipt []byte `msgpack:"r,omitempty"`
	// Seq orders a queue's messages (Apply sets it: the entry's index and
	// the message's place in it).
	Seq uint64 `msgpack:"seq"`
}

// size is what a message counts against MaxQueueBytes and its queue's
// MaxMessageSize: its body and attributes.
func (m *QueueMessage) size() int {
	n := len(m.Body)
	for k, v := range m.Attrs {
		n += len(k) + len(v)
	}
	return n
}

// PutQueueCommand creates a queue (CmdPutQueue). A queue of that name with
// the same settings is left as it is (SQS's CreateQueue is idempotent);
// with other settings it fails with QueueNameExists. The proposer
// validates it (ValidateQueue).
type PutQueueCommand struct {
	Queue *rpc.Queue `msgpack:"queue"`
}

// DeleteQueueCommand deletes a queue and its messages (CmdDeleteQueue).
type DeleteQueueCommand struct {
	Name string `msgpack:"name"`
}

// QueueSendCommand adds messages (CmdQueueSend); many sends share an
// entry, each succeeding or failing on its own. Outputs holds a
// QueueSendOutput per item that succeeded.
type QueueSendCommand struct {
	Messages boundedList[QueueMessage] `msgpack:"messages"`
}

// QueueSendOutput is a send's result: the id the message has (on a FIFO
// queue a deduplicated send answers with the first message's id) and its
// sequence number.
type QueueSendOutput struct {
	MessageID string
	Seq       uint64
}

// QueueOpKind says what a QueueOp does. Values are durable, append-only.
type QueueOpKind uint8

const (
	// QueueReceive delivers up to Max visible messages (at most MaxBytes
	// of bodies), makes them invisible until VisibleUntilMs and gives them
	// Receipt; Outputs holds the delivered []*QueueMessage.
	QueueReceive QueueOpKind = 1
	// QueueDelete removes MessageID if its receipt is Receipt.
	QueueDelete QueueOpKind = 2
	// QueueChangeVisibility makes MessageID (receipt Receipt, in flight)
	// visible at VisibleUntilMs.
	QueueChangeVisibility QueueOpKind = 3
	// QueuePurge removes every message of Queue.
	QueuePurge QueueOpKind = 4
	// QueueSweep removes, in every queue, up to maxSweep messages whose
	// retention ended and deduplication ids whose window ended, by NowMs.
	QueueSweep QueueOpKind = 5
)

// QueueOp is one operation on the queue state.
type QueueOp struct {
	Kind           QueueOpKind `msgpack:"k"`
	Queue          string      `msgpack:"q,omitempty"`
	NowMs          int64       `msgpack:"now"`
	Max            int         `msgpack:"max,omitempty"`
	MaxBytes       int         `msgpack:"bytes,omitempty"`
	VisibleUntilMs int64       `msgpack:"until,omitempty"`
	MessageID      string      `msgpack:"id,omitempty"`
	Receipt        []byte      `msgpack:"r,omitempty"`
}

// QueueOpsCommand applies ops (CmdQueueOps), each on its own
// (ApplyResult.Items, and Outputs for receives).
type QueueOpsCommand struct {
	Ops boundedList[QueueOp] `msgpack:"ops"`
}

func (PutQueueCommand) CommandType() CommandType    { return CmdPutQueue }
func (DeleteQueueCommand) CommandType() CommandType { return CmdDeleteQueue }
func (QueueSendCommand) CommandType() CommandType   { return CmdQueueSend }
func (QueueOpsCommand) CommandType() CommandType    { return CmdQueueOps }

// checkQueue is what Apply and Restore require of a queue's settings.
func checkQueue(q *rpc.Queue) error {
	switch {
	case q == nil:
		return fmt.Errorf("no queue")
	case ValidateQueueName(q.Name, q.FIFO) != nil:
		return fmt.Errorf("queue name %q", q.Name)
	case q.VisibilitySec < 0 || q.VisibilitySec > rpc.MaxQueueVisibilitySec,
		q.RetentionSec < rpc.MinQueueRetentionSec || q.RetentionSec > rpc.MaxQueueRetentionSec,
		q.DelaySec < 0 || q.DelaySec > rpc.MaxQueueDelaySec,
		q.MaxMessageSize < rpc.MinQueueMessageSize || q.MaxMessageSize > rpc.MaxQueueMessageSize:
		return fmt.Errorf("queue %s with settings out of range", q.Name)
	case q.DeadLetterQueue != "" && (q.MaxReceiveCount < rpc.MinMaxReceiveCount || q.MaxReceiveCount > rpc.MaxMaxReceiveCount):
		return fmt.Errorf("queue %s with maxReceiveCount %d", q.Name, q.MaxReceiveCount)
	}
	return nil
}

// checkMessage is what Apply and Restore require of a message.
func checkMessage(m *QueueMessage) error {
	switch {
	case m.ID == "" || len(m.ID) > 128:
		return fmt.Errorf("message id of %d bytes", len(m.ID))
	case m.Queue == "":
		return fmt.Errorf("message %s without a queue", m.ID)
	case len(m.Body) > rpc.MaxQueueMessageSize || m.size() > rpc.MaxQueueMessageSize+64*1024:
		return fmt.Errorf("message %s of %d bytes", m.ID, m.size())
	case len(m.Attrs) > rpc.MaxMessageAttributes:
		return fmt.Errorf("message %s with %d attributes", m.ID, len(m.Attrs))
	case len(m.Receipt) != 0 && len(m.Receipt) != receiptNonceLen:
		return fmt.Errorf("message %s with a receipt of %d bytes", m.ID, len(m.Receipt))
	case m.Receives < 0 || len(m.GroupID) > 128 || len(m.DedupID) > 128 || len(m.Sender) > 128:
		return fmt.Errorf("message %s with fields out of range", m.ID)
	}
	return nil
}

func errQueueNotFound(name string) error {
	return rpc.Errorf(rpc.CodeQueueDoesNotExist, "The specified queue %s does not exist.", name)
}

func errReceiptInvalid() error {
	return rpc.Errorf(rpc.CodeReceiptHandleIsInvalid, "The input receipt handle is invalid: it is not the handle of the message's last receive.")
}
