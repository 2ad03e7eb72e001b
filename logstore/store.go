package logstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"nimbus/rpc"
)

// Defaults of Options.
const (
	DefaultRetainBytes  = 64 << 20
	DefaultRetainAge    = 7 * 24 * time.Hour
	DefaultSegmentBytes = 4 << 20
)

// Background work.
const (
	// flushInterval is how often buffered lines are written to the files:
	// at most this much of a log is lost when the process dies.
	flushInterval = 50 * time.Millisecond
	// expireInterval is how often the age retention runs.
	expireInterval = time.Second
)

// tombPrefix starts the name a deleted function's directory is renamed to
// before it is removed; it is not a valid function name, so Open never
// takes it for a log and removes it.
const tombPrefix = ".deleted-"

// ErrClosed is returned by the Store's methods after Close.
var ErrClosed = errors.New("logstore: closed")

// Options bound what a Store keeps. The zero value means the defaults.
type Options struct {
	// RetainBytes bounds one function's log on disk; the oldest segments are
	// dropped past it. 0 means DefaultRetainBytes.
	RetainBytes int64
	// RetainAge drops the segments whose newest line is older than this.
	// 0 means DefaultRetainAge.
	RetainAge time.Duration
	// SegmentBytes is the size past which a new segment file is started.
	// 0 means DefaultSegmentBytes.
	SegmentBytes int64
}

func (o Options) withDefaults() (Options, error) {
	if o.RetainBytes < 0 || o.RetainAge < 0 || o.SegmentBytes < 0 {
		return o, fmt.Errorf("logstore: negative option in %+v", o)
	}
	if o.RetainBytes == 0 {
		o.RetainBytes = DefaultRetainBytes
	}
	if o.RetainAge == 0 {
		o.RetainAge = DefaultRetainAge
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	return o, nil
}

// Store keeps the logs of the functions of one node, one directory per
// function under its root, each a series of segment files:
//
//	<dir>/<function>/<first Seq, 20 digits>.log
//
// mu guards funcs and closed; each funcLog has its own lock, taken after mu
// when both are held. dirtyMu guards dirty and is taken after a funcLog's
// lock. opts never changes after Open.
type Store struct {
	dir  string
	opts Options

	mu     sync.RWMutex
	funcs  map[string]*funcLog
	closed bool

	dirtyMu sync.Mutex
	dirty   []*funcLog // funcLogs with buffered bytes, flushed by the background loop

	tombs atomic.Uint64 // makes the names of deleted directories unique
	stop  chan struct{}
	done  chan struct{}
}

// Open opens the store rooted at dir, creating dir if needed. It recovers the
// segments of every function found there and the next Seq of each; a torn
// record at the end of a segment (a crash during a write) is truncated away.
// Open starts one goroutine, which flushes buffered lines every 50 ms and
// applies the age retention; Close stops it. Only one Store may use a
// directory at a time.
func Open(dir string, opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	s := &Store{
		dir:   dir,
		opts:  opts,
		funcs: make(map[string]*funcLog),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.expire(time.Now())
	go s.run()
	return s, nil
}

// load finds the functions' logs under s.dir and removes the leftovers of
// interrupted Deletes.
func (s *Store) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("logstore: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tombPrefix) {
			os.RemoveAll(filepath.Join(s.dir, name))
			continue
		}
		if !e.IsDir() || !validName(name) {
			continue
		}
		fl, err := recoverFuncLog(name, filepath.Join(s.dir, name))
		if err != nil {
			return err
		}
		s.funcs[name] = fl
	}
	return nil
}

