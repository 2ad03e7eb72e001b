package scheduler

import (
	"sort"
	"strings"

	"nimbus/rpc"
)

// Function URLs: one per function and qualifier ($LATEST or an alias),
// each with a unique ID. The proposer makes the ID and the token and
// validates the request (BuildURL); Apply checks the state (the function
// and the alias exist, the ID is free).

// PutURLCommand creates or replaces a function URL (CmdPutURL). PutCreate
// fails with ResourceConflictException if the function and qualifier have
// a URL already (or the ID is taken), PutUpdate with
// ResourceNotFoundException if they have none; an update keeps the stored
// ID and CreatedMs.
type PutURLCommand struct {
	URL  *rpc.FunctionURL `msgpack:"url"`
	Mode PutMode          `msgpack:"mode"`
}

// DeleteURLCommand deletes a function URL (CmdDeleteURL);
// ResourceNotFoundException if there is none.
type DeleteURLCommand struct {
	FunctionName string `msgpack:"function"`
	Qualifier    string `msgpack:"qualifier,omitempty"`
}

func (PutURLCommand) CommandType() CommandType    { return CmdPutURL }
func (DeleteURLCommand) CommandType() CommandType { return CmdDeleteURL }

func (f *FSM) applyPutURL(body []byte) ApplyResult {
	var cmd PutURLCommand
	if err := decodeCommand(CmdPutURL, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	u := cmd.URL
	if u == nil || u.FunctionName == "" || !validURLID(u.ID) {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: no URL, function or valid id", CmdPutURL)}
	}
	if cmd.Mode != PutCreate && cmd.Mode != PutUpdate {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: unknown mode %d", CmdPutURL, uint8(cmd.Mode))}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		if _, ok := s.functions[u.FunctionName]; !ok {
			return ApplyResult{Err: errFunctionNotFound(u.FunctionName)}, nil
		}
		vs := &s.versions
		if u.Qualifier != "" {
			if _, ok := vs.aliases[u.FunctionName][u.Qualifier]; !ok {
				return ApplyResult{Err: errAliasNotFound(f.arns, u.FunctionName, u.Qualifier)}, nil
			}
		}
		old, exists := vs.urls[u.FunctionName][u.Qualifier]
		stored := *u
		switch {
		case cmd.Mode == PutCreate && exists:
			return ApplyResult{Err: rpc.Errorf(rpc.CodeResourceConflict, "Failed to create function url config for [functionArn = %s]. Error message:  FunctionUrlConfig exists for this Lambda function", f.arns.Function(u.FunctionName, u.Qualifier))}, nil
		case cmd.Mode == PutCreate && vs.urlIDs[u.ID] != nil:
			return ApplyResult{Err: rpc.Errorf(rpc.CodeResourceConflict, "The URL id %s is taken", u.ID)}, nil
		case cmd.Mode == PutUpdate && !exists:
			return ApplyResult{Err: errURLNotFound(f.arns, u.FunctionName, u.Qualifier)}, nil
		case cmd.Mode == PutUpdate:
			stored.ID, stored.CreatedMs = old.ID, old.CreatedMs
		}
		if vs.urls[u.FunctionName] == nil {
			vs.urls[u.FunctionName] = map[string]*rpc.FunctionURL{}
		}
		vs.urls[u.FunctionName][u.Qualifier] = &stored
		vs.urlIDs[stored.ID] = &stored
		return ApplyResult{URL: &stored}, nil
	})
}

func (f *FSM) applyDeleteURL(body []byte) ApplyResult {
	var cmd DeleteURLCommand
	if err := decodeCommand(CmdDeleteURL, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		if _, ok := s.functions[cmd.FunctionName]; !ok {
			return ApplyResult{Err: errFunctionNotFound(cmd.FunctionName)}, nil
		}
		u := s.versions.deleteURL(cmd.FunctionName, cmd.Qualifier)
		if u == nil {
			return ApplyResult{Err: errURLNotFound(f.arns, cmd.FunctionName, cmd.Qualifier)}, nil
		}
		return ApplyResult{URL: u}, nil
	})
}

// deleteURL removes a function and qualifier's URL, returning it (nil if
// there was none).
func (vs *versionState) deleteURL(fn, qualifier string) *rpc.FunctionURL {
	u, ok := vs.urls[fn][qualifier]
	if !ok {
		return nil
	}
	delete(vs.urls[fn], qualifier)
	if len(vs.urls[fn]) == 0 {
		delete(vs.urls, fn)
	}
	delete(vs.urlIDs, u.ID)
	return u
}

func errURLNotFound(arns rpc.ARNScope, fn, qualifier string) error {
	return rpc.Errorf(rpc.CodeResourceNotFound, "The resource you requested does not exist: no function URL for %s", arns.Function(fn, qualifier))
}

