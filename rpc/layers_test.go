package rpc

import (
	"strings"
	"testing"
)

func TestParseLayerRef(t *testing.T) {
	cases := []struct {
		ref     string
		name    string
		version int64
		ok      bool
	}{
		{"libs:3", "libs", 3, true},
		{"arn:aws:lambda:local:000000000000:layer:libs:12", "libs", 12, true},
		{"libs", "", 0, false},
		{"libs:0", "", 0, false},
		{"libs:-1", "", 0, false},
		{":1", "", 0, false},
		{"arn:aws:lambda:local:000000000000:function:libs:1", "", 0, false},
		{"arn:aws:lambda:local:000000000000:layer:libs", "", 0, false},
		{"libs:1:2", "", 0, false},
	}
	for _, c := range cases {
		name, version, ok := ParseLayerRef(c.ref)
		if name != c.name || version != c.version || ok != c.ok {
			t.Errorf("ParseLayerRef(%q) = %q %d %v, want %q %d %v", c.ref, name, version, ok, c.name, c.version, c.ok)
		}
	}
	if got := (ARNScope{Region: "r", Account: "1"}).Layer("l", 4); got != "arn:aws:lambda:r:1:layer:l:4" {
		t.Errorf("LayerARN = %s", got)
	}
}

// FuzzParseLayerRef: a client's layer reference never panics, and what it
// accepts names a version of at least 1 and round-trips through LayerARN.
func FuzzParseLayerRef(f *testing.F) {
	for _, s := range []string{"libs:3", "arn:aws:lambda:r:a:layer:x:9", "", ":", "a:99999999999999999999", "arn:::::::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		name, version, ok := ParseLayerRef(ref)
		if !ok {
			return
		}
		if name == "" || version < 1 || strings.Contains(name, ":") {
			t.Fatalf("%q accepted as %q %d", ref, name, version)
		}
		n2, v2, ok2 := ParseLayerRef(ARNScope{Region: "r", Account: "a"}.Layer(name, version))
		if !ok2 || n2 != name || v2 != version {
			t.Fatalf("%q: round trip gave %q %d %v", ref, n2, v2, ok2)
		}
	})
}
