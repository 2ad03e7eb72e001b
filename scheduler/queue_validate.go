package scheduler

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"

	"nimbus/rpc"
)

// ValidateQueueName checks a queue name with SQS's rules: 1 to 80
// characters of letters, digits, hyphens and underscores, a FIFO queue's
// ending in ".fifo" (counted in the 80).
func ValidateQueueName(name string, fifo bool) error {
	base := name
	if fifo {
		var ok bool
		if base, ok = strings.CutSuffix(name, ".fifo"); !ok {
			return rpc.Errorf(rpc.CodeSQSInvalidParameter, "The name of a FIFO queue must end with the .fifo suffix: %q", name)
		}
	}
	if len(name) == 0 || len(name) > 80 || base == "" {
		return rpc.Errorf(rpc.CodeSQSInvalidParameter, "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}
	for i := 0; i < len(base); i++ {
		c := base[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return rpc.Errorf(rpc.CodeSQSInvalidParameter, "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
		}
	}
	return nil
}

// IsFIFOName reports whether a queue name names a FIFO queue.
func IsFIFOName(name string) bool { return strings.HasSuffix(name, ".fifo") }

// ParseQueueRef reads a queue given by name or by its SQS ARN
// (arn:aws:sqs:REGION:ACCOUNT:NAME) and returns the name.
func ParseQueueRef(s string) (string, error) {
	if strings.HasPrefix(s, "arn:") {
		parts := strings.Split(s, ":")
		if len(parts) != 6 || parts[2] != "sqs" || parts[5] == "" {
			return "", rpc.Errorf(rpc.CodeSQSInvalidParameter, "%q is not an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)", s)
		}
		s = parts[5]
	}
	if err := ValidateQueueName(s, IsFIFOName(s)); err != nil {
		return "", err
	}
	return s, nil
}

// ValidateQueue checks a CreateQueue request and returns the queue to
// store (CreatedMs left for the proposer). lookup reads an existing queue
// (the dead-letter queue must exist and be of the same kind).
func ValidateQueue(arns rpc.ARNScope, req *rpc.CreateQueueRequest, lookup func(name string) (*rpc.Queue, bool)) (*rpc.Queue, error) {
	if req == nil || req.Name == "" {
		return nil, rpc.Errorf(rpc.CodeSQSMissingParameter, "The request must contain the parameter QueueName.")
	}
	fifo := req.FIFO || IsFIFOName(req.Name)
	if err := ValidateQueueName(req.Name, fifo); err != nil {
		return nil, err
	}
	if req.ContentDedup && !fifo {
		return nil, rpc.Errorf(rpc.CodeInvalidAttributeName, "Unknown Attribute ContentBasedDeduplication: it applies to FIFO queues only.")
	}
	q := &rpc.Queue{
		Name: req.Name, FIFO: fifo, ContentDedup: req.ContentDedup,
		VisibilitySec: rpc.DefaultQueueVisibilitySec, RetentionSec: rpc.DefaultQueueRetentionSec,
		MaxMessageSize: rpc.DefaultQueueMessageSize,
	}
	attr := func(name string, v *int, lo, hi int, dst *int) error {
		if v == nil {
			return nil
		}
		if *v < lo || *v > hi {
			return rpc.Errorf(rpc.CodeSQSInvalidParameter, "Invalid value for the parameter %s: %d (it must be from %d to %d).", name, *v, lo, hi)
		}
		*dst = *v
		return nil
	}
	for _, a := range []error{
		attr("VisibilityTimeout", req.VisibilitySec, 0, rpc.MaxQueueVisibilitySec, &q.VisibilitySec),
		attr("MessageRetentionPeriod", req.RetentionSec, rpc.MinQueueRetentionSec, rpc.MaxQueueRetentionSec, &q.RetentionSec),
		attr("DelaySeconds", req.DelaySec, 0, rpc.MaxQueueDelaySec, &q.DelaySec),
		attr("MaximumMessageSize", req.MaxMessageSize, rpc.MinQueueMessageSize, rpc.MaxQueueMessageSize, &q.MaxMessageSize),
	} {
		if a != nil {
			return nil, a
		}
	}
	switch {
	case req.DeadLetterQueue == "" && req.MaxReceiveCount != 0:
		return nil, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value for parameter RedrivePolicy is invalid. Reason: maxReceiveCount needs a deadLetterTargetArn.")
	case req.DeadLetterQueue != "":
		dlq, err := ParseQueueRef(req.DeadLetterQueue)
		if err != nil {
			return nil, err
		}
		if req.MaxReceiveCount < rpc.MinMaxReceiveCount || req.MaxReceiveCount > rpc.MaxMaxReceiveCount {
			return nil, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: %d, valid values are from %d to %d both inclusive.", req.MaxReceiveCount, rpc.MinMaxReceiveCount, rpc.MaxMaxReceiveCount)
		}
		d, ok := lookup(dlq)
		if !ok {
			return nil, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist: %s.", arns.Queue(dlq))
		}
		if d.FIFO != fifo || dlq == req.Name {
			return nil, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value for parameter RedrivePolicy is invalid. Reason: Dead-letter target owner queue type must match the source queue type, and differ from it.")
		}
		q.DeadLetterQueue, q.MaxReceiveCount = dlq, req.MaxReceiveCount
	}
	return q, nil
}

// ValidateSend checks a send against its queue and returns the message to
// propose (ID, SentMs and Sender left for the proposer, which also sets
// VisibleMs from the delay it returns in DelaySec's place).
func ValidateSend(q *rpc.Queue, req *rpc.SendMessageRequest) (*QueueMessage, int, error) {
	if req.Body == "" {
		return nil, 0, rpc.Errorf(rpc.CodeSQSMissingParameter, "The request must contain the parameter MessageBody.")
	}
	if !validBody(req.Body) {
		return nil, 0, rpc.Errorf("InvalidMessageContents", "Invalid binary character in the message body: only #x9, #xA, #xD, #x20 to #xD7FF, #xE000 to #xFFFD and #x10000 to #x10FFFF are allowed.")
	}
	if err := validateMessageAttributes(req.Attributes); err != nil {
		return nil, 0, err
	}
	m := &QueueMessage{Queue: q.Name, Body: []byte(req.Body)}
	if len(req.Attributes) > 0 {
		m.Attrs = make(map[string]string, len(req.Attributes))
		for k, v := range req.Attributes {
			m.Attrs[k] = v
		}
	}
	if m.size() > q.MaxMessageSize {
		return nil, 0, rpc.Errorf(rpc.CodeSQSInvalidParameter, "One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", q.MaxMessageSize)
	}
	delay := q.DelaySec
	if req.DelaySec != nil {
		if *req.DelaySec < 0 || *req.DelaySec > rpc.MaxQueueDelaySec {
			return nil, 0, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value %d for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= %d.", *req.DelaySec, rpc.MaxQueueDelaySec)
		}
		if q.FIFO {
			return nil, 0, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value %d for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.", *req.DelaySec)
		}
		delay = *req.DelaySec
	}
	if !q.FIFO {
		if req.GroupID != "" || req.DedupID != "" {
			return nil, 0, rpc.Errorf(rpc.CodeSQSInvalidParameter, "The request include parameter that is not valid for this queue type: MessageGroupId and MessageDeduplicationId apply to FIFO queues.")
		}
		return m, delay, nil
	}
	if req.GroupID == "" {
		return nil, 0, rpc.Errorf(rpc.CodeSQSMissingParameter, "The request must contain the parameter MessageGroupId.")
	}
	if !validFIFOID(req.GroupID) {
		return nil, 0, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value %q for parameter MessageGroupId is invalid: 1 to 128 alphanumeric or punctuation characters.", req.GroupID)
	}
	m.GroupID, m.DedupID = req.GroupID, req.DedupID
	switch {
	case m.DedupID != "" && !validFIFOID(m.DedupID):
		return nil, 0, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value %q for parameter MessageDeduplicationId is invalid: 1 to 128 alphanumeric or punctuation characters.", m.DedupID)
	case m.DedupID == "" && q.ContentDedup:
		sum := sha256.Sum256(m.Body)
		m.DedupID = hex.EncodeToString(sum[:])
	case m.DedupID == "":
		return nil, 0, rpc.Errorf(rpc.CodeSQSInvalidParameter, "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly")
	}
	return m, delay, nil
}

// MD5Hex is the hex MD5 of a body (SQS's MD5OfMessageBody).
func MD5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// validBody reports whether s is UTF-8 of the characters SQS allows.
func validBody(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if !(r == 0x9 || r == 0xA || r == 0xD || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF) {
			return false
		}
		i += n
	}
	return true
}

func validFIFOID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func validateMessageAttributes(attrs map[string]string) error {
	if len(attrs) > rpc.MaxMessageAttributes {
		return rpc.Errorf(rpc.CodeSQSInvalidParameter, "Number of message attributes [%d] exceeds the allowed maximum [%d].", len(attrs), rpc.MaxMessageAttributes)
	}
	for k, v := range attrs {
		low := strings.ToLower(k)
		bad := len(k) == 0 || len(k) > 256 || strings.HasPrefix(low, "aws.") || strings.HasPrefix(low, "amazon.") ||
			strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..")
		for i := 0; i < len(k) && !bad; i++ {
			c := k[i]
			bad = !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')
		}
		if bad {
			return rpc.Errorf(rpc.CodeSQSInvalidParameter, "Message attribute name %q is invalid: 1 to 256 of letters, digits, -, _ and ., not starting with AWS. or Amazon.", k)
		}
		if v == "" || !validBody(v) {
			return rpc.Errorf(rpc.CodeSQSInvalidParameter, "Message attribute %q must have a non-empty value of valid characters.", k)
		}
	}
	return nil
}
