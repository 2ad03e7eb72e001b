package sandbox

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"nimbus/internal/rawio"
	"nimbus/rpc"
)

// The Runtime API's HTTP/1.1, served on each connection by one goroutine
// that parses what it needs and nothing more: the request line, the
// headers that shape the exchange (Content-Length, Transfer-Encoding,
// Connection, Expect) and Lambda-Runtime-Function-Error-Type. net/http
// served it before; per warm invocation it cost two goroutine handoffs, a
// background read per request, header maps and deadline updates, about a
// third of the agent's CPU (docs/BENCHMARKS.md, #13). A runtime is
// untrusted: everything it sends is bounded (apiMaxHeaderBytes of headers,
// the payload limits for bodies) and timed (apiHeaderTimeout,
// apiBodyTimeout, apiIdleTimeout).

// apiConn is one Runtime API connection. Its goroutine (serve) reads the
// requests one at a time and answers them in order. While a /next on it
// waits for an invocation (nextOut is set), the goroutine only watches for
// the runtime's next bytes or its close; whoever hands out the invocation
// writes the event and closes nextOut.
type apiConn struct {
	a  *runtimeAPI
	nc net.Conn
	br *bufio.Reader

	wbuf []byte // this goroutine's answers
	ebuf []byte // the event of a /next
	long []byte // a header line longer than br's buffer

	nextOut   chan struct{} // non-nil while a /next waits; closed once answered
	nextClose bool          // that /next asked for the connection to close
	invoked   bool          // this goroutine has just written an event
	deadline  bool          // a read deadline is set

	req apiRequest
}

// apiRequest is the request being served. Its slices point into the
// connection's own buffers and are valid until the next request.
type apiRequest struct {
	line         []byte // a copy of the request line
	method, path []byte // in line
	errType      []byte // Lambda-Runtime-Function-Error-Type (or the extensions' -Extension- one)
	extName      []byte // Lambda-Extension-Name
	extID        []byte // Lambda-Extension-Identifier
	contentType  []byte // Content-Type
	// trailerType and trailerBody are a chunked body's
	// Lambda-Runtime-Function-Error-Type and -Error-Body trailers: an
	// error the runtime met while it sent its response.
	trailerType, trailerBody []byte
	contentLength            int64 // -1: none given
	chunked                  bool
	expect                   bool // Expect: 100-continue
	continued                bool // 100 Continue has been written
	close                    bool // the connection ends after this request
	bodyDone                 bool // the body has been read or skipped
	chunks                   io.Reader
}

const (
	apiReadBuffer  = 4 << 10
	apiCopyMax     = 64 << 10 // a payload up to this is copied after its header: one write
	apiKeepBuffer  = 128 << 10
	apiDiscardMax  = 8 << 20 // the most of a refused body read to keep the connection
	apiMaxLengthDs = 15      // digits of a Content-Length
)

var (
	errHeaderTooLarge = errors.New("request header fields too large")
	errBadRequest     = errors.New("malformed request")
	errBadEncoding    = errors.New("unsupported transfer encoding")
)

func newAPIConn(a *runtimeAPI, nc net.Conn) *apiConn {
	nc = rawio.Wrap(nc) // reads and writes the scheduler need not see
	return &apiConn{a: a, nc: nc, br: bufio.NewReaderSize(nc, apiReadBuffer)}
}

func (c *apiConn) serve() {
	defer c.a.drop(c)
	for {
		// After a /next, until the runtime's next request, the function
		// runs: no idle limit there.
		if c.nextOut != nil || c.invoked {
			c.invoked = false
			c.setReadDeadline(time.Time{})
		} else {
			c.setReadDeadline(time.Now().Add(apiIdleTimeout))
		}
		if _, err := c.br.Peek(1); err != nil {
			return // closed, or idle too long
		}
		if ch := c.nextOut; ch != nil {
			// Pipelined after a /next: answer in order.
			select {
			case <-ch:
			case <-c.a.closed:
				return
			}
			c.nextOut = nil
			if c.nextClose {
				return
			}
		}
		if !c.headerBuffered() {
			c.setReadDeadline(time.Now().Add(apiHeaderTimeout))
		}
		if err := c.readRequest(); err != nil {
			c.refuseRequest(err)
			return
		}
		if !c.handle() {
			return
		}
	}
}

