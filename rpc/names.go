package rpc

import "strings"

// VersionLatest names a function's unpublished, changeable version, as
// Lambda names it.
const VersionLatest = "$LATEST"

// MaxFunctionRef bounds a function reference (a name, a partial ARN or an
// ARN, with a qualifier): Lambda's limit on the longest form.
const MaxFunctionRef = 170

// FunctionRef is a function named in a request: its name and the
// qualifier ("" when none was given).
type FunctionRef struct {
	Name, Qualifier string
}

// String is the reference as `name` or `name:qualifier`.
func (r FunctionRef) String() string {
	if r.Qualifier == "" {
		return r.Name
	}
	return r.Name + ":" + r.Qualifier
}

// ParseFunctionRef reads the forms Lambda takes wherever a function is
// named: name, name:qualifier, ACCOUNT:function:name[:qualifier] and
// arn:PARTITION:lambda:REGION:ACCOUNT:function:name[:qualifier]. qualifier
// is a separate Qualifier parameter ("" when absent); when both are given
// they must agree. The name and the qualifier themselves are checked by
// the operation (ValidateName, ValidateQualifier in scheduler).
func ParseFunctionRef(ref, qualifier string) (FunctionRef, error) {
	if len(ref) > MaxFunctionRef {
		return FunctionRef{}, Errorf(CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to %d", ref, MaxFunctionRef)
	}
	parts := strings.Split(ref, ":")
	var name, qual string
	switch {
	case len(parts) >= 7 && parts[0] == "arn" && parts[2] == "lambda" && parts[5] == "function" && len(parts) <= 8:
		name = parts[6]
		if len(parts) == 8 {
			qual = parts[7]
		}
	case len(parts) >= 3 && parts[1] == "function" && len(parts) <= 4:
		name = parts[2]
		if len(parts) == 4 {
			qual = parts[3]
		}
	case len(parts) <= 2:
		name = parts[0]
		if len(parts) == 2 {
			qual = parts[1]
		}
	default:
		return FunctionRef{}, Errorf(CodeInvalidParameterValue, "Invalid function name or ARN: %s", ref)
	}
	if len(parts) > 1 && qual == "" && parts[len(parts)-1] == "" {
		return FunctionRef{}, Errorf(CodeInvalidParameterValue, "Invalid function name or ARN: %s", ref)
	}
	if qual != "" && qualifier != "" && qual != qualifier {
		return FunctionRef{}, Errorf(CodeInvalidParameterValue,
			"The derived qualifier from the function name does not match the specified qualifier.")
	}
	if qual == "" {
		qual = qualifier
	}
	return FunctionRef{Name: name, Qualifier: qual}, nil
}
