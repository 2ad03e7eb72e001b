package rpc

import "context"

// MethodAccountSettings reports the account's limits and usage (Lambda's
// GetAccountSettings).
const MethodAccountSettings = "Account.Settings"

// AccountSettingsRequest asks for the account's limits and usage.
type AccountSettingsRequest struct{}

// AccountSettingsResponse holds the limits the cluster enforces and what the
// registry holds, as the leader sees them.
type AccountSettingsResponse struct {
	// ConcurrentExecutions is the account's concurrency limit.
	ConcurrentExecutions int `msgpack:"concurrent_executions"`
	// UnreservedConcurrentExecutions is the limit less every function's
	// reserved concurrency: what functions without a reservation share.
	UnreservedConcurrentExecutions int `msgpack:"unreserved_concurrent_executions"`
	// CodeSizeZipped and CodeSizeUnzipped are the limits on one upload.
	CodeSizeZipped   int64 `msgpack:"code_size_zipped"`
	CodeSizeUnzipped int64 `msgpack:"code_size_unzipped"`
	// FunctionCount and TotalCodeSize are the registry's functions and the
	// sum of their zip sizes.
	FunctionCount int   `msgpack:"function_count"`
	TotalCodeSize int64 `msgpack:"total_code_size"`
}

// AccountSettings reports the account's limits and usage
// (MethodAccountSettings).
func (c *Client) AccountSettings(ctx context.Context, req *AccountSettingsRequest) (*AccountSettingsResponse, error) {
	return callTyped[AccountSettingsResponse](ctx, c, MethodAccountSettings, req)
}
