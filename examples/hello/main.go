// Command hello is an example function for the `provided` runtime, written
// with aws-lambda-go exactly as for AWS Lambda: it reads the event, logs a
// line and returns a greeting. Build it as a static binary named bootstrap:
//
//	CGO_ENABLED=0 go build -o examples/hello/build/bootstrap ./examples/hello
package main

import (
	"context"
	"log"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// Event is what hello expects; every field is optional.
type Event struct {
	Name string `json:"name"`
}

// Response is what hello returns.
type Response struct {
	Message      string `json:"message"`
	RequestID    string `json:"requestId"`
	FunctionName string `json:"functionName"`
	FunctionARN  string `json:"functionArn"`
	MemoryMB     int    `json:"memoryMB"`
	DeadlineInMs int64  `json:"deadlineInMs"`
	// ClientContext is the invoking client's context, when it sent one
	// (`nimbus invoke --client-context JSON`, the SDKs' ClientContext).
	ClientContext *lambdacontext.ClientContext `json:"clientContext,omitempty"`
}

func handler(ctx context.Context, ev Event) (Response, error) {
	name := ev.Name
	if name == "" {
		name = "world"
	}
	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	log.Printf("greeting %s", name)
	r := Response{
		Message:      "Hello, " + name + "!",
		FunctionName: lambdacontext.FunctionName,
		MemoryMB:     lambdacontext.MemoryLimitInMB,
		DeadlineInMs: time.Until(deadline).Milliseconds(),
	}
	if lc != nil {
		r.RequestID = lc.AwsRequestID
		r.FunctionARN = lc.InvokedFunctionArn
		if cc := lc.ClientContext; len(cc.Custom) > 0 || len(cc.Env) > 0 || cc.Client != (lambdacontext.ClientApplication{}) {
			r.ClientContext = &cc
		}
	}
	return r, nil
}

func main() {
	lambda.Start(handler)
}
