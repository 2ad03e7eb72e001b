package node

import (
	"context"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"nimbus/rpc"
	"nimbus/sandbox"
)

// Runtime images: a worker's own (built by `nimbus image build` on that
// node, into its image store). Image.Build and Image.List are client
// methods answered by the node asked; Image.Local is the peer call that
// tells a node what another holds.

// imageBuildTimeout bounds a build started by a client.
const imageBuildTimeout = 30 * time.Minute

// imagePeerTimeout bounds one peer's answer to Image.Local.
const imagePeerTimeout = 5 * time.Second

func (n *Node) registerImages() {
	rpc.Handle(n.server, rpc.MethodImageBuild, n.imageBuild)
	rpc.Handle(n.server, rpc.MethodImageList, n.imageList)
	rpc.HandlePeer(n.server, rpc.MethodImageLocal, n.imageLocal)
	rpc.HandlePeer(n.server, rpc.MethodImageFetch, n.imageFetch)
}

// imageStore is this worker's image store, nil on a node without
// sandboxes.
func (n *Node) imageStore() *sandbox.ImageStore {
	if n.sandboxes == nil {
		return nil
	}
	s, ok := n.sandboxes.(interface{ Images() *sandbox.ImageStore })
	if !ok {
		return nil
	}
	return s.Images()
}

func (n *Node) imageBuild(ctx context.Context, req *rpc.BuildImageRequest) (*rpc.BuildImageResponse, error) {
	store := n.imageStore()
	if store == nil {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "node %s is not a worker: build images on a worker (--addr)", n.name)
	}
	if !rpc.IsRuntime(req.Runtime) {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "unknown runtime %q", req.Runtime)
	}
	ctx, cancel := context.WithTimeout(ctx, imageBuildTimeout)
	defer cancel()
	n.log.Info("building runtime image", "runtime", req.Runtime)
	info, built, err := store.Build(ctx, req.Runtime, sandbox.BuildOptions{Mirror: req.Mirror})
	if err != nil {
		return nil, err
	}
	if built {
		n.log.Info("runtime image built", "runtime", info.Runtime, "digest", info.Digest, "size", info.SizeBytes, "seconds", info.BuildSeconds)
	}
	return &rpc.BuildImageResponse{Image: *info, Built: built, Node: n.name}, nil
}

func (n *Node) imageLocal(ctx context.Context, req *rpc.LocalImagesRequest) (*rpc.LocalImagesResponse, error) {
	out := &rpc.LocalImagesResponse{Node: n.name}
	if s := n.imageStore(); s != nil {
		out.Images = s.List()
	}
	return out, nil
}

// clusterImages asks every alive worker for its images (this node's own
// without a call), stopping early once stop reports true of an answer.
func (n *Node) clusterImages(ctx context.Context, stop func(*rpc.LocalImagesResponse) bool) (answers []*rpc.LocalImagesResponse, unreached []string) {
	own, _ := n.imageLocal(ctx, nil)
	if n.imageStore() != nil {
		answers = append(answers, own)
		if stop != nil && stop(own) {
			return answers, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, imagePeerTimeout)
	defer cancel()
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, name := range n.members.alive(rpc.RoleWorker) {
		if name == n.name {
			continue
		}
		addr, ok := n.members.rpcAddr(name)
		if !ok {
			continue
		}
		wg.Add(1)
		go func(name, addr string) {
			defer wg.Done()
			var resp rpc.LocalImagesResponse
			err := n.peers.call(ctx, addr, rpc.MethodImageLocal, &rpc.LocalImagesRequest{}, &resp)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				unreached = append(unreached, name)
				return
			}
			resp.Node = name
			answers = append(answers, &resp)
			if stop != nil && stop(&resp) {
				cancel()
			}
		}(name, addr)
	}
	wg.Wait()
	sort.Strings(unreached)
	return answers, unreached
}

func (n *Node) imageList(ctx context.Context, req *rpc.ListImagesRequest) (*rpc.ListImagesResponse, error) {
	answers, unreached := n.clusterImages(ctx, nil)
	// One entry per runtime and digest, with the nodes holding it.
	type key struct{ runtime, digest string }
	found := map[key]*rpc.ImageInfo{}
	for _, a := range answers {
		for _, im := range a.Images {
			k := key{im.Runtime, im.Digest}
			if found[k] == nil {
				c := im
				c.Nodes = nil
				found[k] = &c
			}
			found[k].Nodes = append(found[k].Nodes, a.Node)
		}
	}
	out := &rpc.ListImagesResponse{Unreached: unreached}
	for _, rt := range rpc.Runtimes {
		ri := rpc.RuntimeImages{Runtime: rt, NeedsBuild: sandbox.NeedsImage(rt)}
		for k, im := range found {
			if k.runtime == rt {
				sort.Strings(im.Nodes)
				ri.Images = append(ri.Images, *im)
			}
		}
		sort.Slice(ri.Images, func(i, j int) bool { return ri.Images[i].Digest < ri.Images[j].Digest })
		out.Runtimes = append(out.Runtimes, ri)
	}
	return out, nil
}

