package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"

	"nimbus/rpc"
)

// InvokeWithResponseStream answers with Lambda's event stream
// (application/vnd.amazon.eventstream, encoded by the SDK's own
// eventstream package): a PayloadChunk event for each part of the
// response as the function sends it, then one InvokeComplete event with
// the function's error, if any (ErrorCode its type, ErrorDetails its error
// body) and the log tail when asked. A platform error before the stream
// starts is an ordinary error answer; one after it is an exception event.

// eventStreamType is the Content-Type of an event stream.
const eventStreamType = "application/vnd.amazon.eventstream"

func (g *Gateway) invokeWithResponseStream(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	// An Event invocation is refused by the node, as over rpc.
	req, release, err := g.invokeRequest(w, r, a, "InvokeWithResponseStream")
	if err != nil {
		return err
	}
	defer release()
	es := &eventWriter{w: w, rc: http.NewResponseController(w), enc: eventstream.NewEncoder(), timeout: g.opts.BodyTimeout}
	resp, err := g.opts.Ops.InvokeStream(r.Context(), req, func(ctx context.Context, p *rpc.InvokeStreamPart) error {
		defer es.until(ctx)()
		if !es.started {
			es.start(http.StatusOK, p.ExecutedVersion)
		}
		if len(p.Data) == 0 {
			return es.flush()
		}
		return es.event("PayloadChunk", "application/octet-stream", p.Data)
	})
	if err != nil {
		if !es.started {
			return err // an ordinary error answer
		}
		e := rpc.AsError(err)
		body, _ := json.Marshal(map[string]string{"message": e.Message})
		_ = es.exception(e.Code, body)
		return nil
	}
	if !es.started {
		status := resp.StatusCode
		if status == 0 {
			status = http.StatusOK
		}
		if status == http.StatusNoContent { // DryRun
			w.WriteHeader(status)
			return nil
		}
		es.start(status, resp.ExecutedVersion)
	}
	var done struct {
		ErrorCode    string `json:"ErrorCode,omitempty"`
		ErrorDetails string `json:"ErrorDetails,omitempty"`
		LogResult    string `json:"LogResult,omitempty"`
	}
	if resp.FunctionError != "" {
		var fe struct {
			ErrorType string `json:"errorType"`
		}
		_ = json.Unmarshal(resp.Payload, &fe)
		done.ErrorCode, done.ErrorDetails = fe.ErrorType, string(resp.Payload)
		if done.ErrorCode == "" {
			done.ErrorCode = resp.FunctionError
		}
	}
	if req.LogType == rpc.LogTypeTail && len(resp.LogResult) > 0 {
		done.LogResult = base64.StdEncoding.EncodeToString(resp.LogResult)
	}
	body, _ := json.Marshal(done)
	_ = es.event("InvokeComplete", "application/json", body)
	return nil
}

// eventWriter writes an event stream response, flushing each message.
type eventWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	enc     *eventstream.Encoder
	buf     bytes.Buffer
	timeout time.Duration // for each message's write
	started bool
}

// until makes a write under way fail once ctx ends (the invocation gave
// up on a client that does not read); call the result when done.
func (e *eventWriter) until(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, func() { _ = e.rc.SetWriteDeadline(time.Now()) })
}

func (e *eventWriter) start(status int, version string) {
	e.started = true
	h := e.w.Header()
	h.Set("Content-Type", eventStreamType)
	if version != "" {
		h.Set("X-Amz-Executed-Version", version)
	}
	e.w.WriteHeader(status)
}

func (e *eventWriter) event(eventType, contentType string, payload []byte) error {
	var hs eventstream.Headers
	hs.Set(":message-type", eventstream.StringValue("event"))
	hs.Set(":event-type", eventstream.StringValue(eventType))
	hs.Set(":content-type", eventstream.StringValue(contentType))
	return e.write(eventstream.Message{Headers: hs, Payload: payload})
}

func (e *eventWriter) exception(code string, payload []byte) error {
	var hs eventstream.Headers
	hs.Set(":message-type", eventstream.StringValue("exception"))
	hs.Set(":exception-type", eventstream.StringValue(code))
	hs.Set(":content-type", eventstream.StringValue("application/json"))
	return e.write(eventstream.Message{Headers: hs, Payload: payload})
}

// write writes one message within the write timeout: a client that stops
// reading its stream loses it, and the function's sends give up.
func (e *eventWriter) write(m eventstream.Message) error {
	e.buf.Reset()
	if err := e.enc.Encode(&e.buf, m); err != nil {
		return err
	}
	_ = e.rc.SetWriteDeadline(time.Now().Add(e.timeout))
	if _, err := e.w.Write(e.buf.Bytes()); err != nil {
		return err
	}
	return e.flush()
}

