package rpc

import "context"

// PutEventConfig sets a function's asynchronous invocation configuration
// (MethodEventConfigPut).
func (c *Client) PutEventConfig(ctx context.Context, req *PutEventConfigRequest) (*EventConfigResponse, error) {
	return callTyped[EventConfigResponse](ctx, c, MethodEventConfigPut, req)
}

// GetEventConfig returns a function's asynchronous invocation configuration
// (MethodEventConfigGet); ResourceNotFoundException when it has none.
func (c *Client) GetEventConfig(ctx context.Context, req *GetEventConfigRequest) (*EventConfigResponse, error) {
	return callTyped[EventConfigResponse](ctx, c, MethodEventConfigGet, req)
}

// DeleteEventConfig removes a function's asynchronous invocation
// configuration (MethodEventConfigDelete).
func (c *Client) DeleteEventConfig(ctx context.Context, req *GetEventConfigRequest) (*DeleteEventConfigResponse, error) {
	return callTyped[DeleteEventConfigResponse](ctx, c, MethodEventConfigDelete, req)
}

// ListEventConfigs lists a function's event configurations: its own and
// its versions' and aliases'.
func (c *Client) ListEventConfigs(ctx context.Context, req *GetEventConfigRequest) (*ListEventConfigsResponse, error) {
	return callTyped[ListEventConfigsResponse](ctx, c, MethodEventConfigList, req)
}
