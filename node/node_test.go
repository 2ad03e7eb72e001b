package node

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nimbus/bundle"
	"nimbus/internal/testutil"
	"nimbus/rpc"
	"nimbus/sandbox"
)

// Shared by every test of the binary, set up once in TestMain when root:
// examples/hello built as a static bootstrap, and the sandbox image, which
// takes a second or two to assemble and which nodes link to instead of
// building their own.
var (
	helloBin    string // .../hello/bootstrap, alone in its folder
	sharedImage string // a folder holding a built image, for DataDir/images
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if os.Geteuid() != 0 {
			return m.Run() // the tests that need these skip
		}
		tmp, err := os.MkdirTemp("", "nimbus-node-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		helloBin = filepath.Join(tmp, "hello", "bootstrap")
		cmd := exec.Command("go", "build", "-o", helloBin, "../examples/hello")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build examples/hello: %v\n%s", err, out)
			return 1
		}
		sharedImage = filepath.Join(tmp, "images")
		if _, err := sandbox.EnsureImage(sharedImage); err != nil {
			fmt.Fprintf(os.Stderr, "build the sandbox image: %v\n", err)
			return 1
		}
		return m.Run()
	}())
}

// requireRoot skips tests that run a node: a node runs real containers.
func requireRoot(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
}

// startNode starts a dev node on dataDir, listening on 127.0.0.1:0, and
// returns it with a client connected to it. Both are closed when the test
// ends (closing them earlier is fine). The node reuses the image built by
// TestMain unless dataDir already has one of its own.
func startNode(t testing.TB, dataDir string) (*Node, *rpc.Client) {
	t.Helper()
	requireRoot(t)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dataDir, "images")); errors.Is(err, fs.ErrNotExist) {
		if err := linkTree(sharedImage, filepath.Join(dataDir, "images")); err != nil {
			t.Fatal(err)
		}
	}
	return startNodeConfig(t, Config{DataDir: dataDir})
}

// linkTree copies the tree src to dst with hard links, which costs
// milliseconds where building an image costs seconds. (A symlink will not
// do: libcontainer refuses a rootfs path through one.)
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
			return os.Chmod(target, info.Mode()&(fs.ModePerm|fs.ModeSticky))
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			return os.Link(p, target)
		}
	})
}

// startNodeConfig starts a dev node with cfg, filling in the listener and
// the logger.
func startNodeConfig(t testing.TB, cfg Config) (*Node, *rpc.Client) {
	t.Helper()
	requireRoot(t)
	tw := testutil.NewLogWriter(t) // its cleanup runs last: after the node is closed
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dev = true
	cfg.RPCListener = ln
	cfg.Logger = slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		ln.Close()
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	cl, err := rpc.Dial(ctx, n.Addr(), rpc.ClientOptions{})
	if err != nil {
		t.Fatalf("dial %s: %v", n.Addr(), err)
	}
	t.Cleanup(func() { cl.Close() })
	return n, cl
}

// ctxT returns a context bounded well below the test binary's timeout.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds, failing the test after 15 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ent is one entry of a hand-made zip.
type ent struct {
	name string
	mode fs.FileMode
	body string // content, or a symlink's target
}

func file(name, body string) ent   { return ent{name, 0o644, body} }
func exe(name, body string) ent    { return ent{name, 0o755, body} }
func link(name, target string) ent { return ent{name, fs.ModeSymlink | 0o777, target} }

// mkzip builds a zip of ents in order, recording Unix modes.
func mkzip(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for _, e := range ents {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		h.SetMode(e.mode)
		fw, err := w.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readScript returns a file of testdata.
func readScript(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// behaveZip is the code of testdata/behave.sh with a version file the
// script reports.
func behaveZip(t testing.TB, version string) []byte {
	t.Helper()
	return mkzip(t, exe("bootstrap", readScript(t, "behave.sh")), file("version", version))
}

// helloZip zips the folder holding the built hello bootstrap, as
// `nimbus fn create --dir` does.
func helloZip(t testing.TB) []byte {
	t.Helper()
	requireRoot(t)
	z, err := bundle.ZipDir(filepath.Dir(helloBin))
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// create deploys a function on the provided runtime and returns its config.
func create(t testing.TB, cl *rpc.Client, name string, zip []byte, mod func(*rpc.CreateFunctionRequest)) *rpc.FunctionConfig {
	t.Helper()
	req := &rpc.CreateFunctionRequest{Name: name, Runtime: "provided", ZipFile: zip}
	if mod != nil {
		mod(req)
	}
	res, err := cl.CreateFunction(ctxT(t), req)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return res.Function
}

// invoke runs a function synchronously and fails the test on a platform
// error (a function error is returned in the response).
func invoke(t testing.TB, cl *rpc.Client, name, payload string) *rpc.InvokeResponse {
	t.Helper()
	res, err := cl.Invoke(ctxT(t), &rpc.InvokeRequest{FunctionName: name, Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("invoke %s: %v", name, err)
	}
	return res
}

// readAll reads a function's whole retained log.
func readAll(t testing.TB, cl *rpc.Client, name string) []rpc.LogEvent {
	t.Helper()
	var all []rpc.LogEvent
	req := &rpc.ReadLogsRequest{FunctionName: name}
	for {
		res, err := cl.ReadLogs(ctxT(t), req)
		if err != nil {
			t.Fatalf("read logs of %s: %v", name, err)
		}
		all = append(all, res.Events...)
		if len(res.Events) == 0 || res.Next == req.After {
			return all
		}
		req.After = res.Next
	}
}

// invocationLog returns the lines of one invocation, waiting until its
// REPORT line is in the log.
func invocationLog(t testing.TB, cl *rpc.Client, name, requestID string) []string {
	t.Helper()
	var lines []string
	waitFor(t, "the REPORT line of "+requestID, func() bool {
		lines = lines[:0]
		for _, e := range readAll(t, cl, name) {
			if e.RequestID == requestID {
				lines = append(lines, e.Line)
			}
		}
		return len(lines) > 0 && strings.HasPrefix(lines[len(lines)-1], "REPORT ")
	})
	return lines
}

// reportOf returns the REPORT line among lines.
func reportOf(lines []string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, "REPORT RequestId: ") {
			return l
		}
	}
	return ""
}

// checkFramed checks that lines are one invocation's log in Lambda's form:
// START first, END then REPORT last, and a REPORT with every field (Init
// Duration only on a cold start).
func checkFramed(t testing.TB, lines []string, requestID string, memoryMB int, cold bool) {
	t.Helper()
	if len(lines) < 3 {
		t.Fatalf("invocation %s logged %q: want at least START, END and REPORT", requestID, lines)
	}
	if want := "START RequestId: " + requestID + " Version: $LATEST"; lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}
	if want := "END RequestId: " + requestID; lines[len(lines)-2] != want {
		t.Errorf("next to last line %q, want %q", lines[len(lines)-2], want)
	}
	report := lines[len(lines)-1]
	for _, part := range []string{
		"REPORT RequestId: " + requestID + "\t", "\tDuration: ", " ms\tBilled Duration: ",
		fmt.Sprintf("\tMemory Size: %d MB\t", memoryMB), "\tMax Memory Used: ",
	} {
		if !strings.Contains(report, part) {
			t.Errorf("REPORT line %q lacks %q", report, part)
		}
	}
	if got := strings.Contains(report, "\tInit Duration: "); got != cold {
		t.Errorf("REPORT line %q: Init Duration present = %v, want %v (cold start: %v)", report, got, cold, cold)
	}
}

// zipCount counts the zips in a node's code store.
func zipCount(t testing.TB, dataDir string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "code", "zips"))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
