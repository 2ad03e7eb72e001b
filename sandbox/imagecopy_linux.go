package sandbox

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"nimbus/rpc"
)

// Copying an image between nodes: the node that has it exports it once as
// a tar file beside it (.export-<digest>.tar), served in chunks by offset;
// the node that lacks it writes the chunks to a file, unpacks it into a
// build folder and keeps it only if the unpacked tree hashes to the digest
// it asked for (treeDigest), under the runtime's lock like a build. So only
// one node needs a package mirror, and a peer cannot plant an image: what
// it sends must be the image whose digest the fetcher named.

// maxImageBytes bounds what an import reads and writes: a tar of an image
// larger than this is refused (the Java image, the largest, is ~250 MB).
const maxImageBytes = 2 << 30

// maxImageEntries bounds the entries of an imported tar.
const maxImageEntries = 200_000

// Export returns the path and size of a tar of runtime's image, making it
// the first time (under the runtime's lock). The tar is immutable once
// renamed into place.
func (s *ImageStore) Export(runtime string) (string, int64, *rpc.ImageInfo, error) {
	root, info, err := s.Lookup(runtime)
	if err != nil {
		return "", 0, nil, err
	}
	path := filepath.Join(s.dir, ".export-"+info.Digest+".tar")
	if fi, err := os.Stat(path); err == nil {
		return path, fi.Size(), info, nil
	}
	unlock, err := lockFile(filepath.Join(s.dir, ".lock-"+runtime))
	if err != nil {
		return "", 0, nil, err
	}
	defer unlock()
	if fi, err := os.Stat(path); err == nil {
		return path, fi.Size(), info, nil
	}
	tmp, err := os.CreateTemp(s.dir, ".export-tmp-")
	if err != nil {
		return "", 0, nil, err
	}
	defer os.Remove(tmp.Name())
	if err := writeTar(tmp, root); err != nil {
		tmp.Close()
		return "", 0, nil, fmt.Errorf("export image %s: %w", runtime, err)
	}
	if err := tmp.Close(); err != nil {
		return "", 0, nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", 0, nil, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, nil, err
	}
	return path, fi.Size(), info, nil
}

// writeTar writes root's tree (its manifest included) to w, in path order.
func writeTar(w io.Writer, root string) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if !fi.Mode().IsRegular() && !fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
			continue // no devices or fifos in an image; mount points are dirs
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		h.Name = rel
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// Import unpacks the tar in r as runtime's image, keeping it only if its
// tree hashes to want.Digest and want.Recipe is this release's recipe of
// the runtime. An image already there is kept as it is.
func (s *ImageStore) Import(ctx context.Context, runtime string, want rpc.ImageInfo, r io.Reader) (*rpc.ImageInfo, error) {
	rt, ok := LookupRuntime(runtime)
	if !ok || rt.Image == nil {
		return nil, fmt.Errorf("runtime %q has no image", runtime)
	}
	if want.Recipe != rt.Image.Key(runtime) {
		return nil, fmt.Errorf("the peer's image of %s is of another recipe (another release of nimbus)", runtime)
	}
	if _, info, err := s.Lookup(runtime); err == nil {
		return info, nil
	}
	unlock, err := lockFile(filepath.Join(s.dir, ".lock-"+runtime))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, info, err := s.Lookup(runtime); err == nil {
		return info, nil
	}
	tmp, err := os.MkdirTemp(s.dir, ".build-"+runtime+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := readTar(ctx, r, root); err != nil {
		return nil, fmt.Errorf("import image %s: %w", runtime, err)
	}
	digest, size, files, err := treeDigest(root)
	if err != nil {
		return nil, err
	}
	if digest != want.Digest {
		return nil, fmt.Errorf("import image %s: the tree hashes to %s, not %s", runtime, digest, want.Digest)
	}
	info := want
	info.Nodes = nil
	info.SizeBytes, info.Files = size, files
	b, _ := json.MarshalIndent(&info, "", "  ")
	if err := os.WriteFile(filepath.Join(root, imageManifest), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	final := s.imagePath(runtime, want.Recipe)
	if err := os.RemoveAll(final); err != nil {
		return nil, err
	}
	if err := os.Rename(root, final); err != nil {
		return nil, err
	}
	return &info, nil
}

// readTar unpacks a tar into root (which it creates), bounded in bytes and
// entries. Only directories, regular files and symlinks are accepted; names
// must be relative and free of "..", and every write goes through an
// os.Root, so nothing lands outside root even through a symlink the tar
// made. The manifest is not taken from the tar: Import writes its own.
func readTar(ctx context.Context, r io.Reader, root string) error {
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	dst, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer dst.Close()
	tr := tar.NewReader(&boundedReader{r: r, left: maxImageBytes})
	type dirMode struct {
		name string
		mode fs.FileMode
	}
	var dirs []dirMode
	for n := 0; ; n++ {
		if n > maxImageEntries {
			return fmt.Errorf("more than %d entries", maxImageEntries)
		}
		if n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(h.Name, "/")
		if name == "" || name == "." || filepath.IsAbs(name) || strings.HasPrefix(name, "../") || strings.Contains(name, "/../") || name == ".." || filepath.Clean(name) != name {
			return fmt.Errorf("unsafe entry %q", h.Name)
		}
		if name == imageManifest {
			continue
		}
		mode := fs.FileMode(h.Mode) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		if h.Mode&0o4000 != 0 {
			mode |= fs.ModeSetuid
		}
		if h.Mode&0o2000 != 0 {
			mode |= fs.ModeSetgid
		}
		if h.Mode&0o1000 != 0 {
			mode |= fs.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := dst.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			dirs = append(dirs, dirMode{name, mode})
		case tar.TypeReg:
			f, err := dst.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Chmod(mode); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := dst.Symlink(h.Linkname, name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q of type %q: only directories, files and symlinks", h.Name, h.Typeflag)
		}
	}
	// Directory modes last, so a read-only directory did not stop its
	// entries being written.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := dst.Chmod(dirs[i].name, dirs[i].mode); err != nil {
			return err
		}
	}
	return nil
}

// boundedReader fails once more than left bytes were read.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("image larger than the import limit")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}
