package rpc

import "context"

// CreateQueue creates a queue (MethodQueueCreate); an existing queue with
// the same attributes is returned as it is.
func (c *Client) CreateQueue(ctx context.Context, req *CreateQueueRequest) (*QueueResponse, error) {
	return callTyped[QueueResponse](ctx, c, MethodQueueCreate, req)
}

// DeleteQueue deletes a queue and its messages (MethodQueueDelete).
func (c *Client) DeleteQueue(ctx context.Context, name string) (*DeleteQueueResponse, error) {
	return callTyped[DeleteQueueResponse](ctx, c, MethodQueueDelete, &QueueRequest{Name: name})
}

// GetQueue returns a queue's attributes and counts (MethodQueueGet).
func (c *Client) GetQueue(ctx context.Context, name string) (*QueueResponse, error) {
	return callTyped[QueueResponse](ctx, c, MethodQueueGet, &QueueRequest{Name: name})
}

// ListQueues lists the queues (MethodQueueList).
func (c *Client) ListQueues(ctx context.Context) (*ListQueuesResponse, error) {
	return callTyped[ListQueuesResponse](ctx, c, MethodQueueList, &ListQueuesRequest{})
}

// PurgeQueue deletes every message of a queue (MethodQueuePurge).
func (c *Client) PurgeQueue(ctx context.Context, name string) (*DeleteQueueResponse, error) {
	return callTyped[DeleteQueueResponse](ctx, c, MethodQueuePurge, &QueueRequest{Name: name})
}

// SendMessage sends a message (MethodQueueSend); it answers once the
// message is committed.
func (c *Client) SendMessage(ctx context.Context, req *SendMessageRequest) (*SendMessageResponse, error) {
	return callTyped[SendMessageResponse](ctx, c, MethodQueueSend, req)
}

// ReceiveMessage receives messages (MethodQueueReceive), waiting up to
// req.WaitSec for one. ctx must allow for the wait.
func (c *Client) ReceiveMessage(ctx context.Context, req *ReceiveMessageRequest) (*ReceiveMessageResponse, error) {
	return callTyped[ReceiveMessageResponse](ctx, c, MethodQueueReceive, req)
}

// DeleteMessage deletes a received message (MethodQueueDeleteMessage).
func (c *Client) DeleteMessage(ctx context.Context, queue, receipt string) (*DeleteMessageResponse, error) {
	return callTyped[DeleteMessageResponse](ctx, c, MethodQueueDeleteMessage, &DeleteMessageRequest{Queue: queue, ReceiptHandle: receipt})
}

// ChangeVisibility changes a received message's visibility timeout
// (MethodQueueChangeVisibility).
func (c *Client) ChangeVisibility(ctx context.Context, req *ChangeVisibilityRequest) (*DeleteMessageResponse, error) {
	return callTyped[DeleteMessageResponse](ctx, c, MethodQueueChangeVisibility, req)
}