// checkRuntimeImage refuses a function whose managed runtime has no image
// on any worker that answers: ResourceNotReadyException saying the command
// that builds it. Custom runtimes need no image.
func (n *Node) checkRuntimeImage(ctx context.Context, runtime string) error {
	if !sandbox.NeedsImage(runtime) {
		return nil
	}
	has := func(a *rpc.LocalImagesResponse) bool {
		for _, im := range a.Images {
			if im.Runtime == runtime {
				return true
			}
		}
		return false
	}
	answers, _ := n.clusterImages(ctx, has)
	for _, a := range answers {
		if has(a) {
			return nil
		}
	}
	return rpc.Errorf(rpc.CodeResourceNotReady,
		"The image of runtime %s is not built on any worker: build it with `nimbus image build %s` (on a worker with an apt mirror), then create the function again", runtime, runtime)
}

// imageFetch serves a chunk of this node's image tar to a peer.
func (n *Node) imageFetch(ctx context.Context, req *rpc.FetchImageRequest) (*rpc.FetchImageResponse, error) {
	store := n.imageStore()
	if store == nil {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "node %s holds no images", n.name)
	}
	path, size, info, err := store.Export(req.Runtime)
	if err != nil {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "image of %s not here: %v", req.Runtime, err)
	}
	if info.Digest != req.Digest {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "image of %s here is %s, not %s", req.Runtime, info.Digest, req.Digest)
	}
	if req.Offset < 0 || req.Offset > size {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "offset %d outside the image's %d bytes", req.Offset, size)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, min(int64(rpc.ImageChunkBytes), size-req.Offset))
	if _, err := f.ReadAt(buf, req.Offset); err != nil && err != io.EOF {
		return nil, err
	}
	return &rpc.FetchImageResponse{Image: *info, Total: size, Data: buf}, nil
}

// imageFetchTimeout bounds copying one image from a peer.
const imageFetchTimeout = 10 * time.Minute

// fetchImage copies runtime's image from a worker that has it: the tar
// streams in chunks into the store's Import, which keeps the tree only if
// it hashes to the digest the peer announced for its image of this
// release's recipe.
func (n *Node) fetchImage(ctx context.Context, runtime string) error {
	store := n.imageStore()
	if store == nil {
		return rpc.Errorf(rpc.CodeService, "node %s is not a worker", n.name)
	}
	answers, _ := n.clusterImages(ctx, nil)
	var lastErr error = rpc.Errorf(rpc.CodeResourceNotReady, "no worker holds an image of %s: build it with `nimbus image build %s`", runtime, runtime)
	for _, a := range answers {
		if a.Node == n.name {
			continue
		}
		var want *rpc.ImageInfo
		for i := range a.Images {
			if a.Images[i].Runtime == runtime {
				want = &a.Images[i]
			}
		}
		addr, ok := n.members.rpcAddr(a.Node)
		if want == nil || !ok {
			continue
		}
		if err := n.fetchImageFrom(ctx, store, addr, runtime, *want); err != nil {
			lastErr = err
			n.log.Warn("image not copied", "runtime", runtime, "peer", a.Node, "err", err)
			continue
		}
		n.log.Info("image copied from a peer", "runtime", runtime, "peer", a.Node, "digest", want.Digest)
		return nil
	}
	return lastErr
}

func (n *Node) fetchImageFrom(ctx context.Context, store *sandbox.ImageStore, addr, runtime string, want rpc.ImageInfo) error {
	ctx, cancel := context.WithTimeout(ctx, imageFetchTimeout)
	defer cancel()
	pr, pw := io.Pipe()
	go func() {
		var off int64
		for {
			var resp rpc.FetchImageResponse
			err := n.peers.call(ctx, addr, rpc.MethodImageFetch, &rpc.FetchImageRequest{Runtime: runtime, Digest: want.Digest, Offset: off}, &resp)
			if err == nil && (resp.Image.Digest != want.Digest || (len(resp.Data) == 0 && off < resp.Total)) {
				err = rpc.Errorf(rpc.CodeService, "peer sent another image or nothing")
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := pw.Write(resp.Data); err != nil {
				return // Import stopped reading
			}
			off += int64(len(resp.Data))
			if off >= resp.Total {
				pw.Close()
				return
			}
		}
	}()
	_, err := store.Import(ctx, runtime, want, pr)
	pr.CloseWithError(io.ErrClosedPipe) // ends the fetcher if Import did not read it all
	return err
}
