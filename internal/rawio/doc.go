// Package rawio reads and writes TCP connections with raw system calls,
// which the Go scheduler does not see.
//
// Every read and write through the net package enters the scheduler's
// system-call state, and the first one after the program was idle wakes the
// runtime's monitor thread (sysmon), which then polls every 20 us for as
// long as any goroutine runs and takes the P from a system call that lasts
// over one poll (a loopback write delivers the segment to its reader before
// it returns, tens of microseconds). On a warm invocation, a handful of
// small reads and writes on loopback, that monitor was about a quarter of
// the agent's CPU. A read or write on a non-blocking socket never blocks,
// so it need not tell the scheduler: Conn makes them as raw system calls
// inside the connection's syscall.RawConn, so that the poller still waits
// when there is nothing to read or no room to write, and deadlines and
// Close work as on the connection itself.
package rawio
