package scheduler

import (
	"errors"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

func publishCmd(name, sha string) PublishLayerCommand {
	return PublishLayerCommand{
		Layer:    &rpc.LayerVersion{Name: name, CodeSHA256: sha, CodeSize: 10, UnzippedSize: 20, CompatibleRuntimes: []string{rpc.RuntimePython313}, CreatedMs: 1},
		LayerARN: rpc.ARNScope{}.Layer(name, 0),
	}
}

// Versions number from 1 per layer, a deleted number is never given
// again, and the registry survives a snapshot exactly.
func TestLayerVersions(t *testing.T) {
	f := NewFSM(FSMOptions{})
	for i, want := range []int64{1, 2, 3} {
		res := apply(t, f, uint64(i+1), CmdPublishLayer, publishCmd("libs", "aa"))
		if res.Err != nil || res.Layer.Version != want || res.Layer.ARN != "arn:aws:lambda:local:000000000000:layer:libs:"+string(rune('0'+want)) {
			t.Fatalf("publish %d: %+v %v", i, res.Layer, res.Err)
		}
	}
	if res := apply(t, f, 4, CmdPublishLayer, publishCmd("other", "bb")); res.Layer.Version != 1 {
		t.Fatalf("another layer starts at 1: %+v", res.Layer)
	}
	if res := apply(t, f, 5, CmdDeleteLayerVersion, DeleteLayerVersionCommand{Name: "libs", Version: 3}); res.Err != nil || res.Layer.Version != 3 {
		t.Fatalf("delete: %+v %v", res.Layer, res.Err)
	}
	res := apply(t, f, 6, CmdDeleteLayerVersion, DeleteLayerVersionCommand{Name: "libs", Version: 3})
	if !errors.Is(res.Err, rpc.ErrResourceNotFound) {
		t.Fatalf("deleting twice: %v", res.Err)
	}
	if res := apply(t, f, 7, CmdPublishLayer, publishCmd("libs", "cc")); res.Layer.Version != 4 {
		t.Fatalf("after deleting 3 the next version is %d, want 4", res.Layer.Version)
	}
	if _, ok := f.LayerVersion("libs", 3); ok {
		t.Fatal("deleted version still there")
	}
	if v, ok := f.LayerVersion("libs", 2); !ok || v.CodeSHA256 != "aa" {
		t.Fatalf("version 2: %+v", v)
	}
	latest := f.Layers()
	if len(latest) != 2 || latest[0].Name != "libs" || latest[0].Version != 4 || latest[1].Name != "other" {
		t.Fatalf("latest versions: %+v", latest)
	}
	// Every version of "other" deleted: it leaves the list but keeps its
	// number.
	apply(t, f, 8, CmdDeleteLayerVersion, DeleteLayerVersionCommand{Name: "other", Version: 1})

	g := NewFSM(FSMOptions{})
	if err := restore(g, persist(t, f)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g.Layers(), f.Layers()) || !reflect.DeepEqual(g.LayerVersions("libs"), f.LayerVersions("libs")) {
		t.Fatalf("after restore: %+v, want %+v", g.LayerVersions("libs"), f.LayerVersions("libs"))
	}
	if res := apply(t, g, 9, CmdPublishLayer, publishCmd("other", "dd")); res.Layer.Version != 2 {
		t.Fatalf("restored registry gives %d to a layer whose 1 was deleted, want 2", res.Layer.Version)
	}
}

func TestLayerSnapshotRejects(t *testing.T) {
	cases := map[string]func(enc *msgpack.Encoder){
		"version twice": func(enc *msgpack.Encoder) {
			for i := 0; i < 2; i++ {
				enc.EncodeUint8(uint8(recordLayerVersion))
				enc.Encode(&rpc.LayerVersion{Name: "l", Version: 1})
			}
			enc.EncodeUint8(uint8(recordEnd))
			enc.EncodeUint64(2)
		},
		"next below a version": func(enc *msgpack.Encoder) {
			enc.EncodeUint8(uint8(recordLayerVersion))
			enc.Encode(&rpc.LayerVersion{Name: "l", Version: 5})
			enc.EncodeUint8(uint8(recordLayerNext))
			enc.Encode(&layerNextRecord{Name: "l", Next: 3})
			enc.EncodeUint8(uint8(recordEnd))
			enc.EncodeUint64(2)
		},
		"version 0": func(enc *msgpack.Encoder) {
			enc.EncodeUint8(uint8(recordLayerVersion))
			enc.Encode(&rpc.LayerVersion{Name: "l"})
			enc.EncodeUint8(uint8(recordEnd))
			enc.EncodeUint64(1)
		},
	}
	for name, records := range cases {
		if err := restore(NewFSM(FSMOptions{}), snapshotBytes(t, snapshotVersion, records)); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
}
