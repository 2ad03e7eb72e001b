package node

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// The built-in queues' rpc methods. Each runs on the leader (a node that
// does not lead forwards, through forward); the leader validates, then
// proposes: sends and queue ops through the queue subsystem's group
// commits (queue_leader.go), queue creation and deletion as entries of
// their own.

func (n *Node) registerQueues() {
	rpc.Handle(n.server, rpc.MethodQueueCreate, n.createQueue)
	rpc.Handle(n.server, rpc.MethodQueueDelete, n.deleteQueue)
	rpc.Handle(n.server, rpc.MethodQueueGet, n.getQueue)
	rpc.Handle(n.server, rpc.MethodQueueList, n.listQueues)
	rpc.Handle(n.server, rpc.MethodQueuePurge, n.purgeQueue)
	rpc.Handle(n.server, rpc.MethodQueueSend, n.sendMessage)
	rpc.Handle(n.server, rpc.MethodQueueReceive, n.receiveMessages)
	rpc.Handle(n.server, rpc.MethodQueueDeleteMessage, n.deleteMessage)
	rpc.Handle(n.server, rpc.MethodQueueChangeVisibility, n.changeVisibility)
}

// queueSubsystem returns the leader's queue subsystem, or ServiceException
// when leadership is gone.
func (n *Node) queueSubsystem() (*queueLeader, error) {
	q := n.lead.queues.Load()
	if q == nil {
		return nil, errNotLeading
	}
	return q, nil
}

func (n *Node) queue(name string) (*rpc.Queue, error) {
	if name == "" {
		return nil, rpc.Errorf(rpc.CodeSQSMissingParameter, "The request must contain the parameter QueueUrl.")
	}
	q, ok := n.fsm.Queue(name)
	if !ok {
		return nil, rpc.Errorf(rpc.CodeQueueDoesNotExist, "The specified queue %s does not exist.", name)
	}
	return q, nil
}

func (n *Node) queueResponse(q *rpc.Queue) *rpc.QueueResponse {
	v, nv, d, _ := n.fsm.QueueCounts(q.Name, time.Now().UnixMilli())
	return &rpc.QueueResponse{Queue: q, Visible: v, NotVisible: nv, Delayed: d}
}

func (n *Node) createQueue(ctx context.Context, req *rpc.CreateQueueRequest) (*rpc.QueueResponse, error) {
	if !n.isLeader() {
		var resp rpc.QueueResponse
		return &resp, n.forward(ctx, rpc.MethodQueueCreate, req, &resp)
	}
	q, err := scheduler.ValidateQueue(n.cfg.ARNs, req, n.fsm.Queue)
	if err != nil {
		return nil, err
	}
	q.CreatedMs = time.Now().UnixMilli()
	res, err := n.apply(scheduler.PutQueueCommand{Queue: q})
	if err != nil {
		return nil, err
	}
	stored, _ := res.Outputs[0].(*rpc.Queue)
	if stored.CreatedMs == q.CreatedMs {
		n.log.Info("queue created", "queue", q.Name, "fifo", q.FIFO, "dead_letter", q.DeadLetterQueue)
	}
	return n.queueResponse(stored), nil
}

func (n *Node) deleteQueue(ctx context.Context, req *rpc.QueueRequest) (*rpc.DeleteQueueResponse, error) {
	if !n.isLeader() {
		var resp rpc.DeleteQueueResponse
		return &resp, n.forward(ctx, rpc.MethodQueueDelete, req, &resp)
	}
	if _, err := n.queue(req.Name); err != nil {
		return nil, err
	}
	if _, err := n.apply(scheduler.DeleteQueueCommand{Name: req.Name}); err != nil {
		return nil, err
	}
	n.log.Info("queue deleted", "queue", req.Name)
	return &rpc.DeleteQueueResponse{}, nil
}

func (n *Node) getQueue(ctx context.Context, req *rpc.QueueRequest) (*rpc.QueueResponse, error) {
	if !n.isLeader() {
		var resp rpc.QueueResponse
		return &resp, n.forward(ctx, rpc.MethodQueueGet, req, &resp)
	}
	q, err := n.queue(req.Name)
	if err != nil {
		return nil, err
	}
	return n.queueResponse(q), nil
}

