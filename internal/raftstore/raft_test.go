package raftstore

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
)

// countFSM counts the commands it applied, in order.
type countFSM struct {
	mu      sync.Mutex
	applied []string
}

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, string(l.Data))
	return nil
}
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, fmt.Errorf("no snapshots here") }
func (f *countFSM) Restore(io.ReadCloser) error         { return fmt.Errorf("no snapshots here") }

// tailWatch counts deletions that remove the end of the log.
type tailWatch struct {
	*raftwal.WAL
	close func() error
	mu    sync.Mutex
	tails int
}

func (w *tailWatch) DeleteRange(min, max uint64) error {
	last, _ := w.WAL.LastIndex()
	if min > 1 && max >= last && min <= last {
		w.mu.Lock()
		w.tails++
		w.mu.Unlock()
	}
	return w.WAL.DeleteRange(min, max)
}

type member struct {
	id       raft.ServerID
	path     string
	store    *tailWatch
	repaired int
	trans    *raft.InmemTransport
	fsm      *countFSM
	raft     *raft.Raft
}

func (m *member) start(t *testing.T) {
	t.Helper()
	wal, closeWAL, repaired, err := Open(m.path)
	if err != nil {
		t.Fatalf("%s: open the log: %v", m.id, err)
	}
	m.repaired += repaired
	m.store = &tailWatch{WAL: wal, close: closeWAL}
	m.fsm = &countFSM{}
	conf := raft.DefaultConfig()
	conf.LocalID = m.id
	conf.HeartbeatTimeout = 250 * time.Millisecond
	conf.ElectionTimeout = 250 * time.Millisecond
	conf.LeaderLeaseTimeout = 125 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard})
	r, err := raft.NewRaft(conf, m.fsm, m.store, m.store, raft.NewInmemSnapshotStore(), m.trans)
	if err != nil {
		t.Fatalf("%s: start raft over the reopened store: %v", m.id, err)
	}
	m.raft = r
}

func (m *member) stop(t *testing.T) {
	t.Helper()
	if err := m.raft.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	if err := m.store.close(); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// applyAll commits cmds in order through whichever of among leads,
// proposing a command again when leadership was lost under it (a loaded
// machine): it may then be applied twice in a row.
func applyAll(t *testing.T, among []*member, cmds []string) {
	t.Helper()
	for _, c := range cmds {
		for {
			var lead *member
			waitFor(t, "a leader", func() bool { lead = leaderOf(among); return lead != nil })
			err := lead.raft.Apply([]byte(c), 5*time.Second).Error()
			if err == nil {
				break
			}
			if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) && !errors.Is(err, raft.ErrEnqueueTimeout) {
				t.Fatalf("apply %q: %v", c, err)
			}
		}
	}
}

func leaderOf(ms []*member) *member {
	for _, m := range ms {
		if m.raft.State() == raft.Leader {
			return m
		}
	}
	return nil
}

// TestConflictTruncationSurvivesRestart is the case raft-wal v0.4.0 lost:
// a leader cut off from its followers appends entries that never commit; a
// new leader overwrites them; the old leader, back as a follower, deletes
// its log's tail. Every server then restarts over its store, and the
// cluster must come back with the committed entries and nothing else.
// Without Open's repair this panics in raft.NewRaft ("sealed segment has
// no index block").
func TestConflictTruncationSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	var ms []*member
	for i := range 3 {
		id := raft.ServerID(fmt.Sprintf("s%d", i))
		_, trans := raft.NewInmemTransport(raft.ServerAddress(id))
		ms = append(ms, &member{id: id, path: filepath.Join(dir, string(id)), trans: trans})
	}
	connectAll := func() {
		for _, a := range ms {
			for _, b := range ms {
				if a != b {
					a.trans.Connect(b.trans.LocalAddr(), b.trans)
				}
			}
		}
	}
	connectAll()
	var cfg raft.Configuration
	for _, m := range ms {
		cfg.Servers = append(cfg.Servers, raft.Server{ID: m.id, Address: m.trans.LocalAddr()})
	}
	for _, m := range ms {
		m.start(t)
	}
	if err := ms[0].raft.BootstrapCluster(cfg).Error(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("committed %d", i))
	}
	applyAll(t, ms, want)
	waitFor(t, "a leader", func() bool { return leaderOf(ms) != nil })
	old := leaderOf(ms)

	// Cut the leader off and let it append entries no one else sees.
	old.trans.DisconnectAll()
	for _, m := range ms {
		if m != old {
			m.trans.Disconnect(old.trans.LocalAddr())
		}
	}
	for i := range 10 {
		old.raft.Apply(fmt.Appendf(nil, "lost %d", i), 0) // never commits
	}
	var rest []*member
	for _, m := range ms {
		if m != old {
			rest = append(rest, m)
		}
	}
	var after []string
	for i := range 20 {
		after = append(after, fmt.Sprintf("after %d", i))
	}
	applyAll(t, rest, after)
	want = append(want, after...)
	lead := leaderOf(rest)

	// Reconnect: the old leader steps down and overwrites its tail.
	connectAll()
	waitFor(t, "the old leader to delete its log's tail", func() bool {
		old.store.mu.Lock()
		defer old.store.mu.Unlock()
		return old.store.tails > 0
	})
	last := lead.raft.LastIndex()
	waitFor(t, "the old leader to catch up", func() bool { return old.raft.AppliedIndex() >= last })

	restart := func() {
		for _, m := range ms {
			m.stop(t)
		}
		for _, m := range ms {
			// Shutdown closed the transports: new ones, same addresses.
			_, m.trans = raft.NewInmemTransport(raft.ServerAddress(m.id))
		}
		connectAll()
		for _, m := range ms {
			m.start(t)
		}
	}
	restart()
	defer func() {
		for _, m := range ms {
			m.stop(t)
		}
	}()
	if old.repaired == 0 {
		t.Fatalf("%s deleted its log's tail but its restart repaired no segment", old.id)
	}
	applyAll(t, ms, []string{"after restart"})
	want = append(want, "after restart")
	// Every server applied the same commands, in the same order: each one
	// proposed (one retried after a lost leadership may be there twice,
	// next to itself), in the order proposed, and none of the lost ones.
	var first []string
	for _, m := range ms {
		var got []string
		waitFor(t, string(m.id)+" to apply everything", func() bool {
			m.fsm.mu.Lock()
			defer m.fsm.mu.Unlock()
			got = slices.Compact(slices.Clone(m.fsm.applied))
			return len(got) >= len(want)
		})
		if !slices.Equal(got, want) {
			t.Fatalf("%s applied %q, want %q", m.id, got, want)
		}
		m.fsm.mu.Lock()
		if first == nil {
			first = slices.Clone(m.fsm.applied)
		} else if !slices.Equal(m.fsm.applied, first) {
			t.Errorf("%s applied %q, %s %q", m.id, m.fsm.applied, ms[0].id, first)
		}
		m.fsm.mu.Unlock()
	}

	// Repaired once: the next restart finds nothing to repair.
	before := old.repaired
	restart()
	if old.repaired != before {
		t.Fatalf("%s: a second restart repaired %d more segments", old.id, old.repaired-before)
	}
	waitFor(t, "a leader after the second restart", func() bool { return leaderOf(ms) != nil })
}
