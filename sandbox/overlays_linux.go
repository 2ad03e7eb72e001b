package sandbox

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// What a sandbox mounts from the host (its image, code, layers, shim and
// the agent's binary) it mounts from read-only overlays that the agent
// makes of those folders, so that the sandbox's /proc/self/mountinfo names
// no host path. A bind mount of a host folder shows that folder's path on
// its filesystem; an overlay is a filesystem of its own whose root is the
// folder, and its options name the layers as given, here
// /proc/self/fd/N: the agent hands each layer to mount(2) as a descriptor
// it closes after. An overlay without an upper layer needs two lower
// ones; the second is an empty folder.
//
// The overlays live under <StateDir>/mnt, one per host folder, counted by
// the sandboxes using them, and are unmounted when the last one is gone
// (so a deleted code tree's space comes back). Mounts an earlier agent of
// the same state dir left are removed at start. Where the kernel refuses
// an overlay (no overlayfs, or a lower folder on a filesystem it cannot
// stack on), the sandbox binds the folder itself, and the agent says so
// once: the sandbox runs, its mountinfo names that folder.

// overlaysDir is the state dir's entry holding the overlays.
const overlaysDir = "mnt"

// overlays are a manager's. mu guards bySource and seq.
type overlays struct {
	dir   string
	empty string
	log   *slog.Logger
	warn  sync.Once // the first overlay refused

	mu       sync.Mutex
	bySource map[string]*overlay
	seq      uint64
}

type overlay struct {
	path    string
	refs    int
	mounted bool // false: path is the host folder itself
}

// openOverlays unmounts and removes what an earlier agent left in
// stateDir's overlays folder and prepares it.
func openOverlays(stateDir string, log *slog.Logger) (*overlays, error) {
	dir := filepath.Join(stateDir, overlaysDir)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		_ = unix.Unmount(p, unix.MNT_DETACH)
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("sandbox: remove an earlier agent's overlay: %w", err)
		}
	}
	o := &overlays{dir: dir, empty: filepath.Join(dir, "empty"), log: log, bySource: map[string]*overlay{}}
	if err := os.MkdirAll(o.empty, 0o755); err != nil {
		return nil, err
	}
	return o, nil
}

// acquire returns the overlay of the host folder source, mounting it if no
// sandbox uses it yet (or source itself where the kernel refuses one).
// Each acquire is matched by a release.
func (o *overlays) acquire(source string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ov, ok := o.bySource[source]; ok {
		ov.refs++
		return ov.path, nil
	}
	o.seq++
	path := filepath.Join(o.dir, strconv.FormatUint(o.seq, 10))
	if err := os.Mkdir(path, 0o755); err != nil {
		return "", err
	}
	if err := mountOverlay(source, o.empty, path); err != nil {
		os.Remove(path)
		o.warn.Do(func() {
			o.log.Warn("sandboxes bind host folders without an overlay: their mountinfo names them", "folder", source, "err", err)
		})
		o.bySource[source] = &overlay{path: source, refs: 1}
		return source, nil
	}
	o.bySource[source] = &overlay{path: path, refs: 1, mounted: true}
	return path, nil
}

// release drops one use of source's overlay, unmounting it after the last.
func (o *overlays) release(source string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ov, ok := o.bySource[source]
	if !ok {
		return
	}
	if ov.refs--; ov.refs > 0 {
		return
	}
	delete(o.bySource, source)
	if ov.mounted {
		_ = unix.Unmount(ov.path, unix.MNT_DETACH)
		_ = os.Remove(ov.path)
	}
}

// mountOverlay mounts a read-only overlay of lower (over the empty folder
// empty) at target, naming both by descriptor.
func mountOverlay(lower, empty, target string) error {
	l, err := unix.Open(lower, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(l)
	e, err := unix.Open(empty, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(e)
	opts := "lowerdir=/proc/self/fd/" + strconv.Itoa(l) + ":/proc/self/fd/" + strconv.Itoa(e)
	return unix.Mount("overlay", target, "overlay", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, opts)
}
