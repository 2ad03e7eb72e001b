package node

import (
	"context"
	"time"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// registerAsync registers the asynchronous invocation configuration
// methods. Each runs on the leader (a non-leader forwards).
func (n *Node) registerAsync() {
	rpc.Handle(n.server, rpc.MethodEventConfigPut, n.putEventConfig)
	rpc.Handle(n.server, rpc.MethodEventConfigGet, n.getEventConfig)
	rpc.Handle(n.server, rpc.MethodEventConfigDelete, n.deleteEventConfig)
	rpc.Handle(n.server, rpc.MethodEventConfigList, n.listEventConfigs)
}

// eventConfigTarget reads the function and qualifier an event
// configuration request names (FunctionName may carry the qualifier) and
// checks that they exist; the qualifier is "" for the function's own.
func (n *Node) eventConfigTarget(name, qualifier string) (rpc.FunctionRef, error) {
	ref, err := rpc.ParseFunctionRef(name, qualifier)
	if err != nil {
		return ref, err
	}
	if ref.Qualifier == rpc.VersionLatest {
		ref.Qualifier = ""
	}
	if _, err := n.resolve(ref.Name, ref.Qualifier, false); err != nil {
		return ref, err
	}
	return ref, nil
}

func (n *Node) putEventConfig(ctx context.Context, req *rpc.PutEventConfigRequest) (*rpc.EventConfigResponse, error) {
	if !n.isLeader() {
		var resp rpc.EventConfigResponse
		return &resp, n.forward(ctx, rpc.MethodEventConfigPut, req, &resp)
	}
	ref, err := n.eventConfigTarget(req.FunctionName, req.Qualifier)
	if err != nil {
		return nil, err
	}
	named := *req
	named.FunctionName, named.Qualifier = ref.Name, ref.Qualifier
	cfg, err := scheduler.ValidateEventConfig(n.cfg.ARNs, &named, func(name string) bool {
		_, ok := n.fsm.Function(name)
		return ok
	}, n.fsm.Queue)
	if err != nil {
		return nil, err
	}
	cfg.LastModifiedMs = time.Now().UnixMilli()
	cmd := scheduler.PutEventConfigCommand{Config: cfg}
	if err := n.serversSupport(cmd.CommandType()); err != nil {
		return nil, err
	}
	if _, err := n.apply(cmd); err != nil {
		return nil, err
	}
	return &rpc.EventConfigResponse{Config: cfg}, nil
}

func (n *Node) getEventConfig(ctx context.Context, req *rpc.GetEventConfigRequest) (*rpc.EventConfigResponse, error) {
	if !n.isLeader() {
		var resp rpc.EventConfigResponse
		return &resp, n.forward(ctx, rpc.MethodEventConfigGet, req, &resp)
	}
	ref, err := n.eventConfigTarget(req.FunctionName, req.Qualifier)
	if err != nil {
		return nil, err
	}
	cfg, ok := n.fsm.EventConfigFor(ref.Name, ref.Qualifier)
	if !ok {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "The function %s doesn't have an EventInvokeConfig", n.cfg.ARNs.Function(ref.Name, ref.Qualifier))
	}
	return &rpc.EventConfigResponse{Config: cfg}, nil
}

func (n *Node) deleteEventConfig(ctx context.Context, req *rpc.GetEventConfigRequest) (*rpc.DeleteEventConfigResponse, error) {
	if !n.isLeader() {
		var resp rpc.DeleteEventConfigResponse
		return &resp, n.forward(ctx, rpc.MethodEventConfigDelete, req, &resp)
	}
	ref, err := n.eventConfigTarget(req.FunctionName, req.Qualifier)
	if err != nil {
		return nil, err
	}
	if _, err := n.apply(scheduler.DeleteEventConfigCommand{Name: ref.Name, Qualifier: ref.Qualifier}); err != nil {
		return nil, err
	}
	return &rpc.DeleteEventConfigResponse{}, nil
}

// listEventConfigs lists a function's event configurations: its own and
// its versions' and aliases'.
func (n *Node) listEventConfigs(ctx context.Context, req *rpc.GetEventConfigRequest) (*rpc.ListEventConfigsResponse, error) {
	if !n.isLeader() {
		var resp rpc.ListEventConfigsResponse
		return &resp, n.forward(ctx, rpc.MethodEventConfigList, req, &resp)
	}
	ref, err := rpc.ParseFunctionRef(req.FunctionName, req.Qualifier)
	if err != nil {
		return nil, err
	}
	if _, err := n.function(ref.Name); err != nil {
		return nil, err
	}
	return &rpc.ListEventConfigsResponse{Configs: n.fsm.EventConfigs(ref.Name)}, nil
}
