package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A sandbox's /tmp is Lambda's ephemeral storage: a size of its own (512 MB
// by default, up to 10,240 MB), on disk, apart from the function's memory.
// A tmpfs cannot be that: its pages are charged to the memory cgroup of
// whoever writes them, so a 128 MB function could not write 200 MB to /tmp.
//
// So each sandbox gets an ext4 filesystem of its own: a sparse image file
// in Config.ScratchDir, copied from a template made once per size by
// mkfs.ext4, attached to a loop device (direct I/O, so the image's pages
// are not cached a second time on the host; auto-clear, so the device goes
// with the last descriptor of it), and unlinked at once: the loop device
// and the agent's descriptors hold the only references, so the storage is
// given back when the agent lets them go, even if it dies. The filesystem's
// own size is the limit; mounted with discard, files the function deletes
// give their blocks back to the host's disk; mounted without barriers, it
// never has the host's disk flush (nothing on /tmp outlives its sandbox).
// The detached mount (fsmount) is moved onto /tmp when the sandbox is
// claimed (shell_linux.go), as the code's overlays are.
//
// When the sandbox is gone its disk is reset, off any cold start's path
// (reset, below), and kept as a spare for the next sandbox of its size:
// a new filesystem on the same device and image, wiped back to the
// template, so that a cold start pays no loop device, image or mount, and
// no sandbox's end frees an image (on a host filesystem mounted with
// discard, that waited for the host's disk).
//
// Where the kernel or the machine cannot do it (no loop devices, no
// mkfs.ext4, an unprivileged agent), /tmp is a tmpfs of the function's
// size, charged to its memory as before, and the manager warns once.

// scratchDirName is Config.ScratchDir's default, in the state dir.
const scratchDirName = "scratch"

// spareDisks is how many reset /tmp disks are kept ready for the next
// sandboxes, of all sizes together.
const spareDisks = 4

// scratch is one sandbox's /tmp before it is moved into the sandbox, and,
// for a disk, what it takes to reset and reuse it once the sandbox is gone.
type scratch struct {
	sizeMB int
	mnt    int      // the detached mount's descriptor; -1 once moved or closed
	disk   bool     // ext4 on a loop device (else a tmpfs)
	dev    *os.File // the loop device, held open: it stays bound to img (auto-clear waits for its last close)
	img    *os.File // the image, unlinked
}

// close gives up the detached mount (a moved one lives on in the sandbox).
func (s *scratch) close() {
	if s != nil && s.mnt >= 0 {
		unix.Close(s.mnt)
		s.mnt = -1
	}
}

// release gives up the disk for good: once no filesystem holds the loop
// device, auto-clear frees it, and the unlinked image's blocks go back.
func (s *scratch) release() {
	s.close()
	if s.dev != nil {
		s.dev.Close()
	}
	if s.img != nil {
		s.img.Close()
	}
}

// scratches makes the sandboxes' /tmp filesystems and counts the disk they
// may take.
//
// A disk goes, in a sandbox, from made (or taken from spare) to given; a
// given disk is reset off the sandboxes' path (its last filesystem gone,
// its image wiped back to the template, mounted anew) and kept in spare
// for the next make of its size, or released if it cannot be reset, spare
// is full, or the agent is closing. usedMB counts the disks made or taken
// and not yet given; spare disks hold only the template's few hundred KB.
type scratches struct {
	dir      string
	budgetMB int // the most all live sandboxes' /tmp may add up to
	log      *slog.Logger
	resets   sync.WaitGroup // disks being reset

	mu        sync.Mutex
	usedMB    int
	templates map[int]*template  // by size in MB
	spare     map[int][]*scratch // reset disks, mounted, by size
	nspare    int
	live      int // disks made and not released: in sandboxes, given, spare
	seq       uint64
	disabled  error // why /tmp is a tmpfs, once found
	closed    bool  // remove has begun: given disks are released
	resetErr  bool  // a failed reset was logged at warn level
}

// template is the image every /tmp of one size starts as.
type template struct {
	path string
	size int64
	data []extent // where it holds data; holes elsewhere
}

// extent is a range of bytes of an image file: [off, end).
type extent struct{ off, end int64 }

// openScratches prepares dir for /tmp images, removing what an earlier
// agent left there. budgetMB <= 0 means half the free space of dir's
// filesystem now.
func openScratches(dir string, budgetMB int, log *slog.Logger) (*scratches, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("sandbox: remove the earlier /tmp images: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if budgetMB <= 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return nil, err
		}
		budgetMB = int(st.Bavail * uint64(st.Bsize) >> 20 / 2)
	}
	return &scratches{dir: dir, budgetMB: budgetMB, log: log, templates: map[int]*template{}, spare: map[int][]*scratch{}}, nil
}

