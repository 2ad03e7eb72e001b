package scheduler

import (
	"errors"
	"reflect"
	"testing"

	"nimbus/rpc"
)

func intp(v int) *int { return &v }

func TestEventConfigCommands(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("fn"), Mode: PutCreate})
	cfg := &rpc.EventConfig{FunctionName: "fn", MaxRetryAttempts: intp(0), MaxEventAgeSec: intp(60), OnFailure: "function:fn", LastModifiedMs: 5}
	if res := apply(t, f, 2, CmdPutEventConfig, PutEventConfigCommand{Config: cfg}); res.Err != nil {
		t.Fatal(res.Err)
	}
	got, ok := f.EventConfig("fn")
	if !ok || !reflect.DeepEqual(got, cfg) || got.Retries() != 0 || got.MaxAgeSec() != 60 {
		t.Fatalf("EventConfig = %+v, %v", got, ok)
	}
	wantCode(t, apply(t, f, 3, CmdPutEventConfig, PutEventConfigCommand{Config: &rpc.EventConfig{FunctionName: "nope"}}), rpc.ErrResourceNotFound)
	wantCode(t, apply(t, f, 4, CmdPutEventConfig, PutEventConfigCommand{}), rpc.ErrService)

	// Snapshots carry it.
	again := NewFSM(FSMOptions{})
	if err := restore(again, persist(t, f)); err != nil {
		t.Fatal(err)
	}
	if c, _ := again.EventConfig("fn"); !reflect.DeepEqual(c, cfg) {
		t.Fatalf("restored %+v", c)
	}

	if res := apply(t, f, 5, CmdDeleteEventConfig, DeleteEventConfigCommand{Name: "fn"}); res.Err != nil {
		t.Fatal(res.Err)
	}
	wantCode(t, apply(t, f, 6, CmdDeleteEventConfig, DeleteEventConfigCommand{Name: "fn"}), rpc.ErrResourceNotFound)
	// Deleting a function deletes its configuration.
	apply(t, f, 7, CmdPutEventConfig, PutEventConfigCommand{Config: cfg})
	apply(t, f, 8, CmdDeleteFunction, DeleteFunctionCommand{Name: "fn"})
	if _, ok := f.EventConfig("fn"); ok {
		t.Fatal("config outlived its function")
	}
	var nilCfg *rpc.EventConfig
	if nilCfg.Retries() != rpc.DefaultMaxRetryAttempts || nilCfg.MaxAgeSec() != rpc.DefaultMaxEventAgeSec {
		t.Fatal("defaults")
	}
}

func TestValidateEventConfig(t *testing.T) {
	t.Parallel()
	exists := func(name string) bool { return name == "fn" || name == "other" }
	queues := func(name string) (*rpc.Queue, bool) {
		switch name {
		case "dlq":
			return &rpc.Queue{Name: name}, true
		case "f.fifo":
			return &rpc.Queue{Name: name, FIFO: true}, true
		}
		return nil, false
	}
	tests := []struct {
		name string
		req  rpc.PutEventConfigRequest
		want *rpc.Error
	}{
		{"defaults", rpc.PutEventConfigRequest{FunctionName: "fn"}, nil},
		{"all set", rpc.PutEventConfigRequest{FunctionName: "fn", MaxRetryAttempts: intp(2), MaxEventAgeSec: intp(21600),
			OnSuccess: "function:other", OnFailure: "arn:aws:lambda:us-east-1:123456789012:function:fn"}, nil},
		{"retries 3", rpc.PutEventConfigRequest{FunctionName: "fn", MaxRetryAttempts: intp(3)}, rpc.ErrInvalidParameterValue},
		{"retries -1", rpc.PutEventConfigRequest{FunctionName: "fn", MaxRetryAttempts: intp(-1)}, rpc.ErrInvalidParameterValue},
		{"age 59", rpc.PutEventConfigRequest{FunctionName: "fn", MaxEventAgeSec: intp(59)}, rpc.ErrInvalidParameterValue},
		{"age 21601", rpc.PutEventConfigRequest{FunctionName: "fn", MaxEventAgeSec: intp(21601)}, rpc.ErrInvalidParameterValue},
		{"unknown destination function", rpc.PutEventConfigRequest{FunctionName: "fn", OnFailure: "function:nope"}, rpc.ErrInvalidParameterValue},
		{"garbage destination", rpc.PutEventConfigRequest{FunctionName: "fn", OnSuccess: "s3://bucket"}, rpc.ErrInvalidParameterValue},
		{"bad arn", rpc.PutEventConfigRequest{FunctionName: "fn", OnSuccess: "arn:aws:lambda:r:a:layer:x"}, rpc.ErrInvalidParameterValue},
		{"queue destination", rpc.PutEventConfigRequest{FunctionName: "fn", OnFailure: "queue:dlq", OnSuccess: "arn:aws:sqs:local:000000000000:dlq"}, nil},
		{"missing queue destination", rpc.PutEventConfigRequest{FunctionName: "fn", OnFailure: "queue:nope"}, rpc.ErrInvalidParameterValue},
		{"fifo queue destination", rpc.PutEventConfigRequest{FunctionName: "fn", OnFailure: "queue:f.fifo"}, rpc.ErrInvalidParameterValue},
		{"bad queue name", rpc.PutEventConfigRequest{FunctionName: "fn", OnFailure: "queue:a b"}, rpc.ErrInvalidParameterValue},
		{"bad name", rpc.PutEventConfigRequest{FunctionName: "a b"}, rpc.ErrInvalidParameterValue},
	}
	for _, tt := range tests {
		c, err := ValidateEventConfig(rpc.ARNScope{}, &tt.req, exists, queues)
		if tt.want == nil {
			if err != nil || c.FunctionName != tt.req.FunctionName || c.OnSuccess != tt.req.OnSuccess || c.OnFailure != tt.req.OnFailure {
				t.Errorf("%s: %+v, %v", tt.name, c, err)
			}
			continue
		}
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %s", tt.name, err, tt.want.Code)
		}
	}
}

