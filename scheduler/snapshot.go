package scheduler

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// Snapshot format (version 1):
//
//	header:  8 bytes magic "NMBSFSM\x00", 2 bytes version (big endian)
//	records: msgpack uint8 record type, then the record's msgpack value
//	end:     recordEnd, then a msgpack uint64: the number of records before it
//
// The end record makes a truncated snapshot an error rather than a smaller
// state. Restore refuses unknown record types (a snapshot from a newer
// release must not be half-read) and bytes after the end record.
var snapshotMagic = [8]byte{'N', 'M', 'B', 'S', 'F', 'S', 'M', 0}

const snapshotVersion uint16 = 1

// snapshotRecordType tags each record of a snapshot. Values are durable and
// append-only, like CommandType.
type snapshotRecordType uint8

const (
	recordFunction snapshotRecordType = 1 // *rpc.FunctionConfig
	recordEnd      snapshotRecordType = 255
)

// fsmSnapshot is a point-in-time capture of the state. It holds only
// immutable values, so Persist may run while Apply goes on.
type fsmSnapshot struct {
	functions []*rpc.FunctionConfig // sorted by name
}

// Snapshot captures the state cheaply: the stored values are immutable, so
// copying the map's pointers is a consistent capture. The encoding happens
// in Persist, off the FSM goroutine.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	fns := make([]*rpc.FunctionConfig, 0, len(f.state.functions))
	for _, fc := range f.state.functions {
		fns = append(fns, fc)
	}
	f.mu.RUnlock()
	sortFunctions(fns)
	return &fsmSnapshot{functions: fns}, nil
}

// Persist writes the snapshot to sink and closes it, or cancels it on error.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("scheduler: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release does nothing: the capture holds no resources.
func (s *fsmSnapshot) Release() {}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	var header [len(snapshotMagic) + 2]byte
	copy(header[:], snapshotMagic[:])
	binary.BigEndian.PutUint16(header[len(snapshotMagic):], snapshotVersion)
	if _, err := bw.Write(header[:]); err != nil {
		return err
	}
	enc := msgpack.NewEncoder(bw)
	enc.SetSortMapKeys(true) // the same state always persists to the same bytes
	var n uint64
	record := func(t snapshotRecordType, v any) error {
		n++
		if err := enc.EncodeUint8(uint8(t)); err != nil {
			return err
		}
		return enc.Encode(v)
	}
	for _, fc := range s.functions {
		if err := record(recordFunction, fc); err != nil {
			return err
		}
	}
	if err := enc.EncodeUint8(uint8(recordEnd)); err != nil {
		return err
	}
	if err := enc.EncodeUint64(n); err != nil {
		return err
	}
	return bw.Flush()
}

// Restore replaces the state with the one in rc. It builds a fresh state and
// swaps it in under the lock only once the whole snapshot has been read and
// checked; on any error the current state is left as it was. It closes rc.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	next, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("scheduler: restore snapshot: %w", err)
	}
	f.replace(next)
	return nil
}

var errTruncated = errors.New("truncated snapshot")

func readSnapshot(r io.Reader) (*fsmState, error) {
	br := bufio.NewReader(r)
	var header [len(snapshotMagic) + 2]byte
	if _, err := io.ReadFull(br, header[:]); err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	if !bytes.Equal(header[:len(snapshotMagic)], snapshotMagic[:]) {
		return nil, errors.New("not a nimbus snapshot (bad magic)")
	}
	if v := binary.BigEndian.Uint16(header[len(snapshotMagic):]); v != snapshotVersion {
		return nil, fmt.Errorf("unsupported snapshot version %d (this release reads %d)", v, snapshotVersion)
	}

	// br is an io.ByteScanner, so the decoder reads from it directly and
	// buffers nothing of its own: what is left in br after the end record is
	// exactly what follows it.
	dec := msgpack.NewDecoder(br)
	st := newFSMState()
	var n uint64
	for ; ; n++ {
		t, err := dec.DecodeUint8()
		if err != nil {
			return nil, fmt.Errorf("record %d: type: %w", n, eofIsTruncation(err))
		}
		switch snapshotRecordType(t) {
		case recordFunction:
			err = restoreFunction(dec, st)
		case recordEnd:
			return st, finishSnapshot(dec, br, n)
		default:
			err = fmt.Errorf("unknown record type %d", t)
		}
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", n, err)
		}
	}
}

func restoreFunction(dec *msgpack.Decoder, st *fsmState) error {
	var fc *rpc.FunctionConfig
	if err := dec.Decode(&fc); err != nil {
		return fmt.Errorf("function: %w", eofIsTruncation(err))
	}
	if fc == nil || fc.Name == "" {
		return errors.New("function without a name")
	}
	if _, dup := st.functions[fc.Name]; dup {
		return fmt.Errorf("function %q appears twice", fc.Name)
	}
	if len(fc.Env) == 0 {
		fc.Env = nil
	}
	st.functions[fc.Name] = fc
	return nil
}

// finishSnapshot checks the end record's count and that nothing follows it.
func finishSnapshot(dec *msgpack.Decoder, br *bufio.Reader, n uint64) error {
	count, err := dec.DecodeUint64()
	if err != nil {
		return fmt.Errorf("end record: %w", eofIsTruncation(err))
	}
	if count != n {
		return fmt.Errorf("end record counts %d records, read %d", count, n)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err != nil {
			return fmt.Errorf("after end record: %w", err)
		}
		return errors.New("data after end record")
	}
	return nil
}

func eofIsTruncation(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errTruncated
	}
	return err
}
