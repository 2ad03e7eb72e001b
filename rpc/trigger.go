package rpc

// Method names of queue triggers (Lambda's event source mappings).
const (
	MethodTriggerCreate = "Trigger.Create"
	MethodTriggerUpdate = "Trigger.Update"
	MethodTriggerGet    = "Trigger.Get"
	MethodTriggerList   = "Trigger.List"
	MethodTriggerDelete = "Trigger.Delete"
)

// Limits of a trigger, as Lambda's for an SQS event source.
const (
	DefaultTriggerBatchSize = 10
	MaxTriggerBatchSize     = 10000
	// MaxTriggerSmallBatch is the largest batch allowed without a batch
	// window of at least 1 s.
	MaxTriggerSmallBatch     = 10
	MaxTriggerBatchWindowSec = 300
	MinTriggerConcurrency    = 2
	MaxTriggerConcurrency    = 1000
	// MaxTriggerBatchBytes bounds a batch's bodies: the 6 MB of a
	// synchronous invocation's payload.
	MaxTriggerBatchBytes = 6 * 1024 * 1024
	// FunctionResponseReportBatchItemFailures is the one response type.
	FunctionResponseReportBatchItemFailures = "ReportBatchItemFailures"
)

// Trigger is an event source mapping: a queue whose messages invoke a
// function in batches. A stored Trigger is immutable.
type Trigger struct {
	UUID                    string `msgpack:"uuid"`
	Function                string `msgpack:"function"`
	Queue                   string `msgpack:"queue"`
	BatchSize               int    `msgpack:"batch_size"`
	BatchWindowSec          int    `msgpack:"batch_window,omitempty"`
	ReportBatchItemFailures bool   `msgpack:"report_failures,omitempty"`
	MaxConcurrency          int    `msgpack:"max_concurrency,omitempty"` // 0: unset
	Enabled                 bool   `msgpack:"enabled"`
	LastModifiedMs          int64  `msgpack:"last_modified_ms"`
}

// CreateTriggerRequest creates a trigger (CreateEventSourceMapping). Nil
// fields take Lambda's defaults.
type CreateTriggerRequest struct {
	Function                string `msgpack:"function"`
	Queue                   string `msgpack:"queue"` // a name or an SQS ARN
	BatchSize               *int   `msgpack:"batch_size,omitempty"`
	BatchWindowSec          *int   `msgpack:"batch_window,omitempty"`
	ReportBatchItemFailures bool   `msgpack:"report_failures,omitempty"`
	MaxConcurrency          *int   `msgpack:"max_concurrency,omitempty"`
	Disabled                bool   `msgpack:"disabled,omitempty"`
}

// UpdateTriggerRequest changes a trigger; nil fields are left as they are
// (UpdateEventSourceMapping). MaxConcurrency 0 removes the limit.
type UpdateTriggerRequest struct {
	UUID                    string `msgpack:"uuid"`
	BatchSize               *int   `msgpack:"batch_size,omitempty"`
	BatchWindowSec          *int   `msgpack:"batch_window,omitempty"`
	ReportBatchItemFailures *bool  `msgpack:"report_failures,omitempty"`
	MaxConcurrency          *int   `msgpack:"max_concurrency,omitempty"`
	Enabled                 *bool  `msgpack:"enabled,omitempty"`
}

// TriggerRequest names one trigger (Get, Delete).
type TriggerRequest struct {
	UUID string `msgpack:"uuid"`
}

// TriggerResponse is one trigger.
type TriggerResponse struct {
	Trigger *Trigger `msgpack:"trigger"`
}

// ListTriggersRequest lists the triggers, of one function when Function is
// set.
type ListTriggersRequest struct {
	Function string `msgpack:"function,omitempty"`
}

// ListTriggersResponse holds triggers sorted by UUID.
type ListTriggersResponse struct {
	Triggers []*Trigger `msgpack:"triggers"`
}

// DeleteTriggerResponse answers Delete with the trigger as it was.
type DeleteTriggerResponse struct {
	Trigger *Trigger `msgpack:"trigger"`
}
