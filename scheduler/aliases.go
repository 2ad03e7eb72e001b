package scheduler

import (
	"sort"
	"strconv"

	"nimbus/rpc"
)

// Aliases: named pointers to a version, with at most one additional
// version taking a share of the invocations. Apply checks what the state
// needs (the function and the versions exist); the request rules (the
// name's pattern, the weight's range) run in the proposer (ValidateAlias).

// PutAliasCommand creates or replaces an alias (CmdPutAlias). Mode
// PutCreate fails with ResourceConflictException if the alias exists,
// PutUpdate with ResourceNotFoundException if it does not; IfRevision (if
// not 0) must equal the stored alias's Revision (else
// PreconditionFailedException). Apply sets Revision to the entry's index.
type PutAliasCommand struct {
	Alias      *rpc.Alias `msgpack:"alias"`
	Mode       PutMode    `msgpack:"mode"`
	IfRevision uint64     `msgpack:"if_revision,omitempty"`
}

// DeleteAliasCommand deletes an alias and the URL on it
// (CmdDeleteAlias); ResourceNotFoundException if it does not exist.
type DeleteAliasCommand struct {
	FunctionName string `msgpack:"function"`
	Name         string `msgpack:"name"`
}

func (PutAliasCommand) CommandType() CommandType    { return CmdPutAlias }
func (DeleteAliasCommand) CommandType() CommandType { return CmdDeleteAlias }

func (f *FSM) applyPutAlias(index uint64, body []byte) ApplyResult {
	var cmd PutAliasCommand
	if err := decodeCommand(CmdPutAlias, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	a := cmd.Alias
	if a == nil || a.FunctionName == "" || a.Name == "" {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: no alias", CmdPutAlias)}
	}
	if cmd.Mode != PutCreate && cmd.Mode != PutUpdate {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: unknown mode %d", CmdPutAlias, uint8(cmd.Mode))}
	}
	// The state needs the name's pattern: a qualifier must read as either
	// a version or an alias, never both.
	if err := ValidateAliasName(a.Name); err != nil {
		return ApplyResult{Err: err}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		if _, ok := s.functions[a.FunctionName]; !ok {
			return ApplyResult{Err: errFunctionNotFound(a.FunctionName)}, nil
		}
		vs := &s.versions
		old, exists := vs.aliases[a.FunctionName][a.Name]
		switch {
		case cmd.Mode == PutCreate && exists:
			return ApplyResult{Err: rpc.Errorf(rpc.CodeResourceConflict, "Alias already exists: %s", f.arns.Function(a.FunctionName, a.Name))}, nil
		case cmd.Mode == PutUpdate && !exists:
			return ApplyResult{Err: errAliasNotFound(f.arns, a.FunctionName, a.Name)}, nil
		case cmd.Mode == PutUpdate && cmd.IfRevision != 0 && cmd.IfRevision != old.Revision:
			return ApplyResult{Err: rpc.Errorf(rpc.CodePreconditionFailed,
				"The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")}, nil
		}
		if err := vs.checkRouting(f.arns, a); err != nil {
			return ApplyResult{Err: err}, nil
		}
		if !exists && len(vs.aliases[a.FunctionName]) >= MaxAliases {
			return ApplyResult{Err: errTooManyAliases(a.FunctionName)}, nil
		}
		stored := *a
		stored.Revision = index
		if vs.aliases[a.FunctionName] == nil {
			vs.aliases[a.FunctionName] = map[string]*rpc.Alias{}
		}
		vs.aliases[a.FunctionName][a.Name] = &stored
		return ApplyResult{Alias: &stored}, nil
	})
}

// checkRouting checks an alias against the versions that exist: the
// primary is $LATEST or a version; the additional version, if any, is a
// version other than the primary, the primary is then not $LATEST, and
// the weight is in [0, 1).
func (vs *versionState) checkRouting(arns rpc.ARNScope, a *rpc.Alias) error {
	exists := func(v string) bool {
		n, ok := ParseVersion(v)
		_, found := vs.byFn[a.FunctionName][n]
		return ok && found
	}
	if a.FunctionVersion != rpc.VersionLatest && !exists(a.FunctionVersion) {
		return errVersionNotFound(arns, a.FunctionName, a.FunctionVersion)
	}
	if a.AdditionalVersion == "" {
		if a.AdditionalWeight != 0 {
			return rpc.Errorf(rpc.CodeInvalidParameterValue, "A routing weight needs a version to route to")
		}
		return nil
	}
	switch {
	case a.AdditionalVersion == rpc.VersionLatest || a.FunctionVersion == rpc.VersionLatest:
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "$LATEST is not supported for an alias pointing to more than 1 version")
	case a.AdditionalVersion == a.FunctionVersion:
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "Invalid function version %s. Function version %s is already included in routing configuration.", a.AdditionalVersion, a.AdditionalVersion)
	case !exists(a.AdditionalVersion):
		return errVersionNotFound(arns, a.FunctionName, a.AdditionalVersion)
	case !(a.AdditionalWeight >= 0 && a.AdditionalWeight < 1):
		return errWeightRange(a.AdditionalWeight)
	}
	return nil
}

