package rpc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// DefaultMaxFrameSize bounds the payload of one frame (header and body). A
// 50 MB code zip must fit in one CreateFunction request.
const DefaultMaxFrameSize = 64 << 20

const (
	lenPrefix       = 4       // bytes of the big-endian length before each payload
	headerFields    = 4       // seq, method, timeout_ms, error
	maxHeaderFields = 16      // later versions may append fields; more is garbage
	maxMethodLen    = 256     // method names are short ("Function.Create")
	maxDepth        = 32      // nesting limit of a body; our types need < 6
	readChunk       = 1 << 20 // frames above this grow as their bytes arrive
	poolMaxCap      = 1 << 20 // buffers that grew past this are left to the GC
	maxTimeoutMs    = 1 << 40 // ~35 years; caps header timeouts before Duration math
)

// Frame and header decoding errors. They are protocol violations: the
// connection that produced them is closed.
var (
	errFrameTooLarge = errors.New("rpc: frame exceeds the maximum frame size")
	errEmptyFrame    = errors.New("rpc: empty frame")
	errShortBuffer   = errors.New("rpc: msgpack value truncated")
	errTooDeep       = errors.New("rpc: msgpack value nested too deeply")
	errTrailing      = errors.New("rpc: bytes after the msgpack value")
)

// header is the first msgpack value of every frame. On requests err is nil;
// on responses method is empty and timeoutMs is 0.
//
// On the wire it is a msgpack array [seq, method, timeout_ms, error] where
// error is nil or a map {"code", "message", "reason"}. A decoder ignores
// array elements past the fourth and unknown keys of the error map, so fields
// can be appended later.
type header struct {
	seq       uint64
	method    []byte // aliases the frame buffer: copy before keeping it
	timeoutMs uint64
	err       *Error
	// deadlineMs, the optional fifth element, is the caller's deadline in
	// Unix milliseconds (0: none). Peers within a cluster send it; a server
	// refuses a request that arrives after it (see ClientOptions.SendDeadline).
	deadlineMs uint64
	// kind, the optional sixth element, tells a streamed answer's frames
	// apart (stream.go): 0 (or absent) is a request or an answer.
	kind uint64
}

// frameBuf holds one frame. It is owned by exactly one goroutine at a time:
// the encoder, then the connection writer (which pools it after writing), or
// the connection reader, then the goroutine that decodes the body (which
// pools it after decoding).
type frameBuf struct {
	b []byte
	// owner, when set, is the server connection whose read budgets hold
	// held bytes for this frame; putBuf gives them back.
	owner *serverConn
	held  int64
}

// Write and WriteByte make *frameBuf the msgpack encoder's writer without an
// intermediate buffer.
func (f *frameBuf) Write(p []byte) (int, error) {
	f.b = append(f.b, p...)
	return len(p), nil
}

func (f *frameBuf) WriteByte(c byte) error {
	f.b = append(f.b, c)
	return nil
}

var bufPool = sync.Pool{New: func() any { return &frameBuf{b: make([]byte, 0, 2048)} }}

func getBuf() *frameBuf { return bufPool.Get().(*frameBuf) }

func putBuf(f *frameBuf) {
	if f == nil {
		return
	}
	if f.owner != nil {
		f.owner.reads.give(f.held)
		f.owner.s.reads.give(f.held)
		f.owner, f.held = nil, 0
	}
	if cap(f.b) > poolMaxCap {
		return
	}
	f.b = f.b[:0]
	bufPool.Put(f)
}

// startFrame resets f to an empty frame: a length placeholder, then the header.
func startFrame(f *frameBuf, seq uint64, method string, timeoutMs uint64, e *Error) {
	startFrameDeadline(f, seq, method, timeoutMs, e, 0)
}

// startFrameDeadline is startFrame with the optional absolute deadline.
func startFrameDeadline(f *frameBuf, seq uint64, method string, timeoutMs uint64, e *Error, deadlineMs uint64) {
	b := append(f.b[:0], 0, 0, 0, 0)
	if deadlineMs == 0 {
		b = append(b, 0x90|headerFields)
	} else {
		b = append(b, 0x90|(headerFields+1))
	}
	b = appendUint(b, seq)
	b = appendStr(b, method)
	b = appendUint(b, timeoutMs)
	if e == nil {
		b = append(b, 0xc0)
	} else {
		b = appendError(b, e)
	}
	if deadlineMs != 0 {
		b = appendUint(b, deadlineMs)
	}
	f.b = b
}

