// Package gateway serves Lambda's REST API (the restJson1 protocol the AWS
// CLI and SDKs speak) over HTTP, so that tools pointed at a node with
// --endpoint-url work unchanged.
//
// It owns the HTTP side only: routing Lambda's paths, decoding Lambda's
// request shapes and headers, checking the SigV4 Authorization header's
// form, bounding connections, bytes and time, and encoding Lambda's
// response shapes and errors. Every operation is the node's own: the node
// passes the gateway the same functions its rpc server's handlers call
// (Operations), so there is no second implementation of any operation
// here. The gateway never reads the registry, runs code, or talks to Raft
// or peers itself, and it imports nothing of ours but rpc's types.
//
// It also serves function URLs (urlserve.go): a request to
// /lambda-url/<id>/... or to <id>.<URLDomain> is turned into the payload
// format 2.0 event and invoked through the same Operations, and the
// function's answer read back as Lambda reads it; CORS preflights are
// answered here, bearer tokens checked here.
//
// Access control is off: a signed request is accepted with any
// credentials, but its Authorization header must be well formed (Parse
// keeps the parts so that verifying them can come later).
package gateway
