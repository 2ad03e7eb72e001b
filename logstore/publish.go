package logstore

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// flight is a batch handed to the store and not yet acknowledged.
type flight struct {
	p    *pendingBatch
	data []byte // what is published: p's batch, compressed or not
	id   string // its Nats-Msg-Id, the same on every retry
	// ack is the asynchronous publish's future; nil when it was not sent
	// that way (resolve publishes it synchronously).
	ack jetstream.PubAckFuture
}

// publish drains one function's queue in order. Up to
// Options.PublishWindow batches await their acknowledgement at once; a
// batch that is not full goes out only when none is in flight, so a slow
// store gets fewer, fuller batches.
//
// Order. Every batch after the first of a window is published with
// Nats-Expected-Last-Msg-Id naming the batch before it, which the stream
// checks when it applies the message (after consensus, on every replica
// alike): it is stored only right after its predecessor, so the stream
// keeps the order lines were appended in whatever the transport does.
// Acknowledgements are resolved oldest first; a batch that failed (a lost
// predecessor, another node's batch in between, a timeout, no leader) is
// published again synchronously, with the same id and no expectation, once
// every batch before it is acknowledged: the servers store it once
// (deduplication by id within dedupWindow) and after its predecessors.
func (s *Store) publish(q *queue) {
	defer s.wg.Done()
	idle := time.NewTimer(queueIdle)
	defer idle.Stop()
	var window []flight
	for {
		select {
		case <-q.wake:
		case <-idle.C:
			s.mu.Lock()
			if len(q.batches) == 0 && q.dropped == 0 {
				delete(s.queues, q.fn)
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
		case <-s.stop:
		}
		closing := s.isClosing()
		if !closing {
			// Linger for more lines unless a batch is already full.
			if !s.headFull(q) {
				time.Sleep(s.opts.Linger)
			}
		}
		for {
			for len(window) < s.opts.PublishWindow && (len(window) == 0 || s.headFull(q)) {
				p := s.take(q, len(window) > 0)
				if p == nil {
					break
				}
				window = append(window, s.send(q.fn, p, window))
			}
			if len(window) == 0 {
				break
			}
			f := window[0]
			if !s.resolve(q.fn, &f) {
				return // closed before the store took it
			}
			copy(window, window[1:])
			window[len(window)-1] = flight{}
			window = window[:len(window)-1]
			s.acked(f.p)
			s.wakeFollowers(q.fn)
		}
		s.mu.Lock()
		q.sending = false
		s.mu.Unlock()
		if closing {
			return
		}
		idle.Reset(queueIdle)
	}
}

// acked counts p as published and frees its place in the buffer.
func (s *Store) acked(p *pendingBatch) {
	s.mu.Lock()
	s.buffered -= p.size
	s.mu.Unlock()
	s.published.Add(uint64(p.count))
	s.batches.Add(1)
	s.release(p)
}

// headFull reports whether q's next batch is full (another is behind it).
func (s *Store) headFull(q *queue) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(q.batches) > 1 || q.bytes >= maxBatchBytes
}

// send encodes p and publishes it asynchronously, chained to the last
// batch of window; when that cannot be done now (one batch at a time, no
// connection, the stream not ensured, an earlier batch not sent), the
// flight has no future and resolve publishes it.
func (s *Store) send(fn string, p *pendingBatch, window []flight) flight {
	data := compressBatch(p.raw(s.opts.Node), p.comp)
	if data[0] == batchS2 {
		p.comp = data[:cap(data)]
	}
	f := flight{p: p, data: data, id: s.idPrefix + strconv.FormatUint(s.batchID.Add(1), 36)}
	if s.opts.PublishWindow <= 1 {
		return f
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(f.id), jetstream.WithExpectStream(streamOf(fn))}
	if n := len(window); n > 0 {
		if window[n-1].ack == nil {
			return f
		}
		opts = append(opts, jetstream.WithExpectLastMsgID(window[n-1].id))
	}
	js, err := s.jetStream()
	if err != nil {
		return f
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	err = s.ensureStream(ctx, js, fn)
	cancel()
	if err != nil {
		return f
	}
	ack, err := js.PublishMsgAsync(&nats.Msg{Subject: subjectOf(fn), Data: data, Header: nats.Header{}}, opts...)
	if err != nil {
		s.log.Debug("log store: async publish", "function", fn, "err", err)
		return f
	}
	f.ack = ack
	return f
}

// resolve waits for f's acknowledgement, every batch before it being
// acknowledged already; when it failed or was not sent, it publishes f
// again synchronously (publishBatch). It returns false only once the
// Store is closing and the grace is over.
func (s *Store) resolve(fn string, f *flight) bool {
	if f.ack != nil {
		select {
		case <-f.ack.Ok():
			return true
		case err := <-f.ack.Err():
			s.log.Debug("log store: async publish", "function", fn, "err", err)
			s.republished.Add(1)
		}
	}
	return s.publishBatch(fn, f.id, f.data)
}
