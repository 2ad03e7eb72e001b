package rpc

// Method names of the built-in queues (SQS semantics).
const (
	MethodQueueCreate           = "Queue.Create"
	MethodQueueDelete           = "Queue.Delete"
	MethodQueueGet              = "Queue.Get"
	MethodQueueList             = "Queue.List"
	MethodQueueSend             = "Queue.Send"
	MethodQueueReceive          = "Queue.Receive"
	MethodQueueDeleteMessage    = "Queue.DeleteMessage"
	MethodQueueChangeVisibility = "Queue.ChangeVisibility"
	MethodQueuePurge            = "Queue.Purge"
)

// Limits and defaults of queues, as SQS's.
const (
	DefaultQueueVisibilitySec = 30
	MaxQueueVisibilitySec     = 12 * 3600
	DefaultQueueRetentionSec  = 345600 // 4 days
	MinQueueRetentionSec      = 60
	MaxQueueRetentionSec      = 14 * 24 * 3600
	MaxQueueDelaySec          = 900
	DefaultQueueMessageSize   = 1 << 20 // 1 MiB, SQS's current maximum
	MinQueueMessageSize       = 1024
	MaxQueueMessageSize       = 1 << 20
	MaxQueueReceive           = 10 // messages per receive
	MaxQueueWaitSec           = 20 // long polling
	MinMaxReceiveCount        = 1
	MaxMaxReceiveCount        = 1000
	MaxMessageAttributes      = 10
	// FIFODedupWindowMs is how long a FIFO queue remembers a deduplication
	// id: 5 minutes.
	FIFODedupWindowMs = 5 * 60 * 1000
)

// Queue is a queue's configuration as the scheduler stores it and as
// clients read it. A stored Queue is immutable.
type Queue struct {
	Name            string `msgpack:"name"`
	FIFO            bool   `msgpack:"fifo,omitempty"`
	ContentDedup    bool   `msgpack:"content_dedup,omitempty"`
	VisibilitySec   int    `msgpack:"visibility"`
	RetentionSec    int    `msgpack:"retention"`
	DelaySec        int    `msgpack:"delay,omitempty"`
	MaxMessageSize  int    `msgpack:"max_size"`
	DeadLetterQueue string `msgpack:"dlq,omitempty"` // a queue name; "" for none
	MaxReceiveCount int    `msgpack:"max_receive,omitempty"`
	CreatedMs       int64  `msgpack:"created_ms"`
}

// SameSettings reports whether q and o have the same attributes (their
// creation times aside): SQS's CreateQueue of an existing name succeeds
// only then.
func (q *Queue) SameSettings(o *Queue) bool {
	a, b := *q, *o
	a.CreatedMs, b.CreatedMs = 0, 0
	return a == b
}

// CreateQueueRequest creates a queue (SQS's CreateQueue). Nil limits take
// SQS's defaults.
type CreateQueueRequest struct {
	Name            string `msgpack:"name"`
	VisibilitySec   *int   `msgpack:"visibility,omitempty"`
	RetentionSec    *int   `msgpack:"retention,omitempty"`
	DelaySec        *int   `msgpack:"delay,omitempty"`
	MaxMessageSize  *int   `msgpack:"max_size,omitempty"`
	DeadLetterQueue string `msgpack:"dlq,omitempty"`
	MaxReceiveCount int    `msgpack:"max_receive,omitempty"`
	FIFO            bool   `msgpack:"fifo,omitempty"`
	ContentDedup    bool   `msgpack:"content_dedup,omitempty"`
}

// QueueRequest names one queue (Get, Delete, Purge).
type QueueRequest struct {
	Name string `msgpack:"name"`
}

// QueueResponse is a queue with its approximate counts at the time of the
// read.
type QueueResponse struct {
	Queue *Queue `msgpack:"queue"`
	// Visible: messages a receive may return now
	// (ApproximateNumberOfMessages).
	Visible int `msgpack:"visible"`
	// NotVisible: received and not yet deleted or visible again
	// (ApproximateNumberOfMessagesNotVisible).
	NotVisible int `msgpack:"not_visible"`
	// Delayed: sent with a delay that has not passed
	// (ApproximateNumberOfMessagesDelayed).
	Delayed int `msgpack:"delayed"`
}

