package gateway

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"nimbus/rpc"
)

// Serving function URLs: a request to http://<id>.<URLDomain>/... (when
// Options.URLDomain is set) or to /lambda-url/<id>/... reaches the
// function as the payload format 2.0 event, and the function's answer is
// read as Lambda reads it. Requests to a URL are not Lambda API calls:
// they carry no SigV4 signature, and their errors are the URL's ({"Message":
// ...}), not the API's.

// URLPathPrefix is where path-based function URLs live.
const URLPathPrefix = "/lambda-url/"

// urlTarget reports whether r is a request to a function URL, and then
// the URL's id and the path the function sees.
func (g *Gateway) urlTarget(r *http.Request) (id, path string, ok bool) {
	if d := g.opts.URLDomain; d != "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if label, ok := strings.CutSuffix(strings.ToLower(host), "."+strings.ToLower(d)); ok && label != "" && !strings.Contains(label, ".") {
			return label, r.URL.EscapedPath(), true
		}
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), URLPathPrefix)
	if !ok {
		return "", "", false
	}
	id, path, _ = strings.Cut(rest, "/")
	return id, "/" + path, true
}

// urlError answers a function URL request with Lambda's URL error body.
func urlError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", http.StatusText(status))
	w.WriteHeader(status)
	body, _ := json.Marshal(map[string]string{"Message": msg})
	_, _ = w.Write(body)
}

// validURLID is the shape of a URL id: 32 lowercase letters and digits.
func validURLID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// serveURL serves one request to a function URL.
func (g *Gateway) serveURL(w http.ResponseWriter, r *http.Request, id, path, reqID string) {
	if !validURLID(id) {
		urlError(w, http.StatusNotFound, "Not Found")
		return
	}
	resp, err := g.opts.Ops.ResolveURL(r.Context(), &rpc.ResolveURLRequest{ID: id})
	if err != nil {
		if errors.Is(err, rpc.ErrResourceNotFound) {
			urlError(w, http.StatusNotFound, "Not Found")
		} else {
			urlError(w, http.StatusInternalServerError, "Internal Server Error")
		}
		return
	}
	cfg := resp.Config
	origin := r.Header.Get("Origin")
	if cfg.Cors != nil && r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		preflight(w, r, cfg.Cors, origin)
		return
	}
	if cfg.AuthType == rpc.URLAuthToken && !bearerMatches(r.Header.Get("Authorization"), cfg.Token) {
		urlError(w, http.StatusForbidden, "Forbidden")
		return
	}
	// The body may be base64-encoded into the event: the raw limit is the
	// event's, and the event is checked again once built.
	body, release, err := g.readBody(w, r, rpc.MaxSyncPayload, func() error { return errURLTooLarge })
	if err != nil {
		if errors.Is(err, errURLTooLarge) || errors.Is(err, rpc.ErrRequestTooLarge) {
			urlError(w, http.StatusRequestEntityTooLarge, errURLTooLarge.Message)
		} else {
			urlError(w, http.StatusBadRequest, "The request body could not be read")
		}
		return
	}
	defer release()
	event, err := buildURLEvent(r, id, path, reqID, body, time.Now())
	if err != nil || len(event) > rpc.MaxSyncPayload {
		urlError(w, http.StatusRequestEntityTooLarge, errURLTooLarge.Message)
		return
	}
	if cfg.InvokeMode == rpc.URLInvokeStreaming {
		g.serveURLStream(w, r, cfg, event, origin, reqID)
		return
	}
	out, err := g.opts.Ops.Invoke(r.Context(), &rpc.InvokeRequest{FunctionName: cfg.FunctionName, Qualifier: cfg.Qualifier, Payload: event})
	if err != nil {
		g.urlInvokeError(w, cfg, reqID, err)
		return
	}
	if out.RequestID != "" {
		w.Header().Set("X-Amzn-RequestId", out.RequestID)
	}
	if out.FunctionError != "" {
		urlError(w, http.StatusBadGateway, "Internal Server Error")
		return
	}
	res, err := parseURLResponse(out.Payload)
	if err != nil {
		g.log.Debug("function URL response malformed", "function", cfg.FunctionName, "request_id", reqID, "err", err)
		urlError(w, http.StatusBadGateway, "Internal Server Error")
		return
	}
	h := w.Header()
	for k, v := range res.Headers {
		h.Set(k, v)
	}
	for _, c := range res.Cookies {
		h.Add("Set-Cookie", c)
	}
	if cfg.Cors != nil && origin != "" {
		corsHeaders(h, cfg.Cors, origin)
	}
	h.Set("Content-Length", strconv.Itoa(len(res.Body)))
	w.WriteHeader(res.StatusCode)
	if r.Method != http.MethodHead {
		_, _ = w.Write(res.Body)
	}
}

