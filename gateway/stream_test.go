package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"nimbus/rpc"
)

// feedURLStream gives a streamed function URL response's parts to a
// urlStream, as the function sent them.
func feedURLStream(ctype string, parts ...[]byte) (*httptest.ResponseRecorder, *urlStream, error) {
	rec := httptest.NewRecorder()
	s := &urlStream{w: rec, rc: http.NewResponseController(rec), cors: func(http.Header) {}}
	if err := s.part(&rpc.InvokeStreamPart{ContentType: ctype}); err != nil {
		return rec, s, err
	}
	for _, p := range parts {
		if err := s.part(&rpc.InvokeStreamPart{Data: p}); err != nil {
			return rec, s, err
		}
	}
	return rec, s, nil
}

func TestURLStreamPrelude(t *testing.T) {
	pre := []byte(`{"statusCode":201,"headers":{"X-A":"1"},"cookies":["c=1"]}`)
	// The prelude split across parts, its end too.
	rec, _, err := feedURLStream(urlIntegrationType, pre[:10], append(append([]byte{}, pre[10:]...), 0, 0, 0), []byte{0, 0, 0, 0, 0, 'h', 'i'}, []byte(" there"))
	if err != nil || rec.Code != 201 || rec.Header().Get("X-A") != "1" || rec.Header().Get("Set-Cookie") != "c=1" || rec.Body.String() != "hi there" {
		t.Fatalf("prelude: %v %d %v %q", err, rec.Code, rec.Header(), rec.Body.String())
	}
	// Not an integration response: the body itself.
	rec, _, err = feedURLStream("text/csv", []byte("a,b\n"))
	if err != nil || rec.Code != 200 || rec.Header().Get("Content-Type") != "text/csv" || rec.Body.String() != "a,b\n" {
		t.Fatalf("plain: %v %d %v %q", err, rec.Code, rec.Header(), rec.Body.String())
	}
	// A prelude that never ends, or is not JSON of a status.
	if _, _, err := feedURLStream(urlIntegrationType, bytes.Repeat([]byte("x"), maxURLPrelude+1)); err != errBadPrelude {
		t.Fatalf("an endless prelude: %v", err)
	}
	if _, _, err := feedURLStream(urlIntegrationType, []byte(`{"statusCode":42}`+"\x00\x00\x00\x00\x00\x00\x00\x00")); err != errBadPrelude {
		t.Fatalf("status 42: %v", err)
	}
}

// FuzzURLStream: whatever a function streams to a URL, the gateway holds
// at most maxURLPrelude of it while it looks for the prelude's end, and
// answers with a valid status.
func FuzzURLStream(f *testing.F) {
	f.Add([]byte(`{"statusCode":200}`+"\x00\x00\x00\x00\x00\x00\x00\x00body"), 7, true)
	f.Add([]byte(`{"statusCode":302,"headers":{"Location":"/x"},"cookies":["a=b"]}`+"\x00\x00\x00\x00\x00\x00\x00\x00"), 3, true)
	f.Add([]byte("plain"), 2, false)
	f.Fuzz(func(t *testing.T, in []byte, cut int, integration bool) {
		ctype := "text/plain"
		if integration {
			ctype = urlIntegrationType
		}
		if cut <= 0 || cut > len(in) {
			cut = len(in)
		}
		var parts [][]byte
		for len(in) > 0 {
			k := min(cut, len(in))
			parts = append(parts, in[:k])
			in = in[k:]
		}
		rec, s, err := feedURLStream(ctype, parts...)
		if len(s.pbuf) > maxURLPrelude+cut {
			t.Fatalf("held %d bytes of prelude", len(s.pbuf))
		}
		if err == nil && s.started && (rec.Code < 100 || rec.Code > 599) {
			t.Fatalf("status %d", rec.Code)
		}
	})
}