// ErrNoScratchSpace: the node's disk budget for /tmp is spent.
var errNoScratchSpace = errors.New("sandbox: no disk left in this node's budget for /tmp")

// make returns a /tmp of sizeMB, not yet in any sandbox: a spare disk if
// one of that size is ready, else a new one. Its disk counts against the
// budget until give is called for it.
func (s *scratches) make(sizeMB int) (*scratch, error) {
	s.mu.Lock()
	disabled := s.disabled
	if disabled == nil {
		if s.usedMB+sizeMB > s.budgetMB {
			used := s.usedMB
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: %d MB of %d MB in use, %d MB asked", errNoScratchSpace, used, s.budgetMB, sizeMB)
		}
		s.usedMB += sizeMB
		if ready := s.spare[sizeMB]; len(ready) > 0 {
			sc := ready[len(ready)-1]
			s.spare[sizeMB] = ready[:len(ready)-1]
			s.nspare--
			s.mu.Unlock()
			return sc, nil
		}
	}
	s.mu.Unlock()
	if disabled == nil {
		sc, err := s.makeDisk(sizeMB)
		if err == nil {
			return sc, nil
		}
		s.mu.Lock()
		s.usedMB -= sizeMB
		if s.disabled == nil {
			s.disabled = err
			s.log.Warn("/tmp cannot be on disk here: it is a tmpfs, charged to the function's memory", "err", err)
		}
		s.mu.Unlock()
	}
	fd, err := tmpfsMount(sizeMB)
	if err != nil {
		return nil, err
	}
	return &scratch{sizeMB: sizeMB, mnt: fd}, nil
}

// give returns sc's disk to the budget (its sandbox is gone, or it never
// went into one) and has it reset for reuse in the background: the unmount
// of a mount never moved into a sandbox, the wipe and the new mount are
// never on a cold start's path.
func (s *scratches) give(sc *scratch) {
	if sc == nil {
		return
	}
	if !sc.disk {
		sc.close()
		return
	}
	s.mu.Lock()
	s.usedMB -= sc.sizeMB
	closed := s.closed
	if !closed {
		s.resets.Add(1)
	}
	s.mu.Unlock()
	if closed {
		s.drop(sc)
		return
	}
	go func() {
		defer s.resets.Done()
		s.recycle(sc)
	}()
}

// recycle resets a given disk and keeps it in spare, or releases it.
func (s *scratches) recycle(sc *scratch) {
	sc.close()
	if err := s.reset(sc); err != nil {
		s.mu.Lock()
		warn := !s.resetErr
		s.resetErr = true
		s.mu.Unlock()
		if warn {
			s.log.Warn("a /tmp disk could not be reset for reuse; it is released and a new one made", "err", err)
		} else {
			s.log.Debug("a /tmp disk could not be reset for reuse", "err", err)
		}
		s.drop(sc)
		return
	}
	s.mu.Lock()
	keep := !s.closed && s.nspare < spareDisks
	if keep {
		s.spare[sc.sizeMB] = append(s.spare[sc.sizeMB], sc)
		s.nspare++
	}
	s.mu.Unlock()
	if !keep {
		s.drop(sc)
	}
}

// reset makes a given disk as new: once no filesystem holds its loop
// device any more, every byte of its image outside the template's data is
// made a hole (read as zeros) and the template's data is written over the
// rest, which is then checked; the device's cache is dropped before and
// after, and a new filesystem mounted. Nothing of the sandbox before can
// be read from it: its files, their blocks and the filesystem's own
// tables are all gone or the template's again.
func (s *scratches) reset(sc *scratch) error {
	// An exclusive open fails while a filesystem still has the device (a
	// sandbox's namespace not yet gone).
	var excl *os.File
	for attempt := 0; ; attempt++ {
		var err error
		excl, err = os.OpenFile(sc.dev.Name(), os.O_RDWR|unix.O_EXCL, 0)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EBUSY) || attempt >= 10 {
			return fmt.Errorf("%s still in use: %w", sc.dev.Name(), err)
		}
		time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
	}
	defer excl.Close()
	s.mu.Lock()
	tpl := s.templates[sc.sizeMB]
	s.mu.Unlock()
	if tpl == nil {
		return errors.New("no template")
	}
	// The last filesystem's blocks still cached for the device are written
	// now (before the wipe, never after it) and dropped.
	if _, err := unix.IoctlRetInt(int(excl.Fd()), unix.BLKFLSBUF); err != nil {
		return fmt.Errorf("flush %s: %w", sc.dev.Name(), err)
	}
	if err := wipeImage(sc.img, tpl); err != nil {
		return err
	}
	if _, err := unix.IoctlRetInt(int(excl.Fd()), unix.BLKFLSBUF); err != nil {
		return fmt.Errorf("flush %s: %w", sc.dev.Name(), err)
	}
	excl.Close()
	mnt, err := mountDisk(sc.dev.Name())
	if err != nil {
		return err
	}
	sc.mnt = mnt
	return nil
}

