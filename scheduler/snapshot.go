package scheduler

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

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
// Records come in a fixed order: every function, then every reservation
// (each in name order), so a reservation always follows its function, then
// every event configuration (in name order), then every queued async event
// (in request id order), then versions, aliases and function URLs
// (snapshot_versions.go: every version counter, every version, every
// alias, every URL, each sorted by function and then number, name or
// qualifier), then every queue (in name order), every queue message (by
// queue name, then sequence), every FIFO deduplication entry (by queue,
// then id) and every trigger (by UUID), then every layer version (by
// name, then number) and every layer's next version number (by name),
// so that what a record refers to always precedes it.
//
// The end record makes a truncated snapshot an error rather than a smaller
// state. Restore refuses unknown record types (a snapshot from a newer
// release must not be half-read) and bytes after the end record. A record
// type added later is not a new version: a snapshot written before it
// existed simply holds none of it (a version 1 snapshot of a release without
// reservations restores as a state without reservations).
var snapshotMagic = [8]byte{'N', 'M', 'B', 'S', 'F', 'S', 'M', 0}

const snapshotVersion uint16 = 1

// snapshotRecordType tags each record of a snapshot. Values are durable and
// append-only, like CommandType.
type snapshotRecordType uint8

const (
	recordFunction    snapshotRecordType = 1 // *rpc.FunctionConfig
	recordReservation snapshotRecordType = 2 // reservationRecord
	recordAsyncEvent  snapshotRecordType = 3 // *AsyncEvent
	recordEventConfig snapshotRecordType = 4 // *rpc.EventConfig

	// Versions, aliases and function URLs (snapshot_versions.go): 9-19.
	recordVersionCounter snapshotRecordType = 9  // versionCounterRecord
	recordVersion        snapshotRecordType = 10 // *rpc.FunctionConfig with Version set
	recordAlias          snapshotRecordType = 11 // *rpc.Alias
	recordURL            snapshotRecordType = 12 // *rpc.FunctionURL
	// Queues and triggers (queue_snapshot.go): 20-39.
	recordQueue        snapshotRecordType = 20 // *rpc.Queue
	recordQueueMessage snapshotRecordType = 21 // *QueueMessage
	recordQueueDedup   snapshotRecordType = 22 // *dedupRecord
	recordTrigger      snapshotRecordType = 23 // *rpc.Trigger
	recordEnd          snapshotRecordType = 255
)

// reservationRecord is one function's reserved concurrency in a snapshot.
type reservationRecord struct {
	Name     string `msgpack:"name"`
	Reserved int    `msgpack:"reserved"`
}

// fsmSnapshot is a point-in-time capture of the state. It holds only
// immutable values, so Persist may run while Apply goes on.
type fsmSnapshot struct {
	functions    []*rpc.FunctionConfig // sorted by name
	reservations []reservationRecord   // sorted by name
	eventConfigs []*rpc.EventConfig    // sorted by function name
	events       []*AsyncEvent         // sorted by request id
	versions     versionsCapture       // snapshot_versions.go
	queues       queueCapture          // queues, messages, dedup entries, triggers
	// Layers (issue 10): versions by name then number, and next numbers.
	layerVersions []*rpc.LayerVersion
	layerNexts    []layerNextRecord
}

