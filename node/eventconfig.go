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
}

func (n *Node) putEventConfig(ctx context.Context, req *rpc.PutEventConfigRequest) (*rpc.EventConfigResponse, error) {
	if !n.isLeader() {
		var resp rpc.EventConfigResponse
		return &resp, n.forward(ctx, rpc.MethodEventConfigPut, req, &resp)
	}
	if _, err := n.function(req.FunctionName); err != nil {
		return nil, err
	}
	cfg, err := scheduler.ValidateEventConfig(req, func(name string) bool {
		_, ok := n.fsm.Function(name)
		return ok
	}, n.fsm.Queue)
	if err != nil {
		return nil, err
	}
	cfg.LastModifiedMs = time.Now().UnixMilli()
	if _, err := n.apply(scheduler.PutEventConfigCommand{Config: cfg}); err != nil {
		return nil, err
	}
	return &rpc.EventConfigResponse{Config: cfg}, nil
}

func (n *Node) getEventConfig(ctx context.Context, req *rpc.GetEventConfigRequest) (*rpc.EventConfigResponse, error) {
	if !n.isLeader() {
		var resp rpc.EventConfigResponse
		return &resp, n.forward(ctx, rpc.MethodEventConfigGet, req, &resp)
	}
	if _, err := n.function(req.FunctionName); err != nil {
		return nil, err
	}
	cfg, ok := n.fsm.EventConfig(req.FunctionName)
	if !ok {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "The function %s doesn't have an EventInvokeConfig", rpc.DefaultFunctionARN(req.FunctionName))
	}
	return &rpc.EventConfigResponse{Config: cfg}, nil
}

func (n *Node) deleteEventConfig(ctx context.Context, req *rpc.GetEventConfigRequest) (*rpc.DeleteEventConfigResponse, error) {
	if !n.isLeader() {
		var resp rpc.DeleteEventConfigResponse
		return &resp, n.forward(ctx, rpc.MethodEventConfigDelete, req, &resp)
	}
	if _, err := n.function(req.FunctionName); err != nil {
		return nil, err
	}
	if _, err := n.apply(scheduler.DeleteEventConfigCommand{Name: req.FunctionName}); err != nil {
		return nil, err
	}
	return &rpc.DeleteEventConfigResponse{}, nil
}
