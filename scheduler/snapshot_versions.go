package scheduler

import (
	"errors"
	"fmt"
	"sort"

	"github.com/vmihailenco/msgpack/v5"

	"nimbus/rpc"
)

// The snapshot records of versions, aliases and function URLs.

// versionCounterRecord is a function's highest version number ever
// published (numbers are not reused after a delete).
type versionCounterRecord struct {
	Name string `msgpack:"name"`
	Last int    `msgpack:"last"`
}

// versionsCapture is versionState's part of a snapshot: immutable values
// and copied numbers only.
type versionsCapture struct {
	counters []versionCounterRecord
	versions []*rpc.FunctionConfig
	aliases  []*rpc.Alias
	urls     []*rpc.FunctionURL
}

// captureVersions copies vs's pointers; the caller holds FSM.mu.
func captureVersions(vs *versionState) versionsCapture {
	var c versionsCapture
	for name, last := range vs.last {
		c.counters = append(c.counters, versionCounterRecord{Name: name, Last: last})
	}
	for _, set := range vs.byFn {
		for _, v := range set {
			c.versions = append(c.versions, v)
		}
	}
	for _, set := range vs.aliases {
		for _, a := range set {
			c.aliases = append(c.aliases, a)
		}
	}
	for _, set := range vs.urls {
		for _, u := range set {
			c.urls = append(c.urls, u)
		}
	}
	return c
}

func (c *versionsCapture) sort() {
	sort.Slice(c.counters, func(i, j int) bool { return c.counters[i].Name < c.counters[j].Name })
	sortVersions(c.versions)
	sortAliases(c.aliases)
	sortURLs(c.urls)
}

func (c *versionsCapture) write(record func(snapshotRecordType, any) error) error {
	for i := range c.counters {
		if err := record(recordVersionCounter, &c.counters[i]); err != nil {
			return err
		}
	}
	for _, v := range c.versions {
		if err := record(recordVersion, v); err != nil {
			return err
		}
	}
	for _, a := range c.aliases {
		if err := record(recordAlias, a); err != nil {
			return err
		}
	}
	for _, u := range c.urls {
		if err := record(recordURL, u); err != nil {
			return err
		}
	}
	return nil
}

// restoreVersionCounter reads one counter; its function must precede it.
func restoreVersionCounter(dec *msgpack.Decoder, st *fsmState) error {
	var r *versionCounterRecord
	if err := dec.Decode(&r); err != nil {
		return fmt.Errorf("version counter: %w", eofIsTruncation(err))
	}
	if r == nil || r.Name == "" {
		return errors.New("version counter without a function name")
	}
	if _, ok := st.functions[r.Name]; !ok {
		return fmt.Errorf("version counter of %q, which is not a function before it", r.Name)
	}
	if _, dup := st.versions.last[r.Name]; dup {
		return fmt.Errorf("version counter of %q appears twice", r.Name)
	}
	if r.Last < 1 {
		return fmt.Errorf("version counter of %q is %d", r.Name, r.Last)
	}
	st.versions.last[r.Name] = r.Last
	return nil
}

// restoreVersion reads one version: its function and counter precede it,
// its number is at most the counter, and it appears once.
func restoreVersion(dec *msgpack.Decoder, st *fsmState) error {
	var v *rpc.FunctionConfig
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("version: %w", eofIsTruncation(err))
	}
	if v == nil || v.Name == "" {
		return errors.New("version without a function name")
	}
	n, ok := ParseVersion(v.Version)
	if !ok {
		return fmt.Errorf("version %q of %q is not a number", v.Version, v.Name)
	}
	if _, ok := st.functions[v.Name]; !ok {
		return fmt.Errorf("version of %q, which is not a function before it", v.Name)
	}
	if n > st.versions.last[v.Name] {
		return fmt.Errorf("version %d of %q is past its counter %d", n, v.Name, st.versions.last[v.Name])
	}
	set := st.versions.byFn[v.Name]
	if _, dup := set[n]; dup {
		return fmt.Errorf("version %d of %q appears twice", n, v.Name)
	}
	if len(set) >= MaxVersions {
		return fmt.Errorf("more than %d versions of %q", MaxVersions, v.Name)
	}
	if set == nil {
		set = map[int]*rpc.FunctionConfig{}
		st.versions.byFn[v.Name] = set
	}
	if len(v.Env) == 0 {
		v.Env = nil
	}
	set[n] = v
	return nil
}

// restoreAlias reads one alias: its function and versions precede it and
// its routing passes the checks Apply makes.
func restoreAlias(dec *msgpack.Decoder, st *fsmState) error {
	var a *rpc.Alias
	if err := dec.Decode(&a); err != nil {
		return fmt.Errorf("alias: %w", eofIsTruncation(err))
	}
	if a == nil || a.FunctionName == "" || ValidateAliasName(a.Name) != nil {
		return errors.New("alias without a function or a valid name")
	}
	if _, ok := st.functions[a.FunctionName]; !ok {
		return fmt.Errorf("alias of %q, which is not a function before it", a.FunctionName)
	}
	if _, dup := st.versions.aliases[a.FunctionName][a.Name]; dup {
		return fmt.Errorf("alias %s:%s appears twice", a.FunctionName, a.Name)
	}
	if err := st.versions.checkRouting(rpc.ARNScope{}, a); err != nil {
		return fmt.Errorf("alias %s:%s: %w", a.FunctionName, a.Name, err)
	}
	if len(st.versions.aliases[a.FunctionName]) >= MaxAliases {
		return fmt.Errorf("more than %d aliases of %q", MaxAliases, a.FunctionName)
	}
	if st.versions.aliases[a.FunctionName] == nil {
		st.versions.aliases[a.FunctionName] = map[string]*rpc.Alias{}
	}
	st.versions.aliases[a.FunctionName][a.Name] = a
	return nil
}

// restoreURL reads one function URL: its function (and alias) precede it,
// its id is valid and unique.
func restoreURL(dec *msgpack.Decoder, st *fsmState) error {
	var u *rpc.FunctionURL
	if err := dec.Decode(&u); err != nil {
		return fmt.Errorf("function URL: %w", eofIsTruncation(err))
	}
	if u == nil || u.FunctionName == "" || !validURLID(u.ID) {
		return errors.New("function URL without a function or a valid id")
	}
	if _, ok := st.functions[u.FunctionName]; !ok {
		return fmt.Errorf("function URL of %q, which is not a function before it", u.FunctionName)
	}
	if u.Qualifier != "" {
		if _, ok := st.versions.aliases[u.FunctionName][u.Qualifier]; !ok {
			return fmt.Errorf("function URL of %s:%s, which is not an alias before it", u.FunctionName, u.Qualifier)
		}
	}
	if _, dup := st.versions.urls[u.FunctionName][u.Qualifier]; dup {
		return fmt.Errorf("function URL of %s appears twice", rpc.ARNScope{}.Function(u.FunctionName, u.Qualifier))
	}
	if st.versions.urlIDs[u.ID] != nil {
		return fmt.Errorf("function URL id %s appears twice", u.ID)
	}
	if st.versions.urls[u.FunctionName] == nil {
		st.versions.urls[u.FunctionName] = map[string]*rpc.FunctionURL{}
	}
	st.versions.urls[u.FunctionName][u.Qualifier] = u
	st.versions.urlIDs[u.ID] = u
	return nil
}
