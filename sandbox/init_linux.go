package sandbox

import (
	"os"
	"runtime"

	// Device rules for the cgroup manager.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	// The C half of the container init: joins namespaces before Go starts.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// The program's one init(): when libcontainer re-executes this binary as
// "init" to set up a sandbox, hand over to it; it does not return. (When
// the sandbox then runs this binary as its PID 1, "sandbox-init", it never
// gets this far: C handles it before the Go runtime starts,
// pid1init_linux.go.) In every other case it does nothing.
//
// It also keeps the main goroutine on the main thread, so that no other
// goroutine ever runs there: libcontainer's mount-source goroutine joins a
// container's mount namespace on a locked thread and lets the runtime end
// the thread after, but the main thread cannot end; it would stay in that
// namespace for the life of the agent, holding the sandbox's mounts (its
// /tmp among them) and showing them in /proc/self/mountinfo.
func init() {
	runtime.LockOSThread()
	if len(os.Args) > 1 {
		if os.Args[1] == "init" {
			libcontainer.Init()
		}
	}
}
