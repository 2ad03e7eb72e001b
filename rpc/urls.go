package rpc

import "context"

// Method names of function URLs.
const (
	MethodURLCreate  = "Function.CreateURL"
	MethodURLUpdate  = "Function.UpdateURL"
	MethodURLGet     = "Function.GetURL"
	MethodURLDelete  = "Function.DeleteURL"
	MethodURLList    = "Function.ListURLs"
	MethodURLResolve = "Function.ResolveURL"
)

// Function URL values, as Lambda spells them. AuthToken is nimbus's own:
// a bearer token the URL's callers must present, until access control
// brings IAM's AWS_IAM.
const (
	URLAuthNone        = "NONE"
	URLAuthToken       = "TOKEN"
	URLInvokeBuffered  = "BUFFERED"
	URLInvokeStreaming = "RESPONSE_STREAM"
)

// FunctionURL is a function URL's configuration: an HTTP endpoint that
// invokes a function ($LATEST, or an alias) with the payload format 2.0
// event. A stored FunctionURL is immutable.
type FunctionURL struct {
	FunctionName string `msgpack:"function"`
	// Qualifier is "" ($LATEST) or an alias name.
	Qualifier string `msgpack:"qualifier,omitempty"`
	// ID is the URL's 32 lowercase letters and digits: the host label of a
	// host-based URL, the path segment of a path-based one.
	ID       string `msgpack:"id"`
	AuthType string `msgpack:"auth_type"`
	// Token is the bearer token of AuthType TOKEN (hex); "" otherwise.
	// Only Create's and ResolveURL's answers carry it.
	Token          string `msgpack:"token,omitempty"`
	Cors           *Cors  `msgpack:"cors,omitempty"`
	InvokeMode     string `msgpack:"invoke_mode"`
	CreatedMs      int64  `msgpack:"created_ms"`
	LastModifiedMs int64  `msgpack:"last_modified_ms"`
}

// Cors is a function URL's CORS configuration (Lambda's Cors shape).
type Cors struct {
	AllowCredentials bool     `msgpack:"allow_credentials,omitempty"`
	AllowHeaders     []string `msgpack:"allow_headers,omitempty"`
	AllowMethods     []string `msgpack:"allow_methods,omitempty"`
	AllowOrigins     []string `msgpack:"allow_origins,omitempty"`
	ExposeHeaders    []string `msgpack:"expose_headers,omitempty"`
	MaxAge           int      `msgpack:"max_age,omitempty"`
}

// CreateURLRequest gives a function (or an alias) a URL. AuthType ""
// means NONE, InvokeMode "" BUFFERED.
type CreateURLRequest struct {
	FunctionName string `msgpack:"function_name"`
	Qualifier    string `msgpack:"qualifier,omitempty"`
	AuthType     string `msgpack:"auth_type,omitempty"`
	Cors         *Cors  `msgpack:"cors,omitempty"`
	InvokeMode   string `msgpack:"invoke_mode,omitempty"`
}

// UpdateURLRequest changes a URL; empty or nil fields are left as they
// are (a non-nil Cors replaces the whole CORS configuration; an empty one
// removes it). Changing AuthType to TOKEN makes a new token.
type UpdateURLRequest struct {
	FunctionName string `msgpack:"function_name"`
	Qualifier    string `msgpack:"qualifier,omitempty"`
	AuthType     string `msgpack:"auth_type,omitempty"`
	Cors         *Cors  `msgpack:"cors,omitempty"`
	InvokeMode   string `msgpack:"invoke_mode,omitempty"`
}

// GetURLRequest names one URL (also used by Delete).
type GetURLRequest struct {
	FunctionName string `msgpack:"function_name"`
	Qualifier    string `msgpack:"qualifier,omitempty"`
}

// URLResponse is one URL's configuration and its address, as the node
// that answered builds it (path-based on its HTTP address, or host-based
// under its URL domain).
type URLResponse struct {
	Config *FunctionURL `msgpack:"config"`
	URL    string       `msgpack:"url"`
}

// ListURLsRequest lists a function's URLs.
type ListURLsRequest struct {
	FunctionName string `msgpack:"function_name"`
}

// ListURLsResponse holds the URLs, $LATEST's first, then by alias name.
type ListURLsResponse struct {
	URLs []URLResponse `msgpack:"urls"`
}

// ResolveURLRequest looks a URL up by its ID (the gateway serving a
// request to it).
type ResolveURLRequest struct {
	ID string `msgpack:"id"`
}

// DeleteURLResponse answers MethodURLDelete.
type DeleteURLResponse struct{}

// CreateURL gives a function a URL (MethodURLCreate).
func (c *Client) CreateURL(ctx context.Context, req *CreateURLRequest) (*URLResponse, error) {
	return callTyped[URLResponse](ctx, c, MethodURLCreate, req)
}

// UpdateURL changes a URL (MethodURLUpdate).
func (c *Client) UpdateURL(ctx context.Context, req *UpdateURLRequest) (*URLResponse, error) {
	return callTyped[URLResponse](ctx, c, MethodURLUpdate, req)
}

// GetURL returns a URL (MethodURLGet).
func (c *Client) GetURL(ctx context.Context, req *GetURLRequest) (*URLResponse, error) {
	return callTyped[URLResponse](ctx, c, MethodURLGet, req)
}

// DeleteURL deletes a URL (MethodURLDelete).
func (c *Client) DeleteURL(ctx context.Context, req *GetURLRequest) (*DeleteURLResponse, error) {
	return callTyped[DeleteURLResponse](ctx, c, MethodURLDelete, req)
}

// ListURLs lists a function's URLs (MethodURLList).
func (c *Client) ListURLs(ctx context.Context, req *ListURLsRequest) (*ListURLsResponse, error) {
	return callTyped[ListURLsResponse](ctx, c, MethodURLList, req)
}

// ResolveURL looks a URL up by its ID (MethodURLResolve).
func (c *Client) ResolveURL(ctx context.Context, req *ResolveURLRequest) (*URLResponse, error) {
	return callTyped[URLResponse](ctx, c, MethodURLResolve, req)
}
