package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
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
	pathNext       = "/2018-06-01/runtime/invocation/next"
	pathInvocation = "/2018-06-01/runtime/invocation/" // {id}/response, {id}/error
	pathInitErr    = "/2018-06-01/runtime/init/error"
	// pathPrime is nimbus's own: a primed shell's shim asks it for its
	// function's environment, which the claim gives (expectPrime).
	pathPrime      = "/2018-06-01/runtime/nimbus/prime"
	suffixResponse = "/response"
	suffixError    = "/error"

	headerRequestID     = "Lambda-Runtime-Aws-Request-Id"
	headerDeadline      = "Lambda-Runtime-Deadline-Ms"
	headerFunctionARN   = "Lambda-Runtime-Invoked-Function-Arn"
	headerTraceID       = "Lambda-Runtime-Trace-Id"
	headerClientContext = "Lambda-Runtime-Client-Context"
	headerErrorType     = "Lambda-Runtime-Function-Error-Type"
	headerErrorBody     = "Lambda-Runtime-Function-Error-Body" // a trailer, base64
)

// maxResponse is the largest response a function may return (Lambda's sync
// response limit).
const maxResponse = rpc.MaxResponsePayload

// invocation is one event handed to the runtime. done is closed exactly once,
// by finish, after out is set; delivered is closed once the event has been
// written to the runtime's /next, after deadline is set.
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

	// stream, when set, receives the response as the runtime posts it
	// (streamResponse). Under the API's mu: streaming is set when a
	// /response starts streaming (then streamEnd is closed when it is
	// done with stream), over once the invoker has its outcome (no stream
	// starts after), and streamConn is the connection streaming.
	stream     ResponseStream
	streamEnd  chan struct{}
	streaming  bool
	over       bool
	streamConn net.Conn
}

