package scheduler

import (
	"sort"

	"nimbus/rpc"
)

// The function registry: its two commands and its readers.
//
// Apply checks only what the state itself needs (a function with a name);
// the request rules (NormalizeCreate, ApplyConfigUpdate) run in the proposer,
// before the command enters the log. Keeping them out of Apply means a later
// release can change a rule without making replicas that replay old entries
// disagree with the ones that applied them.

// applyPutFunction creates or replaces a function. The stored value is a copy
// of the command's, with Revision set to the entry's index.
func (f *FSM) applyPutFunction(index uint64, body []byte) ApplyResult {
	var cmd PutFunctionCommand
	if err := decodeCommand(CmdPutFunction, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if cmd.Function == nil {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: no function", CmdPutFunction)}
	}
	name := cmd.Function.Name
	if name == "" {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: no function name", CmdPutFunction)}
	}
	if cmd.Mode != PutCreate && cmd.Mode != PutUpdate {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: unknown mode %d", CmdPutFunction, uint8(cmd.Mode))}
	}

	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		old, exists := s.functions[name]
		switch {
		case cmd.Mode == PutCreate && exists:
			return ApplyResult{Err: rpc.Errorf(rpc.CodeResourceConflict, "Function already exist: %s", name)}, nil
		case cmd.Mode == PutUpdate && !exists:
			return ApplyResult{Err: errFunctionNotFound(name)}, nil
		case cmd.Mode == PutUpdate && cmd.IfRevision != 0 && cmd.IfRevision != old.Revision:
			return ApplyResult{Err: rpc.Errorf(rpc.CodeResourceConflict,
				"The Revision Id provided does not match the latest Revision Id. Call the GetFunction API to retrieve the latest Revision Id")}, nil
		}
		stored := storedCopy(cmd.Function)
		stored.Revision = index
		stored.Version = "" // $LATEST; versions are published (versions.go)
		s.functions[name] = stored
		return ApplyResult{Function: stored}, []functionChange{{old: old, new: stored}}
	})
}

// applyDeleteFunction removes a function and its reserved concurrency; the
// result holds the removed value.
func (f *FSM) applyDeleteFunction(index uint64, body []byte) ApplyResult {
	var cmd DeleteFunctionCommand
	if err := decodeCommand(CmdDeleteFunction, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		old, exists := s.functions[cmd.Name]
		if !exists {
			return ApplyResult{Err: errFunctionNotFound(cmd.Name)}, nil
		}
		delete(s.functions, cmd.Name)
		s.deleteReservation(cmd.Name)
		s.dropEventConfigs(cmd.Name)      // its own, its versions' and aliases'
		s.versions.dropFunction(cmd.Name) // its versions, aliases and URLs
		return ApplyResult{Function: old}, []functionChange{{old: old}}
	})
}

// storedCopy returns the form of fc the state stores: a deep copy, with an
// empty environment as nil (so that a value reads the same after a msgpack
// round trip, where omitempty drops an empty map).
func storedCopy(fc *rpc.FunctionConfig) *rpc.FunctionConfig {
	c := fc.Clone()
	if len(c.Env) == 0 {
		c.Env = nil
	}
	return c
}

func errFunctionNotFound(name string) error {
	return rpc.Errorf(rpc.CodeResourceNotFound, "Function not found: %s", name)
}

// Function returns the stored function called name. The value is immutable:
// Clone it before changing it.
func (f *FSM) Function(name string) (*rpc.FunctionConfig, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fc, ok := f.state.functions[name]
	return fc, ok
}

// Functions returns every stored function, sorted by name. The values are
// immutable; the slice is the caller's.
func (f *FSM) Functions() []*rpc.FunctionConfig {
	f.mu.RLock()
	out := make([]*rpc.FunctionConfig, 0, len(f.state.functions))
	for _, fc := range f.state.functions {
		out = append(out, fc)
	}
	f.mu.RUnlock()
	sortFunctions(out)
	return out
}

func sortFunctions(fs []*rpc.FunctionConfig) {
	sort.Slice(fs, func(i, j int) bool { return fs[i].Name < fs[j].Name })
}

// diffFunctions lists, in name order, the functions that differ between two
// registries: added (old nil), removed (new nil) or replaced by another value.
func diffFunctions(before, after map[string]*rpc.FunctionConfig) []functionChange {
	names := make([]string, 0, len(before)+len(after))
	for name, fc := range before {
		if next, ok := after[name]; !ok || !sameFunction(fc, next) {
			names = append(names, name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	changes := make([]functionChange, len(names))
	for i, name := range names {
		changes[i] = functionChange{old: before[name], new: after[name]}
	}
	return changes
}

// sameFunction reports whether two stored values are the same version of a
// function. A revision is the index of the entry that stored the value, so
// equal revisions mean the same value.
func sameFunction(a, b *rpc.FunctionConfig) bool {
	return a == b || a.Revision == b.Revision
}
