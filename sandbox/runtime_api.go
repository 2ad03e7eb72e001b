package sandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"nimbus/rpc"
)

// The AWS Lambda Runtime API, served by the agent into one sandbox. Paths,
// headers and status codes are Lambda's, so that aws-lambda-go, a shell
// bootstrap with curl, or any other custom runtime works unmodified.
const (
	pathNext     = "GET /2018-06-01/runtime/invocation/next"
	pathResponse = "POST /2018-06-01/runtime/invocation/{id}/response"
	pathError    = "POST /2018-06-01/runtime/invocation/{id}/error"
	pathInitErr  = "POST /2018-06-01/runtime/init/error"

	headerRequestID     = "Lambda-Runtime-Aws-Request-Id"
	headerDeadline      = "Lambda-Runtime-Deadline-Ms"
	headerFunctionARN   = "Lambda-Runtime-Invoked-Function-Arn"
	headerTraceID       = "Lambda-Runtime-Trace-Id"
	headerClientContext = "Lambda-Runtime-Client-Context"
	headerErrorType     = "Lambda-Runtime-Function-Error-Type"
)

// maxResponse is the largest response a function may return (Lambda's sync
// response limit).
const maxResponse = rpc.MaxResponsePayload

// invocation is one event handed to the runtime. done is closed exactly once,
// by finish, after out is set; delivered is closed when /next hands it out,
// after deadline is set.
type invocation struct {
	id      string
	payload []byte
	arn     string
	traceID string
	timeout time.Duration
	// clientContext is the caller's client context ("" for none).
	clientContext string

	delivered chan struct{}
	deadline  time.Time // set before delivered is closed

	done chan struct{}
	once sync.Once
	out  outcome // set before done is closed
}

// outcome is what the runtime answered. errType is empty on success.
type outcome struct {
	payload []byte
	errType string
}

func newInvocation(id string, payload []byte, arn, traceID string, timeout time.Duration) *invocation {
	return &invocation{
		id: id, payload: payload, arn: arn, traceID: traceID, timeout: timeout,
		delivered: make(chan struct{}),
		done:      make(chan struct{}),
	}
}

func (inv *invocation) finish(o outcome) bool {
	ok := false
	inv.once.Do(func() {
		inv.out = o
		close(inv.done)
		ok = true
	})
	return ok
}

// apiState is where the runtime is in Lambda's Runtime API protocol.
//
//	initialising ──/init/error──► initFailed   (every later call: 403)
//	     │ /next
//	     ▼
//	  waiting ◄────────/next────────┐
//	     │ invocation handed out    │
//	     ▼                          │
//	  invoking ──/response, /error──► answered
//
// A call the diagram does not allow from the current state is answered 403
// InvalidStateTransition and changes nothing: /response before any /next,
// a second answer to one invocation, /init/error after init.
type apiState uint8

const (
	apiInitialising apiState = iota
	apiWaiting
	apiInvoking
	apiAnswered
	apiInitFailed
)

// runtimeAPI serves one sandbox. The invoker puts an invocation in pending
// only once the runtime waits in /next (ready for the first, back for each
// later one); the waiting /next takes it. There is at most one invocation
// in flight per sandbox, as in Lambda.
type runtimeAPI struct {
	pending chan *invocation // capacity 1
	ready   chan struct{}    // closed at the runtime's first /next: init is over
	failed  chan struct{}    // closed at the first /init/error
	back    chan struct{}    // capacity 1: the runtime is back in /next after answering
	closed  chan struct{}

	closeOnce sync.Once

	mu      sync.Mutex
	state   apiState
	readyAt time.Time   // set before ready is closed
	current *invocation // the invocation handed out and not yet answered
	initErr *outcome    // set before failed is closed

	bodyTimeout time.Duration // apiBodyTimeout; shorter in tests
	srv         *http.Server
	conns       *apiConns // the manager's counts (nil: none kept)
}

// apiConns counts the Runtime API connections of a manager's sandboxes.
type apiConns struct {
	open    atomic.Int64
	refused atomic.Uint64
}

func newRuntimeAPI() *runtimeAPI {
	a := &runtimeAPI{
		pending: make(chan *invocation, 1),
		ready:   make(chan struct{}),
		failed:  make(chan struct{}),
		back:    make(chan struct{}, 1),
		closed:  make(chan struct{}),

		bodyTimeout: apiBodyTimeout,
	}
	mux := http.NewServeMux()
	mux.HandleFunc(pathNext, a.next)
	mux.HandleFunc(pathResponse, a.response)
	mux.HandleFunc(pathError, a.invocationError)
	mux.HandleFunc(pathInitErr, a.initError)
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: apiHeaderTimeout,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		ErrorLog:          log.New(io.Discard, "", 0), // a runtime's bad requests are its own business
	}
	return a
}