// startFrameKind starts a frame of a stream (stream.go): a header of six
// elements, [seq, "", 0, e, 0, kind].
func startFrameKind(f *frameBuf, seq, kind uint64, e *Error) {
	b := append(f.b[:0], 0, 0, 0, 0, 0x90|(headerFields+2))
	b = appendUint(b, seq)
	b = appendStr(b, "")
	b = appendUint(b, 0)
	if e == nil {
		b = append(b, 0xc0)
	} else {
		b = appendError(b, e)
	}
	b = appendUint(b, 0)
	b = appendUint(b, kind)
	f.b = b
}

// finishFrame writes the length prefix. It fails when the payload is larger
// than maxSize (the frame is then not sent).
func finishFrame(f *frameBuf, maxSize int) error {
	n := len(f.b) - lenPrefix
	if n > maxSize || uint64(n) > math.MaxUint32 {
		return fmt.Errorf("%w: %d > %d bytes", errFrameTooLarge, n, maxSize)
	}
	binary.BigEndian.PutUint32(f.b, uint32(n))
	return nil
}

// encodeBody appends v as one msgpack value.
func encodeBody(f *frameBuf, v any) error {
	enc := msgpack.GetEncoder()
	enc.Reset(f)
	err := enc.Encode(v)
	msgpack.PutEncoder(enc)
	return err
}

type bodyDecoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

var decPool = sync.Pool{New: func() any {
	d := new(bodyDecoder)
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}}

// decodeBody decodes the body b into v. b is checked first (one value,
// bounded nesting, element counts that fit in the bytes present) so that
// untrusted bytes cannot make the msgpack library recurse without bound or
// preallocate far more than the frame holds. The result never aliases b:
// msgpack copies strings and byte slices, so b may be reused afterwards.
func decodeBody(b []byte, v any) error {
	if err := checkValue(b); err != nil {
		return err
	}
	d := decPool.Get().(*bodyDecoder)
	d.r.Reset(b)
	d.dec.Reset(&d.r)
	err := d.dec.Decode(v)
	d.r.Reset(nil)
	decPool.Put(d)
	return err
}

