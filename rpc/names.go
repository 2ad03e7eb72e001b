package rpc

// VersionLatest names a function's unpublished, changeable version, as
// Lambda names it.
const VersionLatest = "$LATEST"
