// Command streamfn is a test function written with aws-lambda-go that
// streams its response: its handler returns an io.Reader, which
// aws-lambda-go posts to the Runtime API as it reads it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	// A function URL's event: its body is the event, and the answer is
	// aws-lambda-go's streaming URL response (a prelude, then the lines).
	RawPath string `json:"rawPath"`
	Body    string `json:"body"`

	Lines   int    `json:"lines"`    // lines to write
	GapMs   int    `json:"gap_ms"`   // between them
	Size    int    `json:"size"`     // bytes of padding in each line
	FailNow string `json:"fail_now"` // an error before anything is sent
	FailEnd string `json:"fail_end"` // an error after the lines
}

func handler(ctx context.Context, ev event) (io.Reader, error) {
	if ev.RawPath != "" {
		var inner event
		if err := json.Unmarshal([]byte(ev.Body), &inner); err != nil {
			return nil, err
		}
		body, err := handler(ctx, inner)
		if err != nil {
			return nil, err
		}
		return &events.LambdaFunctionURLStreamingResponse{
			StatusCode: 201,
			Headers:    map[string]string{"Content-Type": "text/plain", "X-Streamed": "yes"},
			Cookies:    []string{"flavour=oat"},
			Body:       body,
		}, nil
	}
	if ev.FailNow != "" {
		return nil, errors.New(ev.FailNow)
	}
	pr, pw := io.Pipe()
	go func() {
		pad := strings.Repeat("x", ev.Size)
		for i := range ev.Lines {
			if i > 0 && ev.GapMs > 0 {
				time.Sleep(time.Duration(ev.GapMs) * time.Millisecond)
			}
			if _, err := fmt.Fprintf(pw, "line %d %s\n", i, pad); err != nil {
				return
			}
		}
		if ev.FailEnd != "" {
			pw.CloseWithError(errors.New(ev.FailEnd))
			return
		}
		pw.Close()
	}()
	return pr, nil
}

func main() { lambda.Start(handler) }
