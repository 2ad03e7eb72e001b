// Package raftstore is Raft's durable log and stable store: one bbolt file
// per server, with the log entries keyed by index in one bucket and the
// stable values (current term, last vote) in another.
//
// Every write is one bbolt transaction, committed (and synced) before it
// returns, so an entry Raft was told is stored survives a crash. Deleting a
// suffix of the log (a follower overwriting entries an old leader left
// uncommitted) is a plain range delete, safe to reopen after; that is the
// case the previous store (raft-wal v0.4.0) got wrong.
package raftstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

var (
	logsBucket   = []byte("logs")
	stableBucket = []byte("stable")
)

// Store implements raft.LogStore and raft.StableStore over bbolt.
type Store struct {
	db *bolt.DB
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// Open opens (or creates) the store at path. It fails rather than waits
// when another process holds the file.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 2 * time.Second,
		// The free list is rebuilt from the pages at open instead of being
		// written on every commit: fewer pages per append.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("open raft store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{logsBucket, stableBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open raft store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file. The store is unusable afterwards.
func (s *Store) Close() error { return s.db.Close() }

func key(index uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], index)
	return k[:]
}

// FirstIndex returns the first index stored, 0 when the log is empty.
func (s *Store) FirstIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(logsBucket).Cursor().First(); len(k) == 8 {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// LastIndex returns the last index stored, 0 when the log is empty.
func (s *Store) LastIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(logsBucket).Cursor().Last(); len(k) == 8 {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// GetLog reads the entry at index into log, or returns raft.ErrLogNotFound.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(logsBucket).Get(key(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		// v is only valid inside the transaction: decode copies.
		if err := decodeLog(v, log); err != nil {
			return fmt.Errorf("raft log entry %d: %w", index, err)
		}
		log.Index = index
		return nil
	})
}

// StoreLog stores one entry.
func (s *Store) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores entries in one transaction: all or none are stored.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(logsBucket)
		// Entries are appended in index order: full pages split less.
		b.FillPercent = 0.95
		var buf []byte
		for _, l := range logs {
			buf = appendLog(buf[:0], l)
			// Put keeps a reference to the value until commit: give it its
			// own copy.
			if err := b.Put(key(l.Index), bytes.Clone(buf)); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRange deletes the entries min..max, inclusive, whatever part of the
// log that is (a prefix after a snapshot, a suffix on a conflict).
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(logsBucket).Cursor()
		for k, _ := c.Seek(key(min)); k != nil && binary.BigEndian.Uint64(k) <= max; k, _ = c.Next() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// Set stores a stable value.
func (s *Store) Set(k, v []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(stableBucket).Put(bytes.Clone(k), bytes.Clone(v))
	})
}

// Get returns a stable value, empty when it was never set.
func (s *Store) Get(k []byte) ([]byte, error) {
	var v []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket(stableBucket).Get(k))
		return nil
	})
	return v, err
}

// SetUint64 stores a stable number.
func (s *Store) SetUint64(k []byte, v uint64) error {
	return s.Set(k, binary.BigEndian.AppendUint64(nil, v))
}

// GetUint64 returns a stable number, 0 when it was never set.
func (s *Store) GetUint64(k []byte) (uint64, error) {
	v, err := s.Get(k)
	if err != nil || len(v) == 0 {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raft stable value %q is %d bytes, not a uint64", k, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// An entry's value: a format byte, then term, type, append time (Unix
// nanoseconds, 0 for none), data and extensions, lengths as uvarints. The
// index is the key.
const formatV1 = 1

var errCorrupt = errors.New("corrupt entry")

func appendLog(b []byte, l *raft.Log) []byte {
	b = append(b, formatV1)
	b = binary.AppendUvarint(b, l.Term)
	b = append(b, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.AppendVarint(b, at)
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	return append(b, l.Extensions...)
}

// decodeLog decodes an entry's value. It allocates at most len(v) bytes:
// every length is checked against what is left of v.
func decodeLog(v []byte, l *raft.Log) error {
	if len(v) < 1 || v[0] != formatV1 {
		return fmt.Errorf("%w: unknown format", errCorrupt)
	}
	v = v[1:]
	term, n := binary.Uvarint(v)
	if n <= 0 {
		return fmt.Errorf("%w: term", errCorrupt)
	}
	v = v[n:]
	if len(v) < 1 {
		return fmt.Errorf("%w: type", errCorrupt)
	}
	typ := raft.LogType(v[0])
	v = v[1:]
	at, n := binary.Varint(v)
	if n <= 0 {
		return fmt.Errorf("%w: time", errCorrupt)
	}
	v = v[n:]
	data, v, err := decodeBytes(v)
	if err != nil {
		return fmt.Errorf("%w: data", err)
	}
	ext, v, err := decodeBytes(v)
	if err != nil {
		return fmt.Errorf("%w: extensions", err)
	}
	if len(v) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(v))
	}
	*l = raft.Log{Term: term, Type: typ, Data: data, Extensions: ext}
	if at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	return nil
}

func decodeBytes(v []byte) (out, rest []byte, err error) {
	size, n := binary.Uvarint(v)
	if n <= 0 || size > uint64(len(v)-n) {
		return nil, nil, errCorrupt
	}
	v = v[n:]
	if size == 0 {
		return nil, v, nil
	}
	return bytes.Clone(v[:size]), v[size:], nil
}
