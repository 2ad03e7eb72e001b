package node

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"

	"nimbus/rpc"
)

// TestBadRequests sends every kind of bad request and checks that each gets
// its Lambda error code, that nothing is stored (the function list is
// unchanged and the code store gains no zip), and that the node keeps
// serving afterwards.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	_, cl := startNode(t, dataDir)
	ctx := ctxT(t)
	create(t, cl, "good", behaveZip(t, "good"), nil)

	// Every zip that would pass is distinct from the stored one, so storing
	// it by mistake would show as a new file in the code store.
	fresh := func(tag string) []byte { return behaveZip(t, "fresh-"+tag) }
	createReq := func(mod func(*rpc.CreateFunctionRequest)) func(context.Context) error {
		return func(ctx context.Context) error {
			req := &rpc.CreateFunctionRequest{Name: "new", Runtime: "provided", ZipFile: fresh("create")}
			mod(req)
			_, err := cl.CreateFunction(ctx, req)
			return err
		}
	}
	createZip := func(zip []byte) func(context.Context) error {
		return createReq(func(r *rpc.CreateFunctionRequest) { r.ZipFile = zip })
	}
	updateConfig := func(req *rpc.UpdateConfigRequest) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := cl.UpdateFunctionConfig(ctx, req)
			return err
		}
	}
	invokeReq := func(req *rpc.InvokeRequest) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := cl.Invoke(ctx, req)
			return err
		}
	}
	intp := func(n int) *int { return &n }
	bigEnv := map[string]string{"BIG": strings.Repeat("x", 4*1024)}
	bomb := zipBomb(t, 300)

	tests := []struct {
		name string
		call func(context.Context) error
		want error
	}{
		{"invoke unknown function", invokeReq(&rpc.InvokeRequest{FunctionName: "nosuch"}), rpc.ErrResourceNotFound},
		{"get unknown function", func(ctx context.Context) error {
			_, err := cl.GetFunction(ctx, &rpc.GetFunctionRequest{Name: "nosuch"})
			return err
		}, rpc.ErrResourceNotFound},
		{"delete unknown function", func(ctx context.Context) error {
			_, err := cl.DeleteFunction(ctx, &rpc.GetFunctionRequest{Name: "nosuch"})
			return err
		}, rpc.ErrResourceNotFound},
		{"update code of unknown function", func(ctx context.Context) error {
			_, err := cl.UpdateFunctionCode(ctx, &rpc.UpdateCodeRequest{Name: "nosuch", ZipFile: fresh("update")})
			return err
		}, rpc.ErrResourceNotFound},
		{"update config of unknown function", updateConfig(&rpc.UpdateConfigRequest{Name: "nosuch", MemoryMB: intp(256)}), rpc.ErrResourceNotFound},
		{"logs of unknown function", func(ctx context.Context) error {
			_, err := cl.ReadLogs(ctx, &rpc.ReadLogsRequest{FunctionName: "nosuch"})
			return err
		}, rpc.ErrResourceNotFound},

		{"name with space and bang", createReq(func(r *rpc.CreateFunctionRequest) { r.Name = "bad name!" }), rpc.ErrInvalidParameterValue},
		{"name of 65 chars", createReq(func(r *rpc.CreateFunctionRequest) { r.Name = strings.Repeat("a", 65) }), rpc.ErrInvalidParameterValue},
		{"empty name", createReq(func(r *rpc.CreateFunctionRequest) { r.Name = "" }), rpc.ErrInvalidParameterValue},
		{"invoke a bad name", invokeReq(&rpc.InvokeRequest{FunctionName: "bad name!"}), rpc.ErrInvalidParameterValue},
		{"get a name of 65 chars", func(ctx context.Context) error {
			_, err := cl.GetFunction(ctx, &rpc.GetFunctionRequest{Name: strings.Repeat("a", 65)})
			return err
		}, rpc.ErrInvalidParameterValue},
		{"memory 127", createReq(func(r *rpc.CreateFunctionRequest) { r.MemoryMB = 127 }), rpc.ErrInvalidParameterValue},
		{"memory 10241", createReq(func(r *rpc.CreateFunctionRequest) { r.MemoryMB = 10241 }), rpc.ErrInvalidParameterValue},
		{"timeout -1", createReq(func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = -1 }), rpc.ErrInvalidParameterValue},
		{"timeout 901", createReq(func(r *rpc.CreateFunctionRequest) { r.TimeoutSec = 901 }), rpc.ErrInvalidParameterValue},
		{"update memory 127", updateConfig(&rpc.UpdateConfigRequest{Name: "good", MemoryMB: intp(127)}), rpc.ErrInvalidParameterValue},
		{"update memory 10241", updateConfig(&rpc.UpdateConfigRequest{Name: "good", MemoryMB: intp(10241)}), rpc.ErrInvalidParameterValue},
		{"update timeout 0", updateConfig(&rpc.UpdateConfigRequest{Name: "good", TimeoutSec: intp(0)}), rpc.ErrInvalidParameterValue},
		{"update timeout 901", updateConfig(&rpc.UpdateConfigRequest{Name: "good", TimeoutSec: intp(901)}), rpc.ErrInvalidParameterValue},
		{"env over 4 KB", createReq(func(r *rpc.CreateFunctionRequest) { r.Env = bigEnv }), rpc.ErrInvalidParameterValue},
		{"update env over 4 KB", updateConfig(&rpc.UpdateConfigRequest{Name: "good", Env: bigEnv}), rpc.ErrInvalidParameterValue},
		{"reserved env key", createReq(func(r *rpc.CreateFunctionRequest) { r.Env = map[string]string{"AWS_REGION": "x"} }), rpc.ErrInvalidParameterValue},
		{"bad env key", createReq(func(r *rpc.CreateFunctionRequest) { r.Env = map[string]string{"1X": "x"} }), rpc.ErrInvalidParameterValue},
		{"unsupported runtime", createReq(func(r *rpc.CreateFunctionRequest) { r.Runtime = "python3.12" }), rpc.ErrInvalidParameterValue},
		{"no runtime", createReq(func(r *rpc.CreateFunctionRequest) { r.Runtime = "" }), rpc.ErrInvalidParameterValue},
		{"handler with a space", createReq(func(r *rpc.CreateFunctionRequest) { r.Handler = "a b" }), rpc.ErrInvalidParameterValue},

		{"payload over 6 MB", invokeReq(&rpc.InvokeRequest{FunctionName: "good", Payload: bytes.Repeat([]byte("x"), rpc.MaxSyncPayload+1)}), rpc.ErrRequestTooLarge},
		{"unknown invocation type", invokeReq(&rpc.InvokeRequest{FunctionName: "good", InvocationType: "Sometimes"}), rpc.ErrInvalidParameterValue},

		{"no code", createZip(nil), rpc.ErrInvalidParameterValue},
		{"corrupt zip", createZip([]byte("PK\x03\x04 this is not a zip at all")), rpc.ErrInvalidParameterValue},
		{"truncated zip", createZip(fresh("truncated")[:100]), rpc.ErrInvalidParameterValue},
		{"zip with ../ path", createZip(mkzip(t, exe("bootstrap", "#!/bin/sh\n"), file("../evil", "x"))), rpc.ErrInvalidParameterValue},
		{"zip with absolute path", createZip(mkzip(t, exe("bootstrap", "#!/bin/sh\n"), file("/etc/evil", "x"))), rpc.ErrInvalidParameterValue},
		{"zip with symlink outside", createZip(mkzip(t, exe("bootstrap", "#!/bin/sh\n"), link("passwd", "../../../etc/passwd"))), rpc.ErrInvalidParameterValue},
		{"zip with absolute symlink", createZip(mkzip(t, exe("bootstrap", "#!/bin/sh\n"), link("passwd", "/etc/passwd"))), rpc.ErrInvalidParameterValue},
		{"bootstrap symlink outside", createZip(mkzip(t, link("bootstrap", "../../bin/sh"))), rpc.ErrInvalidParameterValue},
		{"zip bomb over 250 MB", createZip(bombZip(t, bomb, 300<<20)), rpc.ErrInvalidParameterValue},
		{"zip bomb understating its size", createZip(bombZip(t, bomb, 1<<20)), rpc.ErrInvalidParameterValue},
		{"zip over 50 MB", createZip(make([]byte, 50<<20+1)), rpc.ErrRequestTooLarge},
		{"code without bootstrap", createZip(mkzip(t, exe("main", "#!/bin/sh\n"))), rpc.ErrInvalidParameterValue},
		{"bootstrap not executable", createZip(mkzip(t, file("bootstrap", "#!/bin/sh\n"))), rpc.ErrInvalidParameterValue},
		{"bootstrap in a subfolder", createZip(mkzip(t, exe("sub/bootstrap", "#!/bin/sh\n"))), rpc.ErrInvalidParameterValue},
		{"update code with corrupt zip", func(ctx context.Context) error {
			_, err := cl.UpdateFunctionCode(ctx, &rpc.UpdateCodeRequest{Name: "good", ZipFile: []byte("not a zip")})
			return err
		}, rpc.ErrInvalidParameterValue},
		{"update code without bootstrap", func(ctx context.Context) error {
			_, err := cl.UpdateFunctionCode(ctx, &rpc.UpdateCodeRequest{Name: "good", ZipFile: mkzip(t, file("bootstrap", "x"))})
			return err
		}, rpc.ErrInvalidParameterValue},
		{"create an existing function with new code", createReq(func(r *rpc.CreateFunctionRequest) { r.Name = "good" }), rpc.ErrResourceConflict},
	}

	before := listFunctions(t, cl)
	zips := zipCount(t, dataDir)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(ctx)
			var re *rpc.Error
			if !errors.Is(err, tt.want) || !errors.As(err, &re) {
				t.Fatalf("got %v, want a %v", err, tt.want)
			}
			if re.Message == "" {
				t.Errorf("%s has no message", re.Code)
			}
			if after := listFunctions(t, cl); !reflect.DeepEqual(after, before) {
				t.Errorf("the function list changed:\n%+v\nwas\n%+v", after, before)
			}
			if n := zipCount(t, dataDir); n != zips {
				t.Errorf("the code store holds %d zips, was %d", n, zips)
			}
		})
	}
	// Still serving, and the good function still runs its own code.
	if res := invoke(t, cl, "good", `"still"`); string(res.Payload) != `{"echo":"still","version":"good","greeting":""}` {
		t.Errorf("after the bad requests the good function answered %s (%q)", res.Payload, res.FunctionError)
	}
	// And a valid create still works (and stores its zip).
	create(t, cl, "new", fresh("create"), nil)
	if n := zipCount(t, dataDir); n != zips+1 {
		t.Errorf("after a valid create the code store holds %d zips, want %d", n, zips+1)
	}
}

