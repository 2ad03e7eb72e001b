// Package logstore keeps function logs in a replicated store: NATS
// JetStream, embedded. Servers run the engine (StartServer: a JetStream
// cluster of file-store streams, or a standalone one for a dev node);
// every node, worker or server, is a client of it (Store).
//
// What it owns:
//
//   - the embedded server's configuration: its listeners, routes to the
//     other servers (the node hands it the ones gossip knows), credentials
//     derived from the cluster's secret, memory and disk bounds;
//   - one stream per function (LOGS_NAME, subject logs.NAME), its log group
//     /aws/lambda/NAME: R1 until three servers exist, then R3; retention by
//     age (CloudWatch's day values) and by size;
//   - the publisher: a bounded buffer per node, lines encoded into batches
//     per function as they are appended (by size and time, compressed when
//     it pays), up to Options.PublishWindow batches per function awaiting
//     their acknowledgement, each chained to the one before it
//     (Nats-Expected-Last-Msg-Id) so the stream keeps their order, a failed
//     one retried with the same id, once those before it are stored, until
//     a quorum acknowledges it (publish.go); drops counted and reported in
//     the function's log ("nimbus: N lines dropped");
//   - the batch format (batch.go) and the cursor: a batch's stream sequence
//     and an event's index in it, the same on every replica, so a follower
//     moving from one node to another goes on with no gap and no repeat;
//   - reads: time range, request id, CloudWatch filter patterns
//     (filter.go), long polls woken by new batches.
//
// What it must never do:
//
//   - block an Append: a function never waits for the store;
//   - trust a batch read from the store: decodeBatch bounds every count and
//     size before it allocates;
//   - run containers, talk to the scheduler's Raft, or know what a function
//     is beyond its name;
//   - import anything of nimbus but rpc.
package logstore
