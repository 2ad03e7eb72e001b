package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"nimbus/rpc"
	"nimbus/sandbox"
)

// workerState is what a worker tracks of its own work: the slots it runs
// (reported in every heartbeat, so a new leader can rebuild its counts) and
// the releases still to send. mu guards slots.
type workerState struct {
	mu       sync.Mutex
	slots    map[uint64]rpc.SlotInfo
	releases chan uint64
	beat     chan struct{} // a heartbeat is wanted now
	// revisions is the newest revision run per function, on a worker-only
	// node (which has no FSM to tell it of updates); mu guards it.
	revisions map[string]uint64
}

func newWorkerState() *workerState {
	return &workerState{
		slots:     map[uint64]rpc.SlotInfo{},
		releases:  make(chan uint64, 8192),
		beat:      make(chan struct{}, 1),
		revisions: map[string]uint64{},
	}
}

func (w *workerState) add(s rpc.SlotInfo) {
	w.mu.Lock()
	w.slots[s.ID] = s
	w.mu.Unlock()
}

func (w *workerState) remove(id uint64) {
	w.mu.Lock()
	delete(w.slots, id)
	w.mu.Unlock()
}

// newRevision records fn's revision and reports whether it is newer than
// the one this worker ran before.
func (w *workerState) newRevision(fn *rpc.FunctionConfig) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev, ok := w.revisions[fn.Name]
	if fn.Revision > prev {
		w.revisions[fn.Name] = fn.Revision
	}
	return ok && fn.Revision > prev
}

func (w *workerState) list() []rpc.SlotInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]rpc.SlotInfo, 0, len(w.slots))
	for _, s := range w.slots {
		out = append(out, s)
	}
	return out
}

// startWorkerLoops starts the heartbeat and release senders.
func (n *Node) startWorkerLoops() {
	n.bg.Add(2)
	go func() {
		defer n.bg.Done()
		n.heartbeatLoop()
	}()
	go func() {
		defer n.bg.Done()
		n.releaseLoop()
	}()
}

func (n *Node) heartbeat() *rpc.HeartbeatRequest {
	return &rpc.HeartbeatRequest{
		Node:     n.name,
		Addr:     n.cfg.Advertise,
		MemoryMB: n.cfg.MemoryMB,
		Slots:    n.work.list(),
		Warm:     n.sandboxes.WarmKeys(),
	}
}

// sendHeartbeat reports to the leader (itself, if it leads).
func (n *Node) sendHeartbeat(ctx context.Context) error {
	hb := n.heartbeat()
	if n.isLeader() {
		n.ledger.Heartbeat(hb)
		return nil
	}
	addr, err := n.leaderAddr(ctx)
	if err != nil {
		return err
	}
	if err := n.peers.call(ctx, addr, rpc.MethodWorkerHeartbeat, hb, &rpc.HeartbeatResponse{}); err != nil {
		// The node asked may have stopped leading: a worker-only node asks
		// the servers who leads again, or it would report to a former
		// leader for good while the new one's ledger never hears of it.
		n.leaderCache.Store("")
		return fmt.Errorf("heartbeat to %s: %w", addr, err)
	}
	return nil
}

// heartbeatsBeforeWarning is how many heartbeats may fail in a row (an
// election, a leader change) before the worker says so at warning level.
const heartbeatsBeforeWarning = 10

func (n *Node) heartbeatLoop() {
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	failing := 0 // heartbeats not delivered in a row
	for {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.HeartbeatInterval)
		if err := n.sendHeartbeat(ctx); err != nil {
			failing++
			if failing == heartbeatsBeforeWarning {
				n.log.Warn("heartbeats not reaching the leader: the ledger gives this worker no slots", "failed", failing, "err", err)
			} else {
				n.log.Debug("heartbeat not delivered", "err", err)
			}
		} else {
			if failing >= heartbeatsBeforeWarning {
				n.log.Info("heartbeats reach the leader again", "failed", failing)
			}
			failing = 0
		}
		cancel()
		select {
		case <-n.stopping:
			return
		case <-t.C:
		case <-n.work.beat:
		}
	}
}

// releaseSlot gives a finished slot back: at once when this node leads,
// else through the batching sender.
func (n *Node) releaseSlot(id uint64) {
	n.work.remove(id)
	if n.isLeader() {
		n.ledger.Release(n.name, id)
		return
	}
	select {
	case n.work.releases <- id:
	default:
		// The sender is far behind; the next heartbeat no longer lists the
		// slot, and the leader drops it then.
	}
}

