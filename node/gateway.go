package node

import (
	"context"

	"nimbus/bundle"
	"nimbus/gateway"
	"nimbus/rpc"
)

// startGateway serves Lambda's REST API on cfg.HTTPListener, when set, over
// the very operations the rpc server's handlers are.
func (n *Node) startGateway() error {
	if n.cfg.HTTPListener == nil {
		return nil
	}
	gw, err := gateway.New(gateway.Options{
		Ops: gateway.Operations{
			CreateFunction:       n.createFunction,
			GetFunction:          n.getFunction,
			UpdateFunctionCode:   n.updateFunctionCode,
			UpdateFunctionConfig: n.updateFunctionConfig,
			DeleteFunction:       n.deleteFunction,
			ListFunctions:        n.listFunctions,
			Invoke:               n.invoke,
			InvokeStream: func(ctx context.Context, req *rpc.InvokeRequest, onPart func(context.Context, *rpc.InvokeStreamPart) error) (*rpc.InvokeResponse, error) {
				return n.invokeStreamTo(ctx, req, onPart)
			},
			PutConcurrency:    n.putConcurrency,
			GetConcurrency:    n.getConcurrency,
			DeleteConcurrency: n.deleteConcurrency,
			AccountSettings:   n.accountSettings,

			// Versions, aliases, function URLs and event configuration: the
			// rpc handlers (onLeader forwards from a node that does not lead).
			PublishVersion:    onLeader(n, rpc.MethodVersionPublish, n.publishVersion),
			ListVersions:      onLeader(n, rpc.MethodVersionList, n.listVersions),
			CreateAlias:       onLeader(n, rpc.MethodAliasCreate, n.createAlias),
			UpdateAlias:       onLeader(n, rpc.MethodAliasUpdate, n.updateAlias),
			GetAlias:          onLeader(n, rpc.MethodAliasGet, n.getAlias),
			ListAliases:       onLeader(n, rpc.MethodAliasList, n.listAliases),
			DeleteAlias:       onLeader(n, rpc.MethodAliasDelete, n.deleteAlias),
			CreateURL:         onLeader(n, rpc.MethodURLCreate, n.createURL),
			UpdateURL:         onLeader(n, rpc.MethodURLUpdate, n.updateURL),
			GetURL:            onLeader(n, rpc.MethodURLGet, n.getURL),
			DeleteURL:         onLeader(n, rpc.MethodURLDelete, n.deleteURL),
			ListURLs:          onLeader(n, rpc.MethodURLList, n.listURLs),
			ResolveURL:        onLeader(n, rpc.MethodURLResolve, n.resolveURL),
			PutEventConfig:    n.putEventConfig,
			GetEventConfig:    n.getEventConfig,
			DeleteEventConfig: n.deleteEventConfig,
			ListEventConfigs:  n.listEventConfigs,
			CreateTrigger:     n.createTrigger,
			UpdateTrigger:     n.updateTrigger,
			GetTrigger:        n.getTrigger,
			ListTriggers:      n.listTriggers,
			DeleteTrigger:     n.deleteTrigger,
			PublishLayer:      n.publishLayer,
			ListLayers:        n.listLayers,
			GetLayer:          n.getLayer,
			DeleteLayer:       n.deleteLayer,
		},
		URLDomain:  n.cfg.URLDomain,
		ARNs:       n.cfg.ARNs,
		MaxZipSize: bundle.MaxZipSize,
		Logger:     n.log.With("component", "gateway"),
	})
	if err != nil {
		return err
	}
	ln := n.cfg.HTTPListener
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		if err := gw.Serve(ln); err != nil {
			n.log.Warn("gateway stopped", "err", err)
		}
	}()
	n.closers = append(n.closers, gw.Close)
	return nil
}

// HTTPAddr is the address of the REST API ("" when the node serves none).
func (n *Node) HTTPAddr() string {
	if n.cfg.HTTPListener == nil {
		return ""
	}
	return n.cfg.HTTPListener.Addr().String()
}

func (n *Node) registerAccount() {
	rpc.Handle(n.server, rpc.MethodAccountSettings, n.accountSettings)
}

// accountSettings reports the account's limits and the registry's usage,
// as the leader sees them (a non-leader forwards, as for every read).
func (n *Node) accountSettings(ctx context.Context, req *rpc.AccountSettingsRequest) (*rpc.AccountSettingsResponse, error) {
	if !n.isLeader() {
		var resp rpc.AccountSettingsResponse
		return &resp, n.forward(ctx, rpc.MethodAccountSettings, req, &resp)
	}
	out := &rpc.AccountSettingsResponse{
		ConcurrentExecutions:           n.cfg.AccountConcurrency,
		UnreservedConcurrentExecutions: n.cfg.AccountConcurrency - n.fsm.ReservedTotal(),
		CodeSizeZipped:                 bundle.MaxZipSize,
		CodeSizeUnzipped:               bundle.MaxUnzippedSize,
	}
	for _, f := range n.fsm.Functions() {
		out.FunctionCount++
		out.TotalCodeSize += f.CodeSize
	}
	return out, nil
}

// checkIfRevision refuses a conditional update whose function changed
// since the caller read it (Lambda's RevisionId precondition).
func checkIfRevision(cur *rpc.FunctionConfig, want uint64) error {
	if want != 0 && cur.Revision != want {
		return rpc.Errorf(rpc.CodePreconditionFailed,
			"The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
	}
	return nil
}
