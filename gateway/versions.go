package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"strconv"

	"nimbus/rpc"
)

// Versions and aliases: PublishVersion, ListVersionsByFunction and the
// five alias operations, in Lambda's shapes.

const (
	opPublishVersion         = "PublishVersion"
	opListVersionsByFunction = "ListVersionsByFunction"
	opCreateAlias            = "CreateAlias"
	opListAliases            = "ListAliases"
	opGetAlias               = "GetAlias"
	opUpdateAlias            = "UpdateAlias"
	opDeleteAlias            = "DeleteAlias"
)

// maxDescription is Lambda's limit on a description.
const maxDescription = 256

func errDescription() error {
	return rpc.Errorf(rpc.CodeInvalidParameterValue,
		"1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to %d", maxDescription)
}

// versionHandler is handler's part for the operations of versions.go,
// urls.go and eventconfig.go.
func (g *Gateway) versionHandler(op string) handlerFunc {
	switch op {
	case opPublishVersion:
		return g.publishVersion
	case opListVersionsByFunction:
		return g.listVersions
	case opCreateAlias:
		return g.createAlias
	case opListAliases:
		return g.listAliases
	case opGetAlias:
		return g.getAlias
	case opUpdateAlias:
		return g.updateAlias
	case opDeleteAlias:
		return g.deleteAlias
	}
	if h := g.urlConfigHandler(op); h != nil {
		return h
	}
	if h := g.esmHandler(op); h != nil {
		return h
	}
	if h := g.layerHandler(op); h != nil {
		return h
	}
	return g.eventConfigHandler(op)
}

type publishVersionInput struct {
	CodeSha256  string `json:"CodeSha256"`
	Description string `json:"Description"`
	RevisionID  string `json:"RevisionId"`
}

// hexSHA256 turns Lambda's base64 CodeSha256 into the store's hex form; a
// value that is not base64 is passed on as it is (it matches nothing).
func hexSHA256(b64 string) string {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != sha256.Size {
		return "not-a-digest:" + b64
	}
	return hex.EncodeToString(b)
}

func (g *Gateway) publishVersion(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	var in publishVersionInput
	if err := g.decodeJSON(w, r, maxConfigBody, opPublishVersion, &in); err != nil {
		return err
	}
	if len(in.Description) > maxDescription {
		return errDescription()
	}
	req := &rpc.PublishVersionRequest{Name: name, Description: in.Description}
	if in.CodeSha256 != "" {
		req.CodeSHA256 = hexSHA256(in.CodeSha256)
	}
	if in.RevisionID != "" {
		cur, err := g.opts.Ops.GetFunction(r.Context(), &rpc.GetFunctionRequest{Name: name})
		if err != nil {
			return err
		}
		if req.IfRevision, err = matchRevision(cur.Function, in.RevisionID); err != nil {
			return err
		}
	}
	resp, err := g.opts.Ops.PublishVersion(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, g.configuration(resp.Function))
	return nil
}

type listVersionsOutput struct {
	Versions   []functionConfiguration `json:"Versions"`
	NextMarker string                  `json:"NextMarker,omitempty"`
}

