// Package containerinit is libcontainer's container init, the process that
// sets a sandbox up from inside before its PID 1 runs, and nothing else. A
// program that imports it and is started with "init" as its first argument
// becomes that init and never reaches main.
//
// Both the agent and cmd/nimbus-init import it. libcontainer starts the
// init by re-executing the program that calls it; when the agent's binary
// is that program, the init pays for the Go start and the package
// initialisers of all of the agent's code, which it never uses. The agent
// therefore hands each container init over to nimbus-init, a binary of
// this package alone (sandbox/inithelper_linux.go); it is its own init only
// when nimbus-init is not installed beside it.
//
// It must not import anything libcontainer's init does not need: every
// initialiser it pulls in runs at every sandbox start.
package containerinit