func (n *Node) listQueues(ctx context.Context, req *rpc.ListQueuesRequest) (*rpc.ListQueuesResponse, error) {
	if !n.isLeader() {
		var resp rpc.ListQueuesResponse
		return &resp, n.forward(ctx, rpc.MethodQueueList, req, &resp)
	}
	return &rpc.ListQueuesResponse{Queues: n.fsm.Queues()}, nil
}

func (n *Node) purgeQueue(ctx context.Context, req *rpc.QueueRequest) (*rpc.DeleteQueueResponse, error) {
	if !n.isLeader() {
		var resp rpc.DeleteQueueResponse
		return &resp, n.forward(ctx, rpc.MethodQueuePurge, req, &resp)
	}
	if _, err := n.queue(req.Name); err != nil {
		return nil, err
	}
	q, err := n.queueSubsystem()
	if err != nil {
		return nil, err
	}
	if r := q.ops.submit(ctx, scheduler.QueueOp{Kind: scheduler.QueuePurge, Queue: req.Name, NowMs: time.Now().UnixMilli()}); r.err != nil {
		return nil, rpc.AsError(r.err)
	}
	return &rpc.DeleteQueueResponse{}, nil
}

func (n *Node) sendMessage(ctx context.Context, req *rpc.SendMessageRequest) (*rpc.SendMessageResponse, error) {
	if len(req.Body) > rpc.MaxQueueMessageSize+64*1024 {
		return nil, rpc.Errorf(rpc.CodeSQSInvalidParameter, "One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", rpc.MaxQueueMessageSize)
	}
	if !n.isLeader() {
		var resp rpc.SendMessageResponse
		return &resp, n.forward(ctx, rpc.MethodQueueSend, req, &resp)
	}
	q, err := n.queue(req.Queue)
	if err != nil {
		return nil, err
	}
	m, delay, err := scheduler.ValidateSend(q, req)
	if err != nil {
		return nil, err
	}
	ql, err := n.queueSubsystem()
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	m.ID, m.SentMs, m.Sender = newRequestID(), now, n.cfg.ARNs.Account
	m.VisibleMs = now + int64(delay)*1000
	r := ql.sends.submit(ctx, *m)
	if r.err != nil {
		return nil, rpc.AsError(r.err)
	}
	out, _ := r.out.(scheduler.QueueSendOutput)
	resp := &rpc.SendMessageResponse{MessageID: out.MessageID, MD5OfBody: scheduler.MD5Hex(m.Body)}
	if q.FIFO {
		resp.SequenceNumber = fmt.Sprintf("%020d", out.Seq)
	}
	return resp, nil
}

// receiveChunk is how long a forwarded receive waits on the leader at a
// time: within forward's window, so a long poll through a follower is a
// few forwarded polls.
const receiveChunk = 3 * time.Second

func (n *Node) receiveMessages(ctx context.Context, req *rpc.ReceiveMessageRequest) (*rpc.ReceiveMessageResponse, error) {
	maxN := req.Max
	if maxN == 0 {
		maxN = 1
	}
	if maxN < 1 || maxN > rpc.MaxQueueReceive {
		return nil, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and %d, if provided.", req.Max, rpc.MaxQueueReceive)
	}
	if req.WaitSec < 0 || req.WaitSec > rpc.MaxQueueWaitSec {
		return nil, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= %d, if provided.", req.WaitSec, rpc.MaxQueueWaitSec)
	}
	if v := req.VisibilitySec; v != nil && (*v < 0 || *v > rpc.MaxQueueVisibilitySec) {
		return nil, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= %d, if provided.", *v, rpc.MaxQueueVisibilitySec)
	}
	if !n.isLeader() {
		deadline := time.Now().Add(time.Duration(req.WaitSec) * time.Second)
		for {
			part := *req
			left := min(max(time.Until(deadline), 0), receiveChunk)
			part.WaitSec = int((left + time.Second - 1) / time.Second) // rounded up: no busy polling near the end
			var resp rpc.ReceiveMessageResponse
			if err := n.forward(ctx, rpc.MethodQueueReceive, &part, &resp); err != nil || len(resp.Messages) > 0 || !time.Now().Before(deadline) {
				return &resp, err
			}
		}
	}
	q, err := n.queue(req.Queue)
	if err != nil {
		return nil, err
	}
	ql, err := n.queueSubsystem()
	if err != nil {
		return nil, err
	}
	vis := time.Duration(q.VisibilitySec) * time.Second
	if req.VisibilitySec != nil {
		vis = time.Duration(*req.VisibilitySec) * time.Second
	}
	msgs, err := ql.receive(ctx, q.Name, maxN, 0, time.Duration(req.WaitSec)*time.Second, vis)
	if err != nil {
		return nil, err
	}
	out := &rpc.ReceiveMessageResponse{Messages: make([]rpc.Message, 0, len(msgs))}
	for _, m := range msgs {
		out.Messages = append(out.Messages, wireMessage(m))
	}
	return out, nil
}

