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
// when the filesystem is unmounted), and unlinked at once: the loop device
// holds the only reference, so the storage is given back when the sandbox's
// mount namespace and the agent's descriptor are gone, even if the agent
// dies. The filesystem's own size is the limit, and mounted with discard,
// files the function deletes give their blocks back to the host's disk.
// The detached mount (fsmount) is moved onto /tmp when the sandbox is
// claimed (shell_linux.go), as the code's overlays are.
//
// Where the kernel or the machine cannot do it (no loop devices, no
// mkfs.ext4, an unprivileged agent), /tmp is a tmpfs of the function's
// size, charged to its memory as before, and the manager warns once.

// scratchDirName is Config.ScratchDir's default, in the state dir.
const scratchDirName = "scratch"

// scratch is one sandbox's /tmp before it is moved into the sandbox.
type scratch struct {
	sizeMB int
	mnt    int  // the detached mount's descriptor; -1 once moved or closed
	disk   bool // ext4 on a loop device (else a tmpfs)
}

// close gives up the detached mount (a moved one lives on in the sandbox).
func (s *scratch) close() {
	if s != nil && s.mnt >= 0 {
		unix.Close(s.mnt)
		s.mnt = -1
	}
}

// scratches makes the sandboxes' /tmp filesystems and counts the disk they
// may take.
type scratches struct {
	dir      string
	budgetMB int // the most all live sandboxes' /tmp may add up to
	log      *slog.Logger

	mu        sync.Mutex
	usedMB    int
	templates map[int]string // size in MB -> template image
	seq       uint64
	disabled  error // why /tmp is a tmpfs, once found
}

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
	return &scratches{dir: dir, budgetMB: budgetMB, log: log, templates: map[int]string{}}, nil
}

// ErrNoScratchSpace: the node's disk budget for /tmp is spent.
var errNoScratchSpace = errors.New("sandbox: no disk left in this node's budget for /tmp")

// make returns a /tmp of sizeMB, not yet in any sandbox. Its disk counts
// against the budget until give is called for it.
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
	}
	s.mu.Unlock()
	if disabled == nil {
		fd, err := s.makeDisk(sizeMB)
		if err == nil {
			return &scratch{sizeMB: sizeMB, mnt: fd, disk: true}, nil
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

// give returns sc's disk to the budget (its sandbox is gone).
func (s *scratches) give(sc *scratch) {
	if sc == nil {
		return
	}
	sc.close()
	if sc.disk {
		s.mu.Lock()
		s.usedMB -= sc.sizeMB
		s.mu.Unlock()
	}
}

// remove deletes the templates and the folder, once no sandbox is left
// (the sandboxes' images are unlinked already).
func (s *scratches) remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.templates = map[int]string{}
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

// makeDisk makes a new ext4 /tmp of sizeMB and returns its detached mount.
func (s *scratches) makeDisk(sizeMB int) (int, error) {
	tpl, err := s.template(sizeMB)
	if err != nil {
		return -1, err
	}
	s.mu.Lock()
	s.seq++
	path := filepath.Join(s.dir, "tmp-"+strconv.FormatUint(s.seq, 10)+".img")
	s.mu.Unlock()
	img, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return -1, err
	}
	defer img.Close()
	defer os.Remove(path) // the loop device holds the file from now on
	if err := copySparse(img, tpl); err != nil {
		return -1, fmt.Errorf("copy the /tmp template: %w", err)
	}
	loop, err := attachLoop(img)
	if err != nil {
		return -1, err
	}
	defer loop.Close() // the filesystem holds the device once mounted
	fs, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen ext4: %w", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigSetString(fs, "source", loop.Name()); err != nil {
		return -1, fmt.Errorf("ext4 source %s: %w", loop.Name(), err)
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
func (s *scratches) template(sizeMB int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.templates[sizeMB]; ok {
		return p, nil
	}
	mkfs, err := findTool("mkfs.ext4")
	if err != nil {
		return "", err
	}
	debugfs, err := findTool("debugfs")
	if err != nil {
		return "", err
	}
	p := filepath.Join(s.dir, "template-"+strconv.Itoa(sizeMB)+".img")
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	err = f.Truncate(imageBytes(sizeMB))
	f.Close()
	if err != nil {
		return "", err
	}
	for _, args := range [][]string{
		{mkfs, "-q", "-F", "-b", "4096", "-m", "0", "-O", "^has_journal", "-L", "tmp",
			"-E", "lazy_itable_init=1,root_owner=0:0", p},
		{debugfs, "-w", "-R", "rmdir lost+found", p},
		{debugfs, "-w", "-R", "set_inode_field / mode 041777", p},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			os.Remove(p)
			return "", fmt.Errorf("%s: %w: %s", filepath.Base(args[0]), err, out)
		}
	}
	s.templates[sizeMB] = p
	return p, nil
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

// copySparse makes dst a copy of the file at src, writing only its data
// (an empty filesystem image is a few hundred KB of data in its holes).
func copySparse(dst *os.File, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // holes to the end
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		for pos := data; pos < hole; {
			roff, woff := pos, pos
			n, err := unix.CopyFileRange(int(in.Fd()), &roff, int(dst.Fd()), &woff, int(hole-pos), 0)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("copy_file_range: short copy at %d", pos)
			}
			pos += int64(n)
		}
		off = hole
	}
	return dst.Truncate(size)
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
