package rpc

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The peer channel: node-to-node methods (heartbeats, slot grants and
// releases, running an invocation on a worker, code copies) are served only
// on connections that proved, at their start, that they hold the cluster's
// secret. A client connection can never call them, whatever it sends.
//
// A peer connection starts with PeerMagic (which no client frame can start
// with: a frame starts with a big-endian length of at most 64 MiB, so its
// first byte is at most 0x04), then a mutual challenge-response handshake:
//
//	dialer   -> PeerMagic, version, nonceD[32], len, nameD
//	acceptor -> version, nonceA[32], len, nameA, HMAC(K, "A" | transcript)
//	dialer   -> HMAC(K, "D" | transcript)
//
// where transcript is nonceD | nonceA | nameD | nameA. Each side checks the
// other's MAC in constant time; fresh nonces on both sides make a recorded
// handshake useless. After it the connection speaks ordinary frames, and
// the acceptor knows the dialer by the name it authenticated (Caller.Peer).
// The handshake authenticates; it does not encrypt or sign later frames.

// PeerMagic is the first byte of a peer connection.
const PeerMagic byte = 0xF2

const (
	peerVersion      byte = 1
	peerNonceLen          = 32
	peerMACLen            = sha256.Size
	maxPeerNameLen        = 255
	peerHandshakeTTL      = 5 * time.Second
)

// ErrPeerAuth is returned when a peer handshake fails: a wrong secret, a
// mangled or truncated handshake, or a client that is not a node.
var ErrPeerAuth = errors.New("rpc: peer authentication failed")

// PeerAuth is one node's identity on the peer channel: the cluster's shared
// secret and its own name. It is immutable once in use.
type PeerAuth struct {
	Key  []byte // the shared secret (see PeerKey)
	Name string // this node's name, 1-255 bytes
}

// PeerKey derives the peer channel's secret from the cluster key, so the
// key material that encrypts gossip is never used directly as a MAC key.
func PeerKey(clusterKey []byte) []byte {
	m := hmac.New(sha256.New, clusterKey)
	m.Write([]byte("nimbus peer channel v1"))
	return m.Sum(nil)
}

func (a *PeerAuth) valid() error {
	if len(a.Key) == 0 {
		return errors.New("rpc: peer auth without a key")
	}
	if len(a.Name) == 0 || len(a.Name) > maxPeerNameLen {
		return fmt.Errorf("rpc: peer name must be 1-%d bytes", maxPeerNameLen)
	}
	return nil
}

func (a *PeerAuth) mac(role byte, nonceD, nonceA []byte, nameD, nameA string) []byte {
	m := hmac.New(sha256.New, a.Key)
	m.Write([]byte{role})
	m.Write(nonceD)
	m.Write(nonceA)
	m.Write([]byte{byte(len(nameD))})
	m.Write([]byte(nameD))
	m.Write([]byte{byte(len(nameA))})
	m.Write([]byte(nameA))
	return m.Sum(nil)
}

// dialHandshake runs the dialer's side on a fresh connection, PeerMagic
// included, and returns the acceptor's name.
func (a *PeerAuth) dialHandshake(ctx context.Context, conn net.Conn) (string, error) {
	if err := a.valid(); err != nil {
		return "", err
	}
	deadline := time.Now().Add(peerHandshakeTTL)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})

	nonceD := make([]byte, peerNonceLen)
	rand.Read(nonceD)
	hello := make([]byte, 0, 3+peerNonceLen+len(a.Name))
	hello = append(hello, PeerMagic, peerVersion)
	hello = append(hello, nonceD...)
	hello = append(hello, byte(len(a.Name)))
	hello = append(hello, a.Name...)
	if _, err := conn.Write(hello); err != nil {
		return "", err
	}
	var head [1 + peerNonceLen + 1]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return "", fmt.Errorf("%w: %v", ErrPeerAuth, err)
	}
	if head[0] != peerVersion {
		return "", fmt.Errorf("%w: peer speaks handshake version %d", ErrPeerAuth, head[0])
	}
	nonceA := head[1 : 1+peerNonceLen]
	rest := make([]byte, int(head[1+peerNonceLen])+peerMACLen)
	if _, err := io.ReadFull(conn, rest); err != nil {
		return "", fmt.Errorf("%w: %v", ErrPeerAuth, err)
	}
	nameA := string(rest[:len(rest)-peerMACLen])
	if !hmac.Equal(rest[len(rest)-peerMACLen:], a.mac('A', nonceD, nonceA, a.Name, nameA)) {
		return "", fmt.Errorf("%w: %s does not hold the cluster secret", ErrPeerAuth, conn.RemoteAddr())
	}
	if _, err := conn.Write(a.mac('D', nonceD, nonceA, a.Name, nameA)); err != nil {
		return "", err
	}
	return nameA, nil
}

// acceptHandshake runs the acceptor's side on a connection whose PeerMagic
// byte was already read, and returns the dialer's authenticated name. It
// reads at most a few hundred bytes whatever the dialer sends.
func (a *PeerAuth) acceptHandshake(conn net.Conn) (string, error) {
	if err := a.valid(); err != nil {
		return "", err
	}
	conn.SetDeadline(time.Now().Add(peerHandshakeTTL))
	defer conn.SetDeadline(time.Time{})
	var head [1 + peerNonceLen + 1]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return "", fmt.Errorf("%w: %v", ErrPeerAuth, err)
	}
	if head[0] != peerVersion {
		return "", fmt.Errorf("%w: handshake version %d", ErrPeerAuth, head[0])
	}
	nonceD := head[1 : 1+peerNonceLen]
	n := int(head[1+peerNonceLen])
	if n == 0 {
		return "", fmt.Errorf("%w: empty peer name", ErrPeerAuth)
	}
	nameBuf := make([]byte, n)
	if _, err := io.ReadFull(conn, nameBuf); err != nil {
		return "", fmt.Errorf("%w: %v", ErrPeerAuth, err)
	}
	nameD := string(nameBuf)
	nonceA := make([]byte, peerNonceLen)
	rand.Read(nonceA)
	reply := make([]byte, 0, 2+peerNonceLen+len(a.Name)+peerMACLen)
	reply = append(reply, peerVersion)
	reply = append(reply, nonceA...)
	reply = append(reply, byte(len(a.Name)))
	reply = append(reply, a.Name...)
	reply = append(reply, a.mac('A', nonceD, nonceA, nameD, a.Name)...)
	if _, err := conn.Write(reply); err != nil {
		return "", err
	}
	got := make([]byte, peerMACLen)
	if _, err := io.ReadFull(conn, got); err != nil {
		return "", fmt.Errorf("%w: %v", ErrPeerAuth, err)
	}
	if !hmac.Equal(got, a.mac('D', nonceD, nonceA, nameD, a.Name)) {
		return "", fmt.Errorf("%w: %s (claiming %q) does not hold the cluster secret", ErrPeerAuth, conn.RemoteAddr(), nameD)
	}
	return nameD, nil
}

// Caller says who is on the other end of the connection a request came on.
// It is set once, when the connection is accepted (and, for peers, has
// passed the handshake), and handlers read it with CallerFrom.
type Caller struct {
	// Peer is the authenticated name of the node that called, or "" for a
	// client.
	Peer string
}

type callerKey struct{}

// CallerFrom returns the caller of the request whose context ctx is; a
// context that did not come from a Server is an anonymous client's.
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// WithCaller returns ctx marked as coming from caller. The server sets it;
// a node uses it to run a peer method's handler in-process on its own
// behalf.
func WithCaller(ctx context.Context, caller Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, caller)
}