// releaseLoop sends releases to the leader in batches. A batch that cannot
// be delivered is retried briefly; after that the heartbeats reconcile.
func (n *Node) releaseLoop() {
	for {
		var batch []uint64
		select {
		case <-n.stopping:
			return
		case id := <-n.work.releases:
			batch = append(batch, id)
		}
	drain:
		for len(batch) < 1024 {
			select {
			case id := <-n.work.releases:
				batch = append(batch, id)
			default:
				break drain
			}
		}
		for attempt := 0; attempt < 5; attempt++ {
			if n.isLeader() {
				n.ledger.Release(n.name, batch...)
				break
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			addr, err := n.leaderAddr(ctx)
			if err == nil {
				err = n.peers.call(ctx, addr, rpc.MethodLedgerRelease, &rpc.ReleaseRequest{Worker: n.name, SlotIDs: batch}, &rpc.ReleaseResponse{})
			}
			cancel()
			if err == nil {
				break
			}
			select {
			case <-n.stopping:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// workerRun runs one invocation in a slot the leader granted to this node.
func (n *Node) workerRun(ctx context.Context, req *rpc.RunRequest) (*rpc.InvokeResponse, error) {
	return n.workerRunWith(ctx, req, nil)
}

// streamGrace is how long past its function's timeout a streamed response
// may wait for its caller to take it before the stream gives up.
const streamGrace = 10 * time.Second

// workerRunWith is workerRun, with the response streamed to sink when it
// is set.
func (n *Node) workerRunWith(ctx context.Context, req *rpc.RunRequest, send sendFunc) (*rpc.InvokeResponse, error) {
	if n.sandboxes == nil {
		return nil, rpc.Errorf(rpc.CodeService, "node %s is not a worker", n.name)
	}
	fn := req.Function
	if fn == nil {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Worker.Run without a function")
	}
	if req.RequestID != "" && !validRequestID(req.RequestID) {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Worker.Run with a malformed request id")
	}
	n.work.add(rpc.SlotInfo{ID: req.SlotID, Function: fn.Name, MemoryMB: fn.MemoryMB})
	defer n.releaseSlot(req.SlotID)
	if n.fsm == nil && fn.Version == "" && n.work.newRevision(fn) {
		// A server retires old revisions as its FSM changes; a worker-only
		// node learns of a new one here.
		n.sandboxes.Retire(fn.Name, fn.Revision)
	}

	n.usedCode(fn)
	codeDir, err := n.ensureCode(ctx, fn.CodeSHA256)
	if err != nil {
		return nil, err
	}
	optDir, err := n.ensureLayers(ctx, fn.Layers) // issue 10: /opt
	if err != nil {
		return nil, err
	}
	sreq := &sandbox.Request{
		Function:  fn,
		CodeDir:   codeDir,
		OptDir:    optDir,
		Payload:   req.Payload,
		Tail:      req.LogType == rpc.LogTypeTail,
		RequestID: req.RequestID,
		Qualifier: req.Qualifier,
		// Checked and compacted by the frontend (one line of JSON).
		ClientContext: string(req.ClientContext),
	}
	var stream *responseStream
	if send != nil {
		stream = newResponseStream(ctx, send, fn)
		defer stream.Abort()
		sreq.Stream = stream
	}
	res, err := n.sandboxes.Invoke(ctx, sreq)
	// Issue 10: a managed runtime's image this worker lacks is copied from
	// a peer that has it (checked against its digest), once.
	if errors.Is(err, rpc.ErrResourceNotReady) && n.fetchImage(ctx, fn.Runtime) == nil {
		res, err = n.sandboxes.Invoke(ctx, sreq)
	}
	if err != nil {
		if errors.Is(err, sandbox.ErrClosed) {
			return nil, rpc.Errorf(rpc.CodeService, "worker %s is shutting down", n.name)
		}
		return nil, rpc.AsError(err)
	}
	fc := n.metrics.fns.getKey(invokedKey(fn.Name, req.Qualifier, fn.VersionName()))
	fc.duration.observe(res.Duration)
	if res.Cold {
		fc.coldStarts.Add(1)
		fc.initDur.observe(res.InitDuration)
		n.metrics.sandboxes.starts.Add(1)
	}
	if strings.HasPrefix(res.ErrorType, "Sandbox.") || strings.HasPrefix(res.ErrorType, "Runtime.") {
		n.metrics.sandboxes.failed(res.ErrorType)
	}
	out := &rpc.InvokeResponse{
		RequestID:       res.RequestID,
		StatusCode:      200,
		Payload:         res.Payload,
		ExecutedVersion: fn.VersionName(),
	}
	if res.ErrorType != "" {
		out.FunctionError = rpc.FunctionErrorUnhandled
	}
	if req.LogType == rpc.LogTypeTail {
		out.LogResult = []byte(res.LogTail)
	}
	if stream != nil && !res.Streamed && res.ErrorType == "" {
		// Answered without a body to stream (nothing was posted to it).
		if err := stream.Start(""); err != nil {
			return nil, rpc.Errorf(rpc.CodeService, "the caller of the stream is gone: %v", err)
		}
	}
	return out, nil
}

// responseStream passes a sandbox's streamed response to a caller's rpc
// stream, in parts of at most rpc.MaxStreamPart. Its sends give up when
// the sandbox aborts the stream (the invocation ended while it streamed)
// or streamTime after the response started: a caller that stops taking
// its parts holds no sandbox or slot past that.
type responseStream struct {
	send    sendFunc
	version string
	limit   time.Duration

	ctx    context.Context // ended by Abort
	cancel context.CancelFunc

	started bool
	sctx    context.Context // ctx with the limit, from Start; Start's and Write's goroutine's
	stop    context.CancelFunc
}

func newResponseStream(ctx context.Context, send sendFunc, fn *rpc.FunctionConfig) *responseStream {
	s := &responseStream{send: send, version: fn.VersionName(), limit: streamTime(fn)}
	s.ctx, s.cancel = context.WithCancel(ctx)
	return s
}

func (s *responseStream) Start(contentType string) error {
	if s.started {
		return nil
	}
	s.started = true
	s.sctx, s.stop = context.WithTimeout(s.ctx, s.limit)
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	return s.send(s.sctx, &rpc.InvokeStreamPart{ContentType: contentType, ExecutedVersion: s.version})
}

func (s *responseStream) Write(p []byte) error {
	for len(p) > 0 {
		k := min(len(p), rpc.MaxStreamPart)
		if err := s.send(s.sctx, &rpc.InvokeStreamPart{Data: p[:k]}); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

// Abort ends the stream's sends; safe from any goroutine, and again.
func (s *responseStream) Abort() {
	s.cancel()
}
