package scheduler

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"nimbus/rpc"
)

// fullFunction returns a config with every field set, so that round trips
// through msgpack (commands, snapshots) are checked field by field.
func fullFunction(name string) *rpc.FunctionConfig {
	return &rpc.FunctionConfig{
		Name:           name,
		Runtime:        "provided.al2023",
		Handler:        "bootstrap",
		MemoryMB:       256,
		TimeoutSec:     30,
		Env:            map[string]string{"GREETING": "hello", "TABLE_NAME": "orders"},
		CodeSHA256:     strings.Repeat("ab", 32),
		CodeSize:       4096,
		Revision:       999, // ignored by Apply
		LastModifiedMs: 1_764_000_000_000,
	}
}

// TestFullFunctionSetsEveryField fails when rpc.FunctionConfig gains a field
// that fullFunction leaves zero: the round-trip tests would not cover it.
func TestFullFunctionSetsEveryField(t *testing.T) {
	v := reflect.ValueOf(*fullFunction("f"))
	for i := 0; i < v.NumField(); i++ {
		if v.Field(i).IsZero() {
			t.Errorf("fullFunction leaves %s zero; set it so round trips cover it", v.Type().Field(i).Name)
		}
	}
}

func mustEncode(t testing.TB, ct CommandType, cmd any) []byte {
	t.Helper()
	data, err := EncodeCommand(ct, cmd)
	if err != nil {
		t.Fatalf("EncodeCommand(%s): %v", ct, err)
	}
	return data
}

// apply applies one command at index and returns the result.
func apply(t testing.TB, f *FSM, index uint64, ct CommandType, cmd any) ApplyResult {
	t.Helper()
	return applyRaw(t, f, index, mustEncode(t, ct, cmd))
}

func applyRaw(t testing.TB, f *FSM, index uint64, data []byte) ApplyResult {
	t.Helper()
	out := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data})
	res, ok := out.(ApplyResult)
	if !ok {
		t.Fatalf("Apply returned %T, want ApplyResult", out)
	}
	if res.Err != nil {
		if _, ok := res.Err.(*rpc.Error); !ok {
			t.Fatalf("Apply error is %T (%v), want *rpc.Error", res.Err, res.Err)
		}
	}
	return res
}

func TestEncodeCommand(t *testing.T) {
	t.Parallel()
	put := PutFunctionCommand{Function: fullFunction("f"), Mode: PutCreate, IfRevision: 7}
	tests := []struct {
		name    string
		ct      CommandType
		cmd     any
		wantErr string
	}{
		{"put value", CmdPutFunction, put, ""},
		{"put pointer", CmdPutFunction, &put, ""},
		{"delete value", CmdDeleteFunction, DeleteFunctionCommand{Name: "f"}, ""},
		{"delete pointer", CmdDeleteFunction, &DeleteFunctionCommand{Name: "f"}, ""},
		{"put concurrency", CmdPutConcurrency, PutConcurrencyCommand{Name: "f", Reserved: 5, MaxTotal: 900}, ""},
		{"put concurrency pointer", CmdPutConcurrency, &PutConcurrencyCommand{Name: "f"}, ""},
		{"delete concurrency", CmdDeleteConcurrency, DeleteConcurrencyCommand{Name: "f"}, ""},
		{"concurrency wrong struct", CmdDeleteConcurrency, PutConcurrencyCommand{Name: "f"}, "takes a DeleteConcurrencyCommand"},
		{"concurrency nil pointer", CmdPutConcurrency, (*PutConcurrencyCommand)(nil), "takes a PutConcurrencyCommand"},
		{"wrong struct", CmdPutFunction, DeleteFunctionCommand{Name: "f"}, "takes a PutFunctionCommand"},
		{"nil pointer", CmdDeleteFunction, (*DeleteFunctionCommand)(nil), "takes a DeleteFunctionCommand"},
		{"nil", CmdPutFunction, nil, "takes a PutFunctionCommand"},
		{"unknown type", CommandType(0), put, "unknown command type 0"},
		{"unknown type 200", CommandType(200), put, "unknown command type 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := EncodeCommand(tt.ct, tt.cmd)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if CommandType(data[0]) != tt.ct {
				t.Fatalf("type byte = %d, want %d", data[0], tt.ct)
			}
		})
	}
}

func TestCommandRoundTrip(t *testing.T) {
	t.Parallel()
	put := PutFunctionCommand{Function: fullFunction("f"), Mode: PutUpdate, IfRevision: 7}
	data := mustEncode(t, CmdPutFunction, put)
	ct, body, err := splitEntry(data)
	if err != nil || ct != CmdPutFunction {
		t.Fatalf("splitEntry = %v, %v", ct, err)
	}
	var got PutFunctionCommand
	if err := decodeCommand(ct, body, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, put) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, put)
	}

	del := DeleteFunctionCommand{Name: "f"}
	data = mustEncode(t, CmdDeleteFunction, &del)
	var gotDel DeleteFunctionCommand
	if err := decodeCommand(CmdDeleteFunction, data[1:], &gotDel); err != nil || gotDel != del {
		t.Fatalf("delete round trip = %+v, %v", gotDel, err)
	}

	pc := PutConcurrencyCommand{Name: "f", Reserved: 7, MaxTotal: 900}
	data = mustEncode(t, CmdPutConcurrency, pc)
	var gotPC PutConcurrencyCommand
	if err := decodeCommand(CmdPutConcurrency, data[1:], &gotPC); err != nil || gotPC != pc {
		t.Fatalf("put concurrency round trip = %+v, %v", gotPC, err)
	}
	dc := DeleteConcurrencyCommand{Name: "f"}
	data = mustEncode(t, CmdDeleteConcurrency, dc)
	var gotDC DeleteConcurrencyCommand
	if err := decodeCommand(CmdDeleteConcurrency, data[1:], &gotDC); err != nil || gotDC != dc {
		t.Fatalf("delete concurrency round trip = %+v, %v", gotDC, err)
	}
	data = mustEncode(t, CmdDeleteFunction, &del)

	// One msgpack value, nothing after it.
	if err := decodeCommand(CmdDeleteFunction, append(bytes.Clone(data[1:]), 0xc0), &gotDel); err == nil {
		t.Fatal("trailing bytes accepted")
	}
}

// TestCommandTypesAreStable pins the durable values: renumbering a command
// would make replicas misread their logs.
func TestCommandTypesAreStable(t *testing.T) {
	t.Parallel()
	pins := map[CommandType]uint8{CmdPutFunction: 1, CmdDeleteFunction: 2, CmdPutConcurrency: 3, CmdDeleteConcurrency: 4}
	for ct, want := range pins {
		if uint8(ct) != want {
			t.Errorf("%s = %d, want %d", ct, uint8(ct), want)
		}
	}
	if PutCreate != 1 || PutUpdate != 2 {
		t.Errorf("PutMode values changed: create %d, update %d", PutCreate, PutUpdate)
	}
	if recordFunction != 1 || recordReservation != 2 || recordEnd != 255 {
		t.Errorf("snapshot record values changed: function %d, reservation %d, end %d", recordFunction, recordReservation, recordEnd)
	}
}
