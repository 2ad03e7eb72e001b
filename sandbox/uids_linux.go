package sandbox

import (
	"hash/fnv"
	"path/filepath"
	"sync"
)

// Each sandbox runs as a host uid (and the gid of the same number) of its
// own, taken from a range the manager owns, so that the kernel's per-user
// limits (inotify instances and watches, user namespaces, message queue
// bytes) are per sandbox and one function cannot use up another's. Inside,
// the function sees uid 993 and gid 990 as on Lambda: its PID 1 starts the
// runtime in a user namespace of its own that maps 993 to the host uid
// (pid1_linux.go). The namespace is created by PID 1 running as the host
// uid, not by root, because the kernel charges a namespace's counts to its
// creator too: one made by root would share root's limits with the agent
// and every other sandbox.

// Defaults of Config.SandboxUIDFirst and SandboxUIDCount: above the uids
// distributions give people and services, inside the range systemd leaves
// to containers. The default range is one of uidRanges blocks of 65,536
// from defaultSandboxUIDFirst, picked by the state dir's path, so that
// agents sharing a host (scripts/cluster) most likely get ranges of their
// own; set the range to be sure.
const (
	defaultSandboxUIDFirst = 0x60000000
	defaultSandboxUIDCount = 65536
	uidRanges              = 128
)

// defaultUIDFirst is the first uid of the default range of stateDir.
func defaultUIDFirst(stateDir string) int {
	h := fnv.New32a()
	h.Write([]byte(filepath.Clean(stateDir)))
	return defaultSandboxUIDFirst + int(h.Sum32()%uidRanges)*defaultSandboxUIDCount
}

// uidPool hands out the host uids of a range, each to one live sandbox at
// a time. Safe for concurrent use; mu guards next and used.
type uidPool struct {
	first, count int

	mu   sync.Mutex
	next int // where the search for a free uid starts: uids are reused last
	used map[int]struct{}
}

func newUIDPool(first, count int) *uidPool {
	return &uidPool{first: first, count: count, used: map[int]struct{}{}}
}

// take returns a free uid, or false when every uid of the range is held.
func (p *uidPool) take() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; i < p.count; i++ {
		uid := p.first + (p.next+i)%p.count
		if _, held := p.used[uid]; !held {
			p.used[uid] = struct{}{}
			p.next = (p.next + i + 1) % p.count
			return uid, true
		}
	}
	return 0, false
}

// give returns uid to the pool once no process of its sandbox is left.
func (p *uidPool) give(uid int) {
	p.mu.Lock()
	delete(p.used, uid)
	p.mu.Unlock()
}