func errWeightRange(w float64) error {
	return rpc.Errorf(rpc.CodeInvalidParameterValue,
		"1 validation error detected: Value '%s' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null] and the weight of the additional version must be below 1.0",
		strconv.FormatFloat(w, 'g', -1, 64))
}

func (f *FSM) applyDeleteAlias(body []byte) ApplyResult {
	var cmd DeleteAliasCommand
	if err := decodeCommand(CmdDeleteAlias, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		vs := &s.versions
		a, ok := vs.aliases[cmd.FunctionName][cmd.Name]
		if !ok {
			return ApplyResult{Err: errAliasNotFound(f.arns, cmd.FunctionName, cmd.Name)}, nil
		}
		delete(vs.aliases[cmd.FunctionName], cmd.Name)
		if len(vs.aliases[cmd.FunctionName]) == 0 {
			delete(vs.aliases, cmd.FunctionName)
		}
		vs.deleteURL(cmd.FunctionName, cmd.Name)
		delete(s.eventConfigs, eventConfigKey(cmd.FunctionName, cmd.Name))
		return ApplyResult{Alias: a}, nil
	})
}

func errAliasNotFound(arns rpc.ARNScope, fn, alias string) error {
	return rpc.Errorf(rpc.CodeResourceNotFound, "Alias not found: %s", arns.Function(fn, alias))
}

// Alias returns one alias (immutable).
func (f *FSM) Alias(fn, name string) (*rpc.Alias, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a, ok := f.state.versions.aliases[fn][name]
	return a, ok
}

// Aliases returns a function's aliases sorted by name.
func (f *FSM) Aliases(fn string) []*rpc.Alias {
	f.mu.RLock()
	out := make([]*rpc.Alias, 0, len(f.state.versions.aliases[fn]))
	for _, a := range f.state.versions.aliases[fn] {
		out = append(out, a)
	}
	f.mu.RUnlock()
	sortAliases(out)
	return out
}

func sortAliases(as []*rpc.Alias) {
	sort.Slice(as, func(i, j int) bool {
		if as[i].FunctionName != as[j].FunctionName {
			return as[i].FunctionName < as[j].FunctionName
		}
		return as[i].Name < as[j].Name
	})
}

// MaxAliases bounds one function's aliases (and so its URLs), so that
// the replicated state a client can make stays bounded.
const MaxAliases = 1000

func errTooManyAliases(fn string) error {
	return rpc.Errorf(rpc.CodeInvalidParameterValue, "Function %s has %d aliases, at most what it may have: delete some first", fn, MaxAliases)
}

// MaxAliasLength is Lambda's limit on an alias name.
const MaxAliasLength = 128

// ValidateAliasName checks an alias name: 1 to 128 of [a-zA-Z0-9-_], not
// all digits (that would read as a version).
func ValidateAliasName(name string) error {
	bad := func(constraint string) error {
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'name' failed to satisfy constraint: %s", name, constraint)
	}
	if name == "" || len(name) > MaxAliasLength {
		return bad("Member must have length between 1 and 128")
	}
	digits := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isASCIILetter(c) || isASCIIDigit(c) || c == '-' || c == '_') {
			return bad("Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)")
		}
		digits = digits && isASCIIDigit(c)
	}
	if digits {
		return bad("Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)")
	}
	return nil
}

// ValidateQualifier checks a qualifier: $LATEST, a version number or an
// alias name ("" is no qualifier, and valid).
func ValidateQualifier(q string) error {
	if q == "" || q == rpc.VersionLatest {
		return nil
	}
	if _, ok := ParseVersion(q); ok {
		return nil
	}
	if ValidateAliasName(q) != nil {
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)", q)
	}
	return nil
}

// BuildAlias validates an alias's fields with Lambda's rules and returns
// the alias to propose (its versions' existence is Apply's to check).
// weights holds at most one version.
func BuildAlias(fn, name, version, description string, weights map[string]float64) (*rpc.Alias, error) {
	if err := ValidateName(fn); err != nil {
		return nil, err
	}
	if err := ValidateAliasName(name); err != nil {
		return nil, err
	}
	if version == "" {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value null at 'functionVersion' failed to satisfy constraint: Member must not be null")
	}
	if _, ok := ParseVersion(version); !ok && version != rpc.VersionLatest {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'functionVersion' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)", version)
	}
	if len(description) > 256 {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 256")
	}
	a := &rpc.Alias{FunctionName: fn, Name: name, FunctionVersion: version, Description: description}
	if len(weights) > 1 {
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Number of items in AdditionalVersionWeights cannot be greater than 1")
	}
	for v, w := range weights {
		if v == rpc.VersionLatest {
			return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "$LATEST is not supported for an alias pointing to more than 1 version")
		}
		if _, ok := ParseVersion(v); !ok {
			return nil, rpc.Errorf(rpc.CodeInvalidParameterValue,
				"1 validation error detected: Value '%s' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [0-9]+]", v)
		}
		if !(w >= 0 && w < 1) {
			return nil, errWeightRange(w)
		}
		a.AdditionalVersion, a.AdditionalWeight = v, w
	}
	return a, nil
}
