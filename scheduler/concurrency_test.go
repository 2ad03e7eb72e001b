package scheduler

import (
	"errors"
	"maps"
	"math"
	"reflect"
	"testing"

	"nimbus/rpc"
)

// reservations returns a copy of the FSM's reservations.
func reservations(f *FSM) map[string]int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.state.reserved)
}

// checkReservations checks the state's invariants: every reservation is of
// a stored function and not negative, and the total is their sum.
func checkReservations(t testing.TB, f *FSM) {
	t.Helper()
	f.mu.RLock()
	defer f.mu.RUnlock()
	sum := 0
	for name, r := range f.state.reserved {
		if _, ok := f.state.functions[name]; !ok {
			t.Fatalf("reservation of %q, which is not a function", name)
		}
		if r < 0 {
			t.Fatalf("reservation of %q is %d", name, r)
		}
		sum += r
	}
	if sum != f.state.reservedTotal {
		t.Fatalf("reservedTotal = %d, reservations sum to %d", f.state.reservedTotal, sum)
	}
}

func wantReserved(t *testing.T, f *FSM, name string, want int, wantOK bool) {
	t.Helper()
	if got, ok := f.Reserved(name); got != want || ok != wantOK {
		t.Fatalf("Reserved(%s) = %d, %v; want %d, %v", name, got, ok, want, wantOK)
	}
}

func TestReservedConcurrency(t *testing.T) {
	t.Parallel()
	f, rec := newRecordedFSM()
	for i, name := range []string{"a", "b"} {
		apply(t, f, uint64(i+1), CmdPutFunction, PutFunctionCommand{Function: fullFunction(name), Mode: PutCreate})
	}
	rec.take()
	ok := func(res ApplyResult) {
		t.Helper()
		if res.Err != nil || res.Function != nil {
			t.Fatalf("apply = %+v, want success without a function", res)
		}
		checkReservations(t, f)
	}

	wantReserved(t, f, "a", 0, false)
	if f.ReservedTotal() != 0 {
		t.Fatal("a fresh FSM has reservations")
	}

	// Missing functions: not found, for both commands.
	res := apply(t, f, 3, CmdPutConcurrency, PutConcurrencyCommand{Name: "nope", Reserved: 1})
	wantCode(t, res, rpc.ErrResourceNotFound)
	if res.Err.Error() != "ResourceNotFoundException: Function not found: nope" {
		t.Fatalf("message = %q", res.Err.Error())
	}
	wantCode(t, apply(t, f, 4, CmdDeleteConcurrency, DeleteConcurrencyCommand{Name: "nope"}), rpc.ErrResourceNotFound)

	ok(apply(t, f, 5, CmdPutConcurrency, PutConcurrencyCommand{Name: "a", Reserved: 10}))
	wantReserved(t, f, "a", 10, true)
	// 0 is a reservation (always throttled), not the absence of one.
	ok(apply(t, f, 6, CmdPutConcurrency, PutConcurrencyCommand{Name: "b", Reserved: 0}))
	wantReserved(t, f, "b", 0, true)
	if got := f.ReservedTotal(); got != 10 {
		t.Fatalf("ReservedTotal = %d, want 10", got)
	}
	// A put replaces; the total counts the new value once.
	ok(apply(t, f, 7, CmdPutConcurrency, PutConcurrencyCommand{Name: "a", Reserved: 25}))
	ok(apply(t, f, 8, CmdPutConcurrency, PutConcurrencyCommand{Name: "b", Reserved: 5}))
	if got := f.ReservedTotal(); got != 30 {
		t.Fatalf("ReservedTotal = %d, want 30", got)
	}
	// Delete, then delete again: Lambda's delete is idempotent.
	ok(apply(t, f, 9, CmdDeleteConcurrency, DeleteConcurrencyCommand{Name: "b"}))
	ok(apply(t, f, 10, CmdDeleteConcurrency, DeleteConcurrencyCommand{Name: "b"}))
	wantReserved(t, f, "b", 0, false)
	if got := f.ReservedTotal(); got != 25 {
		t.Fatalf("ReservedTotal = %d, want 25", got)
	}

	// Reservations are not function changes: no revision, no callback.
	if fc, _ := f.Function("a"); fc.Revision != 1 {
		t.Fatalf("a reservation changed the function's revision to %d", fc.Revision)
	}
	if c := rec.take(); len(c) != 0 {
		t.Fatalf("OnFunctionChange called for reservations: %v", c)
	}

	// Deleting the function deletes its reservation; a new function of the
	// same name starts without one.
	if res := apply(t, f, 11, CmdDeleteFunction, DeleteFunctionCommand{Name: "a"}); res.Err != nil {
		t.Fatal(res.Err)
	}
	checkReservations(t, f)
	wantReserved(t, f, "a", 0, false)
	if got := f.ReservedTotal(); got != 0 {
		t.Fatalf("ReservedTotal after delete = %d, want 0", got)
	}
	apply(t, f, 12, CmdPutFunction, PutFunctionCommand{Function: fullFunction("a"), Mode: PutCreate})
	wantReserved(t, f, "a", 0, false)
}

