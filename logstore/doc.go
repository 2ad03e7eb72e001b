// Package logstore keeps the logs of the functions on one node: every line a
// function prints and the START/END/REPORT lines the platform writes per
// invocation, readable and followable live (`nimbus logs tail NAME --follow`
// long-polls Store.Read).
//
// What it owns:
//
//   - one directory per function under the store's root, holding segment
//     files named after the Seq of their first line; a segment is a magic
//     header followed by length-prefixed, CRC-checked records (record.go);
//   - the Seq of each function's lines: strictly increasing from 1, assigned
//     by Append, recovered at Open from the files (an empty segment named
//     after the next Seq keeps it when every line has expired);
//   - retention: per function, the oldest segments are dropped past
//     Options.RetainBytes, and segments whose newest line is older than
//     Options.RetainAge are dropped by a background pass every second;
//   - the recent window: the newest lines of each function in memory (a few
//     thousand lines, 256 KiB), which serves Tail (Lambda's LogType=Tail) and
//     the Reads of followers without touching the files;
//   - the wake-up of long-polling Reads when lines are appended.
//
// Durability: Append writes into a per-function buffer; one background
// goroutine writes the buffers to the files every 50 ms, and Close flushes
// and fsyncs. A crash loses at most the last 50 ms of lines; a record torn
// by it is truncated away at the next Open. Append never fsyncs and does no
// system call per line.
//
// Lifecycle of one function's log:
//
//	(none) --Append--> active segment --full--> closed segment(s) + new active
//	                         |                          |
//	                         |                  RetainBytes/RetainAge: removed
//	Delete: directory renamed to .deleted-* and removed; Seqs restart at 1
//
// What it must never do:
//
//   - run containers, talk Raft or the network, or know what a function is
//     beyond its name: the node feeds it lines and serves its Reads;
//   - read the clock in Append: what Append does depends only on its
//     arguments and the log before it (times come from the caller), so that
//     a later replicated log can feed it on every node alike;
//   - make a path of a name that is not a valid Lambda function name;
//   - fail Open over a torn record, or trust any length read from a file
//     before it is bounded and checked;
//   - import anything of nimbus but rpc.
package logstore
