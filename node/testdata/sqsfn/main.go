// Command sqsfn is the queue trigger tests' function, written with
// aws-lambda-go: it decodes its event as events.SQSEvent, logs one line
// per record with the fields the tests check, and answers as each body
// says: "fail..." is reported in batchItemFailures, "bad" makes the answer
// name an item that is not in the batch, "error" fails the invocation,
// "sleep:MS" (or "sleep:MS:TAG") holds the invocation. It logs "begin MS" and "end MS" (Unix
// milliseconds) around each invocation.
package main

import (
	"context"
	"errors"
	"log"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handler(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	log.Printf("begin %d", time.Now().UnixMilli())
	defer func() { log.Printf("end %d", time.Now().UnixMilli()) }()
	var resp events.SQSEventResponse
	fail := false
	for _, r := range ev.Records {
		attr := ""
		if a, ok := r.MessageAttributes["k"]; ok && a.StringValue != nil {
			attr = *a.StringValue + "/" + a.DataType
		}
		log.Printf("record id=%s body=%s source=%s arn=%s region=%s receives=%s sent=%s sender=%s first=%s md5=%s attr=%s group=%s handle=%t",
			r.MessageId, r.Body, r.EventSource, r.EventSourceARN, r.AWSRegion, r.Attributes["ApproximateReceiveCount"],
			r.Attributes["SentTimestamp"], r.Attributes["SenderId"], r.Attributes["ApproximateFirstReceiveTimestamp"],
			r.Md5OfBody, attr, r.Attributes["MessageGroupId"], r.ReceiptHandle != "")
		switch {
		case strings.HasPrefix(r.Body, "fail"):
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		case r.Body == "bad":
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: "not-in-the-batch"})
		case r.Body == "error":
			fail = true
		case strings.HasPrefix(r.Body, "sleep:"):
			arg, _, _ := strings.Cut(strings.TrimPrefix(r.Body, "sleep:"), ":") // sleep:MS or sleep:MS:TAG
			ms, _ := strconv.Atoi(arg)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
	}
	if fail {
		return resp, errors.New("asked to fail")
	}
	return resp, nil
}

func main() { lambda.Start(handler) }
