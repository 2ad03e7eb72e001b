package sandbox

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// The default `provided` image: what Lambda's provided.al2023 offers to a
// custom runtime: /bin/sh and bash, coreutils and curl, the whole glibc
// (libc6's libraries: libpthread, libdl, librt, the NSS modules, gconv),
// libgcc_s and libstdc++ (C++ binaries, Rust's gnu target), CA certificates,
// and an /etc/hosts that resolves the sandbox's hostname. It is assembled
// from the host's own files (binaries, the shared libraries ldd names, and
// the files of those Debian packages), so nothing is downloaded. It is built
// once into the data dir and mounted read-only as every sandbox's root.

// imageVersion changes when the recipe below changes, so an old cached image
// is rebuilt.
const imageVersion = "provided-3"

// imageTools are the programs of the image besides coreutils.
var imageTools = []string{"/bin/sh", "/bin/bash", "/usr/bin/curl", "/usr/bin/env", "/usr/bin/grep", "/usr/bin/sed", "/usr/bin/awk", "/usr/bin/tar", "/usr/bin/gzip", "/usr/bin/find", "/usr/bin/xargs"}

// coreutilsFallback is used when dpkg cannot list coreutils.
var coreutilsFallback = []string{
	"cat", "cp", "date", "echo", "env", "false", "head", "id", "ls", "mkdir",
	"mv", "printf", "pwd", "rm", "sleep", "sort", "tail", "tee", "touch", "tr",
	"true", "uname", "wc", "yes", "dd", "cut", "basename", "dirname", "seq", "stat",
}

// imagePackages are Debian packages whose libraries the image carries whole.
var imagePackages = []string{"libc6", "libgcc-s1", "libstdc++6"}

// imageLibGlobs are used when dpkg cannot list imagePackages.
var imageLibGlobs = []string{
	"/lib/*-linux-gnu/lib*.so*", "/usr/lib/*-linux-gnu/libstdc++.so*", "/usr/lib/*-linux-gnu/gconv/*",
}

// caBundle is the host's CA bundle, and caBundleLinks the paths where
// runtimes look for one (Debian's and Amazon Linux's).
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

var caBundleLinks = []string{"etc/pki/tls/certs/ca-bundle.crt", "etc/ssl/cert.pem"}

// sandboxHostname is every sandbox's hostname; /etc/hosts resolves it.
const sandboxHostname = "sandbox"

// Sandbox user, as Lambda's.
const (
	sandboxUID  = 993
	sandboxGID  = 990
	sandboxUser = "sbx_user1051"
)

// EnsureImage makes sure the default image exists under dir and returns the
// path of its root. Safe to call at every start, and from many goroutines or
// processes sharing dir at once (two agents, two test binaries): builders
// take an exclusive flock on dir/.lock and check again under it, so the image
// is built once. A complete image (its stamp file written last) is never
// removed or replaced, since sandboxes may run on it; a new recipe has a new
// imageVersion and so a new directory. Only an incomplete directory, left by
// a builder that died, is removed, under the lock.
func EnsureImage(dir string) (string, error) {
	root := filepath.Join(dir, imageVersion)
	if imageComplete(root) {
		return root, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return "", err
	}
	defer unlock()
	if imageComplete(root) {
		return root, nil // another builder finished while we waited
	}
	// Leftovers of builders that died: nothing runs on an incomplete image.
	if stale, _ := filepath.Glob(filepath.Join(dir, ".build-*")); len(stale) > 0 {
		for _, s := range stale {
			os.RemoveAll(s)
		}
	}
	if err := os.RemoveAll(root); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := buildImage(tmp); err != nil {
		return "", fmt.Errorf("build sandbox image: %w", err)
	}
	if err := os.Rename(tmp, root); err != nil {
		return "", err
	}
	return root, nil
}

// imageComplete reports whether root holds a finished image: its stamp is
// the last file a build writes.
func imageComplete(root string) bool {
	_, err := os.Stat(filepath.Join(root, imageStamp))
	return err == nil
}

// imageStamp is the file a build writes last.
const imageStamp = ".nimbus-image"

// lockDir takes an exclusive flock on dir/.lock, waiting for it, and returns
// its release. flock locks belong to the open file, so two goroutines of one
// process exclude each other as two processes do.
func lockDir(dir string) (func(), error) {
	return lockFile(filepath.Join(dir, ".lock"))
}

// lockFile takes an exclusive flock on the file at path (creating it),
// waiting for it, and returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

