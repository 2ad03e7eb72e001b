package node

import (
	"context"
	"strings"
	"time"

	"nimbus/bundle"
	"nimbus/rpc"
	"nimbus/scheduler"
)

// Layers: published versions live in the scheduler's Raft state, their
// zips in the code store by digest (replicated to the servers like code).
// A function names up to five versions; it keeps its own copy of their
// digests, so a worker fetches and merges them without the registry, and a
// deleted version keeps serving the functions that use it.

func (n *Node) registerLayers() {
	rpc.Handle(n.server, rpc.MethodLayerPublish, n.publishLayer)
	rpc.Handle(n.server, rpc.MethodLayerList, n.listLayers)
	rpc.Handle(n.server, rpc.MethodLayerGet, n.getLayer)
	rpc.Handle(n.server, rpc.MethodLayerDelete, n.deleteLayer)
}

func (n *Node) publishLayer(ctx context.Context, req *rpc.PublishLayerRequest) (*rpc.LayerVersionResponse, error) {
	if !n.isLeader() {
		var resp rpc.LayerVersionResponse
		return &resp, n.forward(ctx, rpc.MethodLayerPublish, req, &resp)
	}
	if err := scheduler.ValidateLayerPublish(req); err != nil {
		return nil, err
	}
	if len(req.ZipFile) == 0 {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "ZipFile is required: the layer's content as a zip archive")
	}
	if len(req.ZipFile) > bundle.MaxZipSize {
		return nil, rpc.Errorf(rpc.CodeRequestTooLarge, "Request must be smaller than %d bytes for the PublishLayerVersion operation", bundle.MaxZipSize)
	}
	unzipped, err := bundle.CheckSize(req.ZipFile, false)
	if err != nil {
		return nil, err
	}
	sha, size, err := n.code.Put(req.ZipFile)
	if err != nil {
		return nil, err
	}
	if err := n.replicateCode(ctx, req.ZipFile); err != nil {
		return nil, err
	}
	res, err := n.apply(&scheduler.PublishLayerCommand{
		Layer: &rpc.LayerVersion{
			Name: req.Name, Description: req.Description, CompatibleRuntimes: req.CompatibleRuntimes,
			CodeSHA256: sha, CodeSize: size, UnzippedSize: unzipped, CreatedMs: time.Now().UnixMilli(),
		},
		LayerARN: n.cfg.ARNs.Layer(req.Name, 0),
	})
	if err != nil {
		return nil, err
	}
	n.log.Info("layer published", "layer", res.Layer.Name, "version", res.Layer.Version, "code_sha256", sha)
	return &rpc.LayerVersionResponse{Layer: res.Layer}, nil
}

func (n *Node) listLayers(ctx context.Context, req *rpc.ListLayersRequest) (*rpc.ListLayersResponse, error) {
	if !n.isLeader() {
		var resp rpc.ListLayersResponse
		return &resp, n.forward(ctx, rpc.MethodLayerList, req, &resp)
	}
	return &rpc.ListLayersResponse{Layers: n.fsm.Layers()}, nil
}

func (n *Node) getLayer(ctx context.Context, req *rpc.GetLayerRequest) (*rpc.GetLayerResponse, error) {
	if !n.isLeader() {
		var resp rpc.GetLayerResponse
		return &resp, n.forward(ctx, rpc.MethodLayerGet, req, &resp)
	}
	if err := scheduler.ValidateLayerName(req.Name); err != nil {
		return nil, err
	}
	if req.Version != 0 {
		v, ok := n.fsm.LayerVersion(req.Name, req.Version)
		if !ok {
			return nil, n.layerNotFound(req.Name, req.Version)
		}
		return &rpc.GetLayerResponse{Versions: []*rpc.LayerVersion{v}}, nil
	}
	vs := n.fsm.LayerVersions(req.Name)
	if len(vs) == 0 {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "Layer not found: %s", n.cfg.ARNs.Layer(req.Name, 0))
	}
	return &rpc.GetLayerResponse{Versions: vs}, nil
}

