package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nimbus/sandbox"
)

// The runtime and layer commands as a user types them: image list, layer
// publish/get/list/delete, fn create with --runtime python3.13 and
// --layers, invoke. It needs the Python image (scripts/install-deps.sh
// builds it).
func TestCLIRuntimesAndLayers(t *testing.T) {
	t.Parallel()
	addr := startNode(t)
	store, err := sandbox.OpenImageStore(sandbox.DefaultImageDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Lookup("python3.13"); err != nil {
		t.Fatalf("%v (scripts/install-deps.sh builds it)", err)
	}
	tmp := t.TempDir()
	layer := filepath.Join(tmp, "layer", "python")
	code := filepath.Join(tmp, "code")
	for _, d := range []string{layer, code} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, layer, "greeting.py", "def greet(n):\n    return 'hi ' + n\n", 0o644)
	writeFile(t, code, "app.py", "import greeting\n\ndef handler(event, context):\n    return greeting.greet(event['name'])\n", 0o644)
	run := func(args ...string) result { return nimbus(append(args, "--addr", addr)...) }

	r := run("image", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "python3.13") || !strings.Contains(r.stdout, "provided") || !strings.Contains(r.stdout, "(default image, no build)") {
		t.Fatalf("image list: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run("image", "list", "-o", "json")
	var images struct {
		Runtimes []struct {
			Runtime string
			Images  []struct {
				Digest string
				Nodes  []string
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &images); err != nil || r.code != 0 {
		t.Fatalf("image list -o json: %v\n%s", err, r.stdout)
	}
	found := false
	for _, rt := range images.Runtimes {
		if rt.Runtime == "python3.13" && len(rt.Images) == 1 && len(rt.Images[0].Digest) == 64 && len(rt.Images[0].Nodes) == 1 {
			found = true
		}
	}
	if !found {
		t.Fatalf("image list -o json lacks the Python image on this node:\n%s", r.stdout)
	}
	// A build of an image already there returns it at once.
	r = run("image", "build", "python3.13", "-o", "json")
	var built []struct {
		Image struct{ Runtime, Digest string }
		Built bool
		Node  string
	}
	if err := json.Unmarshal([]byte(r.stdout), &built); err != nil || r.code != 0 || len(built) != 1 || built[0].Built || len(built[0].Image.Digest) != 64 || built[0].Node == "" {
		t.Fatalf("image build of a built image: %v %d\n%s%s", err, r.code, r.stdout, r.stderr)
	}
	if r = run("image", "build", "provided"); r.code != exitPlatformError || !strings.Contains(r.stderr, "needs no build") {
		t.Fatalf("image build provided: %d %s", r.code, r.stderr)
	}
	if r = run("image", "build", "python3.99"); r.code != exitPlatformError || !strings.Contains(r.stderr, "InvalidParameterValueException") {
		t.Fatalf("image build of an unknown runtime: %d %s", r.code, r.stderr)
	}
	if r = run("layer", "publish", "greeting", "--dir", filepath.Join(tmp, "layer"), "--compatible-runtimes", "python3.13"); r.code != 0 || r.stdout != "1\n" {
		t.Fatalf("layer publish: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r = run("layer", "publish", "greeting", "--dir", filepath.Join(tmp, "layer")); r.stdout != "2\n" {
		t.Fatalf("layer publish again: %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = run("layer", "get", "greeting:1", "-o", "json")
	var got struct {
		LayerVersions []struct {
			Version            int
			CompatibleRuntimes []string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got.LayerVersions) != 1 || got.LayerVersions[0].CompatibleRuntimes[0] != "python3.13" {
		t.Fatalf("layer get: %v %s", err, r.stdout)
	}
	if r = run("layer", "list"); !strings.Contains(r.stdout, "greeting") {
		t.Fatalf("layer list: %s", r.stdout)
	}
	if r = run("fn", "create", "py", "--runtime", "python3.13", "--handler", "app.handler", "--dir", code, "--layers", "greeting:2"); r.code != 0 {
		t.Fatalf("fn create with a layer: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if r = run("invoke", "py", "--payload", `{"name":"ada"}`); r.code != 0 || strings.TrimSpace(r.stdout) != `"hi ada"` {
		t.Fatalf("invoke: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r = run("layer", "delete", "greeting:1"); r.code != 0 {
		t.Fatalf("layer delete: %d %s", r.code, r.stderr)
	}
	if r = run("layer", "delete", "greeting:1"); r.code != exitPlatformError || !strings.Contains(r.stderr, "ResourceNotFoundException") {
		t.Fatalf("layer delete again: %d %s", r.code, r.stderr)
	}
	if r = run("layer", "delete", "greeting"); r.code == 0 || !strings.Contains(r.stderr, "NAME:VERSION") {
		t.Fatalf("layer delete without a version: %d %s", r.code, r.stderr)
	}
}
