package rpc

import "context"

// CreateTrigger creates a queue trigger (MethodTriggerCreate).
func (c *Client) CreateTrigger(ctx context.Context, req *CreateTriggerRequest) (*TriggerResponse, error) {
	return callTyped[TriggerResponse](ctx, c, MethodTriggerCreate, req)
}

// UpdateTrigger changes a trigger (MethodTriggerUpdate).
func (c *Client) UpdateTrigger(ctx context.Context, req *UpdateTriggerRequest) (*TriggerResponse, error) {
	return callTyped[TriggerResponse](ctx, c, MethodTriggerUpdate, req)
}

// GetTrigger returns a trigger (MethodTriggerGet).
func (c *Client) GetTrigger(ctx context.Context, uuid string) (*TriggerResponse, error) {
	return callTyped[TriggerResponse](ctx, c, MethodTriggerGet, &TriggerRequest{UUID: uuid})
}

// ListTriggers lists triggers, of one function if fn is not ""
// (MethodTriggerList).
func (c *Client) ListTriggers(ctx context.Context, fn string) (*ListTriggersResponse, error) {
	return callTyped[ListTriggersResponse](ctx, c, MethodTriggerList, &ListTriggersRequest{Function: fn})
}

// DeleteTrigger deletes a trigger (MethodTriggerDelete).
func (c *Client) DeleteTrigger(ctx context.Context, uuid string) (*DeleteTriggerResponse, error) {
	return callTyped[DeleteTriggerResponse](ctx, c, MethodTriggerDelete, &TriggerRequest{UUID: uuid})
}
