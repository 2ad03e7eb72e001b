package node

import (
	"testing"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// FuzzNodeMeta: gossip metadata comes from the network. Any bytes must be
// taken without a panic, and a node whose metadata does not decode is
// still tracked (with no roles, so it gets no work and no Raft vote).
func FuzzNodeMeta(f *testing.F) {
	good, _ := msgpack.Marshal(&nodeMeta{Roles: []string{rpc.RoleServer, rpc.RoleWorker}, RPC: "10.0.0.1:8700", MemoryMB: 1024, Version: version})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0xa5, 'r', 'o', 'l', 'e', 's', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, meta []byte) {
		m := &membership{seen: map[string]*memberState{}, leaving: map[string]bool{}}
		m.event(&memberlist.Node{Name: "x", Meta: meta}, rpc.MemberAlive)
		st, ok := m.get("x")
		if !ok || st.status != rpc.MemberAlive {
			t.Fatalf("node not tracked: %+v", st)
		}
	})
}

func TestParseEncryptKey(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"AAAAAAAAAAAAAAAAAAAAAA==", true},                     // 16 bytes
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", true}, // 32 bytes
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", true},             // 24 bytes
		{"AAAA", false}, // 3 bytes
		{"not base64!", false},
	} {
		_, err := ParseEncryptKey(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ParseEncryptKey(%q) = %v, want ok=%v", c.in, err, c.ok)
		}
	}
}

func TestGossipAddrFor(t *testing.T) {
	got, err := GossipAddrFor("10.213.0.11:8700")
	if err != nil || got != "10.213.0.11:8701" {
		t.Fatalf("GossipAddrFor = %q, %v", got, err)
	}
	if _, err := GossipAddrFor("no-port"); err == nil {
		t.Fatal("an address without a port was accepted")
	}
}
