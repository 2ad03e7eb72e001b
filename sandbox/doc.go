// Package sandbox runs function invocations in containers (runc's
// libcontainer, embedded): the default `provided` image, the container
// config and quotas, the sandbox's own PID 1, user namespace, host uid and
// seccomp filter, the overlays it mounts host folders through, the Lambda
// Runtime API served into each sandbox, the warm pool with freeze and thaw,
// timeouts, OOM and crash handling, and log capture.
//
// It owns every sandbox it starts and nothing else: it never touches
// another agent's containers, cgroups or overlays (it moves only its own
// process, into a cgroup of its own), never downloads anything, and
// knows nothing of Raft, scheduling or the network beyond a sandbox's own
// loopback. Everything a sandbox sends (Runtime API requests, output,
// exit statuses) is untrusted and bounded. It imports rpc types at most.
//
// The Manager runs on Linux only; the types other packages use build
// everywhere.
package sandbox
