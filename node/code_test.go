package node

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"nimbus/bundle"
	"nimbus/rpc"
)

// Code no function version names any more is collected after the grace
// period (here none): an update's old code goes, a published version's
// code and $LATEST's stay and still run, and a deleted function's code
// goes too. The node's cache of ready trees forgets what was removed.
func TestCodeCollected(t *testing.T) {
	t.Parallel()
	n, cl := startNode(t, t.TempDir())
	ctx := ctxT(t)
	const name = "gc"
	z1, z2, z3 := behaveZip(t, "v1"), behaveZip(t, "v2"), behaveZip(t, "v3")
	create(t, cl, name, z1, nil)
	if _, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	for _, z := range [][]byte{z2, z3} {
		if _, err := cl.UpdateFunctionCode(ctx, &rpc.UpdateCodeRequest{Name: name, ZipFile: z}); err != nil {
			t.Fatal(err)
		}
		invoke(t, cl, name, `"x"`) // extracts its tree
	}
	collect := func() {
		n.collectCode(0) // finds them unreferenced
		n.collectCode(0) // and removes them: no grace
	}
	collect()
	has := func(z []byte) bool { return n.code.Has(bundle.Digest(z)) }
	if has(z2) || !has(z1) || !has(z3) {
		t.Fatalf("after an update: v1 (a version's) %v, v2 (nobody's) %v, v3 ($LATEST) %v; want true, false, true", has(z1), has(z2), has(z3))
	}
	if _, cached := n.trees.Load(bundle.Digest(z2)); cached {
		t.Error("the removed code's tree is still in the node's cache")
	}
	for q, want := range map[string]string{"1": "v1", "": "v3"} {
		res, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: name, Qualifier: q, Payload: []byte(`"y"`)})
		if err != nil || res.FunctionError != "" || !strings.Contains(string(res.Payload), `"version":"`+want+`"`) {
			t.Fatalf("invoke %q after the collection: %v %s, want %s", q, err, res.Payload, want)
		}
	}
	if _, err := cl.DeleteFunction(ctx, &rpc.GetFunctionRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	collect()
	if has(z1) || has(z3) {
		t.Errorf("after the delete: v1 %v, v3 %v still stored", has(z1), has(z3))
	}
}

// A worker-only node (no FSM) keeps the code its invocations used within
// the grace and collects the rest: a tree it needs again is fetched from a
// peer.
func TestWorkerOnlyCodeCollected(t *testing.T) {
	store, err := bundle.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{code: store, log: slog.New(slog.DiscardHandler)}
	used, old := behaveZip(t, "used"), behaveZip(t, "old")
	for _, z := range [][]byte{used, old} {
		if _, _, err := store.Put(z); err != nil {
			t.Fatal(err)
		}
	}
	fn := &rpc.FunctionConfig{Name: "f", CodeSHA256: bundle.Digest(used)}
	n.usedCode(fn)
	n.usedCode(&rpc.FunctionConfig{Name: "g", CodeSHA256: bundle.Digest(old)})
	v, _ := n.codeUses.code.Load(bundle.Digest(old))
	v.(*atomic.Int64).Store(time.Now().Add(-2 * codeGCGrace).Unix()) // used long ago
	n.collectCode(0)
	n.collectCode(0)
	if !store.Has(bundle.Digest(used)) || store.Has(bundle.Digest(old)) {
		t.Fatalf("after collection: recently used %v, used long ago %v; want true, false", store.Has(bundle.Digest(used)), store.Has(bundle.Digest(old)))
	}
}