// outcome is what the runtime answered. errType is empty on success;
// streamed says the response went to the invocation's stream.
type outcome struct {
	payload  []byte
	errType  string
	streamed bool
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

// runtimeAPI serves one sandbox. The invoker hands it an invocation only
// once the runtime waits in /next (ready for the first, back for each later
// one). There is at most one invocation in flight per sandbox, as in Lambda.
//
// The HTTP side is runtime_http.go: each connection has one goroutine that
// reads its requests. A /next that finds no invocation leaves its
// connection in waiters, and deliver, on the invoker's goroutine, writes
// the event into it: handing out an invocation wakes no goroutine, and the
// connection's own goroutine, blocked reading the runtime's next request,
// sees the connection close if the runtime gives up its /next.
type runtimeAPI struct {
	ready  chan struct{} // closed at the runtime's first /next: init is over
	failed chan struct{} // closed at the first /init/error
	back   chan struct{} // capacity 1: the runtime is back in /next after answering
	closed chan struct{}

	closeOnce sync.Once

	mu      sync.Mutex
	state   apiState
	readyAt time.Time   // set before ready is closed
	current *invocation // the invocation handed out and not yet answered
	initErr *outcome    // set before failed is closed
	// waiters are the connections whose /next waits for an invocation,
	// the latest last; queued is an invocation given while none did.
	waiters []*apiConn
	queued  *invocation
	open    map[*apiConn]struct{} // every connection, closed by close
	ln      net.Listener

	// expected are the external extensions started before the runtime
	// that have not yet called /event/next: init ends once the runtime
	// and each of them has (endInit), and until then extensions may
	// register. runtimeReady: the runtime has called its first /next.
	expected     map[string]bool
	unregistered map[string]bool // of expected, those yet to register
	onRegistered func()          // called once unregistered empties
	runtimeReady bool
	initOver     bool

	// exts are the registered extensions (extensions_api.go); fnInfo
	// is what a registration answers.
	exts          []*extension
	fnInfo        []byte
	anyExtensions atomic.Bool // len(exts) > 0, read without mu

	// prime carries a primed shell's function environment from the claim
	// to the shim's one GET pathPrime (nil: not a primed shell); under mu,
	// primeAsked says the shim has asked.
	prime      chan []byte
	primeAsked bool

	bodyTimeout time.Duration // apiBodyTimeout; shorter in tests
	// streamUncapped and streamRate: a streamed response's bandwidth
	// (runtime_http.go); smaller in tests.
	streamUncapped, streamRate int64
	conns                      *apiConns // the manager's counts (nil: none kept)
}

// apiConns counts the Runtime API connections of a manager's sandboxes.
type apiConns struct {
	open    atomic.Int64
	refused atomic.Uint64
}

func newRuntimeAPI() *runtimeAPI {
	return &runtimeAPI{
		ready:  make(chan struct{}),
		failed: make(chan struct{}),
		back:   make(chan struct{}, 1),
		closed: make(chan struct{}),
		open:   make(map[*apiConn]struct{}),

		bodyTimeout:    apiBodyTimeout,
		streamUncapped: streamUncapped,
		streamRate:     streamRate,
	}
}

// Bounds of the Runtime API: a sandbox is untrusted. A runtime needs one or
// two connections (aws-lambda-go keeps one alive, a curl bootstrap opens one
// per request), each extension one more, parked in /event/next. /next is a long poll, so a
// connection whose /next waits has no read deadline; between requests it
// has apiIdleTimeout.
const (
	apiMaxConns       = 16
	apiHeaderTimeout  = 10 * time.Second
	apiIdleTimeout    = 60 * time.Second
	apiMaxHeaderBytes = 16 << 10
	apiBodyTimeout    = 30 * time.Second // to read a /response or /error body
	apiWriteTimeout   = 30 * time.Second // to write an answer the runtime does not read
)

// serve accepts the runtime's connections until close. Beyond apiMaxConns
// open ones a connection is closed at once, so a runtime that hoards them
// gets an error instead of a hang, and the agent holds at most that many
// descriptors per sandbox.
func (a *runtimeAPI) serve(ln net.Listener) {
	a.mu.Lock()
	a.ln = ln
	a.mu.Unlock()
	select {
	case <-a.closed:
		ln.Close()
		return
	default:
	}
	backoff := 5 * time.Millisecond
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || a.isClosed() {
				return
			}
			// Descriptors exhausted, say: try again, as net/http does,
			// rather than leave the runtime's connections in the backlog.
			select {
			case <-a.closed:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		a.mu.Lock()
		if len(a.open) >= apiMaxConns || a.isClosed() {
			a.mu.Unlock()
			nc.Close()
			if a.conns != nil {
				a.conns.refused.Add(1)
			}
			continue
		}
		c := newAPIConn(a, nc)
		a.open[c] = struct{}{}
		a.mu.Unlock()
		if a.conns != nil {
			a.conns.open.Add(1)
		}
		go c.serve()
	}
}

func (a *runtimeAPI) isClosed() bool {
	select {
	case <-a.closed:
		return true
	default:
		return false
	}
}

// drop forgets a connection that has ended and closes it.
func (a *runtimeAPI) drop(c *apiConn) {
	a.mu.Lock()
	_, ok := a.open[c]
	delete(a.open, c)
	a.removeWaiter(c)
	a.dropExtensionWaiter(c)
	a.mu.Unlock()
	c.nc.Close()
	if ok && a.conns != nil {
		a.conns.open.Add(-1)
	}
}

// removeWaiter takes c out of waiters. Call with mu held.
func (a *runtimeAPI) removeWaiter(c *apiConn) {
	for i, w := range a.waiters {
		if w == c {
			a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
			return
		}
	}
}

func (a *runtimeAPI) close() {
	a.closeOnce.Do(func() {
		close(a.closed)
		a.mu.Lock()
		if a.ln != nil {
			a.ln.Close()
		}
		for c := range a.open {
			c.nc.Close()
		}
		a.mu.Unlock()
	})
}

// expectExtensions names the external extensions started before the
// runtime: registered calls once they all have registered (PID 1 then
// starts the runtime), and init ends once each has called /event/next.
func (a *runtimeAPI) expectExtensions(names []string, registered func()) {
	if len(names) == 0 {
		return
	}
	a.mu.Lock()
	a.expected = make(map[string]bool, len(names))
	a.unregistered = make(map[string]bool, len(names))
	for _, n := range names {
		a.expected[n] = true
		a.unregistered[n] = true
	}
	a.onRegistered = registered
	a.mu.Unlock()
}

// failInit fails an init that is not over with o, as the runtime's
// /init/error would (a failure of the init's first wins). It reports false
// once the init is over.
func (a *runtimeAPI) failInit(o outcome) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state == apiInitFailed {
		return true
	}
	if a.initOver {
		return false
	}
	a.state = apiInitFailed
	a.initErr = &o
	close(a.failed)
	return true
}

