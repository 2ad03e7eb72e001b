package sandbox

import "embed"

// shimFiles are the managed runtimes' shims, ours, built into the agent:
// python/, node/ and ruby/ are mounted read-only at /var/runtime in their
// runtime's sandboxes (a changed shim needs no image rebuild); java/ is
// compiled into the Java image by its recipe.
//
//go:embed shims
var shimFiles embed.FS