func (e *eventWriter) flush() error {
	err := e.rc.Flush()
	if err == http.ErrNotSupported {
		return nil
	}
	return err
}

// A function URL in RESPONSE_STREAM mode passes the function's response
// to the client as it comes, chunked. A response whose Content-Type is
// urlIntegrationType starts with a prelude, JSON of the status code,
// headers and cookies, ended by eight NUL bytes (what aws-lambda-go's
// LambdaFunctionURLStreamingResponse and Node's HttpResponseStream
// write); any other is the body itself, with its Content-Type and 200.
const (
	urlIntegrationType = "application/vnd.awslambda.http-integration-response"
	maxURLPrelude      = 64 << 10
)

var preludeEnd = []byte{0, 0, 0, 0, 0, 0, 0, 0}

// urlStream writes one streamed function URL response.
type urlStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	head    bool // a HEAD request: no body
	cors    func(http.Header)
	timeout time.Duration

	prelude bool // the response starts with a prelude, not yet all read
	pbuf    []byte
	started bool
}

func (s *urlStream) begin(status int, headers map[string]string, cookies []string, contentType string) {
	s.started = true
	h := s.w.Header()
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	for k, v := range headers {
		h.Set(k, v)
	}
	for _, c := range cookies {
		h.Add("Set-Cookie", c)
	}
	s.cors(h)
	s.w.WriteHeader(status)
}

func (s *urlStream) write(p []byte) error {
	if s.head || len(p) == 0 {
		return nil
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.w.Write(p); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil && err != http.ErrNotSupported {
		return err
	}
	return nil
}

// part takes one part of the function's response.
func (s *urlStream) part(p *rpc.InvokeStreamPart) error {
	if !s.started && !s.prelude {
		if p.ContentType != urlIntegrationType {
			s.begin(http.StatusOK, nil, nil, p.ContentType)
			return s.write(p.Data)
		}
		s.prelude = true
	}
	if !s.prelude {
		return s.write(p.Data)
	}
	s.pbuf = append(s.pbuf, p.Data...)
	i := bytes.Index(s.pbuf, preludeEnd)
	if i < 0 {
		if len(s.pbuf) > maxURLPrelude {
			return errBadPrelude
		}
		return nil
	}
	var pre struct {
		StatusCode int               `json:"statusCode"`
		Headers    map[string]string `json:"headers"`
		Cookies    []string          `json:"cookies"`
	}
	if json.Unmarshal(s.pbuf[:i], &pre) != nil || pre.StatusCode < 100 || pre.StatusCode > 599 {
		return errBadPrelude
	}
	s.prelude = false
	s.begin(pre.StatusCode, pre.Headers, pre.Cookies, "")
	rest := s.pbuf[i+len(preludeEnd):]
	s.pbuf = nil
	return s.write(rest)
}

var errBadPrelude = &rpc.Error{Code: rpc.CodeService, Message: "the function's streamed response has a malformed prelude"}

func (g *Gateway) serveURLStream(w http.ResponseWriter, r *http.Request, cfg *rpc.FunctionURL, event []byte, origin, reqID string) {
	s := &urlStream{
		w: w, rc: http.NewResponseController(w), head: r.Method == http.MethodHead, timeout: g.opts.BodyTimeout,
		cors: func(h http.Header) {
			if cfg.Cors != nil && origin != "" {
				corsHeaders(h, cfg.Cors, origin)
			}
		},
	}
	var bad bool
	out, err := g.opts.Ops.InvokeStream(r.Context(), &rpc.InvokeRequest{FunctionName: cfg.FunctionName, Qualifier: cfg.Qualifier, Payload: event},
		func(ctx context.Context, p *rpc.InvokeStreamPart) error {
			defer context.AfterFunc(ctx, func() { _ = s.rc.SetWriteDeadline(time.Now()) })()
			if err := s.part(p); err != nil {
				bad = errors.Is(err, errBadPrelude)
				return err
			}
			return nil
		})
	switch {
	case s.started:
		// Once the status is sent, an error can only cut the body short:
		// the connection is broken off, so the client does not take the
		// body for whole.
		if err != nil || out.FunctionError != "" {
			g.log.Debug("function URL stream ended early", "function", cfg.FunctionName, "request_id", reqID, "err", err)
			panic(http.ErrAbortHandler)
		}
	case bad || (err == nil && (out.FunctionError != "" || s.prelude)):
		if out != nil && out.RequestID != "" {
			w.Header().Set("X-Amzn-RequestId", out.RequestID)
		}
		urlError(w, http.StatusBadGateway, "Internal Server Error")
	case err != nil:
		g.urlInvokeError(w, cfg, reqID, err)
	default:
		s.begin(http.StatusOK, nil, nil, "")
	}
}
