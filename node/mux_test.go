package node

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"nimbus/rpc"
)

// TestPortMux: a connection that starts with the Raft byte reaches the Raft
// listener without it; any other reaches the rpc listener with its first
// byte intact; a connection that never speaks reaches neither.
func TestPortMux(t *testing.T) {
	base, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newPortMux(base, rpc.NewConnLimiter(0, 0, nil), true)
	defer m.Close()
	layer := &raftLayer{chanListener: m.raft, advertise: base.Addr()}

	silent, err := net.Dial("tcp", base.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	rc, err := layer.Dial(raft.ServerAddress("127.0.0.1:"+portOf(base)), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rc.Write([]byte("raft"))
	got := accept(t, m.raft, 4)
	if got != "raft" {
		t.Fatalf("raft side read %q", got)
	}

	c, err := net.Dial("tcp", base.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x00, 0x00, 0x00, 0x05})
	if got := accept(t, m.rpc, 4); got != "\x00\x00\x00\x05" {
		t.Fatalf("rpc side read %q", got)
	}
}

func portOf(l net.Listener) string {
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

func accept(t *testing.T, l net.Listener, n int) string {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer c.Close()
		buf := make([]byte, n)
		_, err = io.ReadFull(c, buf)
		ch <- res{string(buf), err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.s
	case <-time.After(10 * time.Second):
		t.Fatal("nothing accepted")
		return ""
	}
}