// Bounds of the Runtime API: a sandbox is untrusted. A runtime needs one or
// two connections (aws-lambda-go keeps one alive), extensions a few more.
// No ReadTimeout or WriteTimeout on the server: /next is a long poll, so the
// deadlines are set per request where a body is read or written.
const (
	apiMaxConns       = 8
	apiHeaderTimeout  = 10 * time.Second
	apiIdleTimeout    = 60 * time.Second
	apiMaxHeaderBytes = 16 << 10
	apiBodyTimeout    = 30 * time.Second // to read a /response or /error body
	apiWriteTimeout   = 30 * time.Second // to write an event to /next
)

func (a *runtimeAPI) serve(ln net.Listener) {
	_ = a.srv.Serve(&limitListener{Listener: ln, max: apiMaxConns, counts: a.conns})
}

// limitListener closes connections at once beyond max open ones, so a
// runtime that hoards them gets an error instead of a hang, and the agent
// holds at most max descriptors per sandbox.
type limitListener struct {
	net.Listener
	max    int
	counts *apiConns // nil: not counted
	mu     sync.Mutex
	open   int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.open >= l.max {
			l.mu.Unlock()
			c.Close()
			if l.counts != nil {
				l.counts.refused.Add(1)
			}
			continue
		}
		l.open++
		l.mu.Unlock()
		if l.counts != nil {
			l.counts.open.Add(1)
		}
		return &limitConn{Conn: c, l: l}, nil
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
		if c.l.counts != nil {
			c.l.counts.open.Add(-1)
		}
	})
	return err
}

// readBody reads a request body once, into a buffer of at most limit+1
// bytes (sized from Content-Length when it is given), within apiBodyTimeout.
func (a *runtimeAPI) readBody(w http.ResponseWriter, r *http.Request, limit int) ([]byte, error) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(a.bodyTimeout))
	size := 512
	if r.ContentLength > 0 {
		size = int(min(r.ContentLength, int64(limit)+1))
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	_, err := buf.ReadFrom(io.LimitReader(r.Body, int64(limit)+1))
	return buf.Bytes(), err
}

func (a *runtimeAPI) close() {
	a.closeOnce.Do(func() {
		close(a.closed)
		a.srv.Close()
	})
}

// initFailure returns the error the runtime reported from /init/error, if any.
func (a *runtimeAPI) initFailure() *outcome {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.initErr
}

// readyTime is when the runtime first called /next.
func (a *runtimeAPI) readyTime() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.readyAt
}

func (a *runtimeAPI) next(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	switch a.state {
	case apiInitialising:
		a.readyAt = time.Now()
		close(a.ready)
	case apiAnswered:
		select {
		case a.back <- struct{}{}:
		default:
		}
	case apiInvoking, apiInitFailed:
		st := a.state
		a.mu.Unlock()
		refuseTransition(w, st, "next")
		return
	}
	a.state = apiWaiting
	a.mu.Unlock()

	var inv *invocation
	select {
	case inv = <-a.pending:
	case <-a.closed:
		http.Error(w, "sandbox is shutting down", http.StatusGone)
		return
	case <-r.Context().Done():
		return
	}
	inv.deadline = time.Now().Add(inv.timeout)
	a.mu.Lock()
	a.state = apiInvoking
	a.current = inv
	a.mu.Unlock()
	close(inv.delivered)

	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h[headerRequestID] = []string{inv.id}
	h[headerDeadline] = []string{strconv.FormatInt(inv.deadline.UnixMilli(), 10)}
	h[headerFunctionARN] = []string{inv.arn}
	h[headerTraceID] = []string{inv.traceID}
	if inv.clientContext != "" {
		h[headerClientContext] = []string{inv.clientContext}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(inv.payload))}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(apiWriteTimeout))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.payload)
}

// take returns the current invocation if id names it, and moves to
// answered. It writes the refusal itself and returns nil otherwise.
func (a *runtimeAPI) take(w http.ResponseWriter, id, call string) *invocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != apiInvoking {
		refuseTransition(w, a.state, call)
		return nil
	}
	inv := a.current
	if inv.id != id {
		writeAPIError(w, http.StatusBadRequest, rpc.APIErrInvalidRequestID, "Invalid request ID")
		return nil
	}
	a.current = nil
	a.state = apiAnswered
	return inv
}

func refuseTransition(w http.ResponseWriter, st apiState, call string) {
	from := [...]string{"initialising", "waiting", "invoking", "answered", "init failed"}[st]
	writeAPIError(w, http.StatusForbidden, rpc.APIErrInvalidStateTransition,
		"Transition from "+from+" to "+call+" is not allowed")
}