func (n *Node) deleteLayer(ctx context.Context, req *rpc.DeleteLayerRequest) (*rpc.DeleteLayerResponse, error) {
	if !n.isLeader() {
		var resp rpc.DeleteLayerResponse
		return &resp, n.forward(ctx, rpc.MethodLayerDelete, req, &resp)
	}
	if err := scheduler.ValidateLayerName(req.Name); err != nil {
		return nil, err
	}
	if _, ok := n.fsm.LayerVersion(req.Name, req.Version); !ok {
		return nil, n.layerNotFound(req.Name, req.Version)
	}
	if _, err := n.apply(&scheduler.DeleteLayerVersionCommand{Name: req.Name, Version: req.Version}); err != nil {
		return nil, err
	}
	return &rpc.DeleteLayerResponse{}, nil
}

func (n *Node) layerNotFound(name string, version int64) error {
	return rpc.Errorf(rpc.CodeResourceNotFound, "Layer version %s does not exist.", n.cfg.ARNs.Layer(name, version))
}

// resolveLayers turns a create request's layer references into the
// versions the function will hold, checking Lambda's rules: at most five,
// each one existing, no layer twice, and the code and layers together
// within 250 MB unzipped. It runs on the leader.
func (n *Node) resolveLayers(refs []string, zip []byte) ([]rpc.FunctionLayer, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	if len(refs) > rpc.MaxFunctionLayers {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Cannot reference more than %d layers.", rpc.MaxFunctionLayers)
	}
	out := make([]rpc.FunctionLayer, 0, len(refs))
	seen := map[string]bool{}
	sizes := make([]int64, 0, len(refs)+1)
	for _, ref := range refs {
		name, version, ok := rpc.ParseLayerRef(ref)
		if !ok || scheduler.ValidateLayerName(name) != nil {
			return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Layer %q is not NAME:VERSION or a layer version ARN.", truncateRef(ref))
		}
		if seen[name] {
			return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Two different versions of the same layer are not allowed to be referenced in the same function. %s is referenced more than once.", name)
		}
		seen[name] = true
		v, ok := n.fsm.LayerVersion(name, version)
		if !ok {
			return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Layer version %s does not exist.", n.cfg.ARNs.Layer(name, version))
		}
		out = append(out, rpc.FunctionLayer{ARN: v.ARN, CodeSHA256: v.CodeSHA256, CodeSize: v.CodeSize, UnzippedSize: v.UnzippedSize})
		sizes = append(sizes, v.UnzippedSize)
	}
	code, err := bundle.CheckSize(zip, false)
	if err != nil {
		return nil, err
	}
	if err := bundle.CheckTotalSize(append(sizes, code)...); err != nil {
		return nil, err
	}
	return out, nil
}

func truncateRef(s string) string {
	if len(s) > 160 {
		return s[:160] + "..."
	}
	return s
}

// ensureLayers returns the merged tree of a function's layers (fetching
// zips this node lacks from its peers, each checked against its digest),
// or "" when it has none.
func (n *Node) ensureLayers(ctx context.Context, layers []rpc.FunctionLayer) (string, error) {
	if len(layers) == 0 {
		return "", nil
	}
	shas := make([]string, len(layers))
	for i, l := range layers {
		shas[i] = l.CodeSHA256
	}
	key := "opt:" + strings.Join(shas, ",")
	if dir, ok := n.trees.Load(key); ok {
		return dir.(string), nil
	}
	for _, sha := range shas {
		if !n.code.Has(sha) {
			if err := n.fetchCode(ctx, sha); err != nil {
				return "", err
			}
		}
	}
	dir, err := n.code.Merged(shas)
	if err != nil {
		return "", rpc.Errorf(rpc.CodeService, "layers unavailable: %v", err)
	}
	n.trees.Store(key, dir)
	return dir, nil
}

// checkCodeWithLayers refuses new code that, with the function's layers,
// unzips past 250 MB.
func checkCodeWithLayers(zip []byte, layers []rpc.FunctionLayer) error {
	if len(layers) == 0 {
		return nil
	}
	code, err := bundle.CheckSize(zip, false)
	if err != nil {
		return err
	}
	sizes := []int64{code}
	for _, l := range layers {
		sizes = append(sizes, l.UnzippedSize)
	}
	return bundle.CheckTotalSize(sizes...)
}
