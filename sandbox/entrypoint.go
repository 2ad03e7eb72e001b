package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// The bootstrap is checked on the host before a sandbox starts, so that an
// entry point that cannot run is Lambda's Runtime.InvalidEntrypoint with its
// cause, not an exit status from inside the container.

// bootstrapPath is the entry point of a custom runtime inside the sandbox.
const bootstrapPath = "/var/task/bootstrap"

// errNoBootstrap is Lambda's message for a code tree without a bootstrap.
var errNoBootstrap = errors.New("Couldn't find valid bootstrap(s): [" + bootstrapPath + "]")

// entrypointHeadBytes is how much of the bootstrap is read to check it: the
// ELF header and program headers of any sane binary, or a shebang line.
const entrypointHeadBytes = 4096

// checkEntrypoint returns why the bootstrap in codeDir cannot be executed
// in an image rooted at image, or nil. Its messages are those of the exec
// that would fail: "fork/exec /var/task/bootstrap: permission denied".
func checkEntrypoint(codeDir, image string) error {
	p := filepath.Join(codeDir, "bootstrap")
	fi, err := os.Lstat(p)
	if err != nil {
		return errNoBootstrap
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(p)
		if err != nil || filepath.IsAbs(target) {
			return nil // resolved inside the sandbox, not here
		}
		if fi, err = os.Stat(p); err != nil {
			return execError(syscall.ENOENT)
		}
	}
	if !fi.Mode().IsRegular() {
		return execError(syscall.EACCES)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return execError(syscall.EACCES)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil // the sandbox will say
	}
	defer f.Close()
	head := make([]byte, entrypointHeadBytes)
	n, _ := io.ReadFull(f, head)
	interp, errno := interpreterOf(head[:n], runtime.GOARCH)
	if errno != 0 {
		return execError(errno)
	}
	if interp != "" && !existsInImage(image, interp) {
		return execError(syscall.ENOENT)
	}
	return nil
}

func execError(errno syscall.Errno) error {
	return &os.PathError{Op: "fork/exec", Path: bootstrapPath, Err: errno}
}

// existsInImage reports whether the absolute path p names something in the
// image (the code and /tmp are mounted elsewhere; a path under them is given
// the benefit of the doubt).
func existsInImage(image, p string) bool {
	p = path.Clean(p)
	if strings.HasPrefix(p, "/var/task/") || strings.HasPrefix(p, "/tmp/") || strings.HasPrefix(p, "/opt/") {
		return true
	}
	_, err := os.Stat(filepath.Join(image, p))
	return err == nil
}

// ELF constants for interpreterOf.
const (
	elfPTInterp   = 3
	maxInterpPath = 256
	maxPhnum      = 256
)

var elfMachines = map[string]uint16{"amd64": 62, "arm64": 183, "386": 3, "arm": 40, "riscv64": 243, "ppc64le": 21, "s390x": 22}

// interpreterOf reads the start of an executable and returns the program
// the kernel would load to run it (a script's interpreter, an ELF binary's
// dynamic loader; "" for a static binary), or the errno exec would fail
// with: ENOEXEC for neither ELF nor script, or an ELF of another machine.
// It reads only head and allocates nothing in proportion to what head
// claims.
func interpreterOf(head []byte, goarch string) (string, syscall.Errno) {
	if bytes.HasPrefix(head, []byte("#!")) {
		line := head[2:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(string(line))
		if len(fields) == 0 {
			return "", syscall.ENOEXEC
		}
		if !strings.HasPrefix(fields[0], "/") {
			return "", syscall.ENOENT
		}
		return fields[0], 0
	}
	if len(head) < 52 || !bytes.HasPrefix(head, []byte("\x7fELF")) {
		return "", syscall.ENOEXEC
	}
	class, data := head[4], head[5]
	var bo binary.ByteOrder
	switch data {
	case 1:
		bo = binary.LittleEndian
	case 2:
		bo = binary.BigEndian
	default:
		return "", syscall.ENOEXEC
	}
	if want, ok := elfMachines[goarch]; ok && bo.Uint16(head[18:]) != want {
		return "", syscall.ENOEXEC
	}
	var phoff uint64
	var phentsize, phnum uint16
	switch class {
	case 2: // 64-bit
		if len(head) < 64 {
			return "", syscall.ENOEXEC
		}
		phoff = bo.Uint64(head[32:])
		phentsize, phnum = bo.Uint16(head[54:]), bo.Uint16(head[56:])
	case 1:
		phoff = uint64(bo.Uint32(head[28:]))
		phentsize, phnum = bo.Uint16(head[42:]), bo.Uint16(head[44:])
	default:
		return "", syscall.ENOEXEC
	}
	if phnum > maxPhnum || phentsize < 8 {
		return "", 0 // unusual layout: let the kernel judge
	}
	for i := uint64(0); i < uint64(phnum); i++ {
		off := phoff + i*uint64(phentsize)
		if off > uint64(len(head)) || uint64(len(head))-off < uint64(phentsize) {
			return "", 0 // program headers past what was read
		}
		ph := head[off : off+uint64(phentsize)]
		if bo.Uint32(ph) != elfPTInterp {
			continue
		}
		var ioff, isz uint64
		if class == 2 {
			if len(ph) < 40 {
				return "", 0
			}
			ioff, isz = bo.Uint64(ph[8:]), bo.Uint64(ph[32:])
		} else {
			if len(ph) < 20 {
				return "", 0
			}
			ioff, isz = uint64(bo.Uint32(ph[4:])), uint64(bo.Uint32(ph[16:]))
		}
		if isz == 0 || isz > maxInterpPath || ioff > uint64(len(head)) || uint64(len(head))-ioff < isz {
			return "", 0
		}
		name := string(bytes.TrimRight(head[ioff:ioff+isz], "\x00"))
		if !strings.HasPrefix(name, "/") {
			return "", syscall.ENOENT
		}
		return name, 0
	}
	return "", 0
}
