// Command streamfn is a test function written with aws-lambda-go that
// streams its response: its handler returns an io.Reader, which
// aws-lambda-go posts to the Runtime API as it reads it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	Lines   int    `json:"lines"`    // lines to write
	GapMs   int    `json:"gap_ms"`   // between them
	Size    int    `json:"size"`     // bytes of padding in each line
	FailNow string `json:"fail_now"` // an error before anything is sent
	FailEnd string `json:"fail_end"` // an error after the lines
}

func handler(ctx context.Context, ev event) (io.Reader, error) {
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
