package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"nimbus/rpc"
)

// readBody reads a request body of at most limit bytes within the body
// timeout, holding room for it in the gateway's budget of buffered bytes
// (waiting for room if need be). tooLarge is the error for a body over
// limit. The caller must call release once it no longer holds the bytes.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, limit int64, tooLarge func() error) (body []byte, release func(), err error) {
	return g.readBodyHolding(w, r, limit, tooLarge, func(n int64) int64 { return n })
}

// readUpload reads a code upload: its budget covers the body and the zip
// decoded from its base64 (three quarters of the body more), which the
// caller holds at the same time.
func (g *Gateway) readUpload(w http.ResponseWriter, r *http.Request, op string) ([]byte, func(), error) {
	return g.readBodyHolding(w, r, g.uploadLimit, g.uploadTooLarge(op), func(n int64) int64 { return n + n/4*3 + 3 })
}

// readBodyHolding is readBody holding hold(n) bytes of the budget for a
// body of n bytes.
func (g *Gateway) readBodyHolding(w http.ResponseWriter, r *http.Request, limit int64, tooLarge func() error, hold func(int64) int64) (body []byte, release func(), err error) {
	if r.ContentLength > limit {
		return nil, nil, tooLarge()
	}
	want := limit + 1 // room to see that an unsized body is too large
	if r.ContentLength >= 0 {
		want = r.ContentLength
	}
	if want == 0 {
		return nil, func() {}, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.opts.BodyTimeout)
	defer cancel()
	held := min(hold(want), g.opts.MaxBufferedBytes)
	if err := g.buffered.Acquire(ctx, held); err != nil {
		return nil, nil, rpc.Errorf(rpc.CodeTooManyRequests, "The node is holding too many request bodies; retry later")
	}
	release = func() { g.buffered.Release(held) }
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(g.opts.BodyTimeout))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()

	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err = buf.ReadFrom(io.LimitReader(r.Body, want))
	if err != nil {
		release()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nil, tooLarge()
		}
		return nil, nil, rpc.Errorf(CodeInvalidRequestContent, "Could not read the request body: %v", err)
	}
	if int64(buf.Len()) > limit {
		release()
		return nil, nil, tooLarge()
	}
	if n := int64(buf.Len()); n == 0 {
		release()
		return nil, func() {}, nil
	} else if keep := min(hold(n), held); keep < held {
		g.buffered.Release(held - keep)
		held = keep
	}
	return buf.Bytes(), release, nil
}

// maxConfigBody bounds the bodies of operations without code or payload
// (configuration, concurrency).
const maxConfigBody = 256 << 10

// decodeJSON reads a JSON body of at most limit bytes into v. An empty body
// is an empty object. Errors are Lambda's InvalidRequestContentException.
func (g *Gateway) decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, op string, v any) error {
	body, release, err := g.readBody(w, r, limit, func() error {
		return rpc.Errorf(CodeRequestEntityTooLarge, "Request must be smaller than %d bytes for the %s operation", limit, op)
	})
	if err != nil {
		return err
	}
	defer release()
	return unmarshalBody(body, v)
}

// unmarshalBody decodes a JSON object into v, which must be a pointer to a
// struct. Unknown fields are ignored, as Lambda ignores them.
func unmarshalBody(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return rpc.Errorf(CodeInvalidRequestContent, "Could not parse request body into json: %s", jsonErrorText(err))
	}
	return nil
}

// jsonErrorText names the field a type error is about.
func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return "could not deserialize field '" + te.Field + "': expected " + te.Type.String()
	}
	return err.Error()
}