// wipeImage makes img the template tpl again: holes outside tpl's data,
// tpl's bytes in it. It fails if img then holds data anywhere else.
func wipeImage(img *os.File, tpl *template) error {
	fd := int(img.Fd())
	punch := func(off, end int64) error {
		if end <= off {
			return nil
		}
		if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, end-off); err != nil {
			return fmt.Errorf("wipe the /tmp image: %w", err)
		}
		return nil
	}
	prev := int64(0)
	for _, e := range tpl.data {
		if err := punch(prev, e.off); err != nil {
			return err
		}
		prev = e.end
	}
	if err := punch(prev, tpl.size); err != nil {
		return err
	}
	if err := copyExtents(img, tpl); err != nil {
		return fmt.Errorf("copy the /tmp template: %w", err)
	}
	left, err := dataExtents(img, tpl.size)
	if err != nil {
		return err
	}
	for _, e := range left {
		if !within(e, tpl.data) {
			return fmt.Errorf("the wiped /tmp image still holds data at %d-%d", e.off, e.end)
		}
	}
	return nil
}

// within reports whether e lies inside one of the sorted extents of data
// (or across adjacent ones).
func within(e extent, data []extent) bool {
	for _, d := range data {
		if e.off >= d.end {
			continue
		}
		if e.off < d.off {
			return false
		}
		if e.end <= d.end {
			return true
		}
		e.off = d.end
	}
	return false
}

// remove releases the spare disks, deletes the templates and the folder,
// once no sandbox is left (the sandboxes' images are unlinked already).
func (s *scratches) remove() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.resets.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ready := range s.spare {
		for _, sc := range ready {
			sc.release()
		}
	}
	s.live -= s.nspare
	s.spare, s.nspare = map[int][]*scratch{}, 0
	s.templates = map[int]*template{}
	return os.RemoveAll(s.dir)
}

// imageBytes is the size of the image of a /tmp of sizeMB: the filesystem's
// own tables (a 256-byte inode per 16 KiB, bitmaps, and the 16 MiB ext4
// keeps back for delayed allocation) come on top, so that the function can
// store at least sizeMB of files (tmpExtraMB more at most).
func imageBytes(sizeMB int) int64 {
	return int64(sizeMB+tmpExtraMB(sizeMB)) << 20
}

// tmpExtraMB is what a /tmp of sizeMB has on top for the filesystem.
func tmpExtraMB(sizeMB int) int { return sizeMB/32 + 24 }

// makeDisk makes a new ext4 /tmp of sizeMB, mounted and detached.
func (s *scratches) makeDisk(sizeMB int) (_ *scratch, err error) {
	tpl, err := s.template(sizeMB)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.seq++
	path := filepath.Join(s.dir, "tmp-"+strconv.FormatUint(s.seq, 10)+".img")
	s.mu.Unlock()
	img, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path) // the loop device and img hold the file from now on
	sc := &scratch{sizeMB: sizeMB, mnt: -1, disk: true, img: img}
	defer func() {
		if err != nil {
			sc.release()
		}
	}()
	if err := img.Truncate(tpl.size); err != nil {
		return nil, err
	}
	if err := copyExtents(img, tpl); err != nil {
		return nil, fmt.Errorf("copy the /tmp template: %w", err)
	}
	if sc.dev, err = attachLoop(img); err != nil {
		return nil, err
	}
	if sc.mnt, err = mountDisk(sc.dev.Name()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.live++
	s.mu.Unlock()
	return sc, nil
}

// drop releases a disk made by makeDisk.
func (s *scratches) drop(sc *scratch) {
	sc.release()
	s.mu.Lock()
	s.live--
	s.mu.Unlock()
}

// mountDisk mounts the ext4 of /tmp on the loop device dev and returns
// the detached mount.
func mountDisk(dev string) (int, error) {
	fs, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen ext4: %w", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigSetString(fs, "source", dev); err != nil {
		return -1, fmt.Errorf("ext4 source %s: %w", dev, err)
	}
	if err := unix.FsconfigSetFlag(fs, "discard"); err != nil {
		return -1, fmt.Errorf("ext4 option discard: %w", err)
	}
	// The inode tables are holes, read as zeros: no thread need write
	// them out after the mount (mkfs marks them zeroed; this makes sure).
	if err := unix.FsconfigSetFlag(fs, "noinit_itable"); err != nil {
		return -1, fmt.Errorf("ext4 option noinit_itable: %w", err)
	}
	// Nothing on /tmp outlives its sandbox, so no write need be durable:
	// without barriers the filesystem never asks the host's disk to flush
	// (the sync at unmount did, through the loop device, and waited for
	// the host's disk behind everyone's writes: 10-90 ms a sandbox here).
	if err := unix.FsconfigSetFlag(fs, "nobarrier"); err != nil {
		return -1, fmt.Errorf("ext4 option nobarrier: %w", err)
	}
	if err := unix.FsconfigSetString(fs, "errors", "remount-ro"); err != nil {
		return -1, fmt.Errorf("ext4 option errors: %w", err)
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, fmt.Errorf("mount the /tmp image: %w", err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, fmt.Errorf("fsmount /tmp: %w", err)
	}
	return mnt, nil
}

