package logstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"nimbus/rpc"
)

// Defaults of Options.
const (
	DefaultBufferBytes   = 16 << 20
	DefaultLinger        = 5 * time.Millisecond
	DefaultGroupMaxBytes = 1 << 30
	// dedupWindow is how long the servers remember a batch's id, so that a
	// batch published again after a lost acknowledgement is stored once.
	dedupWindow = 2 * time.Minute
	// publishTimeout bounds the wait for one acknowledgement.
	publishTimeout = 5 * time.Second
	// queueIdle is how long an empty queue's publisher lingers.
	queueIdle = 30 * time.Second
	// publishWindow is how many batches of one function may wait for
	// their acknowledgement at once; maxAsyncPending bounds them over all
	// functions (a publish past it waits, then counts as failed).
	publishWindow   = 4
	maxAsyncPending = 1024
)

// ErrClosed is returned by the Store's methods after Close.
var ErrClosed = errors.New("logstore: closed")

// errNotReady is the answer while the store has no connection yet.
var errNotReady = rpc.Errorf(rpc.CodeService, "the log store is not reachable yet")

// Options configure a Store.
type Options struct {
	// Node is this node's name; every event it publishes carries it.
	Node string
	// Connect opens the connection to the JetStream servers. Open calls it
	// in the background until it succeeds.
	Connect func() (*nats.Conn, error)
	// Replicas tells how many replicas a new log group gets (1, or 3 once
	// three servers exist); nil means 1. A group with fewer is scaled up
	// when the publisher next ensures it.
	Replicas func() int
	// BufferBytes bounds the lines waiting to be published (default 16
	// MiB); lines past it are dropped and counted.
	BufferBytes int
	// Linger is how long a publisher waits for more lines before it
	// publishes a batch that is not full (default 5 ms).
	Linger time.Duration
	// GroupMaxBytes is the size retention of a group (default 1 GiB): the
	// oldest events go first past it.
	GroupMaxBytes int64
	Logger        *slog.Logger
}

// Stats are the publisher's counters since Open.
type Stats struct {
	Published uint64 // events acknowledged by the store
	Dropped   uint64 // events dropped because the buffer was full
	Buffered  int    // bytes waiting now
	// BufferedLines is the lines waiting now.
	BufferedLines int
	Batches       uint64 // batches acknowledged
}

// Store is a node's client of the replicated log store: the sink its
// sandboxes write to (Append) and the reader of every function's log
// (Read, Groups). Lines are published to JetStream in batches, one stream
// per function; a line is acknowledged when the stream has it on a quorum.
//
// mu guards queues, buffered and closed; conn guards nc and js, which are
// set once when the connection is made. Options never change after Open.
type Store struct {
	opts Options
	log  *slog.Logger

	conn  sync.RWMutex
	nc    *nats.Conn
	js    jetstream.JetStream
	ready chan struct{} // closed once nc is set

	mu       sync.Mutex
	queues   map[string]*queue
	buffered int
	closed   bool

	known sync.Map // function -> replicas its stream was ensured with

	published, dropped, batches atomic.Uint64
	batchID                     atomic.Uint64
	idPrefix                    string

	stop chan struct{}
	wg   sync.WaitGroup
}

// queue holds one function's lines waiting to be published, in order;
// the Store's mu guards it. One goroutine (publish) drains it.
type queue struct {
	fn      string
	events  []rpc.LogEvent
	bytes   int
	dropped int
	unacked int // batches taken from it and not yet acknowledged
	wake    chan struct{}
}

// Open returns a Store and starts connecting in the background; Appends
// are buffered meanwhile and Reads answer ServiceException.
func Open(opts Options) (*Store, error) {
	if opts.Connect == nil {
		return nil, errors.New("logstore: Options.Connect is required")
	}
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = DefaultBufferBytes
	}
	if opts.Linger <= 0 {
		opts.Linger = DefaultLinger
	}
	if opts.GroupMaxBytes <= 0 {
		opts.GroupMaxBytes = DefaultGroupMaxBytes
	}
	if opts.Replicas == nil {
		opts.Replicas = func() int { return 1 }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		opts:   opts,
		log:    opts.Logger,
		ready:  make(chan struct{}),
		queues: map[string]*queue{},
		stop:   make(chan struct{}),
		// Batch ids are unique per node and start: a restarted node
		// never reuses a previous run's id within the dedup window.
		idPrefix: opts.Node + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-",
	}
	s.wg.Add(1)
	go s.connect()
	return s, nil
}

