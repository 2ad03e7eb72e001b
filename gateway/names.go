package gateway

import (
	"nimbus/rpc"
)

// maxFunctionRef bounds a function reference (rpc.MaxFunctionRef).
const maxFunctionRef = rpc.MaxFunctionRef

// functionRef is a function named in a request: its name and the
// qualifier ("" when none was given).
type functionRef = rpc.FunctionRef

// parseFunctionRef reads the forms Lambda takes wherever a function is
// named (rpc.ParseFunctionRef); query is the Qualifier query parameter.
func parseFunctionRef(ref, query string) (functionRef, error) {
	return rpc.ParseFunctionRef(ref, query)
}

// target parses the function of a request: the path's name and the
// Qualifier query parameter. The node resolves the qualifier (a version,
// an alias or $LATEST) when it runs the operation.
func (g *Gateway) target(r requestQuery, a pathArgs) (functionRef, error) {
	return parseFunctionRef(a.Function, r.Get("Qualifier"))
}

// latestOnly parses the function of an operation that changes $LATEST:
// a version is immutable, and an alias is changed with UpdateAlias.
func (g *Gateway) latestOnly(r requestQuery, a pathArgs) (string, error) {
	ref, err := g.target(r, a)
	if err != nil {
		return "", err
	}
	if ref.Qualifier != "" && ref.Qualifier != rpc.VersionLatest {
		return "", rpc.Errorf(rpc.CodeInvalidParameterValue,
			"This operation changes $LATEST and takes no other qualifier (a version is immutable): %s", ref)
	}
	return ref.Name, nil
}

// requestQuery is what target needs of a request's query.
type requestQuery interface{ Get(string) string }
