package raftstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// stableKeys are the stable values hashicorp/raft keeps.
var stableKeys = []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand"}

// OpenOrImport opens the store at path. When there is none yet but walDir
// holds a log written by an earlier release (raft-wal), that log and its
// stable values are copied into a new store first, which is then renamed
// into place, and walDir is renamed to walDir+".imported". A log raft-wal
// cannot read back (the tail-truncation bug) is an error that says so.
func OpenOrImport(path, walDir string) (s *Store, imported bool, err error) {
	if _, err := os.Stat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		s, err := Open(path)
		return s, false, err
	}
	if _, err := os.Stat(walDir); errors.Is(err, fs.ErrNotExist) {
		s, err := Open(path)
		return s, false, err
	}
	tmp := path + ".import"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	dst, err := Open(tmp)
	if err != nil {
		return nil, false, err
	}
	if err := importWAL(walDir, dst); err != nil {
		dst.Close()
		os.Remove(tmp)
		return nil, false, fmt.Errorf("import the raft log in %s: %w (a server whose log cannot be read must be removed from the cluster and rejoin with an empty raft folder)", walDir, err)
	}
	if err := dst.Close(); err != nil {
		return nil, false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, false, err
	}
	if err := os.Rename(walDir, walDir+".imported"); err != nil {
		return nil, false, err
	}
	s, err = Open(path)
	return s, true, err
}

func importWAL(walDir string, dst *Store) error {
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	wal, err := raftwal.Open(walDir, raftwal.WithMetaStore(meta))
	if err != nil {
		return err
	}
	defer wal.Close()
	first, err := wal.FirstIndex()
	if err != nil {
		return err
	}
	last, err := wal.LastIndex()
	if err != nil {
		return err
	}
	const batch = 256
	logs := make([]*raft.Log, 0, batch)
	for i := first; i != 0 && i <= last; i++ {
		l := new(raft.Log)
		if err := wal.GetLog(i, l); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		logs = append(logs, l)
		if len(logs) == batch || i == last {
			if err := dst.StoreLogs(logs); err != nil {
				return err
			}
			logs = logs[:0]
		}
	}
	for _, k := range stableKeys {
		v, err := wal.Get([]byte(k))
		if err != nil {
			return err
		}
		if len(v) == 0 {
			continue
		}
		if k != "LastVoteCand" {
			// raft-wal keeps numbers little-endian; this store big-endian.
			n, err := wal.GetUint64([]byte(k))
			if err != nil {
				return err
			}
			err = dst.SetUint64([]byte(k), n)
		} else {
			err = dst.Set([]byte(k), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
