package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"nimbus/rpc"
)

// A managed runtime's cold start after the first claims a primed shell,
// whose shim started before the function was known: the function sees its
// own environment and none of the shell's (its variables, its name, a TZ
// of its own), its code in its working directory, and a layer's library. A function that sets a
// variable its interpreter reads as it starts gets a shell started the
// plain way, and sees its value.
func TestPrimedShells(t *testing.T) {
	t.Parallel()
	cases := []struct {
		runtime, tree, handler string
		tz, wantTZ             string // a TZ the image can resolve, and what the function then reports
		startVar, startVal     string
		layerFile, layerCode   string
	}{
		{rpc.RuntimePython313, "python", "app.environ", "EST+5", "EST", "PYTHONHASHSEED", "7",
			"python/layerlib.py", "NAME = 'py-layer'\n"},
		{rpc.RuntimeNodejs20, "node/cjs", "index.environ", "America/New_York", "300", "NODE_OPTIONS", "--no-deprecation",
			"nodejs/node_modules/layerlib/index.js", "exports.name = 'node-layer';\n"},
		{rpc.RuntimeRuby33, "ruby", "app.environ", "EST+5", "EST", "RUBYOPT", "-W0",
			"ruby/lib/layerlib.rb", "module LayerLib\n  NAME = 'ruby-layer'\nend\n"},
		// (No layer for Java: its libraries there are jars.)
		{rpc.RuntimeJava21, "java", "example.Env", "America/New_York", "America/New_York", "JAVA_TOOL_OPTIONS", "-Dx=1", "", ""},
	}
	for _, c := range cases {
		t.Run(c.runtime, func(t *testing.T) {
			t.Parallel()
			requireImage(t, c.runtime)
			rt, _ := LookupRuntime(c.runtime)
			if !rt.Primed {
				t.Fatalf("%s is not primed", c.runtime)
			}
			m, _ := newTestManager(t, Config{ShellPool: 1, FreezeAfter: -1})
			var dir string
			if c.tree == "java" {
				dir = javaClasses(t)
			} else {
				dir = copyTree(t, c.tree)
			}
			const memoryMB = 256
			key := poolKey(rt, memoryMB)
			primedNext := func() {
				t.Helper()
				// Its shim waits for the claim: it started before the code
				// was mounted.
				waitFor(t, "a primed shell in the pool "+key+" whose shim waits", func() bool {
					p := m.pooled(key)
					if len(p) != 1 {
						return false
					}
					p[0].api.mu.Lock()
					defer p[0].api.mu.Unlock()
					return p[0].api.primeAsked
				})
			}
			ranIn := func(fn *rpc.FunctionConfig) *sandbox {
				t.Helper()
				m.mu.Lock()
				defer m.mu.Unlock()
				idle := m.idle[sandboxKey(fn)]
				if len(idle) != 1 {
					t.Fatalf("%d idle sandboxes of %s, want 1", len(idle), fn.Name)
				}
				return idle[0]
			}
			type environ struct {
				Value, Prime, TZ, Function *string
				Relative                   bool // a file of the code found by a relative path
				// Java's: the zone property, and the variable as a child
				// process started without an environment sees it.
				UserTimezone, Child *string
			}
			call := func(fn *rpc.FunctionConfig, opt, name string) environ {
				t.Helper()
				res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: dir, OptDir: opt, Payload: []byte(`{"name":"` + name + `"}`), Tail: true})
				if err != nil {
					t.Fatal(err)
				}
				if res.ErrorType != "" || !res.Cold {
					t.Fatalf("%s: %s %s (cold %v)\n%s", fn.Name, res.ErrorType, res.Payload, res.Cold, res.LogTail)
				}
				var e environ
				if err := json.Unmarshal(res.Payload, &e); err != nil {
					t.Fatalf("%s: %s: %v", fn.Name, res.Payload, err)
				}
				return e
			}
			str := func(p *string) string {
				if p == nil {
					return "<unset>"
				}
				return *p
			}

			// The first cold start of the runtime finds no pool.
			first := managedFn("first", c.runtime, c.handler)
			first.MemoryMB = memoryMB
			if e := call(first, "", "FOO"); e.Prime != nil || e.Value != nil {
				t.Errorf("first: %+v", e)
			}
			if sb := ranIn(first); sb.primed {
				t.Errorf("the first cold start ran in a primed shell %s", sb.id)
			}

			primedNext()
			fn := managedFn("primed", c.runtime, c.handler)
			fn.MemoryMB = memoryMB
			fn.Env = map[string]string{"FOO": "bar", "TZ": c.tz}
			e := call(fn, "", "FOO")
			if str(e.Value) != "bar" || e.Prime != nil || str(e.TZ) != c.wantTZ || str(e.Function) != "primed" || !e.Relative {
				t.Errorf("in a primed shell: FOO %s, _NIMBUS_PRIME %s, TZ %s, AWS_LAMBDA_FUNCTION_NAME %s, code found from the working directory %v; want bar, <unset>, %s, primed, true",
					str(e.Value), str(e.Prime), str(e.TZ), str(e.Function), e.Relative, c.wantTZ)
			}
			if c.runtime == rpc.RuntimeJava21 && (str(e.Child) != "bar" || str(e.UserTimezone) != c.wantTZ) {
				t.Errorf("in a primed JVM: a child process sees FOO=%s, user.timezone %s; want bar, %s", str(e.Child), str(e.UserTimezone), c.wantTZ)
			}
			if sb := ranIn(fn); !sb.primed || !strings.Contains(sb.id, "-pool-") {
				t.Errorf("%s ran in %s (primed %v), want a primed shell of the pool", fn.Name, sb.id, sb.primed)
			}

			// A variable read as the interpreter starts: a plain start.
			primedNext()
			plain := managedFn("plain", c.runtime, c.handler)
			plain.MemoryMB = memoryMB
			plain.Env = map[string]string{c.startVar: c.startVal}
			if e := call(plain, "", c.startVar); str(e.Value) != c.startVal {
				t.Errorf("%s = %s in the function, want %s", c.startVar, str(e.Value), c.startVal)
			}
			if sb := ranIn(plain); sb.primed {
				t.Errorf("a function that sets %s ran in a primed shell %s", c.startVar, sb.id)
			}
			if n := len(m.pooled(key)); n != 1 {
				t.Errorf("%d primed shells left in the pool, want the one a plain start did not take", n)
			}

			// A layer's library, mounted at the claim, is found.
			if c.layerFile == "" {
				return
			}
			primedNext()
			opt := t.TempDir()
			full := filepath.Join(opt, c.layerFile)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(c.layerCode), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(opt, 0o755); err != nil {
				t.Fatal(err)
			}
			layered := managedFn("layered", c.runtime, "uses_layer.handler")
			layered.MemoryMB = memoryMB
			res, err := m.Invoke(context.Background(), &Request{Function: layered, CodeDir: dir, OptDir: opt, Payload: []byte(`{}`), Tail: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.ErrorType != "" || !strings.Contains(string(res.Payload), "-layer") {
				t.Errorf("a layer in a primed shell: %s %s\n%s", res.ErrorType, res.Payload, res.LogTail)
			}
			if sb := ranIn(layered); !sb.primed {
				t.Errorf("%s ran in %s, not primed", layered.Name, sb.id)
			}
			if c.runtime != rpc.RuntimePython313 {
				return
			}

			// A native library of a layer's /opt/lib, on LD_LIBRARY_PATH,
			// loads: the folder was there when the interpreter started
			// (the loader drops one that was not).
			primedNext()
			root, _, err := m.images.Lookup(c.runtime)
			if err != nil {
				t.Fatal(err)
			}
			libOpt := t.TempDir()
			if err := os.MkdirAll(filepath.Join(libOpt, "lib"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := copyFile(filepath.Join(root, "usr/lib/x86_64-linux-gnu/libz.so.1"), filepath.Join(libOpt, "lib", "libnimbustest.so"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(libOpt, 0o755); err != nil {
				t.Fatal(err)
			}
			native := managedFn("native", c.runtime, "app.loadlib")
			native.MemoryMB = memoryMB
			res, err = m.Invoke(context.Background(), &Request{Function: native, CodeDir: dir, OptDir: libOpt, Payload: []byte(`{"lib":"libnimbustest.so"}`), Tail: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.ErrorType != "" || string(res.Payload) != `"loaded"` {
				t.Errorf("a layer's native library in a primed shell: %s %s\n%s", res.ErrorType, res.Payload, res.LogTail)
			}
			if sb := ranIn(native); !sb.primed {
				t.Errorf("%s ran in %s, not primed", native.Name, sb.id)
			}
		})
	}
}

// primeable: a start variable set to the runtime's own value keeps a
// function primed; any other value, or external extensions, do not.
func TestPrimeable(t *testing.T) {
	rt, _ := LookupRuntime(rpc.RuntimePython313)
	fn := &rpc.FunctionConfig{Env: map[string]string{"FOO": "1", "PYTHONUNBUFFERED": "1", "TZ": "EST+5", "PATH": "/x:/usr/bin"}}
	if !primeable(fn, rt, "", "", nil) {
		t.Errorf("%v: not primeable", fn.Env)
	}
	for k, v := range map[string]string{"PYTHONUNBUFFERED": "0", "PYTHONHASHSEED": "1", "LD_PRELOAD": "/x.so", "LANG": "C", "LC_ALL": "C", "AWS_LAMBDA_EXEC_WRAPPER": "/opt/w"} {
		fn := &rpc.FunctionConfig{Env: map[string]string{k: v}}
		if primeable(fn, rt, "", "", nil) {
			t.Errorf("%s=%s: primeable", k, v)
		}
	}
	if primeable(&rpc.FunctionConfig{}, rt, "", "", externalExtensions(extensionLayer(t, "ext", "#!/bin/sh\n"))) {
		t.Error("a function with an external extension: primeable")
	}
	// Ruby with gems of the function's own: plain.
	ruby, _ := LookupRuntime(rpc.RuntimeRuby33)
	code := t.TempDir()
	if !primeable(&rpc.FunctionConfig{}, ruby, code, "", nil) {
		t.Error("a Ruby function without gems of its own: not primeable")
	}
	if err := os.MkdirAll(filepath.Join(code, "vendor", "bundle", "ruby", "3.3.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if primeable(&rpc.FunctionConfig{}, ruby, code, "", nil) {
		t.Error("a Ruby function with vendor/bundle: primeable")
	}
	provided, _ := LookupRuntime(rpc.RuntimeProvided)
	if primeable(&rpc.FunctionConfig{}, provided, "", "", nil) {
		t.Error("provided: primeable")
	}
}

// Primed shells are at most maxPrimedShells in all; a pool that needs
// room takes it from the shell pooled longest in another.
func TestPrimedShellsBounded(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimePython313)
	rt, _ := LookupRuntime(rpc.RuntimePython313)
	m, _ := newTestManager(t, Config{ShellPool: 1, FreezeAfter: -1})
	dir := copyTree(t, "python")
	sizes := maxPrimedShells + 1
	for i := 0; i < sizes; i++ {
		fn := managedFn("size"+strconv.Itoa(i), rpc.RuntimePython313, "app.handler")
		fn.MemoryMB = 128 + 64*i
		if res := invoke(t, m, fn, dir, `{}`); res.ErrorType != "" {
			t.Fatalf("%s: %s %s", fn.Name, res.ErrorType, res.Payload)
		}
		key := poolKey(rt, fn.MemoryMB)
		waitFor(t, "a primed shell in "+key, func() bool { return len(m.pooled(key)) == 1 })
	}
	m.mu.Lock()
	n := m.primedShells()
	m.mu.Unlock()
	if n != maxPrimedShells {
		t.Errorf("%d primed shells, want %d", n, maxPrimedShells)
	}
	if p := m.pooled(poolKey(rt, 128)); len(p) != 0 {
		t.Errorf("the oldest pool still holds %d shells", len(p))
	}
}
