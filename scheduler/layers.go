package scheduler

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// The layer registry: published layer versions, immutable once stored, and
// each layer's next version number (a deleted version's number is never
// given again, as on Lambda). The zips themselves are in the code store,
// by digest; only their metadata goes through Raft.
//
// Commands (type bytes 40-49 belong to layers):
//
//	CmdPublishLayer       stores a new version: the next number of its layer
//	CmdDeleteLayerVersion removes one version; functions that use it keep
//	                      their copy of its reference and keep running it

const (
	CmdPublishLayer       CommandType = 40 // PublishLayerCommand
	CmdDeleteLayerVersion CommandType = 41 // DeleteLayerVersionCommand
)

// Snapshot records of the layer registry (after the other records; values
// 40-49 belong to layers).
const (
	recordLayerVersion snapshotRecordType = 40 // *rpc.LayerVersion
	recordLayerNext    snapshotRecordType = 41 // layerNextRecord
)

func (PublishLayerCommand) CommandType() CommandType       { return CmdPublishLayer }
func (DeleteLayerVersionCommand) CommandType() CommandType { return CmdDeleteLayerVersion }

// PublishLayerCommand stores a new layer version. The proposer fills every
// field of Layer but Version and ARN: Apply gives the version the layer's
// next number and sets ARN to LayerARN, the layer's ARN without a version,
// followed by ":<version>".
type PublishLayerCommand struct {
	Layer    *rpc.LayerVersion `msgpack:"layer"`
	LayerARN string            `msgpack:"layer_arn"`
}

// DeleteLayerVersionCommand removes a layer version; it fails with
// ResourceNotFoundException when the version does not exist.
type DeleteLayerVersionCommand struct {
	Name    string `msgpack:"name"`
	Version int64  `msgpack:"version"`
}

// layerState is one layer: its versions by number and the next number.
// Immutable once stored: an apply builds a new one.
type layerState struct {
	next     int64
	versions map[int64]*rpc.LayerVersion
}

// layerNextRecord is a layer's next version number in a snapshot.
type layerNextRecord struct {
	Name string `msgpack:"name"`
	Next int64  `msgpack:"next"`
}

func (l *layerState) with(v *rpc.LayerVersion) *layerState {
	n := &layerState{next: l.next, versions: make(map[int64]*rpc.LayerVersion, len(l.versions)+1)}
	for k, x := range l.versions {
		n.versions[k] = x
	}
	if v != nil {
		n.versions[v.Version] = v
		if v.Version >= n.next {
			n.next = v.Version + 1
		}
	}
	return n
}

func errLayerVersionNotFound(name string, version int64) error {
	return rpc.Errorf(rpc.CodeResourceNotFound, "The resource you requested does not exist. (layer %s version %d)", name, version)
}

func (f *FSM) applyPublishLayer(body []byte) ApplyResult {
	var cmd PublishLayerCommand
	if err := decodeCommand(CmdPublishLayer, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	if cmd.Layer == nil || cmd.Layer.Name == "" {
		return ApplyResult{Err: rpc.Errorf(rpc.CodeService, "malformed %s entry: no layer name", CmdPublishLayer)}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		cur := s.layers[cmd.Layer.Name]
		if cur == nil {
			cur = &layerState{next: 1}
		}
		v := *cmd.Layer
		v.CompatibleRuntimes = append([]string(nil), cmd.Layer.CompatibleRuntimes...)
		v.Version = cur.next
		v.ARN = cmd.LayerARN + ":" + strconv.FormatInt(v.Version, 10)
		s.layers[v.Name] = cur.with(&v)
		return ApplyResult{Layer: &v}, nil
	})
}

func (f *FSM) applyDeleteLayerVersion(body []byte) ApplyResult {
	var cmd DeleteLayerVersionCommand
	if err := decodeCommand(CmdDeleteLayerVersion, body, &cmd); err != nil {
		return ApplyResult{Err: err}
	}
	return f.update(func(s *fsmState) (ApplyResult, []functionChange) {
		cur := s.layers[cmd.Name]
		if cur == nil || cur.versions[cmd.Version] == nil {
			return ApplyResult{Err: errLayerVersionNotFound(cmd.Name, cmd.Version)}, nil
		}
		removed := cur.versions[cmd.Version]
		next := cur.with(nil)
		delete(next.versions, cmd.Version)
		s.layers[cmd.Name] = next // kept when empty: its next number stays
		return ApplyResult{Layer: removed}, nil
	})
}

// LayerVersion returns one stored version. The value is immutable.
func (f *FSM) LayerVersion(name string, version int64) (*rpc.LayerVersion, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	l := f.state.layers[name]
	if l == nil {
		return nil, false
	}
	v, ok := l.versions[version]
	return v, ok
}

// LayerVersions returns a layer's versions, oldest first.
func (f *FSM) LayerVersions(name string) []*rpc.LayerVersion {
	f.mu.RLock()
	l := f.state.layers[name]
	f.mu.RUnlock()
	if l == nil {
		return nil
	}
	return sortedVersions(l)
}

