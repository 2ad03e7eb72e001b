package containerinit

import (
	"os"
	"runtime"

	// Device rules for the cgroup manager.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	// The C half of the container init: joins namespaces before Go starts.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// When libcontainer re-executes the program as "init" to set up a sandbox,
// hand over to it; it does not return. In every other case do nothing.
//
// It also keeps the main goroutine on the main thread, so that no other
// goroutine ever runs there: libcontainer's mount-source goroutine joins a
// container's mount namespace on a locked thread and lets the runtime end
// the thread after, but the main thread cannot end; it would stay in that
// namespace for the life of the agent, holding the sandbox's mounts (its
// /tmp among them) and showing them in /proc/self/mountinfo.
func init() {
	runtime.LockOSThread()
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}