// TestPutConcurrencyMaxTotal: two proposals validated against the same
// total cannot both commit if together they go over MaxTotal.
func TestPutConcurrencyMaxTotal(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	for i, name := range []string{"a", "b"} {
		apply(t, f, uint64(i+1), CmdPutFunction, PutFunctionCommand{Function: fullFunction(name), Mode: PutCreate})
	}
	maxTotal := MaxReservedTotal(1000)
	steps := []struct {
		name     string
		fn       string
		reserved int
		maxTotal int
		conflict bool
		total    int // ReservedTotal after the step
	}{
		{"first fits", "a", 800, maxTotal, false, 800},
		{"second validated on the same total loses", "b", 200, maxTotal, true, 800},
		{"second re-validated fits", "b", 100, maxTotal, false, 900},
		{"at the maximum, equal is not an increase", "b", 100, maxTotal, false, 900},
		{"increase over", "a", 801, maxTotal, true, 900},
		{"decrease", "a", 700, maxTotal, false, 800},
		{"no MaxTotal: unchecked", "a", 5000, 0, false, 5100},
		{"decrease while over is allowed", "b", 50, maxTotal, false, 5050},
		{"increase while over is not", "b", 60, maxTotal, true, 5050},
	}
	for i, st := range steps {
		res := apply(t, f, uint64(10+i), CmdPutConcurrency, PutConcurrencyCommand{Name: st.fn, Reserved: st.reserved, MaxTotal: st.maxTotal})
		if st.conflict {
			if !errors.Is(res.Err, rpc.ErrResourceConflict) {
				t.Fatalf("%s: err = %v, want ResourceConflictException", st.name, res.Err)
			}
		} else if res.Err != nil {
			t.Fatalf("%s: %v", st.name, res.Err)
		}
		if got := f.ReservedTotal(); got != st.total {
			t.Fatalf("%s: ReservedTotal = %d, want %d", st.name, got, st.total)
		}
		checkReservations(t, f)
	}
}

// TestConcurrencyGarbled: malformed concurrency entries fail and change
// nothing.
func TestConcurrencyGarbled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data []byte
		code *rpc.Error
	}{
		{"negative", mustEncode(t, CmdPutConcurrency, PutConcurrencyCommand{Name: "keep", Reserved: -1}), rpc.ErrService},
		{"overflow", mustEncode(t, CmdPutConcurrency, PutConcurrencyCommand{Name: "other", Reserved: math.MaxInt}), rpc.ErrService},
		{"put type only", []byte{byte(CmdPutConcurrency)}, rpc.ErrService},
		{"put nil body", []byte{byte(CmdPutConcurrency), 0xc0}, rpc.ErrResourceNotFound},
		{"put wrong shape", []byte{byte(CmdPutConcurrency), 0x93, 1, 2, 3}, rpc.ErrService},
		{"delete string", append([]byte{byte(CmdDeleteConcurrency)}, 0xa4, 'k', 'e', 'e', 'p'), rpc.ErrService},
		{"delete trailing", append(mustEncode(t, CmdDeleteConcurrency, DeleteConcurrencyCommand{Name: "keep"}), 0), rpc.ErrService},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := NewFSM(FSMOptions{})
			apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("keep"), Mode: PutCreate})
			apply(t, f, 2, CmdPutFunction, PutFunctionCommand{Function: fullFunction("other"), Mode: PutCreate})
			apply(t, f, 3, CmdPutConcurrency, PutConcurrencyCommand{Name: "keep", Reserved: 7})
			before := reservations(f)
			wantCode(t, applyRaw(t, f, 4, tt.data), tt.code)
			if after := reservations(f); !reflect.DeepEqual(after, before) {
				t.Fatalf("reservations changed: %v -> %v", before, after)
			}
			checkReservations(t, f)
		})
	}
}
