package sandbox

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"nimbus/rpc"
)

// javaClasses compiles testdata/java (handlers, and the aws-lambda-java-core
// interfaces they compile against) with the compiler in the Java image's
// JRE, in a hard-linked copy of the image (so the image itself is never
// written), and returns a code folder holding the classes.
func javaClasses(t *testing.T) string {
	t.Helper()
	store, err := OpenImageStore(DefaultImageDir)
	if err != nil {
		t.Fatal(err)
	}
	root, _, err := store.Lookup(rpc.RuntimeJava21)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	img := filepath.Join(work, "img")
	if out, err := exec.Command("cp", "-al", root, img).CombinedOutput(); err != nil {
		t.Fatalf("copy the image: %v\n%s", err, out)
	}
	src := filepath.Join(img, "build/src")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", script("java"), src).CombinedOutput(); err != nil {
		t.Fatalf("copy the sources: %v\n%s", err, out)
	}
	var files []string
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".java") {
			files = append(files, "/build/src/"+strings.TrimPrefix(p, src+"/"))
		}
		return nil
	})
	// The JVM finds its libraries through $ORIGIN, which needs /proc: mount
	// one in a mount namespace of the compile's own.
	args := append([]string{"-m", "--propagation", "private", "sh", "-c", `mount -t proc proc "$0/proc" && exec chroot "$0" "$@"`, img,
		javaHome + "/bin/java", "-m", "jdk.compiler/com.sun.tools.javac.Main", "-nowarn", "-d", "/build/out"}, files...)
	if out, err := exec.Command("unshare", args...).CombinedOutput(); err != nil {
		t.Fatalf("javac in the image: %v\n%s", err, out)
	}
	code := t.TempDir()
	os.Chmod(code, 0o755)
	if out, err := exec.Command("cp", "-r", filepath.Join(img, "build/out")+"/.", code).CombinedOutput(); err != nil {
		t.Fatalf("copy the classes: %v\n%s", err, out)
	}
	if out, err := exec.Command("chmod", "-R", "a+rX", code).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v\n%s", err, out)
	}
	return code
}

// A RequestHandler, a RequestStreamHandler and a POJO method; the context;
// the heap sized from the sandbox's cgroup limit; an exception; init
// errors.
func TestJavaHandlers(t *testing.T) {
	t.Parallel()
	requireImage(t, rpc.RuntimeJava21)
	m, _ := newTestManager(t, Config{})
	dir := javaClasses(t)
	fn := managedFn("java-hello", rpc.RuntimeJava21, "example.Hello")
	for i := 1; i <= 2; i++ {
		res := invoke(t, m, fn, dir, `{"k":"v"}`)
		if res.ErrorType != "" {
			t.Fatalf("invoke %d: %s %s\n%s", i, res.ErrorType, res.Payload, res.LogTail)
		}
		var out struct {
			Event                        map[string]string
			Count, Memory, Remaining     int
			Version                      int
			MaxHeap                      int64
			RequestID, FunctionName, ARN string
		}
		if err := json.Unmarshal(res.Payload, &out); err != nil {
			t.Fatalf("payload %s: %v", res.Payload, err)
		}
		if out.Event["k"] != "v" || out.Count != i || out.RequestID != res.RequestID || out.FunctionName != "java-hello" ||
			out.ARN != m.functionARN("java-hello") || out.Memory != 256 || out.Remaining <= 0 || out.Version != 21 {
			t.Errorf("invoke %d saw %+v", i, out)
		}
		// The JVM sized its heap from the 256 MB cgroup limit, not the host.
		if out.MaxHeap <= 0 || out.MaxHeap >= 256<<20 {
			t.Errorf("max heap %d bytes in a 256 MB sandbox", out.MaxHeap)
		}
		if !strings.Contains(res.LogTail, "got {k=v}") {
			t.Errorf("the LambdaLogger line is not in the log:\n%s", res.LogTail)
		}
	}
	res := invoke(t, m, managedFn("java-upper", rpc.RuntimeJava21, "example.Upper"), dir, `{"a":"b"}`)
	if res.ErrorType != "" || string(res.Payload) != `{"A":"B"}` {
		t.Errorf("stream handler: %s %s\n%s", res.ErrorType, res.Payload, res.LogTail)
	}
	res = invoke(t, m, managedFn("java-pojo", rpc.RuntimeJava21, "example.Greeter::greet"), dir, `{"name":"ada","age":36,"extra":1}`)
	if res.ErrorType != "" || string(res.Payload) != `{"message":"hello ada","adult":true}` {
		t.Errorf("POJO method: %s %s\n%s", res.ErrorType, res.Payload, res.LogTail)
	}
	res = invoke(t, m, managedFn("java-fail", rpc.RuntimeJava21, "example.Greeter::fail"), dir, `"x"`)
	e := decodeError(t, res)
	if res.ErrorType != "java.lang.IllegalStateException" || e.ErrorMessage != "cannot handle x" || len(e.StackTrace) == 0 ||
		!strings.HasPrefix(e.StackTrace[0], "example.Greeter.fail(Greeter.java:") {
		t.Errorf("exception: %s %s", res.ErrorType, res.Payload)
	}
	for i, c := range []struct{ handler, errType string }{
		{"example.Missing", "Runtime.ClassNotFound"},
		{"example.Greeter::nope", "Runtime.HandlerNotFound"},
		{"example.Greeter", "Runtime.InvalidHandler"},
	} {
		fn := managedFn("java-init", rpc.RuntimeJava21, c.handler)
		fn.Revision = uint64(i + 1)
		if res := invoke(t, m, fn, dir, `{}`); res.ErrorType != c.errType {
			t.Errorf("handler %s: %s %s, want %s", c.handler, res.ErrorType, res.Payload, c.errType)
		}
	}
}
