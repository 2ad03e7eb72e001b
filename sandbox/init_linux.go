package sandbox

import (
	"os"

	// Device rules for the cgroup manager.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	// The C half of the container init: joins namespaces before Go starts.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// The program's one init(): when libcontainer re-executes this binary as
// "init" to become a sandbox's first process, hand over to it. It never
// returns. In every other case it does nothing.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}
