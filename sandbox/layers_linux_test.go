package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"nimbus/rpc"
)

// A layer's library, merged at /opt, is found where each runtime looks:
// /opt/python, /opt/nodejs/node_modules, /opt/ruby/lib.
func TestLayerLibraryPerRuntime(t *testing.T) {
	t.Parallel()
	for _, rt := range []string{rpc.RuntimePython313, rpc.RuntimeNodejs20, rpc.RuntimeRuby33} {
		requireImage(t, rt)
	}
	m, _ := newTestManager(t, Config{})
	opt := t.TempDir()
	files := map[string]string{
		"python/layerlib.py":                    "NAME = 'py-layer'\n",
		"nodejs/node_modules/layerlib/index.js": "exports.name = 'node-layer';\n",
		"ruby/lib/layerlib.rb":                  "module LayerLib\n  NAME = 'ruby-layer'\nend\n",
	}
	for p, content := range files {
		full := filepath.Join(opt, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(opt, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		runtime, tree, handler, want string
	}{
		{rpc.RuntimePython313, "python", "uses_layer.handler", `{"layer": "py-layer", "file": "/opt/python/layerlib.py"}`},
		{rpc.RuntimeNodejs20, "node/cjs", "uses_layer.handler", `{"layer":"node-layer"}`},
		{rpc.RuntimeRuby33, "ruby", "uses_layer.handler", `{"layer":"ruby-layer"}`},
	}
	for _, c := range cases {
		fn := managedFn("layer-"+c.tree[:2], c.runtime, c.handler)
		res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: copyTree(t, c.tree), OptDir: opt, Payload: []byte(`{}`), Tail: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.ErrorType != "" || string(res.Payload) != c.want {
			t.Errorf("%s with a layer: %s %s, want %s\n%s", c.runtime, res.ErrorType, res.Payload, c.want, res.LogTail)
		}
	}
}
