package rpc

import "context"

// Methods on log groups (one per function, /aws/lambda/NAME).
const (
	MethodLogsGroups          = "Logs.Groups"
	MethodLogsPutRetention    = "Logs.PutRetention"
	MethodLogsDeleteRetention = "Logs.DeleteRetention"
)

// LogGroup describes one function's log as the store keeps it.
type LogGroup struct {
	FunctionName string `msgpack:"function_name" json:"functionName"`
	LogGroupName string `msgpack:"log_group_name" json:"logGroupName"`
	StoredBytes  int64  `msgpack:"stored_bytes" json:"storedBytes"`
	// Records is how many stored batches of events the group holds (a
	// worker publishes its lines in batches).
	Records uint64 `msgpack:"records" json:"records"`
	// RetentionInDays is 0 when events never expire by age.
	RetentionInDays int   `msgpack:"retention_days,omitempty" json:"retentionInDays,omitempty"`
	MaxBytes        int64 `msgpack:"max_bytes" json:"maxBytes"`
	FirstEventMs    int64 `msgpack:"first_ms,omitempty" json:"firstEventTimestamp,omitempty"`
	LastEventMs     int64 `msgpack:"last_ms,omitempty" json:"lastEventTimestamp,omitempty"`
	Replicas        int   `msgpack:"replicas" json:"replicas"`
}

// LogGroupsRequest lists the log groups.
type LogGroupsRequest struct{}

// LogGroupsResponse holds the groups sorted by function name.
type LogGroupsResponse struct {
	Groups []LogGroup `msgpack:"groups"`
}

// PutRetentionRequest sets how long a function's events are kept;
// RetentionInDays takes CloudWatch's values.
type PutRetentionRequest struct {
	FunctionName    string `msgpack:"function_name"`
	RetentionInDays int    `msgpack:"retention_days"`
}

// DeleteRetentionRequest makes a function's events never expire by age.
type DeleteRetentionRequest struct {
	FunctionName string `msgpack:"function_name"`
}

// RetentionResponse is the group after the change.
type RetentionResponse struct {
	Group LogGroup `msgpack:"group"`
}

// LogGroups lists the log groups (MethodLogsGroups).
func (c *Client) LogGroups(ctx context.Context, req *LogGroupsRequest) (*LogGroupsResponse, error) {
	return callTyped[LogGroupsResponse](ctx, c, MethodLogsGroups, req)
}

// PutRetention sets a group's retention (MethodLogsPutRetention).
func (c *Client) PutRetention(ctx context.Context, req *PutRetentionRequest) (*RetentionResponse, error) {
	return callTyped[RetentionResponse](ctx, c, MethodLogsPutRetention, req)
}

// DeleteRetention removes a group's retention (MethodLogsDeleteRetention).
func (c *Client) DeleteRetention(ctx context.Context, req *DeleteRetentionRequest) (*RetentionResponse, error) {
	return callTyped[RetentionResponse](ctx, c, MethodLogsDeleteRetention, req)
}
