package scheduler

import (
	"maps"
	"sort"
	"strconv"

	"nimbus/rpc"
)

// Versions: immutable numbered copies of a function's $LATEST.
//
// A version is an *rpc.FunctionConfig with Version set to its number and
// Revision left as the $LATEST revision it copies. Numbers start at 1 for
// each function and are never reused while the function exists: the
// highest number ever published is kept (lastVersion) even when that
// version is deleted. Deleting the function forgets all of it, as Lambda
// does (a function created again under the name starts at 1).

// versionState is the replicated state of versions, aliases and function
// URLs (aliases.go, urls.go). Its maps are changed only under FSM.mu by
// the applyX functions; the values they hold are immutable.
//
// Invariants: every function named here is in fsmState.functions; every
// alias points at $LATEST or at a version in byFn, and its additional
// version is a version in byFn; every URL's qualifier is "" or an alias in
// aliases; urlIDs indexes exactly the URLs in urls.
type versionState struct {
	last    map[string]int                         // function -> highest version ever published
	byFn    map[string]map[int]*rpc.FunctionConfig // function -> number -> version
	aliases map[string]map[string]*rpc.Alias       // function -> alias name -> alias
	urls    map[string]map[string]*rpc.FunctionURL // function -> qualifier ("" or alias) -> URL
	urlIDs  map[string]*rpc.FunctionURL            // URL id -> URL
}

func newVersionState() versionState {
	return versionState{
		last:    map[string]int{},
		byFn:    map[string]map[int]*rpc.FunctionConfig{},
		aliases: map[string]map[string]*rpc.Alias{},
		urls:    map[string]map[string]*rpc.FunctionURL{},
		urlIDs:  map[string]*rpc.FunctionURL{},
	}
}

// dropFunction forgets everything of a deleted function.
func (vs *versionState) dropFunction(name string) {
	delete(vs.last, name)
	delete(vs.byFn, name)
	delete(vs.aliases, name)
	for _, u := range vs.urls[name] {
		delete(vs.urlIDs, u.ID)
	}
	delete(vs.urls, name)
}

// MaxVersions bounds the versions one function may have at once; a
// publish past it fails (Lambda bounds them by code storage instead).
const MaxVersions = 10000

// PublishVersionCommand publishes $LATEST as the next version
// (CmdPublishVersion). Preconditions: IfRevision (if not 0) must be
// $LATEST's Revision and IfCodeSHA256 (if set) its CodeSHA256, else
// PreconditionFailedException. When $LATEST's code and configuration are
// those of the newest version, nothing is published and the result is
// that version (Lambda's answer to an unchanged publish).
type PublishVersionCommand struct {
	Name           string `msgpack:"name"`
	Description    string `msgpack:"description,omitempty"`
	IfRevision     uint64 `msgpack:"if_revision,omitempty"`
	IfCodeSHA256   string `msgpack:"if_code_sha256,omitempty"`
	LastModifiedMs int64  `msgpack:"last_modified_ms"`
}

// DeleteVersionCommand deletes a published version (CmdDeleteVersion):
// ResourceNotFoundException if it does not exist, ResourceConflictException
// if an alias routes to it.
type DeleteVersionCommand struct {
	Name    string `msgpack:"name"`
	Version int    `msgpack:"version"`
}

func (PublishVersionCommand) CommandType() CommandType { return CmdPublishVersion }
func (DeleteVersionCommand) CommandType() CommandType  { return CmdDeleteVersion }

func (f *FSM) applyPublishVersion(body []byte) ApplyResult {
	var cmd PublishVersionCommand
	if err := decodeCommand(CmdPublishVersion, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		fn, ok := s.functions[cmd.Name]
		if !ok {
			return ApplyResult{Err: errFunctionNotFound(cmd.Name)}, nil
		}
		if cmd.IfRevision != 0 && cmd.IfRevision != fn.Revision {
			return ApplyResult{Err: rpc.Errorf(rpc.CodePreconditionFailed,
				"The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")}, nil
		}
		if cmd.IfCodeSHA256 != "" && cmd.IfCodeSHA256 != fn.CodeSHA256 {
			return ApplyResult{Err: rpc.Errorf(rpc.CodePreconditionFailed,
				"CodeSHA256 (%s) is different from current CodeSHA256 in $LATEST (%s). Please try again with the CodeSHA256 in $LATEST.", cmd.IfCodeSHA256, fn.CodeSHA256)}, nil
		}
		vs := &s.versions
		versions := vs.byFn[cmd.Name]
		if newest := newestVersion(versions); newest != nil && sameContent(newest, fn) {
			return ApplyResult{Function: newest}, nil
		}
		if len(versions) >= MaxVersions {
			return ApplyResult{Err: rpc.Errorf(rpc.CodeCodeStorageExceeded, "Function %s has %d versions, the most it may have: delete some first", cmd.Name, MaxVersions)}, nil
		}
		n := vs.last[cmd.Name] + 1
		v := storedCopy(fn)
		v.Version = strconv.Itoa(n)
		if cmd.Description != "" { // else $LATEST's, as Lambda's default
			v.Description = cmd.Description
		}
		v.LastModifiedMs = cmd.LastModifiedMs
		if versions == nil {
			versions = map[int]*rpc.FunctionConfig{}
			vs.byFn[cmd.Name] = versions
		}
		versions[n] = v
		vs.last[cmd.Name] = n
		return ApplyResult{Function: v}, nil
	})
}

