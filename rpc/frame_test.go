package rpc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// frameBytes builds a whole frame (length prefix included) the way the client
// and server do.
func frameBytes(t testing.TB, seq uint64, method string, timeoutMs uint64, e *Error, body any) []byte {
	t.Helper()
	f := &frameBuf{}
	startFrame(f, seq, method, timeoutMs, e)
	if err := encodeBody(f, body); err != nil {
		t.Fatalf("encode body: %v", err)
	}
	if err := finishFrame(f, DefaultMaxFrameSize); err != nil {
		t.Fatalf("finish frame: %v", err)
	}
	return f.b
}

// rawFrame prefixes payload with its length.
func rawFrame(payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		seq       uint64
		method    string
		timeoutMs uint64
		err       *Error
	}{
		{"zero", 0, "", 0, nil},
		{"fixint", 127, MethodInvoke, 1, nil},
		{"uint8", 128, MethodFunctionCreate, 255, nil},
		{"uint16", 65535, MethodLogsRead, 65536, nil},
		{"uint32", 1 << 32, MethodFunctionList, math.MaxUint32, nil},
		{"uint64", math.MaxUint64, strings.Repeat("m", 200), maxTimeoutMs, nil},
		{"error", 7, "", 0, &Error{Code: CodeResourceNotFound, Message: "Function not found: f"}},
		{"error with reason", 8, "", 0, &Error{Code: CodeTooManyRequests, Message: "Rate exceeded", Reason: ReasonConcurrentInvocationLimitExceeded}},
		{"long message", 9, "", 0, &Error{Code: CodeService, Message: strings.Repeat("x", 70000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := frameBytes(t, tt.seq, tt.method, tt.timeoutMs, tt.err, map[string]int{"a": 1})
			if got := int(binary.BigEndian.Uint32(b)); got != len(b)-4 {
				t.Fatalf("length prefix %d, payload %d", got, len(b)-4)
			}
			h, off, err := parseHeader(b[4:])
			if err != nil {
				t.Fatalf("parseHeader: %v", err)
			}
			if h.seq != tt.seq || string(h.method) != tt.method || h.timeoutMs != tt.timeoutMs {
				t.Errorf("got seq=%d method=%q timeout=%d", h.seq, h.method, h.timeoutMs)
			}
			if !reflect.DeepEqual(h.err, tt.err) {
				t.Errorf("err = %#v, want %#v", h.err, tt.err)
			}
			var body map[string]int
			if err := decodeBody(b[4+off:], &body); err != nil || body["a"] != 1 {
				t.Errorf("body = %v, %v", body, err)
			}
		})
	}
}

// TestParseHeaderForeignEncoder checks that a header written by a generic
// msgpack encoder (other integer widths, extra fields, unknown error keys)
// decodes: the format is msgpack, not our encoder's byte layout.
func TestParseHeaderForeignEncoder(t *testing.T) {
	t.Parallel()
	payload := mustMarshal(t, []any{
		int64(42), "Function.Get", int32(1500),
		map[string]any{"code": CodeResourceConflict, "message": "busy", "retry": []int{1, 2}},
		"a future field", map[string]int{"x": 1},
	})
	payload = append(payload, 0xc0) // nil body
	h, off, err := parseHeader(payload)
	if err != nil {
		t.Fatal(err)
	}
	if h.seq != 42 || string(h.method) != "Function.Get" || h.timeoutMs != 1500 {
		t.Errorf("got %+v", h)
	}
	if h.err == nil || h.err.Code != CodeResourceConflict || h.err.Message != "busy" {
		t.Errorf("err = %#v", h.err)
	}
	if off != len(payload)-1 {
		t.Errorf("body offset %d, want %d", off, len(payload)-1)
	}
}

func TestParseHeaderRejects(t *testing.T) {
	t.Parallel()
	deep := append(bytes.Repeat([]byte{0x91}, 40), 0xc0)
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"not msgpack", []byte{0xc1}},
		{"not an array", mustMarshal(t, map[string]int{"seq": 1})},
		{"too few fields", mustMarshal(t, []any{1, "m", 0})},
		{"too many fields", mustMarshal(t, make([]int, 17))},
		{"negative seq", mustMarshal(t, []any{-1, "m", 0, nil})},
		{"string seq", mustMarshal(t, []any{"1", "m", 0, nil})},
		{"int method", mustMarshal(t, []any{1, 2, 0, nil})},
		{"long method", mustMarshal(t, []any{1, strings.Repeat("m", 300), 0, nil})},
		{"float timeout", mustMarshal(t, []any{1, "m", 1.5, nil})},
		{"error not a map", mustMarshal(t, []any{1, "", 0, "oops"})},
		{"error key not a string", mustMarshal(t, []any{1, "", 0, map[int]string{1: "x"}})},
		{"error value not a string", mustMarshal(t, []any{1, "", 0, map[string]int{"code": 1}})},
		{"truncated", mustMarshal(t, []any{1, "Function.Get", 0, nil})[:8]},
		{"truncated str8", []byte{0x94, 0x01, 0xd9, 0xff, 'a'}},
		{"map count bomb", []byte{0x94, 0x01, 0xa0, 0x00, 0xdf, 0x7f, 0xff, 0xff, 0xff}},
		{"deep extra field", append([]byte{0x95, 0x01, 0xa0, 0x00, 0xc0}, deep...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if h, _, err := parseHeader(tt.payload); err == nil {
				t.Fatalf("parseHeader accepted %x as %+v", tt.payload, h)
			}
		})
	}
}