// expectPrime makes the API answer a primed shim's GET pathPrime, once,
// with what givePrime gives. Call before the shim starts.
func (a *runtimeAPI) expectPrime() {
	a.mu.Lock()
	a.prime = make(chan []byte, 1)
	a.mu.Unlock()
}

// givePrime hands the shim its function's environment (NUL-terminated
// strings, as on PID 1's start pipe). Call once, after expectPrime.
func (a *runtimeAPI) givePrime(env []byte) {
	a.mu.Lock()
	ch := a.prime
	a.mu.Unlock()
	ch <- env
}

// primeEnv answers GET pathPrime once the claim has given the
// environment, holding the connection's goroutine until then (or until the
// sandbox closes). Only a primed shell's runtime may ask, once, before its
// first /next.
func (a *runtimeAPI) primeEnv(c *apiConn, req *apiRequest) bool {
	a.mu.Lock()
	ch := a.prime
	ok := ch != nil && !a.primeAsked && a.state == apiInitialising
	if ok {
		a.primeAsked = true
	}
	a.mu.Unlock()
	if !ok {
		return c.writeError(req, http.StatusForbidden, rpc.APIErrInvalidStateTransition, "not a primed sandbox, or it asked already") && c.discardBody(req)
	}
	if !c.discardBody(req) {
		return false
	}
	select {
	case env := <-ch:
		return c.writeStatus(req, http.StatusOK, "application/octet-stream", env, "")
	case <-a.closed:
		return false
	}
}

// externalExtensions reports whether external extensions were started.
func (a *runtimeAPI) externalExtensions() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.expected != nil
}