func (f *FSM) applyDeleteVersion(body []byte) ApplyResult {
	var cmd DeleteVersionCommand
	if err := decodeCommand(CmdDeleteVersion, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		if _, ok := s.functions[cmd.Name]; !ok {
			return ApplyResult{Err: errFunctionNotFound(cmd.Name)}, nil
		}
		vs := &s.versions
		v, ok := vs.byFn[cmd.Name][cmd.Version]
		if !ok {
			return ApplyResult{Err: errVersionNotFound(f.arns, cmd.Name, strconv.Itoa(cmd.Version))}, nil
		}
		var users []string
		for _, a := range vs.aliases[cmd.Name] {
			if a.FunctionVersion == v.Version || a.AdditionalVersion == v.Version {
				users = append(users, a.Name)
			}
		}
		if len(users) > 0 {
			sort.Strings(users)
			return ApplyResult{Err: rpc.Errorf(rpc.CodeResourceConflict,
				"Unable to delete version because the following aliases reference it: %v", users)}, nil
		}
		delete(vs.byFn[cmd.Name], cmd.Version)
		if len(vs.byFn[cmd.Name]) == 0 {
			delete(vs.byFn, cmd.Name)
		}
		delete(s.eventConfigs, eventConfigKey(cmd.Name, strconv.Itoa(cmd.Version)))
		return ApplyResult{Function: v}, nil
	})
}

// newestVersion is the highest-numbered version of a function's set.
func newestVersion(versions map[int]*rpc.FunctionConfig) *rpc.FunctionConfig {
	best := 0
	for n := range versions {
		best = max(best, n)
	}
	return versions[best]
}

// sameContent reports whether a version holds $LATEST's code and
// configuration as they are now.
func sameContent(v, latest *rpc.FunctionConfig) bool {
	return v.CodeSHA256 == latest.CodeSHA256 && v.CodeSize == latest.CodeSize &&
		v.Runtime == latest.Runtime && v.Handler == latest.Handler &&
		v.MemoryMB == latest.MemoryMB && v.TimeoutSec == latest.TimeoutSec &&
		v.TmpSizeMB() == latest.TmpSizeMB() &&
		maps.Equal(v.Env, latest.Env)
}

func errVersionNotFound(arns rpc.ARNScope, name, version string) error {
	return rpc.Errorf(rpc.CodeResourceNotFound, "Function not found: %s", arns.Function(name, version))
}

// ParseVersion reads a published version's number: digits, 1 or more.
// $LATEST and alias names are not versions (ok false).
func ParseVersion(q string) (int, bool) {
	if q == "" || len(q) > 10 || q[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(q); i++ {
		if !isASCIIDigit(q[i]) {
			return 0, false
		}
	}
	n, err := strconv.Atoi(q)
	return n, err == nil && n > 0
}

// Version returns a function's published version n (immutable).
func (f *FSM) Version(name string, n int) (*rpc.FunctionConfig, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, ok := f.state.versions.byFn[name][n]
	return v, ok
}

// Versions returns a function's published versions in ascending order.
func (f *FSM) Versions(name string) []*rpc.FunctionConfig {
	f.mu.RLock()
	out := make([]*rpc.FunctionConfig, 0, len(f.state.versions.byFn[name]))
	for _, v := range f.state.versions.byFn[name] {
		out = append(out, v)
	}
	f.mu.RUnlock()
	sortVersions(out)
	return out
}

func sortVersions(vs []*rpc.FunctionConfig) {
	sort.Slice(vs, func(i, j int) bool {
		if vs[i].Name != vs[j].Name {
			return vs[i].Name < vs[j].Name
		}
		a, _ := strconv.Atoi(vs[i].Version)
		b, _ := strconv.Atoi(vs[j].Version)
		return a < b
	})
}
