package logstore

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// clusterName is the name of the JetStream cluster the servers form.
const clusterName = "nimbus-logs"

// routeUser is the user name routes authenticate with when a secret is set.
const routeUser = "nimbus"

// Defaults of ServerConfig.
const (
	DefaultMaxMemory = 64 << 20
	DefaultMaxStore  = 1 << 40
)

// ServerConfig configures the embedded JetStream server of a node with the
// server role.
type ServerConfig struct {
	// Name is the server's name in the JetStream cluster (the node's name).
	Name string
	// Dir holds the JetStream file store.
	Dir string
	// Standalone runs JetStream without clustering and without a network
	// listener (a dev node): clients connect in process only.
	Standalone bool
	// ClientAddr is where workers' clients connect (IP:PORT).
	ClientAddr string
	// ClusterAddr is where the other servers' routes connect (IP:PORT).
	ClusterAddr string
	// Routes are the cluster addresses of the other servers (this
	// server's own address may be among them; it is ignored). At a first
	// start their number sets how many servers JetStream waits for before
	// it elects its first leader, so a new cluster should start with all
	// of its servers listed.
	Routes []string
	// Secret, when set, is turned into the credentials clients and routes
	// must present (Credentials). Without it the ports are open.
	Secret []byte
	// MaxMemory and MaxStore bound what JetStream may use in memory and on
	// disk (default 64 MiB and 1 TiB). JetStream reserves each stream's
	// size bound (Options.GroupMaxBytes) out of MaxStore when the stream is
	// created, so MaxStore / GroupMaxBytes is how many log groups fit; the
	// default leaves the real bound to the disk.
	MaxMemory, MaxStore int64
	Logger              *slog.Logger
}

// Credentials returns the token clients and routes present, derived from
// secret, or "" without one.
func Credentials(secret []byte) string {
	if len(secret) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("nimbus logstore v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// Server is an embedded NATS server with JetStream. mu guards routes.
type Server struct {
	srv   *server.Server
	opts  *server.Options
	token string

	mu     sync.Mutex
	routes []string
}

// StartServer starts the embedded server and returns once it accepts
// connections. JetStream itself may still be electing its first leader;
// Store waits for that.
func StartServer(cfg ServerConfig) (*Server, error) {
	if cfg.Name == "" || cfg.Dir == "" {
		return nil, errors.New("logstore: server needs a name and a directory")
	}
	if cfg.MaxMemory == 0 {
		cfg.MaxMemory = DefaultMaxMemory
	}
	if cfg.MaxStore == 0 {
		cfg.MaxStore = DefaultMaxStore
	}
	token := Credentials(cfg.Secret)
	opts := &server.Options{
		ServerName:         cfg.Name,
		Tags:               []string{PinTag(cfg.Name)},
		JetStream:          true,
		StoreDir:           cfg.Dir,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		NoSigs:             true,
		MaxPayload:         maxPayload,
		Authorization:      token,
		// Lines are replicated on a quorum before they are acknowledged;
		// the periodic fsync of the file store is the engine's default.
	}
	if cfg.Standalone {
		opts.DontListen = true
	} else {
		host, port, err := splitAddr(cfg.ClientAddr)
		if err != nil {
			return nil, fmt.Errorf("logstore: client address: %w", err)
		}
		opts.Host, opts.Port = host, port
		chost, cport, err := splitAddr(cfg.ClusterAddr)
		if err != nil {
			return nil, fmt.Errorf("logstore: cluster address: %w", err)
		}
		opts.Cluster = server.ClusterOpts{Name: clusterName, Host: chost, Port: cport}
		if token != "" {
			opts.Cluster.Username, opts.Cluster.Password = routeUser, token
		}
		opts.Routes = routeURLs(cfg.Routes, token)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(natsLogger{cfg.Logger}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("logstore: the embedded server did not start in 30 s")
	}
	s := &Server{srv: srv, opts: opts, token: token}
	s.routes = slices.Clone(cfg.Routes)
	slices.Sort(s.routes)
	return s, nil
}

// SetRoutes makes the server's routes the given cluster addresses (the
// servers gossip knows), reloading its configuration when they changed.
func (s *Server) SetRoutes(routes []string) error {
	if s.opts.DontListen {
		return nil
	}
	routes = slices.Clone(routes)
	slices.Sort(routes)
	routes = slices.Compact(routes)
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Equal(routes, s.routes) {
		return nil
	}
	opts := s.opts.Clone()
	opts.Routes = routeURLs(routes, s.token)
	if err := s.srv.ReloadOptions(opts); err != nil {
		return fmt.Errorf("logstore: routes: %w", err)
	}
	s.opts = opts
	s.routes = routes
	return nil
}

// PinTag is the tag every server carries with its name, which a placement
// names to put a group on that server (Options.Pin). JetStream compares
// tags in lower case.
func PinTag(server string) string { return "nimbus-server:" + strings.ToLower(server) }

// excludeTag is the server tag JetStream places no new stream or replica
// on (its jsExcludePlacement).
const excludeTag = "!jetstream"

// Leave takes the server out of JetStream's placement before it stops: a
// stream or replica created from now on goes to another server. The tag
// that says so reaches the other servers at once, in the statistics the
// server sends on a reload, while its routes are still up (a server that
// is leaving stops soon after, and an R1 group placed on it then would
// have its one replica gone). What the server holds already stays and
// moves with the leaderships its Shutdown hands over.
func (s *Server) Leave() error {
	if s.opts.DontListen {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.opts.Tags, excludeTag) {
		return nil
	}
	opts := s.opts.Clone()
	opts.Tags = append(slices.Clone(opts.Tags), excludeTag)
	if err := s.srv.ReloadOptions(opts); err != nil {
		return fmt.Errorf("logstore: leave: %w", err)
	}
	s.opts = opts
	return nil
}

// Connect opens an in-process client connection to the server.
func (s *Server) Connect(name string) (*nats.Conn, error) {
	return nats.Connect("", clientOptions(name, s.token, nats.InProcessServer(s.srv))...)
}

// Close shuts the server down and waits for it.
func (s *Server) Close() error {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	return nil
}

// ConnectURLs opens a client connection to the servers at addrs (IP:PORT
// client addresses), retrying and reconnecting for ever; it learns the
// other servers of the cluster from them.
func ConnectURLs(name string, addrs []string, secret []byte) (*nats.Conn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("logstore: no server to connect to")
	}
	urls := ""
	for i, a := range addrs {
		if i > 0 {
			urls += ","
		}
		urls += "nats://" + a
	}
	return nats.Connect(urls, clientOptions(name, Credentials(secret), nats.RetryOnFailedConnect(true))...)
}

func clientOptions(name, token string, extra ...nats.Option) []nats.Option {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 50*time.Millisecond),
		// Buffered publishes while reconnecting are bounded by the
		// publisher's own queue, not by the connection.
		nats.ReconnectBufSize(-1),
	}
	if token != "" {
		opts = append(opts, nats.Token(token))
	}
	return append(opts, extra...)
}

