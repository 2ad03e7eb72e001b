// Command nimbus-init is the container init of nimbus's sandboxes: the
// process libcontainer starts to set a sandbox up from inside before its
// PID 1 runs. An agent finds it beside its own binary and hands every
// container init over to it, so that each sandbox start pays for the Go
// start of this small program instead of the agent's (see
// sandbox/containerinit). Install it beside nimbus; it is not meant to be
// run by hand.
//
// Usage:
//
//	nimbus-init fingerprint   print the versions it is built from
package main

import (
	"fmt"
	"os"

	"nimbus/sandbox/containerinit"
)

func main() {
	// "init" never gets here: containerinit's init() takes it.
	if len(os.Args) == 2 && os.Args[1] == "fingerprint" {
		fmt.Print(containerinit.Fingerprint())
		return
	}
	fmt.Fprintln(os.Stderr, "nimbus-init is the container init of nimbus's sandboxes, started by the agent; install it beside nimbus.\nusage: nimbus-init fingerprint")
	os.Exit(2)
}
