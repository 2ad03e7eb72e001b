package bundle

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Collect keeps what is live, removes what stayed unreferenced for the
// grace period (zips, their trees, merged layer trees), and counts a grace
// period from the last Put of a zip as well as from when it was first
// found unreferenced.
func TestCollect(t *testing.T) {
	t.Parallel()
	s, dir := openStore(t)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s.clock = func() time.Time { return now }
	const grace = time.Hour
	put := func(content string) string {
		sha, _, err := s.Put(mkzip(t, exe("bootstrap", content)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Tree(sha); err != nil {
			t.Fatal(err)
		}
		return sha
	}
	live, dead, reput, layer, oldLayer := put("live"), put("dead"), put("reput"), put("layer"), put("old layer")
	merged, err := s.Merged([]string{layer})
	if err != nil {
		t.Fatal(err)
	}
	oldMerged, err := s.Merged([]string{oldLayer, layer})
	if err != nil {
		t.Fatal(err)
	}
	keep := Live{Code: map[string]bool{live: true, layer: true}, LayerSets: [][]string{{layer}}}
	collect := func() Collected {
		t.Helper()
		c, err := s.Collect(keep, grace)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	// Found unreferenced now: nothing goes yet.
	if c := collect(); c.Zips+c.Trees != 0 {
		t.Fatalf("first collection removed %+v", c)
	}
	now = now.Add(grace / 2)
	if _, _, err := s.Put(mkzip(t, exe("bootstrap", "reput"))); err != nil { // uploaded again
		t.Fatal(err)
	}
	if c := collect(); c.Zips+c.Trees != 0 {
		t.Fatalf("collection within the grace period removed %+v", c)
	}
	now = now.Add(grace/2 + time.Second)
	c := collect()
	if c.Zips != 2 || c.Trees != 1 || c.Bytes == 0 {
		t.Fatalf("after the grace period: removed %+v, want the dead zip, the old layer's and the merged tree naming it", c)
	}
	for _, p := range []string{filepath.Join(dir, "trees", dead), filepath.Join(dir, "trees", oldLayer), oldMerged} {
		if !slices.Contains(c.Removed, p) {
			t.Errorf("removed trees %q lack %s", c.Removed, p)
		}
	}
	for _, sha := range []string{dead, oldLayer} {
		if s.Has(sha) {
			t.Errorf("zip %s is still there", sha)
		}
		if _, err := os.Stat(filepath.Join(dir, "trees", sha)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("tree %s is still there: %v", sha, err)
		}
	}
	for _, sha := range []string{live, layer, reput} {
		if !s.Has(sha) {
			t.Errorf("zip %s was removed", sha)
		}
	}
	if _, err := os.Stat(merged); err != nil {
		t.Errorf("the live merged tree was removed: %v", err)
	}
	if _, err := os.Stat(oldMerged); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the unreferenced merged tree is still there: %v", err)
	}
	// Referenced again before its grace ran out: the count starts over.
	keep.Code[reput] = true
	collect()
	delete(keep.Code, reput)
	now = now.Add(grace / 2)
	if c := collect(); c.Zips != 0 {
		t.Fatalf("a zip referenced in between was removed: %+v", c)
	}
	now = now.Add(grace)
	if c := collect(); c.Zips != 1 || s.Has(reput) {
		t.Fatalf("the re-uploaded zip, unreferenced for the grace period since: removed %+v", c)
	}
	// A removed tree's digest can be stored and extracted again.
	if again := put("dead"); again != dead || !s.Has(dead) {
		t.Fatal("a collected zip cannot be stored again")
	}
}