func buildImage(root string) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	// The layout of a merged-/usr Debian: top-level links into /usr.
	for _, d := range []string{"usr/bin", "usr/sbin", "usr/lib", "usr/lib64"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	for _, l := range []string{"bin", "sbin", "lib", "lib64"} {
		if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
			return err
		}
	}
	for _, d := range []string{"var/task", "var/runtime", "opt", "tmp", "proc", "dev", "sys/fs/cgroup", "etc", "root", "home/" + sandboxUser} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	// The mount point of the sandbox's PID 1 (the agent's binary).
	if err := os.MkdirAll(filepath.Join(root, filepath.Dir(initPath)), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, initPath), nil, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"etc/passwd":        fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\n%s:x:%d:%d::/home/%s:/sbin/nologin\n", sandboxUser, sandboxUID, sandboxGID, sandboxUser),
		"etc/group":         fmt.Sprintf("root:x:0:\n%s:x:%d:\n", sandboxUser, sandboxGID),
		"etc/hosts":         "127.0.0.1\tlocalhost " + sandboxHostname + "\n::1\tlocalhost " + sandboxHostname + "\n",
		"etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
		"etc/os-release":    "NAME=\"nimbus provided\"\nID=nimbus\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return err
		}
	}

	if _, err := os.Stat(caBundle); err == nil {
		if err := copyPath(root, caBundle); err != nil {
			return err
		}
		for _, l := range caBundleLinks {
			if err := os.MkdirAll(filepath.Join(root, filepath.Dir(l)), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(caBundle, filepath.Join(root, l)); err != nil && !os.IsExist(err) {
				return err
			}
		}
	}
	for _, f := range packageLibraries() {
		if err := copyPath(root, f); err != nil {
			return fmt.Errorf("copy %s: %w", f, err)
		}
	}

	progs := append([]string{}, imageTools...)
	progs = append(progs, coreutilsPrograms()...)
	libs := map[string]bool{}
	for _, p := range progs {
		if _, err := os.Stat(p); err != nil {
			if p == "/usr/bin/curl" || p == "/bin/sh" {
				return fmt.Errorf("host lacks %s (install it: apt-get install curl)", p)
			}
			continue
		}
		if err := copyPath(root, p); err != nil {
			return err
		}
		deps, err := sharedLibs(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			libs[d] = true
		}
	}
	names := make([]string, 0, len(libs))
	for l := range libs {
		names = append(names, l)
	}
	sort.Strings(names)
	for _, l := range names {
		if err := copyPath(root, l); err != nil {
			return err
		}
	}
	stamp := sha256.Sum256([]byte(strings.Join(append(progs, names...), "\n")))
	return os.WriteFile(filepath.Join(root, imageStamp), []byte(imageVersion+" "+hex.EncodeToString(stamp[:])+"\n"), 0o644)
}

// packageLibraries lists the files of imagePackages under the library
// folders (not their docs), or what imageLibGlobs match without dpkg.
func packageLibraries() []string {
	out, err := exec.Command("dpkg", append([]string{"-L"}, imagePackages...)...).Output()
	var files []string
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			p := sc.Text()
			if !strings.HasPrefix(p, "/lib") && !strings.HasPrefix(p, "/usr/lib") {
				continue
			}
			if fi, err := os.Lstat(p); err == nil && !fi.IsDir() {
				files = append(files, p)
			}
		}
		return files
	}
	for _, g := range imageLibGlobs {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	return files
}

func coreutilsPrograms() []string {
	out, err := exec.Command("dpkg", "-L", "coreutils").Output()
	if err != nil {
		progs := make([]string, 0, len(coreutilsFallback))
		for _, p := range coreutilsFallback {
			progs = append(progs, "/usr/bin/"+p)
		}
		return progs
	}
	var progs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p := sc.Text()
		if strings.HasPrefix(p, "/bin/") || strings.HasPrefix(p, "/usr/bin/") || strings.HasPrefix(p, "/usr/sbin/") {
			if fi, err := os.Lstat(p); err == nil && !fi.IsDir() {
				progs = append(progs, p)
			}
		}
	}
	return progs
}

// sharedLibs lists the absolute paths of the libraries (and the loader) that
// a dynamic executable needs, from ldd. A static one needs none.
func sharedLibs(prog string) ([]string, error) {
	out, err := exec.Command("ldd", prog).Output()
	if err != nil {
		// "not a dynamic executable" exits 1: nothing to copy.
		return nil, nil
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		for _, f := range strings.Fields(sc.Text()) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
	}
	return libs, nil
}

// copyPath copies the host file at p into root at the same path, recreating
// every symlink met on the way (in directories and in the file itself), so
// names like /lib64/ld-linux-x86-64.so.2 resolve inside the image as on the
// host.
func copyPath(root, p string) error {
	for depth := 0; depth < 40; depth++ {
		p = filepath.Clean(p)
		// Resolve symlinked parent directories first (e.g. /bin -> usr/bin).
		dir, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			return err
		}
		p = filepath.Join(dir, filepath.Base(p))
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if _, err := os.Lstat(dst); os.IsNotExist(err) {
				if err := os.Symlink(target, dst); err != nil {
					return err
				}
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(p), target)
			}
			p = target
			continue
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		if _, err := os.Lstat(dst); err == nil {
			return nil
		}
		return copyFile(p, dst, fi.Mode().Perm())
	}
	return fmt.Errorf("too many links resolving %s", p)
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm&0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
