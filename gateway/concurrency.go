package gateway

import (
	"net/http"

	"nimbus/rpc"
)

// concurrencyOutput is Lambda's Concurrency shape (and the responses of
// Put/GetFunctionConcurrency): absent when the function has no
// reservation.
type concurrencyOutput struct {
	ReservedConcurrentExecutions *int `json:"ReservedConcurrentExecutions,omitempty"`
}

type putConcurrencyInput struct {
	ReservedConcurrentExecutions *int `json:"ReservedConcurrentExecutions"`
}

func (g *Gateway) putConcurrency(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	var in putConcurrencyInput
	if err := g.decodeJSON(w, r, maxConfigBody, opPutFunctionConcurrency, &in); err != nil {
		return err
	}
	if in.ReservedConcurrentExecutions == nil {
		return rpc.Errorf(rpc.CodeInvalidParameterValue,
			"1 validation error detected: Value null at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must not be null")
	}
	resp, err := g.opts.Ops.PutConcurrency(r.Context(), &rpc.PutConcurrencyRequest{Name: name, Reserved: *in.ReservedConcurrentExecutions})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, concurrencyOutput{ReservedConcurrentExecutions: resp.Reserved})
	return nil
}

func (g *Gateway) getConcurrency(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	resp, err := g.opts.Ops.GetConcurrency(r.Context(), &rpc.GetFunctionRequest{Name: name})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, concurrencyOutput{ReservedConcurrentExecutions: resp.Reserved})
	return nil
}

func (g *Gateway) deleteConcurrency(w http.ResponseWriter, r *http.Request, a pathArgs) error {
	name, err := g.unqualified(r, a)
	if err != nil {
		return err
	}
	if _, err := g.opts.Ops.DeleteConcurrency(r.Context(), &rpc.GetFunctionRequest{Name: name}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// unqualified reads the function of an operation that takes no qualifier
// (reserved concurrency belongs to the function, not to a version).
func (g *Gateway) unqualified(r *http.Request, a pathArgs) (string, error) {
	ref, err := parseFunctionRef(a.Function, "")
	if err != nil {
		return "", err
	}
	if ref.Qualifier != "" {
		return "", rpc.Errorf(rpc.CodeInvalidParameterValue, "This operation takes an unqualified function name or ARN: %s", a.Function)
	}
	return ref.Name, nil
}

// accountLimitOutput and accountUsageOutput are Lambda's AccountLimit and
// AccountUsage shapes, less the total code storage limit, which nimbus
// does not enforce (the code store is bounded by its disk).
type accountLimitOutput struct {
	CodeSizeUnzipped               int64 `json:"CodeSizeUnzipped"`
	CodeSizeZipped                 int64 `json:"CodeSizeZipped"`
	ConcurrentExecutions           int   `json:"ConcurrentExecutions"`
	UnreservedConcurrentExecutions int   `json:"UnreservedConcurrentExecutions"`
}

type accountUsageOutput struct {
	TotalCodeSize int64 `json:"TotalCodeSize"`
	FunctionCount int   `json:"FunctionCount"`
}

type accountSettingsOutput struct {
	AccountLimit accountLimitOutput `json:"AccountLimit"`
	AccountUsage accountUsageOutput `json:"AccountUsage"`
}

func (g *Gateway) accountSettings(w http.ResponseWriter, r *http.Request, _ pathArgs) error {
	resp, err := g.opts.Ops.AccountSettings(r.Context(), &rpc.AccountSettingsRequest{})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, accountSettingsOutput{
		AccountLimit: accountLimitOutput{
			CodeSizeUnzipped:               resp.CodeSizeUnzipped,
			CodeSizeZipped:                 resp.CodeSizeZipped,
			ConcurrentExecutions:           resp.ConcurrentExecutions,
			UnreservedConcurrentExecutions: resp.UnreservedConcurrentExecutions,
		},
		AccountUsage: accountUsageOutput{TotalCodeSize: resp.TotalCodeSize, FunctionCount: resp.FunctionCount},
	})
	return nil
}
