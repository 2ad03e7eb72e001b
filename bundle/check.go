package bundle

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// Limits, as AWS Lambda has them.
const (
	MaxZipSize      = 50 << 20  // Lambda's direct-upload zip limit
	MaxUnzippedSize = 250 << 20 // Lambda's unzipped limit
	MaxEntries      = 20000     // entries (files, dirs, links) in one zip
)

// Check validates a zip without writing anything. It must be a readable zip
// of at most MaxZipSize bytes and MaxEntries entries; every entry name must
// be relative, free of "..", and not below a file or a symlink; symlinks
// must be relative and lead inside the bundle, through the bundle's other
// links too; devices, fifos and sockets are refused; the declared and the
// actually inflated sizes must each total at most MaxUnzippedSize. With
// requireBootstrap, the root must hold an executable regular file named
// bootstrap, or a symlink leading to one (Lambda's provided runtime).
//
// Errors are *Error values.
func Check(data []byte, requireBootstrap bool) error {
	t, left, err := parse(data)
	if err != nil {
		return err
	}
	if requireBootstrap {
		if err := t.checkBootstrap(); err != nil {
			return err
		}
	}
	for _, n := range t.files {
		if err := inflate(io.Discard, n.file, &left); err != nil {
			return err
		}
	}
	return nil
}

// parse checks everything but the content of regular files and returns the
// bundle's tree and how many unzipped bytes the files may still use.
func parse(data []byte) (*tree, int64, error) {
	if len(data) > MaxZipSize {
		return nil, 0, &Error{Kind: ErrZipTooLarge, Msg: msgZippedLimit, Detail: fmt.Sprintf("the zip is %d bytes", len(data))}
	}
	// archive/zip allocates a few hundred bytes per directory record before
	// we can count them, so count first.
	if n := directoryRecordsBound(data); n > MaxEntries {
		return nil, 0, tooManyEntries(n)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) { // names are checked below
		return nil, 0, unzipError(ErrNotZip, err.Error())
	}
	if len(zr.File) > MaxEntries {
		return nil, 0, tooManyEntries(len(zr.File))
	}
	var declared uint64
	for _, f := range zr.File {
		if f.UncompressedSize64 > MaxUnzippedSize-declared {
			return nil, 0, &Error{Kind: ErrUnzippedTooLarge, Msg: msgUnzippedLimit, Detail: "the sizes the zip declares add up to more"}
		}
		declared += f.UncompressedSize64
	}
	t := newTree()
	for _, f := range zr.File {
		p, err := cleanName(f.Name)
		if err != nil {
			return nil, 0, unzipError(ErrUnsafePath, err.Error())
		}
		if f.Flags&0x1 != 0 {
			return nil, 0, unzipError(ErrNotZip, fmt.Sprintf("entry %q is encrypted", f.Name))
		}
		kind, err := entryKind(f)
		if err != nil {
			return nil, 0, err
		}
		n, err := t.add(p, kind, f)
		if err != nil {
			return nil, 0, err
		}
		n.exec = kind == kindFile && f.Mode()&0o111 != 0
	}
	left := int64(MaxUnzippedSize)
	for _, l := range t.links {
		if l.target, err = readLink(l.file, &left); err != nil {
			return nil, 0, err
		}
	}
	if err := t.checkLinks(); err != nil {
		return nil, 0, err
	}
	return t, left, nil
}

func tooManyEntries(n int) *Error {
	return unzipError(ErrTooManyEntries, fmt.Sprintf("the zip holds %d entries; at most %d are allowed", n, MaxEntries))
}

// entryKind classifies an entry by the mode its header records.
func entryKind(f *zip.File) (nodeKind, error) {
	m := f.Mode()
	switch m & fs.ModeType {
	case 0:
		return kindFile, nil
	case fs.ModeDir:
		return kindDir, nil
	case fs.ModeSymlink:
		return kindLink, nil
	}
	return 0, unzipError(ErrSpecialFile, fmt.Sprintf("entry %q has mode %v: only files, directories and symlinks are allowed", f.Name, m))
}

// readLink reads a symlink entry's target.
func readLink(f *zip.File, left *int64) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", unzipError(ErrNotZip, fmt.Sprintf("entry %q: %v", f.Name, err))
	}
	defer rc.Close()
	// One byte more than allowed, so checkLinks sees an overlong target.
	b, err := io.ReadAll(io.LimitReader(rc, maxPathLen+1))
	if err != nil {
		return "", unzipError(ErrNotZip, fmt.Sprintf("entry %q: %v", f.Name, err))
	}
	if *left -= int64(len(b)); *left < 0 {
		return "", &Error{Kind: ErrUnzippedTooLarge, Msg: msgUnzippedLimit}
	}
	return string(b), nil
}

