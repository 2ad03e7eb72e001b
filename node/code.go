package node

import (
	"context"
	"sync"
	"time"

	"nimbus/bundle"
	"nimbus/rpc"
)

// storeCode validates an uploaded zip and stores it by digest, here and on
// the other servers, so that a function outlives the node that took it.
// Nothing is stored when the zip is refused. A custom runtime's code must
// hold its bootstrap (requireBootstrap); a managed runtime's need not.
func (n *Node) storeCode(ctx context.Context, zip []byte, requireBootstrap bool) (sha string, size int64, err error) {
	if len(zip) == 0 {
		return "", 0, rpc.Errorf(rpc.CodeInvalidParameterValue, "ZipFile is required: the function's code as a zip archive")
	}
	if len(zip) > bundle.MaxZipSize {
		return "", 0, rpc.Errorf(rpc.CodeRequestTooLarge,
			"Request must be smaller than %d bytes for the CreateFunction operation", bundle.MaxZipSize)
	}
	if err := bundle.Check(zip, requireBootstrap); err != nil {
		return "", 0, err
	}
	if sha, size, err = n.code.Put(zip); err != nil {
		return "", 0, err
	}
	return sha, size, n.replicateCode(ctx, zip)
}

// replicateCode pushes a bundle to every other alive server. With other
// servers alive, at least one must take it.
func (n *Node) replicateCode(ctx context.Context, zip []byte) error {
	var targets []string
	for _, name := range n.members.alive(rpc.RoleServer) {
		if name == n.name {
			continue
		}
		if addr, ok := n.members.rpcAddr(name); ok {
			targets = append(targets, addr)
		}
	}
	if len(targets) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ok      int
		lastErr error
	)
	for _, addr := range targets {
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			err := n.peers.call(ctx, addr, rpc.MethodCodePut, &rpc.CodePutRequest{ZipFile: zip}, &rpc.CodePutResponse{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				lastErr = err
				n.log.Warn("code not replicated", "peer", addr, "err", err)
				return
			}
			ok++
		}(addr)
	}
	wg.Wait()
	if ok == 0 {
		return rpc.Errorf(rpc.CodeService, "code could not be copied to any other server: %v", lastErr)
	}
	return nil
}

// codePut stores a bundle a peer pushed. The peer checked it as its
// runtime requires (a bootstrap for custom runtimes); here it is checked
// for safety only.
func (n *Node) codePut(ctx context.Context, req *rpc.CodePutRequest) (*rpc.CodePutResponse, error) {
	if err := bundle.Check(req.ZipFile, false); err != nil {
		return nil, err
	}
	sha, _, err := n.code.Put(req.ZipFile)
	if err != nil {
		return nil, err
	}
	return &rpc.CodePutResponse{SHA256: sha}, nil
}

// codeFetch serves a bundle to a peer.
func (n *Node) codeFetch(ctx context.Context, req *rpc.CodeFetchRequest) (*rpc.CodeFetchResponse, error) {
	zip, err := n.code.Get(req.SHA256)
	if err != nil {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "code %s not here: %v", req.SHA256, err)
	}
	return &rpc.CodeFetchResponse{ZipFile: zip}, nil
}

// ensureCode returns the extracted tree of a bundle, fetching the bundle
// from a peer first if this node lacks it, and checking its digest.
func (n *Node) ensureCode(ctx context.Context, sha string) (string, error) {
	// Bundles are immutable by digest and never deleted while the node
	// runs: once a tree is ready, the invoke path need not stat it again.
	if dir, ok := n.trees.Load(sha); ok {
		return dir.(string), nil
	}
	if !n.code.Has(sha) {
		if err := n.fetchCode(ctx, sha); err != nil {
			return "", err
		}
	}
	dir, err := n.code.Tree(sha)
	if err != nil {
		return "", rpc.Errorf(rpc.CodeService, "code %s unavailable: %v", sha, err)
	}
	n.trees.Store(sha, dir)
	return dir, nil
}

func (n *Node) fetchCode(ctx context.Context, sha string) error {
	var lastErr error = rpc.Errorf(rpc.CodeService, "no peer to fetch code from")
	for _, name := range n.members.alive("") {
		if name == n.name {
			continue
		}
		addr, ok := n.members.rpcAddr(name)
		if !ok {
			continue
		}
		var resp rpc.CodeFetchResponse
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := n.peers.call(cctx, addr, rpc.MethodCodeFetch, &rpc.CodeFetchRequest{SHA256: sha}, &resp)
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		if got := bundle.Digest(resp.ZipFile); got != sha {
			lastErr = rpc.Errorf(rpc.CodeService, "peer %s sent code with digest %s, want %s", name, got, sha)
			continue
		}
		if _, _, err := n.code.Put(resp.ZipFile); err != nil {
			return err
		}
		return nil
	}
	return rpc.Errorf(rpc.CodeService, "code %s could not be fetched from any peer: %v", sha, lastErr)
}