// Layers returns each layer's latest version, by name (layers whose every
// version was deleted are left out).
func (f *FSM) Layers() []*rpc.LayerVersion {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*rpc.LayerVersion
	for _, l := range f.state.layers {
		var latest *rpc.LayerVersion
		for _, v := range l.versions {
			if latest == nil || v.Version > latest.Version {
				latest = v
			}
		}
		if latest != nil {
			out = append(out, latest)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func sortedVersions(l *layerState) []*rpc.LayerVersion {
	out := make([]*rpc.LayerVersion, 0, len(l.versions))
	for _, v := range l.versions {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// snapshotLayers captures the registry for a snapshot: every version (by
// name, then number) and every layer's next number. The caller holds mu.
func (s *fsmState) snapshotLayers() ([]*rpc.LayerVersion, []layerNextRecord) {
	names := make([]string, 0, len(s.layers))
	for n := range s.layers {
		names = append(names, n)
	}
	sort.Strings(names)
	var versions []*rpc.LayerVersion
	nexts := make([]layerNextRecord, 0, len(names))
	for _, n := range names {
		versions = append(versions, sortedVersions(s.layers[n])...)
		nexts = append(nexts, layerNextRecord{Name: n, Next: s.layers[n].next})
	}
	return versions, nexts
}

// restoreLayerVersion reads one version; it must be new and below its
// layer's next number if that came first.
func restoreLayerVersion(dec *msgpack.Decoder, st *fsmState) error {
	var v *rpc.LayerVersion
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("layer version: %w", eofIsTruncation(err))
	}
	if v == nil || v.Name == "" || v.Version < 1 {
		return errors.New("layer version without a name or number")
	}
	cur := st.layers[v.Name]
	if cur == nil {
		cur = &layerState{next: 1, versions: map[int64]*rpc.LayerVersion{}}
	}
	if cur.versions[v.Version] != nil {
		return fmt.Errorf("layer %s version %d appears twice", v.Name, v.Version)
	}
	st.layers[v.Name] = cur.with(v)
	return nil
}

// restoreLayerNext reads a layer's next number, which must be above each
// of its versions.
func restoreLayerNext(dec *msgpack.Decoder, st *fsmState) error {
	var r *layerNextRecord
	if err := dec.Decode(&r); err != nil {
		return fmt.Errorf("layer next: %w", eofIsTruncation(err))
	}
	if r == nil || r.Name == "" || r.Next < 1 {
		return errors.New("layer next number without a name or number")
	}
	cur := st.layers[r.Name]
	if cur == nil {
		cur = &layerState{next: 1, versions: map[int64]*rpc.LayerVersion{}}
	}
	if r.Next < cur.next {
		return fmt.Errorf("layer %s: next number %d is not above its versions", r.Name, r.Next)
	}
	n := cur.with(nil)
	n.next = r.Next
	st.layers[r.Name] = n
	return nil
}

// Limits of a layer version's request, as Lambda's.
const (
	MaxLayerNameLength    = 140
	MaxLayerDescription   = 256
	MaxCompatibleRuntimes = 15
)

// ValidateLayerName checks a layer name: 1 to 140 characters of
// [a-zA-Z0-9-_].
func ValidateLayerName(name string) error {
	var v violations
	v.layerName(name)
	return v.err()
}

// ValidateLayerPublish checks a publish request (not its zip).
func ValidateLayerPublish(req *rpc.PublishLayerRequest) error {
	if req == nil {
		return rpc.Errorf(rpc.CodeInvalidParameterValue, "missing request")
	}
	var v violations
	v.layerName(req.Name)
	if len(req.Description) > MaxLayerDescription {
		v.add("...", "description", "Member must have length less than or equal to "+strconv.Itoa(MaxLayerDescription))
	}
	if len(req.CompatibleRuntimes) > MaxCompatibleRuntimes {
		v.add(strconv.Itoa(len(req.CompatibleRuntimes))+" runtimes", "compatibleRuntimes", "Member must have length less than or equal to "+strconv.Itoa(MaxCompatibleRuntimes))
	} else {
		for _, r := range req.CompatibleRuntimes {
			if !rpc.IsRuntime(r) {
				v.add(r, "compatibleRuntimes", "Member must satisfy enum value set: ["+strings.Join(rpc.Runtimes, ", ")+"]")
			}
		}
	}
	return v.err()
}

func (v *violations) layerName(name string) {
	const field = "layerName"
	if name == "" {
		v.add(name, field, "Member must have length greater than or equal to 1")
		return
	}
	if len(name) > MaxLayerNameLength {
		v.add(name[:MaxLayerNameLength]+"...", field, "Member must have length less than or equal to "+strconv.Itoa(MaxLayerNameLength))
		return
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(isASCIILetter(c) || isASCIIDigit(c) || c == '-' || c == '_') {
			v.add(name, field, "Member must satisfy regular expression pattern: "+namePattern)
			return
		}
	}
}