// lookup returns the funcLog of a function, creating an empty one (no files
// yet) when create is set; without create it may return nil.
func (s *Store) lookup(name string, create bool) (*funcLog, error) {
	s.mu.RLock()
	fl, closed := s.funcs[name], s.closed
	s.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if fl != nil || !create {
		return fl, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if fl = s.funcs[name]; fl == nil {
		fl = newFuncLog(name, filepath.Join(s.dir, name))
		s.funcs[name] = fl
	}
	return fl, nil
}

// Append adds events to the log of function. It assigns each its Seq (the
// caller's is ignored) and keeps TimeMs, RequestID and Line, truncating a
// line to 256 KiB and a request id to 1 KiB. One function's Seqs strictly
// increase from 1, across restarts too. What Append does depends only on its
// arguments and the log's previous contents, never on the clock.
//
// The lines are readable as soon as Append returns; they reach the file
// within 50 ms (no fsync but at Close). An error means the lines could not
// be written to disk; they were still assigned Seqs and are readable from
// memory until they leave the recent window.
func (s *Store) Append(function string, events ...rpc.LogEvent) error {
	if err := checkName(function); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	for {
		fl, err := s.lookup(function, true)
		if err != nil {
			return err
		}
		fl.mu.Lock()
		if fl.gone {
			fl.mu.Unlock()
			continue // deleted meanwhile, or closed: look it up again
		}
		err = fl.append(events, &s.opts)
		s.markDirty(fl)
		fl.mu.Unlock()
		return err
	}
}

// Delete drops the log of function: its files and its lines in memory. Reads
// waiting on it return with what the (new, empty) log holds when they time
// out. A later Append starts a new log, whose Seqs start again at 1.
func (s *Store) Delete(function string) error {
	if err := checkName(function); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if fl := s.funcs[function]; fl != nil {
		delete(s.funcs, function)
		fl.mu.Lock()
		fl.gone = true
		if fl.f != nil {
			fl.f.Close()
			fl.f = nil
		}
		fl.notify()
		fl.mu.Unlock()
	}
	// Rename under mu, so that no new log of the same name can write into
	// the directory while it is removed.
	tomb := filepath.Join(s.dir, fmt.Sprintf("%s%s-%d-%d", tombPrefix, function, time.Now().UnixNano(), s.tombs.Add(1)))
	err := os.Rename(filepath.Join(s.dir, function), tomb)
	s.mu.Unlock()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("logstore: delete %s: %w", function, err)
	}
	if err := os.RemoveAll(tomb); err != nil {
		return fmt.Errorf("logstore: delete %s: %w", function, err)
	}
	return nil
}

// Close stops the background loop, flushes and syncs every log and closes
// the files. Waiting Reads return ErrClosed; so does every later call.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	funcs := make([]*funcLog, 0, len(s.funcs))
	for _, fl := range s.funcs {
		funcs = append(funcs, fl)
	}
	s.mu.Unlock()
	close(s.stop)
	<-s.done

	var errs []error
	for _, fl := range funcs {
		fl.mu.Lock()
		if fl.f != nil {
			if err := fl.flush(); err != nil {
				errs = append(errs, fmt.Errorf("logstore: %s: %w", fl.name, err))
			} else if err := fl.f.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("logstore: %s: %w", fl.name, err))
			}
			if err := fl.f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("logstore: %s: %w", fl.name, err))
			}
			fl.f = nil
		}
		fl.gone = true
		fl.notify()
		fl.mu.Unlock()
	}
	return errors.Join(errs...)
}

// run is the background loop: it flushes the dirty logs every flushInterval
// and applies the age retention every expireInterval.
func (s *Store) run() {
	defer close(s.done)
	flush := time.NewTicker(flushInterval)
	defer flush.Stop()
	expire := time.NewTicker(expireInterval)
	defer expire.Stop()
	var batch []*funcLog
	for {
		select {
		case <-s.stop:
			return
		case <-flush.C:
			batch = s.flushDirty(batch[:0])
		case now := <-expire.C:
			s.expire(now)
		}
	}
}

// markDirty puts fl on the dirty list if its buffer holds bytes and it is
// not there yet. The caller holds fl.mu.
func (s *Store) markDirty(fl *funcLog) {
	if fl.dirty || fl.w == nil || fl.w.Buffered() == 0 {
		return
	}
	fl.dirty = true
	s.dirtyMu.Lock()
	s.dirty = append(s.dirty, fl)
	s.dirtyMu.Unlock()
}

// flushDirty writes the buffers of the logs appended to since the last call.
// A write error is kept in the funcLog and dealt with by its next Append.
func (s *Store) flushDirty(batch []*funcLog) []*funcLog {
	s.dirtyMu.Lock()
	batch, s.dirty = s.dirty, batch
	s.dirtyMu.Unlock()
	for i, fl := range batch {
		fl.mu.Lock()
		if !fl.gone {
			fl.flush()
		}
		fl.dirty = false
		fl.mu.Unlock()
		batch[i] = nil
	}
	return batch
}

// expire applies the age retention to every log as of now, and releases
// the resources of the logs idle for idlePasses passes.
func (s *Store) expire(now time.Time) {
	cutoff := now.Add(-s.opts.RetainAge).UnixMilli()
	s.mu.RLock()
	funcs := make([]*funcLog, 0, len(s.funcs))
	for _, fl := range s.funcs {
		funcs = append(funcs, fl)
	}
	s.mu.RUnlock()
	for _, fl := range funcs {
		fl.mu.Lock()
		if !fl.gone {
			fl.expire(cutoff)
			fl.tick()
			s.markDirty(fl) // a new segment's header may wait in the buffer
		}
		fl.mu.Unlock()
	}
}
