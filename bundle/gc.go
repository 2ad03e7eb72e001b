package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Live is what a collection keeps: the zips that some function version or
// layer version refers to, and the merged layer trees of the functions'
// layer lists.
type Live struct {
	Code      map[string]bool // zip digests
	LayerSets [][]string      // each function version's layer digests, in order
}

// Collected counts what a collection removed.
type Collected struct {
	Zips, Trees int
	Bytes       int64    // of the zips removed
	Removed     []string // the tree paths removed, so callers can drop what they cached
}

// Collect removes the zips and trees that live does not name, once they
// have been unreferenced in every collection for grace and their zip was
// not stored (Put) within grace either: an upload is stored before the
// function version naming it is committed, and a sandbox may still run on
// code its function no longer names. Merged layer trees go when no layer
// list of live names them; extracted trees whose zip is gone go too. What
// is unreferenced is remembered in memory only: after a restart the grace
// period starts again. Callers pass the whole live set; a digest left out
// by mistake is removed after grace.
func (s *Store) Collect(live Live, grace time.Duration) (Collected, error) {
	now := s.clock()
	var out Collected
	liveTrees := map[string]bool{}
	for sha := range live.Code {
		liveTrees[sha] = true
	}
	for _, set := range live.LayerSets {
		if len(set) > 0 {
			liveTrees[mergedKey(set)] = true
		}
	}
	seen := map[string]bool{}
	// due reports whether key has been unreferenced for grace, starting
	// the count for what was not seen unreferenced before.
	due := func(key string) bool {
		seen[key] = true
		s.mu.Lock()
		defer s.mu.Unlock()
		since, ok := s.unreferenced[key]
		if !ok {
			s.unreferenced[key] = now
			return false
		}
		return now.Sub(since) >= grace
	}

	zips, err := os.ReadDir(s.path("zips"))
	if err != nil {
		return out, fmt.Errorf("bundle: collect: %w", err)
	}
	for _, e := range zips {
		sha, ok := strings.CutSuffix(e.Name(), ".zip")
		if !ok || checkSHA(sha) != nil || live.Code[sha] {
			continue
		}
		if !due(sha) {
			continue
		}
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) < grace {
			continue
		}
		if err := s.Delete(sha); err != nil {
			return out, err
		}
		out.Zips++
		out.Bytes += fi.Size()
		out.Removed = append(out.Removed, s.treePath(sha))
	}
	trees, err := os.ReadDir(s.path("trees"))
	if err != nil {
		return out, fmt.Errorf("bundle: collect: %w", err)
	}
	for _, e := range trees {
		name := e.Name()
		if liveTrees[name] {
			continue
		}
		if checkSHA(name) == nil && s.Has(name) {
			continue // its zip is kept, or was just removed with it above
		}
		if checkSHA(name) != nil && !isMergedKey(name) {
			continue // not ours
		}
		if !due(name) {
			continue
		}
		if err := s.removeTree(name); err != nil {
			return out, err
		}
		out.Trees++
		out.Removed = append(out.Removed, s.path("trees", name))
	}
	s.mu.Lock()
	for key := range s.unreferenced {
		if !seen[key] {
			delete(s.unreferenced, key) // referenced again, or gone
		}
	}
	s.mu.Unlock()
	return out, nil
}

// mergedKey is the trees/ name of the merged tree of these layers.
func mergedKey(shas []string) string {
	h := sha256.New()
	for _, sha := range shas {
		h.Write([]byte(sha))
		h.Write([]byte{'\n'})
	}
	return mergedPrefix + hex.EncodeToString(h.Sum(nil))
}

const mergedPrefix = "opt-"

func isMergedKey(name string) bool {
	rest, ok := strings.CutPrefix(name, mergedPrefix)
	return ok && checkSHA(rest) == nil
}

// removeTree moves trees/<name> out of view, waiting for an extraction of
// it under way, then removes it.
func (s *Store) removeTree(name string) error {
	s.mu.Lock()
	x := s.inflight[name]
	s.mu.Unlock()
	if x != nil {
		<-x.done
	}
	tmp, err := os.MkdirTemp(s.path("tmp"), "del-")
	if err != nil {
		return fmt.Errorf("bundle: collect: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Rename(s.path("trees", name), filepath.Join(tmp, "t")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bundle: collect: %w", err)
	}
	return nil
}
