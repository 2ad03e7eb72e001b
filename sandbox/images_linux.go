package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"nimbus/rpc"
)

// The image store: managed runtimes' root filesystems, built from Debian
// packages by an explicit step (`nimbus image build`), never by an
// invocation. Layout under its dir:
//
//	.lock-<runtime>              a builder of that runtime holds it (flock)
//	.build-<runtime>-*/          a build in progress (removed if its builder died)
//	<runtime>-<recipe[:16]>/     a finished image; its manifest is written last
//	  .nimbus-image.json         rpc.ImageInfo: digest, recipe, size
//
// An image is named by its recipe's digest, so a recipe that did not
// change is never rebuilt, and its manifest records the digest of its
// content. A finished image is never changed or removed while the store
// runs (sandboxes may run on it); a new recipe builds a new directory
// beside it. The store is meant to outlive any one agent's data dir (the
// default, DefaultImageDir, is machine-wide), so tests and CI reuse what
// was built before.
type ImageStore struct {
	dir string
}

// DefaultImageDir is the machine-wide image store.
const DefaultImageDir = "/var/cache/nimbus/images"

// imageManifest is the file a build writes last in a finished image.
const imageManifest = ".nimbus-image.json"

// errImageNotBuilt says a managed runtime's image is not in the store:
// ResourceNotReadyException, with the command that builds it.
func errImageNotBuilt(runtime string) error {
	return rpc.Errorf(rpc.CodeResourceNotReady,
		"The image of runtime %s is not built on this node: build it with `nimbus image build %s` (it needs the node's apt mirror), then invoke again", runtime, runtime)
}

// OpenImageStore opens (creating it) the store in dir.
func OpenImageStore(dir string) (*ImageStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return &ImageStore{dir: dir}, nil
}

// Dir returns the store's folder.
func (s *ImageStore) Dir() string { return s.dir }

func (s *ImageStore) imagePath(runtime, recipe string) string {
	return filepath.Join(s.dir, runtime+"-"+recipe[:16])
}

// Lookup returns the root and manifest of runtime's image built from its
// current recipe, or a ResourceNotReadyException.
func (s *ImageStore) Lookup(runtime string) (string, *rpc.ImageInfo, error) {
	rt, ok := LookupRuntime(runtime)
	if !ok || rt.Image == nil {
		return "", nil, fmt.Errorf("runtime %q has no image to build", runtime)
	}
	root := s.imagePath(runtime, rt.Image.Key(runtime))
	info, err := readManifest(root)
	if err != nil {
		return "", nil, errImageNotBuilt(runtime)
	}
	return root, info, nil
}

