package bundle

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// zipEpoch is the timestamp of every entry ZipDir writes: the earliest a zip
// can hold, so that the bytes depend on the tree alone.
var zipEpoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// ZipDir zips the tree under dir deterministically: entries in sorted path
// order, dirs included (so empty dirs and their modes survive), fixed
// timestamps, permission bits kept, symlinks stored as links (their text,
// unresolved). The same tree gives the same bytes, and so the same Digest,
// with the same Go release (compress/flate's output may change between
// releases). A symlink given as dir itself is followed.
//
// ZipDir refuses devices, fifos and sockets, and trees past MaxEntries or
// MaxUnzippedSize; it does not otherwise validate: callers run Check on the
// result, which also refuses links leading outside the tree.
func ZipDir(dir string) ([]byte, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle: zip dir: %w", err)
	}
	type item struct {
		name string // the zip entry name: slash path, dirs ending in "/"
		path string
		info fs.FileInfo
	}
	var items []item
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		switch info.Mode().Type() {
		case fs.ModeDir:
			name += "/"
		case 0, fs.ModeSymlink:
		default:
			return specialFileError(name, info.Mode())
		}
		if len(items) == MaxEntries {
			return tooManyEntries(len(items) + 1)
		}
		items = append(items, item{name: name, path: p, info: info})
		return nil
	})
	if err != nil {
		return nil, zipDirError(err)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].name < items[j].name })

	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	left := int64(MaxUnzippedSize)
	for _, it := range items {
		if err := addEntry(w, it.name, it.path, it.info.Mode(), &left); err != nil {
			return nil, zipDirError(err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, zipDirError(err)
	}
	return buf.Bytes(), nil
}

// addEntry writes one entry of ZipDir, counting its content against left.
func addEntry(w *zip.Writer, name, path string, mode fs.FileMode, left *int64) error {
	h := &zip.FileHeader{Name: name, Modified: zipEpoch, Method: zip.Store}
	h.SetMode(mode.Type() | mode.Perm())
	var content io.Reader
	switch mode.Type() {
	case fs.ModeSymlink:
		target, err := os.Readlink(path)
		if err != nil {
			return err
		}
		content = strings.NewReader(target)
	case 0:
		h.Method = zip.Deflate
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		content = f
	}
	fw, err := w.CreateHeader(h)
	if err != nil || content == nil {
		return err
	}
	// One byte more than left, so a tree past the limit is caught even when
	// a file grows while we read it.
	n, err := io.CopyN(fw, content, *left+1)
	if err != nil && err != io.EOF {
		return err
	}
	if *left -= n; *left < 0 {
		return &Error{Kind: ErrUnzippedTooLarge, Msg: msgUnzippedLimit, Detail: "the tree is larger"}
	}
	return nil
}

// specialFileError says which entry of a folder cannot be uploaded, and
// why: an InvalidParameterValueException naming it, not Lambda's "Could not
// unzip", since nothing was unzipped.
func specialFileError(name string, mode fs.FileMode) *Error {
	what := "a special file"
	switch {
	case mode&fs.ModeNamedPipe != 0:
		what = "a fifo"
	case mode&fs.ModeSocket != 0:
		what = "a socket"
	case mode&fs.ModeCharDevice != 0:
		what = "a character device"
	case mode&fs.ModeDevice != 0:
		what = "a block device"
	case mode&fs.ModeIrregular != 0:
		what = "a file of unknown type"
	}
	return &Error{Kind: ErrSpecialFile, Msg: msgSpecialFile, Detail: name + " is " + what}
}

func zipDirError(err error) error {
	if _, ok := err.(*Error); ok {
		return err
	}
	return fmt.Errorf("bundle: zip dir: %w", err)
}
