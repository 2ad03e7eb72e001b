// Package rpc is how nimbus processes talk to each other: the CLI to a node,
// a node to another node. It owns two things:
//
//   - the wire types and error codes (functions.go, invoke.go, logs.go,
//     errors.go): one Request/Response pair per Service.Method name, and
//     *Error, whose Code is a Lambda exception name;
//   - the transport: length-prefixed msgpack frames over TCP, many requests
//     in flight on one connection, deadlines that travel with a request, a
//     bound on frame size, a Server that dispatches to typed handlers
//     (Handle) and a Client with one typed helper per method.
//
// It must never import another nimbus package, hold package-level mutable
// state, or know what a handler does: registry, scheduling and sandboxes
// live elsewhere and register handlers here. It must never let a peer's bytes
// take a server down or starve other connections.
//
// # Wire format
//
// Each direction of a connection is a stream of frames:
//
//	frame   = length payload
//	length  = uint32, big-endian: the number of bytes in payload (1..MaxFrameSize)
//	payload = header body
//	header  = msgpack array [seq, method, timeout_ms, error]
//	body    = one msgpack value: the request, the response, or nil
//
// seq is chosen by the client, unique among its requests in flight on the
// connection, and copied into the answer. method is a Method* name on
// requests and "" on answers. timeout_ms is the time left until the
// caller's deadline, rounded up, or 0 for none; the server's handler context
// gets that deadline. error is nil, or on an answer a map
// {"code": str, "message": str, "reason": str (optional)} whose code is one
// of the Code* constants; the body of such an answer is nil. Decoders accept
// any msgpack integer width, ignore header elements past the fourth and
// unknown error keys, so fields can be appended later.
//
// A sixth header element, kind, marks the frames of a streamed answer
// (stream.go): parts the server sends before the answer, and the caller's
// credit and cancel frames, which bound each stream to a window of bytes
// in flight so a slow caller slows only its own stream.
//
// A body is msgpack of the Go struct with its msgpack tags (a map keyed by
// field name). Before a body is decoded it is checked to be one value with
// bounded nesting whose containers announce no more elements than it has
// bytes.
//
// # Connections
//
// Answers may come back in any order. The server runs each request in its
// own goroutine with a context that ends at the caller's deadline or when the
// connection or server closes. It answers a body that does not decode or an
// unknown method with InvalidParameterValueException and keeps the
// connection; it closes the connection on an oversized length (before
// allocating), a header that does not decode, a frame that does not arrive
// within FrameTimeout of its first byte, or IdleTimeout with nothing in
// flight and no traffic.
//
// A client writes from one goroutine per connection (batched writev) and
// reads from another, which hands each answer to its waiting caller. A caller
// whose context ends returns at once; its late answer is dropped. A broken
// connection fails every pending call with an error wrapping ErrConnClosed,
// and the next call dials again. Cancelling a call does not cancel its
// handler on the node; the deadline does.
package rpc
