package node

import (
	"context"
	"math/rand/v2"
	"time"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// Versions and aliases: the handlers, and the resolution of a qualifier to
// the version an invocation runs. Every handler runs on the leader (onLeader
// forwards from any other node), where the FSM holds every committed change.

func (n *Node) registerVersions() {
	rpc.Handle(n.server, rpc.MethodVersionPublish, onLeader(n, rpc.MethodVersionPublish, n.publishVersion))
	rpc.Handle(n.server, rpc.MethodVersionList, onLeader(n, rpc.MethodVersionList, n.listVersions))
	rpc.Handle(n.server, rpc.MethodVersionDelete, onLeader(n, rpc.MethodVersionDelete, n.deleteVersion))
	rpc.Handle(n.server, rpc.MethodAliasCreate, onLeader(n, rpc.MethodAliasCreate, n.createAlias))
	rpc.Handle(n.server, rpc.MethodAliasUpdate, onLeader(n, rpc.MethodAliasUpdate, n.updateAlias))
	rpc.Handle(n.server, rpc.MethodAliasGet, onLeader(n, rpc.MethodAliasGet, n.getAlias))
	rpc.Handle(n.server, rpc.MethodAliasList, onLeader(n, rpc.MethodAliasList, n.listAliases))
	rpc.Handle(n.server, rpc.MethodAliasDelete, onLeader(n, rpc.MethodAliasDelete, n.deleteAlias))
}

// onLeader runs fn on the leader: here when this node leads, else through
// forward. It is the one place the handlers of this file forward.
func onLeader[Req, Resp any](n *Node, method string, fn func(context.Context, *Req) (*Resp, error)) func(context.Context, *Req) (*Resp, error) {
	return func(ctx context.Context, req *Req) (*Resp, error) {
		if !n.isLeader() {
			resp := new(Resp)
			if err := n.forward(ctx, method, req, resp); err != nil {
				return nil, err
			}
			return resp, nil
		}
		return fn(ctx, req)
	}
}

// maxDescription is Lambda's limit on a description.
const maxDescription = 256

func errDescription() error {
	return rpc.Errorf(rpc.CodeInvalidParameterValue,
		"1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to %d", maxDescription)
}

func (n *Node) publishVersion(_ context.Context, req *rpc.PublishVersionRequest) (*rpc.FunctionResponse, error) {
	if _, err := n.function(req.Name); err != nil {
		return nil, err
	}
	if len(req.Description) > maxDescription {
		return nil, errDescription()
	}
	res, err := n.apply(&scheduler.PublishVersionCommand{
		Name: req.Name, Description: req.Description,
		IfRevision: req.IfRevision, IfCodeSHA256: req.CodeSHA256,
		LastModifiedMs: time.Now().UnixMilli(),
	})
	if err != nil {
		return nil, err
	}
	n.log.Info("version published", "function", req.Name, "version", res.Function.Version, "code_sha256", res.Function.CodeSHA256)
	return &rpc.FunctionResponse{Function: res.Function}, nil
}

func (n *Node) listVersions(_ context.Context, req *rpc.ListVersionsRequest) (*rpc.ListVersionsResponse, error) {
	fn, err := n.function(req.Name)
	if err != nil {
		return nil, err
	}
	return &rpc.ListVersionsResponse{Versions: append([]*rpc.FunctionConfig{fn}, n.fsm.Versions(req.Name)...)}, nil
}

func (n *Node) deleteVersion(_ context.Context, req *rpc.DeleteVersionRequest) (*rpc.DeleteVersionResponse, error) {
	if _, err := n.function(req.Name); err != nil {
		return nil, err
	}
	num, ok := scheduler.ParseVersion(req.Version)
	switch {
	case req.Version == rpc.VersionLatest:
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "$LATEST version cannot be deleted without deleting the function.")
	case !ok:
		return nil, rpc.Errorf(rpc.CodeInvalidParameterValue, "Deletion of aliases is not supported by DeleteFunction: delete the alias %q with DeleteAlias", req.Version)
	}
	if _, err := n.apply(&scheduler.DeleteVersionCommand{Name: req.Name, Version: num}); err != nil {
		return nil, err
	}
	return &rpc.DeleteVersionResponse{}, nil
}

func (n *Node) createAlias(_ context.Context, req *rpc.CreateAliasRequest) (*rpc.AliasResponse, error) {
	a, err := scheduler.BuildAlias(req.FunctionName, req.Name, req.FunctionVersion, req.Description, req.Weights)
	if err != nil {
		return nil, err
	}
	if _, err := n.function(req.FunctionName); err != nil {
		return nil, err
	}
	res, err := n.apply(&scheduler.PutAliasCommand{Alias: a, Mode: scheduler.PutCreate})
	if err != nil {
		return nil, err
	}
	return &rpc.AliasResponse{Alias: res.Alias}, nil
}

