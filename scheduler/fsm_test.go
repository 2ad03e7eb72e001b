package scheduler

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// change is one OnFunctionChange call, as a recorder saw it.
type change struct {
	Old, New string // "name@revision", "" for nil
}

func describe(fc *rpc.FunctionConfig) string {
	if fc == nil {
		return ""
	}
	return fmt.Sprintf("%s@%d", fc.Name, fc.Revision)
}

// recorder collects OnFunctionChange calls.
type recorder struct {
	mu      sync.Mutex
	changes []change
}

func (r *recorder) record(old, new *rpc.FunctionConfig) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, change{describe(old), describe(new)})
}

func (r *recorder) take() []change {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.changes
	r.changes = nil
	return c
}

func newRecordedFSM() (*FSM, *recorder) {
	r := &recorder{}
	return NewFSM(FSMOptions{OnFunctionChange: r.record}), r
}

func wantCode(t *testing.T, res ApplyResult, sentinel *rpc.Error) {
	t.Helper()
	if !errors.Is(res.Err, sentinel) {
		t.Fatalf("Apply err = %v, want %s", res.Err, sentinel.Code)
	}
	if res.Function != nil {
		t.Fatalf("failed Apply returned a function: %+v", res.Function)
	}
}

func TestFunctionLifecycle(t *testing.T) {
	t.Parallel()
	f, rec := newRecordedFSM()

	// Create: stored as a copy, Revision = log index.
	in := fullFunction("hello")
	res := apply(t, f, 10, CmdPutFunction, PutFunctionCommand{Function: in, Mode: PutCreate})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if res.Function.Revision != 10 {
		t.Fatalf("revision = %d, want the log index 10", res.Function.Revision)
	}
	want := fullFunction("hello")
	want.Revision = 10
	if !reflect.DeepEqual(res.Function, want) {
		t.Fatalf("stored %+v, want %+v", res.Function, want)
	}
	got, ok := f.Function("hello")
	if !ok || got != res.Function {
		t.Fatalf("Function(hello) = %v, %v; want the stored value", got, ok)
	}
	in.Env["GREETING"] = "changed by the caller"
	if got.Env["GREETING"] != "hello" {
		t.Fatal("the FSM stored the caller's map instead of a copy")
	}

	// Create again: conflict, nothing changes.
	res = apply(t, f, 11, CmdPutFunction, PutFunctionCommand{Function: fullFunction("hello"), Mode: PutCreate})
	wantCode(t, res, rpc.ErrResourceConflict)
	if res.Err.Error() != "ResourceConflictException: Function already exist: hello" {
		t.Fatalf("message = %q", res.Err.Error())
	}

	// Update a missing function: not found.
	res = apply(t, f, 12, CmdPutFunction, PutFunctionCommand{Function: fullFunction("nope"), Mode: PutUpdate})
	wantCode(t, res, rpc.ErrResourceNotFound)

	// Update: new revision, the old value is untouched.
	upd := got.Clone()
	upd.MemoryMB = 1024
	res = apply(t, f, 13, CmdPutFunction, PutFunctionCommand{Function: upd, Mode: PutUpdate, IfRevision: 10})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if res.Function.Revision != 13 || res.Function.MemoryMB != 1024 {
		t.Fatalf("updated = %+v", res.Function)
	}
	if got.Revision != 10 || got.MemoryMB != 256 {
		t.Fatalf("the old value was changed in place: %+v", got)
	}

	// Update with a stale revision: conflict.
	res = apply(t, f, 14, CmdPutFunction, PutFunctionCommand{Function: upd, Mode: PutUpdate, IfRevision: 10})
	wantCode(t, res, rpc.ErrResourceConflict)

	// A second function, then the list in name order.
	if res := apply(t, f, 15, CmdPutFunction, PutFunctionCommand{Function: fullFunction("abc"), Mode: PutCreate}); res.Err != nil {
		t.Fatal(res.Err)
	}
	var names []string
	for _, fc := range f.Functions() {
		names = append(names, describe(fc))
	}
	if !reflect.DeepEqual(names, []string{"abc@15", "hello@13"}) {
		t.Fatalf("Functions() = %v", names)
	}

	// Delete: returns the removed value; then not found.
	res = apply(t, f, 16, CmdDeleteFunction, DeleteFunctionCommand{Name: "hello"})
	if res.Err != nil || describe(res.Function) != "hello@13" {
		t.Fatalf("delete = %+v", res)
	}
	if _, ok := f.Function("hello"); ok {
		t.Fatal("deleted function still there")
	}
	res = apply(t, f, 17, CmdDeleteFunction, DeleteFunctionCommand{Name: "hello"})
	wantCode(t, res, rpc.ErrResourceNotFound)
	if res.Err.Error() != "ResourceNotFoundException: Function not found: hello" {
		t.Fatalf("message = %q", res.Err.Error())
	}

	// Only the changes that happened were reported, in apply order.
	wantChanges := []change{
		{"", "hello@10"},
		{"hello@10", "hello@13"},
		{"", "abc@15"},
		{"hello@13", ""},
	}
	if got := rec.take(); !reflect.DeepEqual(got, wantChanges) {
		t.Fatalf("OnFunctionChange calls:\n got %v\nwant %v", got, wantChanges)
	}
}