// listFunctions returns the node's functions.
func listFunctions(t testing.TB, cl *rpc.Client) []*rpc.FunctionConfig {
	t.Helper()
	res, err := cl.ListFunctions(ctxT(t), &rpc.ListFunctionsRequest{})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return res.Functions
}

// deflatedZeros is a raw deflate stream of n MiB of zeros and its CRC.
type deflatedZeros struct {
	raw  []byte
	crc  uint32
	size int
}

// zipBomb deflates n MiB of zeros cheaply: it compresses one MiB, then
// repeats the block that compress/flate emits for a MiB that refers back
// to zeros only (the idea of the bundle package's tests).
func zipBomb(t testing.TB, n int) deflatedZeros {
	t.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	var blocks [][]byte
	for range 3 {
		w.Write(chunk)
		w.Flush()
		blocks = append(blocks, bytes.Clone(b.Bytes()))
		b.Reset()
	}
	w.Close()
	if !bytes.Equal(blocks[1], blocks[2]) {
		t.Skip("compress/flate no longer repeats itself on zeros; cannot build the bomb cheaply")
	}
	raw := bytes.Clone(blocks[0])
	h := crc32.NewIEEE()
	h.Write(chunk)
	for range n - 1 {
		raw = append(raw, blocks[1]...)
		h.Write(chunk)
	}
	return deflatedZeros{raw: append(raw, b.Bytes()...), crc: h.Sum32(), size: n << 20}
}

// bombZip is a zip with an executable bootstrap and the bomb as one entry
// whose header declares the given uncompressed size.
func bombZip(t testing.TB, bomb deflatedZeros, declared int) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	fw, err := w.CreateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte("#!/bin/sh\n"))
	fw, err = w.CreateRaw(&zip.FileHeader{Name: "zeros", Method: zip.Deflate, CRC32: bomb.crc,
		CompressedSize64: uint64(len(bomb.raw)), UncompressedSize64: uint64(declared)})
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(bomb.raw)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