// urlInvokeError answers a function URL's invocation that failed on the
// platform's side.
func (g *Gateway) urlInvokeError(w http.ResponseWriter, cfg *rpc.FunctionURL, reqID string, err error) {
	e := rpc.AsError(err)
	status := statusOf(e.Code)
	if status == http.StatusInternalServerError {
		g.log.Warn("function URL invoke failed", "function", cfg.FunctionName, "request_id", reqID, "err", err)
		urlError(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	if e.Code == rpc.CodeTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	urlError(w, status, e.Message)
}

var errURLTooLarge = &rpc.Error{Code: rpc.CodeRequestTooLarge, Message: "Request must be smaller than 6291456 bytes for the InvokeFunction operation"}

// bearerMatches checks an Authorization header against a URL's token in
// constant time.
func bearerMatches(header, token string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// originAllowed reports whether CORS allows origin, and the value of
// Access-Control-Allow-Origin to answer with.
func originAllowed(c *rpc.Cors, origin string) (string, bool) {
	for _, o := range c.AllowOrigins {
		if o == "*" {
			if c.AllowCredentials {
				return origin, true // "*" may not be sent with credentials
			}
			return "*", true
		}
		if strings.EqualFold(o, origin) {
			return origin, true
		}
	}
	return "", false
}

func corsHeaders(h http.Header, c *rpc.Cors, origin string) {
	allow, ok := originAllowed(c, origin)
	h.Add("Vary", "Origin")
	if !ok {
		return
	}
	h.Set("Access-Control-Allow-Origin", allow)
	if c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if len(c.ExposeHeaders) > 0 {
		h.Set("Access-Control-Expose-Headers", strings.Join(c.ExposeHeaders, ","))
	}
}

// preflight answers a CORS preflight without invoking the function, as
// Lambda does for a URL with CORS configured. A disallowed origin or
// method gets no Access-Control-Allow-* headers, which the browser reads
// as a refusal.
func preflight(w http.ResponseWriter, r *http.Request, c *rpc.Cors, origin string) {
	h := w.Header()
	method := r.Header.Get("Access-Control-Request-Method")
	methodOK := false
	for _, m := range c.AllowMethods {
		if m == "*" || strings.EqualFold(m, method) {
			methodOK = true
		}
	}
	if _, ok := originAllowed(c, origin); ok && methodOK {
		corsHeaders(h, c, origin)
		h.Set("Access-Control-Allow-Methods", strings.Join(c.AllowMethods, ","))
		if len(c.AllowHeaders) > 0 {
			h.Set("Access-Control-Allow-Headers", strings.Join(c.AllowHeaders, ","))
		}
		if c.MaxAge > 0 {
			h.Set("Access-Control-Max-Age", strconv.Itoa(c.MaxAge))
		}
	} else {
		h.Add("Vary", "Origin")
	}
	w.WriteHeader(http.StatusOK)
}

// urlEvent is the payload format 2.0 event of a function URL request.
type urlEvent struct {
	Version               string            `json:"version"`
	RouteKey              string            `json:"routeKey"`
	RawPath               string            `json:"rawPath"`
	RawQueryString        string            `json:"rawQueryString"`
	Cookies               []string          `json:"cookies,omitempty"`
	Headers               map[string]string `json:"headers"`
	QueryStringParameters map[string]string `json:"queryStringParameters,omitempty"`
	RequestContext        urlRequestContext `json:"requestContext"`
	Body                  string            `json:"body,omitempty"`
	IsBase64Encoded       bool              `json:"isBase64Encoded"`
}

type urlRequestContext struct {
	AccountID    string  `json:"accountId"`
	APIID        string  `json:"apiId"`
	DomainName   string  `json:"domainName"`
	DomainPrefix string  `json:"domainPrefix"`
	HTTP         urlHTTP `json:"http"`
	RequestID    string  `json:"requestId"`
	RouteKey     string  `json:"routeKey"`
	Stage        string  `json:"stage"`
	Time         string  `json:"time"`
	TimeEpoch    int64   `json:"timeEpoch"`
}

type urlHTTP struct {
	Method    string `json:"method"`
	Path      string `json:"path"`
	Protocol  string `json:"protocol"`
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent"`
}

// urlEventTimeLayout is requestContext.time's layout.
const urlEventTimeLayout = "02/Jan/2006:15:04:05 -0700"

// buildURLEvent makes the payload format 2.0 event of a request: headers
// lower-cased with repeated values joined by commas, cookies apart,
// repeated query parameters joined by commas, the body as text when its
// type is textual and it is UTF-8, else base64.
func buildURLEvent(r *http.Request, id, rawPath, reqID string, body []byte, now time.Time) ([]byte, error) {
	path, err := urlUnescapePath(rawPath)
	if err != nil {
		path = rawPath
	}
	ev := urlEvent{
		Version:        "2.0",
		RouteKey:       "$default",
		RawPath:        path,
		RawQueryString: r.URL.RawQuery,
		Headers:        make(map[string]string, len(r.Header)+1),
		RequestContext: urlRequestContext{
			AccountID:    "anonymous",
			APIID:        id,
			DomainName:   r.Host,
			DomainPrefix: id,
			HTTP: urlHTTP{
				Method:    r.Method,
				Path:      path,
				Protocol:  r.Proto,
				SourceIP:  sourceIP(r.RemoteAddr),
				UserAgent: r.UserAgent(),
			},
			RequestID: reqID,
			RouteKey:  "$default",
			Stage:     "$default",
			Time:      now.UTC().Format(urlEventTimeLayout),
			TimeEpoch: now.UnixMilli(),
		},
	}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if lk == "cookie" {
			for _, v := range vs {
				for _, c := range strings.Split(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						ev.Cookies = append(ev.Cookies, c)
					}
				}
			}
			continue
		}
		ev.Headers[lk] = strings.Join(vs, ",")
	}
	if r.Host != "" {
		ev.Headers["host"] = r.Host
	}
	if q := r.URL.Query(); len(q) > 0 {
		ev.QueryStringParameters = make(map[string]string, len(q))
		for k, vs := range q {
			ev.QueryStringParameters[k] = strings.Join(vs, ",")
		}
	}
	if len(body) > 0 {
		if textual(r.Header.Get("Content-Type")) && utf8.Valid(body) {
			ev.Body = string(body)
		} else {
			ev.Body = base64.StdEncoding.EncodeToString(body)
			ev.IsBase64Encoded = true
		}
	}
	return json.Marshal(&ev)
}

func urlUnescapePath(p string) (string, error) { return url.PathUnescape(p) }

func sourceIP(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// textual reports whether a body of this Content-Type goes into the event
// as text (Lambda's rule: text/*, JSON, XML, JavaScript, forms).
func textual(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"),
		mt == "application/json", strings.HasSuffix(mt, "+json"),
		mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		mt == "application/javascript", mt == "application/x-www-form-urlencoded":
		return true
	}
	return false
}

// urlResponse is a function's answer to a URL request, as sent.
type urlResponse struct {
	StatusCode int
	Headers    map[string]string
	Cookies    []string
	Body       []byte
}

// parseURLResponse reads a function's answer as Lambda does for function
// URLs: a JSON object with statusCode is the response (statusCode,
// headers, cookies, body, isBase64Encoded); any other JSON value is a 200
// application/json response whose body is the value itself. Anything
// else is malformed (the caller answers 502). The payload is at most
// rpc.MaxResponsePayload: decoding allocates in proportion to it.
func parseURLResponse(payload []byte) (*urlResponse, error) {
	if !json.Valid(payload) {
		return nil, errors.New("the response is not JSON")
	}
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &probe); err != nil {
			return nil, err
		}
		if _, structured := probe["statusCode"]; structured {
			return structuredResponse(probe)
		}
	}
	return &urlResponse{StatusCode: http.StatusOK, Headers: map[string]string{"Content-Type": "application/json"}, Body: trimmed}, nil
}

