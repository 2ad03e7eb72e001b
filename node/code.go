package node

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
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
	// Bundles are immutable by digest and deleted only an hour after no
	// function names them (collectCode, which forgets their trees here):
	// once a tree is ready, the invoke path need not stat it again.
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

// Code collection: the store keeps zips and trees only while some function
// version ($LATEST or published) or layer version names them, and for
// codeGCGrace after (bundle.Store.Collect), so updates and deletes do not
// fill the disk. Servers know what is named from their FSM; the grace
// period, counted by each node from when it first found a digest
// unreferenced and from the zip's last upload, covers an upload not yet
// committed, a follower's FSM behind the leader's, and invocations still
// running on code their function no longer names (15 minutes at most). A
// worker-only node has no FSM: it keeps what its invocations used within
// codeGCGrace (usedCode), and fetches anything else again from a peer
// when an invocation needs it.
const (
	codeGCEvery = 10 * time.Minute
	codeGCGrace = time.Hour
)

// startCodeGC collects code every codeGCEvery until the node stops.
func (n *Node) startCodeGC() {
	n.bg.Add(1)
	go n.runCodeGC()
}

func (n *Node) runCodeGC() {
	defer n.bg.Done()
	t := time.NewTicker(codeGCEvery)
	defer t.Stop()
	for {
		select {
		case <-n.stopping:
			return
		case <-t.C:
			n.collectCode(codeGCGrace)
		}
	}
}

// codeUses is when a worker-only node's invocations last used each code
// digest (Unix seconds, updated at most once a minute, without a lock on
// the invoke path) and each layer list.
type codeUses struct {
	code   sync.Map // digest → *atomic.Int64
	mu     sync.Mutex
	layers map[string]codeUse // by the list's key
}

type codeUse struct {
	shas []string
	at   time.Time
}

// usedCode records that an invocation of fn runs on this worker-only node
// now; call it before the code is made ready, so that a collection in
// between keeps it. Servers, whose FSM names what is live, keep no record.
func (n *Node) usedCode(fn *rpc.FunctionConfig) {
	if n.fsm != nil {
		return
	}
	now := time.Now()
	u := &n.codeUses
	touch := func(sha string) {
		v, ok := u.code.Load(sha)
		if !ok {
			v, _ = u.code.LoadOrStore(sha, new(atomic.Int64))
		}
		if at := v.(*atomic.Int64); now.Unix()-at.Load() >= 60 {
			at.Store(now.Unix())
		}
	}
	touch(fn.CodeSHA256)
	if len(fn.Layers) == 0 {
		return
	}
	shas := make([]string, len(fn.Layers))
	for i, l := range fn.Layers {
		shas[i] = l.CodeSHA256
		touch(l.CodeSHA256)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.layers == nil {
		u.layers = map[string]codeUse{}
	}
	u.layers[strings.Join(shas, ",")] = codeUse{shas, now}
}

// recentCode is what a worker-only node's invocations used within grace;
// older records are forgotten.
func (n *Node) recentCode(grace time.Duration) bundle.Live {
	live := bundle.Live{Code: map[string]bool{}}
	cut := time.Now().Add(-grace)
	u := &n.codeUses
	// A minute of slack: uses are recorded at most once a minute.
	u.code.Range(func(k, v any) bool {
		if time.Unix(v.(*atomic.Int64).Load(), 0).Add(time.Minute).Before(cut) {
			u.code.Delete(k)
		} else {
			live.Code[k.(string)] = true
		}
		return true
	})
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, l := range u.layers {
		if l.at.Before(cut) {
			delete(u.layers, k)
			continue
		}
		live.LayerSets = append(live.LayerSets, l.shas)
	}
	return live
}

// liveCode is every digest the FSM names, and every function version's
// layer list; on a worker-only node, what its invocations used within
// codeGCGrace.
func (n *Node) liveCode() (bundle.Live, bool) {
	if n.fsm == nil {
		return n.recentCode(codeGCGrace), true
	}
	live := bundle.Live{Code: map[string]bool{}}
	addFn := func(fn *rpc.FunctionConfig) {
		live.Code[fn.CodeSHA256] = true
		var set []string
		for _, l := range fn.Layers {
			live.Code[l.CodeSHA256] = true
			set = append(set, l.CodeSHA256)
		}
		if len(set) > 0 {
			live.LayerSets = append(live.LayerSets, set)
		}
	}
	for _, fn := range n.fsm.Functions() {
		addFn(fn)
		for _, v := range n.fsm.Versions(fn.Name) {
			addFn(v)
		}
	}
	for _, l := range n.fsm.Layers() {
		for _, v := range n.fsm.LayerVersions(l.Name) {
			live.Code[v.CodeSHA256] = true
		}
	}
	return live, true
}

// collectCode removes code unreferenced for grace and forgets the trees it
// had ready of it.
func (n *Node) collectCode(grace time.Duration) {
	live, ok := n.liveCode()
	if !ok {
		return
	}
	c, err := n.code.Collect(live, grace)
	if len(c.Removed) > 0 {
		gone := map[string]bool{}
		for _, p := range c.Removed {
			gone[p] = true
		}
		n.trees.Range(func(key, dir any) bool {
			if d, ok := dir.(string); ok && gone[d] {
				n.trees.Delete(key)
			}
			return true
		})
	}
	if err != nil {
		n.log.Warn("code collection stopped", "err", err)
	}
	if c.Zips+c.Trees > 0 {
		n.log.Info("unreferenced code removed", "zips", c.Zips, "trees", c.Trees, "bytes", c.Bytes)
	}
}
