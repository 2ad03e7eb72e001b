// Command urlhello is an example function behind a function URL, written
// with aws-lambda-go exactly as for AWS Lambda: it takes the
// events.LambdaFunctionURLRequest (payload format 2.0) and answers an
// events.LambdaFunctionURLResponse that echoes what it saw. Build it as a
// static binary named bootstrap:
//
//	CGO_ENABLED=0 go build -o examples/urlhello/build/bootstrap ./examples/urlhello
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

// Echo is the JSON body urlhello answers with.
type Echo struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   map[string]string `json:"query"`
	Body    string            `json:"body"`
	Cookies []string          `json:"cookies"`
	Agent   string            `json:"userAgent"`
	Version string            `json:"version"`
}

func handle(_ context.Context, req events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	body := req.Body
	if req.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(req.Body)
		if err != nil {
			return events.LambdaFunctionURLResponse{StatusCode: 400, Body: "bad base64"}, nil
		}
		body = string(b)
	}
	if req.RawPath == "/teapot" {
		return events.LambdaFunctionURLResponse{StatusCode: 418, Body: "short and stout", Headers: map[string]string{"Content-Type": "text/plain"}}, nil
	}
	out, _ := json.Marshal(Echo{
		Method:  req.RequestContext.HTTP.Method,
		Path:    req.RawPath,
		Query:   req.QueryStringParameters,
		Body:    body,
		Cookies: req.Cookies,
		Agent:   req.RequestContext.HTTP.UserAgent,
		Version: os.Getenv("AWS_LAMBDA_FUNCTION_VERSION"),
	})
	return events.LambdaFunctionURLResponse{
		StatusCode: 200,
		Headers:    map[string]string{"Content-Type": "application/json", "X-Echo": "yes"},
		Cookies:    []string{"seen=1; Path=/"},
		Body:       string(out),
	}, nil
}

func main() { lambda.Start(handle) }
