package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"nimbus/rpc"
)

// PublishLayerVersion, GetLayerVersion, ListLayerVersions, ListLayers and
// DeleteLayerVersion over the node's layer operations (issue 10).

const (
	opPublishLayerVersion = "PublishLayerVersion"
	opGetLayerVersion     = "GetLayerVersion"
	opListLayerVersions   = "ListLayerVersions"
	opListLayers          = "ListLayers"
	opDeleteLayerVersion  = "DeleteLayerVersion"
)

func (g *Gateway) layerHandler(op string) handlerFunc {
	switch op {
	case opPublishLayerVersion:
		return g.publishLayerVersion
	case opGetLayerVersion:
		return g.getLayerVersion
	case opListLayerVersions:
		return g.listLayerVersions
	case opListLayers:
		return g.listLayers
	case opDeleteLayerVersion:
		return g.deleteLayerVersion
	}
	return nil
}

// publishLayerInput is Lambda's PublishLayerVersion request, the fields
// nimbus reads.
type publishLayerInput struct {
	Content                 codeInput `json:"Content"`
	Description             string    `json:"Description"`
	CompatibleRuntimes      []string  `json:"CompatibleRuntimes"`
	CompatibleArchitectures []string  `json:"CompatibleArchitectures"`
	LicenseInfo             string    `json:"LicenseInfo"`
}

// layerVersionOutput is Lambda's GetLayerVersion / PublishLayerVersion
// answer.
type layerVersionOutput struct {
	Content            layerContent `json:"Content"`
	LayerArn           string       `json:"LayerArn"`
	LayerVersionArn    string       `json:"LayerVersionArn"`
	Description        string       `json:"Description"`
	CreatedDate        string       `json:"CreatedDate"`
	Version            int64        `json:"Version"`
	CompatibleRuntimes []string     `json:"CompatibleRuntimes"`
}

type layerContent struct {
	Location   string `json:"Location"` // no download URL: empty
	CodeSha256 string `json:"CodeSha256"`
	CodeSize   int64  `json:"CodeSize"`
}

// layerVersionItem is Lambda's LayerVersionsListItem.
type layerVersionItem struct {
	LayerVersionArn    string   `json:"LayerVersionArn"`
	Version            int64    `json:"Version"`
	Description        string   `json:"Description"`
	CreatedDate        string   `json:"CreatedDate"`
	CompatibleRuntimes []string `json:"CompatibleRuntimes"`
}

func layerCreated(v *rpc.LayerVersion) string {
	return time.UnixMilli(v.CreatedMs).UTC().Format(lambdaTimeLayout)
}

func runtimesOf(v *rpc.LayerVersion) []string {
	if v.CompatibleRuntimes == nil {
		return []string{}
	}
	return v.CompatibleRuntimes
}

// layerARN is the ARN of v's layer: its version's, without the version.
func layerARN(v *rpc.LayerVersion) string {
	return strings.TrimSuffix(v.ARN, ":"+strconv.FormatInt(v.Version, 10))
}

func layerVersionShape(v *rpc.LayerVersion) layerVersionOutput {
	return layerVersionOutput{
		Content:            layerContent{CodeSha256: codeSHA256(v.CodeSHA256), CodeSize: v.CodeSize},
		LayerArn:           layerARN(v),
		LayerVersionArn:    v.ARN,
		Description:        v.Description,
		CreatedDate:        layerCreated(v),
		Version:            v.Version,
		CompatibleRuntimes: runtimesOf(v),
	}
}

func layerItem(v *rpc.LayerVersion) layerVersionItem {
	return layerVersionItem{LayerVersionArn: v.ARN, Version: v.Version, Description: v.Description,
		CreatedDate: layerCreated(v), CompatibleRuntimes: runtimesOf(v)}
}

func (g *Gateway) publishLayerVersion(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	body, release, err := g.readUpload(w, r, opPublishLayerVersion)
	if err != nil {
		return err
	}
	defer release()
	var in publishLayerInput
	if err := unmarshalBody(body, &in); err != nil {
		return err
	}
	if err := checkUnsupported("", in.Content); err != nil {
		return err
	}
	if err := checkArchitectures(in.CompatibleArchitectures); err != nil {
		return err
	}
	resp, err := g.opts.Ops.PublishLayer(r.Context(), &rpc.PublishLayerRequest{
		Name: a.Name, Description: in.Description, CompatibleRuntimes: in.CompatibleRuntimes, ZipFile: in.Content.ZipFile,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, layerVersionShape(resp.Layer))
	return nil
}

// layerVersionArg reads the version segment of a layer version's path.
func layerVersionArg(a pathArgs) (int64, error) {
	v, err := strconv.ParseInt(a.Sub, 10, 64)
	if err != nil || v < 1 {
		return 0, rpc.Errorf(rpc.CodeInvalidParameterValue, "1 validation error detected: Value '%s' at 'versionNumber' failed to satisfy constraint: Member must be a version number of 1 or more", a.Sub)
	}
	return v, nil
}

func (g *Gateway) getLayerVersion(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	version, err := layerVersionArg(a)
	if err != nil {
		return err
	}
	resp, err := g.opts.Ops.GetLayer(r.Context(), &rpc.GetLayerRequest{Name: a.Name, Version: version})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, layerVersionShape(resp.Versions[0]))
	return nil
}