func routeURLs(addrs []string, token string) []*url.URL {
	var out []*url.URL
	for _, a := range addrs {
		u := &url.URL{Scheme: "nats", Host: a}
		if token != "" {
			u.User = url.UserPassword(routeUser, token)
		}
		out = append(out, u)
	}
	return out
}

func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	return host, port, nil
}

// natsLogger sends the server's own log to slog.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n natsLogger) Warnf(f string, v ...any)   { n.l.Warn(fmt.Sprintf(f, v...)) }
func (n natsLogger) Fatalf(f string, v ...any)  { n.l.Error(fmt.Sprintf(f, v...)) }
func (n natsLogger) Errorf(f string, v ...any)  { n.l.Error(fmt.Sprintf(f, v...)) }
func (n natsLogger) Debugf(f string, v ...any)  {}
func (n natsLogger) Tracef(f string, v ...any)  {}

// MetaLeader names the server leading the JetStream cluster's meta group
// and says how many servers that group counts ("", 0 when it has no leader
// or for a standalone server).
func (s *Server) MetaLeader() (leader string, size int) {
	if s.opts.DontListen {
		return "", 0
	}
	info, err := s.srv.Jsz(&server.JSzOptions{})
	if err != nil || info.Meta == nil {
		return "", 0
	}
	return info.Meta.Leader, info.Meta.Size
}

// ClusterState describes the server's view of the JetStream cluster for
// logs and tests: the meta leader, the meta group's size and peers, the
// routes this server has, and the leader and replicas of each stream it
// holds.
func (s *Server) ClusterState() string {
	info, err := s.srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Config: true})
	if err != nil {
		return "jsz: " + err.Error()
	}
	out := fmt.Sprintf("%s: routes %d", s.opts.ServerName, s.srv.NumRoutes())
	if m := info.Meta; m != nil {
		out += fmt.Sprintf(", meta leader %q, size %d, quorum %d, pending %d, peers", m.Leader, m.Size, m.QuorumNeeded, m.Pending)
		for _, p := range m.Replicas {
			out += fmt.Sprintf(" [%s current=%v offline=%v active=%v lag=%d]", p.Name, p.Current, p.Offline, p.Active, p.Lag)
		}
	}
	for _, a := range info.AccountDetails {
		for _, st := range a.Streams {
			out += fmt.Sprintf("; stream %s", st.Name)
			if st.Config != nil {
				out += fmt.Sprintf(" R%d", st.Config.Replicas)
			}
			if c := st.Cluster; c != nil {
				out += fmt.Sprintf(" leader %q, replicas", c.Leader)
				for _, p := range c.Replicas {
					out += fmt.Sprintf(" [%s current=%v offline=%v active=%v lag=%d]", p.Name, p.Current, p.Offline, p.Active, p.Lag)
				}
			}
		}
	}
	return out
}
