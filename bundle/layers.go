package bundle

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Layers: zips checked like code (without the bootstrap rule), whose trees
// a function's sandboxes see merged at /opt, in the function's order, a
// later layer's entry replacing an earlier one's at the same path.

// CheckSize validates a zip as Check does and returns the bytes its files
// inflate to (what counts against MaxUnzippedSize, with a function's
// layers).
func CheckSize(data []byte, requireBootstrap bool) (int64, error) {
	t, left, err := parse(data)
	if err != nil {
		return 0, err
	}
	if requireBootstrap {
		if err := t.checkBootstrap(); err != nil {
			return 0, err
		}
	}
	for _, n := range t.files {
		if err := inflate(io.Discard, n.file, &left); err != nil {
			return 0, err
		}
	}
	return int64(MaxUnzippedSize) - left, nil
}

// CheckTotalSize refuses code and layers whose unzipped sizes add up to
// more than MaxUnzippedSize, with Lambda's message.
func CheckTotalSize(sizes ...int64) error {
	var total int64
	for _, s := range sizes {
		total += s
	}
	if total > MaxUnzippedSize {
		return &Error{Kind: ErrUnzippedTooLarge, Msg: fmt.Sprintf("Function code combined with layers exceeds the maximum allowed size of %d bytes. The actual size is %d bytes.", MaxUnzippedSize, total)}
	}
	return nil
}

// Merged returns the path of the tree made of the layers with these
// digests, extracted in order into one folder (later layers win), making
// it the first time. Like Tree it is safe for concurrent callers and a
// tree is whole once visible; the error wraps fs.ErrNotExist when the store
// lacks one of the zips.
func (s *Store) Merged(shas []string) (string, error) {
	for _, sha := range shas {
		if err := checkSHA(sha); err != nil {
			return "", err
		}
	}
	key := mergedKey(shas)
	final := s.path("trees", key)
	if isDir(final) {
		return final, nil
	}
	s.mu.Lock()
	if x := s.inflight[key]; x != nil {
		s.mu.Unlock()
		<-x.done
		if x.err != nil {
			return "", x.err
		}
		return final, nil
	}
	if isDir(final) {
		s.mu.Unlock()
		return final, nil
	}
	x := &extraction{done: make(chan struct{})}
	s.inflight[key] = x
	s.mu.Unlock()

	x.err = s.extractMerged(shas, final)
	s.mu.Lock()
	delete(s.inflight, key)
	s.mu.Unlock()
	close(x.done)
	if x.err != nil {
		return "", x.err
	}
	return final, nil
}

func (s *Store) extractMerged(shas []string, final string) error {
	tmp, err := os.MkdirTemp(s.path("tmp"), "opt-")
	if err != nil {
		return fmt.Errorf("bundle: layers: %w", err)
	}
	defer os.RemoveAll(tmp)
	dst := filepath.Join(tmp, "t")
	if err := os.Mkdir(dst, 0o755); err != nil {
		return fmt.Errorf("bundle: layers: %w", err)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		return fmt.Errorf("bundle: layers: %w", err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return fmt.Errorf("bundle: layers: %w", err)
	}
	defer root.Close()
	for _, sha := range shas {
		data, err := s.Get(sha)
		if err != nil {
			return err
		}
		if err := extractOver(root, data); err != nil {
			return fmt.Errorf("layer %s: %w", sha, err)
		}
	}
	if err := os.Rename(dst, final); err != nil {
		if isDir(final) {
			return nil
		}
		return fmt.Errorf("bundle: layers: %w", err)
	}
	s.extractions.Add(1)
	return nil
}

// extractOver writes a zip's tree into root over what earlier layers wrote
// there: an entry replaces whatever the path held unless both are
// directories. Every write goes through root, so nothing lands outside it,
// and a directory an earlier layer left as a symlink is replaced by a real
// one before anything is written below it.
func extractOver(root *os.Root, data []byte) error {
	t, left, err := parse(data)
	if err != nil {
		return err
	}
	for _, d := range t.dirs() {
		if fi, err := root.Lstat(d.name); err == nil {
			if fi.IsDir() {
				continue
			}
			if err := root.RemoveAll(d.name); err != nil {
				return fmt.Errorf("bundle: layers: %w", err)
			}
		}
		if err := root.Mkdir(d.name, 0o755); err != nil {
			return fmt.Errorf("bundle: layers: %w", err)
		}
		if err := root.Chmod(d.name, 0o755); err != nil {
			return fmt.Errorf("bundle: layers: %w", err)
		}
	}
	replace := func(name string) error {
		if _, err := root.Lstat(name); err == nil {
			if err := root.RemoveAll(name); err != nil {
				return fmt.Errorf("bundle: layers: %w", err)
			}
		}
		return nil
	}
	for _, n := range t.files {
		if err := replace(n.name); err != nil {
			return err
		}
		if err := writeFile(root, n, &left); err != nil {
			return err
		}
	}
	for _, l := range t.links {
		if err := replace(l.name); err != nil {
			return err
		}
		if err := root.Symlink(l.target, l.name); err != nil {
			return fmt.Errorf("bundle: layers: %w", err)
		}
	}
	return nil
}
