// Package node is the nimbus agent: it wires Raft (with the scheduler's FSM),
// memberlist, the rpc server, the sandbox manager, the code store and the log
// store into one running node, and serves the client API.
//
// A node with the server role is a Raft voter; with the worker role it runs
// sandboxes. `nimbus agent --dev` is one node with both roles and a
// single-voter Raft bootstrapped in its data dir.
//
// node owns wiring and request handling: validating requests, storing code,
// proposing commands to Raft and running invocations. It must not hold
// replicated state of its own (that is the scheduler's FSM) nor reach into a
// container (that is the sandbox package).
package node