// inflate copies a file entry's content to w, counting the bytes actually
// inflated against left whatever the headers claim. A fault in the zip is an
// *Error; a fault of w is returned as is.
func inflate(w io.Writer, f *zip.File, left *int64) error {
	rc, err := f.Open()
	if err != nil {
		return unzipError(ErrNotZip, fmt.Sprintf("entry %q: %v", f.Name, err))
	}
	defer rc.Close()
	r := &trackedReader{r: rc}
	n, err := io.CopyN(w, r, *left+1)
	if *left -= n; *left < 0 {
		return &Error{Kind: ErrUnzippedTooLarge, Msg: msgUnzippedLimit, Detail: fmt.Sprintf("entry %q inflates past the limit", f.Name)}
	}
	switch {
	case r.err != nil:
		return unzipError(ErrNotZip, fmt.Sprintf("entry %q: %v", f.Name, r.err))
	case err != nil && err != io.EOF:
		return fmt.Errorf("bundle: writing %q: %w", f.Name, err)
	}
	return nil
}

// trackedReader remembers a read error, to tell it from a write error.
type trackedReader struct {
	r   io.Reader
	err error
}

func (t *trackedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// Zip record layout, as in APPNOTE.TXT.
var (
	sigDirHeader = []byte("PK\x01\x02")
	sigDirEnd    = []byte("PK\x05\x06")
	sigDir64Loc  = []byte("PK\x06\x07")
	sigDir64End  = []byte("PK\x06\x06")
)

const (
	dirHeaderLen = 46
	dirEndLen    = 22
	dir64LocLen  = 20
	dir64EndLen  = 56
)

// directoryRecordsBound returns at least as many as the directory records
// archive/zip would read from data, finding the directory the way it does.
// A zip with few record signatures in it returns at once.
func directoryRecordsBound(data []byte) int {
	if n := bytes.Count(data, sigDirHeader); n <= MaxEntries {
		return n
	}
	// From here data holds over MaxEntries signatures, so it is far longer
	// than any fixed record: the offsets below cannot go negative.
	le := binary.LittleEndian
	// The end record is the last signature in the final 65 KiB whose
	// comment fits in the file.
	end := -1
	for i := len(data) - dirEndLen; i >= 0 && i >= len(data)-65*1024; i-- {
		if bytes.Equal(data[i:i+4], sigDirEnd) {
			if i+dirEndLen+int(le.Uint16(data[i+20:])) <= len(data) {
				end = i
			}
			break
		}
	}
	if end < 0 {
		return 0 // archive/zip reads no record either
	}
	records := uint64(le.Uint16(data[end+10:]))
	size := uint64(le.Uint32(data[end+12:]))
	offset := uint64(le.Uint32(data[end+16:]))
	endOffset := uint64(end)
	if records == 0xffff || size == 0xffff || offset == 0xffffffff {
		if loc := end - dir64LocLen; loc >= 0 && bytes.Equal(data[loc:loc+4], sigDir64Loc) &&
			le.Uint32(data[loc+4:]) == 0 && le.Uint32(data[loc+16:]) == 1 {
			p := le.Uint64(data[loc+8:])
			if p > uint64(len(data)-dir64EndLen) || !bytes.Equal(data[p:p+4], sigDir64End) {
				return 0 // archive/zip fails
			}
			size, offset, endOffset = le.Uint64(data[p+40:]), le.Uint64(data[p+48:]), p
		}
	}
	// archive/zip starts at endOffset-size (offset plus a base for prepended
	// data) or, when that base seems wrong, at offset: count from both.
	n := 0
	if size <= endOffset {
		n = countRecords(data, endOffset-size)
	}
	return max(n, countRecords(data, offset))
}

// countRecords counts the whole directory records that follow each other
// from off.
func countRecords(data []byte, off uint64) int {
	n := 0
	for off <= uint64(len(data)-dirHeaderLen) && bytes.Equal(data[off:off+4], sigDirHeader) {
		le := binary.LittleEndian
		next := off + dirHeaderLen + uint64(le.Uint16(data[off+28:])) + uint64(le.Uint16(data[off+30:])) + uint64(le.Uint16(data[off+32:]))
		if next > uint64(len(data)) {
			break
		}
		n++
		off = next
	}
	return n
}
