// Command nimbus is the one binary of the platform: `nimbus agent` runs a
// node; every other subcommand is a client of a node's rpc API.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
