package scheduler

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// fullVersion returns a published version with every field set.
func fullVersion(name string, n string) *rpc.FunctionConfig {
	v := fullFunction(name)
	v.Version = n
	return v
}

// TestFullVersionSetsEveryField: fullVersion covers every field of a
// version record, Version included.
func TestFullVersionSetsEveryField(t *testing.T) {
	v := reflect.ValueOf(*fullVersion("f", "1"))
	for i := 0; i < v.NumField(); i++ {
		if v.Field(i).IsZero() {
			t.Errorf("fullVersion leaves %s zero", v.Type().Field(i).Name)
		}
	}
}

func wantErr(t *testing.T, res ApplyResult, sentinel *rpc.Error, contains string) {
	t.Helper()
	if !errors.Is(res.Err, sentinel) {
		t.Fatalf("Apply err = %v, want %s", res.Err, sentinel.Code)
	}
	if contains != "" && !strings.Contains(res.Err.Error(), contains) {
		t.Fatalf("Apply err = %v, want it to mention %q", res.Err, contains)
	}
}

func versionNumbers(f *FSM, name string) []string {
	var out []string
	for _, v := range f.Versions(name) {
		out = append(out, v.Version)
	}
	return out
}

// TestPublishVersion: numbers from 1, an unchanged $LATEST returns the
// newest version, the preconditions, immutability against later updates,
// numbers never reused after a delete.
func TestPublishVersion(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("f"), Mode: PutCreate})

	wantErr(t, apply(t, f, 2, CmdPublishVersion, PublishVersionCommand{Name: "nope"}), rpc.ErrResourceNotFound, "nope")
	wantErr(t, apply(t, f, 2, CmdPublishVersion, PublishVersionCommand{Name: "f", IfRevision: 7}), rpc.ErrPreconditionFailed, "Revision Id")
	wantErr(t, apply(t, f, 2, CmdPublishVersion, PublishVersionCommand{Name: "f", IfCodeSHA256: "00"}), rpc.ErrPreconditionFailed, "CodeSHA256")
	if got := f.Versions("f"); len(got) != 0 {
		t.Fatalf("refused publishes stored %d versions", len(got))
	}

	res := apply(t, f, 3, CmdPublishVersion, PublishVersionCommand{Name: "f", Description: "first", IfRevision: 1, IfCodeSHA256: strings.Repeat("ab", 32), LastModifiedMs: 5})
	if res.Err != nil || res.Function.Version != "1" || res.Function.Description != "first" || res.Function.Revision != 1 || res.Function.LastModifiedMs != 5 {
		t.Fatalf("publish = %+v, %v", res.Function, res.Err)
	}
	// Unchanged: the same version, nothing new.
	res = apply(t, f, 4, CmdPublishVersion, PublishVersionCommand{Name: "f", Description: "again"})
	if res.Err != nil || res.Function.Version != "1" || res.Function.Description != "first" {
		t.Fatalf("unchanged publish = %+v, %v", res.Function, res.Err)
	}
	// Change $LATEST: version 1 keeps its memory size.
	upd := fullFunction("f")
	upd.MemoryMB = 512
	apply(t, f, 5, CmdPutFunction, PutFunctionCommand{Function: upd, Mode: PutUpdate})
	if v1, _ := f.Version("f", 1); v1.MemoryMB != 256 {
		t.Fatalf("version 1 changed with $LATEST: %d MB", v1.MemoryMB)
	}
	if res = apply(t, f, 6, CmdPublishVersion, PublishVersionCommand{Name: "f"}); res.Err != nil || res.Function.Version != "2" || res.Function.MemoryMB != 512 {
		t.Fatalf("second publish = %+v, %v", res.Function, res.Err)
	}
	// Delete 2, change, publish: 3, not 2 again.
	if res = apply(t, f, 7, CmdDeleteVersion, DeleteVersionCommand{Name: "f", Version: 2}); res.Err != nil {
		t.Fatal(res.Err)
	}
	wantErr(t, apply(t, f, 8, CmdDeleteVersion, DeleteVersionCommand{Name: "f", Version: 2}), rpc.ErrResourceNotFound, "f:2")
	upd = upd.Clone()
	upd.TimeoutSec = 9
	apply(t, f, 9, CmdPutFunction, PutFunctionCommand{Function: upd, Mode: PutUpdate})
	if res = apply(t, f, 10, CmdPublishVersion, PublishVersionCommand{Name: "f"}); res.Err != nil || res.Function.Version != "3" {
		t.Fatalf("publish after delete = %+v, %v", res.Function, res.Err)
	}
	if got := versionNumbers(f, "f"); !reflect.DeepEqual(got, []string{"1", "3"}) {
		t.Fatalf("versions = %v", got)
	}
	// $LATEST itself has no version number.
	if latest, _ := f.Function("f"); latest.Version != "" {
		t.Fatalf("$LATEST has Version %q", latest.Version)
	}
}

