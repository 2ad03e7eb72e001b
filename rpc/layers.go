package rpc

import (
	"context"
	"strconv"
	"strings"
)

// Methods of layers: zips of libraries, a custom runtime or data that a
// function names and that are extracted under /opt before its code runs.
// Published versions are immutable; their zips are stored by digest like
// code, and the versions in the scheduler's Raft state.
const (
	MethodLayerPublish = "Layer.Publish"
	MethodLayerList    = "Layer.List"
	MethodLayerGet     = "Layer.Get"
	MethodLayerDelete  = "Layer.Delete"
)

// MaxFunctionLayers is how many layers a function may use (Lambda's
// limit).
const MaxFunctionLayers = 5

// LayerVersion is one published version of a layer. It is immutable once
// stored.
type LayerVersion struct {
	Name               string   `msgpack:"name" json:"LayerName"`
	Version            int64    `msgpack:"version" json:"Version"`
	ARN                string   `msgpack:"arn" json:"LayerVersionArn"`
	Description        string   `msgpack:"description,omitempty" json:"Description,omitempty"`
	CompatibleRuntimes []string `msgpack:"compatible_runtimes,omitempty" json:"CompatibleRuntimes,omitempty"`
	// CodeSHA256 and CodeSize are the zip's digest (its address in the
	// code store) and size; UnzippedSize counts against a function's
	// 250 MB with its own code.
	CodeSHA256   string `msgpack:"code_sha256" json:"CodeSha256"`
	CodeSize     int64  `msgpack:"code_size" json:"CodeSize"`
	UnzippedSize int64  `msgpack:"unzipped_size" json:"UnzippedSize"`
	CreatedMs    int64  `msgpack:"created_ms" json:"CreatedDate"`
}

// FunctionLayer is a layer version as a function holds it: enough for a
// worker to fetch and extract it without asking the registry.
type FunctionLayer struct {
	ARN          string `msgpack:"arn" json:"Arn"`
	CodeSHA256   string `msgpack:"code_sha256" json:"CodeSha256"`
	CodeSize     int64  `msgpack:"code_size" json:"CodeSize"`
	UnzippedSize int64  `msgpack:"unzipped_size" json:"UnzippedSize"`
}

// ParseLayerRef reads a function's reference to a layer version:
// NAME:VERSION or a layer version ARN. ok is false when it is neither.
func ParseLayerRef(ref string) (name string, version int64, ok bool) {
	if strings.HasPrefix(ref, "arn:") {
		parts := strings.Split(ref, ":")
		if len(parts) != 8 || parts[2] != "lambda" || parts[5] != "layer" {
			return "", 0, false
		}
		ref = parts[6] + ":" + parts[7]
	}
	name, v, found := strings.Cut(ref, ":")
	if !found || name == "" {
		return "", 0, false
	}
	version, err := strconv.ParseInt(v, 10, 64)
	if err != nil || version < 1 {
		return "", 0, false
	}
	return name, version, true
}

// PublishLayerRequest publishes a new version of a layer (creating the
// layer at version 1).
type PublishLayerRequest struct {
	Name               string   `msgpack:"name"`
	Description        string   `msgpack:"description,omitempty"`
	CompatibleRuntimes []string `msgpack:"compatible_runtimes,omitempty"`
	ZipFile            []byte   `msgpack:"zip_file"`
}

// LayerVersionResponse answers Publish with the new version.
type LayerVersionResponse struct {
	Layer *LayerVersion `msgpack:"layer"`
}

// ListLayersRequest lists every layer's latest version.
type ListLayersRequest struct{}

// ListLayersResponse holds the latest version of each layer, by name.
type ListLayersResponse struct {
	Layers []*LayerVersion `msgpack:"layers" json:"Layers"`
}

// GetLayerRequest names a layer (Version 0: all its versions) or one
// version.
type GetLayerRequest struct {
	Name    string `msgpack:"name"`
	Version int64  `msgpack:"version,omitempty"`
}

// GetLayerResponse holds the versions asked for, oldest first.
type GetLayerResponse struct {
	Versions []*LayerVersion `msgpack:"versions" json:"LayerVersions"`
}

// DeleteLayerRequest deletes one version. Functions that use it keep
// running it (as on Lambda); no new function may name it.
type DeleteLayerRequest struct {
	Name    string `msgpack:"name"`
	Version int64  `msgpack:"version"`
}

// DeleteLayerResponse answers Delete.
type DeleteLayerResponse struct{}

// PublishLayer publishes a layer version (MethodLayerPublish).
func (c *Client) PublishLayer(ctx context.Context, req *PublishLayerRequest) (*LayerVersionResponse, error) {
	return callTyped[LayerVersionResponse](ctx, c, MethodLayerPublish, req)
}

// ListLayers lists layers (MethodLayerList).
func (c *Client) ListLayers(ctx context.Context, req *ListLayersRequest) (*ListLayersResponse, error) {
	return callTyped[ListLayersResponse](ctx, c, MethodLayerList, req)
}

// GetLayer returns a layer's versions, or one (MethodLayerGet).
func (c *Client) GetLayer(ctx context.Context, req *GetLayerRequest) (*GetLayerResponse, error) {
	return callTyped[GetLayerResponse](ctx, c, MethodLayerGet, req)
}

// DeleteLayer deletes a layer version (MethodLayerDelete).
func (c *Client) DeleteLayer(ctx context.Context, req *DeleteLayerRequest) (*DeleteLayerResponse, error) {
	return callTyped[DeleteLayerResponse](ctx, c, MethodLayerDelete, req)
}