func TestCheckValue(t *testing.T) {
	t.Parallel()
	type nested struct {
		Env    map[string]string `msgpack:"env"`
		Events []LogEvent        `msgpack:"events"`
	}
	valid := []struct {
		name string
		b    []byte
	}{
		{"nil", []byte{0xc0}},
		{"bools", mustMarshal(t, []bool{true, false})},
		{"ints", mustMarshal(t, []int64{0, -1, -33, 127, 128, -129, 1 << 20, -1 << 40, math.MaxInt64})},
		{"floats", mustMarshal(t, []any{float32(1.5), 2.5})},
		{"strings", mustMarshal(t, []string{"", "a", strings.Repeat("b", 40), strings.Repeat("c", 300), strings.Repeat("d", 70000)})},
		{"bytes", mustMarshal(t, [][]byte{{}, {1}, bytes.Repeat([]byte{2}, 300), bytes.Repeat([]byte{3}, 70000)})},
		{"ext", []byte{0xd4, 0x01, 0x00}},
		{"fixext16", append([]byte{0xd8, 0x01}, make([]byte, 16)...)},
		{"ext8", []byte{0xc7, 0x02, 0x05, 0xaa, 0xbb}},
		{"struct", mustMarshal(t, nested{Env: map[string]string{"A": "1"}, Events: []LogEvent{{Seq: 1, Line: "x"}}})},
		{"request", mustMarshal(t, &CreateFunctionRequest{Name: "f", ZipFile: make([]byte, 1000)})},
		{"array16", mustMarshal(t, make([]int, 1000))},
		{"map16", mustMarshal(t, func() map[int]int {
			m := map[int]int{}
			for i := range 100 {
				m[i] = i
			}
			return m
		}())},
		{"depth 32", append(bytes.Repeat([]byte{0x91}, 32), 0xc0)},
	}
	for _, tt := range valid {
		t.Run("valid/"+tt.name, func(t *testing.T) {
			if err := checkValue(tt.b); err != nil {
				t.Fatalf("checkValue: %v", err)
			}
		})
	}
	invalid := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errShortBuffer},
		{"never used code", []byte{0xc1}, nil},
		{"trailing byte", []byte{0xc0, 0xc0}, errTrailing},
		{"truncated uint64", []byte{0xcf, 1, 2}, errShortBuffer},
		{"truncated str", []byte{0xa5, 'a'}, errShortBuffer},
		{"truncated str32 length", []byte{0xdb, 0, 0}, errShortBuffer},
		{"str32 longer than frame", []byte{0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'}, errShortBuffer},
		{"array32 count bomb", []byte{0xdd, 0x00, 0x0f, 0x42, 0x40, 0xc0}, errShortBuffer},
		{"map32 count bomb", []byte{0xdf, 0x00, 0x0f, 0x42, 0x40, 0xc0, 0xc0}, errShortBuffer},
		{"map missing value", []byte{0x81, 0xa1, 'k'}, errShortBuffer},
		{"depth 33", append(bytes.Repeat([]byte{0x91}, 33), 0xc0), errTooDeep},
		{"depth bomb", append(bytes.Repeat([]byte{0xdc, 0x00, 0x01}, 100000), 0xc0), errTooDeep},
		{"ext truncated", []byte{0xc7, 0x05, 0x01, 0xaa}, errShortBuffer},
	}
	for _, tt := range invalid {
		t.Run("invalid/"+tt.name, func(t *testing.T) {
			err := checkValue(tt.b)
			if err == nil {
				t.Fatalf("checkValue accepted %x", tt.b)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadFrame(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("0123456789abcdef"), (3*readChunk)/16+5) // grows in steps
	tests := []struct {
		name    string
		in      []byte
		max     int
		want    [][]byte // payloads read before the error
		wantErr error
	}{
		{"one", rawFrame([]byte{1, 2, 3}), 100, [][]byte{{1, 2, 3}}, io.EOF},
		{"two", append(rawFrame([]byte{1}), rawFrame([]byte{2, 2})...), 100, [][]byte{{1}, {2, 2}}, io.EOF},
		{"exactly max", rawFrame(make([]byte, 100)), 100, [][]byte{make([]byte, 100)}, io.EOF},
		{"over max", rawFrame(make([]byte, 101)), 100, nil, errFrameTooLarge},
		{"huge announced", []byte{0xff, 0xff, 0xff, 0xff}, DefaultMaxFrameSize, nil, errFrameTooLarge},
		{"zero length", []byte{0, 0, 0, 0}, 100, nil, errEmptyFrame},
		{"short prefix", []byte{0, 0}, 100, nil, io.ErrUnexpectedEOF},
		{"truncated payload", rawFrame([]byte{1, 2, 3})[:5], 100, nil, io.ErrUnexpectedEOF},
		{"truncated large payload", rawFrame(big)[:2*readChunk], DefaultMaxFrameSize, nil, io.ErrUnexpectedEOF},
		{"large", rawFrame(big), DefaultMaxFrameSize, [][]byte{big}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(bytes.NewReader(tt.in), 4096)
			var got [][]byte
			var err error
			for {
				f := &frameBuf{}
				if err = readFrame(r, tt.max, f); err != nil {
					break
				}
				got = append(got, f.b)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("read %d frames, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Errorf("frame %d differs (len %d, want %d)", i, len(got[i]), len(tt.want[i]))
				}
			}
		})
	}
}

// TestDecodeBodyDoesNotAlias checks that a decoded value survives the reuse
// of the frame buffer it came from (frame buffers are pooled).
func TestDecodeBodyDoesNotAlias(t *testing.T) {
	t.Parallel()
	b := mustMarshal(t, &InvokeRequest{FunctionName: "fn", Payload: []byte("payload")})
	var req InvokeRequest
	if err := decodeBody(b, &req); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'X'
	}
	if req.FunctionName != "fn" || string(req.Payload) != "payload" {
		t.Fatalf("decoded value changed with its buffer: %+v", req)
	}
}

// FuzzReadFrame feeds arbitrary bytes to the server's and client's decoding
// path: frames, headers, bodies. Nothing may panic; whatever is accepted
// must re-encode to the same header; an accepted body must be one the
// msgpack library can skip.
func FuzzReadFrame(f *testing.F) {
	f.Add(frameBytes(f, 1, MethodInvoke, 3000, nil, &InvokeRequest{FunctionName: "f", Payload: []byte(`{"a":1}`)}))
	f.Add(frameBytes(f, 2, MethodFunctionCreate, 0, nil, &CreateFunctionRequest{Name: "f", Env: map[string]string{"K": "V"}, ZipFile: []byte("PK")}))
	f.Add(frameBytes(f, 3, "", 0, &Error{Code: CodeTooManyRequests, Message: "slow down", Reason: ReasonConcurrentInvocationLimitExceeded}, nil))
	f.Add(frameBytes(f, 4, "", 0, nil, &ReadLogsResponse{Events: []LogEvent{{Seq: 1, Line: "hi"}}, Next: 1}))
	f.Add(append(frameBytes(f, 5, MethodFunctionList, 0, nil, nil), frameBytes(f, 6, MethodFunctionGet, 10, nil, &GetFunctionRequest{Name: "g"})...))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(rawFrame([]byte{0x94, 0x01, 0xa0, 0x00, 0xc0, 0xdd, 0x00, 0x0f, 0x42, 0x40}))
	f.Add(rawFrame(append([]byte{0x94, 0x01, 0xa0, 0x00, 0xc0}, bytes.Repeat([]byte{0x91}, 40)...)))
	f.Add(rawFrame(mustMarshal(f, []any{1, "m", 0, nil, "extra", []int{1}, nil})))

	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 64)
		for {
			fb := &frameBuf{}
			if err := readFrame(r, 1<<16, fb); err != nil {
				return
			}
			h, off, err := parseHeader(fb.b)
			if err != nil {
				continue
			}
			if off > len(fb.b) {
				t.Fatalf("body offset %d past payload of %d", off, len(fb.b))
			}
			again := &frameBuf{}
			startFrame(again, h.seq, string(h.method), h.timeoutMs, h.err)
			h2, off2, err := parseHeader(again.b[4:])
			if err != nil || off2 != len(again.b)-4 || h2.seq != h.seq ||
				!bytes.Equal(h2.method, h.method) || h2.timeoutMs != h.timeoutMs || !reflect.DeepEqual(h2.err, h.err) {
				t.Fatalf("header %+v re-encoded as %+v (%v)", h, h2, err)
			}
			body := fb.b[off:]
			if checkValue(body) == nil {
				if err := msgpack.NewDecoder(bytes.NewReader(body)).Skip(); err != nil {
					t.Fatalf("checkValue accepted %x, msgpack cannot skip it: %v", body, err)
				}
			}
			var inv InvokeRequest
			_ = decodeBody(body, &inv)
			var cf CreateFunctionRequest
			_ = decodeBody(body, &cf)
			var logs ReadLogsResponse
			_ = decodeBody(body, &logs)
			var list ListFunctionsResponse
			_ = decodeBody(body, &list)
		}
	})
}

func TestHeaderDeadlineRoundTrip(t *testing.T) {
	f := getBuf()
	startFrameDeadline(f, 7, "M.x", 100, nil, 1_700_000_000_123)
	if err := encodeBody(f, struct{}{}); err != nil {
		t.Fatal(err)
	}
	if err := finishFrame(f, DefaultMaxFrameSize); err != nil {
		t.Fatal(err)
	}
	h, _, err := parseHeader(f.b[lenPrefix:])
	if err != nil {
		t.Fatal(err)
	}
	if h.seq != 7 || string(h.method) != "M.x" || h.timeoutMs != 100 || h.deadlineMs != 1_700_000_000_123 {
		t.Fatalf("header %+v", h)
	}
}
