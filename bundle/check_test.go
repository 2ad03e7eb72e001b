package bundle

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"testing"

	"nimbus/rpc"
)

// ent is one entry of a test zip.
type ent struct {
	name string
	mode fs.FileMode // 0 means a 0644 file
	body string      // content, or a symlink's target
}

func file(name, body string) ent   { return ent{name, 0o644, body} }
func exe(name, body string) ent    { return ent{name, 0o755, body} }
func dir(name string) ent          { return ent{name, fs.ModeDir | 0o755, ""} }
func link(name, target string) ent { return ent{name, fs.ModeSymlink | 0o777, target} }

// mkzip builds a zip of ents, in order, as tools that record Unix modes do.
func mkzip(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for _, e := range ents {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.mode == 0 {
			e.mode = 0o644
		}
		h.SetMode(e.mode)
		fw, err := w.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if e.body == "" {
			continue
		}
		if _, err := io.WriteString(fw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// zeroDeflate returns a raw deflate stream of n MiB of zeros, built from one
// compressed MiB repeated, so that a 300 MB bomb costs milliseconds even
// under -race (compressing 300 MB there takes minutes).
func zeroDeflate(t testing.TB, n int) (raw []byte, crc uint32) {
	t.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	var blocks [][]byte
	for range 3 { // the first MiB, then two that refer back to zeros only
		w.Write(chunk)
		w.Flush()
		blocks = append(blocks, bytes.Clone(b.Bytes()))
		b.Reset()
	}
	w.Close() // the final, empty block
	if !bytes.Equal(blocks[1], blocks[2]) {
		t.Skip("compress/flate no longer repeats itself on zeros; cannot build the bomb cheaply")
	}
	raw = append(raw, blocks[0]...)
	h := crc32.NewIEEE()
	h.Write(chunk)
	for range n - 1 {
		raw = append(raw, blocks[1]...)
		h.Write(chunk)
	}
	return append(raw, b.Bytes()...), h.Sum32()
}

// rawzip builds a zip holding one deflated entry whose headers say what h
// says, whatever data holds.
func rawzip(t testing.TB, h *zip.FileHeader, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	fw, err := w.CreateRaw(h)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// zipHeader is the header of a deflated entry with the given sizes.
func zipHeader(name string, crc uint32, compressed, size int) *zip.FileHeader {
	return &zip.FileHeader{Name: name, Method: zip.Deflate, CRC32: crc,
		CompressedSize64: uint64(compressed), UncompressedSize64: uint64(size)}
}

// corruptEntry flips a byte inside entry i's data, so it no longer inflates
// to what its CRC says.
func corruptEntry(t testing.TB, z []byte, i int) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	off, err := zr.File[i].DataOffset()
	if err != nil {
		t.Fatal(err)
	}
	z = bytes.Clone(z)
	z[off+int64(zr.File[i].CompressedSize64/2)] ^= 0xff
	return z
}

func TestZeroDeflate(t *testing.T) {
	t.Parallel()
	raw, crc := zeroDeflate(t, 8)
	h := crc32.NewIEEE()
	n, err := io.Copy(h, flate.NewReader(bytes.NewReader(raw)))
	if err != nil || n != 8<<20 || h.Sum32() != crc {
		t.Fatalf("inflated %d bytes (crc %x, want %x), err %v", n, h.Sum32(), crc, err)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	valid := mkzip(t, exe("bootstrap", "#!/bin/sh\n"), file("lib/a.txt", "a"))
	bomb, bombCRC := zeroDeflate(t, 300)
	many := func(n int) []byte {
		var b bytes.Buffer
		w := zip.NewWriter(&b)
		for i := range n {
			if _, err := w.CreateRaw(&zip.FileHeader{Name: strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
		return b.Bytes()
	}
	corruptData := corruptEntry(t, mkzip(t, exe("bootstrap", strings.Repeat("payload ", 100))), 0)

	tests := []struct {
		name      string
		zip       []byte
		bootstrap bool
		want      error // nil, or the Kind expected
	}{
		{"valid with executable bootstrap", valid, true, nil},
		{"valid without bootstrap rule", mkzip(t, file("index.js", "x")), false, nil},
		{"empty zip", mkzip(t), false, nil},
		{"dot-slash names", mkzip(t, exe("./bootstrap", "x"), dir("./")), true, nil},
		{"bootstrap symlink to executable", mkzip(t, link("bootstrap", "bin/app"), exe("bin/app", "x")), true, nil},
		{"bootstrap symlink chain", mkzip(t, link("bootstrap", "b1"), link("b1", "bin/../bin/app"), exe("bin/app", "x")), true, nil},
		{"missing bootstrap", mkzip(t, exe("main", "x")), true, ErrNoBootstrap},
		{"bootstrap only in a subdir", mkzip(t, exe("sub/bootstrap", "x")), true, ErrNoBootstrap},
		{"non-executable bootstrap", mkzip(t, file("bootstrap", "x")), true, ErrNoBootstrap},
		{"bootstrap is a dir", mkzip(t, dir("bootstrap/"), exe("bootstrap/x", "x")), true, ErrNoBootstrap},
		{"bootstrap symlink to non-executable", mkzip(t, link("bootstrap", "app"), file("app", "x")), true, ErrNoBootstrap},
		{"bootstrap symlink dangling", mkzip(t, link("bootstrap", "nothing")), true, ErrNoBootstrap},
		{"corrupt bytes", []byte("PK\x03\x04 this is not really a zip at all"), false, ErrNotZip},
		{"empty bytes", nil, false, ErrNotZip},
		{"truncated zip", valid[:len(valid)-30], false, ErrNotZip},
		{"corrupt deflate data", corruptData, false, ErrNotZip},
		{"dot-dot entry", mkzip(t, file("../evil", "x")), false, ErrUnsafePath},
		{"dot-dot inside entry", mkzip(t, file("a/../../evil", "x")), false, ErrUnsafePath},
		{"dot-dot alone", mkzip(t, dir("../")), false, ErrUnsafePath},
		{"absolute entry", mkzip(t, file("/etc/passwd", "x")), false, ErrUnsafePath},
		{"backslash entry", mkzip(t, file(`..\evil`, "x")), false, ErrUnsafePath},
		{"NUL in entry", mkzip(t, file("a\x00b", "x")), false, ErrUnsafePath},
		{"component too long", mkzip(t, file(strings.Repeat("a", 256), "x")), false, ErrUnsafePath},
		{"duplicate file", mkzip(t, file("a", "1"), file("a", "2")), false, ErrUnsafePath},
		{"file then dir of same name", mkzip(t, file("a", "1"), file("a/b", "2")), false, ErrUnsafePath},
		{"entry below a symlink", mkzip(t, dir("d/"), link("l", "d"), file("l/f", "x")), false, ErrUnsafePath},
		{"entry below a symlink, link last", mkzip(t, file("l/f", "x"), link("l", "d")), false, ErrUnsafePath},
		{"file named for the root", mkzip(t, file(".", "x")), false, ErrUnsafePath},
		{"symlink absolute", mkzip(t, link("l", "/etc/passwd")), false, ErrUnsafeSymlink},
		{"symlink ../../etc", mkzip(t, link("a/l", "../../etc")), false, ErrUnsafeSymlink},
		{"symlink .. from root", mkzip(t, link("l", "..")), false, ErrUnsafeSymlink},
		{"symlink through a link to the root", mkzip(t, link("x", "."), link("s", "x/..")), false, ErrUnsafeSymlink},
		{"symlink through a link, order reversed", mkzip(t, link("s", "d/x/../.."), dir("d/"), link("d/x", "..")), false, ErrUnsafeSymlink},
		{"symlink loop", mkzip(t, link("a", "b"), link("b", "a")), false, ErrUnsafeSymlink},
		{"symlink empty", mkzip(t, link("l", "")), false, ErrUnsafeSymlink},
		{"symlink target too long", mkzip(t, link("l", strings.Repeat("a/", 2048))), false, ErrUnsafeSymlink},
		{"symlink inside", mkzip(t, file("a/f", "x"), link("b/l", "../a/f"), link("b/d", "../a"), link("up", "b/../a/./f")), false, nil},
		{"symlink dangling inside", mkzip(t, link("l", "not/yet")), false, nil},
		{"symlink to the root", mkzip(t, link("self", ".")), false, nil},
		{"device", mkzip(t, ent{"dev", fs.ModeDevice | 0o644, ""}), false, ErrSpecialFile},
		{"char device", mkzip(t, ent{"tty", fs.ModeDevice | fs.ModeCharDevice | 0o644, ""}), false, ErrSpecialFile},
		{"fifo", mkzip(t, ent{"fifo", fs.ModeNamedPipe | 0o644, ""}), false, ErrSpecialFile},
		{"socket", mkzip(t, ent{"sock", fs.ModeSocket | 0o644, ""}), false, ErrSpecialFile},
		{"too many entries", many(MaxEntries + 1), false, ErrTooManyEntries},
		{"as many entries as allowed", many(MaxEntries), false, nil},
		{"zip too large", make([]byte, MaxZipSize+1), false, ErrZipTooLarge},
		{"zip bomb, honest headers", rawzip(t, zipHeader("zeros", bombCRC, len(bomb), 300<<20), bomb), false, ErrUnzippedTooLarge},
		{"zip bomb, lying headers", rawzip(t, zipHeader("zeros", bombCRC, len(bomb), 1<<20), bomb), false, ErrNotZip},
		{"declared sizes add up past the limit", func() []byte {
			var b bytes.Buffer
			w := zip.NewWriter(&b)
			for _, name := range []string{"a", "b"} {
				fw, _ := w.CreateRaw(zipHeader(name, bombCRC, len(bomb), 200<<20))
				fw.Write(bomb)
			}
			w.Close()
			return b.Bytes()
		}(), false, ErrUnzippedTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Check(tt.zip, tt.bootstrap)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Check = %T, want *Error", err)
			}
			code := rpc.ErrInvalidParameterValue
			if tt.want == ErrZipTooLarge {
				code = rpc.ErrRequestTooLarge
			}
			if !errors.Is(err, code) {
				t.Fatalf("Check = %v, does not match %v", err, code)
			}
			if w := rpc.AsError(err); w.Code != code.Code || w.Message != err.Error() {
				t.Fatalf("on the wire: %+v", w)
			}
		})
	}
}

func TestCheckMessagesAreLambdas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		zip  []byte
		want string
	}{
		{[]byte("garbage"), "Could not unzip uploaded file. Please check your file, then try to upload again."},
		{rawzip(t, &zip.FileHeader{Name: "big", Method: zip.Store, UncompressedSize64: MaxUnzippedSize + 1}, nil),
			"Unzipped size must be smaller than 262144000 bytes"},
	}
	for _, tt := range tests {
		if err := Check(tt.zip, false); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Check = %v, want a message starting %q", err, tt.want)
		}
	}
}

// inflate counts the bytes it actually inflates, whatever the headers say:
// archive/zip already stops at the declared size, so test the count alone.
func TestInflateCountsActualBytes(t *testing.T) {
	t.Parallel()
	data := mkzip(t, file("f", strings.Repeat("x", 100)))
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		left int64
		want error
	}{{99, ErrUnzippedTooLarge}, {100, nil}, {1000, nil}} {
		left := tt.left
		err := inflate(io.Discard, zr.File[0], &left)
		if !errors.Is(err, tt.want) && (tt.want != nil || err != nil) {
			t.Errorf("left %d: inflate = %v, want %v", tt.left, err, tt.want)
		}
		if err == nil && left != tt.left-100 {
			t.Errorf("left %d: %d left after, want %d", tt.left, left, tt.left-100)
		}
	}
}

func TestDirectoryRecordsBound(t *testing.T) {
	t.Parallel()
	// A stored file full of record signatures must not count: only the
	// directory does.
	noise := bytes.Repeat(append(bytes.Clone(sigDirHeader), make([]byte, 42)...), MaxEntries+10)
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	fw, _ := w.CreateHeader(&zip.FileHeader{Name: "noise", Method: zip.Store})
	fw.Write(noise)
	for i := range 3 {
		w.Create("f" + strconv.Itoa(i))
	}
	w.Close()
	if n := directoryRecordsBound(b.Bytes()); n < 4 || n > MaxEntries {
		t.Fatalf("bound = %d, want 4..%d", n, MaxEntries)
	}
	if err := Check(b.Bytes(), false); err != nil {
		t.Fatalf("Check = %v", err)
	}
	// With data prepended (as self-extracting zips have) the count holds.
	var many bytes.Buffer
	many.WriteString(strings.Repeat("prefix", 100))
	w = zip.NewWriter(&many)
	w.SetOffset(600)
	for i := range MaxEntries + 1 {
		w.CreateRaw(&zip.FileHeader{Name: strconv.Itoa(i)})
	}
	w.Close()
	if n := directoryRecordsBound(many.Bytes()); n != MaxEntries+1 {
		t.Fatalf("bound = %d, want %d", n, MaxEntries+1)
	}
}
