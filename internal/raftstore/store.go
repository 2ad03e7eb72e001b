// Package raftstore opens Raft's durable log and stable store: raft-wal,
// after repairing what raft-wal v0.4.0 leaves broken when Raft deletes the
// log's tail.
//
// The bug: when a follower overwrites entries an old leader left
// uncommitted, Raft deletes the log's tail, and raft-wal v0.4.0 marks the
// segment that then ends the log sealed, with its new last index, but
// without writing the index block a sealed segment must have. The running
// server reads it from memory; after a restart raft-wal cannot open it
// ("sealed segment has no index block") and Raft panics at start. The
// release that fixes it is not served here, so Open repairs such segments
// before raft-wal opens them, with raft-wal's own segment API: it reads
// the entries up to the segment's last index from the file, writes them
// to a new segment file that the segment writer seals properly (its size
// limit set so that the one append seals it), checks that the new file
// reads back the same, and commits the new segment in raft-wal's metadata
// in place of the old one, whose file raft-wal then deletes as unused. A
// crash at any point leaves either the old state (repaired again at the
// next start) or the new one.
package raftstore

import (
	"bytes"
	"fmt"
	"os"
	"time"

	raftwal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// Open opens the log in dir, repairing it first. close closes the log and
// then its metadata store (raft-wal's Close leaves the latter, which holds
// a file lock, open; a server restarted in the same process would wait
// for that lock for ever). repaired counts the segments repaired.
func Open(dir string) (wal *raftwal.WAL, close func() error, repaired int, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, 0, err
	}
	if repaired, err = repair(dir); err != nil {
		return nil, nil, 0, fmt.Errorf("repair the raft log in %s: %w", dir, err)
	}
	meta := &metadb.BoltMetaDB{}
	wal, err = raftwal.Open(dir, raftwal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, nil, 0, err
	}
	close = func() error {
		err := wal.Close()
		if merr := meta.Close(); err == nil {
			err = merr
		}
		return err
	}
	return wal, close, repaired, nil
}

// broken reports whether raft-wal will refuse to open si: sealed, with no
// index block.
func broken(si types.SegmentInfo) bool {
	return !si.SealTime.IsZero() && si.IndexStart == 0
}

func repair(dir string) (int, error) {
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	st, err := meta.Load(dir)
	if err != nil {
		return 0, err
	}
	filer := segment.NewFiler(dir, walfs.New())
	n := 0
	for i, si := range st.Segments {
		if !broken(si) {
			continue
		}
		fixed, err := rewrite(filer, si, st.NextSegmentID)
		if err != nil {
			return 0, fmt.Errorf("segment %d (base index %d): %w", si.ID, si.BaseIndex, err)
		}
		st.NextSegmentID++
		st.Segments[i] = fixed
		n++
	}
	if n == 0 {
		return 0, nil
	}
	return n, meta.CommitState(st)
}

// rewrite copies the entries BaseIndex..MaxIndex of the broken segment si
// into a new, properly sealed segment file with the given id and returns
// the new segment's metadata.
func rewrite(filer *segment.Filer, si types.SegmentInfo, id uint64) (types.SegmentInfo, error) {
	if si.MaxIndex < si.BaseIndex {
		return si, fmt.Errorf("last index %d is before the base index", si.MaxIndex)
	}
	var entries []types.LogEntry
	next := si.BaseIndex
	err := filer.DumpSegment(si.BaseIndex, si.ID, 0, si.MaxIndex+1, func(_ types.SegmentInfo, e types.LogEntry) (bool, error) {
		if e.Index != next {
			return false, fmt.Errorf("entry %d where %d was expected", e.Index, next)
		}
		next++
		// e.Data is only valid during the call.
		entries = append(entries, types.LogEntry{Index: e.Index, Data: bytes.Clone(e.Data)})
		return true, nil
	})
	if err != nil {
		return si, err
	}
	if next != si.MaxIndex+1 {
		return si, fmt.Errorf("the file holds entries up to %d, the log up to %d", next-1, si.MaxIndex)
	}

	fixed := si
	fixed.ID = id
	fixed.IndexStart = 0
	fixed.CreateTime = time.Now()
	// A limit the first append exceeds: the writer writes the index block
	// and seals the segment in that append.
	fixed.SizeLimit = 1
	w, err := filer.Create(fixed)
	if err != nil {
		return si, err
	}
	err = w.Append(entries)
	sealed, indexStart, serr := w.Sealed()
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = serr
	}
	if err == nil && !sealed {
		err = fmt.Errorf("the rewritten segment did not seal")
	}
	if err != nil {
		filer.Delete(fixed.BaseIndex, fixed.ID)
		return si, err
	}
	fixed.IndexStart = indexStart
	fixed.SealTime = si.SealTime
	fixed.SizeLimit = si.SizeLimit

	// The new file must read back what the old one held.
	r, err := filer.Open(fixed)
	if err != nil {
		filer.Delete(fixed.BaseIndex, fixed.ID)
		return si, fmt.Errorf("open the rewritten segment: %w", err)
	}
	defer r.Close()
	for _, e := range entries {
		if e.Index < si.MinIndex {
			continue
		}
		buf, err := r.GetLog(e.Index)
		if err != nil {
			filer.Delete(fixed.BaseIndex, fixed.ID)
			return si, fmt.Errorf("read back entry %d: %w", e.Index, err)
		}
		same := bytes.Equal(buf.Bs, e.Data)
		buf.Close()
		if !same {
			filer.Delete(fixed.BaseIndex, fixed.ID)
			return si, fmt.Errorf("entry %d reads back different", e.Index)
		}
	}
	return fixed, nil
}
