package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"nimbus/rpc"
)

// Operations are the node's operations, the very functions its rpc
// server's handlers are. Every field is required.
type Operations struct {
	CreateFunction       func(context.Context, *rpc.CreateFunctionRequest) (*rpc.FunctionResponse, error)
	GetFunction          func(context.Context, *rpc.GetFunctionRequest) (*rpc.FunctionResponse, error)
	UpdateFunctionCode   func(context.Context, *rpc.UpdateCodeRequest) (*rpc.FunctionResponse, error)
	UpdateFunctionConfig func(context.Context, *rpc.UpdateConfigRequest) (*rpc.FunctionResponse, error)
	DeleteFunction       func(context.Context, *rpc.GetFunctionRequest) (*rpc.DeleteFunctionResponse, error)
	ListFunctions        func(context.Context, *rpc.ListFunctionsRequest) (*rpc.ListFunctionsResponse, error)
	Invoke               func(context.Context, *rpc.InvokeRequest) (*rpc.InvokeResponse, error)
	// InvokeStream is a synchronous invocation whose response is given to
	// onPart as the function streams it (rpc.MethodInvokeStream's parts);
	// onPart gives up when its ctx ends.
	InvokeStream      func(ctx context.Context, req *rpc.InvokeRequest, onPart func(context.Context, *rpc.InvokeStreamPart) error) (*rpc.InvokeResponse, error)
	PutConcurrency    func(context.Context, *rpc.PutConcurrencyRequest) (*rpc.ConcurrencyResponse, error)
	GetConcurrency    func(context.Context, *rpc.GetFunctionRequest) (*rpc.ConcurrencyResponse, error)
	DeleteConcurrency func(context.Context, *rpc.GetFunctionRequest) (*rpc.ConcurrencyResponse, error)
	AccountSettings   func(context.Context, *rpc.AccountSettingsRequest) (*rpc.AccountSettingsResponse, error)

	// Versions and aliases.
	PublishVersion func(context.Context, *rpc.PublishVersionRequest) (*rpc.FunctionResponse, error)
	ListVersions   func(context.Context, *rpc.ListVersionsRequest) (*rpc.ListVersionsResponse, error)
	CreateAlias    func(context.Context, *rpc.CreateAliasRequest) (*rpc.AliasResponse, error)
	UpdateAlias    func(context.Context, *rpc.UpdateAliasRequest) (*rpc.AliasResponse, error)
	GetAlias       func(context.Context, *rpc.GetAliasRequest) (*rpc.AliasResponse, error)
	ListAliases    func(context.Context, *rpc.ListAliasesRequest) (*rpc.ListAliasesResponse, error)
	DeleteAlias    func(context.Context, *rpc.GetAliasRequest) (*rpc.DeleteAliasResponse, error)

	// Function URLs: their configuration, and ResolveURL to serve them.
	CreateURL  func(context.Context, *rpc.CreateURLRequest) (*rpc.URLResponse, error)
	UpdateURL  func(context.Context, *rpc.UpdateURLRequest) (*rpc.URLResponse, error)
	GetURL     func(context.Context, *rpc.GetURLRequest) (*rpc.URLResponse, error)
	DeleteURL  func(context.Context, *rpc.GetURLRequest) (*rpc.DeleteURLResponse, error)
	ListURLs   func(context.Context, *rpc.ListURLsRequest) (*rpc.ListURLsResponse, error)
	ResolveURL func(context.Context, *rpc.ResolveURLRequest) (*rpc.URLResponse, error)

	// Asynchronous invocation configuration.
	PutEventConfig    func(context.Context, *rpc.PutEventConfigRequest) (*rpc.EventConfigResponse, error)
	GetEventConfig    func(context.Context, *rpc.GetEventConfigRequest) (*rpc.EventConfigResponse, error)
	DeleteEventConfig func(context.Context, *rpc.GetEventConfigRequest) (*rpc.DeleteEventConfigResponse, error)
	ListEventConfigs  func(context.Context, *rpc.GetEventConfigRequest) (*rpc.ListEventConfigsResponse, error)

	// Event source mappings: queue triggers.
	CreateTrigger func(context.Context, *rpc.CreateTriggerRequest) (*rpc.TriggerResponse, error)
	UpdateTrigger func(context.Context, *rpc.UpdateTriggerRequest) (*rpc.TriggerResponse, error)
	GetTrigger    func(context.Context, *rpc.TriggerRequest) (*rpc.TriggerResponse, error)
	ListTriggers  func(context.Context, *rpc.ListTriggersRequest) (*rpc.ListTriggersResponse, error)
	DeleteTrigger func(context.Context, *rpc.TriggerRequest) (*rpc.DeleteTriggerResponse, error)

	// Layers.
	PublishLayer func(context.Context, *rpc.PublishLayerRequest) (*rpc.LayerVersionResponse, error)
	ListLayers   func(context.Context, *rpc.ListLayersRequest) (*rpc.ListLayersResponse, error)
	GetLayer     func(context.Context, *rpc.GetLayerRequest) (*rpc.GetLayerResponse, error)
	DeleteLayer  func(context.Context, *rpc.DeleteLayerRequest) (*rpc.DeleteLayerResponse, error)
}

