package rpc

import "context"

// ARNScope returns the region and account the cluster's ARNs name
// (MethodClusterScope).
func (c *Client) ARNScope(ctx context.Context) (*ARNScope, error) {
	return callTyped[ARNScope](ctx, c, MethodClusterScope, &ScopeRequest{})
}
