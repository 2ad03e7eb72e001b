package containerinit

import (
	"runtime/debug"
	"strings"
)

// Fingerprint names the versions of the modules the init is built from
// (libcontainer's, whose parent and init halves speak a private protocol,
// and the cgroups library's), one "path@version sum" per line. An agent
// hands its container inits only to a nimbus-init whose fingerprint is its
// own. It is empty when the program carries no module information (a
// test binary).
func Fingerprint() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var b strings.Builder
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/opencontainers/runc", "github.com/opencontainers/cgroups":
			if d.Replace != nil {
				d = d.Replace
			}
			b.WriteString(d.Path + "@" + d.Version + " " + d.Sum + "\n")
		}
	}
	return b.String()
}