func TestParseDestination(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Destination{
		"function:f": {DestinationFunction, "f"},
		"arn:aws:lambda:eu-west-1:123456789012:function:f": {DestinationFunction, "f"},
		"queue:q":                              {DestinationQueue, "q"},
		"arn:aws:sqs:eu-west-1:123456789012:q": {DestinationQueue, "q"},
	} {
		if got, err := ParseDestination(in); err != nil || got != want {
			t.Errorf("%s: %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "function:", "function:a b", "arn:aws:sqs:r:a:", "arn:aws:lambda:r:a:function", "lambda:f"} {
		if _, err := ParseDestination(in); !errors.Is(err, rpc.ErrInvalidParameterValue) {
			t.Errorf("%q accepted: %v", in, err)
		}
	}
}

// TestFinishThen: a finish with a follow-up event queues it in the same
// apply, unless its function is gone.
func TestFinishThen(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("fn"), Mode: PutCreate})
	apply(t, f, 2, CmdPutFunction, PutFunctionCommand{Function: fullFunction("dest"), Mode: PutCreate})
	apply(t, f, 3, CmdAsyncAccept, AsyncAcceptCommand{Events: []AsyncEvent{event("a", "fn", 1), event("b", "fn", 1)}})
	then := event("rec", "dest", 2)
	then.Depth = 1
	gone := event("rec2", "missing", 2)
	res := apply(t, f, 4, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{
		{RequestID: "a", Kind: AsyncFinish, IfGen: 3, Then: &then},
		{RequestID: "b", Kind: AsyncFinish, IfGen: 3, Then: &gone},
	}})
	if res.Err != nil || res.Items[0] != nil || res.Items[1] != nil {
		t.Fatalf("%+v", res)
	}
	got := allEvents(f)
	if len(got) != 1 || got[0].RequestID != "rec" || got[0].Depth != 1 || got[0].Gen != 4 {
		t.Fatalf("queue after the finishes: %+v", got)
	}
	bad := event("x", "dest", 1)
	bad.Depth = rpc.MaxDestinationDepth + 1
	wantCode(t, apply(t, f, 5, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{{RequestID: "rec", Kind: AsyncFinish, IfGen: 4, Then: &bad}}}), rpc.ErrService)
	wantCode(t, apply(t, f, 5, CmdAsyncUpdate, AsyncUpdateCommand{Ops: []AsyncOp{{RequestID: "rec", Kind: AsyncLease, IfGen: 4, Then: &then}}}), rpc.ErrService)
	checkAsyncIndex(t, f)
}

