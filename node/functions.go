package node

import (
	"context"
	"time"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// Every handler here runs on the leader: a node that does not lead
// forwards the request, so a client gets the same answer from any node.
func (n *Node) registerFunctions() {
	rpc.Handle(n.server, rpc.MethodFunctionCreate, n.createFunction)
	rpc.Handle(n.server, rpc.MethodFunctionUpdateCode, n.updateFunctionCode)
	rpc.Handle(n.server, rpc.MethodFunctionUpdateConfig, n.updateFunctionConfig)
	rpc.Handle(n.server, rpc.MethodFunctionGet, n.getFunction)
	rpc.Handle(n.server, rpc.MethodFunctionList, n.listFunctions)
	rpc.Handle(n.server, rpc.MethodFunctionDelete, n.deleteFunction)
}

func (n *Node) createFunction(ctx context.Context, req *rpc.CreateFunctionRequest) (*rpc.FunctionResponse, error) {
	if !n.isLeader() {
		var resp rpc.FunctionResponse
		return &resp, n.forward(ctx, rpc.MethodFunctionCreate, req, &resp)
	}
	fn, err := scheduler.NormalizeCreate(req)
	if err != nil {
		return nil, err
	}
	if _, exists := n.fsm.Function(fn.Name); exists {
		return nil, rpc.Errorf(rpc.CodeResourceConflict, "Function already exist: %s", fn.Name)
	}
	// Runtimes (issue 10): a managed runtime needs its image built.
	if err := n.checkRuntimeImage(ctx, fn.Runtime); err != nil {
		return nil, err
	}
	if fn.Layers, err = n.resolveLayers(req.Layers, req.ZipFile); err != nil {
		return nil, err
	}
	if fn.CodeSHA256, fn.CodeSize, err = n.storeCode(ctx, req.ZipFile, rpc.IsProvidedRuntime(fn.Runtime)); err != nil {
		return nil, err
	}
	fn.LastModifiedMs = time.Now().UnixMilli()
	res, err := n.apply(&scheduler.PutFunctionCommand{Function: fn, Mode: scheduler.PutCreate})
	if err != nil {
		return nil, err
	}
	return &rpc.FunctionResponse{Function: res.Function}, nil
}

func (n *Node) updateFunctionCode(ctx context.Context, req *rpc.UpdateCodeRequest) (*rpc.FunctionResponse, error) {
	if !n.isLeader() {
		var resp rpc.FunctionResponse
		return &resp, n.forward(ctx, rpc.MethodFunctionUpdateCode, req, &resp)
	}
	cur, err := n.function(req.Name)
	if err != nil {
		return nil, err
	}
	if err := checkIfRevision(cur, req.IfRevision); err != nil {
		return nil, err
	}
	fn := cur.Clone()
	if err := checkCodeWithLayers(req.ZipFile, fn.Layers); err != nil { // issue 10
		return nil, err
	}
	if fn.CodeSHA256, fn.CodeSize, err = n.storeCode(ctx, req.ZipFile, rpc.IsProvidedRuntime(fn.Runtime)); err != nil {
		return nil, err
	}
	return n.proposeUpdate(cur, fn)
}

func (n *Node) updateFunctionConfig(ctx context.Context, req *rpc.UpdateConfigRequest) (*rpc.FunctionResponse, error) {
	if !n.isLeader() {
		var resp rpc.FunctionResponse
		return &resp, n.forward(ctx, rpc.MethodFunctionUpdateConfig, req, &resp)
	}
	cur, err := n.function(req.Name)
	if err != nil {
		return nil, err
	}
	if err := checkIfRevision(cur, req.IfRevision); err != nil {
		return nil, err
	}
	if err := n.checkDeadLetter(req.DeadLetter); err != nil { // async.go
		return nil, err
	}
	fn, err := scheduler.ApplyConfigUpdate(cur, req)
	if err != nil {
		return nil, err
	}
	if req.Layers != nil { // issue 10: checked against the code as for a create
		zip, err := n.code.Get(cur.CodeSHA256)
		if err != nil {
			return nil, rpc.Errorf(rpc.CodeService, "the function's code is not on the leader: %v", err)
		}
		if fn.Layers, err = n.resolveLayers(*req.Layers, zip); err != nil {
			return nil, err
		}
	}
	return n.proposeUpdate(cur, fn)
}

// proposeUpdate commits fn, a changed copy of cur, unless cur changed in
// the meantime (then the caller gets ResourceConflictException).
func (n *Node) proposeUpdate(cur, fn *rpc.FunctionConfig) (*rpc.FunctionResponse, error) {
	fn.LastModifiedMs = time.Now().UnixMilli()
	res, err := n.apply(&scheduler.PutFunctionCommand{
		Function: fn, Mode: scheduler.PutUpdate, IfRevision: cur.Revision,
	})
	if err != nil {
		return nil, err
	}
	n.log.Info("function updated", "function", fn.Name, "revision", res.Function.Revision,
		"memory_mb", fn.MemoryMB, "timeout_s", fn.TimeoutSec, "code_sha256", fn.CodeSHA256)
	return &rpc.FunctionResponse{Function: res.Function}, nil
}

func (n *Node) getFunction(ctx context.Context, req *rpc.GetFunctionRequest) (*rpc.FunctionResponse, error) {
	if !n.isLeader() {
		var resp rpc.FunctionResponse
		return &resp, n.forward(ctx, rpc.MethodFunctionGet, req, &resp)
	}
	ref, err := rpc.ParseFunctionRef(req.Name, req.Qualifier)
	if err != nil {
		return nil, err
	}
	fn, err := n.resolve(ref.Name, ref.Qualifier, false) // an alias reads as its primary version
	if err != nil {
		return nil, err
	}
	return &rpc.FunctionResponse{Function: fn}, nil
}

func (n *Node) listFunctions(ctx context.Context, req *rpc.ListFunctionsRequest) (*rpc.ListFunctionsResponse, error) {
	if !n.isLeader() {
		var resp rpc.ListFunctionsResponse
		return &resp, n.forward(ctx, rpc.MethodFunctionList, req, &resp)
	}
	return &rpc.ListFunctionsResponse{Functions: n.fsm.Functions()}, nil
}

func (n *Node) deleteFunction(ctx context.Context, req *rpc.GetFunctionRequest) (*rpc.DeleteFunctionResponse, error) {
	if !n.isLeader() {
		var resp rpc.DeleteFunctionResponse
		return &resp, n.forward(ctx, rpc.MethodFunctionDelete, req, &resp)
	}
	ref, err := rpc.ParseFunctionRef(req.Name, req.Qualifier)
	if err != nil {
		return nil, err
	}
	if ref.Qualifier != "" { // a version (versions.go)
		if _, err := n.deleteVersion(ctx, &rpc.DeleteVersionRequest{Name: ref.Name, Version: ref.Qualifier}); err != nil {
			return nil, err
		}
		return &rpc.DeleteFunctionResponse{}, nil
	}
	if _, err := n.function(req.Name); err != nil {
		return nil, err
	}
	if _, err := n.apply(&scheduler.DeleteFunctionCommand{Name: req.Name}); err != nil {
		return nil, err
	}
	return &rpc.DeleteFunctionResponse{}, nil
}

// function looks a function up in the FSM. Handlers call it on the leader,
// where the FSM holds every committed change: reads are consistent (a
// non-leader forwards them).
func (n *Node) function(name string) (*rpc.FunctionConfig, error) {
	if err := scheduler.ValidateName(name); err != nil {
		return nil, err
	}
	fn, ok := n.fsm.Function(name)
	if !ok {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "Function not found: %s", n.functionARN(name))
	}
	return fn, nil
}

func (n *Node) functionARN(name string) string {
	return n.cfg.ARNs.Function(name, "")
}
