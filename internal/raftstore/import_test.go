package raftstore

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

func TestImportFromWAL(t *testing.T) {
	dir := t.TempDir()
	walDir := filepath.Join(dir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	meta := &metadb.BoltMetaDB{}
	wal, err := raftwal.Open(walDir, raftwal.WithMetaStore(meta))
	if err != nil {
		t.Fatal(err)
	}
	if err := wal.StoreLogs(entries(1, 600, 4)); err != nil {
		t.Fatal(err)
	}
	if err := wal.DeleteRange(1, 99); err != nil { // as after a snapshot
		t.Fatal(err)
	}
	wal.SetUint64([]byte("CurrentTerm"), 4)
	wal.SetUint64([]byte("LastVoteTerm"), 3)
	wal.Set([]byte("LastVoteCand"), []byte("s1"))
	wal.Close()
	meta.Close()

	path := filepath.Join(dir, "raft.db")
	s, imported, err := OpenOrImport(path, walDir)
	if err != nil || !imported {
		t.Fatalf("import: %v (imported %v)", err, imported)
	}
	if f, l := bounds(t, s); f != 100 || l != 600 {
		t.Fatalf("imported log: first %d last %d, want 100 600", f, l)
	}
	var got raft.Log
	if err := s.GetLog(321, &got); err != nil || string(got.Data) != "entry 321 term 4" {
		t.Fatalf("entry 321: %+v %v", got, err)
	}
	if v, _ := s.GetUint64([]byte("CurrentTerm")); v != 4 {
		t.Fatalf("CurrentTerm %d, want 4", v)
	}
	if v, _ := s.GetUint64([]byte("LastVoteTerm")); v != 3 {
		t.Fatalf("LastVoteTerm %d, want 3", v)
	}
	if v, _ := s.Get([]byte("LastVoteCand")); string(v) != "s1" {
		t.Fatalf("LastVoteCand %q, want s1", v)
	}
	s.Close()
	if _, err := os.Stat(walDir + ".imported"); err != nil {
		t.Fatalf("the old log is not kept aside: %v", err)
	}
	// The second open uses the store and imports nothing.
	s, imported, err = OpenOrImport(path, walDir)
	if err != nil || imported {
		t.Fatalf("second open: %v (imported %v)", err, imported)
	}
	s.Close()
}