// Snapshot captures the state cheaply: the stored values are immutable, so
// copying the maps' pointers and numbers is a consistent capture. The encoding happens
// in Persist, off the FSM goroutine.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	fns := make([]*rpc.FunctionConfig, 0, len(f.state.functions))
	for _, fc := range f.state.functions {
		fns = append(fns, fc)
	}
	res := make([]reservationRecord, 0, len(f.state.reserved))
	for name, r := range f.state.reserved {
		res = append(res, reservationRecord{Name: name, Reserved: r})
	}
	ecs := make([]*rpc.EventConfig, 0, len(f.state.eventConfigs))
	for _, c := range f.state.eventConfigs {
		ecs = append(ecs, c)
	}
	events := make([]*AsyncEvent, 0, len(f.state.async.events))
	for _, e := range f.state.async.events {
		events = append(events, e)
	}
	vers := captureVersions(&f.state.versions)
	queues := captureQueues(f.state)
	layerVersions, layerNexts := f.state.snapshotLayers()
	f.mu.RUnlock()
	queues.sort()
	sortFunctions(fns)
	sort.Slice(res, func(i, j int) bool { return res[i].Name < res[j].Name })
	sort.Slice(ecs, func(i, j int) bool {
		return eventConfigKey(ecs[i].FunctionName, ecs[i].Qualifier) < eventConfigKey(ecs[j].FunctionName, ecs[j].Qualifier)
	})
	sort.Slice(events, func(i, j int) bool { return events[i].RequestID < events[j].RequestID })
	vers.sort()
	return &fsmSnapshot{functions: fns, reservations: res, eventConfigs: ecs, events: events, versions: vers, queues: queues,
		layerVersions: layerVersions, layerNexts: layerNexts}, nil
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
	for i := range s.reservations {
		if err := record(recordReservation, &s.reservations[i]); err != nil {
			return err
		}
	}
	for _, c := range s.eventConfigs {
		if err := record(recordEventConfig, c); err != nil {
			return err
		}
	}
	for _, e := range s.events {
		if err := record(recordAsyncEvent, e); err != nil {
			return err
		}
	}
	if err := s.versions.write(record); err != nil {
		return err
	}
	if err := s.queues.write(record); err != nil {
		return err
	}
	// Layers (issue 10).
	for _, v := range s.layerVersions {
		if err := record(recordLayerVersion, v); err != nil {
			return err
		}
	}
	for i := range s.layerNexts {
		if err := record(recordLayerNext, &s.layerNexts[i]); err != nil {
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
		case recordReservation:
			err = restoreReservation(dec, st)
		case recordAsyncEvent:
			err = restoreAsyncEvent(dec, st)
		case recordEventConfig:
			err = restoreEventConfig(dec, st)
		case recordVersionCounter:
			err = restoreVersionCounter(dec, st)
		case recordVersion:
			err = restoreVersion(dec, st)
		case recordAlias:
			err = restoreAlias(dec, st)
		case recordURL:
			err = restoreURL(dec, st)
		case recordQueue:
			err = restoreQueue(dec, st)
		case recordQueueMessage:
			err = restoreQueueMessage(dec, st)
		case recordQueueDedup:
			err = restoreQueueDedup(dec, st)
		case recordTrigger:
			err = restoreTrigger(dec, st)
		// Layers (issue 10).
		case recordLayerVersion:
			err = restoreLayerVersion(dec, st)
		case recordLayerNext:
			err = restoreLayerNext(dec, st)
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

// restoreReservation reads one reservation. Its function must have come
// before it, and it must not be negative or appear twice.
func restoreReservation(dec *msgpack.Decoder, st *fsmState) error {
	var r *reservationRecord
	if err := dec.Decode(&r); err != nil {
		return fmt.Errorf("reservation: %w", eofIsTruncation(err))
	}
	if r == nil || r.Name == "" {
		return errors.New("reservation without a function name")
	}
	if _, ok := st.functions[r.Name]; !ok {
		return fmt.Errorf("reservation of %q, which is not a function before it", r.Name)
	}
	if r.Reserved < 0 {
		return fmt.Errorf("reservation of %q is negative (%d)", r.Name, r.Reserved)
	}
	if _, dup := st.reserved[r.Name]; dup {
		return fmt.Errorf("reservation of %q appears twice", r.Name)
	}
	if r.Reserved > math.MaxInt-st.reservedTotal {
		return errors.New("reservations overflow their total")
	}
	st.reserved[r.Name] = r.Reserved
	st.reservedTotal += r.Reserved
	return nil
}

// restoreEventConfig reads one event configuration; its function must have
// come before it.
func restoreEventConfig(dec *msgpack.Decoder, st *fsmState) error {
	var c *rpc.EventConfig
	if err := dec.Decode(&c); err != nil {
		return fmt.Errorf("event config: %w", eofIsTruncation(err))
	}
	if c == nil || c.FunctionName == "" {
		return errors.New("event config without a function name")
	}
	if _, ok := st.functions[c.FunctionName]; !ok {
		return fmt.Errorf("event config of %q, which is not a function before it", c.FunctionName)
	}
	key := eventConfigKey(c.FunctionName, c.Qualifier)
	if _, dup := st.eventConfigs[key]; dup {
		return fmt.Errorf("event config of %q appears twice", key)
	}
	st.eventConfigs[key] = c
	return nil
}

// restoreAsyncEvent reads one queued event; it must pass checkEvent and
// not appear twice.
func restoreAsyncEvent(dec *msgpack.Decoder, st *fsmState) error {
	var e *AsyncEvent
	if err := dec.Decode(&e); err != nil {
		return fmt.Errorf("async event: %w", eofIsTruncation(err))
	}
	if e == nil {
		return errors.New("nil async event")
	}
	if err := checkEvent(e); err != nil {
		return err
	}
	if _, dup := st.async.events[e.RequestID]; dup {
		return fmt.Errorf("async event %q appears twice", e.RequestID)
	}
	if len(st.async.events) >= MaxAsyncEvents {
		return fmt.Errorf("more than %d async events", MaxAsyncEvents)
	}
	st.async.put(e)
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
