package sandbox

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// The Lambda Extensions API, on the Runtime API's address. An extension
// registers during init for INVOKE and SHUTDOWN events (or none, as
// aws-lambda-go's internal extension for SIGTERM does) and then waits in
// /event/next. Each invocation handed to the runtime is an INVOKE event
// for the extensions that asked for it; when the sandbox is destroyed, the
// ones that asked for SHUTDOWN get it, and a runtime with any extension
// registered gets SIGTERM before the SIGKILL (destroy, sandbox_linux.go).
//
// What nimbus does not do (docs/ARCHITECTURE.md): start external
// extensions from /opt/extensions, wait for extensions before init is over
// or before the sandbox is frozen after an invocation, and the Telemetry
// and Logs APIs, which answer 501.
const (
	pathExtRegister = "/2020-01-01/extension/register"
	pathExtNext     = "/2020-01-01/extension/event/next"
	pathExtInitErr  = "/2020-01-01/extension/init/error"
	pathExtExitErr  = "/2020-01-01/extension/exit/error"
	pathTelemetry   = "/2022-07-01/telemetry"
	pathLogsAPI     = "/2020-08-15/logs"

	headerExtName      = "Lambda-Extension-Name"
	headerExtID        = "Lambda-Extension-Identifier"
	headerExtEventID   = "Lambda-Extension-Event-Identifier"
	headerExtErrorType = "Lambda-Extension-Function-Error-Type"

	extErrMissingHeader = "Extension.MissingHeader"
	extErrRegClosed     = "Extension.RegistrationClosed"
	extErrUnknownID     = "Extension.UnknownExtensionIdentifier"
	extErrInvalidState  = "Extension.InvalidExtensionState"
	extErrInvalidName   = "Extension.InvalidExtensionName"
	extErrTooMany       = "Extension.TooManyExtensions"
	extErrInvalidEvent  = "Extension.InvalidEventType"
	extErrInvalidFormat = "InvalidRequestFormat"

	maxExtensions    = 10 // Lambda's limit; apiMaxConns leaves room for them all to wait
	maxExtBody       = 4 << 10
	maxExtPending    = 8 // events kept for an extension not in /event/next
	extWriteTimeout  = 200 * time.Millisecond
	extEventInvoke   = "INVOKE"
	extEventShutdown = "SHUTDOWN"
)

// extension is one registered extension. Its fields are the API's mu's.
type extension struct {
	id, name         string
	invoke, shutdown bool
	waiter           *apiConn // its /event/next that waits, if any
	pending          [][]byte // events it has not asked for yet, oldest first
	exited           bool     // it posted /exit/error
}