// TestQualifiedEventConfigs: a version's and an alias's configurations
// live beside the function's own, each found only under its qualifier;
// they need the version or alias to exist, survive a snapshot, and go with
// the alias, the version or the function they belong to.
func TestQualifiedEventConfigs(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("fn"), Mode: PutCreate})
	apply(t, f, 2, CmdPublishVersion, PublishVersionCommand{Name: "fn"})
	if res := apply(t, f, 3, CmdPutAlias, PutAliasCommand{Alias: &rpc.Alias{FunctionName: "fn", Name: "live", FunctionVersion: "1"}, Mode: PutCreate}); res.Err != nil {
		t.Fatal(res.Err)
	}
	own := &rpc.EventConfig{FunctionName: "fn", MaxRetryAttempts: intp(2), LastModifiedMs: 1}
	live := &rpc.EventConfig{FunctionName: "fn", Qualifier: "live", MaxRetryAttempts: intp(0), OnSuccess: "queue:q", LastModifiedMs: 2}
	v1 := &rpc.EventConfig{FunctionName: "fn", Qualifier: "1", MaxEventAgeSec: intp(60), LastModifiedMs: 3}
	for i, c := range []*rpc.EventConfig{own, live, v1} {
		cmd := PutEventConfigCommand{Config: c}
		if res := apply(t, f, uint64(4+i), cmd.CommandType(), cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if got := (PutEventConfigCommand{Config: live}).CommandType(); got != CmdPutQualifiedEventConfig {
		t.Fatalf("a qualified put is command %v", got)
	}
	for q, want := range map[string]*rpc.EventConfig{"": own, rpc.VersionLatest: own, "live": live, "1": v1} {
		if got, ok := f.EventConfigFor("fn", q); !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("EventConfigFor(fn, %q) = %+v, %v; want %+v", q, got, ok, want)
		}
	}
	if _, ok := f.EventConfigFor("fn", "2"); ok {
		t.Error("version 2 has a configuration it was never given")
	}
	if got := f.EventConfigs("fn"); len(got) != 3 || got[0] != f.mustConfig(t, "") {
		t.Errorf("EventConfigs = %+v", got)
	}
	// The qualifier must exist; an unqualified entry carrying one is the
	// function's own (an old proposer's entry cannot name a qualifier).
	wantCode(t, apply(t, f, 7, CmdPutQualifiedEventConfig, PutEventConfigCommand{Config: &rpc.EventConfig{FunctionName: "fn", Qualifier: "nope"}}), rpc.ErrResourceNotFound)
	wantCode(t, apply(t, f, 8, CmdPutQualifiedEventConfig, PutEventConfigCommand{Config: &rpc.EventConfig{FunctionName: "fn", Qualifier: "7"}}), rpc.ErrResourceNotFound)

	again := NewFSM(FSMOptions{})
	if err := restore(again, persist(t, f)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"", "live", "1"} {
		want, _ := f.EventConfigFor("fn", q)
		if got, ok := again.EventConfigFor("fn", q); !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("restored EventConfigFor(fn, %q) = %+v, %v; want %+v", q, got, ok, want)
		}
	}

	del := DeleteEventConfigCommand{Name: "fn", Qualifier: "1"}
	if res := apply(t, f, 9, del.CommandType(), del); res.Err != nil {
		t.Fatal(res.Err)
	}
	wantCode(t, apply(t, f, 10, del.CommandType(), del), rpc.ErrResourceNotFound)
	if _, ok := f.EventConfigFor("fn", ""); !ok {
		t.Fatal("deleting version 1's configuration deleted the function's own")
	}
	apply(t, f, 11, CmdDeleteAlias, DeleteAliasCommand{FunctionName: "fn", Name: "live"})
	if _, ok := f.EventConfigFor("fn", "live"); ok {
		t.Fatal("the alias's configuration outlived the alias")
	}
	apply(t, f, 12, CmdPutQualifiedEventConfig, PutEventConfigCommand{Config: v1})
	if res := apply(t, f, 13, CmdDeleteVersion, DeleteVersionCommand{Name: "fn", Version: 1}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if _, ok := f.EventConfigFor("fn", "1"); ok {
		t.Fatal("the version's configuration outlived the version")
	}
	apply(t, f, 14, CmdPublishVersion, PublishVersionCommand{Name: "fn"})
	apply(t, f, 15, CmdPutQualifiedEventConfig, PutEventConfigCommand{Config: &rpc.EventConfig{FunctionName: "fn", Qualifier: "2"}})
	apply(t, f, 16, CmdDeleteFunction, DeleteFunctionCommand{Name: "fn"})
	if got := f.EventConfigs("fn"); len(got) != 0 {
		t.Fatalf("configurations outlived their function: %+v", got)
	}
}

func (f *FSM) mustConfig(t *testing.T, q string) *rpc.EventConfig {
	t.Helper()
	c, ok := f.EventConfigFor("fn", q)
	if !ok {
		t.Fatalf("no configuration for %q", q)
	}
	return c
}
