package node

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"nimbus/internal/rawio"
	"nimbus/rpc"
)

// raftMagic is the first byte a Raft connection sends on the shared port.
// An rpc frame starts with a big-endian length no larger than 64 MiB, whose
// first byte is at most 0x04, so the two never collide.
const raftMagic byte = 0xF1

// muxFirstByteTimeout is how long a new connection may take to send the
// byte that routes it.
const muxFirstByteTimeout = 10 * time.Second

// portMux splits one listener between client rpc, peer rpc and Raft by the
// first byte of each connection, so a node needs one port for all three (as
// Consul's server port). Every connection is admitted by the limiter
// before a byte of it is read. raft is nil on a node without Raft, whose
// mux closes connections that ask for it.
type portMux struct {
	base    net.Listener
	limiter *rpc.ConnLimiter
	rpc     *chanListener
	peer    *chanListener
	raft    *chanListener
	wg      sync.WaitGroup
}

func newPortMux(base net.Listener, limiter *rpc.ConnLimiter, withRaft bool) *portMux {
	m := &portMux{
		base:    base,
		limiter: limiter,
		rpc:     newChanListener(base.Addr()),
		peer:    newChanListener(base.Addr()),
	}
	if withRaft {
		m.raft = newChanListener(base.Addr())
	}
	m.wg.Add(1)
	go m.serve()
	return m
}

func (m *portMux) serve() {
	defer m.wg.Done()
	for {
		c, err := m.base.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: wait, then go on.
				time.Sleep(50 * time.Millisecond)
				continue
			}
			m.rpc.close()
			m.peer.close()
			if m.raft != nil {
				m.raft.close()
			}
			return
		}
		c = rawio.Wrap(c) // reads and writes the scheduler need not see
		if c = m.limiter.Admit(c); c == nil {
			continue // refused, and told why
		}
		go m.route(c)
	}
}

func (m *portMux) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(muxFirstByteTimeout))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	switch b[0] {
	case raftMagic:
		if m.raft == nil {
			c.Close()
			return
		}
		m.raft.deliver(c)
	case rpc.PeerMagic:
		m.peer.deliver(c) // the peer handshake follows the magic byte
	default:
		m.rpc.deliver(&prefixConn{Conn: c, first: b[0], pending: true})
	}
}

func (m *portMux) Close() error {
	err := m.base.Close()
	m.wg.Wait()
	return err
}

// prefixConn gives back the byte the mux read.
type prefixConn struct {
	net.Conn
	mu      sync.Mutex
	first   byte
	pending bool
}

// NetConn returns the connection under the mux's wrapper.
func (c *prefixConn) NetConn() net.Conn { return c.Conn }

// WriteBuffers passes a writev through to the connection.
func (c *prefixConn) WriteBuffers(bufs [][]byte) (int64, error) {
	return rawio.WriteBuffers(c.Conn, bufs)
}

func (c *prefixConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.pending && len(p) > 0 {
		p[0] = c.first
		c.pending = false
		c.mu.Unlock()
		return 1, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// chanListener is a net.Listener fed by the mux.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	closed bool
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) close() { l.once.Do(func() { close(l.done) }) }

func (l *chanListener) Close() error { l.close(); return nil }

func (l *chanListener) Addr() net.Addr { return l.addr }

// raftLayer is Raft's stream layer over the shared port: it accepts the
// connections the mux routes to Raft, and dials others with the magic byte.
type raftLayer struct {
	*chanListener
	advertise net.Addr
}

func (r *raftLayer) Addr() net.Addr { return r.advertise }

func (r *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(address), timeout)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{raftMagic}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

var errNoLeader = errors.New("no raft leader known")