// ListQueuesRequest lists every queue.
type ListQueuesRequest struct{}

// ListQueuesResponse holds the queues sorted by name.
type ListQueuesResponse struct {
	Queues []*Queue `msgpack:"queues"`
}

// DeleteQueueResponse answers Delete and Purge.
type DeleteQueueResponse struct{}

// SendMessageRequest sends one message (SQS's SendMessage).
type SendMessageRequest struct {
	Queue      string            `msgpack:"queue"`
	Body       string            `msgpack:"body"`
	DelaySec   *int              `msgpack:"delay,omitempty"` // nil: the queue's delay
	Attributes map[string]string `msgpack:"attrs,omitempty"` // message attributes, String values
	GroupID    string            `msgpack:"group,omitempty"` // FIFO: required
	DedupID    string            `msgpack:"dedup,omitempty"` // FIFO: required unless content-based
}

// SendMessageResponse is the message's id, the MD5 of its body and, on a
// FIFO queue, its sequence number.
type SendMessageResponse struct {
	MessageID      string `msgpack:"id" json:"MessageId"`
	MD5OfBody      string `msgpack:"md5" json:"MD5OfMessageBody"`
	SequenceNumber string `msgpack:"seq,omitempty" json:"SequenceNumber,omitempty"`
}

// ReceiveMessageRequest receives up to Max messages (SQS's ReceiveMessage).
type ReceiveMessageRequest struct {
	Queue string `msgpack:"queue"`
	Max   int    `msgpack:"max"` // 0 means 1
	// WaitSec is how long to wait for a message when none is visible (long
	// polling), 0..20.
	WaitSec int `msgpack:"wait,omitempty"`
	// VisibilitySec, if set, replaces the queue's visibility timeout for
	// these messages.
	VisibilitySec *int `msgpack:"visibility,omitempty"`
}

// ReceiveMessageResponse holds the messages received (possibly none).
type ReceiveMessageResponse struct {
	Messages []Message `msgpack:"messages"`
}

// Message is a received message, in the shape SQS's JSON gives it.
type Message struct {
	MessageID     string `msgpack:"id" json:"MessageId"`
	ReceiptHandle string `msgpack:"receipt" json:"ReceiptHandle"`
	Body          string `msgpack:"body" json:"Body"`
	MD5OfBody     string `msgpack:"md5" json:"MD5OfBody"`
	// Attributes are the system attributes: ApproximateReceiveCount,
	// SentTimestamp, SenderId, ApproximateFirstReceiveTimestamp and, on a
	// FIFO queue, MessageGroupId, MessageDeduplicationId, SequenceNumber.
	Attributes        map[string]string           `msgpack:"attrs" json:"Attributes"`
	MessageAttributes map[string]MessageAttribute `msgpack:"mattrs,omitempty" json:"MessageAttributes,omitempty"`
}

// MessageAttribute is a message attribute's value (String values only).
type MessageAttribute struct {
	StringValue string `msgpack:"s" json:"StringValue"`
	DataType    string `msgpack:"t" json:"DataType"`
}

// DeleteMessageRequest deletes a received message by its receipt handle.
type DeleteMessageRequest struct {
	Queue         string `msgpack:"queue"`
	ReceiptHandle string `msgpack:"receipt"`
}

// DeleteMessageResponse answers DeleteMessage and ChangeVisibility.
type DeleteMessageResponse struct{}

// ChangeVisibilityRequest makes a received message visible again after
// VisibilitySec (SQS's ChangeMessageVisibility).
type ChangeVisibilityRequest struct {
	Queue         string `msgpack:"queue"`
	ReceiptHandle string `msgpack:"receipt"`
	VisibilitySec int    `msgpack:"visibility"`
}