// attachLoop puts img on a free loop device, auto-cleared and with direct
// I/O, and returns the device, open.
func attachLoop(img *os.File) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("a free loop device: %w", err)
		}
		dev, err := os.OpenFile("/dev/loop"+strconv.Itoa(n), os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{
			Fd:   uint32(img.Fd()),
			Size: 4096, // the filesystem's block size, as direct I/O wants
			Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO},
		}
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		// Another process took the device between the two calls.
		if !errors.Is(err, unix.EBUSY) || attempt >= 16 {
			return nil, fmt.Errorf("configure %s: %w", dev.Name(), err)
		}
	}
}

// template returns the image that every /tmp of sizeMB starts as, making it
// on first use: an empty ext4 without a journal (nothing on it outlives its
// sandbox), its root 1777 as /tmp is, and no lost+found. mkfs punches the
// file's holes itself (its discard) and so marks the inode tables zeroed:
// the template is a few hundred KB of data.
func (s *scratches) template(sizeMB int) (*template, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.templates[sizeMB]; ok {
		return t, nil
	}
	mkfs, err := findTool("mkfs.ext4")
	if err != nil {
		return nil, err
	}
	debugfs, err := findTool("debugfs")
	if err != nil {
		return nil, err
	}
	p := filepath.Join(s.dir, "template-"+strconv.Itoa(sizeMB)+".img")
	f, err := os.Create(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(imageBytes(sizeMB)); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{mkfs, "-q", "-F", "-b", "4096", "-m", "0", "-O", "^has_journal", "-L", "tmp",
			"-E", "lazy_itable_init=1,root_owner=0:0", p},
		{debugfs, "-w", "-R", "rmdir lost+found", p},
		{debugfs, "-w", "-R", "set_inode_field / mode 041777", p},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			os.Remove(p)
			return nil, fmt.Errorf("%s: %w: %s", filepath.Base(args[0]), err, out)
		}
	}
	data, err := dataExtents(f, imageBytes(sizeMB))
	if err != nil {
		os.Remove(p)
		return nil, err
	}
	t := &template{path: p, size: imageBytes(sizeMB), data: data}
	s.templates[sizeMB] = t
	return t, nil
}

// findTool finds one of e2fsprogs' programs, in PATH or where Debian puts
// them (an agent's PATH may lack the sbin folders).
func findTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (Debian's e2fsprogs)", name)
}

// dataExtents lists where f holds data (SEEK_DATA, SEEK_HOLE) in its first
// size bytes, in order.
func dataExtents(f *os.File, size int64) ([]extent, error) {
	var out []extent
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // holes to the end
		}
		if err != nil {
			return nil, err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		out = append(out, extent{data, min(hole, size)})
		off = hole
	}
	return out, nil
}

// copyExtents writes tpl's data into dst at the same offsets (an empty
// filesystem image is a few hundred KB of data in its holes).
func copyExtents(dst *os.File, tpl *template) error {
	in, err := os.Open(tpl.path)
	if err != nil {
		return err
	}
	defer in.Close()
	for _, e := range tpl.data {
		for pos := e.off; pos < e.end; {
			roff, woff := pos, pos
			n, err := unix.CopyFileRange(int(in.Fd()), &roff, int(dst.Fd()), &woff, int(e.end-pos), 0)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("copy_file_range: short copy at %d", pos)
			}
			pos += int64(n)
		}
	}
	return nil
}

// tmpfsMount makes a detached tmpfs of sizeMB for /tmp.
func tmpfsMount(sizeMB int) (int, error) {
	fs, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen tmpfs: %w", err)
	}
	defer unix.Close(fs)
	for _, kv := range [][2]string{{"size", strconv.Itoa(sizeMB) + "m"}, {"mode", "1777"}} {
		if err := unix.FsconfigSetString(fs, kv[0], kv[1]); err != nil {
			return -1, fmt.Errorf("tmpfs option %s: %w", kv[0], err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, fmt.Errorf("make the /tmp tmpfs: %w", err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, fmt.Errorf("fsmount the /tmp tmpfs: %w", err)
	}
	return mnt, nil
}