// pageLimit reads MaxItems (1 to 10000; a page holds at most 50).
func pageLimit(q requestQuery) (int, error) {
	s := q.Get("MaxItems")
	if s == "" {
		return listPageMax, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > listItemsMax {
		return 0, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and %d", s, listItemsMax)
	}
	return min(n, listPageMax), nil
}

// page returns the items of keys after the marker's key, at most limit of
// them, and the marker of the next page ("" when this is the last).
// keys are in the list's order.
func page(keys []string, marker string, limit int) (from, to int, next string, err error) {
	after, err := decodeMarker(marker)
	if err != nil {
		return 0, 0, "", err
	}
	if after != "" {
		from = len(keys)
		for i, k := range keys {
			if k == after {
				from = i + 1
				break
			}
		}
	}
	to = min(from+limit, len(keys))
	if to < len(keys) {
		next = encodeMarker(keys[to-1])
	}
	return from, to, next, nil
}

func (g *Gateway) listVersions(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := pageLimit(q)
	if err != nil {
		return err
	}
	resp, err := g.opts.Ops.ListVersions(r.Context(), &rpc.ListVersionsRequest{Name: name})
	if err != nil {
		return err
	}
	keys := make([]string, len(resp.Versions))
	for i, v := range resp.Versions {
		keys[i] = v.VersionName()
	}
	from, to, next, err := page(keys, q.Get("Marker"), limit)
	if err != nil {
		return err
	}
	out := listVersionsOutput{Versions: []functionConfiguration{}, NextMarker: next}
	for _, v := range resp.Versions[from:to] {
		out.Versions = append(out.Versions, g.configuration(v))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// aliasConfiguration is Lambda's AliasConfiguration shape.
type aliasConfiguration struct {
	AliasArn        string         `json:"AliasArn"`
	Name            string         `json:"Name"`
	FunctionVersion string         `json:"FunctionVersion"`
	Description     string         `json:"Description"`
	RoutingConfig   *routingConfig `json:"RoutingConfig,omitempty"`
	RevisionID      string         `json:"RevisionId"`
}

type routingConfig struct {
	AdditionalVersionWeights map[string]float64 `json:"AdditionalVersionWeights"`
}

func (g *Gateway) aliasShape(al *rpc.Alias) aliasConfiguration {
	c := aliasConfiguration{
		AliasArn:        g.opts.ARNs.Function(al.FunctionName, al.Name),
		Name:            al.Name,
		FunctionVersion: al.FunctionVersion,
		Description:     al.Description,
		RevisionID:      aliasRevisionID(al),
	}
	if w := al.Weights(); w != nil {
		c.RoutingConfig = &routingConfig{AdditionalVersionWeights: w}
	}
	return c
}

// aliasRevisionID is an alias's RevisionId: a UUID derived from the
// function, the alias and its revision, like revisionID.
func aliasRevisionID(al *rpc.Alias) string {
	h := sha256.New()
	h.Write([]byte("nimbus-alias\x00" + al.FunctionName + "\x00" + al.Name + "\x00"))
	var rev [8]byte
	binary.BigEndian.PutUint64(rev[:], al.Revision)
	h.Write(rev[:])
	var b [16]byte
	copy(b[:], h.Sum(nil))
	return formatUUID(b, 8)
}

type createAliasInput struct {
	Name            string         `json:"Name"`
	FunctionVersion string         `json:"FunctionVersion"`
	Description     string         `json:"Description"`
	RoutingConfig   *routingConfig `json:"RoutingConfig"`
}

func (rc *routingConfig) weights() map[string]float64 {
	if rc == nil {
		return nil
	}
	return rc.AdditionalVersionWeights
}

func (g *Gateway) createAlias(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	var in createAliasInput
	if err := g.decodeJSON(w, r, maxConfigBody, opCreateAlias, &in); err != nil {
		return err
	}
	resp, err := g.opts.Ops.CreateAlias(r.Context(), &rpc.CreateAliasRequest{
		FunctionName: name, Name: in.Name, FunctionVersion: in.FunctionVersion,
		Description: in.Description, Weights: in.RoutingConfig.weights(),
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, g.aliasShape(resp.Alias))
	return nil
}

type listAliasesOutput struct {
	Aliases    []aliasConfiguration `json:"Aliases"`
	NextMarker string               `json:"NextMarker,omitempty"`
}

func (g *Gateway) listAliases(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := pageLimit(q)
	if err != nil {
		return err
	}
	resp, err := g.opts.Ops.ListAliases(r.Context(), &rpc.ListAliasesRequest{FunctionName: name, FunctionVersion: q.Get("FunctionVersion")})
	if err != nil {
		return err
	}
	keys := make([]string, len(resp.Aliases))
	for i, al := range resp.Aliases {
		keys[i] = al.Name
	}
	from, to, next, err := page(keys, q.Get("Marker"), limit)
	if err != nil {
		return err
	}
	out := listAliasesOutput{Aliases: []aliasConfiguration{}, NextMarker: next}
	for _, al := range resp.Aliases[from:to] {
		out.Aliases = append(out.Aliases, g.aliasShape(al))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (g *Gateway) getAlias(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	resp, err := g.opts.Ops.GetAlias(r.Context(), &rpc.GetAliasRequest{FunctionName: name, Name: a.Name})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g.aliasShape(resp.Alias))
	return nil
}

type updateAliasInput struct {
	FunctionVersion string         `json:"FunctionVersion"`
	Description     *string        `json:"Description"`
	RoutingConfig   *routingConfig `json:"RoutingConfig"`
	RevisionID      string         `json:"RevisionId"`
}

func (g *Gateway) updateAlias(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	var in updateAliasInput
	if err := g.decodeJSON(w, r, maxConfigBody, opUpdateAlias, &in); err != nil {
		return err
	}
	req := &rpc.UpdateAliasRequest{
		FunctionName: name, Name: a.Name, FunctionVersion: in.FunctionVersion, Description: in.Description,
		SetWeights: in.RoutingConfig != nil, Weights: in.RoutingConfig.weights(),
	}
	if in.RevisionID != "" {
		cur, err := g.opts.Ops.GetAlias(r.Context(), &rpc.GetAliasRequest{FunctionName: name, Name: a.Name})
		if err != nil {
			return err
		}
		if aliasRevisionID(cur.Alias) != in.RevisionID {
			return errRevisionMismatch()
		}
		req.IfRevision = cur.Alias.Revision
	}
	resp, err := g.opts.Ops.UpdateAlias(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g.aliasShape(resp.Alias))
	return nil
}

func (g *Gateway) deleteAlias(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	if _, err := g.opts.Ops.DeleteAlias(r.Context(), &rpc.GetAliasRequest{FunctionName: name, Name: a.Name}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
