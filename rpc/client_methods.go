package rpc

import "context"

// Typed helpers: one per method, so callers cannot pair a method with the
// wrong request or response type. Each returns the response, or nil and the
// error Call returned.

// CreateFunction deploys a new function (MethodFunctionCreate).
func (c *Client) CreateFunction(ctx context.Context, req *CreateFunctionRequest) (*FunctionResponse, error) {
	return callTyped[FunctionResponse](ctx, c, MethodFunctionCreate, req)
}

// UpdateFunctionCode replaces a function's code (MethodFunctionUpdateCode).
func (c *Client) UpdateFunctionCode(ctx context.Context, req *UpdateCodeRequest) (*FunctionResponse, error) {
	return callTyped[FunctionResponse](ctx, c, MethodFunctionUpdateCode, req)
}

// UpdateFunctionConfig changes a function's configuration
// (MethodFunctionUpdateConfig).
func (c *Client) UpdateFunctionConfig(ctx context.Context, req *UpdateConfigRequest) (*FunctionResponse, error) {
	return callTyped[FunctionResponse](ctx, c, MethodFunctionUpdateConfig, req)
}

// GetFunction returns one function (MethodFunctionGet).
func (c *Client) GetFunction(ctx context.Context, req *GetFunctionRequest) (*FunctionResponse, error) {
	return callTyped[FunctionResponse](ctx, c, MethodFunctionGet, req)
}

// ListFunctions returns every function (MethodFunctionList).
func (c *Client) ListFunctions(ctx context.Context, req *ListFunctionsRequest) (*ListFunctionsResponse, error) {
	return callTyped[ListFunctionsResponse](ctx, c, MethodFunctionList, req)
}

// DeleteFunction deletes a function (MethodFunctionDelete).
func (c *Client) DeleteFunction(ctx context.Context, req *GetFunctionRequest) (*DeleteFunctionResponse, error) {
	return callTyped[DeleteFunctionResponse](ctx, c, MethodFunctionDelete, req)
}

// Invoke runs a function (MethodInvoke). A function's own failure is not an
// error here: it comes back in InvokeResponse.FunctionError.
func (c *Client) Invoke(ctx context.Context, req *InvokeRequest) (*InvokeResponse, error) {
	return callTyped[InvokeResponse](ctx, c, MethodInvoke, req)
}

// InvokeStream runs a function and hands its response to onPart as it
// comes (MethodInvokeStream). An error from onPart stops the stream (the
// function is not stopped) and is returned.
func (c *Client) InvokeStream(ctx context.Context, req *InvokeRequest, onPart func(*InvokeStreamPart) error) (*InvokeResponse, error) {
	var resp InvokeResponse
	if err := CallStream(c, ctx, MethodInvokeStream, req, &resp, onPart); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ReadLogs reads a function's log after a cursor, long-polling when
// req.WaitMs is set (MethodLogsRead).
func (c *Client) ReadLogs(ctx context.Context, req *ReadLogsRequest) (*ReadLogsResponse, error) {
	return callTyped[ReadLogsResponse](ctx, c, MethodLogsRead, req)
}

func callTyped[Resp any](ctx context.Context, c *Client, method string, req any) (*Resp, error) {
	resp := new(Resp)
	if err := c.Call(ctx, method, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}