// readFrame reads one frame from r into f: afterwards f.b is the payload
// (header and body, without the length prefix). An announced length above maxSize
// is refused before anything is allocated for it, and a large frame's buffer
// grows only as its bytes arrive, so a peer cannot make us hold memory it has
// not sent.
func readFrame(r *bufio.Reader, maxSize int, f *frameBuf) error {
	p, err := r.Peek(lenPrefix)
	if err != nil {
		if err == io.EOF && len(p) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	n := int(binary.BigEndian.Uint32(p))
	if _, err := r.Discard(lenPrefix); err != nil {
		return err
	}
	if n > maxSize {
		return fmt.Errorf("%w: announced %d > %d bytes", errFrameTooLarge, n, maxSize)
	}
	if n == 0 {
		return errEmptyFrame
	}
	if n <= readChunk {
		f.b = slices.Grow(f.b[:0], n)[:n]
		_, err = io.ReadFull(r, f.b)
		return unexpectedEOF(err)
	}
	f.b = f.b[:0]
	for len(f.b) < n {
		start := len(f.b)
		chunk := min(n-start, max(start, readChunk))
		f.b = slices.Grow(f.b, chunk)[:start+chunk]
		if _, err := io.ReadFull(r, f.b[start:]); err != nil {
			return unexpectedEOF(err)
		}
	}
	return nil
}

// peekFrameLen returns the announced payload length of the next frame
// without consuming it, refusing one above maxSize or empty.
func peekFrameLen(r *bufio.Reader, maxSize int) (int64, error) {
	p, err := r.Peek(lenPrefix)
	if err != nil {
		if err == io.EOF && len(p) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	n := int64(binary.BigEndian.Uint32(p))
	if n > int64(maxSize) {
		return 0, fmt.Errorf("%w: announced %d > %d bytes", errFrameTooLarge, n, maxSize)
	}
	if n == 0 {
		return 0, errEmptyFrame
	}
	return n + lenPrefix, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// frameBuffered reports whether r already holds the whole next frame, so that
// reading it cannot block.
func frameBuffered(r *bufio.Reader) bool {
	if r.Buffered() < lenPrefix {
		return false
	}
	p, _ := r.Peek(lenPrefix)
	return uint64(r.Buffered()) >= lenPrefix+uint64(binary.BigEndian.Uint32(p))
}

// parseHeader decodes the header at the start of payload p and returns it
// with the offset of the body.
func parseHeader(p []byte) (header, int, error) {
	var h header
	b := p
	n, b, err := readArrayLen(b)
	if err != nil {
		return h, 0, fmt.Errorf("rpc: header: %w", err)
	}
	if n < headerFields || n > maxHeaderFields {
		return h, 0, fmt.Errorf("rpc: header has %d fields", n)
	}
	if h.seq, b, err = readUint(b); err != nil {
		return h, 0, fmt.Errorf("rpc: header seq: %w", err)
	}
	if h.method, b, err = readStr(b); err != nil {
		return h, 0, fmt.Errorf("rpc: header method: %w", err)
	}
	if len(h.method) > maxMethodLen {
		return h, 0, fmt.Errorf("rpc: header method of %d bytes", len(h.method))
	}
	if h.timeoutMs, b, err = readUint(b); err != nil {
		return h, 0, fmt.Errorf("rpc: header timeout: %w", err)
	}
	if h.timeoutMs > maxTimeoutMs {
		h.timeoutMs = maxTimeoutMs
	}
	if h.err, b, err = readError(b); err != nil {
		return h, 0, fmt.Errorf("rpc: header error: %w", err)
	}
	i := headerFields
	if n > headerFields {
		// The deadline, when it is an unsigned integer; anything else is a
		// field of some other encoder's, skipped below.
		if v, rest, err := readUint(b); err == nil {
			h.deadlineMs, b = v, rest
			i++
		}
	}
	if i == headerFields+1 && n > i {
		if v, rest, err := readUint(b); err == nil {
			h.kind, b = v, rest
			i++
		}
	}
	for ; i < n; i++ {
		if b, err = skipValue(b, 1); err != nil {
			return h, 0, fmt.Errorf("rpc: header: %w", err)
		}
	}
	return h, len(p) - len(b), nil
}

// appendError encodes e as a map with the same keys as Error's msgpack tags.
func appendError(b []byte, e *Error) []byte {
	code := e.Code
	if code == "" {
		code = CodeService
	}
	if e.Reason == "" {
		b = append(b, 0x80|2)
	} else {
		b = append(b, 0x80|3)
	}
	b = appendStr(appendStr(b, "code"), code)
	b = appendStr(appendStr(b, "message"), e.Message)
	if e.Reason != "" {
		b = appendStr(appendStr(b, "reason"), e.Reason)
	}
	return b
}

func readError(b []byte) (*Error, []byte, error) {
	if len(b) == 0 {
		return nil, b, errShortBuffer
	}
	if b[0] == 0xc0 {
		return nil, b[1:], nil
	}
	n, b, err := readMapLen(b)
	if err != nil {
		return nil, b, err
	}
	e := new(Error)
	for range n {
		var k, v []byte
		if k, b, err = readStr(b); err != nil {
			return nil, b, err
		}
		switch string(k) {
		case "code":
			v, b, err = readStr(b)
			e.Code = string(v)
		case "message":
			v, b, err = readStr(b)
			e.Message = string(v)
		case "reason":
			v, b, err = readStr(b)
			e.Reason = string(v)
		default:
			b, err = skipValue(b, 1)
		}
		if err != nil {
			return nil, b, err
		}
	}
	if e.Code == "" {
		e.Code = CodeService
	}
	return e, b, nil
}

// --- msgpack primitives -----------------------------------------------------

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
	}
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n <= 31:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

// readUint reads a non-negative integer in any msgpack integer encoding.
func readUint(b []byte) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, b, errShortBuffer
	}
	c := b[0]
	switch {
	case c <= 0x7f:
		return uint64(c), b[1:], nil
	case c == 0xcc || c == 0xd0:
		return fixedInt(b, 1, c == 0xd0)
	case c == 0xcd || c == 0xd1:
		return fixedInt(b, 2, c == 0xd1)
	case c == 0xce || c == 0xd2:
		return fixedInt(b, 4, c == 0xd2)
	case c == 0xcf || c == 0xd3:
		return fixedInt(b, 8, c == 0xd3)
	}
	return 0, b, fmt.Errorf("rpc: msgpack code %#x is not an unsigned integer", c)
}

func fixedInt(b []byte, size int, signed bool) (uint64, []byte, error) {
	if len(b) < 1+size {
		return 0, b, errShortBuffer
	}
	var v uint64
	for _, c := range b[1 : 1+size] {
		v = v<<8 | uint64(c)
	}
	if signed && b[1]&0x80 != 0 {
		return 0, b, errors.New("rpc: negative integer")
	}
	return v, b[1+size:], nil
}

// readStr reads a str (or bin, or nil as empty) and returns bytes aliasing b.
func readStr(b []byte) ([]byte, []byte, error) {
	if len(b) == 0 {
		return nil, b, errShortBuffer
	}
	c := b[0]
	var n, hdr int
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n, hdr = int(c&0x1f), 1
	case c == 0xc0:
		return nil, b[1:], nil
	case c == 0xd9 || c == 0xc4:
		n, hdr = lenAt(b, 1)
	case c == 0xda || c == 0xc5:
		n, hdr = lenAt(b, 2)
	case c == 0xdb || c == 0xc6:
		n, hdr = lenAt(b, 4)
	default:
		return nil, b, fmt.Errorf("rpc: msgpack code %#x is not a string", c)
	}
	if hdr == 0 || len(b)-hdr < n {
		return nil, b, errShortBuffer
	}
	return b[hdr : hdr+n], b[hdr+n:], nil
}

