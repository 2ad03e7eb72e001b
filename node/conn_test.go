package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"nimbus/rpc"
)

// rawFrame builds a request frame by hand: a big-endian length, the msgpack
// header [seq, method, timeout_ms, nil], then body as it is.
func rawFrame(seq byte, method string, body []byte) []byte {
	p := []byte{0x94, seq, 0xa0 | byte(len(method))}
	p = append(p, method...)
	p = append(p, 0x00, 0xc0)
	p = append(p, body...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

// readRawFrame reads one frame's payload from conn.
func readRawFrame(t *testing.T, conn net.Conn) []byte {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	var n [4]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		t.Fatalf("read an answer: %v", err)
	}
	p := make([]byte, binary.BigEndian.Uint32(n[:]))
	if _, err := io.ReadFull(conn, p); err != nil {
		t.Fatalf("read an answer: %v", err)
	}
	return p
}

// expectClosed waits for the node to close conn: a read ends with EOF or a
// reset, not with the deadline.
func expectClosed(t *testing.T, conn net.Conn) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err := io.Copy(io.Discard, conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the node kept a connection open after a protocol violation")
	}
}

// TestRawConnections speaks broken protocol to the node's rpc port. The
// node closes a connection that breaks framing, answers a well-framed but
// bad request with an error, and keeps serving other clients throughout,
// also while a broken or silent connection is still open.
func TestRawConnections(t *testing.T) {
	t.Parallel()
	n, cl := startNode(t, t.TempDir())
	create(t, cl, "good", behaveZip(t, "v1"), nil)
	listFrame := rawFrame(1, rpc.MethodFunctionList, []byte{0x80})

	tests := []struct {
		name string
		// send talks to the raw connection; it may check the answers and
		// close its side. The connection stays open (if the node keeps it)
		// while the node's service is checked.
		send func(t *testing.T, conn net.Conn)
	}{
		{"garbage bytes", func(t *testing.T, conn net.Conn) {
			conn.Write([]byte{0, 0, 0, 6, 0xc1, 0xc1, 0xc1, 0xff, 0x00, 0x42})
			expectClosed(t, conn)
		}},
		{"an HTTP request", func(t *testing.T, conn net.Conn) {
			conn.Write([]byte("GET / HTTP/1.1\r\nHost: nimbus\r\n\r\n"))
			expectClosed(t, conn)
		}},
		{"an empty frame", func(t *testing.T, conn net.Conn) {
			conn.Write([]byte{0, 0, 0, 0})
			expectClosed(t, conn)
		}},
		{"oversized announced length", func(t *testing.T, conn net.Conn) {
			conn.Write([]byte{0xff, 0xff, 0xff, 0xff, 0x94, 0x01})
			expectClosed(t, conn)
		}},
		{"truncated frame then half-close", func(t *testing.T, conn net.Conn) {
			f := listFrame
			conn.Write(f[:len(f)-3])
			conn.(*net.TCPConn).CloseWrite()
			expectClosed(t, conn)
		}},
		{"truncated frame held open", func(t *testing.T, conn net.Conn) {
			conn.Write(listFrame[:6])
		}},
		{"truncated length prefix held open", func(t *testing.T, conn net.Conn) {
			conn.Write([]byte{0, 0})
		}},
		{"connects and never speaks", func(t *testing.T, conn net.Conn) {}},
		{"undecodable body, then a good request", func(t *testing.T, conn net.Conn) {
			conn.Write(rawFrame(7, rpc.MethodFunctionList, []byte{0xc1}))
			if a := readRawFrame(t, conn); !bytes.Contains(a, []byte(rpc.CodeInvalidParameterValue)) {
				t.Fatalf("answer %q, want an InvalidParameterValueException", a)
			}
			conn.Write(listFrame)
			if a := readRawFrame(t, conn); !bytes.Contains(a, []byte("good")) {
				t.Fatalf("answer %q, want the function list", a)
			}
		}},
		{"unknown method", func(t *testing.T, conn net.Conn) {
			conn.Write(rawFrame(9, "Function.Explode", []byte{0x80}))
			if a := readRawFrame(t, conn); !bytes.Contains(a, []byte(rpc.CodeInvalidParameterValue)) {
				t.Fatalf("answer %q, want an InvalidParameterValueException", a)
			}
		}},
		{"garbage header in a whole frame", func(t *testing.T, conn net.Conn) {
			conn.Write([]byte{0, 0, 0, 3, 0x93, 0x01, 0xa0})
			expectClosed(t, conn)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", n.Addr(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			tt.send(t, conn)

			// The shared client's connection and a new one both work.
			if fns := listFunctions(t, cl); len(fns) != 1 || fns[0].Name != "good" {
				t.Fatalf("list on the shared client: %+v", fns)
			}
			fresh, err := rpc.Dial(ctxT(t), n.Addr(), rpc.ClientOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer fresh.Close()
			if _, err := fresh.GetFunction(ctxT(t), &rpc.GetFunctionRequest{Name: "good"}); err != nil {
				t.Fatalf("get on a new client: %v", err)
			}
		})
	}
	if res := invoke(t, cl, "good", `"end"`); string(res.Payload) != `{"echo":"end","version":"v1","greeting":""}` {
		t.Errorf("invoke after the raw connections: %s (%q)", res.Payload, res.FunctionError)
	}
}