// Options configure a Gateway. Zero values take the defaults noted.
type Options struct {
	Ops Operations
	// ARNs is the region and account of the ARNs in answers: the node's,
	// so that they are the ones in its errors and sandboxes (the zero
	// value: the default scope).
	ARNs rpc.ARNScope
	// MaxZipSize is the largest code zip an upload may carry (required:
	// the code store's limit). The body limit of CreateFunction and
	// UpdateFunctionCode is its base64 length plus room for the rest.
	MaxZipSize int64
	// MaxConns bounds open connections (default 1024); MaxConnsPerIP
	// those from one address (default 256). Past the first, Accept waits;
	// past the second, the new connection is closed at once.
	MaxConns, MaxConnsPerIP int
	// MaxBufferedBytes bounds the request bodies held in memory at once,
	// all requests together, a code upload counting its decoded zip too
	// (default 512 MiB). A request waits for room.
	MaxBufferedBytes int64
	// ReadHeaderTimeout (default 10 s) bounds reading a request's headers;
	// BodyTimeout (default 2 min) bounds reading its body, and writing the
	// response once it begins (the operation itself may take as long as
	// the function's timeout); IdleTimeout (default 2 min) bounds a
	// kept-alive connection between requests.
	ReadHeaderTimeout, BodyTimeout, IdleTimeout time.Duration
	Logger                                      *slog.Logger
	// URLDomain, when set, makes requests to <url-id>.<URLDomain> function
	// URL requests (urlserve.go); path-based ones (/lambda-url/<id>/) are
	// served either way.
	URLDomain string
}

