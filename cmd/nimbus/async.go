package main

import (
	"encoding/json"
	"fmt"
	"io"

	"nimbus/rpc"
)

// acceptedOutput is `invoke --type Event|DryRun -o json`, in the shape of
// Lambda's Invoke answer.
type acceptedOutput struct {
	StatusCode int    `json:"StatusCode"`
	RequestID  string `json:"RequestId,omitempty"`
}

// printAccepted prints an Event invocation's request id (or, with -o json,
// its status and id), or nothing for a DryRun without -o json.
func printAccepted(w io.Writer, res *rpc.InvokeResponse, output string) error {
	if output == "json" {
		return json.NewEncoder(w).Encode(acceptedOutput{StatusCode: res.StatusCode, RequestID: res.RequestID})
	}
	if res.RequestID != "" {
		_, err := fmt.Fprintln(w, res.RequestID)
		return err
	}
	return nil
}
