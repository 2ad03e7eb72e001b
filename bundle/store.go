package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Digest returns the hex sha256 of a zip: its address in a Store.
func Digest(zip []byte) string {
	sum := sha256.Sum256(zip)
	return hex.EncodeToString(sum[:])
}

// Store is a content-addressed store of code zips by hex sha256, with a
// cache of extracted trees. It is safe for concurrent use.
//
// Layout under its dir:
//
//	zips/<sha>.zip   the zips, written once (temp file, fsync, rename)
//	trees/<sha>/     extracted trees, made by Tree (temp dir, rename)
//	tmp/             work space; emptied by OpenStore
//
// Zips and trees are never changed in place once renamed into view; Delete
// removes them. One Store, in one process, owns a dir: OpenStore clears its
// tmp/. Trees are a cache and are not fsynced; after a host crash one may be
// incomplete.
type Store struct {
	dir   string           // immutable
	clock func() time.Time // immutable; time.Now but in tests

	mu       sync.Mutex
	inflight map[string]*extraction // guarded by mu: Tree extractions under way, by sha
	// unreferenced (guarded by mu) holds, for each zip or tree the last
	// Collect found unreferenced, when it was first found so (gc.go).
	unreferenced map[string]time.Time

	extractions atomic.Int64 // trees extracted by this Store, for tests
}

// extraction is one Tree extraction that other callers wait for. err is
// written before done is closed and only read after.
type extraction struct {
	done chan struct{}
	err  error
}

// OpenStore opens, creating it if needed, the store in dir.
func OpenStore(dir string) (*Store, error) {
	s := &Store{dir: dir, clock: time.Now, inflight: map[string]*extraction{}, unreferenced: map[string]time.Time{}}
	if err := os.RemoveAll(s.path("tmp")); err != nil {
		return nil, fmt.Errorf("bundle: open store: %w", err)
	}
	for _, d := range []string{"zips", "trees", "tmp"} {
		if err := os.MkdirAll(s.path(d), 0o755); err != nil {
			return nil, fmt.Errorf("bundle: open store: %w", err)
		}
	}
	return s, nil
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

func (s *Store) zipPath(sha string) string  { return s.path("zips", sha+".zip") }
func (s *Store) treePath(sha string) string { return s.path("trees", sha) }

// checkSHA refuses anything but 64 lowercase hex digits, so a sha can never
// name another path.
func checkSHA(sha string) error {
	ok := len(sha) == 2*sha256.Size
	for i := 0; ok && i < len(sha); i++ {
		c := sha[i]
		ok = '0' <= c && c <= '9' || 'a' <= c && c <= 'f'
	}
	if !ok {
		return &Error{Kind: ErrBadDigest, Msg: msgBadDigest, Detail: fmt.Sprintf("got %q", truncate(sha, 80))}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Put stores a zip and returns its sha256 and size. It does not validate
// the zip: callers run Check first. Storing a zip already held only marks
// it stored now, which Collect's grace period counts from.
func (s *Store) Put(zip []byte) (sha256hex string, size int64, err error) {
	sha := Digest(zip)
	size = int64(len(zip))
	final := s.zipPath(sha)
	if fi, err := os.Lstat(final); err == nil && fi.Mode().IsRegular() && fi.Size() == size {
		now := s.clock()
		if err := os.Chtimes(final, now, now); err != nil {
			return "", 0, fmt.Errorf("bundle: put: %w", err)
		}
		return sha, size, nil
	}
	f, err := os.CreateTemp(s.path("tmp"), "zip-")
	if err != nil {
		return "", 0, fmt.Errorf("bundle: put: %w", err)
	}
	_, err = f.Write(zip)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		now := s.clock()
		err = os.Chtimes(f.Name(), now, now)
	}
	if err == nil {
		err = os.Rename(f.Name(), final)
	}
	if err == nil {
		err = syncDir(filepath.Dir(final))
	}
	if err != nil {
		os.Remove(f.Name())
		return "", 0, fmt.Errorf("bundle: put: %w", err)
	}
	return sha, size, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Has reports whether the store holds the zip. A malformed sha is never held.
func (s *Store) Has(sha string) bool {
	if checkSHA(sha) != nil {
		return false
	}
	fi, err := os.Lstat(s.zipPath(sha))
	return err == nil && fi.Mode().IsRegular()
}

// Get returns a stored zip, after checking its bytes still hash to sha. The
// error wraps fs.ErrNotExist when the store does not hold it, and is an
// *Error of kind ErrCorrupt when the bytes do not match.
func (s *Store) Get(sha string) ([]byte, error) {
	if err := checkSHA(sha); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.zipPath(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bundle: no code with sha256 %s: %w", sha, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle: get: %w", err)
	}
	if Digest(data) != sha {
		return nil, &Error{Kind: ErrCorrupt, Msg: msgCorrupt, Detail: "sha256 " + sha}
	}
	return data, nil
}

// Tree returns the path of the zip's extracted tree, extracting it the first
// time. Concurrent callers for one sha wait for a single extraction, which
// goes to a temp dir renamed into place, so a tree is whole once visible.
// The tree must be treated as read-only. The error wraps fs.ErrNotExist when
// the store does not hold the zip.
func (s *Store) Tree(sha string) (string, error) {
	if err := checkSHA(sha); err != nil {
		return "", err
	}
	final := s.treePath(sha)
	if isDir(final) {
		return final, nil
	}
	s.mu.Lock()
	if x := s.inflight[sha]; x != nil {
		s.mu.Unlock()
		<-x.done
		if x.err != nil {
			return "", x.err
		}
		return final, nil
	}
	if isDir(final) { // an extraction finished since we looked
		s.mu.Unlock()
		return final, nil
	}
	x := &extraction{done: make(chan struct{})}
	s.inflight[sha] = x
	s.mu.Unlock()

	x.err = s.extract(sha, final)
	s.mu.Lock()
	delete(s.inflight, sha)
	s.mu.Unlock()
	close(x.done)
	if x.err != nil {
		return "", x.err
	}
	return final, nil
}

func (s *Store) extract(sha, final string) error {
	data, err := s.Get(sha)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(s.path("tmp"), "tree-")
	if err != nil {
		return fmt.Errorf("bundle: tree: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := Extract(data, filepath.Join(tmp, "t")); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, "t"), final); err != nil {
		if isDir(final) { // another process put it there first
			return nil
		}
		return fmt.Errorf("bundle: tree: %w", err)
	}
	s.extractions.Add(1)
	return nil
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// Delete removes a zip and its tree. Deleting what is absent is not an
// error. Callers must make sure no sandbox still uses the tree.
func (s *Store) Delete(sha string) error {
	if err := checkSHA(sha); err != nil {
		return err
	}
	// Let an extraction under way finish, so its tree does not appear
	// after we have removed it.
	s.mu.Lock()
	x := s.inflight[sha]
	s.mu.Unlock()
	if x != nil {
		<-x.done
	}
	if err := os.Remove(s.zipPath(sha)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bundle: delete: %w", err)
	}
	// Move the tree out of view at once, then remove it at leisure.
	tmp, err := os.MkdirTemp(s.path("tmp"), "del-")
	if err != nil {
		return fmt.Errorf("bundle: delete: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Rename(s.treePath(sha), filepath.Join(tmp, "t")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bundle: delete: %w", err)
	}
	return nil
}
