package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strings"

	"nimbus/rpc"
)

// The runtime table: one row per runtime a function may name. A row says
// which image the sandbox's root is (the default image assembled from the
// host for the custom runtimes, or an image built from Debian packages for
// the managed ones), what PID 1 starts (the code's bootstrap, or the
// interpreter with the platform's shim), and the environment the runtime
// adds. The rows are data: the Manager and the image builder read them and
// never switch on a runtime's name.

// Runtime is one row of the table. Rows are immutable.
type Runtime struct {
	Name string
	// Image is the recipe of the runtime's image; nil for the custom
	// runtimes, which run on the default image and need no build.
	Image *ImageRecipe
	// Command is the runtime's argv inside the sandbox; nil starts the
	// code's /var/task/bootstrap (Lambda's custom runtime).
	Command []string
	// Env are variables the runtime adds, unless the function sets them
	// (PATH and LD_LIBRARY_PATH come from the defaults).
	Env [][2]string
	// Shim is the folder of embedded shims mounted at /var/runtime ("" for
	// none): shims/<Shim>/.
	Shim string
	// Primed says the runtime's shim can start before its function is
	// known (a primed shell, shell_linux.go): started with primeEnv, it
	// loads itself, asks the Runtime API for its function's environment
	// (pathPrime), puts it in place of its own, and only then loads the
	// handler.
	Primed bool
	// StartEnv names the variables the interpreter reads as it starts (a
	// trailing * for a prefix), besides startEnvCommon: a function that
	// sets one to other than its primed value starts its runtime the
	// plain way, with its own environment from the first instruction.
	StartEnv []string
	// PlainIfCode and PlainIfOpt are paths in the function's code and in
	// its layers whose presence makes its start plain: what the shim's own
	// start would have settled before they were mounted.
	PlainIfCode, PlainIfOpt []string
}

// startEnvCommon are the variables read when any process starts: the
// dynamic loader's, the C library's locale and allocator, and Lambda's
// wrapper script (which changes the command itself).
var startEnvCommon = []string{"LD_*", "LANG", "LANGUAGE", "LC_*", "GLIBC_TUNABLES", "MALLOC_*", "AWS_LAMBDA_EXEC_WRAPPER"}

// startVar reports whether the interpreter of rt reads variable k as it
// starts.
func (rt *Runtime) startVar(k string) bool {
	match := func(pats []string) bool {
		for _, p := range pats {
			if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(k, prefix) || p == k {
				return true
			}
		}
		return false
	}
	return match(startEnvCommon) || match(rt.StartEnv)
}

// ImageRecipe is how a managed runtime's image is built: mmdebstrap's
// essential variant of Suite with Packages, documentation, man pages and
// locales left out, then the Hooks run in the image (chrooted, as root).
// Its digest (Key) names the image in the store: change a field, and the
// image is rebuilt.
type ImageRecipe struct {
	Suite    string
	Packages []string
	// Hooks are shell commands run chrooted in the finished image, in
	// order (precompiling, trimming, removing build-only packages).
	Hooks []string
	// Files are written into the image before the hooks run (the Java
	// shim's sources, compiled by a hook): path inside the image -> the
	// embedded file under shims/.
	Files map[string]string
	// Version changes when the steps around the fields change (the store's
	// own additions to every image).
	Version int
}

// imageSuite is the Debian release the managed runtimes' images come from:
// Debian 13 ships python3.13, nodejs 20, openjdk-21 and ruby3.3.
const imageSuite = "trixie"

// recipeVersion covers what every managed image gets besides its recipe:
// the sandbox user, /etc/hosts, the mount points, no device nodes
// (imageLayout), and the builder's own steps.
const recipeVersion = 3

// Key is the recipe's digest: the sha256 of everything that makes the
// image, the embedded files' contents included.
func (r *ImageRecipe) Key(runtime string) string {
	h := sha256.New()
	w := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	w("nimbus-image-recipe")
	w(runtime)
	w(r.Suite)
	w(strings.Join(r.Packages, ","))
	w(strings.Join(r.Hooks, "\n"))
	for _, p := range sortedKeys(r.Files) {
		w(p)
		b, _ := shimFiles.ReadFile("shims/" + r.Files[p])
		h.Write(b)
	}
	w(string(rune('0' + r.Version)))
	w(string(rune('0' + recipeVersion)))
	return hex.EncodeToString(h.Sum(nil))
}

// javaHome is where Debian's openjdk-21 lives in the Java image.
const javaHome = "/usr/lib/jvm/java-21-openjdk-amd64"

// javaShimDir is where the Java image holds the compiled shim (not under
// /var/runtime, where the interpreted shims are mounted).
const javaShimDir = "/usr/lib/nimbus-java"

// javaPreview are the flags of the foreign function API (a preview in Java
// 21) that a primed shim's chdir uses; the class-data archive is made with
// them too, or the JVM refuses it.
const javaPreview = "--enable-preview --enable-native-access=ALL-UNNAMED"

// jacksonJars are Debian's Jackson, and javaClassPath the shim's class
// path: the shim's jar, then Jackson.
const (
	jacksonJars   = "/usr/share/java/jackson-databind.jar:/usr/share/java/jackson-core.jar:/usr/share/java/jackson-annotations.jar"
	javaClassPath = javaShimDir + "/shim.jar:" + jacksonJars
)