func structuredResponse(m map[string]json.RawMessage) (*urlResponse, error) {
	var out urlResponse
	if err := json.Unmarshal(m["statusCode"], &out.StatusCode); err != nil {
		return nil, errors.New("statusCode is not an integer")
	}
	if out.StatusCode < 100 || out.StatusCode > 599 {
		return nil, errors.New("statusCode out of range")
	}
	if raw, ok := m["headers"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &out.Headers); err != nil {
			return nil, errors.New("headers is not an object of strings")
		}
		for k, v := range out.Headers {
			if k == "" || strings.ContainsAny(k, "\r\n:\x00 ") || strings.ContainsAny(v, "\r\n\x00") {
				return nil, errors.New("a header name or value is not allowed")
			}
		}
	}
	if raw, ok := m["cookies"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &out.Cookies); err != nil {
			return nil, errors.New("cookies is not an array of strings")
		}
		for _, c := range out.Cookies {
			if strings.ContainsAny(c, "\r\n\x00") {
				return nil, errors.New("a cookie is not allowed")
			}
		}
	}
	var body string
	if raw, ok := m["body"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &body); err != nil {
			return nil, errors.New("body is not a string")
		}
	}
	var b64 bool
	if raw, ok := m["isBase64Encoded"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &b64); err != nil {
			return nil, errors.New("isBase64Encoded is not a boolean")
		}
	}
	if b64 {
		dec, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return nil, errors.New("body is not base64")
		}
		out.Body = dec
	} else {
		out.Body = []byte(body)
	}
	if _, ok := headerValue(out.Headers, "Content-Type"); !ok && len(out.Body) > 0 {
		if out.Headers == nil {
			out.Headers = map[string]string{}
		}
		out.Headers["Content-Type"] = "application/json"
	}
	return &out, nil
}

func headerValue(h map[string]string, name string) (string, bool) {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}
