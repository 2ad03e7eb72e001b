package sandbox

import "testing"

// The pool hands each uid of its range to one holder at a time, says so
// when all are held, and takes back what is given; default ranges stay in
// their blocks and depend on the state dir only.
func TestUIDPool(t *testing.T) {
	t.Parallel()
	p := newUIDPool(5000, 3)
	held := map[int]bool{}
	for range 3 {
		uid, ok := p.take()
		if !ok || held[uid] || uid < 5000 || uid >= 5003 {
			t.Fatalf("take = %d %v, held %v", uid, ok, held)
		}
		held[uid] = true
	}
	if uid, ok := p.take(); ok {
		t.Fatalf("a fourth uid %d from a range of three", uid)
	}
	p.give(5001)
	if uid, ok := p.take(); !ok || uid != 5001 {
		t.Fatalf("after giving 5001 back: %d %v", uid, ok)
	}
	a, b := defaultUIDFirst("/var/lib/nimbus/containers"), defaultUIDFirst("/var/lib/nimbus/containers/")
	if a != b || a < defaultSandboxUIDFirst || a > defaultSandboxUIDFirst+(uidRanges-1)*defaultSandboxUIDCount || (a-defaultSandboxUIDFirst)%defaultSandboxUIDCount != 0 {
		t.Errorf("default ranges %#x and %#x of one state dir", a, b)
	}
}