// runtimeTable is every runtime, by name. See rpc.Runtimes for the names.
var runtimeTable = map[string]*Runtime{
	rpc.RuntimeProvided:       {Name: rpc.RuntimeProvided},
	rpc.RuntimeProvidedAL2:    {Name: rpc.RuntimeProvidedAL2},
	rpc.RuntimeProvidedAL2023: {Name: rpc.RuntimeProvidedAL2023},
	rpc.RuntimePython313: {
		Name: rpc.RuntimePython313,
		Image: &ImageRecipe{
			Suite:    imageSuite,
			Packages: []string{"python3.13-minimal", "libpython3.13-stdlib", "ca-certificates"},
			// Debian's python3 package would compile the standard library
			// after installing it; python3.13-minimal alone does not, and a
			// read-only root cannot cache bytecode: compile it here, or
			// every cold start compiles what it imports.
			Hooks:   []string{"python3.13 -m compileall -q -j 0 /usr/lib/python3.13 >/dev/null || true"},
			Version: 1,
		},
		Command: []string{"/usr/bin/python3.13", "/var/runtime/bootstrap.py"},
		Env: [][2]string{
			{"PYTHONUNBUFFERED", "1"},
			{"PYTHONDONTWRITEBYTECODE", "1"},
		},
		Shim:     "python",
		Primed:   true,
		StartEnv: []string{"PYTHON*"},
	},
	rpc.RuntimeNodejs20: {
		Name: rpc.RuntimeNodejs20,
		Image: &ImageRecipe{
			Suite:    imageSuite,
			Packages: []string{"nodejs", "ca-certificates"},
			Version:  1,
		},
		Command: []string{"/usr/bin/node", "/var/runtime/index.mjs"},
		Env: [][2]string{
			{"NODE_PATH", "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task"},
		},
		Shim:   "node",
		Primed: true,
		// Node's options, its CA and OpenSSL settings and libuv's pool
		// size are read as it starts; NODE_PATH sets the module paths then.
		StartEnv: []string{"NODE_*", "UV_*", "OPENSSL_*", "SSL_CERT_*"},
	},
	rpc.RuntimeRuby33: {
		Name: rpc.RuntimeRuby33,
		Image: &ImageRecipe{
			Suite:    imageSuite,
			Packages: []string{"ruby3.3", "ca-certificates"},
			Version:  1,
		},
		Command: []string{"/usr/bin/ruby3.3", "--disable-did_you_mean", "/var/runtime/bootstrap.rb"},
		Env: [][2]string{
			{"GEM_PATH", "/var/task/vendor/bundle/ruby/3.3.0:/opt/ruby/gems/3.3.0"},
			{"RUBYLIB", "/var/task:/var/runtime/lib:/opt/ruby/lib"},
		},
		Shim:   "ruby",
		Primed: true,
		// RUBYOPT and RUBYLIB as the interpreter starts, RubyGems' paths
		// as it loads.
		StartEnv: []string{"RUBY*", "GEM_*"},
		// The shim's own requires (json, net/http) activate the default
		// gems' versions; with gems of the function's own (vendored by
		// Bundler, or a layer's), a newer one must win, as it does when
		// GEM_PATH is there from the start.
		PlainIfCode: []string{"vendor/bundle"},
		PlainIfOpt:  []string{"ruby/gems"},
	},
	rpc.RuntimeJava21: {
		Name: rpc.RuntimeJava21,
		Image: &ImageRecipe{
			Suite: imageSuite,
			// The JDK only compiles the shim during the build; the hooks
			// remove it, leaving the headless JRE and Jackson.
			Packages: []string{"openjdk-21-jre-headless", "openjdk-21-jdk-headless", "libjackson2-databind-java"},
			Files:    map[string]string{javaShimDir + "/src/Bootstrap.java": "java/Bootstrap.java"},
			Hooks: []string{
				"mkdir -p " + javaShimDir + "/classes && " + javaHome + "/bin/javac -nowarn -XDsuppressNotes --release 21 --enable-preview -d " + javaShimDir + "/classes -cp " + jacksonJars + " " + javaShimDir + "/src/Bootstrap.java" +
					" && " + javaHome + "/bin/jar cf " + javaShimDir + "/shim.jar -C " + javaShimDir + "/classes . && rm -rf " + javaShimDir + "/classes",
				"dpkg --purge openjdk-21-jdk-headless",
				// The JVM's class-data sharing archive of the shim's and
				// Jackson's classes (CDS takes jars only): a cold start maps
				// them instead of loading and verifying them.
				javaHome + "/bin/java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 " + javaPreview + " -XX:ArchiveClassesAtExit=" + javaShimDir + "/shim.jsa -cp " + javaClassPath + " nimbus.Bootstrap --selftest >/dev/null 2>&1 || true",
			},
			Version: 2,
		},
		Primed: true,
		// The JVM's options and class path as it starts.
		StartEnv: []string{"JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "JAVA_HOME", "CLASSPATH"},
		Command: []string{javaHome + "/bin/java",
			// The shim's prime calls chdir(2) through the foreign function
			// API, a preview in Java 21.
			"--enable-preview", "--enable-native-access=ALL-UNNAMED",
			// The heap is sized from the sandbox's cgroup memory limit, which
			// the JVM reads from the mounted cgroup (a 256 MB sandbox gets a
			// heap under 256 MB, not three quarters of the host).
			"-XX:MaxRAMPercentage=75", "-XX:+TieredCompilation", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
			"-XX:SharedArchiveFile=" + javaShimDir + "/shim.jsa", "-Xshare:auto",
			"-cp", javaClassPath,
			"nimbus.Bootstrap"},
		Env: [][2]string{{"JAVA_HOME", javaHome}},
	},
}

// LookupRuntime returns the runtime named name.
func LookupRuntime(name string) (*Runtime, bool) {
	r, ok := runtimeTable[name]
	return r, ok
}

// NeedsImage reports whether runtime runs on a built image.
func NeedsImage(runtime string) bool {
	r, ok := runtimeTable[runtime]
	return ok && r.Image != nil
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
