package node

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"nimbus/bundle"
	"nimbus/rpc"
)

// TestUpdatesTakeEffect checks that update-code and update-config make a new
// revision whose next invocation runs on a new sandbox with the new code or
// configuration, while the old revision's warm sandbox is not reused.
func TestUpdatesTakeEffect(t *testing.T) {
	t.Parallel()
	_, cl := startNode(t, t.TempDir())
	ctx := ctxT(t)
	const name = "upd"
	v1 := create(t, cl, name, behaveZip(t, "v1"), func(r *rpc.CreateFunctionRequest) {
		r.Env = map[string]string{"GREETING": "hi"}
	})

	// want invokes the function and checks its answer, and whether it ran
	// on a new sandbox (Init Duration in its REPORT) and with how much memory.
	want := func(step, version, greeting string, memoryMB int, cold bool) {
		t.Helper()
		res := invoke(t, cl, name, `"`+step+`"`)
		if w := `{"echo":"` + step + `","version":"` + version + `","greeting":"` + greeting + `"}`; res.FunctionError != "" || string(res.Payload) != w {
			t.Fatalf("%s: answered %s (%q), want %s", step, res.Payload, res.FunctionError, w)
		}
		checkFramed(t, invocationLog(t, cl, name, res.RequestID), res.RequestID, memoryMB, cold)
	}
	want("first", "v1", "hi", 128, true)
	want("warm", "v1", "hi", 128, false)

	z2 := behaveZip(t, "v2")
	res, err := cl.UpdateFunctionCode(ctx, &rpc.UpdateCodeRequest{Name: name, ZipFile: z2})
	if err != nil {
		t.Fatal(err)
	}
	v2 := res.Function
	if v2.CodeSHA256 != bundle.Digest(z2) || v2.CodeSize != int64(len(z2)) || v2.Revision <= v1.Revision ||
		v2.Env["GREETING"] != "hi" || v2.MemoryMB != 128 {
		t.Errorf("after update-code: %+v (was %+v)", v2, v1)
	}
	want("new-code", "v2", "hi", 128, true)
	want("new-code-warm", "v2", "hi", 128, false)

	mem := 256
	res, err = cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: name, MemoryMB: &mem, Env: map[string]string{"GREETING": "hello"}})
	if err != nil {
		t.Fatal(err)
	}
	v3 := res.Function
	if v3.Revision <= v2.Revision || v3.CodeSHA256 != v2.CodeSHA256 || v3.MemoryMB != 256 || v3.Env["GREETING"] != "hello" {
		t.Errorf("after update-config: %+v (was %+v)", v3, v2)
	}
	want("new-config", "v2", "hello", 256, true)
	want("new-config-warm", "v2", "hello", 256, false)

	// An empty environment clears it; nil leaves it.
	res, err = cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: name, Env: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Function.Env) != 0 || res.Function.MemoryMB != 256 {
		t.Errorf("after clearing the environment: %+v", res.Function)
	}
	want("no-env", "v2", "", 256, true)

	got, err := cl.GetFunction(ctx, &rpc.GetFunctionRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if got.Function.Revision != res.Function.Revision || got.Function.CodeSHA256 != v2.CodeSHA256 {
		t.Errorf("Get returns %+v, want the last update %+v", got.Function, res.Function)
	}
}

