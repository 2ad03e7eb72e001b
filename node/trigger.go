package node

import (
	"context"
	"time"

	"nimbus/rpc"
	"nimbus/scheduler"
)

// Queue triggers' rpc methods (Lambda's event source mappings). Each runs
// on the leader; the pollers (trigger_poller.go) follow the stored
// triggers.

func (n *Node) registerTriggers() {
	rpc.Handle(n.server, rpc.MethodTriggerCreate, n.createTrigger)
	rpc.Handle(n.server, rpc.MethodTriggerUpdate, n.updateTrigger)
	rpc.Handle(n.server, rpc.MethodTriggerGet, n.getTrigger)
	rpc.Handle(n.server, rpc.MethodTriggerList, n.listTriggers)
	rpc.Handle(n.server, rpc.MethodTriggerDelete, n.deleteTrigger)
}

// triggersChanged wakes the pollers after a change.
func (n *Node) triggersChanged() {
	if p := n.lead.triggers.Load(); p != nil {
		p.poke()
	}
}

func (n *Node) createTrigger(ctx context.Context, req *rpc.CreateTriggerRequest) (*rpc.TriggerResponse, error) {
	if !n.isLeader() {
		var resp rpc.TriggerResponse
		return &resp, n.forward(ctx, rpc.MethodTriggerCreate, req, &resp)
	}
	t, err := scheduler.ValidateTrigger(n.cfg.ARNs, req, func(name string) bool {
		_, ok := n.fsm.Function(name)
		return ok
	}, func(name string) bool {
		_, ok := n.fsm.Queue(name)
		return ok
	})
	if err != nil {
		return nil, err
	}
	t.UUID = newRequestID()
	t.LastModifiedMs = time.Now().UnixMilli()
	if _, err := n.apply(scheduler.PutTriggerCommand{Trigger: t, Mode: scheduler.PutCreate}); err != nil {
		return nil, err
	}
	n.log.Info("queue trigger created", "uuid", t.UUID, "function", t.Function, "queue", t.Queue, "batch_size", t.BatchSize)
	n.triggersChanged()
	return &rpc.TriggerResponse{Trigger: t}, nil
}

func (n *Node) trigger(uuid string) (*rpc.Trigger, error) {
	t, ok := n.fsm.Trigger(uuid)
	if !ok {
		return nil, rpc.Errorf(rpc.CodeResourceNotFound, "The resource you requested does not exist. (event source mapping %s)", uuid)
	}
	return t, nil
}

func (n *Node) updateTrigger(ctx context.Context, req *rpc.UpdateTriggerRequest) (*rpc.TriggerResponse, error) {
	if !n.isLeader() {
		var resp rpc.TriggerResponse
		return &resp, n.forward(ctx, rpc.MethodTriggerUpdate, req, &resp)
	}
	cur, err := n.trigger(req.UUID)
	if err != nil {
		return nil, err
	}
	t, err := scheduler.ApplyTriggerUpdate(cur, req)
	if err != nil {
		return nil, err
	}
	t.LastModifiedMs = time.Now().UnixMilli()
	if _, err := n.apply(scheduler.PutTriggerCommand{Trigger: t, Mode: scheduler.PutUpdate}); err != nil {
		return nil, err
	}
	n.triggersChanged()
	return &rpc.TriggerResponse{Trigger: t}, nil
}

func (n *Node) getTrigger(ctx context.Context, req *rpc.TriggerRequest) (*rpc.TriggerResponse, error) {
	if !n.isLeader() {
		var resp rpc.TriggerResponse
		return &resp, n.forward(ctx, rpc.MethodTriggerGet, req, &resp)
	}
	t, err := n.trigger(req.UUID)
	if err != nil {
		return nil, err
	}
	return &rpc.TriggerResponse{Trigger: t}, nil
}

func (n *Node) listTriggers(ctx context.Context, req *rpc.ListTriggersRequest) (*rpc.ListTriggersResponse, error) {
	if !n.isLeader() {
		var resp rpc.ListTriggersResponse
		return &resp, n.forward(ctx, rpc.MethodTriggerList, req, &resp)
	}
	if req.Function != "" {
		if err := scheduler.ValidateName(req.Function); err != nil {
			return nil, err
		}
	}
	return &rpc.ListTriggersResponse{Triggers: n.fsm.Triggers(req.Function)}, nil
}

func (n *Node) deleteTrigger(ctx context.Context, req *rpc.TriggerRequest) (*rpc.DeleteTriggerResponse, error) {
	if !n.isLeader() {
		var resp rpc.DeleteTriggerResponse
		return &resp, n.forward(ctx, rpc.MethodTriggerDelete, req, &resp)
	}
	cur, err := n.trigger(req.UUID)
	if err != nil {
		return nil, err
	}
	if _, err := n.apply(scheduler.DeleteTriggerCommand{UUID: req.UUID}); err != nil {
		return nil, err
	}
	n.triggersChanged()
	return &rpc.DeleteTriggerResponse{Trigger: cur}, nil
}