// endInit ends init once the runtime and every external extension are
// ready: the invoker waits for ready. Call with mu held.
func (a *runtimeAPI) endInit() {
	if a.initOver || !a.runtimeReady || len(a.expected) > 0 {
		return
	}
	a.initOver = true
	a.readyAt = time.Now()
	close(a.ready)
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

// deliver hands inv to the runtime, which waits in /next. If a connection
// waits, the event is written into it here and deliver reports true, with
// inv.delivered closed. Otherwise (the runtime gave up its /next and has
// not yet asked again) inv is queued for the next /next, which closes
// inv.delivered when it has written it.
func (a *runtimeAPI) deliver(inv *invocation) bool {
	for {
		a.mu.Lock()
		n := len(a.waiters)
		if n == 0 || a.isClosed() {
			a.queued = inv
			a.mu.Unlock()
			return false
		}
		c := a.waiters[n-1]
		a.waiters = a.waiters[:n-1]
		a.handOut(inv)
		a.mu.Unlock()
		ok := c.answerNext(inv)
		if !ok {
			// The connection died under the write: give the event to
			// another /next, unless the runtime answered it meanwhile
			// (it read the event and answered on another connection).
			a.mu.Lock()
			ok = !a.takeBack(inv)
			a.mu.Unlock()
		}
		if ok {
			close(inv.delivered)
			a.invokeEvent(inv)
			return true
		}
	}
}

// handOut moves to invoking with inv. Its deadline is set at the first
// handout: one given again after a failed write keeps it. Call with mu
// held.
func (a *runtimeAPI) handOut(inv *invocation) {
	if inv.deadline.IsZero() {
		inv.deadline = time.Now().Add(inv.timeout)
	}
	a.state = apiInvoking
	a.current = inv
}

// takeBack undoes handOut for an event that could not be written and
// reports whether it did. It does not when the invocation was answered
// meanwhile (by another connection: the runtime did see it). Call with mu
// held.
func (a *runtimeAPI) takeBack(inv *invocation) bool {
	if a.state == apiInvoking && a.current == inv {
		a.state = apiWaiting
		a.current = nil
		return true
	}
	return false
}

// next is GET /next on c. It either writes an invocation queued for it, or
// leaves c waiting for deliver. The event it writes is on this goroutine;
// it reports whether c may go on.
func (a *runtimeAPI) next(c *apiConn, req *apiRequest) bool {
	a.mu.Lock()
	switch a.state {
	case apiInitialising:
		a.runtimeReady = true
		a.endInit()
	case apiAnswered:
		select {
		case a.back <- struct{}{}:
		default:
		}
	case apiInvoking, apiInitFailed:
		st := a.state
		a.mu.Unlock()
		return c.refuseTransition(req, st, "next")
	}
	a.state = apiWaiting
	if a.isClosed() {
		a.mu.Unlock()
		req.close = true
		c.writeError(req, http.StatusGone, "", "sandbox is shutting down")
		return false
	}
	inv := a.queued
	if inv == nil {
		c.waitNext(req.close)
		a.waiters = append(a.waiters, c)
		a.mu.Unlock()
		return true
	}
	a.queued = nil
	a.handOut(inv)
	a.mu.Unlock()
	if !c.writeEvent(inv, req.close) {
		a.mu.Lock()
		requeue := a.takeBack(inv)
		if requeue {
			a.queued = inv
		}
		a.mu.Unlock()
		if !requeue {
			close(inv.delivered) // answered all the same
		}
		return false
	}
	close(inv.delivered)
	a.invokeEvent(inv)
	c.invoked = true
	return !req.close
}

// take returns the current invocation if id names it, and moves to
// answered. It writes the refusal itself and returns nil otherwise.
func (a *runtimeAPI) take(c *apiConn, req *apiRequest, id []byte, call string) *invocation {
	a.mu.Lock()
	if a.state != apiInvoking {
		st := a.state
		a.mu.Unlock()
		c.refuseTransition(req, st, call)
		return nil
	}
	inv := a.current
	if string(id) != inv.id {
		a.mu.Unlock()
		c.writeError(req, http.StatusBadRequest, rpc.APIErrInvalidRequestID, "Invalid request ID")
		return nil
	}
	a.current = nil
	a.state = apiAnswered
	if call == "response" && inv.stream != nil && !inv.over {
		inv.streaming, inv.streamConn = true, c.nc
	}
	a.mu.Unlock()
	return inv
}

// endStream tells a streaming /response that the invocation is over (its
// outcome is known: answered, timed out, crashed) and waits until it is
// done with the invocation's stream, so that nothing is written to it
// after Invoke returns. A response still being read when the invocation
// did not end by it (a timeout, a crash) has its connection closed.
func (a *runtimeAPI) endStream(inv *invocation) {
	if inv.stream == nil {
		return
	}
	a.mu.Lock()
	inv.over = true
	streaming, nc := inv.streaming, inv.streamConn
	a.mu.Unlock()
	if !streaming {
		return
	}
	select {
	case <-inv.streamEnd:
	case <-time.After(100 * time.Millisecond):
		nc.Close()
		inv.stream.Abort()
		<-inv.streamEnd
	}
}

func (c *apiConn) refuseTransition(req *apiRequest, st apiState, call string) bool {
	from := [...]string{"initialising", "waiting", "invoking", "answered", "init failed"}[st]
	return c.writeError(req, http.StatusForbidden, rpc.APIErrInvalidStateTransition,
		"Transition from "+from+" to "+call+" is not allowed")
}

// response is POST /invocation/{id}/response.
func (a *runtimeAPI) response(c *apiConn, req *apiRequest, id []byte) bool {
	inv := a.take(c, req, id, "response")
	if inv == nil {
		return !req.close && c.discardBody(req)
	}
	if inv.stream != nil {
		a.mu.Lock()
		streaming := inv.streaming
		a.mu.Unlock()
		if streaming {
			return c.streamResponse(req, inv)
		}
	}
	body, tooLarge, err := c.readBody(req, maxResponse)
	switch {
	case err != nil:
		inv.finish(functionError(rpc.ErrTypeResponseError, "failed to read the runtime's response: "+err.Error()))
		c.writeError(req, http.StatusBadRequest, rpc.APIErrInvalidRequest, err.Error())
		return false
	case tooLarge:
		msg := "Response payload size exceeded maximum allowed payload size (" + strconv.Itoa(maxResponse) + " bytes)."
		inv.finish(functionError(rpc.ErrTypeResponseTooLarge, msg))
		return c.writeError(req, http.StatusRequestEntityTooLarge, rpc.APIErrRequestEntityTooLarge,
			"Exceeded maximum allowed payload size ("+strconv.Itoa(maxResponse)+" bytes).") && c.discardBody(req)
	}
	if o, ok := req.trailerError(); ok {
		inv.finish(o)
	} else {
		inv.finish(outcome{payload: body})
	}
	return c.writeAccepted(req)
}

// invocationError is POST /invocation/{id}/error.
func (a *runtimeAPI) invocationError(c *apiConn, req *apiRequest, id []byte) bool {
	inv := a.take(c, req, id, "error")
	if inv == nil {
		return !req.close && c.discardBody(req)
	}
	o, ok := c.readRuntimeError(req)
	inv.finish(o)
	if !ok {
		return false
	}
	return c.writeAccepted(req)
}

// initError records the first init error; later calls, and calls after
// init, are refused.
func (a *runtimeAPI) initError(c *apiConn, req *apiRequest) bool {
	a.mu.Lock()
	if a.state != apiInitialising {
		st := a.state
		a.mu.Unlock()
		return c.refuseTransition(req, st, "init error") && c.discardBody(req)
	}
	a.state = apiInitFailed
	a.mu.Unlock()
	o, ok := c.readRuntimeError(req)
	a.mu.Lock()
	a.initErr = &o
	a.mu.Unlock()
	close(a.failed)
	if !ok {
		return false
	}
	return c.writeAccepted(req)
}

// readRuntimeError reads the error a runtime posted (bounded, once) and
// turns it into the body the caller gets (runtimeError). ok is false when
// the connection cannot go on.
func (c *apiConn) readRuntimeError(req *apiRequest) (o outcome, ok bool) {
	body, tooLarge, err := c.readBody(req, maxErrorBody)
	switch {
	case err != nil:
		return functionError(rpc.ErrTypeResponseError, "failed to read the runtime's error: "+err.Error()), false
	case tooLarge:
		return functionError(rpc.ErrTypeResponseTooLarge, "Error payload size exceeded maximum allowed payload size ("+strconv.Itoa(maxErrorBody)+" bytes)."), c.discardBody(req)
	}
	return runtimeError(string(req.errType), body), true
}

// maxErrorBody bounds an error a runtime posts, as a response is bounded.
const maxErrorBody = maxResponse

// runtimeError turns an error the runtime posted into the body the caller
// gets. A JSON object is passed through unchanged (aws-lambda-go's
// stackTrace of frames, Node's trace, any extra field), except that a
// missing or empty errorType is filled in, from the
// Lambda-Runtime-Function-Error-Type header or as Runtime.Unknown. Anything
// else (not JSON, or JSON that is not an object) becomes a Runtime.Unknown
// error whose message is the body.
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
	return outcome{payload: apiErrorBody(errType, msg), errType: errType}
}

func apiErrorBody(errType, msg string) []byte {
	out, _ := json.Marshal(rpc.FunctionErrorPayload{ErrorType: errType, ErrorMessage: msg})
	return out
}