func (s *Store) connect() {
	defer s.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		nc, err := s.opts.Connect()
		if err == nil {
			js, err2 := jetstream.New(nc,
				jetstream.WithPublishAsyncTimeout(publishTimeout),
				jetstream.WithPublishAsyncMaxPending(maxAsyncPending))
			if err2 == nil {
				s.conn.Lock()
				s.nc, s.js = nc, js
				s.conn.Unlock()
				close(s.ready)
				return
			}
			nc.Close()
			err = err2
		}
		s.log.Debug("log store: connect", "err", err)
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// jetStream returns the JetStream context, or errNotReady.
func (s *Store) jetStream() (jetstream.JetStream, error) {
	s.conn.RLock()
	defer s.conn.RUnlock()
	if s.js == nil {
		return nil, errNotReady
	}
	return s.js, nil
}

// WaitReady waits until the store is connected and JetStream answers.
func (s *Store) WaitReady(ctx context.Context) error {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	js, err := s.jetStream()
	if err != nil {
		return err
	}
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("logstore: %w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stats returns the publisher's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	b, lines := s.buffered, 0
	for _, q := range s.queues {
		lines += len(q.events)
	}
	s.mu.Unlock()
	return Stats{Published: s.published.Load(), Dropped: s.dropped.Load(), Buffered: b, BufferedLines: lines, Batches: s.batches.Load()}
}

// Append queues events of function for publishing and returns at once: it
// never waits for the store. Events past the buffer's bound are dropped,
// counted, and reported in the function's log as a platform line
// "nimbus: N lines dropped" once the queue drains. An event without a
// Stream gets stdout, or platform for the lines the platform writes
// (START, END, REPORT). Lines longer than 256 KiB are cut.
func (s *Store) Append(function string, events ...rpc.LogEvent) error {
	if err := checkName(function); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	q := s.queues[function]
	if q == nil {
		q = &queue{fn: function, wake: make(chan struct{}, 1)}
		s.queues[function] = q
		s.wg.Add(1)
		go s.publish(q)
	}
	for _, ev := range events {
		if len(ev.Line) > MaxLineBytes {
			ev.Line = ev.Line[:MaxLineBytes]
		}
		if len(ev.RequestID) > maxRequestID {
			ev.RequestID = ev.RequestID[:maxRequestID]
		}
		if ev.Stream == "" {
			ev.Stream = classify(ev.Line)
		}
		sz := eventSize(&ev)
		if s.buffered+sz > s.opts.BufferBytes {
			q.dropped++
			s.dropped.Add(1)
			continue
		}
		q.events = append(q.events, ev)
		q.bytes += sz
		s.buffered += sz
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// settle waits, up to max, until this node has published every line of
// fn it holds, so that a read on the node that ran an invocation sees all
// of that invocation's lines.
func (s *Store) settle(fn string, max time.Duration) {
	deadline := time.Now().Add(max)
	for {
		s.mu.Lock()
		q := s.queues[fn]
		busy := q != nil && (len(q.events) > 0 || q.unacked > 0)
		s.mu.Unlock()
		if !busy || time.Now().After(deadline) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// platformPrefixes start the lines the platform writes per invocation.
var platformPrefixes = []string{"START RequestId: ", "END RequestId: ", "REPORT RequestId: ", "INIT_START ", "nimbus: "}

func classify(line string) string {
	for _, p := range platformPrefixes {
		if strings.HasPrefix(line, p) {
			return StreamPlatform
		}
	}
	return StreamStdout
}

// take removes the next batch from q: at most maxBatchEvents-1 events and
// about maxBatchBytes. When it empties the queue after drops, the batch
// ends with the platform line that reports them.
func (s *Store) take(q *queue) []rpc.LogEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, size := 0, 0
	for n < len(q.events) && n < maxBatchEvents-1 {
		sz := eventSize(&q.events[n])
		if n > 0 && size+sz > maxBatchBytes {
			break
		}
		size += sz
		n++
	}
	batch := make([]rpc.LogEvent, n, n+1)
	copy(batch, q.events[:n])
	clear(q.events[:n])
	q.events = q.events[n:]
	if len(q.events) == 0 {
		q.events = nil
	}
	q.bytes -= size
	s.buffered -= size
	if len(q.events) == 0 && q.dropped > 0 {
		s.log.Warn("log store: lines dropped (buffer full)", "function", q.fn, "lines", q.dropped, "dropped_total", s.dropped.Load())
		batch = append(batch, rpc.LogEvent{
			TimeMs: time.Now().UnixMilli(),
			Stream: StreamPlatform,
			Line:   fmt.Sprintf("nimbus: %d lines dropped", q.dropped),
		})
		q.dropped = 0
	}
	if len(batch) > 0 {
		q.unacked++
	}
	return batch
}

// publish drains one function's queue. Batches are published
// asynchronously, up to publishWindow of them awaiting their
// acknowledgement: JetStream stores the messages of one connection in the
// order they were sent, so the stream keeps the order lines were appended
// in. A batch that is not full is sent only when none is in flight (the
// lines that arrive meanwhile make the next batch bigger). When a batch
// fails (no stream leader, a timeout), the window is resolved in order:
// the publisher waits for every batch in flight, then publishes each
// unacknowledged one again, one at a time and with the same id (so one
// that was stored after all is stored once), before it goes on.
func (s *Store) publish(q *queue) {
	defer s.wg.Done()
	idle := time.NewTimer(queueIdle)
	defer idle.Stop()
	var window []*inflight
	for {
		closing := s.isClosing()
		if closing {
			// Resolve the window, then deliver what is left one batch at
			// a time, within the close grace.
			if !s.resolve(q, window, -1) {
				return
			}
			for {
				batch := s.take(q)
				if len(batch) == 0 {
					return
				}
				data := encodeBatch(s.opts.Node, batch, nil)
				if !s.publishBatch(q.fn, s.nextID(), data) {
					return
				}
				s.acked(q, len(batch))
			}
		}
		// Send while the window has room: full batches always, a partial
		// one only when nothing is in flight.
		failed := -1
		for len(window) < publishWindow {
			s.mu.Lock()
			full := q.bytes >= maxBatchBytes || len(q.events) >= maxBatchEvents-1
			some := len(q.events) > 0 || q.dropped > 0
			s.mu.Unlock()
			if !some || !full && len(window) > 0 {
				break
			}
			batch := s.take(q)
			if len(batch) == 0 {
				break
			}
			// Each batch in flight has its own bytes.
			p := &inflight{id: s.nextID(), events: len(batch), data: encodeBatch(s.opts.Node, batch, nil)}
			p.fut, p.err = s.publishAsync(q.fn, p.id, p.data)
			window = append(window, p)
			if p.err != nil {
				failed = len(window) - 1
				break
			}
		}
		if failed >= 0 {
			if !s.resolve(q, window, failed) {
				return
			}
			window = window[:0]
			continue
		}

		var ok <-chan *jetstream.PubAck
		var errc <-chan error
		var idleC <-chan time.Time
		if len(window) > 0 {
			ok, errc = window[0].fut.Ok(), window[0].fut.Err()
		} else {
			idle.Reset(queueIdle)
			idleC = idle.C
		}
		select {
		case <-q.wake:
			if len(window) == 0 {
				// Linger for more lines unless a batch is already full.
				s.mu.Lock()
				full := q.bytes >= maxBatchBytes
				s.mu.Unlock()
				if !full {
					time.Sleep(s.opts.Linger)
				}
			}
		case <-ok:
			p := window[0]
			window = window[1:]
			s.wakeFollowers(q.fn)
			s.acked(q, p.events)
		case <-errc:
			if !s.resolve(q, window, 0) {
				return
			}
			window = window[:0]
		case <-idleC:
			s.mu.Lock()
			if len(q.events) == 0 && q.dropped == 0 {
				delete(s.queues, q.fn)
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
		case <-s.stop:
		}
	}
}

// inflight is one batch published and not yet acknowledged.
type inflight struct {
	id     string
	data   []byte
	events int
	fut    jetstream.PubAckFuture
	err    error // the publish failed before it was sent
}

// resolve settles a window whose batch at index failed (-1: none known to
// have failed, as when closing): it waits for every batch's answer, in
// order, and publishes each one that was not acknowledged again with its
// id until it is. It returns false once the Store closed before the store
// took them all.
func (s *Store) resolve(q *queue, window []*inflight, failed int) bool {
	gap := false // a batch before this one was not acknowledged
	for i, p := range window {
		var err error
		if i == failed || p.err != nil {
			err = p.err
			if err == nil {
				err = errors.New("failed")
			}
		} else {
			select {
			case <-p.fut.Ok():
			case err = <-p.fut.Err():
			}
		}
		if err == nil {
			if gap {
				// A later batch was stored before an earlier one that
				// failed: the stream has them out of order (no line lost
				// or repeated). JetStream stores one connection's
				// messages in order, so this takes a leader change between
				// two messages of the window.
				s.log.Warn("log store: batches stored out of order", "function", q.fn)
			}
			s.wakeFollowers(q.fn)
			s.acked(q, p.events)
			continue
		}
		gap = true
		s.log.Debug("log store: publish", "function", q.fn, "err", err)
		if !s.publishBatch(q.fn, p.id, p.data) {
			return false
		}
		s.wakeFollowers(q.fn)
		s.acked(q, p.events)
	}
	return true
}

// acked counts a batch of n events as acknowledged.
func (s *Store) acked(q *queue, n int) {
	s.published.Add(uint64(n))
	s.batches.Add(1)
	s.mu.Lock()
	q.unacked--
	s.mu.Unlock()
}

func (s *Store) nextID() string {
	return s.idPrefix + strconv.FormatUint(s.batchID.Add(1), 36)
}

// publishAsync sends one batch without waiting for its acknowledgement.
func (s *Store) publishAsync(fn, id string, data []byte) (jetstream.PubAckFuture, error) {
	js, err := s.jetStream()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := s.ensureStream(ctx, js, fn); err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: subjectOf(fn), Data: data, Header: nats.Header{}}
	// No retry by the client: a batch sent again after the next ones would
	// be stored after them. resolve publishes it again in order.
	fut, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(streamOf(fn)), jetstream.WithRetryAttempts(0))
	if err != nil {
		return nil, err
	}
	return fut, nil
}

// wakeFollowers tells the long polls on fn, on every node, that a batch
// is stored: an empty message on wakeSubjectOf(fn), so that followers do
// not receive the batches themselves.
func (s *Store) wakeFollowers(fn string) {
	s.conn.RLock()
	nc := s.nc
	s.conn.RUnlock()
	if nc != nil {
		_ = nc.Publish(wakeSubjectOf(fn), nil)
	}
}

func (s *Store) isClosing() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// closeGrace is how long Close lets publishers deliver what they hold.
const closeGrace = 3 * time.Second

// publishBatch publishes one encoded batch until it is acknowledged. It
// gives up (false) only once the Store is closing and the grace is over.
func (s *Store) publishBatch(fn, id string, data []byte) bool {
	backoff := 20 * time.Millisecond
	var giveUp time.Time
	for attempt := 0; ; attempt++ {
		if s.isClosing() {
			if giveUp.IsZero() {
				giveUp = time.Now().Add(closeGrace)
			} else if time.Now().After(giveUp) {
				return false
			}
		}
		err := s.publishOnce(fn, id, data)
		if err == nil {
			return true
		}
		switch {
		case attempt == 0:
			s.log.Debug("log store: publish", "function", fn, "err", err)
		case attempt%20 == 10:
			// Past an election's worth of retries: an operator should know.
			s.log.Warn("log store: publish keeps failing", "function", fn, "attempt", attempt, "err", err)
		}
		select {
		case <-time.After(backoff):
		case <-s.stop:
			time.Sleep(backoff)
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (s *Store) publishOnce(fn, id string, data []byte) error {
	js, err := s.jetStream()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := s.ensureStream(ctx, js, fn); err != nil {
		return err
	}
	msg := &nats.Msg{Subject: subjectOf(fn), Data: data, Header: nats.Header{}}
	_, err = js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(streamOf(fn)))
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		s.known.Delete(fn) // deleted meanwhile, or not yet created
	}
	return err
}

// ensureStream creates fn's stream when this Store has not seen it yet, and
// scales it up when more replicas are now possible.
func (s *Store) ensureStream(ctx context.Context, js jetstream.JetStream, fn string) error {
	want := s.opts.Replicas()
	if r, ok := s.known.Load(fn); ok && r.(int) >= want {
		return nil
	}
	cfg := s.streamConfig(fn, want)
	st, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		if st, err = js.Stream(ctx, cfg.Name); err != nil {
			return err
		}
		cur := st.CachedInfo().Config
		if cur.Replicas < want {
			cur.Replicas = want
			if _, err := js.UpdateStream(ctx, cur); err != nil {
				return err
			}
		}
	} else if err != nil {
		return err
	}
	s.known.Store(fn, want)
	return nil
}

func (s *Store) streamConfig(fn string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        streamOf(fn),
		Description: logGroupOf(fn),
		Subjects:    []string{subjectOf(fn)},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxBytes:    s.opts.GroupMaxBytes,
		Discard:     jetstream.DiscardOld,
		Duplicates:  dedupWindow,
		AllowDirect: true,
		MaxMsgSize:  maxPayload,
	}
}

// Close stops the publishers, after giving them a few seconds to deliver
// what they hold, and closes the connection.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	s.conn.Lock()
	if s.nc != nil {
		s.nc.Close()
	}
	s.conn.Unlock()
	return nil
}

// Names. A function's log group is /aws/lambda/NAME, kept in the stream
// LOGS_NAME on the subject logs.NAME (a Lambda function name is letters,
// digits, - and _, all valid in both).
const (
	streamPrefix  = "LOGS_"
	subjectPrefix = "logs."
)

func streamOf(fn string) string  { return streamPrefix + fn }
func subjectOf(fn string) string { return subjectPrefix + fn }

// wakeSubjectOf is where publishers announce a stored batch of fn (a core
// NATS subject, outside every stream).
func wakeSubjectOf(fn string) string { return "logs-wake." + fn }
func logGroupOf(fn string) string {
	return "/aws/lambda/" + fn
}

// validName reports whether name is a valid Lambda function name (letters,
// digits, hyphens and underscores, 1 to 64 of them).
func validName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func checkName(name string) error {
	if !validName(name) {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "invalid function name %q", name)
	}
	return nil
}
