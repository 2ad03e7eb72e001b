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
// compressed when that makes it smaller.
func encodeBatch(node string, events []rpc.LogEvent, buf []byte) []byte {
	raw := buf[:0]
	raw = append(raw, batchRaw)
	raw = appendString(raw, node)
	raw = binary.AppendUvarint(raw, uint64(len(events)))
	for i := range events {
		ev := &events[i]
		raw = binary.AppendVarint(raw, ev.TimeMs)
		raw = appendString(raw, ev.RequestID)
		raw = append(raw, streamCode(ev.Stream))
		raw = appendString(raw, ev.Line)
	}
	if len(raw) < compressMin {
		return raw
	}
	c := make([]byte, 1, 1+s2.MaxEncodedLen(len(raw)-1))
	c[0] = batchS2
	c = append(c, s2.Encode(c[1:cap(c)], raw[1:])...)
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
