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
	DefaultPublishWindow = 4
	DefaultGroupMaxBytes = 1 << 30
	// dedupWindow is how long the servers remember a batch's id, so that a
	// batch published again after a lost acknowledgement is stored once.
	dedupWindow = 2 * time.Minute
	// publishTimeout bounds the wait for one acknowledgement.
	publishTimeout = 5 * time.Second
	// queueIdle is how long an empty queue's publisher lingers.
	queueIdle = 30 * time.Second
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
	// Pin names the server a new R1 group is placed on ("" lets JetStream
	// choose): a server's Store pins to its own server, which is alive as
	// long as it writes, where JetStream's choice may be a server that is
	// stopping (see Server.Leave). A group scaled up to more replicas is
	// unpinned. nil means no pin.
	Pin func() string
	// BufferBytes bounds the lines waiting to be published, those in
	// batches awaiting their acknowledgement included (default 16 MiB);
	// lines past it are dropped and counted.
	BufferBytes int
	// Linger is how long a publisher waits for more lines before it
	// publishes a batch that is not full (default 5 ms).
	Linger time.Duration
	// PublishWindow is how many batches of one function may await their
	// acknowledgement at once (default DefaultPublishWindow); 1 publishes
	// one at a time, synchronously.
	PublishWindow int
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
	// Republished counts batches published again, synchronously, after
	// their pipelined publish failed (see publish).
	Republished uint64
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
	republished                 atomic.Uint64
	batchID                     atomic.Uint64
	idPrefix                    string
	hdrRoom                     int                // headerRoom(opts.Node)
	spare                       chan *pendingBatch // full-sized buffers of published batches, for reuse

	stop chan struct{}
	wg   sync.WaitGroup
}

// queue holds one function's lines waiting to be published, in order,
// already encoded into the batches that will carry them (the last one
// takes new lines while it has room); the Store's mu guards it. One
// goroutine (publish) drains it.
type queue struct {
	fn      string
	batches []*pendingBatch // oldest first; none is empty
	bytes   int             // eventSize of the lines in batches
	lines   int
	dropped int
	sending bool // a batch taken from it is being published
	wake    chan struct{}
}

// open returns the batch an event of size sz joins, starting one when the
// last is full.
func (s *Store) open(q *queue, sz int) *pendingBatch {
	if n := len(q.batches); n > 0 && q.batches[n-1].fits(sz) {
		return q.batches[n-1]
	}
	var p *pendingBatch
	select {
	case p = <-s.spare: // a full-sized buffer a published batch left
	default:
		if len(q.batches) > 0 {
			// The queue fills batches faster than they go: a full-sized
			// buffer, so that this one does not grow by copies.
			p = &pendingBatch{buf: make([]byte, s.hdrRoom, s.hdrRoom+maxBatchBytes+eventOverhead)}
		} else {
			p = &pendingBatch{buf: make([]byte, s.hdrRoom, s.hdrRoom+min(sz+eventOverhead, maxBatchBytes)+1024)}
		}
	}
	q.batches = append(q.batches, p)
	return p
}

// spareBatches is how many full-sized batch buffers a Store keeps for
// reuse (a few MiB).
const spareBatches = 4

// release keeps a published batch's buffer for reuse when it is a
// full-sized one.
func (s *Store) release(p *pendingBatch) {
	if cap(p.buf) < s.hdrRoom+maxBatchBytes || cap(p.buf) > 2*maxBatchBytes+s.hdrRoom {
		return
	}
	p.buf, p.count, p.size = p.buf[:s.hdrRoom], 0, 0
	select {
	case s.spare <- p:
	default:
	}
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
	if opts.PublishWindow <= 0 {
		opts.PublishWindow = DefaultPublishWindow
	}
	if opts.GroupMaxBytes <= 0 {
		opts.GroupMaxBytes = DefaultGroupMaxBytes
	}
	if opts.Replicas == nil {
		opts.Replicas = func() int { return 1 }
	}
	if opts.Pin == nil {
		opts.Pin = func() string { return "" }
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
		hdrRoom:  headerRoom(opts.Node),
		spare:    make(chan *pendingBatch, spareBatches),
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
			js, err2 := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishTimeout))
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
		lines += q.lines
	}
	s.mu.Unlock()
	return Stats{Published: s.published.Load(), Dropped: s.dropped.Load(), Buffered: b, BufferedLines: lines, Batches: s.batches.Load(), Republished: s.republished.Load()}
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
		s.enqueue(q, ev)
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// enqueue adds ev to q's last batch, or drops and counts it past the
// buffer's bound. The caller holds mu.
func (s *Store) enqueue(q *queue, ev rpc.LogEvent) {
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
		return
	}
	s.open(q, sz).add(&ev)
	q.bytes += sz
	q.lines++
	s.buffered += sz
}

// settle waits, up to max, until this node has published every line of
// fn it holds, so that a read on the node that ran an invocation sees all
// of that invocation's lines.
func (s *Store) settle(fn string, max time.Duration) {
	deadline := time.Now().Add(max)
	for {
		s.mu.Lock()
		q := s.queues[fn]
		busy := q != nil && (len(q.batches) > 0 || q.sending)
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

// take removes the next batch from q (nil when there is none): at most
// maxBatchEvents-1 events and about maxBatchBytes. When it empties the
// queue after drops, the batch ends with the platform line that reports
// them. inFlight tells whether q's publisher still awaits acknowledgements
// (q stays sending then).
func (s *Store) take(q *queue, inFlight bool) *pendingBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p *pendingBatch
	if len(q.batches) > 0 {
		p = q.batches[0]
		q.batches[0] = nil
		q.batches = q.batches[1:]
		if len(q.batches) == 0 {
			q.batches = nil
		}
		q.bytes -= p.size
		q.lines -= p.count
		// s.buffered keeps p.size until p is acknowledged (acked): the
		// bound covers the batches in flight too.
	}
	if len(q.batches) == 0 && q.dropped > 0 {
		s.log.Warn("log store: lines dropped (buffer full)", "function", q.fn, "lines", q.dropped, "dropped_total", s.dropped.Load())
		if p == nil {
			p = s.open(q, 0)
			q.batches = nil
		}
		before := p.size
		p.add(&rpc.LogEvent{
			TimeMs: time.Now().UnixMilli(),
			Stream: StreamPlatform,
			Line:   fmt.Sprintf("nimbus: %d lines dropped", q.dropped),
		})
		s.buffered += p.size - before // acked takes p.size off
		q.dropped = 0
	}
	q.sending = p != nil || inFlight
	return p
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
			// The pin is dropped in the same update: JetStream refuses a
			// move and a scale at once, and a nil placement is no move.
			cur.Replicas, cur.Placement = want, nil
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
	var placement *jetstream.Placement
	if pin := s.opts.Pin(); pin != "" && replicas == 1 {
		placement = &jetstream.Placement{Tags: []string{PinTag(pin)}}
	}
	return jetstream.StreamConfig{
		Name:        streamOf(fn),
		Description: logGroupOf(fn),
		Subjects:    []string{subjectOf(fn)},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Placement:   placement,
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