// headerBuffered reports whether a whole request header is already read,
// so that no deadline is needed to read it.
func (c *apiConn) headerBuffered() bool {
	b, _ := c.br.Peek(c.br.Buffered())
	return bytes.Contains(b, []byte("\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

func (c *apiConn) setReadDeadline(t time.Time) {
	if t.IsZero() && !c.deadline {
		return
	}
	_ = c.nc.SetReadDeadline(t)
	c.deadline = !t.IsZero()
}

// refuseRequest answers a request that could not be parsed; the
// connection then closes.
func (c *apiConn) refuseRequest(err error) {
	var code int
	switch {
	case errors.Is(err, errHeaderTooLarge):
		code = http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, errBadEncoding):
		code = http.StatusNotImplemented
	case errors.Is(err, errBadRequest):
		code = http.StatusBadRequest
	default:
		return // the connection broke or timed out
	}
	c.req.close = true
	c.writeError(&c.req, code, "", err.Error())
}

// handle routes the request just read. It reports whether the connection
// goes on.
func (c *apiConn) handle() bool {
	req := &c.req
	p := req.path
	if bytes.HasPrefix(p, []byte("http://")) { // absolute form
		i := bytes.IndexByte(p[len("http://"):], '/')
		if i < 0 {
			p = []byte("/")
		} else {
			p = p[len("http://")+i:]
		}
	}
	if bytes.IndexByte(p, '%') >= 0 {
		u, err := url.PathUnescape(string(p))
		if err != nil {
			return c.writeError(req, http.StatusBadRequest, "", "malformed path") && c.discardBody(req)
		}
		p = []byte(u)
	}
	post := string(req.method) == http.MethodPost
	switch {
	case string(p) == pathNext:
		if string(req.method) != http.MethodGet {
			return c.writeMethodNotAllowed(req, http.MethodGet)
		}
		if !c.discardBody(req) {
			return false
		}
		return c.a.next(c, req)
	case string(p) == pathPrime:
		if string(req.method) != http.MethodGet {
			return c.writeMethodNotAllowed(req, http.MethodGet)
		}
		return c.a.primeEnv(c, req)
	case string(p) == pathInitErr:
		if !post {
			return c.writeMethodNotAllowed(req, http.MethodPost)
		}
		return c.a.initError(c, req)
	case string(p) == pathExtNext:
		if string(req.method) != http.MethodGet {
			return c.writeMethodNotAllowed(req, http.MethodGet)
		}
		if !c.discardBody(req) {
			return false
		}
		return c.a.extNext(c, req)
	case string(p) == pathExtRegister, string(p) == pathExtInitErr, string(p) == pathExtExitErr:
		if !post {
			return c.writeMethodNotAllowed(req, http.MethodPost)
		}
		switch string(p) {
		case pathExtRegister:
			return c.a.extRegister(c, req)
		case pathExtInitErr:
			return c.a.extInitError(c, req)
		}
		return c.a.extExitError(c, req)
	case bytes.HasPrefix(p, []byte(pathTelemetry)), bytes.HasPrefix(p, []byte(pathLogsAPI)):
		return c.writeError(req, http.StatusNotImplemented, "Telemetry.NotSupported",
			"The Telemetry API is not supported by nimbus; function logs are in the log store") && c.discardBody(req)
	case bytes.HasPrefix(p, []byte(pathInvocation)):
		rest := p[len(pathInvocation):]
		for _, call := range [...]struct {
			suffix string
			serve  func(*apiConn, *apiRequest, []byte) bool
		}{{suffixResponse, c.a.response}, {suffixError, c.a.invocationError}} {
			if !bytes.HasSuffix(rest, []byte(call.suffix)) {
				continue
			}
			id := rest[:len(rest)-len(call.suffix)]
			if len(id) == 0 || bytes.IndexByte(id, '/') >= 0 {
				break
			}
			if !post {
				return c.writeMethodNotAllowed(req, http.MethodPost)
			}
			return call.serve(c, req, id)
		}
	}
	return c.writeError(req, http.StatusNotFound, "", "404 page not found") && c.discardBody(req)
}

// readRequest reads a request line and its headers into c.req.
func (c *apiConn) readRequest() error {
	r := &c.req
	*r = apiRequest{line: r.line[:0], errType: r.errType[:0], extName: r.extName[:0], extID: r.extID[:0],
		contentType: r.contentType[:0], trailerType: r.trailerType[:0], trailerBody: r.trailerBody[:0], contentLength: -1}
	budget := apiMaxHeaderBytes
	line, err := c.readLine(&budget)
	if err != nil {
		return err
	}
	r.line = append(r.line, line...)
	sp1 := bytes.IndexByte(r.line, ' ')
	sp2 := bytes.LastIndexByte(r.line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		return errBadRequest
	}
	r.method, r.path = r.line[:sp1], r.line[sp1+1:sp2]
	http10 := false
	switch string(r.line[sp2+1:]) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		http10, r.close = true, true
	default:
		return errBadRequest
	}
	if q := bytes.IndexByte(r.path, '?'); q >= 0 {
		r.path = r.path[:q]
	}
	for {
		line, err := c.readLine(&budget)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		if err := r.header(line, http10); err != nil {
			return err
		}
	}
	if r.chunked {
		r.contentLength = -1
	}
	if r.contentLength <= 0 && !r.chunked {
		r.bodyDone = true
	}
	return nil
}

// header takes in one header line.
func (r *apiRequest) header(line []byte, http10 bool) error {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || bytes.ContainsAny(line[:colon], " \t") {
		return errBadRequest
	}
	name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
	switch {
	case equalFold(name, "Content-Length"):
		n, ok := parseLength(value)
		if !ok || (r.contentLength >= 0 && r.contentLength != n) {
			return errBadRequest
		}
		r.contentLength = n
	case equalFold(name, "Transfer-Encoding"):
		if !equalFold(value, "chunked") {
			return errBadEncoding
		}
		r.chunked = true
	case equalFold(name, "Connection"):
		for tok := range bytes.SplitSeq(value, []byte(",")) {
			tok = bytes.Trim(tok, " \t")
			switch {
			case equalFold(tok, "close"):
				r.close = true
			case equalFold(tok, "keep-alive") && http10:
				r.close = false
			}
		}
	case equalFold(name, "Expect"):
		r.expect = equalFold(value, "100-continue")
	case equalFold(name, headerErrorType), equalFold(name, headerExtErrorType):
		r.errType = append(r.errType[:0], value...)
	case equalFold(name, "Content-Type"):
		r.contentType = append(r.contentType[:0], value...)
	case equalFold(name, headerExtName):
		r.extName = append(r.extName[:0], value...)
	case equalFold(name, headerExtID):
		r.extID = append(r.extID[:0], value...)
	}
	return nil
}

// readLine reads one line of a request header, without its line ending,
// charging it to budget. The line is valid until the next read.
func (c *apiConn) readLine(budget *int) ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		c.long = append(c.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(c.long) > *budget {
				return nil, errHeaderTooLarge
			}
			line, err = c.br.ReadSlice('\n')
			c.long = append(c.long, line...)
		}
		line = c.long
	}
	if *budget -= len(line); *budget < 0 {
		return nil, errHeaderTooLarge
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > apiMaxLengthDs {
		return 0, false
	}
	var n int64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// readBody reads the request's body, at most limit bytes of it, within the
// body deadline. Past the limit it reads no more and reports tooLarge: the
// caller answers and then calls discardBody.
func (c *apiConn) readBody(req *apiRequest, limit int) (body []byte, tooLarge bool, err error) {
	if req.bodyDone {
		return []byte{}, false, nil
	}
	if req.contentLength > int64(limit) {
		return nil, true, nil
	}
	if err := c.continue100(req); err != nil {
		return nil, false, err
	}
	if req.chunked {
		c.setReadDeadline(time.Now().Add(c.a.bodyTimeout))
		req.chunks = httputil.NewChunkedReader(c.br)
		buf := bytes.NewBuffer(make([]byte, 0, 512))
		if _, err := buf.ReadFrom(io.LimitReader(req.chunks, int64(limit)+1)); err != nil {
			return nil, false, err
		}
		if buf.Len() > limit {
			return nil, true, nil
		}
		req.bodyDone = true
		return buf.Bytes(), false, c.readTrailer(req)
	}
	n := int(req.contentLength)
	if n > c.br.Buffered() {
		c.setReadDeadline(time.Now().Add(c.a.bodyTimeout))
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return nil, false, err
	}
	req.bodyDone = true
	return body, false, nil
}

// continue100 tells a client that waits for it to send its body.
func (c *apiConn) continue100(req *apiRequest) error {
	if !req.expect || req.continued {
		return nil
	}
	req.continued = true
	_, err := c.write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
	return err
}

// readTrailer reads what follows a chunked body's last chunk: trailer
// fields, of which it keeps the runtime's error (aws-lambda-go and AWS's
// runtime interface clients report an error met mid-response there), and
// the empty line.
func (c *apiConn) readTrailer(req *apiRequest) error {
	budget := apiMaxHeaderBytes
	for {
		line, err := c.readLine(&budget)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		switch {
		case equalFold(name, headerErrorType):
			req.trailerType = append(req.trailerType[:0], value...)
		case equalFold(name, headerErrorBody):
			req.trailerBody = append(req.trailerBody[:0], value...)
		}
	}
}

// trailerError is the error a runtime reported in its response's trailer,
// if it did: the type from Lambda-Runtime-Function-Error-Type, the body
// (base64 in Lambda-Runtime-Function-Error-Body) passed through as an
// /error's is.
func (req *apiRequest) trailerError() (outcome, bool) {
	if len(req.trailerType) == 0 && len(req.trailerBody) == 0 {
		return outcome{}, false
	}
	body, err := base64.StdEncoding.DecodeString(string(req.trailerBody))
	if err != nil || len(body) == 0 {
		body = bytes.Clone(req.trailerBody) // the connection's buffer is reused
	}
	if len(body) == 0 {
		return functionError(string(req.trailerType), "the runtime reported an error while it sent its response"), true
	}
	return runtimeError(string(req.trailerType), body), true
}

// discardBody skips what is left of a body nobody reads, so that the
// connection can go on. It reports whether it could: not when the body is
// too large to skip, or the client still waits for 100 Continue. (Whether
// the request asked to close is the caller's to check.)
func (c *apiConn) discardBody(req *apiRequest) bool {
	if !c.canDiscard(req) {
		return false
	}
	if req.bodyDone {
		return true
	}
	req.bodyDone = true
	c.setReadDeadline(time.Now().Add(c.a.bodyTimeout))
	if req.chunked {
		if req.chunks == nil {
			req.chunks = httputil.NewChunkedReader(c.br)
		}
		if n, err := io.CopyN(io.Discard, req.chunks, apiDiscardMax); err != io.EOF || n == apiDiscardMax {
			return false
		}
		return c.readTrailer(req) == nil
	}
	_, err := io.CopyN(io.Discard, c.br, req.contentLength)
	return err == nil
}

func (c *apiConn) canDiscard(req *apiRequest) bool {
	if req.bodyDone {
		return true
	}
	if req.expect && !req.continued {
		return false // it sends its body only if told to
	}
	return req.chunked || req.contentLength <= apiDiscardMax
}

var (
	acceptedKeep  = []byte("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"OK\"}")
	acceptedClose = []byte("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"OK\"}")
)

// writeAccepted answers 202 with Lambda's body. It reports whether the
// connection goes on.
func (c *apiConn) writeAccepted(req *apiRequest) bool {
	if req.close {
		_, _ = c.write(acceptedClose)
		return false
	}
	_, err := c.write(acceptedKeep)
	return err == nil
}

// write writes an answer of this goroutine's within apiWriteTimeout, so
// that a runtime that never reads its answers does not hold the goroutine.
func (c *apiConn) write(b []byte) (int, error) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(apiWriteTimeout))
	return c.nc.Write(b)
}