// TestDeleteAndConflict checks delete (the function is gone for every
// method, and its name can be used again) and that creating a function
// twice is a conflict that leaves the first one as it was.
func TestDeleteAndConflict(t *testing.T) {
	t.Parallel()
	_, cl := startNode(t, t.TempDir())
	ctx := ctxT(t)

	first := create(t, cl, "dup", behaveZip(t, "v1"), nil)
	_, err := cl.CreateFunction(ctx, &rpc.CreateFunctionRequest{
		Name: "dup", Runtime: "provided", MemoryMB: 512, ZipFile: behaveZip(t, "v2"),
	})
	if !errors.Is(err, rpc.ErrResourceConflict) {
		t.Fatalf("second create: %v, want ResourceConflictException", err)
	}
	got, err := cl.GetFunction(ctx, &rpc.GetFunctionRequest{Name: "dup"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Function, first) {
		t.Errorf("after the refused create: %+v, want it unchanged %+v", got.Function, first)
	}
	if res := invoke(t, cl, "dup", `"x"`); string(res.Payload) != `{"echo":"x","version":"v1","greeting":""}` {
		t.Errorf("invoke after the refused create: %s", res.Payload)
	}

	if _, err := cl.DeleteFunction(ctx, &rpc.GetFunctionRequest{Name: "dup"}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	gone := map[string]func() error{
		"invoke": func() error {
			_, err := cl.Invoke(ctx, &rpc.InvokeRequest{FunctionName: "dup", Payload: []byte(`"x"`)})
			return err
		},
		"get": func() error {
			_, err := cl.GetFunction(ctx, &rpc.GetFunctionRequest{Name: "dup"})
			return err
		},
		"delete again": func() error {
			_, err := cl.DeleteFunction(ctx, &rpc.GetFunctionRequest{Name: "dup"})
			return err
		},
		"update-code": func() error {
			_, err := cl.UpdateFunctionCode(ctx, &rpc.UpdateCodeRequest{Name: "dup", ZipFile: behaveZip(t, "v3")})
			return err
		},
		"update-config": func() error {
			mem := 256
			_, err := cl.UpdateFunctionConfig(ctx, &rpc.UpdateConfigRequest{Name: "dup", MemoryMB: &mem})
			return err
		},
		"read logs": func() error {
			_, err := cl.ReadLogs(ctx, &rpc.ReadLogsRequest{FunctionName: "dup"})
			return err
		},
	}
	for what, call := range gone {
		err := call()
		var re *rpc.Error
		if !errors.Is(err, rpc.ErrResourceNotFound) || !errors.As(err, &re) {
			t.Errorf("%s after delete: %v, want ResourceNotFoundException", what, err)
		}
	}
	list, err := cl.ListFunctions(ctx, &rpc.ListFunctionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Functions) != 0 {
		t.Errorf("List after delete: %d functions", len(list.Functions))
	}

	// The name is free again, and the new function runs its own code.
	create(t, cl, "dup", behaveZip(t, "v4"), nil)
	if res := invoke(t, cl, "dup", `"y"`); string(res.Payload) != `{"echo":"y","version":"v4","greeting":""}` {
		t.Errorf("invoke of the re-created function: %s", res.Payload)
	}
}

// TestAgentRestart stops a node and starts a new one on the same data dir:
// functions, their code and their logs are still there. The first node
// builds its own sandbox image, as a real first start does; the second
// reuses it.
func TestAgentRestart(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	dataDir := t.TempDir()
	n1, cl1 := startNodeConfig(t, Config{DataDir: dataDir})
	fns := []*rpc.FunctionConfig{
		create(t, cl1, "hello", helloZip(t), nil),
		create(t, cl1, "behave", behaveZip(t, "v1"), func(r *rpc.CreateFunctionRequest) {
			r.MemoryMB, r.TimeoutSec, r.Env = 192, 7, map[string]string{"GREETING": "kept"}
		}),
	}
	before := invoke(t, cl1, "behave", `"before"`)
	beforeLog := invocationLog(t, cl1, "behave", before.RequestID)
	cl1.Close()
	if err := n1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	n2, cl2 := startNodeConfig(t, Config{DataDir: dataDir})
	if n2.Name() != n1.Name() || n2.Addr() == "" {
		t.Errorf("restarted node is %q at %q, was %q", n2.Name(), n2.Addr(), n1.Name())
	}
	ctx := ctxT(t)
	for _, want := range fns {
		got, err := cl2.GetFunction(ctx, &rpc.GetFunctionRequest{Name: want.Name})
		if err != nil {
			t.Fatalf("get %s after restart: %v", want.Name, err)
		}
		if got.Function.Name != want.Name || got.Function.CodeSHA256 != want.CodeSHA256 ||
			got.Function.Revision != want.Revision || got.Function.MemoryMB != want.MemoryMB ||
			got.Function.TimeoutSec != want.TimeoutSec || got.Function.LastModifiedMs != want.LastModifiedMs ||
			!maps.Equal(got.Function.Env, want.Env) {
			t.Errorf("after restart %+v, want %+v", got.Function, want)
		}
	}
	list, err := cl2.ListFunctions(ctx, &rpc.ListFunctionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range list.Functions {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"behave", "hello"}) {
		t.Errorf("List after restart: %q", names)
	}

	if res := invoke(t, cl2, "behave", `"after"`); string(res.Payload) != `{"echo":"after","version":"v1","greeting":"kept"}` {
		t.Errorf("behave after restart answered %s (%q)", res.Payload, res.FunctionError)
	}
	res := invoke(t, cl2, "hello", `{"name":"again"}`)
	if res.FunctionError != "" || !strings.Contains(string(res.Payload), `"message":"Hello, again!"`) {
		t.Errorf("hello after restart answered %s (%q)", res.Payload, res.FunctionError)
	}
	checkFramed(t, invocationLog(t, cl2, "hello", res.RequestID), res.RequestID, 128, true)

	// The log written before the restart is still readable.
	var kept []string
	for _, e := range readAll(t, cl2, "behave") {
		if e.RequestID == before.RequestID {
			kept = append(kept, e.Line)
		}
	}
	if !slices.Equal(kept, beforeLog) {
		t.Errorf("log of %s after restart:\n%q\nbefore:\n%q", before.RequestID, kept, beforeLog)
	}
}
