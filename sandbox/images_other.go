//go:build !linux

package sandbox

import (
	"context"
	"io"

	"nimbus/rpc"
)

// ImageStore holds managed runtimes' images on Linux only (images are
// built with mmdebstrap and run by workers).
type ImageStore struct{}

// DefaultImageDir is the machine-wide image store.
const DefaultImageDir = "/var/cache/nimbus/images"

// BuildOptions tune a build.
type BuildOptions struct {
	Mirror string
	Log    io.Writer
}

// OpenImageStore fails with ErrUnsupported.
func OpenImageStore(string) (*ImageStore, error) { return nil, ErrUnsupported }

// Build fails with ErrUnsupported.
func (*ImageStore) Build(context.Context, string, BuildOptions) (*rpc.ImageInfo, bool, error) {
	return nil, false, ErrUnsupported
}

// List is empty.
func (*ImageStore) List() []rpc.ImageInfo { return nil }

// Lookup fails with ErrUnsupported.
func (*ImageStore) Lookup(string) (string, *rpc.ImageInfo, error) { return "", nil, ErrUnsupported }

// Dir is empty.
func (*ImageStore) Dir() string { return "" }

// Images is nil: there are no sandboxes.
func (*Manager) Images() *ImageStore { return nil }

// Export fails with ErrUnsupported.
func (*ImageStore) Export(string) (string, int64, *rpc.ImageInfo, error) {
	return "", 0, nil, ErrUnsupported
}

// Import fails with ErrUnsupported.
func (*ImageStore) Import(context.Context, string, rpc.ImageInfo, io.Reader) (*rpc.ImageInfo, error) {
	return nil, ErrUnsupported
}
