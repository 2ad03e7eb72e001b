package logstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"unicode/utf8"

	"nimbus/rpc"
)

// On-disk format.
//
// A segment file starts with segmentMagic and is followed by records:
//
//	+----------------+----------------+------------------------------------+
//	| body length u32| crc32c(body)u32| body                               |
//	| little endian  | little endian  |                                    |
//	+----------------+----------------+------------------------------------+
//	body = uvarint seq | varint time_ms | uvarint len | request id | uvarint len | line
//
// Varints must be minimal and the body must be consumed exactly, so that one
// event has exactly one encoding. A record is written in one piece into the
// segment's buffer; a crash can only leave a torn record at the end of the
// last segment, which recovery truncates away.
const (
	segmentMagic     = "NMBSLOG1"
	recordHeaderSize = 8
	minRecordBody    = 4 // four one-byte varints: seq, time, two empty strings
	// maxRecordBody bounds the body length a decoder accepts before it reads
	// the body, so that a corrupt length never makes it allocate much.
	maxRecordBody = 4*binary.MaxVarintLen64 + maxRequestIDBytes + maxLineBytes
)

// Limits on what one event holds. Longer values are truncated by Append.
const (
	maxLineBytes      = 256 << 10
	maxRequestIDBytes = 1 << 10
)

var (
	// errShortRecord means the bytes end inside a record: a torn write.
	errShortRecord = errors.New("logstore: short record")
	// errCorruptRecord means the bytes are not a record.
	errCorruptRecord = errors.New("logstore: corrupt record")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordView is a decoded record whose strings still point into the buffer
// it was decoded from; event copies them out.
type recordView struct {
	seq       uint64
	timeMs    int64
	requestID []byte
	line      []byte
}

func (v *recordView) event() rpc.LogEvent {
	return rpc.LogEvent{Seq: v.seq, TimeMs: v.timeMs, RequestID: string(v.requestID), Line: string(v.line)}
}

// appendRecord appends the record of ev to dst.
func appendRecord(dst []byte, ev *rpc.LogEvent) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = binary.AppendUvarint(dst, ev.Seq)
	dst = binary.AppendVarint(dst, ev.TimeMs)
	dst = binary.AppendUvarint(dst, uint64(len(ev.RequestID)))
	dst = append(dst, ev.RequestID...)
	dst = binary.AppendUvarint(dst, uint64(len(ev.Line)))
	dst = append(dst, ev.Line...)
	body := dst[start+recordHeaderSize:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(body, castagnoli))
	return dst
}

// decodeRecord decodes the record at the start of b and returns it with the
// number of bytes it takes. It returns errShortRecord when b ends inside the
// record and errCorruptRecord when b does not hold a valid record.
func decodeRecord(b []byte) (rpc.LogEvent, int, error) {
	v, n, err := parseRecord(b)
	if err != nil {
		return rpc.LogEvent{}, 0, err
	}
	return v.event(), n, nil
}

// parseRecord is decodeRecord without copying the strings out of b.
func parseRecord(b []byte) (recordView, int, error) {
	if len(b) < recordHeaderSize {
		return recordView{}, 0, errShortRecord
	}
	n, err := bodyLength(b)
	if err != nil {
		return recordView{}, 0, err
	}
	if len(b)-recordHeaderSize < n {
		return recordView{}, 0, errShortRecord
	}
	body := b[recordHeaderSize : recordHeaderSize+n]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return recordView{}, 0, errCorruptRecord
	}
	v, err := parseBody(body)
	if err != nil {
		return recordView{}, 0, err
	}
	return v, recordHeaderSize + n, nil
}

// bodyLength reads and bounds the body length from a record header.
func bodyLength(hdr []byte) (int, error) {
	n := binary.LittleEndian.Uint32(hdr)
	if n < minRecordBody || n > maxRecordBody {
		return 0, errCorruptRecord
	}
	return int(n), nil
}

func parseBody(body []byte) (recordView, error) {
	var v recordView
	p := body
	seq, ok := readUvarint(&p)
	if !ok || seq == 0 {
		return v, errCorruptRecord
	}
	t, ok := readUvarint(&p)
	if !ok {
		return v, errCorruptRecord
	}
	rid, ok := readBytes(&p, maxRequestIDBytes)
	if !ok {
		return v, errCorruptRecord
	}
	line, ok := readBytes(&p, maxLineBytes)
	if !ok || len(p) != 0 {
		return v, errCorruptRecord
	}
	v.seq, v.timeMs, v.requestID, v.line = seq, unzigzag(t), rid, line
	return v, nil
}

// readUvarint consumes one minimal uvarint from *p.
func readUvarint(p *[]byte) (uint64, bool) {
	x, n := binary.Uvarint(*p)
	if n <= 0 || n != uvarintLen(x) {
		return 0, false
	}
	*p = (*p)[n:]
	return x, true
}

// readBytes consumes a length-prefixed byte string of at most max bytes.
func readBytes(p *[]byte, max int) ([]byte, bool) {
	n, ok := readUvarint(p)
	if !ok || n > uint64(max) || n > uint64(len(*p)) {
		return nil, false
	}
	b := (*p)[:n:n]
	*p = (*p)[n:]
	return b, true
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// unzigzag undoes the signed mapping of binary.AppendVarint.
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// segmentReader reads the records of one segment file up to a byte limit.
// Its buffer is reused: a recordView it returns is valid until the next call.
type segmentReader struct {
	r     *bufio.Reader
	off   int64 // offset of the next record
	limit int64 // stop at this offset
	buf   []byte
}

// next returns the next record, io.EOF at the limit or at a clean end of
// file, errShortRecord at a torn record and errCorruptRecord at garbage.
func (sr *segmentReader) next() (recordView, error) {
	if sr.off >= sr.limit {
		return recordView{}, io.EOF
	}
	if cap(sr.buf) < recordHeaderSize {
		sr.buf = make([]byte, 0, 4096)
	}
	hdr := sr.buf[:recordHeaderSize]
	if n, err := io.ReadFull(sr.r, hdr); err != nil {
		if n == 0 && err == io.EOF {
			return recordView{}, io.EOF
		}
		return recordView{}, errShortRecord
	}
	n, err := bodyLength(hdr)
	if err != nil {
		return recordView{}, err
	}
	total := recordHeaderSize + n
	if sr.off+int64(total) > sr.limit {
		return recordView{}, errShortRecord
	}
	if cap(sr.buf) < total {
		nb := make([]byte, total)
		copy(nb, hdr)
		sr.buf = nb
	}
	rec := sr.buf[:total]
	if _, err := io.ReadFull(sr.r, rec[recordHeaderSize:]); err != nil {
		return recordView{}, errShortRecord
	}
	v, _, err := parseRecord(rec)
	if err != nil {
		return recordView{}, err
	}
	sr.off += int64(total)
	return v, nil
}

// validName reports whether name is a function name Lambda accepts
// (^[a-zA-Z0-9-_]+$, 1 to 64 characters). Only such names become paths.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

func checkName(name string) error {
	if !validName(name) {
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9-_]+$ and have length between 1 and 64", clip(name, 80))
	}
	return nil
}

// clip cuts s to at most max bytes without splitting a valid UTF-8
// sequence (invalid bytes are cut anywhere).
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	for j := 1; j < utf8.UTFMax && i > 0 && !utf8.RuneStart(s[i]); j++ {
		i--
	}
	return s[:i]
}