// URLIDLength is the length of a function URL's ID (Lambda's).
const URLIDLength = 32

func validURLID(id string) bool {
	if len(id) != URLIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || isASCIIDigit(c)) {
			return false
		}
	}
	return true
}

// URL returns the URL of a function and qualifier ("" for $LATEST).
func (f *FSM) URL(fn, qualifier string) (*rpc.FunctionURL, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	u, ok := f.state.versions.urls[fn][qualifier]
	return u, ok
}

// URLByID returns the URL with the given ID.
func (f *FSM) URLByID(id string) (*rpc.FunctionURL, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	u, ok := f.state.versions.urlIDs[id]
	return u, ok
}

// URLs returns a function's URLs, $LATEST's first, then by alias name.
func (f *FSM) URLs(fn string) []*rpc.FunctionURL {
	f.mu.RLock()
	out := make([]*rpc.FunctionURL, 0, len(f.state.versions.urls[fn]))
	for _, u := range f.state.versions.urls[fn] {
		out = append(out, u)
	}
	f.mu.RUnlock()
	sortURLs(out)
	return out
}

func sortURLs(us []*rpc.FunctionURL) {
	sort.Slice(us, func(i, j int) bool {
		if us[i].FunctionName != us[j].FunctionName {
			return us[i].FunctionName < us[j].FunctionName
		}
		return us[i].Qualifier < us[j].Qualifier
	})
}

// Limits of a URL's CORS configuration (Lambda's).
const (
	maxCorsItems  = 100
	maxCorsItem   = 253
	maxCorsMaxAge = 86400
)

// ValidateURL checks the fields of a URL a proposer is about to propose:
// the auth type, the invoke mode and the CORS configuration, as Lambda
// limits them. Qualifier must be "" or an alias name ($LATEST is
// normalized to "" by the caller).
func ValidateURL(u *rpc.FunctionURL) error {
	if err := ValidateName(u.FunctionName); err != nil {
		return err
	}
	if u.Qualifier != "" {
		if _, isVersion := ParseVersion(u.Qualifier); isVersion || ValidateAliasName(u.Qualifier) != nil {
			return rpc.Errorf(rpc.CodeInvalidParameterValue,
				"1 validation error detected: Value '%s' at 'qualifier' failed to satisfy constraint: a function URL's qualifier is $LATEST or an alias, not a version", u.Qualifier)
		}
	}
	switch u.AuthType {
	case rpc.URLAuthNone, rpc.URLAuthToken:
	case "AWS_IAM":
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "AuthType AWS_IAM needs access control, which this cluster does not have: use NONE or TOKEN (a bearer token)")
	default:
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, TOKEN]", u.AuthType)
	}
	switch u.InvokeMode {
	case rpc.URLInvokeBuffered, rpc.URLInvokeStreaming:
	default:
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'invokeMode' failed to satisfy constraint: Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]", u.InvokeMode)
	}
	if c := u.Cors; c != nil {
		lists := []struct {
			field string
			items []string
		}{{"allowHeaders", c.AllowHeaders}, {"allowMethods", c.AllowMethods}, {"allowOrigins", c.AllowOrigins}, {"exposeHeaders", c.ExposeHeaders}}
		for _, l := range lists {
			if len(l.items) > maxCorsItems {
				return rpc.Errorf(rpc.CodeInvalidParameterValue, "1 validation error detected: Value at 'cors.%s' failed to satisfy constraint: Member must have length less than or equal to %d", l.field, maxCorsItems)
			}
			for _, it := range l.items {
				if it == "" || len(it) > maxCorsItem || strings.ContainsAny(it, "\r\n\x00") {
					return rpc.Errorf(rpc.CodeInvalidParameterValue, "1 validation error detected: Value '%s' at 'cors.%s' failed to satisfy constraint: Member must have length between 1 and %d", it, l.field, maxCorsItem)
				}
			}
		}
		for _, m := range c.AllowMethods {
			switch strings.ToUpper(m) {
			case "*", "GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS":
			default:
				return rpc.Errorf(rpc.CodeInvalidParameterValue, "1 validation error detected: Value '%s' at 'cors.allowMethods' failed to satisfy constraint: Member must satisfy enum value set: [*, GET, PUT, HEAD, POST, PATCH, DELETE, OPTIONS]", m)
			}
		}
		if c.MaxAge < 0 || c.MaxAge > maxCorsMaxAge {
			return rpc.Errorf(rpc.CodeInvalidParameterValue, "1 validation error detected: Value '%d' at 'cors.maxAge' failed to satisfy constraint: Member must have value between 0 and %d", c.MaxAge, maxCorsMaxAge)
		}
	}
	return nil
}
