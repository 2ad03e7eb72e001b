package gateway

import (
	"strings"

	"nimbus/rpc"
)

// maxFunctionRef bounds a function reference (a name, a partial ARN or an
// ARN, with a qualifier): Lambda's limit on the longest form.
const maxFunctionRef = 170

// functionRef is a function named in a request: its name and the
// qualifier ("" when none was given).
type functionRef struct {
	Name, Qualifier string
}

// parseFunctionRef reads the forms Lambda takes wherever a function is
// named: name, name:qualifier, ACCOUNT:function:name[:qualifier] and
// arn:PARTITION:lambda:REGION:ACCOUNT:function:name[:qualifier]. query is
// the Qualifier query parameter ("" when absent); when both are given they
// must agree. The name itself is checked by the operation.
func parseFunctionRef(ref, query string) (functionRef, error) {
	if len(ref) > maxFunctionRef {
		return functionRef{}, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value '%s' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to %d", ref, maxFunctionRef)
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
		return functionRef{}, rpc.Errorf(rpc.CodeInvalidParameterValue, "Invalid function name or ARN: %s", ref)
	}
	if len(parts) > 1 && qual == "" && parts[len(parts)-1] == "" {
		return functionRef{}, rpc.Errorf(rpc.CodeInvalidParameterValue, "Invalid function name or ARN: %s", ref)
	}
	if qual != "" && query != "" && qual != query {
		return functionRef{}, rpc.Errorf(rpc.CodeInvalidParameterValue,
			"The derived qualifier from the function name does not match the specified qualifier.")
	}
	if qual == "" {
		qual = query
	}
	return functionRef{Name: name, Qualifier: qual}, nil
}

// resolve returns the name to call the operations with. Only $LATEST
// exists until versions and aliases are built: any other qualifier names
// nothing, and gets Lambda's not-found answer for it.
func (g *Gateway) resolve(ref functionRef) (string, error) {
	if ref.Qualifier == "" || ref.Qualifier == rpc.VersionLatest {
		return ref.Name, nil
	}
	return "", rpc.Errorf(rpc.CodeResourceNotFound, "Function not found: %s:%s", g.opts.FunctionARN(ref.Name), ref.Qualifier)
}

// target parses and resolves the function of a request: the path's name
// and the Qualifier query parameter.
func (g *Gateway) target(r requestQuery, a pathArgs) (string, error) {
	ref, err := parseFunctionRef(a.Function, r.Get("Qualifier"))
	if err != nil {
		return "", err
	}
	return g.resolve(ref)
}

// requestQuery is what target needs of a request's query.
type requestQuery interface{ Get(string) string }
