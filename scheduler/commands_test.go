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
		Name:               name,
		Runtime:            "provided.al2023",
		Handler:            "bootstrap",
		MemoryMB:           256,
		TimeoutSec:         30,
		EphemeralStorageMB: 2048,
		Env:                map[string]string{"GREETING": "hello", "TABLE_NAME": "orders"},
		CodeSHA256:         strings.Repeat("ab", 32),
		CodeSize:           4096,
		Revision:           999, // ignored by Apply
		LastModifiedMs:     1_764_000_000_000,
		Description:        "orders API",
		DeadLetter:         "queue:dlq",
		Role:               "arn:aws:iam::000000000000:role/fn",
		// Layers (issue 10).
		Layers: []rpc.FunctionLayer{{ARN: "arn:aws:lambda:local:000000000000:layer:l:1", CodeSHA256: strings.Repeat("cd", 32), CodeSize: 10, UnzippedSize: 20}},
	}
}

// TestFullFunctionSetsEveryField fails when rpc.FunctionConfig gains a field
// that fullFunction leaves zero: the round-trip tests would not cover it.
func TestFullFunctionSetsEveryField(t *testing.T) {
	v := reflect.ValueOf(*fullFunction("f"))
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).Name == "Version" {
			continue // "" is $LATEST's; fullVersion (versions_test.go) sets it
		}
		if v.Field(i).IsZero() {
			t.Errorf("fullFunction leaves %s zero; set it so round trips cover it", v.Type().Field(i).Name)
		}
	}
}

func mustEncode(t testing.TB, ct CommandType, cmd Command) []byte {
	t.Helper()
	if cmd.CommandType() != ct {
		t.Fatalf("mustEncode(%s) given a %T", ct, cmd)
	}
	data, err := EncodeCommand(cmd)
	if err != nil {
		t.Fatalf("EncodeCommand(%s): %v", ct, err)
	}
	return data
}

// apply applies one command at index and returns the result.
func apply(t testing.TB, f *FSM, index uint64, ct CommandType, cmd Command) ApplyResult {
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

// unknownCommand is a command this release does not know.
type unknownCommand struct{ X int }

func (unknownCommand) CommandType() CommandType { return CommandType(77) }

func TestEncodeCommand(t *testing.T) {
	t.Parallel()
	put := PutFunctionCommand{Function: fullFunction("f"), Mode: PutCreate, IfRevision: 7}
	tests := []struct {
		name    string
		cmd     Command
		want    CommandType
		wantErr string
	}{
		{"put value", put, CmdPutFunction, ""},
		{"put pointer", &put, CmdPutFunction, ""},
		{"delete value", DeleteFunctionCommand{Name: "f"}, CmdDeleteFunction, ""},
		{"delete pointer", &DeleteFunctionCommand{Name: "f"}, CmdDeleteFunction, ""},
		{"put concurrency", PutConcurrencyCommand{Name: "f", Reserved: 5, MaxTotal: 900}, CmdPutConcurrency, ""},
		{"delete concurrency", DeleteConcurrencyCommand{Name: "f"}, CmdDeleteConcurrency, ""},
		{"async accept", AsyncAcceptCommand{Events: []AsyncEvent{{RequestID: "r", Function: "f"}}}, CmdAsyncAccept, ""},
		{"async update", &AsyncUpdateCommand{Ops: []AsyncOp{{RequestID: "r", Kind: AsyncFinish}}}, CmdAsyncUpdate, ""},
		{"nil pointer", (*DeleteFunctionCommand)(nil), 0, "nil command"},
		{"nil", nil, 0, "nil command"},
		{"unknown type", unknownCommand{}, 0, "unknown command type 77"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := EncodeCommand(tt.cmd)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if CommandType(data[0]) != tt.want {
				t.Fatalf("type byte = %d, want %d", data[0], tt.want)
			}
		})
	}
}

// TestCommandSpecs: every known command has a name and a version no newer
// than FSMVersion, and FSMVersion is the newest of them; none has the
// ignorable bit (a known command is never skipped).
func TestCommandSpecs(t *testing.T) {
	t.Parallel()
	newest := 0
	for ct, spec := range commandSpecs {
		if spec.name == "" || spec.since < 1 || spec.since > FSMVersion {
			t.Errorf("%d: spec %+v", ct, spec)
		}
		if ct&CmdIgnorable != 0 {
			t.Errorf("%s has the ignorable bit", ct)
		}
		if CommandVersion(ct) != spec.since {
			t.Errorf("CommandVersion(%s) = %d", ct, CommandVersion(ct))
		}
		newest = max(newest, spec.since)
	}
	if newest != FSMVersion {
		t.Errorf("FSMVersion = %d, newest command version %d", FSMVersion, newest)
	}
	if CommandVersion(CommandType(77)) != 0 {
		t.Error("an unknown command has a version")
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
	pins := map[CommandType]uint8{CmdPutFunction: 1, CmdDeleteFunction: 2, CmdPutConcurrency: 3, CmdDeleteConcurrency: 4,
		CmdAsyncAccept: 5, CmdAsyncUpdate: 6, CmdPutEventConfig: 7, CmdDeleteEventConfig: 8, CmdIgnorable: 128,
		CmdPublishVersion: 9, CmdDeleteVersion: 10, CmdPutAlias: 11, CmdDeleteAlias: 12, CmdPutURL: 13, CmdDeleteURL: 14}
	for ct, want := range pins {
		if uint8(ct) != want {
			t.Errorf("%s = %d, want %d", ct, uint8(ct), want)
		}
	}
	if PutCreate != 1 || PutUpdate != 2 {
		t.Errorf("PutMode values changed: create %d, update %d", PutCreate, PutUpdate)
	}
	if recordFunction != 1 || recordReservation != 2 || recordAsyncEvent != 3 || recordEventConfig != 4 || recordEnd != 255 {
		t.Errorf("snapshot record values changed: function %d, reservation %d, event %d, end %d", recordFunction, recordReservation, recordAsyncEvent, recordEnd)
	}
	if recordVersionCounter != 9 || recordVersion != 10 || recordAlias != 11 || recordURL != 12 {
		t.Errorf("version snapshot record values changed: %d %d %d %d", recordVersionCounter, recordVersion, recordAlias, recordURL)
	}
	if AsyncLease != 1 || AsyncRetry != 2 || AsyncFinish != 3 {
		t.Errorf("AsyncOpKind values changed: %d %d %d", AsyncLease, AsyncRetry, AsyncFinish)
	}
}