// writeError answers code: with Lambda's JSON error body for an errType,
// with msg as plain text without one. It reports whether the connection
// can go on (the caller still skips the body).
func (c *apiConn) writeError(req *apiRequest, code int, errType, msg string) bool {
	ctype, body := "text/plain; charset=utf-8", []byte(msg+"\n")
	if errType != "" {
		ctype, body = "application/json", apiErrorBody(errType, msg)
	}
	return c.writeStatus(req, code, ctype, body, "")
}

func (c *apiConn) writeMethodNotAllowed(req *apiRequest, allow string) bool {
	return c.writeStatus(req, http.StatusMethodNotAllowed, "text/plain; charset=utf-8", []byte("Method Not Allowed\n"), "Allow: "+allow+"\r\n") &&
		c.discardBody(req)
}

func (c *apiConn) writeStatus(req *apiRequest, code int, ctype string, body []byte, extra string) bool {
	if !c.canDiscard(req) {
		req.close = true
	}
	b := append(c.wbuf[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, ctype...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	b = append(b, extra...)
	if req.close {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	_, err := c.write(b)
	if cap(b) <= apiKeepBuffer {
		c.wbuf = b
	}
	return err == nil && !req.close
}

// answerExtension writes event (an extension event's JSON) to the
// /event/next this connection waits in, within a short deadline: it runs
// on the invoker's goroutine, and an extension that does not read its
// events loses its connection rather than stall the function. It reports
// whether the extension was sent it.
func (c *apiConn) answerExtension(event []byte) bool {
	closing, out := c.nextClose, c.nextOut
	b := make([]byte, 0, 160+len(event))
	b = append(b, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"+headerExtEventID+": "...)
	b = append(b, NewRequestID()...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(event)), 10)
	if closing {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, event...)
	_ = c.nc.SetWriteDeadline(time.Now().Add(extWriteTimeout))
	_, err := c.nc.Write(b)
	_ = c.nc.SetWriteDeadline(time.Time{})
	close(out)
	if err != nil || closing {
		c.nc.Close()
	}
	return err == nil
}

// waitNext leaves the connection waiting in /next. Call with the API's mu
// held, before the connection is put in waiters.
func (c *apiConn) waitNext(closing bool) {
	c.nextOut = make(chan struct{})
	c.nextClose = closing
}

// answerNext writes inv to the /next this connection waits in; it runs on
// the invoker's goroutine. It reports whether the runtime was sent it.
func (c *apiConn) answerNext(inv *invocation) bool {
	// Both fields are read before nextOut is closed: once it is, the
	// connection's goroutine may set them again for its next /next.
	closing, out := c.nextClose, c.nextOut
	ok := c.writeEvent(inv, closing)
	close(out)
	if !ok || closing {
		c.nc.Close()
	}
	return ok
}

// writeEvent writes inv as the answer to a /next, by the invocation's
// deadline: a runtime that does not read it has its invocation time out.
func (c *apiConn) writeEvent(inv *invocation, closing bool) bool {
	b := append(c.ebuf[:0], "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"+headerRequestID+": "...)
	b = append(b, inv.id...)
	b = append(b, "\r\n"+headerDeadline+": "...)
	b = strconv.AppendInt(b, inv.deadline.UnixMilli(), 10)
	b = append(b, "\r\n"+headerFunctionARN+": "...)
	b = append(b, inv.arn...)
	b = append(b, "\r\n"+headerTraceID+": "...)
	b = append(b, inv.traceID...)
	if inv.clientContext != "" {
		b = append(b, "\r\n"+headerClientContext+": "...)
		b = append(b, inv.clientContext...)
	}
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(inv.payload)), 10)
	if closing {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	_ = c.nc.SetWriteDeadline(inv.deadline)
	var err error
	if len(inv.payload) <= apiCopyMax {
		b = append(b, inv.payload...)
		_, err = c.nc.Write(b)
	} else {
		bufs := net.Buffers{b, inv.payload}
		_, err = bufs.WriteTo(c.nc)
	}
	_ = c.nc.SetWriteDeadline(time.Time{})
	if cap(b) <= apiKeepBuffer {
		c.ebuf = b
	} else {
		c.ebuf = nil
	}
	return err == nil
}

// maxStreamedResponse bounds a streamed response (Lambda's limit for
// InvokeWithResponseStream).
const maxStreamedResponse = rpc.MaxStreamedResponse

// streamChunk is the most of a streamed response read and passed on at once.
const streamChunk = 32 << 10

// Lambda's bandwidth for a streamed response: the first 6 MB as fast as
// the runtime writes them, then at most 2 MB/s (runtimeAPI's
// streamUncapped and streamRate; smaller in tests).
const (
	streamUncapped = 6 << 20
	streamRate     = 2 << 20 // bytes a second
)

// streamResponse passes a /response body to the invocation's stream as it
// arrives, chunked or not, until it ends or the function's time is up; its
// trailer may report an error met midway. The stream's Start and Write run
// here, on the connection's goroutine; a stream whose Write fails is given
// nothing more, and the body is still read to its end so that the runtime
// goes on. It reports whether the connection goes on.
func (c *apiConn) streamResponse(req *apiRequest, inv *invocation) bool {
	ended := false
	end := func() {
		if !ended {
			ended = true
			close(inv.streamEnd)
		}
	}
	defer end()
	fail := func(errType, msg string) bool {
		inv.finish(functionError(errType, msg))
		end()
		return false
	}
	if err := c.continue100(req); err != nil {
		return fail(rpc.ErrTypeResponseError, "failed to read the runtime's response: "+err.Error())
	}
	// The runtime may stream for as long as the function may run (a
	// little more: the invoker's timer, not this read, says it timed out,
	// and endStream then closes the connection).
	_ = c.nc.SetReadDeadline(inv.deadline.Add(time.Second))
	c.deadline = true
	var body io.Reader = bytes.NewReader(nil)
	switch {
	case req.chunked:
		req.chunks = httputil.NewChunkedReader(c.br)
		body = req.chunks
	case req.contentLength > 0:
		body = io.LimitReader(c.br, req.contentLength)
	}
	live := inv.stream.Start(string(req.contentType)) == nil
	buf := make([]byte, streamChunk)
	var total int64
	var capped time.Time // when the response passed the uncapped part
	for {
		n, err := body.Read(buf)
		total += int64(n)
		if over := total - c.a.streamUncapped; over > 0 && n > 0 {
			// Lambda's bandwidth: past the first 6 MB, 2 MB/s. The runtime's
			// writes wait meanwhile, as the connection stops being read.
			if capped.IsZero() {
				capped = time.Now()
			}
			due := capped.Add(time.Duration(float64(over) / float64(c.a.streamRate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-inv.done: // timed out meanwhile: endStream closes the connection
				}
				t.Stop()
			}
		}
		if total > maxStreamedResponse {
			inv.finish(functionError(rpc.ErrTypeResponseTooLarge,
				"Response payload size exceeded maximum allowed payload size ("+strconv.Itoa(maxStreamedResponse)+" bytes)."))
			end()
			req.close = true
			c.writeError(req, http.StatusRequestEntityTooLarge, rpc.APIErrRequestEntityTooLarge,
				"Exceeded maximum allowed payload size ("+strconv.Itoa(maxStreamedResponse)+" bytes).")
			return false
		}
		if n > 0 && live && inv.stream.Write(buf[:n]) != nil {
			live = false
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(rpc.ErrTypeResponseError, "failed to read the runtime's streamed response: "+err.Error())
		}
	}
	if !req.chunked && total < req.contentLength {
		return fail(rpc.ErrTypeResponseError, "failed to read the runtime's streamed response: "+io.ErrUnexpectedEOF.Error())
	}
	req.bodyDone = true
	if req.chunked {
		if err := c.readTrailer(req); err != nil {
			return fail(rpc.ErrTypeResponseError, "failed to read the runtime's streamed response: "+err.Error())
		}
	}
	if o, ok := req.trailerError(); ok {
		inv.finish(o)
	} else {
		inv.finish(outcome{streamed: true})
	}
	end()
	return c.writeAccepted(req)
}
