package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"time"

	"nimbus/gateway"
	"nimbus/rpc"
	"nimbus/scheduler"
)

// Function URLs: the handlers. A URL's address is built by the node that
// answers (URLPrefix): path-based on its HTTP address, or host-based under
// Config.URLDomain; every node's gateway serves every URL.

func (n *Node) registerURLs() {
	rpc.Handle(n.server, rpc.MethodURLCreate, onLeader(n, rpc.MethodURLCreate, n.createURL))
	rpc.Handle(n.server, rpc.MethodURLUpdate, onLeader(n, rpc.MethodURLUpdate, n.updateURL))
	rpc.Handle(n.server, rpc.MethodURLGet, onLeader(n, rpc.MethodURLGet, n.getURL))
	rpc.Handle(n.server, rpc.MethodURLDelete, onLeader(n, rpc.MethodURLDelete, n.deleteURL))
	rpc.Handle(n.server, rpc.MethodURLList, onLeader(n, rpc.MethodURLList, n.listURLs))
	rpc.Handle(n.server, rpc.MethodURLResolve, onLeader(n, rpc.MethodURLResolve, n.resolveURL))
}

// urlOf is the address of the URL with the given id, as this node serves
// it ("" when it serves no HTTP).
func (n *Node) urlOf(id string) string {
	addr := n.HTTPAddr()
	if addr == "" {
		return ""
	}
	if d := n.cfg.URLDomain; d != "" {
		_, port, err := net.SplitHostPort(addr)
		if err != nil || port == "80" {
			return "http://" + id + "." + d + "/"
		}
		return "http://" + id + "." + d + ":" + port + "/"
	}
	return "http://" + addr + gateway.URLPathPrefix + id + "/"
}

// urlQualifier normalizes a URL's qualifier: $LATEST is "".
func urlQualifier(q string) string {
	if q == rpc.VersionLatest {
		return ""
	}
	return q
}

func (n *Node) urlResponse(u *rpc.FunctionURL, withToken bool) *rpc.URLResponse {
	c := *u
	if !withToken {
		c.Token = ""
	}
	return &rpc.URLResponse{Config: &c, URL: n.urlOf(u.ID)}
}

func randomURLID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [scheduler.URLIDLength]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (n *Node) createURL(_ context.Context, req *rpc.CreateURLRequest) (*rpc.URLResponse, error) {
	now := time.Now().UnixMilli()
	u := &rpc.FunctionURL{
		FunctionName: req.FunctionName, Qualifier: urlQualifier(req.Qualifier),
		ID: randomURLID(), AuthType: req.AuthType, Cors: req.Cors, InvokeMode: req.InvokeMode,
		CreatedMs: now, LastModifiedMs: now,
	}
	if u.AuthType == "" {
		u.AuthType = rpc.URLAuthNone
	}
	if u.InvokeMode == "" {
		u.InvokeMode = rpc.URLInvokeBuffered
	}
	if u.AuthType == rpc.URLAuthToken {
		u.Token = randomToken()
	}
	if err := scheduler.ValidateURL(u); err != nil {
		return nil, err
	}
	if _, err := n.function(u.FunctionName); err != nil {
		return nil, err
	}
	res, err := n.apply(&scheduler.PutURLCommand{URL: u, Mode: scheduler.PutCreate})
	if err != nil {
		return nil, err
	}
	n.log.Info("function URL created", "function", u.FunctionName, "qualifier", u.Qualifier, "auth", u.AuthType, "id", res.URL.ID)
	return n.urlResponse(res.URL, true), nil
}

func (n *Node) updateURL(_ context.Context, req *rpc.UpdateURLRequest) (*rpc.URLResponse, error) {
	cur, err := n.functionURL(req.FunctionName, req.Qualifier)
	if err != nil {
		return nil, err
	}
	u := *cur
	if req.AuthType != "" && req.AuthType != cur.AuthType {
		u.AuthType, u.Token = req.AuthType, ""
		if u.AuthType == rpc.URLAuthToken {
			u.Token = randomToken()
		}
	}
	if req.InvokeMode != "" {
		u.InvokeMode = req.InvokeMode
	}
	if req.Cors != nil {
		u.Cors = req.Cors
		if isEmptyCors(req.Cors) {
			u.Cors = nil
		}
	}
	u.LastModifiedMs = time.Now().UnixMilli()
	if err := scheduler.ValidateURL(&u); err != nil {
		return nil, err
	}
	res, err := n.apply(&scheduler.PutURLCommand{URL: &u, Mode: scheduler.PutUpdate})
	if err != nil {
		return nil, err
	}
	return n.urlResponse(res.URL, true), nil
}

func isEmptyCors(c *rpc.Cors) bool {
	return !c.AllowCredentials && len(c.AllowHeaders) == 0 && len(c.AllowMethods) == 0 &&
		len(c.AllowOrigins) == 0 && len(c.ExposeHeaders) == 0 && c.MaxAge == 0
}

func (n *Node) getURL(_ context.Context, req *rpc.GetURLRequest) (*rpc.URLResponse, error) {
	u, err := n.functionURL(req.FunctionName, req.Qualifier)
	if err != nil {
		return nil, err
	}
	return n.urlResponse(u, false), nil
}

func (n *Node) deleteURL(_ context.Context, req *rpc.GetURLRequest) (*rpc.DeleteURLResponse, error) {
	if _, err := n.functionURL(req.FunctionName, req.Qualifier); err != nil {
		return nil, err
	}
	if _, err := n.apply(&scheduler.DeleteURLCommand{FunctionName: req.FunctionName, Qualifier: urlQualifier(req.Qualifier)}); err != nil {
		return nil, err
	}
	return &rpc.DeleteURLResponse{}, nil
}

func (n *Node) listURLs(_ context.Context, req *rpc.ListURLsRequest) (*rpc.ListURLsResponse, error) {
	if _, err := n.function(req.FunctionName); err != nil {
		return nil, err
	}
	out := &rpc.ListURLsResponse{URLs: []rpc.URLResponse{}}
	for _, u := range n.fsm.URLs(req.FunctionName) {
		out.URLs = append(out.URLs, *n.urlResponse(u, false))
	}
	return out, nil
}

// resolveURL finds a URL by its id for the gateway serving a request to
// it; the answer carries the token.
func (n *Node) resolveURL(_ context.Context, req *rpc.ResolveURLRequest) (*rpc.URLResponse, error) {
	u, ok := n.fsm.URLByID(req.ID)
	if !ok {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "No function URL with id %q", req.ID)
	}
	return n.urlResponse(u, true), nil
}

// functionURL looks up a function and qualifier's URL on the leader.
func (n *Node) functionURL(fn, qualifier string) (*rpc.FunctionURL, error) {
	if _, err := n.function(fn); err != nil {
		return nil, err
	}
	q := urlQualifier(qualifier)
	if err := scheduler.ValidateQualifier(q); err != nil {
		return nil, err
	}
	u, ok := n.fsm.URL(fn, q)
	if !ok {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "The resource you requested does not exist: no function URL for %s", n.qualifiedARN(fn, q))
	}
	return u, nil
}