func TestEmptyEnvIsStoredAsNil(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	fc := fullFunction("f")
	fc.Env = map[string]string{}
	res := apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fc, Mode: PutCreate})
	if res.Err != nil || res.Function.Env != nil {
		t.Fatalf("stored env = %#v, err %v", res.Function.Env, res.Err)
	}
}

// TestOnFunctionChangeOutsideLock reads the FSM from the callback: it would
// deadlock if the callback ran under the lock.
func TestOnFunctionChangeOutsideLock(t *testing.T) {
	t.Parallel()
	var f *FSM
	var seen []string
	f = NewFSM(FSMOptions{OnFunctionChange: func(old, new *rpc.FunctionConfig) {
		seen = append(seen, fmt.Sprint(len(f.Functions())))
		if new != nil {
			if got, ok := f.Function(new.Name); !ok || got != new {
				t.Errorf("callback sees %v, want the new value applied", got)
			}
		}
	}})
	apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("a"), Mode: PutCreate})
	apply(t, f, 2, CmdDeleteFunction, DeleteFunctionCommand{Name: "a"})
	if !reflect.DeepEqual(seen, []string{"1", "0"}) {
		t.Fatalf("seen = %v", seen)
	}
}

// TestGarbledEntries: every malformed entry is an error result and changes
// nothing.
func TestGarbledEntries(t *testing.T) {
	t.Parallel()
	raw := func(ct CommandType, v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte{byte(ct)}, b...)
	}
	noName := fullFunction("")
	tests := []struct {
		name string
		data []byte
		code *rpc.Error
	}{
		{"empty", nil, rpc.ErrService},
		{"type only", []byte{byte(CmdPutFunction)}, rpc.ErrService},
		{"not msgpack", append([]byte{byte(CmdPutFunction)}, 0xc1), rpc.ErrService},
		{"wrong shape", raw(CmdPutFunction, []int{1, 2, 3}), rpc.ErrService},
		{"string for struct", raw(CmdDeleteFunction, "keep"), rpc.ErrService},
		{"trailing bytes", append(raw(CmdDeleteFunction, DeleteFunctionCommand{Name: "keep"}), 0x00), rpc.ErrService},
		{"put nil body", raw(CmdPutFunction, nil), rpc.ErrService},
		{"put without function", raw(CmdPutFunction, PutFunctionCommand{Mode: PutCreate}), rpc.ErrService},
		{"put without name", raw(CmdPutFunction, PutFunctionCommand{Function: noName, Mode: PutCreate}), rpc.ErrService},
		{"put mode 0", raw(CmdPutFunction, PutFunctionCommand{Function: fullFunction("new")}), rpc.ErrService},
		{"put mode 9", raw(CmdPutFunction, PutFunctionCommand{Function: fullFunction("keep"), Mode: 9}), rpc.ErrService},
		{"delete nil body", raw(CmdDeleteFunction, nil), rpc.ErrResourceNotFound},
		{"put concurrency negative", raw(CmdPutConcurrency, PutConcurrencyCommand{Name: "keep", Reserved: -5}), rpc.ErrService},
		{"put concurrency unknown", raw(CmdPutConcurrency, PutConcurrencyCommand{Name: "nope", Reserved: 5}), rpc.ErrResourceNotFound},
		{"delete concurrency unknown", raw(CmdDeleteConcurrency, DeleteConcurrencyCommand{Name: "nope"}), rpc.ErrResourceNotFound},
		{"put concurrency not msgpack", []byte{byte(CmdPutConcurrency), 0xc1}, rpc.ErrService},
		{"truncated put", mustEncode(t, CmdPutFunction, PutFunctionCommand{Function: fullFunction("x"), Mode: PutCreate})[:20], rpc.ErrService},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, rec := newRecordedFSM()
			apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("keep"), Mode: PutCreate})
			apply(t, f, 2, CmdPutConcurrency, PutConcurrencyCommand{Name: "keep", Reserved: 3})
			rec.take()
			before, beforeRes := f.Functions(), reservations(f)

			res := applyRaw(t, f, 3, tt.data)
			wantCode(t, res, tt.code)
			if after := f.Functions(); !reflect.DeepEqual(after, before) {
				t.Fatalf("state changed: %v -> %v", before, after)
			}
			if after := reservations(f); !reflect.DeepEqual(after, beforeRes) {
				t.Fatalf("reservations changed: %v -> %v", beforeRes, after)
			}
			if c := rec.take(); len(c) != 0 {
				t.Fatalf("OnFunctionChange called: %v", c)
			}
		})
	}
}