func (a *runtimeAPI) response(w http.ResponseWriter, r *http.Request) {
	inv := a.take(w, r.PathValue("id"), "response")
	if inv == nil {
		return
	}
	body, err := a.readBody(w, r, maxResponse)
	if err != nil {
		inv.finish(functionError(rpc.ErrTypeResponseError, "failed to read the runtime's response: "+err.Error()))
		writeAPIError(w, http.StatusBadRequest, rpc.APIErrInvalidRequest, err.Error())
		return
	}
	if len(body) > maxResponse {
		msg := "Response payload size exceeded maximum allowed payload size (" + strconv.Itoa(maxResponse) + " bytes)."
		inv.finish(functionError(rpc.ErrTypeResponseTooLarge, msg))
		writeAPIError(w, http.StatusRequestEntityTooLarge, rpc.APIErrRequestEntityTooLarge,
			"Exceeded maximum allowed payload size ("+strconv.Itoa(maxResponse)+" bytes).")
		return
	}
	inv.finish(outcome{payload: body})
	writeAccepted(w)
}

func (a *runtimeAPI) invocationError(w http.ResponseWriter, r *http.Request) {
	inv := a.take(w, r.PathValue("id"), "error")
	if inv == nil {
		return
	}
	inv.finish(a.readRuntimeError(w, r))
	writeAccepted(w)
}

// initError records the first init error; later calls, and calls after
// init, are refused.
func (a *runtimeAPI) initError(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	if a.state != apiInitialising {
		st := a.state
		a.mu.Unlock()
		refuseTransition(w, st, "init error")
		return
	}
	a.state = apiInitFailed
	a.mu.Unlock()
	o := a.readRuntimeError(w, r)
	a.mu.Lock()
	a.initErr = &o
	a.mu.Unlock()
	close(a.failed)
	writeAccepted(w)
}

// readRuntimeError turns an error the runtime posted into the body the
// caller gets. A JSON object is passed through unchanged (aws-lambda-go's
// stackTrace of frames, Node's trace, any extra field), except that a
// missing or empty errorType is filled in, from the
// Lambda-Runtime-Function-Error-Type header or as Runtime.Unknown. Anything
// else (not JSON, or JSON that is not an object) becomes a Runtime.Unknown
// error whose message is the body. The body is read once, bounded.
func (a *runtimeAPI) readRuntimeError(w http.ResponseWriter, r *http.Request) outcome {
	body, err := a.readBody(w, r, maxErrorBody)
	if err != nil {
		return functionError(rpc.ErrTypeResponseError, "failed to read the runtime's error: "+err.Error())
	}
	if len(body) > maxErrorBody {
		return functionError(rpc.ErrTypeResponseTooLarge, "Error payload size exceeded maximum allowed payload size ("+strconv.Itoa(maxErrorBody)+" bytes).")
	}
	return runtimeError(r.Header.Get(headerErrorType), body)
}

// maxErrorBody bounds an error a runtime posts, as a response is bounded.
const maxErrorBody = maxResponse

func runtimeError(header string, body []byte) outcome {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil || fields == nil {
		return functionError(rpc.ErrTypeUnknown, string(body))
	}
	var errType string
	if raw, ok := fields["errorType"]; ok && json.Unmarshal(raw, &errType) == nil && errType != "" {
		return outcome{payload: body, errType: errType}
	}
	errType = header
	if errType == "" {
		errType = rpc.ErrTypeUnknown
	}
	typ, _ := json.Marshal(errType)
	if _, ok := fields["errorType"]; !ok {
		// Splice it in front, leaving the runtime's bytes as they were.
		out := make([]byte, 0, len(body)+len(typ)+14)
		i := bytes.IndexByte(body, '{')
		out = append(out, body[:i+1]...)
		out = append(out, `"errorType":`...)
		out = append(out, typ...)
		if rest := bytes.TrimLeft(body[i+1:], " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		out = append(out, body[i+1:]...)
		return outcome{payload: out, errType: errType}
	}
	// errorType is there but not a string (or empty): replace it.
	fields["errorType"] = typ
	out, _ := json.Marshal(fields)
	return outcome{payload: out, errType: errType}
}

func functionError(errType, msg string) outcome {
	out, _ := json.Marshal(rpc.FunctionErrorPayload{ErrorType: errType, ErrorMessage: msg})
	return outcome{payload: out, errType: errType}
}

var accepted = []byte(`{"status":"OK"}`)

func writeAccepted(w http.ResponseWriter) {
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(accepted)
}

func writeAPIError(w http.ResponseWriter, code int, errType, msg string) {
	body, _ := json.Marshal(rpc.FunctionErrorPayload{ErrorType: errType, ErrorMessage: msg})
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
