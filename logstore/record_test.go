package logstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"nimbus/rpc"
)

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []rpc.LogEvent{
		{Seq: 1},
		{Seq: 2, TimeMs: 1700000000000, RequestID: "8f5e-4a", Line: "hello"},
		{Seq: math.MaxUint64, TimeMs: math.MinInt64, Line: "x"},
		{Seq: 300, TimeMs: -1, RequestID: strings.Repeat("r", maxRequestIDBytes), Line: strings.Repeat("é", maxLineBytes/2)},
	}
	for _, ev := range tests {
		b := appendRecord([]byte("prefix"), &ev)
		got, n, err := decodeRecord(b[len("prefix"):])
		if err != nil {
			t.Fatalf("decode %+v: %v", ev.Seq, err)
		}
		if n != len(b)-len("prefix") || got != ev {
			t.Fatalf("round trip: got %+v (n=%d), want %+v (n=%d)", got.Seq, n, ev.Seq, len(b)-len("prefix"))
		}
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	t.Parallel()
	good := appendRecord(nil, &rpc.LogEvent{Seq: 7, TimeMs: 5, RequestID: "r", Line: "line"})
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1
	huge := bytes.Clone(good)
	binary.LittleEndian.PutUint32(huge, maxRecordBody+1)
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errShortRecord},
		{"header only", good[:recordHeaderSize], errShortRecord},
		{"torn body", good[:len(good)-1], errShortRecord},
		{"bad crc", flipped, errCorruptRecord},
		{"huge length", huge, errCorruptRecord},
		{"zero seq", frame([]byte{0, 0, 0, 0}), errCorruptRecord},
		{"non-minimal varint", frame([]byte{0x81, 0x00, 0, 0, 0}), errCorruptRecord},
		{"trailing bytes", frame([]byte{1, 0, 0, 0, 9}), errCorruptRecord},
		{"string past end", frame([]byte{1, 0, 0, 5, 'a'}), errCorruptRecord},
	}
	for _, tt := range tests {
		if _, _, err := decodeRecord(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// frame wraps body in a record header with a correct length and CRC.
func frame(body []byte) []byte {
	b := make([]byte, recordHeaderSize, recordHeaderSize+len(body))
	binary.LittleEndian.PutUint32(b, uint32(len(body)))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(body, castagnoli))
	return append(b, body...)
}

// FuzzDecodeRecord feeds the decoder arbitrary bytes, as a segment file
// holds after a crash or a disk fault, both raw and framed with a valid
// header (so the body parser is reached despite the CRC). It must never
// panic, never claim more bytes than it was given, and whatever it accepts
// must be the one encoding of what it returns.
func FuzzDecodeRecord(f *testing.F) {
	seeds := []rpc.LogEvent{
		{Seq: 1, TimeMs: 1700000000000, RequestID: "c0ffee", Line: "START RequestId: c0ffee Version: $LATEST"},
		{Seq: 2, TimeMs: -5, Line: ""},
		{Seq: math.MaxUint64, TimeMs: math.MaxInt64, RequestID: "r", Line: "ünïcode"},
	}
	for _, ev := range seeds {
		b := appendRecord(nil, &ev)
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(b[recordHeaderSize:])
		f.Add(append(bytes.Clone(b), b...))
	}
	f.Add([]byte{})
	f.Add([]byte(segmentMagic))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})

	f.Fuzz(func(t *testing.T, b []byte) {
		for _, in := range [][]byte{b, frame(b)} {
			ev, n, err := decodeRecord(in)
			if err != nil {
				if !errors.Is(err, errShortRecord) && !errors.Is(err, errCorruptRecord) {
					t.Fatalf("unexpected error %v", err)
				}
				continue
			}
			if n <= recordHeaderSize || n > len(in) {
				t.Fatalf("n = %d for %d bytes", n, len(in))
			}
			if ev.Seq == 0 || len(ev.Line) > maxLineBytes || len(ev.RequestID) > maxRequestIDBytes {
				t.Fatalf("accepted out-of-range event %+v", ev)
			}
			if again := appendRecord(nil, &ev); !bytes.Equal(again, in[:n]) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, in[:n])
			}
		}
	})
}

func TestValidName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ok   bool
	}{
		{"f", true},
		{"my-Func_09", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{"..", false},
		{"a/b", false},
		{".deleted-x", false},
		{"fn:alias", false},
		{"fün", false},
	}
	for _, tt := range tests {
		if got := validName(tt.name); got != tt.ok {
			t.Errorf("validName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
		err := checkName(tt.name)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, rpc.ErrInvalidParameterValue)) {
			t.Errorf("checkName(%q) = %v", tt.name, err)
		}
	}
}

func TestClip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    string
		max  int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"}, // é is two bytes: not split
		{"日本", 4, "日"},
		{"\x80\x80\x80\x80\x80\x80", 4, "\x80"}, // invalid bytes: cut without looping away
	}
	for _, tt := range tests {
		got := clip(tt.s, tt.max)
		if got != tt.want {
			t.Errorf("clip(%q, %d) = %q, want %q", tt.s, tt.max, got, tt.want)
		}
		if utf8.ValidString(tt.s) && !utf8.ValidString(got) {
			t.Errorf("clip(%q, %d) split a rune", tt.s, tt.max)
		}
	}
}
