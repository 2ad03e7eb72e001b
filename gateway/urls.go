package gateway

import (
	"net/http"
	"time"

	"nimbus/rpc"
)

// Create/Get/Update/Delete/ListFunctionUrlConfig(s), in Lambda's shapes.
// Serving the URLs themselves is urlserve.go's.

const (
	opCreateFunctionURLConfig = "CreateFunctionUrlConfig"
	opGetFunctionURLConfig    = "GetFunctionUrlConfig"
	opUpdateFunctionURLConfig = "UpdateFunctionUrlConfig"
	opDeleteFunctionURLConfig = "DeleteFunctionUrlConfig"
	opListFunctionURLConfigs  = "ListFunctionUrlConfigs"
)

func (g *Gateway) urlConfigHandler(op string) handlerFunc {
	switch op {
	case opCreateFunctionURLConfig:
		return g.createURLConfig
	case opGetFunctionURLConfig:
		return g.getURLConfig
	case opUpdateFunctionURLConfig:
		return g.updateURLConfig
	case opDeleteFunctionURLConfig:
		return g.deleteURLConfig
	case opListFunctionURLConfigs:
		return g.listURLConfigs
	}
	return nil
}

// corsShape is Lambda's Cors shape.
type corsShape struct {
	AllowCredentials bool     `json:"AllowCredentials,omitempty"`
	AllowHeaders     []string `json:"AllowHeaders,omitempty"`
	AllowMethods     []string `json:"AllowMethods,omitempty"`
	AllowOrigins     []string `json:"AllowOrigins,omitempty"`
	ExposeHeaders    []string `json:"ExposeHeaders,omitempty"`
	MaxAge           int      `json:"MaxAge,omitempty"`
}

func (c *corsShape) rpc() *rpc.Cors {
	if c == nil {
		return nil
	}
	return &rpc.Cors{AllowCredentials: c.AllowCredentials, AllowHeaders: c.AllowHeaders, AllowMethods: c.AllowMethods,
		AllowOrigins: c.AllowOrigins, ExposeHeaders: c.ExposeHeaders, MaxAge: c.MaxAge}
}

func corsOf(c *rpc.Cors) *corsShape {
	if c == nil {
		return nil
	}
	return &corsShape{AllowCredentials: c.AllowCredentials, AllowHeaders: c.AllowHeaders, AllowMethods: c.AllowMethods,
		AllowOrigins: c.AllowOrigins, ExposeHeaders: c.ExposeHeaders, MaxAge: c.MaxAge}
}

// urlConfigInput is the body of Create and Update.
type urlConfigInput struct {
	AuthType   string     `json:"AuthType"`
	Cors       *corsShape `json:"Cors"`
	InvokeMode string     `json:"InvokeMode"`
}

// functionURLConfig is Lambda's FunctionUrlConfig shape. AuthToken is
// nimbus's: the bearer token of AuthType TOKEN, in the answers of Create
// and Update only.
type functionURLConfig struct {
	FunctionURL      string     `json:"FunctionUrl"`
	FunctionArn      string     `json:"FunctionArn"`
	AuthType         string     `json:"AuthType"`
	Cors             *corsShape `json:"Cors,omitempty"`
	CreationTime     string     `json:"CreationTime"`
	LastModifiedTime string     `json:"LastModifiedTime"`
	InvokeMode       string     `json:"InvokeMode"`
	AuthToken        string     `json:"AuthToken,omitempty"`
}

// urlTimeLayout is how Lambda writes a URL's times (ISO-8601).
const urlTimeLayout = "2006-01-02T15:04:05.000000Z"

func (g *Gateway) urlShape(u *rpc.URLResponse) functionURLConfig {
	c := u.Config
	arn := g.opts.ARNs.Function(c.FunctionName, c.Qualifier)
	return functionURLConfig{
		FunctionURL:      u.URL,
		FunctionArn:      arn,
		AuthType:         c.AuthType,
		Cors:             corsOf(c.Cors),
		CreationTime:     time.UnixMilli(c.CreatedMs).UTC().Format(urlTimeLayout),
		LastModifiedTime: time.UnixMilli(c.LastModifiedMs).UTC().Format(urlTimeLayout),
		InvokeMode:       c.InvokeMode,
		AuthToken:        c.Token,
	}
}

func (g *Gateway) createURLConfig(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	ref, err := g.target(r.URL.Query(), a)
	if err != nil {
		return err
	}
	var in urlConfigInput
	if err := g.decodeJSON(w, r, maxConfigBody, opCreateFunctionURLConfig, &in); err != nil {
		return err
	}
	if in.AuthType == "" {
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null")
	}
	resp, err := g.opts.Ops.CreateURL(r.Context(), &rpc.CreateURLRequest{
		FunctionName: ref.Name, Qualifier: ref.Qualifier, AuthType: in.AuthType, Cors: in.Cors.rpc(), InvokeMode: in.InvokeMode,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, g.urlShape(resp))
	return nil
}

func (g *Gateway) getURLConfig(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	ref, err := g.target(r.URL.Query(), a)
	if err != nil {
		return err
	}
	resp, err := g.opts.Ops.GetURL(r.Context(), &rpc.GetURLRequest{FunctionName: ref.Name, Qualifier: ref.Qualifier})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g.urlShape(resp))
	return nil
}

func (g *Gateway) updateURLConfig(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	ref, err := g.target(r.URL.Query(), a)
	if err != nil {
		return err
	}
	var in urlConfigInput
	if err := g.decodeJSON(w, r, maxConfigBody, opUpdateFunctionURLConfig, &in); err != nil {
		return err
	}
	req := &rpc.UpdateURLRequest{FunctionName: ref.Name, Qualifier: ref.Qualifier, AuthType: in.AuthType, InvokeMode: in.InvokeMode}
	if in.Cors != nil {
		req.Cors = in.Cors.rpc()
	}
	resp, err := g.opts.Ops.UpdateURL(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g.urlShape(resp))
	return nil
}

func (g *Gateway) deleteURLConfig(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	ref, err := g.target(r.URL.Query(), a)
	if err != nil {
		return err
	}
	if _, err := g.opts.Ops.DeleteURL(r.Context(), &rpc.GetURLRequest{FunctionName: ref.Name, Qualifier: ref.Qualifier}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type listURLConfigsOutput struct {
	FunctionURLConfigs []functionURLConfig `json:"FunctionUrlConfigs"`
	NextMarker         string              `json:"NextMarker,omitempty"`
}

func (g *Gateway) listURLConfigs(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := pageLimit(q)
	if err != nil {
		return err
	}
	resp, err := g.opts.Ops.ListURLs(r.Context(), &rpc.ListURLsRequest{FunctionName: name})
	if err != nil {
		return err
	}
	keys := make([]string, len(resp.URLs))
	for i, u := range resp.URLs {
		keys[i] = u.Config.ID
	}
	from, to, next, err := page(keys, q.Get("Marker"), limit)
	if err != nil {
		return err
	}
	out := listURLConfigsOutput{FunctionURLConfigs: []functionURLConfig{}, NextMarker: next}
	for i := from; i < to; i++ {
		out.FunctionURLConfigs = append(out.FunctionURLConfigs, g.urlShape(&resp.URLs[i]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