// extensionsBusy reports whether an extension that gets INVOKE events has
// not yet asked for its next one: it is still working on the last.
func (a *runtimeAPI) extensionsBusy() bool {
	if !a.anyExtensions.Load() {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.exts {
		if e.invoke && !e.exited && (e.waiter == nil || len(e.pending) > 0) {
			return true
		}
	}
	return false
}

// functionInfo is what a registration answers with.
type functionInfo struct {
	FunctionName    string `json:"functionName"`
	FunctionVersion string `json:"functionVersion"`
	Handler         string `json:"handler"`
}

// setFunction records the function whose sandbox this is, for the
// registrations' answers.
func (a *runtimeAPI) setFunction(name, version, handler string) {
	b, _ := json.Marshal(functionInfo{name, version, handler})
	a.mu.Lock()
	a.fnInfo = b
	a.mu.Unlock()
}

// hasExtensions reports whether any extension registered, and whether one
// asked for SHUTDOWN.
func (a *runtimeAPI) hasExtensions() (any, shutdown bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.exts {
		if e.shutdown && !e.exited {
			shutdown = true
		}
	}
	return len(a.exts) > 0, shutdown
}

// extRegister is POST /extension/register: only during init.
func (a *runtimeAPI) extRegister(c *apiConn, req *apiRequest) bool {
	body, tooLarge, err := c.readBody(req, maxExtBody)
	if err != nil {
		return false
	}
	if tooLarge {
		return c.writeError(req, http.StatusBadRequest, extErrInvalidFormat, "the registration's body is over 4 KB") && c.discardBody(req)
	}
	var reg struct {
		Events []string `json:"events"`
	}
	if len(body) > 0 && json.Unmarshal(body, &reg) != nil {
		return c.writeError(req, http.StatusBadRequest, extErrInvalidFormat, "the registration's body is not {\"events\": [...]}")
	}
	ext := &extension{name: string(req.extName)}
	for _, ev := range reg.Events {
		switch ev {
		case extEventInvoke:
			ext.invoke = true
		case extEventShutdown:
			ext.shutdown = true
		default:
			return c.writeError(req, http.StatusBadRequest, extErrInvalidEvent, "unknown event type "+ev+": INVOKE and SHUTDOWN are")
		}
	}
	if ext.name == "" {
		return c.writeError(req, http.StatusForbidden, extErrMissingHeader, headerExtName+" is missing")
	}
	a.mu.Lock()
	switch {
	case a.initOver || a.state == apiInitFailed:
		a.mu.Unlock()
		return c.writeError(req, http.StatusForbidden, extErrRegClosed, "extensions register during init only")
	case len(a.exts) >= maxExtensions:
		a.mu.Unlock()
		return c.writeError(req, http.StatusForbidden, extErrTooMany, "at most 10 extensions")
	case slices.ContainsFunc(a.exts, func(e *extension) bool { return e.name == ext.name }):
		a.mu.Unlock()
		return c.writeError(req, http.StatusForbidden, extErrInvalidName, "an extension named "+ext.name+" is registered already")
	}
	ext.id = NewRequestID()
	a.exts = append(a.exts, ext)
	a.anyExtensions.Store(true)
	info := a.fnInfo
	var registered func()
	if a.unregistered[ext.name] {
		delete(a.unregistered, ext.name)
		if len(a.unregistered) == 0 {
			registered, a.onRegistered = a.onRegistered, nil
		}
	}
	a.mu.Unlock()
	if registered != nil {
		registered() // the runtime starts
	}
	if info == nil {
		info = []byte("{}")
	}
	return c.writeStatus(req, http.StatusOK, "application/json", info, headerExtID+": "+ext.id+"\r\n")
}

// extension returns the extension req names, writing the refusal itself
// when there is none. Call with mu held; it unlocks it when it refuses.
func (a *runtimeAPI) extensionOf(c *apiConn, req *apiRequest) (*extension, bool) {
	if len(req.extID) == 0 {
		a.mu.Unlock()
		return nil, c.writeError(req, http.StatusForbidden, extErrMissingHeader, headerExtID+" is missing")
	}
	for _, e := range a.exts {
		if e.id == string(req.extID) {
			return e, true
		}
	}
	a.mu.Unlock()
	return nil, c.writeError(req, http.StatusForbidden, extErrUnknownID, "unknown extension "+string(req.extID))
}

// extNext is GET /extension/event/next: an event kept for the extension,
// or a wait for the next one.
func (a *runtimeAPI) extNext(c *apiConn, req *apiRequest) bool {
	a.mu.Lock()
	ext, ok := a.extensionOf(c, req)
	if ext == nil {
		return ok
	}
	if ext.waiter != nil || ext.exited {
		a.mu.Unlock()
		return c.writeError(req, http.StatusForbidden, extErrInvalidState, "this extension waits in /event/next already, or has exited")
	}
	if a.expected[ext.name] {
		// An external extension is ready: init may end.
		delete(a.expected, ext.name)
		a.endInit()
	}
	if a.isClosed() {
		a.mu.Unlock()
		req.close = true
		c.writeError(req, http.StatusGone, "", "sandbox is shutting down")
		return false
	}
	if len(ext.pending) > 0 {
		ev := ext.pending[0]
		ext.pending = ext.pending[1:]
		a.mu.Unlock()
		return c.writeStatus(req, http.StatusOK, "application/json", ev, headerExtEventID+": "+NewRequestID()+"\r\n")
	}
	c.waitNext(req.close)
	ext.waiter = c
	a.mu.Unlock()
	return true
}

// extInitError is POST /extension/init/error: the init fails, as a
// runtime's /init/error makes it, with the extension's error type.
func (a *runtimeAPI) extInitError(c *apiConn, req *apiRequest) bool {
	a.mu.Lock()
	ext, ok := a.extensionOf(c, req)
	if ext == nil {
		return ok && c.discardBody(req)
	}
	a.mu.Unlock()
	return a.initError(c, req)
}

// extExitError is POST /extension/exit/error: the extension is leaving;
// it gets no more events.
func (a *runtimeAPI) extExitError(c *apiConn, req *apiRequest) bool {
	a.mu.Lock()
	ext, ok := a.extensionOf(c, req)
	if ext == nil {
		return ok && c.discardBody(req)
	}
	ext.exited = true
	ext.pending = nil
	waiter := ext.waiter
	ext.waiter = nil
	a.mu.Unlock()
	if waiter != nil {
		waiter.nc.Close() // its /event/next will get nothing more
	}
	if !c.discardBody(req) {
		return false
	}
	return c.writeAccepted(req)
}

// dropExtensionWaiter forgets c as an extension's waiting /event/next.
// Call with mu held.
func (a *runtimeAPI) dropExtensionWaiter(c *apiConn) {
	for _, e := range a.exts {
		if e.waiter == c {
			e.waiter = nil
		}
	}
}

// extensionEvent gives event to the extensions for which want is true:
// written into the /event/next of those that wait, kept for the others.
func (a *runtimeAPI) extensionEvent(want func(*extension) bool, event []byte) {
	for _, c := range a.handEvent(want, event) {
		c.answerExtension(event)
	}
}

// handEvent gives event to the extensions want picks: it returns the
// connections waiting in /event/next to write it to, and queues it for the
// others. From its return on, each of them counts as busy with it
// (extensionsBusy).
func (a *runtimeAPI) handEvent(want func(*extension) bool, event []byte) []*apiConn {
	var out []*apiConn
	a.mu.Lock()
	for _, e := range a.exts {
		if e.exited || !want(e) {
			continue
		}
		if e.waiter != nil {
			out = append(out, e.waiter)
			e.waiter = nil
			continue
		}
		if len(e.pending) >= maxExtPending {
			e.pending = e.pending[1:]
		}
		e.pending = append(e.pending, event)
	}
	a.mu.Unlock()
	return out
}

// invokeEvent tells the extensions that asked for INVOKE of inv. The
// event is theirs at once (they are busy with it from here: a freeze or the
// next invocation waits for them), and written on a goroutine of its own:
// neither the invoker nor the runtime's connection waits for the writes.
// Call after inv is handed out (its deadline is set).
func (a *runtimeAPI) invokeEvent(inv *invocation) {
	if !a.anyExtensions.Load() {
		return
	}
	ev := invokeEventBody(inv)
	if out := a.handEvent(func(e *extension) bool { return e.invoke }, ev); len(out) > 0 {
		go func() {
			for _, c := range out {
				c.answerExtension(ev)
			}
		}()
	}
}

func invokeEventBody(inv *invocation) []byte {
	ev, _ := json.Marshal(struct {
		EventType          string `json:"eventType"`
		DeadlineMs         int64  `json:"deadlineMs"`
		RequestID          string `json:"requestId"`
		InvokedFunctionArn string `json:"invokedFunctionArn"`
		Tracing            struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"tracing"`
	}{EventType: extEventInvoke, DeadlineMs: inv.deadline.UnixMilli(), RequestID: inv.id, InvokedFunctionArn: inv.arn,
		Tracing: struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		}{"X-Amzn-Trace-Id", inv.traceID}})
	return ev
}

// shutdownEvent tells the extensions that asked for SHUTDOWN that the
// sandbox ends by deadline, for reason (spindown, timeout or failure).
func (a *runtimeAPI) shutdownEvent(reason string, deadline time.Time) {
	ev, _ := json.Marshal(struct {
		EventType      string `json:"eventType"`
		ShutdownReason string `json:"shutdownReason"`
		DeadlineMs     int64  `json:"deadlineMs"`
	}{extEventShutdown, reason, deadline.UnixMilli()})
	a.extensionEvent(func(e *extension) bool { return e.shutdown }, ev)
}