// wireMessage is a received message as SQS presents it.
func wireMessage(m *scheduler.QueueMessage) rpc.Message {
	w := rpc.Message{
		MessageID:     m.ID,
		ReceiptHandle: scheduler.EncodeReceipt(m.ID, m.Receipt),
		Body:          string(m.Body),
		MD5OfBody:     scheduler.MD5Hex(m.Body),
		Attributes: map[string]string{
			"ApproximateReceiveCount":          strconv.Itoa(m.Receives),
			"SentTimestamp":                    strconv.FormatInt(m.SentMs, 10),
			"SenderId":                         m.Sender,
			"ApproximateFirstReceiveTimestamp": strconv.FormatInt(m.FirstReceiveMs, 10),
		},
	}
	if m.GroupID != "" {
		w.Attributes["MessageGroupId"] = m.GroupID
		w.Attributes["MessageDeduplicationId"] = m.DedupID
		w.Attributes["SequenceNumber"] = fmt.Sprintf("%020d", m.Seq)
	}
	if len(m.Attrs) > 0 {
		w.MessageAttributes = make(map[string]rpc.MessageAttribute, len(m.Attrs))
		for k, v := range m.Attrs {
			w.MessageAttributes[k] = rpc.MessageAttribute{StringValue: v, DataType: "String"}
		}
	}
	return w
}

func (n *Node) deleteMessage(ctx context.Context, req *rpc.DeleteMessageRequest) (*rpc.DeleteMessageResponse, error) {
	id, nonce, err := scheduler.DecodeReceipt(req.ReceiptHandle)
	if err != nil {
		return nil, err
	}
	if !n.isLeader() {
		var resp rpc.DeleteMessageResponse
		return &resp, n.forward(ctx, rpc.MethodQueueDeleteMessage, req, &resp)
	}
	if _, err := n.queue(req.Queue); err != nil {
		return nil, err
	}
	ql, err := n.queueSubsystem()
	if err != nil {
		return nil, err
	}
	r := ql.ops.submit(ctx, scheduler.QueueOp{Kind: scheduler.QueueDelete, Queue: req.Queue, MessageID: id, Receipt: nonce, NowMs: time.Now().UnixMilli()})
	if r.err != nil {
		return nil, rpc.AsError(r.err)
	}
	return &rpc.DeleteMessageResponse{}, nil
}

func (n *Node) changeVisibility(ctx context.Context, req *rpc.ChangeVisibilityRequest) (*rpc.DeleteMessageResponse, error) {
	id, nonce, err := scheduler.DecodeReceipt(req.ReceiptHandle)
	if err != nil {
		return nil, err
	}
	if req.VisibilitySec < 0 || req.VisibilitySec > rpc.MaxQueueVisibilitySec {
		return nil, rpc.Errorf(rpc.CodeSQSInvalidParameter, "Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= %d.", req.VisibilitySec, rpc.MaxQueueVisibilitySec)
	}
	if !n.isLeader() {
		var resp rpc.DeleteMessageResponse
		return &resp, n.forward(ctx, rpc.MethodQueueChangeVisibility, req, &resp)
	}
	if _, err := n.queue(req.Queue); err != nil {
		return nil, err
	}
	ql, err := n.queueSubsystem()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	r := ql.ops.submit(ctx, scheduler.QueueOp{Kind: scheduler.QueueChangeVisibility, Queue: req.Queue, MessageID: id, Receipt: nonce,
		NowMs: now.UnixMilli(), VisibleUntilMs: now.Add(time.Duration(req.VisibilitySec) * time.Second).UnixMilli()})
	if r.err != nil {
		return nil, rpc.AsError(r.err)
	}
	return &rpc.DeleteMessageResponse{}, nil
}