// TestAliases: routing rules against the versions that exist, the
// preconditions, and the conflict of deleting a version an alias uses.
func TestAliases(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("f"), Mode: PutCreate})
	apply(t, f, 2, CmdPublishVersion, PublishVersionCommand{Name: "f"})
	upd := fullFunction("f")
	upd.MemoryMB = 1024
	apply(t, f, 3, CmdPutFunction, PutFunctionCommand{Function: upd, Mode: PutUpdate})
	apply(t, f, 4, CmdPublishVersion, PublishVersionCommand{Name: "f"})

	put := func(index uint64, a rpc.Alias, mode PutMode, ifRev uint64) ApplyResult {
		return apply(t, f, index, CmdPutAlias, PutAliasCommand{Alias: &a, Mode: mode, IfRevision: ifRev})
	}
	bad := []struct {
		alias rpc.Alias
		code  *rpc.Error
		msg   string
	}{
		{rpc.Alias{FunctionName: "g", Name: "live", FunctionVersion: "1"}, rpc.ErrResourceNotFound, "g"},
		{rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "9"}, rpc.ErrResourceNotFound, "f:9"},
		{rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1", AdditionalVersion: "9", AdditionalWeight: 0.1}, rpc.ErrResourceNotFound, "f:9"},
		{rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1", AdditionalVersion: "1", AdditionalWeight: 0.1}, rpc.ErrInvalidParameterValue, "already included"},
		{rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1", AdditionalVersion: rpc.VersionLatest, AdditionalWeight: 0.1}, rpc.ErrInvalidParameterValue, "$LATEST"},
		{rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: rpc.VersionLatest, AdditionalVersion: "1", AdditionalWeight: 0.1}, rpc.ErrInvalidParameterValue, "$LATEST"},
		{rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1", AdditionalVersion: "2", AdditionalWeight: 1}, rpc.ErrInvalidParameterValue, "weight"},
		{rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1", AdditionalVersion: "2", AdditionalWeight: -0.5}, rpc.ErrInvalidParameterValue, "weight"},
		{rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1", AdditionalWeight: 0.5}, rpc.ErrInvalidParameterValue, "weight"},
	}
	for _, c := range bad {
		wantErr(t, put(5, c.alias, PutCreate, 0), c.code, c.msg)
	}
	if len(f.Aliases("f")) != 0 {
		t.Fatal("a refused alias was stored")
	}
	res := put(5, rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1", AdditionalVersion: "2", AdditionalWeight: 0.1}, PutCreate, 0)
	if res.Err != nil || res.Alias.Revision != 5 || res.Alias.AdditionalWeight != 0.1 {
		t.Fatalf("create alias = %+v, %v", res.Alias, res.Err)
	}
	wantErr(t, put(6, rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1"}, PutCreate, 0), rpc.ErrResourceConflict, "already exists")
	wantErr(t, put(6, rpc.Alias{FunctionName: "f", Name: "other", FunctionVersion: "1"}, PutUpdate, 0), rpc.ErrResourceNotFound, "other")
	wantErr(t, put(6, rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "2"}, PutUpdate, 4), rpc.ErrPreconditionFailed, "Revision")
	put(6, rpc.Alias{FunctionName: "f", Name: "latest", FunctionVersion: rpc.VersionLatest}, PutCreate, 0)

	// Both versions are in use by "live".
	for _, n := range []int{1, 2} {
		wantErr(t, apply(t, f, 7, CmdDeleteVersion, DeleteVersionCommand{Name: "f", Version: n}), rpc.ErrResourceConflict, "[live]")
	}
	if res = put(8, rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "2"}, PutUpdate, 5); res.Err != nil || res.Alias.AdditionalVersion != "" {
		t.Fatalf("update alias = %+v, %v", res.Alias, res.Err)
	}
	if res = apply(t, f, 9, CmdDeleteVersion, DeleteVersionCommand{Name: "f", Version: 1}); res.Err != nil {
		t.Fatalf("delete of a version no alias uses: %v", res.Err)
	}
	if got := f.Aliases("f"); len(got) != 2 || got[0].Name != "latest" || got[1].Name != "live" {
		t.Fatalf("aliases = %+v", got)
	}
	wantErr(t, apply(t, f, 10, CmdDeleteAlias, DeleteAliasCommand{FunctionName: "f", Name: "gone"}), rpc.ErrResourceNotFound, "gone")
	if res = apply(t, f, 10, CmdDeleteAlias, DeleteAliasCommand{FunctionName: "f", Name: "live"}); res.Err != nil || res.Alias.Name != "live" {
		t.Fatalf("delete alias = %+v", res)
	}
	if _, ok := f.Alias("f", "live"); ok {
		t.Fatal("deleted alias still there")
	}
}

func testURL(fn, qualifier, id string) *rpc.FunctionURL {
	return &rpc.FunctionURL{FunctionName: fn, Qualifier: qualifier, ID: id, AuthType: rpc.URLAuthToken, Token: "beef",
		Cors: &rpc.Cors{AllowOrigins: []string{"https://a.example"}, AllowMethods: []string{"GET"}, MaxAge: 60}, InvokeMode: rpc.URLInvokeBuffered, CreatedMs: 1, LastModifiedMs: 2}
}

var (
	urlID1 = strings.Repeat("a", 32)
	urlID2 = strings.Repeat("b", 32)
	urlID3 = strings.Repeat("c", 32)
)

// TestFunctionURLs: one URL per function and qualifier, unique ids, an
// update keeps the id, deleting the alias or the function deletes its URL
// and everything else of the function.
func TestFunctionURLs(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("f"), Mode: PutCreate})
	apply(t, f, 2, CmdPublishVersion, PublishVersionCommand{Name: "f"})
	apply(t, f, 3, CmdPutAlias, PutAliasCommand{Alias: &rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1"}, Mode: PutCreate})

	wantErr(t, apply(t, f, 4, CmdPutURL, PutURLCommand{URL: testURL("f", "nope", urlID1), Mode: PutCreate}), rpc.ErrResourceNotFound, "nope")
	if res := apply(t, f, 4, CmdPutURL, PutURLCommand{URL: testURL("f", "", urlID1), Mode: PutCreate}); res.Err != nil {
		t.Fatal(res.Err)
	}
	wantErr(t, apply(t, f, 5, CmdPutURL, PutURLCommand{URL: testURL("f", "", urlID2), Mode: PutCreate}), rpc.ErrResourceConflict, "exists")
	wantErr(t, apply(t, f, 5, CmdPutURL, PutURLCommand{URL: testURL("f", "live", urlID1), Mode: PutCreate}), rpc.ErrResourceConflict, "taken")
	if res := apply(t, f, 5, CmdPutURL, PutURLCommand{URL: testURL("f", "live", urlID2), Mode: PutCreate}); res.Err != nil {
		t.Fatal(res.Err)
	}
	upd := testURL("f", "", urlID3)
	upd.AuthType, upd.Token, upd.CreatedMs = rpc.URLAuthNone, "", 99
	if res := apply(t, f, 6, CmdPutURL, PutURLCommand{URL: upd, Mode: PutUpdate}); res.Err != nil || res.URL.ID != urlID1 || res.URL.CreatedMs != 1 || res.URL.AuthType != rpc.URLAuthNone {
		t.Fatalf("update URL = %+v, %v", res.URL, res.Err)
	}
	if u, ok := f.URLByID(urlID1); !ok || u.AuthType != rpc.URLAuthNone {
		t.Fatalf("URLByID after update = %+v, %v", u, ok)
	}
	if _, ok := f.URLByID(urlID3); ok {
		t.Fatal("an update's id was indexed")
	}
	// Deleting the alias deletes its URL.
	apply(t, f, 7, CmdDeleteAlias, DeleteAliasCommand{FunctionName: "f", Name: "live"})
	if _, ok := f.URLByID(urlID2); ok {
		t.Fatal("the URL of a deleted alias is still there")
	}
	wantErr(t, apply(t, f, 8, CmdDeleteURL, DeleteURLCommand{FunctionName: "f", Qualifier: "live"}), rpc.ErrResourceNotFound, "f:live")
	// Deleting the function deletes its versions, aliases and URLs, and
	// a function created again under the name starts at version 1.
	apply(t, f, 9, CmdPutAlias, PutAliasCommand{Alias: &rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1"}, Mode: PutCreate})
	apply(t, f, 10, CmdDeleteFunction, DeleteFunctionCommand{Name: "f"})
	if len(f.Versions("f")) != 0 || len(f.Aliases("f")) != 0 || len(f.URLs("f")) != 0 {
		t.Fatal("a deleted function left versions, aliases or URLs")
	}
	if _, ok := f.URLByID(urlID1); ok {
		t.Fatal("a deleted function's URL id is still indexed")
	}
	apply(t, f, 11, CmdPutFunction, PutFunctionCommand{Function: fullFunction("f"), Mode: PutCreate})
	if res := apply(t, f, 12, CmdPublishVersion, PublishVersionCommand{Name: "f"}); res.Function.Version != "1" {
		t.Fatalf("first version of a re-created function = %s", res.Function.Version)
	}
}

// withVersions returns an FSM holding versions (one deleted), aliases
// (one weighted) and URLs.
func withVersions(t testing.TB) *FSM {
	t.Helper()
	f := NewFSM(FSMOptions{})
	apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("f"), Mode: PutCreate})
	apply(t, f, 2, CmdPutFunction, PutFunctionCommand{Function: fullFunction("g"), Mode: PutCreate})
	apply(t, f, 3, CmdPublishVersion, PublishVersionCommand{Name: "f", Description: "one"})
	for i, mem := range []int{512, 1024, 2048} {
		upd := fullFunction("f")
		upd.MemoryMB = mem
		apply(t, f, uint64(4+2*i), CmdPutFunction, PutFunctionCommand{Function: upd, Mode: PutUpdate})
		apply(t, f, uint64(5+2*i), CmdPublishVersion, PublishVersionCommand{Name: "f"})
	}
	apply(t, f, 10, CmdDeleteVersion, DeleteVersionCommand{Name: "f", Version: 4})
	apply(t, f, 11, CmdPutAlias, PutAliasCommand{Alias: &rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1", AdditionalVersion: "3", AdditionalWeight: 0.25, Description: "canary"}, Mode: PutCreate})
	apply(t, f, 12, CmdPutAlias, PutAliasCommand{Alias: &rpc.Alias{FunctionName: "f", Name: "dev", FunctionVersion: rpc.VersionLatest}, Mode: PutCreate})
	apply(t, f, 13, CmdPutURL, PutURLCommand{URL: testURL("f", "live", urlID1), Mode: PutCreate})
	apply(t, f, 14, CmdPutURL, PutURLCommand{URL: testURL("f", "", urlID2), Mode: PutCreate})
	apply(t, f, 15, CmdPutURL, PutURLCommand{URL: testURL("g", "", urlID3), Mode: PutCreate})
	return f
}

func TestVersionsSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	src := withVersions(t)
	data := persist(t, src)
	dst := NewFSM(FSMOptions{})
	if err := restore(dst, data); err != nil {
		t.Fatal(err)
	}
	if got, want := dst.Versions("f"), src.Versions("f"); !reflect.DeepEqual(got, want) || len(got) != 3 {
		t.Fatalf("versions:\n got %+v\nwant %+v", got, want)
	}
	if got, want := dst.Aliases("f"), src.Aliases("f"); !reflect.DeepEqual(got, want) {
		t.Fatalf("aliases:\n got %+v\nwant %+v", got, want)
	}
	for _, fn := range []string{"f", "g"} {
		if got, want := dst.URLs(fn), src.URLs(fn); !reflect.DeepEqual(got, want) {
			t.Fatalf("URLs of %s:\n got %+v\nwant %+v", fn, got, want)
		}
	}
	if u, ok := dst.URLByID(urlID3); !ok || u.FunctionName != "g" {
		t.Fatal("restored URL ids not indexed")
	}
	if !bytes.Equal(persist(t, dst), data) {
		t.Fatal("restored state persists differently")
	}
	// The counter survives: the next version is 5 although 4 was deleted.
	upd := fullFunction("f")
	upd.MemoryMB = 4096
	apply(t, dst, 20, CmdPutFunction, PutFunctionCommand{Function: upd, Mode: PutUpdate})
	if res := apply(t, dst, 21, CmdPublishVersion, PublishVersionCommand{Name: "f"}); res.Function.Version != "5" {
		t.Fatalf("version after restore = %s, want 5", res.Function.Version)
	}
}

// TestRestoreRejectsBadVersions: records that refer to what is not before
// them, appear twice or break the routing rules are refused.
func TestRestoreRejectsBadVersions(t *testing.T) {
	t.Parallel()
	type rec struct {
		t snapshotRecordType
		v any
	}
	build := func(recs ...rec) []byte {
		return snapshotBytes(t, snapshotVersion, func(enc *msgpack.Encoder) {
			for _, r := range recs {
				_ = enc.EncodeUint8(uint8(r.t))
				_ = enc.Encode(r.v)
			}
			_ = enc.EncodeUint8(uint8(recordEnd))
			_ = enc.EncodeUint64(uint64(len(recs)))
		})
	}
	fn := rec{recordFunction, fullFunction("f")}
	ctr := rec{recordVersionCounter, versionCounterRecord{Name: "f", Last: 2}}
	v1 := rec{recordVersion, fullVersion("f", "1")}
	alias := rec{recordAlias, &rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1"}}
	cases := map[string][]byte{
		"counter before its function": build(ctr, fn),
		"counter of zero":             build(fn, rec{recordVersionCounter, versionCounterRecord{Name: "f"}}),
		"counter twice":               build(fn, ctr, ctr),
		"version past its counter":    build(fn, ctr, rec{recordVersion, fullVersion("f", "3")}),
		"version not a number":        build(fn, ctr, rec{recordVersion, fullVersion("f", "x")}),
		"version twice":               build(fn, ctr, v1, v1),
		"version without function":    build(ctr, v1),
		"alias to a missing version":  build(fn, ctr, rec{recordAlias, &rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "2"}}),
		"alias weight out of range":   build(fn, ctr, v1, rec{recordVersion, fullVersion("f", "2")}, rec{recordAlias, &rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "1", AdditionalVersion: "2", AdditionalWeight: 1.5}}),
		"alias with a numeric name":   build(fn, ctr, v1, rec{recordAlias, &rpc.Alias{FunctionName: "f", Name: "12", FunctionVersion: "1"}}),
		"alias twice":                 build(fn, ctr, v1, alias, alias),
		"URL on a missing alias":      build(fn, rec{recordURL, testURL("f", "live", urlID1)}),
		"URL with a bad id":           build(fn, rec{recordURL, testURL("f", "", "short")}),
		"URL id twice":                build(fn, ctr, v1, alias, rec{recordURL, testURL("f", "", urlID1)}, rec{recordURL, testURL("f", "live", urlID1)}),
		"URL twice":                   build(fn, rec{recordURL, testURL("f", "", urlID1)}, rec{recordURL, testURL("f", "", urlID2)}),
	}
	for name, data := range cases {
		f := withVersions(t)
		before := persist(t, f)
		if err := restore(f, data); err == nil {
			t.Errorf("%s: restored", name)
		}
		if !bytes.Equal(persist(t, f), before) {
			t.Errorf("%s: a refused restore changed the state", name)
		}
	}
	if err := restore(NewFSM(FSMOptions{}), build(fn, ctr, v1, alias, rec{recordURL, testURL("f", "live", urlID1)})); err != nil {
		t.Fatalf("a valid hand-built snapshot: %v", err)
	}
}

func TestBuildAlias(t *testing.T) {
	t.Parallel()
	ok := []struct {
		version string
		weights map[string]float64
	}{{"1", nil}, {rpc.VersionLatest, nil}, {"1", map[string]float64{"2": 0}}, {"1", map[string]float64{"2": 0.999}}}
	for _, c := range ok {
		if _, err := BuildAlias("f", "live", c.version, "", c.weights); err != nil {
			t.Errorf("BuildAlias(%s, %v): %v", c.version, c.weights, err)
		}
	}
	bad := []struct {
		name, version string
		weights       map[string]float64
	}{
		{"", "1", nil}, {"123", "1", nil}, {"a b", "1", nil}, {strings.Repeat("a", 129), "1", nil},
		{"live", "", nil}, {"live", "latest", nil}, {"live", "01", nil},
		{"live", "1", map[string]float64{"2": 1}}, {"live", "1", map[string]float64{"2": -0.1}},
		{"live", "1", map[string]float64{"$LATEST": 0.1}}, {"live", "1", map[string]float64{"x": 0.1}},
		{"live", "1", map[string]float64{"2": 0.1, "3": 0.1}},
	}
	for _, c := range bad {
		if _, err := BuildAlias("f", c.name, c.version, "", c.weights); !errors.Is(err, rpc.ErrInvalidParameterValue) {
			t.Errorf("BuildAlias(%q, %q, %v) = %v, want InvalidParameterValueException", c.name, c.version, c.weights, err)
		}
	}
}

func TestValidateQualifierAndURL(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"", "$LATEST", "1", "42", "live", "blue-green_2"} {
		if err := ValidateQualifier(q); err != nil {
			t.Errorf("ValidateQualifier(%q): %v", q, err)
		}
	}
	for _, q := range []string{"$latest", "a:b", "a b", strings.Repeat("x", 129)} {
		if ValidateQualifier(q) == nil {
			t.Errorf("ValidateQualifier(%q) accepted", q)
		}
	}
	good := testURL("f", "live", urlID1)
	if err := ValidateURL(good); err != nil {
		t.Fatal(err)
	}
	streamed := testURL("f", "live", urlID1)
	streamed.InvokeMode = rpc.URLInvokeStreaming
	if err := ValidateURL(streamed); err != nil {
		t.Fatalf("RESPONSE_STREAM: %v", err)
	}
	mutations := map[string]func(u *rpc.FunctionURL){
		"version qualifier": func(u *rpc.FunctionURL) { u.Qualifier = "3" },
		"AWS_IAM":           func(u *rpc.FunctionURL) { u.AuthType = "AWS_IAM" },
		"bad auth":          func(u *rpc.FunctionURL) { u.AuthType = "open" },
		"bad mode":          func(u *rpc.FunctionURL) { u.InvokeMode = "fast" },
		"bad method":        func(u *rpc.FunctionURL) { u.Cors.AllowMethods = []string{"BREW"} },
		"header injection":  func(u *rpc.FunctionURL) { u.Cors.AllowOrigins = []string{"https://a\r\nX: y"} },
		"max age":           func(u *rpc.FunctionURL) { u.Cors.MaxAge = 86401 },
		"too many origins":  func(u *rpc.FunctionURL) { u.Cors.AllowOrigins = make([]string, 101) },
	}
	for name, mut := range mutations {
		u := testURL("f", "live", urlID1)
		mut(u)
		if err := ValidateURL(u); !errors.Is(err, rpc.ErrInvalidParameterValue) {
			t.Errorf("%s: %v, want InvalidParameterValueException", name, err)
		}
	}
}

// FuzzVersionsApply applies arbitrary entries of the version, alias and
// URL commands to a populated state: a failed apply changes nothing, and
// after any apply the state keeps its invariants (checkVersionState).
func FuzzVersionsApply(f *testing.F) {
	f.Add(mustEncode(f, CmdPublishVersion, PublishVersionCommand{Name: "f"}))
	f.Add(mustEncode(f, CmdPublishVersion, PublishVersionCommand{Name: "f", IfRevision: 7, IfCodeSHA256: "x"}))
	f.Add(mustEncode(f, CmdDeleteVersion, DeleteVersionCommand{Name: "f", Version: 1}))
	f.Add(mustEncode(f, CmdDeleteVersion, DeleteVersionCommand{Name: "f", Version: 2}))
	f.Add(mustEncode(f, CmdPutAlias, PutAliasCommand{Alias: &rpc.Alias{FunctionName: "f", Name: "x", FunctionVersion: "2", AdditionalVersion: "3", AdditionalWeight: 0.5}, Mode: PutCreate}))
	f.Add(mustEncode(f, CmdPutAlias, PutAliasCommand{Alias: &rpc.Alias{FunctionName: "f", Name: "live", FunctionVersion: "9"}, Mode: PutUpdate}))
	f.Add(mustEncode(f, CmdDeleteAlias, DeleteAliasCommand{FunctionName: "f", Name: "live"}))
	f.Add(mustEncode(f, CmdPutURL, PutURLCommand{URL: testURL("f", "dev", strings.Repeat("d", 32)), Mode: PutCreate}))
	f.Add(mustEncode(f, CmdPutURL, PutURLCommand{URL: testURL("f", "", strings.Repeat("e", 32)), Mode: PutUpdate}))
	f.Add(mustEncode(f, CmdDeleteURL, DeleteURLCommand{FunctionName: "f", Qualifier: "live"}))
	f.Add(mustEncode(f, CmdDeleteFunction, DeleteFunctionCommand{Name: "f"}))
	f.Add([]byte{byte(CmdPutAlias), 0xc0})
	f.Add([]byte{byte(CmdPutURL), 0x81, 0xa3, 'u', 'r', 'l', 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || CommandVersion(CommandType(data[0])) == 0 {
			return
		}
		fsm := withVersions(t)
		before := persist(t, fsm)
		res := applyRaw(t, fsm, 100, data)
		if res.Err != nil && !bytes.Equal(persist(t, fsm), before) {
			t.Fatalf("failed apply (%v) changed the state", res.Err)
		}
		checkVersionState(t, fsm)
	})
}

// checkVersionState checks versionState's invariants (its type comment),
// and that the state restores from its own snapshot.
func checkVersionState(t *testing.T, f *FSM) {
	t.Helper()
	f.mu.RLock()
	s := f.state
	vs := &s.versions
	for name, set := range vs.byFn {
		if _, ok := s.functions[name]; !ok {
			t.Fatalf("versions of missing function %q", name)
		}
		for n, v := range set {
			if n > vs.last[name] || v.Version == "" || v.Name != name {
				t.Fatalf("version %d of %q: %+v (counter %d)", n, name, v, vs.last[name])
			}
		}
	}
	for name, set := range vs.aliases {
		if _, ok := s.functions[name]; !ok {
			t.Fatalf("aliases of missing function %q", name)
		}
		for _, a := range set {
			if err := vs.checkRouting(rpc.ARNScope{}, a); err != nil {
				t.Fatalf("alias %s:%s breaks its routing: %v", name, a.Name, err)
			}
		}
	}
	ids := 0
	for name, set := range vs.urls {
		for q, u := range set {
			if _, ok := s.functions[name]; !ok {
				t.Fatalf("URL of missing function %q", name)
			}
			if _, ok := vs.aliases[name][q]; q != "" && !ok {
				t.Fatalf("URL of missing alias %s:%s", name, q)
			}
			if vs.urlIDs[u.ID] != u {
				t.Fatalf("URL %s not indexed", u.ID)
			}
			ids++
		}
	}
	if ids != len(vs.urlIDs) {
		t.Fatalf("%d URLs, %d ids indexed", ids, len(vs.urlIDs))
	}
	f.mu.RUnlock()
	if err := restore(NewFSM(FSMOptions{}), persist(t, f)); err != nil {
		t.Fatalf("the state does not restore from its own snapshot: %v", err)
	}
}

// TestVersionStateBounded: a function's aliases and versions are bounded
// (the replicated state a client can make).
func TestVersionStateBounded(t *testing.T) {
	t.Parallel()
	f := NewFSM(FSMOptions{})
	apply(t, f, 1, CmdPutFunction, PutFunctionCommand{Function: fullFunction("f"), Mode: PutCreate})
	apply(t, f, 2, CmdPublishVersion, PublishVersionCommand{Name: "f"})
	idx := uint64(3)
	for i := 0; i < MaxAliases; i++ {
		if res := apply(t, f, idx, CmdPutAlias, PutAliasCommand{Alias: &rpc.Alias{FunctionName: "f", Name: "a" + strconv.Itoa(i), FunctionVersion: "1"}, Mode: PutCreate}); res.Err != nil {
			t.Fatal(res.Err)
		}
		idx++
	}
	wantErr(t, apply(t, f, idx, CmdPutAlias, PutAliasCommand{Alias: &rpc.Alias{FunctionName: "f", Name: "one-more", FunctionVersion: "1"}, Mode: PutCreate}), rpc.ErrInvalidParameterValue, "at most")
	// Updating one of them is not a new one.
	if res := apply(t, f, idx, CmdPutAlias, PutAliasCommand{Alias: &rpc.Alias{FunctionName: "f", Name: "a0", FunctionVersion: rpc.VersionLatest}, Mode: PutUpdate}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if err := restore(NewFSM(FSMOptions{}), persist(t, f)); err != nil {
		t.Fatalf("a state at the bound does not restore: %v", err)
	}
}
