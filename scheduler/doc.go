// Package scheduler owns nimbus's replicated state: the Raft FSM, the
// commands that change it, and the rules a request must pass before a command
// is proposed.
//
// What it owns today:
//
//   - the function registry: name -> *rpc.FunctionConfig, where a config's
//     Revision is the Raft index of the entry that stored it;
//   - the command encoding: one CommandType byte followed by msgpack
//     (EncodeCommand), with one applyX function per command;
//   - snapshots: a header (magic and version) followed by typed msgpack
//     records, restored into a fresh state that is swapped in whole;
//   - the validation of function requests with Lambda's rules and messages
//     (NormalizeCreate, ApplyConfigUpdate, ValidateName).
//
// Later it also owns the concurrency ledger, reserved concurrency, the async
// queue, triggers, server membership and placement decisions. They extend the
// same FSM: new CommandType values and new snapshot record types are appended,
// never renumbered.
//
// What it must never do:
//
//   - run containers, fetch or store code, write logs, or touch the network
//     (that is the node's and the sandbox's work; the node learns of changes
//     through FSMOptions.OnFunctionChange);
//   - do I/O, read the clock or draw random numbers inside Apply: every
//     replica must reach the same state from the same log, so times and ids
//     come in the command, supplied by the node that proposed it;
//   - change a stored object in place: stored values are immutable and shared
//     with readers and snapshots; a change copies, changes the copy and
//     stores the copy;
//   - import anything of nimbus but rpc.
package scheduler