// TestConcurrentReaders runs readers against Apply and Snapshot under -race.
func TestConcurrentReaders(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				for _, fc := range f.Functions() {
					_ = fc.Env["GREETING"] // values are immutable: reading is safe
				}
				f.Function("f0")
			}
		}()
	}
	for i := uint64(1); i <= 200; i++ {
		name := fmt.Sprintf("f%d", i%5)
		if _, ok := f.Function(name); ok {
			apply(t, f, i, CmdDeleteFunction, DeleteFunctionCommand{Name: name})
		} else {
			apply(t, f, i, CmdPutFunction, PutFunctionCommand{Function: fullFunction(name), Mode: PutCreate})
		}
		if i%50 == 0 {
			if _, err := f.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	wg.Wait()
}

// FuzzApply: a garbled entry never panics; an entry that fails changes
// nothing; one that succeeds leaves a consistent registry.
func FuzzApply(f *testing.F) {
	put := PutFunctionCommand{Function: fullFunction("seed"), Mode: PutCreate}
	f.Add(mustEncode(f, CmdPutFunction, put))
	put.Mode = PutUpdate
	f.Add(mustEncode(f, CmdPutFunction, put))
	f.Add(mustEncode(f, CmdPutFunction, PutFunctionCommand{Function: fullFunction("existing"), Mode: PutUpdate, IfRevision: 1}))
	f.Add(mustEncode(f, CmdDeleteFunction, DeleteFunctionCommand{Name: "existing"}))
	f.Add([]byte{})
	f.Add([]byte{byte(CmdPutFunction), 0xc0})
	f.Add([]byte{byte(CmdDeleteFunction), 0x81, 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'x'})
	f.Add([]byte{7, 1, 2, 3})
	f.Add(mustEncode(f, CmdPutConcurrency, PutConcurrencyCommand{Name: "existing", Reserved: 10}))
	f.Add(mustEncode(f, CmdPutConcurrency, PutConcurrencyCommand{Name: "existing", Reserved: 900, MaxTotal: 900}))
	f.Add(mustEncode(f, CmdPutConcurrency, PutConcurrencyCommand{Name: "existing", Reserved: -1}))
	f.Add(mustEncode(f, CmdPutConcurrency, PutConcurrencyCommand{Name: "seed", Reserved: 1}))
	f.Add(mustEncode(f, CmdDeleteConcurrency, DeleteConcurrencyCommand{Name: "existing"}))
	f.Add(mustEncode(f, CmdDeleteConcurrency, DeleteConcurrencyCommand{Name: "seed"}))
	f.Add([]byte{byte(CmdPutConcurrency), 0x81, 0xa8, 'r', 'e', 's', 'e', 'r', 'v', 'e', 'd', 0xff})
	// Layers (issue 10).
	f.Add(mustEncode(f, CmdPublishLayer, publishCmd("seed", "aa")))
	f.Add(mustEncode(f, CmdDeleteLayerVersion, DeleteLayerVersionCommand{Name: "seed", Version: 1}))

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 0 && CommandVersion(CommandType(data[0])) == 0 {
			// Unknown types stop the apply loop or are ignored:
			// TestUnknownCommands covers them.
			return
		}
		fsm, rec := newRecordedFSM()
		apply(t, fsm, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("existing"), Mode: PutCreate})
		apply(t, fsm, 2, CmdPutFunction, PutFunctionCommand{Function: fullFunction("reserved"), Mode: PutCreate})
		apply(t, fsm, 3, CmdPutConcurrency, PutConcurrencyCommand{Name: "reserved", Reserved: 5})
		rec.take()
		before, beforeRes := fsm.Functions(), reservations(fsm)

		res := applyRaw(t, fsm, 4, data)
		after := fsm.Functions()
		changes := rec.take()
		checkReservations(t, fsm)
		if res.Err != nil {
			if !reflect.DeepEqual(after, before) || !reflect.DeepEqual(reservations(fsm), beforeRes) || len(changes) != 0 {
				t.Fatalf("failed apply (%v) changed the state", res.Err)
			}
			return
		}
		switch CommandType(data[0]) {
		case CmdPutFunction, CmdDeleteFunction:
			if len(changes) != 1 {
				t.Fatalf("successful apply reported %d changes", len(changes))
			}
		default:
			if len(changes) != 0 || !reflect.DeepEqual(after, before) {
				t.Fatalf("a concurrency command changed functions (%d changes)", len(changes))
			}
		}
		for _, fc := range after {
			if fc.Name == "" {
				t.Fatal("stored a function without a name")
			}
			if got, _ := fsm.Function(fc.Name); got != fc {
				t.Fatal("Function and Functions disagree")
			}
		}
		if res.Function != nil && data[0] == byte(CmdPutFunction) && res.Function.Revision != 4 {
			t.Fatalf("revision = %d, want the index 4", res.Function.Revision)
		}
	})
}

// TestUnknownCommands: an unknown command stops the apply loop (Apply
// panics) unless it has the ignorable bit, and then changes nothing.
func TestUnknownCommands(t *testing.T) {
	t.Parallel()
	for _, ct := range []CommandType{0, 77, 127} {
		f, _ := newRecordedFSM()
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "unknown command type") {
					t.Errorf("type %d: recovered %v, want a panic naming the unknown command", ct, r)
				}
			}()
			f.Apply(&raft.Log{Index: 3, Data: []byte{byte(ct), 0x80}})
		}()
	}
	for _, ct := range []CommandType{CmdIgnorable, CmdIgnorable | 1, 255} {
		f, rec := newRecordedFSM()
		apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("keep"), Mode: PutCreate})
		rec.take()
		before := f.Functions()
		res := applyRaw(t, f, 2, []byte{byte(ct), 0x81, 0xa4, 'n', 'a', 'm', 'e', 0xa4, 'k', 'e', 'e', 'p'})
		if res.Err != nil || !res.Ignored {
			t.Errorf("ignorable type %d: %+v", ct, res)
		}
		if !reflect.DeepEqual(f.Functions(), before) || len(rec.take()) != 0 {
			t.Errorf("ignorable type %d changed the state", ct)
		}
	}
}