func readArrayLen(b []byte) (int, []byte, error) {
	if len(b) == 0 {
		return 0, b, errShortBuffer
	}
	c := b[0]
	var n, hdr int
	switch {
	case c >= 0x90 && c <= 0x9f:
		n, hdr = int(c&0x0f), 1
	case c == 0xdc:
		n, hdr = lenAt(b, 2)
	case c == 0xdd:
		n, hdr = lenAt(b, 4)
	default:
		return 0, b, fmt.Errorf("rpc: msgpack code %#x is not an array", c)
	}
	if hdr == 0 {
		return 0, b, errShortBuffer
	}
	return n, b[hdr:], nil
}

func readMapLen(b []byte) (int, []byte, error) {
	if len(b) == 0 {
		return 0, b, errShortBuffer
	}
	c := b[0]
	var n, hdr int
	switch {
	case c >= 0x80 && c <= 0x8f:
		n, hdr = int(c&0x0f), 1
	case c == 0xde:
		n, hdr = lenAt(b, 2)
	case c == 0xdf:
		n, hdr = lenAt(b, 4)
	default:
		return 0, b, fmt.Errorf("rpc: msgpack code %#x is not a map", c)
	}
	if hdr == 0 {
		return 0, b, errShortBuffer
	}
	if n > (len(b)-hdr)/2 {
		return 0, b, errShortBuffer
	}
	return n, b[hdr:], nil
}

// lenAt reads a big-endian length of size bytes after the code byte. hdr is
// the number of bytes consumed (code and length), or 0 if b is too short.
func lenAt(b []byte, size int) (n, hdr int) {
	if len(b) < 1+size {
		return 0, 0
	}
	for _, c := range b[1 : 1+size] {
		n = n<<8 | int(c)
	}
	return n, 1 + size
}

// checkValue reports whether b is exactly one well-formed msgpack value.
func checkValue(b []byte) error {
	rest, err := skipValue(b, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errTrailing
	}
	return nil
}

// skipValue returns b after its first msgpack value. It rejects nesting deeper
// than maxDepth and containers announcing more elements than bytes remain
// (each element takes at least one byte), so what the msgpack library
// allocates for a checked value is bounded by the value's size.
func skipValue(b []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, errTooDeep
	}
	if len(b) == 0 {
		return b, errShortBuffer
	}
	c := b[0]
	var size, n, hdr int // size: raw bytes to skip; n: nested values to skip
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return b[1:], nil
	case c >= 0x80 && c <= 0x8f:
		n, hdr = 2*int(c&0x0f), 1
	case c >= 0x90 && c <= 0x9f:
		n, hdr = int(c&0x0f), 1
	case c >= 0xa0 && c <= 0xbf:
		size, hdr = int(c&0x1f), 1
	case c == 0xc4 || c == 0xd9:
		size, hdr = lenAt(b, 1)
	case c == 0xc5 || c == 0xda:
		size, hdr = lenAt(b, 2)
	case c == 0xc6 || c == 0xdb:
		size, hdr = lenAt(b, 4)
	case c == 0xc7:
		size, hdr = lenAt(b, 1)
		size++ // ext type byte
	case c == 0xc8:
		size, hdr = lenAt(b, 2)
		size++
	case c == 0xc9:
		size, hdr = lenAt(b, 4)
		size++
	case c == 0xcc || c == 0xd0:
		size, hdr = 1, 1
	case c == 0xcd || c == 0xd1:
		size, hdr = 2, 1
	case c == 0xca || c == 0xce || c == 0xd2:
		size, hdr = 4, 1
	case c == 0xcb || c == 0xcf || c == 0xd3:
		size, hdr = 8, 1
	case c >= 0xd4 && c <= 0xd8: // fixext 1, 2, 4, 8, 16
		size, hdr = 1+(1<<(c-0xd4)), 1
	case c == 0xdc:
		n, hdr = lenAt(b, 2)
	case c == 0xdd:
		n, hdr = lenAt(b, 4)
	case c == 0xde:
		n, hdr = lenAt(b, 2)
		n *= 2
	case c == 0xdf:
		n, hdr = lenAt(b, 4)
		n *= 2
	default: // 0xc1 is never used
		return b, fmt.Errorf("rpc: invalid msgpack code %#x", c)
	}
	if hdr == 0 {
		return b, errShortBuffer
	}
	b = b[hdr:]
	if size > len(b) || n > len(b) {
		return b, errShortBuffer
	}
	b = b[size:]
	for i := 0; i < n; i++ {
		var err error
		if b, err = skipValue(b, depth+1); err != nil {
			return b, err
		}
	}
	return b, nil
}