func (g *Gateway) deleteLayerVersion(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	version, err := layerVersionArg(a)
	if err != nil {
		return err
	}
	if _, err := g.opts.Ops.DeleteLayer(r.Context(), &rpc.DeleteLayerRequest{Name: a.Name, Version: version}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listLimit reads MaxItems (1 to 50 here: a page holds at most 50).
func listLimit(q map[string][]string) (int, error) {
	limit := listPageMax
	if v := q["MaxItems"]; len(v) > 0 && v[0] != "" {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > listPageMax {
			return 0, rpc.Errorf(rpc.CodeInvalidParameterValue,
				"1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and %d", v[0], listPageMax)
		}
		limit = n
	}
	return limit, nil
}

func compatible(v *rpc.LayerVersion, runtime string) bool {
	if runtime == "" {
		return true
	}
	for _, rt := range v.CompatibleRuntimes {
		if rt == runtime {
			return true
		}
	}
	return false
}

type listLayerVersionsOutput struct {
	LayerVersions []layerVersionItem `json:"LayerVersions"`
	NextMarker    string             `json:"NextMarker,omitempty"`
}

// listLayerVersions lists a layer's versions, newest first as Lambda does;
// a layer with none lists none (not an error, as on Lambda).
func (g *Gateway) listLayerVersions(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	q := r.URL.Query()
	limit, err := listLimit(q)
	if err != nil {
		return err
	}
	after, err := decodeMarker(q.Get("Marker"))
	if err != nil {
		return err
	}
	out := listLayerVersionsOutput{LayerVersions: []layerVersionItem{}}
	resp, err := g.opts.Ops.GetLayer(r.Context(), &rpc.GetLayerRequest{Name: a.Name})
	if err != nil {
		if rpc.AsError(err).Code == rpc.CodeResourceNotFound {
			writeJSON(w, http.StatusOK, out)
			return nil
		}
		return err
	}
	runtime := q.Get("CompatibleRuntime")
	for i := len(resp.Versions) - 1; i >= 0; i-- { // oldest first from the node
		v := resp.Versions[i]
		if after != "" && v.Version >= markerVersion(after) {
			continue
		}
		if !compatible(v, runtime) {
			continue
		}
		if len(out.LayerVersions) == limit {
			out.NextMarker = encodeMarker(strconv.FormatInt(out.LayerVersions[limit-1].Version, 10))
			break
		}
		out.LayerVersions = append(out.LayerVersions, layerItem(v))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// markerVersion reads a version marker; one that is not a number lists
// nothing more.
func markerVersion(s string) int64 {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	return v
}

type layersListItem struct {
	LayerName             string           `json:"LayerName"`
	LayerArn              string           `json:"LayerArn"`
	LatestMatchingVersion layerVersionItem `json:"LatestMatchingVersion"`
}

type listLayersOutput struct {
	Layers     []layersListItem `json:"Layers"`
	NextMarker string           `json:"NextMarker,omitempty"`
}

// listLayers lists each layer with its latest version (the latest
// compatible with CompatibleRuntime, when given), by name.
func (g *Gateway) listLayers(w http.ResponseWriter, r *http.Request, _ pathArgs) error {
	q := r.URL.Query()
	limit, err := listLimit(q)
	if err != nil {
		return err
	}
	after, err := decodeMarker(q.Get("Marker"))
	if err != nil {
		return err
	}
	runtime := q.Get("CompatibleRuntime")
	resp, err := g.opts.Ops.ListLayers(r.Context(), &rpc.ListLayersRequest{})
	if err != nil {
		return err
	}
	out := listLayersOutput{Layers: []layersListItem{}}
	for _, latest := range resp.Layers { // sorted by name
		if after != "" && latest.Name <= after {
			continue
		}
		v := latest
		if !compatible(v, runtime) {
			all, err := g.opts.Ops.GetLayer(r.Context(), &rpc.GetLayerRequest{Name: latest.Name})
			if err != nil {
				continue // deleted meanwhile
			}
			v = nil
			for i := len(all.Versions) - 1; i >= 0 && v == nil; i-- {
				if compatible(all.Versions[i], runtime) {
					v = all.Versions[i]
				}
			}
			if v == nil {
				continue
			}
		}
		if len(out.Layers) == limit {
			out.NextMarker = encodeMarker(out.Layers[limit-1].LayerName)
			break
		}
		out.Layers = append(out.Layers, layersListItem{
			LayerName: v.Name, LayerArn: g.opts.ARNs.Layer(v.Name, 0), LatestMatchingVersion: layerItem(v),
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
