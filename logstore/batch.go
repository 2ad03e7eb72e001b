package logstore

import (
	"encoding/binary"
	"errors"

	"github.com/klauspost/compress/s2"

	"nimbus/rpc"
)

// Streams of a log event (rpc.LogEvent.Stream).
const (
	StreamStdout   = "stdout"
	StreamStderr   = "stderr"
	StreamPlatform = "platform"
)

var streamCodes = []string{StreamStdout, StreamStderr, StreamPlatform}

// A batch is one JetStream message: the events one worker published for
// one function at once. Its layout:
//
//	flags byte (batchRaw or batchS2: the rest is S2-compressed)
//	uvarint len, node name
//	uvarint count (1..maxBatchEvents)
//	count times: varint time ms, uvarint len + request id, stream byte, uvarint len + line
//
// An event's cursor is its message's stream sequence shifted left by
// cursorBits, plus its index in the batch: the store's own sequence, the
// same on every replica.
const (
	batchRaw = 1
	batchS2  = 2

	cursorBits     = 16
	maxBatchEvents = 1 << cursorBits
	// maxBatchBytes bounds the raw (uncompressed) size of a batch the
	// publisher builds; maxDecoded bounds what a decoder accepts.
	maxBatchBytes = 1 << 20
	maxDecoded    = 2 << 20
	// maxPayload is the largest message the servers accept.
	maxPayload = 2 << 20
	// compressMin is the raw size from which compressing is tried.
	compressMin = 512
	// MaxLineBytes and maxRequestID bound one event's fields.
	MaxLineBytes = 256 << 10
	maxRequestID = 1 << 10
	maxNodeName  = 256
)

func cursorOf(seq uint64, idx int) uint64 { return seq<<cursorBits | uint64(idx) }
func seqOf(cursor uint64) (uint64, int) {
	return cursor >> cursorBits, int(cursor & (maxBatchEvents - 1))
}

// eventOverhead is what an event costs in a batch beyond its strings.
const eventOverhead = 16

// eventSize is what ev counts for in the publisher's buffer.
func eventSize(ev *rpc.LogEvent) int { return len(ev.Line) + len(ev.RequestID) + eventOverhead }

// encodeBatch encodes events (at most maxBatchEvents) published by node,
// compressed when that makes it smaller. The publisher builds its batches
// event by event (pendingBatch); this is the same encoding in one call.
func encodeBatch(node string, events []rpc.LogEvent, buf []byte) []byte {
	p := pendingBatch{buf: make([]byte, headerRoom(node))}
	for i := range events {
		p.add(&events[i])
	}
	return compressBatch(p.raw(node), buf)
}

// pendingBatch is a batch being filled: its events are encoded as they are
// appended, after room for the header, which raw writes in place once the
// count is known. So a line is copied once into the batch that carries it,
// and taking a batch off a queue moves no event. Whoever holds the queue
// it is on (the Store's mu) guards it.
type pendingBatch struct {
	buf   []byte // buf[:headerRoom(node)] is the header's room; the encoded events follow
	comp  []byte // the compressed batch's buffer, kept for reuse
	count int    // events in buf
	size  int    // their eventSize sum (what the buffer bound counts)
}

// headerRoom is the most bytes a batch's header by node takes: the flags
// byte, the node name and a count of up to maxBatchEvents (3 bytes).
func headerRoom(node string) int {
	return 1 + uvarintLen(uint64(len(node))) + len(node) + uvarintLen(maxBatchEvents)
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// fits reports whether an event of size sz may join the batch: at most
// maxBatchEvents-1 events (one is kept for the drops line) and about
// maxBatchBytes (a first event always fits).
func (p *pendingBatch) fits(sz int) bool {
	return p.count < maxBatchEvents-1 && (p.count == 0 || p.size+sz <= maxBatchBytes)
}

func (p *pendingBatch) add(ev *rpc.LogEvent) {
	b := binary.AppendVarint(p.buf, ev.TimeMs)
	b = appendString(b, ev.RequestID)
	b = append(b, streamCode(ev.Stream))
	p.buf = appendString(b, ev.Line)
	p.count++
	p.size += eventSize(ev)
}

// raw writes the header for node (the node headerRoom was given) in front
// of the events and returns the uncompressed batch, in p's buffer.
func (p *pendingBatch) raw(node string) []byte {
	room := headerRoom(node)
	start := room - (1 + uvarintLen(uint64(len(node))) + len(node) + uvarintLen(uint64(p.count)))
	h := p.buf[start:start]
	h = append(h, batchRaw)
	h = appendString(h, node)
	_ = binary.AppendUvarint(h, uint64(p.count)) // in place: the room is exact
	return p.buf[start:]
}

// compressBatch returns raw S2-compressed into dst's storage when that
// makes it smaller by a tenth, else raw itself.
func compressBatch(raw, dst []byte) []byte {
	if len(raw) < compressMin {
		return raw
	}
	need := 1 + s2.MaxEncodedLen(len(raw)-1)
	if cap(dst) < need {
		dst = make([]byte, need)
	}
	dst[0] = batchS2
	enc := s2.Encode(dst[1:need], raw[1:])
	c := dst[:1+len(enc)]
	if len(enc) > 0 && &enc[0] != &dst[1] { // not encoded in place
		c = append(dst[:1], enc...)
	}
	if len(c) < len(raw)*9/10 {
		return c
	}
	return raw
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func streamCode(s string) byte {
	for i, c := range streamCodes {
		if c == s {
			return byte(i)
		}
	}
	return 0
}

var errBadBatch = errors.New("logstore: malformed batch")

// decodeBatch decodes a batch read from the store. It trusts no length:
// every count and size is bounded before anything is allocated for it.
func decodeBatch(b []byte) (node string, events []rpc.LogEvent, err error) {
	if len(b) == 0 {
		return "", nil, errBadBatch
	}
	switch b[0] {
	case batchRaw:
		b = b[1:]
	case batchS2:
		n, err := s2.DecodedLen(b[1:])
		if err != nil || n > maxDecoded {
			return "", nil, errBadBatch
		}
		if b, err = s2.Decode(make([]byte, n), b[1:]); err != nil {
			return "", nil, errBadBatch
		}
	default:
		return "", nil, errBadBatch
	}
	d := decoder{b: b}
	node = d.str(maxNodeName)
	count := d.uvarint()
	if d.err != nil || count == 0 || count > maxBatchEvents || count > uint64(len(d.b)) {
		return "", nil, errBadBatch
	}
	events = make([]rpc.LogEvent, 0, count)
	for i := uint64(0); i < count; i++ {
		var ev rpc.LogEvent
		ev.TimeMs = d.varint()
		ev.RequestID = d.str(maxRequestID)
		st := d.byte()
		if int(st) >= len(streamCodes) {
			d.err = errBadBatch
		} else {
			ev.Stream = streamCodes[st]
		}
		ev.Line = d.str(MaxLineBytes)
		if d.err != nil {
			return "", nil, errBadBatch
		}
		ev.Node = node
		events = append(events, ev)
	}
	if len(d.b) != 0 {
		return "", nil, errBadBatch
	}
	return node, events, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadBatch
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadBatch
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errBadBatch
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) str(max int) string {
	n := d.uvarint()
	if d.err != nil || n > uint64(max) || n > uint64(len(d.b)) {
		d.err = errBadBatch
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