func (o *Options) setDefaults() error {
	if o.MaxZipSize <= 0 {
		return errors.New("gateway: MaxZipSize is required")
	}
	if o.MaxConns == 0 {
		o.MaxConns = 1024
	}
	if o.MaxConnsPerIP == 0 {
		o.MaxConnsPerIP = 256
	}
	if o.MaxBufferedBytes == 0 {
		o.MaxBufferedBytes = 512 << 20
	}
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = 10 * time.Second
	}
	if o.BodyTimeout == 0 {
		o.BodyTimeout = 2 * time.Minute
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// maxHeaderBytes bounds a request's header block (Lambda's own requests
// stay far below it; X-Amz-Client-Context is the largest, 3583 bytes).
const maxHeaderBytes = 64 << 10

// Gateway serves Lambda's REST API. Its fields are set by New and not
// changed; buffered guards the memory held by request bodies.
type Gateway struct {
	opts        Options
	log         *slog.Logger
	buffered    *semaphore.Weighted
	srv         *http.Server
	uploadLimit int64                         // body limit of CreateFunction and UpdateFunctionCode
	ln          atomic.Pointer[limitListener] // set by Serve
}

// New returns a gateway over opts.Ops.
func New(opts Options) (*Gateway, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	g := &Gateway{
		opts:        opts,
		log:         opts.Logger,
		buffered:    semaphore.NewWeighted(opts.MaxBufferedBytes),
		uploadLimit: base64Len(opts.MaxZipSize) + uploadSlack,
	}
	if g.uploadLimit+g.uploadLimit/4*3 > opts.MaxBufferedBytes {
		return nil, fmt.Errorf("gateway: MaxBufferedBytes %d is below one upload (%d)", opts.MaxBufferedBytes, g.uploadLimit)
	}
	g.srv = &http.Server{
		Handler:           g,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return g, nil
}

// uploadSlack is the room an upload's body has besides the base64 zip:
// the configuration fields (an environment is at most 4 KB).
const uploadSlack = 64 << 10

func base64Len(n int64) int64 { return (n + 2) / 3 * 4 }

// Serve accepts connections on ln (bounded as Options say) until Close.
func (g *Gateway) Serve(ln net.Listener) error {
	l := newLimitListener(ln, g.opts.MaxConns, g.opts.MaxConnsPerIP)
	g.ln.Store(l)
	err := g.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops serving and closes every connection.
func (g *Gateway) Close() error { return g.srv.Close() }

// Handler returns the gateway as an http.Handler, for a caller that runs
// its own server (its bounds are then the caller's).
func (g *Gateway) Handler() http.Handler { return g }

// ServeHTTP routes one request to its operation.
func (g *Gateway) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &deadlineWriter{ResponseWriter: rw, timeout: g.opts.BodyTimeout}
	reqID := newRequestID()
	w.Header().Set("X-Amzn-RequestId", reqID)
	if id, path, ok := g.urlTarget(r); ok { // a function URL, not an API call
		g.serveURL(w, r, id, path, reqID)
		return
	}
	if _, err := ParseAuthorization(r.Header.Values("Authorization")); err != nil {
		writeError(w, err)
		return
	}
	op, args, err := route(r.Method, r.URL.EscapedPath())
	if err != nil {
		writeError(w, err)
		return
	}
	h := g.handler(op)
	if h == nil {
		writeError(w, apiError(CodeNotImplemented, "%s is not supported by nimbus yet%s", op, notImplementedWhy(op)))
		return
	}
	if err := h(w, r, args); err != nil {
		switch {
		case errors.Is(err, context.Canceled):
		case statusOf(rpc.AsError(err).Code) >= 500 && rpc.AsError(err).Code != CodeNotImplemented:
			g.log.Warn("request failed", "op", op, "function", args.Function, "request_id", reqID, "err", err)
		default:
			g.log.Debug("request refused", "op", op, "function", args.Function, "request_id", reqID, "err", err)
		}
		writeError(w, err)
	}
}

// deadlineWriter sets the connection's write deadline when the response
// begins, so a client that stops reading cannot hold its connection (and
// the response's bytes) for ever.
type deadlineWriter struct {
	http.ResponseWriter
	timeout time.Duration
	started bool
}

func (d *deadlineWriter) WriteHeader(status int) {
	if !d.started {
		d.started = true
		_ = http.NewResponseController(d.ResponseWriter).SetWriteDeadline(time.Now().Add(d.timeout))
	}
	d.ResponseWriter.WriteHeader(status)
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	if !d.started {
		d.WriteHeader(http.StatusOK)
	}
	return d.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// handlerFunc serves one operation; an error it returns is answered as
// Lambda's error (it must not have written anything then).
type handlerFunc func(w http.ResponseWriter, r *http.Request, a pathArgs) error

func (g *Gateway) handler(op string) handlerFunc {
	switch op {
	case opCreateFunction:
		return g.createFunction
	case opGetFunction:
		return g.getFunction
	case opGetFunctionConfiguration:
		return g.getFunctionConfiguration
	case opUpdateFunctionCode:
		return g.updateFunctionCode
	case opUpdateFunctionConfiguration:
		return g.updateFunctionConfiguration
	case opDeleteFunction:
		return g.deleteFunction
	case opListFunctions:
		return g.listFunctions
	case opInvoke:
		return g.invoke
	case opInvokeWithResponseStream:
		return g.invokeWithResponseStream
	case opPutFunctionConcurrency:
		return g.putConcurrency
	case opGetFunctionConcurrency:
		return g.getConcurrency
	case opDeleteFunctionConcurrency:
		return g.deleteConcurrency
	case opGetAccountSettings:
		return g.accountSettings
	}
	if h := g.versionHandler(op); h != nil { // versions.go, urls.go, eventconfig.go
		return h
	}
	return nil
}

// newRequestID returns a random UUID (version 4), as Lambda's request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return formatUUID(b, 4)
}

// formatUUID writes b as a UUID of the given version (RFC 9562 variant).
func formatUUID(b [16]byte, version byte) string {
	b[6] = b[6]&0x0f | version<<4
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