func readManifest(root string) (*rpc.ImageInfo, error) {
	b, err := readBounded(filepath.Join(root, imageManifest), 64<<10)
	if err != nil {
		return nil, err
	}
	var info rpc.ImageInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// List returns the images of the current recipes that the store holds, in
// rpc.Runtimes order.
func (s *ImageStore) List() []rpc.ImageInfo {
	var out []rpc.ImageInfo
	for _, r := range rpc.ManagedRuntimes {
		if _, info, err := s.Lookup(r); err == nil {
			out = append(out, *info)
		}
	}
	return out
}

// BuildOptions tune a build.
type BuildOptions struct {
	// Mirror is the Debian archive's URI; empty takes the machine's apt
	// sources (and their security archive).
	Mirror string
	// Log receives the builder's output (nil: discarded).
	Log io.Writer
}

// Build builds runtime's image unless the store already holds one of its
// current recipe, and returns its manifest; built says whether this call
// built it. Safe when many goroutines or processes build at once: builders
// of one runtime take an exclusive flock on .lock-<runtime> and look again
// under it, so an image is built once; a builder that died leaves only a
// .build- directory, removed by the next one under the lock.
func (s *ImageStore) Build(ctx context.Context, runtime string, opts BuildOptions) (_ *rpc.ImageInfo, built bool, err error) {
	rt, ok := LookupRuntime(runtime)
	if !ok {
		return nil, false, rpc.Errorf(rpc.CodeInvalidParameterValue, "unknown runtime %q: one of %s", runtime, strings.Join(rpc.Runtimes, ", "))
	}
	if rt.Image == nil {
		return nil, false, rpc.Errorf(rpc.CodeInvalidParameterValue, "runtime %s runs on the default image, assembled from the host at the agent's start: it needs no build", runtime)
	}
	if _, info, err := s.Lookup(runtime); err == nil {
		return info, false, nil
	}
	unlock, err := lockFile(filepath.Join(s.dir, ".lock-"+runtime))
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if _, info, err := s.Lookup(runtime); err == nil {
		return info, false, nil // another builder finished while we waited
	}
	stale, _ := filepath.Glob(filepath.Join(s.dir, ".build-"+runtime+"-*"))
	for _, d := range stale {
		os.RemoveAll(d)
	}
	mirrors := aptMirrors{Main: strings.TrimSuffix(opts.Mirror, "/")}
	if mirrors.Main == "" {
		if mirrors, err = machineMirrors("/"); err != nil {
			return nil, false, rpc.Errorf(rpc.CodeService, "build image %s: %v", runtime, err)
		}
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return nil, false, rpc.Errorf(rpc.CodeService, "build image %s: mmdebstrap is not installed (apt-get install mmdebstrap; scripts/install-deps.sh installs it)", runtime)
	}
	tmp, err := os.MkdirTemp(s.dir, ".build-"+runtime+"-")
	if err != nil {
		return nil, false, err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	start := time.Now()
	recipe := rt.Image.Key(runtime)
	if err := buildManaged(ctx, root, rt, mirrors, opts.Log); err != nil {
		return nil, false, rpc.Errorf(rpc.CodeService, "build image %s: %v", runtime, err)
	}
	info := &rpc.ImageInfo{Runtime: runtime, Recipe: recipe}
	if info.Digest, info.SizeBytes, info.Files, err = treeDigest(root); err != nil {
		return nil, false, fmt.Errorf("build image %s: digest: %w", runtime, err)
	}
	info.BuiltMs = time.Now().UnixMilli()
	info.BuildSeconds = time.Since(start).Seconds()
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(filepath.Join(root, imageManifest), append(b, '\n'), 0o644); err != nil {
		return nil, false, err
	}
	final := s.imagePath(runtime, recipe)
	if err := os.RemoveAll(final); err != nil { // an unfinished one: no manifest
		return nil, false, err
	}
	if err := os.Rename(root, final); err != nil {
		return nil, false, err
	}
	return info, true, nil
}

// dpkgExcludes keep what no runtime reads out of the images.
var dpkgExcludes = []string{
	"/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*", "/usr/share/locale/*",
	"/usr/share/lintian/*", "/usr/share/bash-completion/*", "/usr/share/common-licenses/*",
}

// buildManaged runs mmdebstrap for rt's recipe into root, then adds what
// every sandbox root needs.
func buildManaged(ctx context.Context, root string, rt *Runtime, m aptMirrors, log io.Writer) error {
	r := rt.Image
	if log == nil {
		log = io.Discard
	}
	args := []string{"--variant=essential", "--mode=root", "--format=directory",
		"--include=" + strings.Join(r.Packages, ","),
		"--aptopt=APT::Install-Recommends \"false\"",
	}
	for _, x := range dpkgExcludes {
		args = append(args, "--dpkgopt=path-exclude="+x)
	}
	// update-alternatives (openjdk's postinst) links man pages into
	// man1 and fails when the excluded folder does not exist; it stays
	// empty.
	args = append(args, "--essential-hook=mkdir -p \"$1/usr/share/man/man1\"")
	// The embedded files go in before the hooks, which may compile them.
	for _, p := range sortedKeys(r.Files) {
		src, err := shimFiles.ReadFile("shims/" + r.Files[p])
		if err != nil {
			return err
		}
		staged := filepath.Join(filepath.Dir(root), "files", strings.TrimPrefix(p, "/"))
		if err := os.MkdirAll(filepath.Dir(staged), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(staged, src, 0o644); err != nil {
			return err
		}
		args = append(args, "--customize-hook=mkdir -p \"$1"+filepath.Dir(p)+"\" && cp "+shellQuote(staged)+" \"$1"+p+"\"")
	}
	for _, h := range r.Hooks {
		args = append(args, "--customize-hook=chroot \"$1\" /bin/sh -c "+shellQuote(h))
	}
	// Package lists and caches are of no use in a read-only root.
	args = append(args, "--customize-hook=rm -rf \"$1\"/var/cache/apt \"$1\"/var/lib/apt/lists \"$1\"/var/log/*")
	args = append(args, r.Suite, root, "deb "+m.Main+" "+r.Suite+" main")
	if m.Security != "" {
		args = append(args, "deb "+m.Security+" "+r.Suite+"-security main")
	}
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	var tail tailBuffer
	cmd.Stderr = io.MultiWriter(log, &tail)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mmdebstrap: %v: %s", err, tail.String())
	}
	return imageLayout(root)
}

// imageLayout adds what every sandbox root needs to a built tree: the
// sandbox user, a hostname that resolves, and the mount points. The device
// nodes the build made go: every sandbox mounts its own /dev.
func imageLayout(root string) error {
	if err := os.RemoveAll(filepath.Join(root, "dev")); err != nil {
		return err
	}
	// var/task/lib and opt/lib are on LD_LIBRARY_PATH: a primed shell's
	// interpreter starts before the code and layers are mounted over them,
	// and the dynamic loader stops looking in a folder of LD_LIBRARY_PATH
	// that did not exist when the process started.
	for _, d := range []string{"var/task/lib", "var/runtime", "opt/lib", "tmp", "proc", "dev", "sys/fs/cgroup", "home/" + sandboxUser, filepath.Dir(strings.TrimPrefix(initPath, "/"))} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, initPath), nil, 0o755); err != nil {
		return err
	}
	if err := appendFile(filepath.Join(root, "etc/passwd"), fmt.Sprintf("%s:x:%d:%d::/home/%s:/sbin/nologin\n", sandboxUser, sandboxUID, sandboxGID, sandboxUser)); err != nil {
		return err
	}
	if err := appendFile(filepath.Join(root, "etc/group"), fmt.Sprintf("%s:x:%d:\n", sandboxUser, sandboxGID)); err != nil {
		return err
	}
	hosts := "127.0.0.1\tlocalhost " + sandboxHostname + "\n::1\tlocalhost " + sandboxHostname + "\n"
	if err := os.WriteFile(filepath.Join(root, "etc/hosts"), []byte(hosts), 0o644); err != nil {
		return err
	}
	// Amazon Linux's CA bundle path, where some runtimes and SDKs look.
	if _, err := os.Stat(filepath.Join(root, caBundle)); err == nil {
		for _, l := range caBundleLinks {
			os.MkdirAll(filepath.Join(root, filepath.Dir(l)), 0o755)
			os.Symlink(caBundle, filepath.Join(root, l))
		}
	}
	return nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// tailBuffer keeps the last 4 KB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return strings.TrimSpace(string(t.b)) }

// treeDigest hashes a tree in path order: for each directory, file and
// symlink its path, type and permission bits, then a link's target or a
// file's sha256 (device nodes and fifos are left out). It returns
// the digest, the bytes of the regular files and the count of entries.
func treeDigest(root string) (string, int64, int, error) {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == imageManifest {
			return nil
		}
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		return "", 0, 0, err
	}
	sort.Strings(paths)
	h := sha256.New()
	var size int64
	for _, rel := range paths {
		p := filepath.Join(root, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return "", 0, 0, err
		}
		if !fi.Mode().IsRegular() && !fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
			continue // device nodes and fifos are not part of an image
		}
		fmt.Fprintf(h, "%s\x00%o\x00", rel, uint32(fi.Mode()))
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return "", 0, 0, err
			}
			h.Write([]byte(t))
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return "", 0, 0, err
			}
			fh := sha256.New()
			n, err := io.Copy(fh, f)
			f.Close()
			if err != nil {
				return "", 0, 0, err
			}
			size += n
			h.Write(fh.Sum(nil))
			h.Write([]byte(strconv.FormatInt(n, 10)))
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), size, len(paths), nil
}

// ensureShims writes the embedded shims under dir, once per content (its
// digest names the folder), and returns that folder: shim <name> is in
// <folder>/<name>, mounted read-only at /var/runtime. Like EnsureImage, it
// is safe for concurrent callers and never changes a finished folder.
func ensureShims(dir string) (string, error) {
	h := sha256.New()
	var files []string
	err := fs.WalkDir(shimFiles, "shims", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	for _, p := range files {
		b, _ := shimFiles.ReadFile(p)
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
	}
	final := filepath.Join(dir, "shims-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(final, imageStamp)); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(final, imageStamp)); err == nil {
		return final, nil
	}
	tmp, err := os.MkdirTemp(dir, ".build-shims-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	for _, p := range files {
		b, _ := shimFiles.ReadFile(p)
		dst := filepath.Join(tmp, strings.TrimPrefix(p, "shims/"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, imageStamp), nil, 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return final, nil
}