func (n *Node) updateAlias(_ context.Context, req *rpc.UpdateAliasRequest) (*rpc.AliasResponse, error) {
	cur, err := n.alias(req.FunctionName, req.Name)
	if err != nil {
		return nil, err
	}
	if req.IfRevision != 0 && req.IfRevision != cur.Revision {
		return nil, rpc.Errorf(rpc.CodePreconditionFailed,
			"The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
	}
	version, description, weights := cur.FunctionVersion, cur.Description, cur.Weights()
	if req.FunctionVersion != "" {
		version = req.FunctionVersion
	}
	if req.Description != nil {
		description = *req.Description
	}
	if req.SetWeights {
		weights = req.Weights
	}
	a, err := scheduler.BuildAlias(req.FunctionName, req.Name, version, description, weights)
	if err != nil {
		return nil, err
	}
	res, err := n.apply(&scheduler.PutAliasCommand{Alias: a, Mode: scheduler.PutUpdate, IfRevision: cur.Revision})
	if err != nil {
		return nil, err
	}
	return &rpc.AliasResponse{Alias: res.Alias}, nil
}

func (n *Node) getAlias(_ context.Context, req *rpc.GetAliasRequest) (*rpc.AliasResponse, error) {
	a, err := n.alias(req.FunctionName, req.Name)
	if err != nil {
		return nil, err
	}
	return &rpc.AliasResponse{Alias: a}, nil
}

func (n *Node) listAliases(_ context.Context, req *rpc.ListAliasesRequest) (*rpc.ListAliasesResponse, error) {
	if _, err := n.function(req.FunctionName); err != nil {
		return nil, err
	}
	out := &rpc.ListAliasesResponse{Aliases: []*rpc.Alias{}}
	for _, a := range n.fsm.Aliases(req.FunctionName) {
		if v := req.FunctionVersion; v == "" || a.FunctionVersion == v || a.AdditionalVersion == v {
			out.Aliases = append(out.Aliases, a)
		}
	}
	return out, nil
}

func (n *Node) deleteAlias(_ context.Context, req *rpc.GetAliasRequest) (*rpc.DeleteAliasResponse, error) {
	if _, err := n.alias(req.FunctionName, req.Name); err != nil {
		return nil, err
	}
	if _, err := n.apply(&scheduler.DeleteAliasCommand{FunctionName: req.FunctionName, Name: req.Name}); err != nil {
		return nil, err
	}
	return &rpc.DeleteAliasResponse{}, nil
}

// alias looks an alias up on the leader.
func (n *Node) alias(fn, name string) (*rpc.Alias, error) {
	if _, err := n.function(fn); err != nil {
		return nil, err
	}
	if err := scheduler.ValidateAliasName(name); err != nil {
		return nil, err
	}
	a, ok := n.fsm.Alias(fn, name)
	if !ok {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "Alias not found: %s:%s", n.functionARN(fn), name)
	}
	return a, nil
}

// resolve returns the function configuration a qualifier names, on the
// leader: $LATEST for "" or $LATEST, the version for a number, and for an
// alias its primary version, or, when pick is set and the alias has an
// additional version, that one with its weight's probability (a fresh draw
// per call: each invocation picks its own).
func (n *Node) resolve(name, qualifier string, pick bool) (*rpc.FunctionConfig, error) {
	fn, err := n.function(name)
	if err != nil {
		return nil, err
	}
	if err := scheduler.ValidateQualifier(qualifier); err != nil {
		return nil, err
	}
	if qualifier == "" || qualifier == rpc.VersionLatest {
		return fn, nil
	}
	version := qualifier
	if _, isNumber := scheduler.ParseVersion(qualifier); !isNumber {
		a, ok := n.fsm.Alias(name, qualifier)
		if !ok {
			return nil, rpc.Errorf(rpc.CodeResourceNotFound, "Function not found: %s:%s", n.functionARN(name), qualifier)
		}
		version = a.FunctionVersion
		if pick && a.AdditionalVersion != "" && rand.Float64() < a.AdditionalWeight {
			version = a.AdditionalVersion
		}
		if version == rpc.VersionLatest {
			return fn, nil
		}
	}
	num, _ := scheduler.ParseVersion(version)
	v, ok := n.fsm.Version(name, num)
	if !ok {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "Function not found: %s", n.cfg.ARNs.Function(name, version))
	}
	return v, nil
}

// qualifiedARN is a function's ARN with a qualifier ("" for none).
func (n *Node) qualifiedARN(name, qualifier string) string {
	return n.cfg.ARNs.Function(name, qualifier)
}
