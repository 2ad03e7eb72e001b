package node

import (
	"archive/zip"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nimbus/rpc"
	"nimbus/sandbox"
)

// requireImage fails unless runtime's image is in the machine's store
// (scripts/install-deps.sh builds the ones the tests use).
func requireImage(t *testing.T, runtime string) {
	t.Helper()
	requireRoot(t)
	store, err := sandbox.OpenImageStore(sandbox.DefaultImageDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Lookup(runtime); err != nil {
		t.Fatalf("%v\n(scripts/install-deps.sh builds the images the tests use)", err)
	}
}

// bigZip is a zip of one file of n bytes of zeros (it compresses to a
// thousandth of that).
func bigZip(t *testing.T, name string, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	f, err := w.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for left := n; left > 0; left -= len(zero) {
		if _, err := f.Write(zero[:min(left, len(zero))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A layer provides a Python module the handler imports; layers extract in
// order under /opt (a later one wins); versions number from 1 and a
// deleted one can no longer be named, while the function using it runs on.
func TestLayersPython(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimePython313)
	_, cl := startNode(t, t.TempDir())
	ctx := ctxT(t)
	publish := func(name string, z []byte) *rpc.LayerVersion {
		t.Helper()
		r, err := cl.PublishLayer(ctx, &rpc.PublishLayerRequest{Name: name, ZipFile: z, CompatibleRuntimes: []string{rpc.RuntimePython313}, Description: "test"})
		if err != nil {
			t.Fatalf("publish %s: %v", name, err)
		}
		return r.Layer
	}
	v1 := publish("pylib", mkzip(t, file("python/layerlib.py", "NAME = 'first'\n")))
	v2 := publish("pylib", mkzip(t, file("python/layerlib.py", "NAME = 'second'\n")))
	over := publish("override", mkzip(t, file("python/layerlib.py", "NAME = 'override'\n")))
	if v1.Version != 1 || v2.Version != 2 || over.Version != 1 || v2.ARN != "arn:aws:lambda:"+rpc.DefaultRegion+":"+rpc.DefaultAccount+":layer:pylib:2" || v1.UnzippedSize != int64(len("NAME = 'first'\n")) {
		t.Fatalf("versions: %+v %+v %+v", v1, v2, over)
	}
	code := mkzip(t, file("uses_layer.py", "import layerlib\n\ndef handler(event, context):\n    return {'layer': layerlib.NAME, 'file': layerlib.__file__}\n"))
	// pylib twice is refused; then two different layers, the later wins.
	_, err := cl.CreateFunction(ctx, &rpc.CreateFunctionRequest{Name: "twice", Runtime: rpc.RuntimePython313, Handler: "uses_layer.handler", ZipFile: code, Layers: []string{"pylib:1", v2.ARN}})
	if !errors.Is(err, rpc.ErrInvalidParameterValue) || !strings.Contains(err.Error(), "same layer") {
		t.Fatalf("one layer twice: %v", err)
	}
	create(t, cl, "layered2", code, func(r *rpc.CreateFunctionRequest) {
		r.Runtime, r.Handler, r.Layers = rpc.RuntimePython313, "uses_layer.handler", []string{"pylib:2", "override:1"}
	})
	res := invoke(t, cl, "layered2", `{}`)
	if res.FunctionError != "" || string(res.Payload) != `{"layer": "override", "file": "/opt/python/layerlib.py"}` {
		t.Fatalf("invoke with layers: %s %s", res.FunctionError, res.Payload)
	}
	got, err := cl.GetLayer(ctx, &rpc.GetLayerRequest{Name: "pylib"})
	if err != nil || len(got.Versions) != 2 {
		t.Fatalf("get pylib: %+v %v", got, err)
	}
	if _, err := cl.DeleteLayer(ctx, &rpc.DeleteLayerRequest{Name: "override", Version: 1}); err != nil {
		t.Fatal(err)
	}
	if res := invoke(t, cl, "layered2", `{}`); string(res.Payload) != `{"layer": "override", "file": "/opt/python/layerlib.py"}` {
		t.Fatalf("a function keeps its deleted layer: %s", res.Payload)
	}
	list, err := cl.ListLayers(ctx, &rpc.ListLayersRequest{})
	if err != nil || len(list.Layers) != 1 || list.Layers[0].Name != "pylib" || list.Layers[0].Version != 2 {
		t.Fatalf("list after deleting override:1: %+v %v", list, err)
	}
	// Bad input, each refused with Lambda's exception.
	bad := []struct {
		name   string
		layers []string
		code   []byte
		want   *rpc.Error
		text   string
	}{
		{"deleted", []string{"override:1"}, code, rpc.ErrInvalidParameterValue, "does not exist"},
		{"missing", []string{"nope:1"}, code, rpc.ErrInvalidParameterValue, "does not exist"},
		{"malformed", []string{"pylib"}, code, rpc.ErrInvalidParameterValue, "NAME:VERSION"},
		{"six", []string{"a:1", "b:1", "c:1", "d:1", "e:1", "f:1"}, code, rpc.ErrInvalidParameterValue, "more than 5 layers"},
	}
	for _, b := range bad {
		_, err := cl.CreateFunction(ctx, &rpc.CreateFunctionRequest{Name: "bad-" + b.name, Runtime: rpc.RuntimePython313, Handler: "uses_layer.handler", ZipFile: b.code, Layers: b.layers})
		if !errors.Is(err, b.want) || !strings.Contains(err.Error(), b.text) {
			t.Errorf("%s: %v, want %s with %q", b.name, err, b.want.Code, b.text)
		}
	}
	if _, err := cl.PublishLayer(ctx, &rpc.PublishLayerRequest{Name: "unsafe", ZipFile: mkzip(t, file("../escape", "x"))}); !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Errorf("a layer with an unsafe path: %v", err)
	}
	if _, err := cl.PublishLayer(ctx, &rpc.PublishLayerRequest{Name: "bad name", ZipFile: code}); !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Errorf("a bad layer name: %v", err)
	}
	if _, err := cl.DeleteLayer(ctx, &rpc.DeleteLayerRequest{Name: "pylib", Version: 9}); !errors.Is(err, rpc.ErrResourceNotFound) {
		t.Errorf("deleting a missing version: %v", err)
	}
	// Code and layers over 250 MB together, each under it alone.
	big := publish("big", bigZip(t, "data/blob", 130<<20))
	_, err = cl.CreateFunction(ctx, &rpc.CreateFunctionRequest{Name: "too-big", Runtime: rpc.RuntimePython313, Handler: "x.handler",
		ZipFile: bigZip(t, "x.bin", 130<<20), Layers: []string{big.ARN}})
	if !errors.Is(err, rpc.ErrInvalidParameterValue) || !strings.Contains(err.Error(), "combined with layers exceeds") {
		t.Errorf("code and layers over 250 MB: %v", err)
	}
}

// fn create with a managed runtime whose image no worker has is refused,
// saying the command that builds it.
func TestCreateWithoutRuntimeImage(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	dir := t.TempDir()
	if err := linkTree(sharedImage, filepath.Join(dir, "images")); err != nil {
		t.Fatal(err)
	}
	_, cl := startNodeConfig(t, Config{DataDir: dir, RuntimeImageDir: t.TempDir()})
	_, err := cl.CreateFunction(ctxT(t), &rpc.CreateFunctionRequest{Name: "py", Runtime: rpc.RuntimeRuby33, Handler: "app.handler", ZipFile: mkzip(t, file("app.rb", ""))})
	if !errors.Is(err, rpc.ErrResourceNotReady) || !strings.Contains(err.Error(), "nimbus image build ruby3.3") {
		t.Fatalf("create without the image: %v", err)
	}
	list, err := cl.ListImages(ctxT(t), &rpc.ListImagesRequest{})
	if err != nil || len(list.Runtimes) != len(rpc.Runtimes) {
		t.Fatalf("image list: %+v %v", list, err)
	}
	for _, r := range list.Runtimes {
		if r.NeedsBuild != !rpc.IsProvidedRuntime(r.Runtime) || len(r.Images) != 0 {
			t.Errorf("image list on a node without images: %+v", r)
		}
	}
}

// A worker without a managed runtime's image copies it from a peer that
// has it, checked against its digest, and then runs the function; a peer
// method no client can call.
func TestClusterImageCopiedFromPeer(t *testing.T) {
	requireImage(t, rpc.RuntimePython313)
	empty := t.TempDir()
	tc := startCluster(t, 2, func(i int, cfg *Config) {
		if i == 1 {
			cfg.RuntimeImageDir = empty
		}
	})
	ctx := ctxT(t)
	have, _, _ := tc.nodes[0].imageStore().Lookup(rpc.RuntimePython313)
	if _, _, err := tc.nodes[1].imageStore().Lookup(rpc.RuntimePython313); !errors.Is(err, rpc.ErrResourceNotReady) {
		t.Fatalf("the second node has the image before the copy: %v", err)
	}
	if err := tc.nodes[1].fetchImage(ctx, rpc.RuntimePython313); err != nil {
		t.Fatalf("copy from the peer: %v", err)
	}
	root, info, err := tc.nodes[1].imageStore().Lookup(rpc.RuntimePython313)
	_, want, _ := tc.nodes[0].imageStore().Lookup(rpc.RuntimePython313)
	if err != nil || info.Digest != want.Digest || root == have {
		t.Fatalf("after the copy: %s %+v %v, want digest %s", root, info, err, want.Digest)
	}
	if !strings.HasPrefix(root, empty) {
		t.Fatalf("the copy is at %s, not in the node's store %s", root, empty)
	}
	// The copy runs functions: invoke through the node that had none.
	code := mkzip(t, file("app.py", "def handler(event, context):\n    return 'copied'\n"))
	create(t, tc.clients[0], "copied", code, func(r *rpc.CreateFunctionRequest) { r.Runtime, r.Handler = rpc.RuntimePython313, "app.handler" })
	res, err := tc.nodes[1].workerRun(ctx, &rpc.RunRequest{SlotID: 1 << 40, Function: mustFunction(t, tc, "copied"), Payload: []byte(`{}`)})
	if err != nil || string(res.Payload) != `"copied"` {
		t.Fatalf("run on the node with the copied image: %+v %v", res, err)
	}
	// A tampered announcement is refused: the tree must hash to the digest.
	other := t.TempDir()
	st, err := sandbox.OpenImageStore(other)
	if err != nil {
		t.Fatal(err)
	}
	bad := *want
	bad.Digest = strings.Repeat("0", 64)
	path, _, _, err := tc.nodes[0].imageStore().Export(rpc.RuntimePython313)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := st.Import(ctx, rpc.RuntimePython313, bad, f); err == nil || !strings.Contains(err.Error(), "hashes to") {
		t.Fatalf("import under a wrong digest: %v", err)
	}
	if _, _, err := st.Lookup(rpc.RuntimePython313); err == nil {
		t.Fatal("an image whose digest did not match was kept")
	}
}

func mustFunction(t *testing.T, tc *testCluster, name string) *rpc.FunctionConfig {
	t.Helper()
	r, err := tc.clients[0].GetFunction(ctxT(t), &rpc.GetFunctionRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return r.Function
}
