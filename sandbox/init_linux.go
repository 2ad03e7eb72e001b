package sandbox

// libcontainer's container init, for when this program is its own
// (containerinit's doc comment). When the sandbox runs this binary as its
// PID 1, "sandbox-init", it never gets as far as Go: C handles it before
// the Go runtime starts (pid1init_linux.go); when nimbus-init is beside
// it, C hands the container init over to it just as early
// (inithelper_linux.go).
import _ "nimbus/sandbox/containerinit"
