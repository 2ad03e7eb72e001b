// Package scheduler owns nimbus's replicated state and the leader's
// decisions about where invocations run: the Raft FSM, the commands that
// change it, the rules a request must pass before a command is proposed,
// and the concurrency ledger with placement.
//
// What it owns today:
//
//   - the function registry: name -> *rpc.FunctionConfig, where a config's
//     Revision is the Raft index of the entry that stored it;
//   - reserved concurrency: name -> reserved slots, beside the registry
//     (deleting a function deletes its reservation), with ReservedTotal kept
//     as the sum;
//   - the async event queue (async.go): events accepted for asynchronous
//     invocation and not finished, with a due-time index, leases and
//     retries; and each function's event configuration (eventconfig.go:
//     retries, maximum age, destinations);
//   - versions, aliases and function URLs (versions.go, aliases.go,
//     urls.go): immutable numbered copies of a function's $LATEST, with
//     the highest number ever published; aliases with at most one weighted
//     additional version; one URL per function and qualifier, indexed by
//     id. Deleting a function deletes all of them;
//   - the command encoding: one CommandType byte followed by msgpack
//     (EncodeCommand, given a Command, which knows its byte), with one
//     applyX function per command (PutFunction, DeleteFunction,
//     PutConcurrency, DeleteConcurrency, AsyncAccept, AsyncUpdate,
//     PutEventConfig, DeleteEventConfig, PublishVersion, DeleteVersion,
//     PutAlias, DeleteAlias, PutURL, DeleteURL); an unknown command panics
//     unless it carries CmdIgnorable; FSMVersion and CommandVersion tell
//     the node which commands every server can apply;
//   - snapshots: a header (magic and version) followed by typed msgpack
//     records (functions, reservations, event configurations, queued
//     events, version counters, versions, aliases, URLs), restored into a fresh state that is swapped in whole;
//   - the built-in queues (queue*.go): queue configurations, their
//     messages with per-queue due-time and retention indexes, FIFO groups
//     and deduplication windows; receives select their messages in Apply
//     and give each a random receipt nonce that deletes must present
//     (PutQueue, DeleteQueue, QueueSend, QueueOps); and queue triggers
//     (trigger.go: PutTrigger, DeleteTrigger), with their snapshot records;
//   - the validation of requests with Lambda's rules and messages
//     (NormalizeCreate, ApplyConfigUpdate, ValidateName,
//     ValidateReservation, BuildAlias, ValidateQualifier, ValidateURL);
//   - the concurrency ledger (Ledger): the leader's soft state of which
//     invocation slots are live on which worker, the account limit, the
//     reserved and unreserved pools, and placement (warm sandbox first,
//     then most free memory). It is never replicated: a new leader calls
//     Reset and rebuilds it from worker heartbeats, so a sync invoke never
//     waits for a Raft commit.
//
// Later it also owns server membership. It extends the same FSM: new
// CommandType values and new snapshot record types are appended, never
// renumbered.
//
// What it must never do:
//
//   - run containers, fetch or store code, write logs, or touch the network
//     (that is the node's and the sandbox's work; the node learns of changes
//     through FSMOptions.OnFunctionChange, and feeds the ledger the
//     heartbeats it receives);
//   - do I/O, read the clock or draw random numbers inside Apply: every
//     replica must reach the same state from the same log, so times and ids
//     come in the command, supplied by the node that proposed it (the
//     ledger, which is not replicated, reads its injectable clock);
//   - change a stored object in place: stored values are immutable and shared
//     with readers and snapshots; a change copies, changes the copy and
//     stores the copy;
//   - put the ledger's counts in the FSM or a log entry;
//   - import anything of nimbus but rpc.
package scheduler
