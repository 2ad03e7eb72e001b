package rpc

import "context"

// Methods of runtime images. Image.Build and Image.List are client methods
// answered by the node asked (an image is a worker's, not the cluster's);
// Image.Local is the node-to-node call a node uses to learn which images
// its peers hold (for `nimbus image list` and the check at `fn create`).
const (
	MethodImageBuild = "Image.Build"
	MethodImageList  = "Image.List"
	MethodImageLocal = "Image.Local"
	MethodImageFetch = "Image.Fetch"
)

// CodeResourceNotReady is Lambda's exception for a function that cannot run
// yet; nimbus returns it when a managed runtime's image is not built.
const CodeResourceNotReady = "ResourceNotReadyException"

// ErrResourceNotReady matches, under errors.Is, an error with
// CodeResourceNotReady.
var ErrResourceNotReady = &Error{Code: CodeResourceNotReady}

// ImageInfo is one built runtime image on one node. Digest is the sha256 of
// the image's content (every path, mode, link target and file's bytes, in
// path order); Recipe is the sha256 of what it was built from (suite,
// packages, the build's steps), which names it in the store, so an image is
// rebuilt only when its recipe changes.
type ImageInfo struct {
	Runtime      string  `msgpack:"runtime" json:"runtime"`
	Digest       string  `msgpack:"digest" json:"digest"`
	Recipe       string  `msgpack:"recipe" json:"recipe"`
	SizeBytes    int64   `msgpack:"size_bytes" json:"sizeBytes"`
	Files        int     `msgpack:"files" json:"files"`
	BuiltMs      int64   `msgpack:"built_ms" json:"builtMs"`
	BuildSeconds float64 `msgpack:"build_seconds" json:"buildSeconds"`
	// Nodes lists the nodes holding the image (Image.List only).
	Nodes []string `msgpack:"nodes,omitempty" json:"nodes,omitempty"`
}

// BuildImageRequest builds a runtime's image on the node asked. Mirror,
// when set, is the Debian mirror URI to use instead of the node's own apt
// sources.
type BuildImageRequest struct {
	Runtime string `msgpack:"runtime"`
	Mirror  string `msgpack:"mirror,omitempty"`
}

// BuildImageResponse is the built (or already present) image. Built is
// false when an image of the same recipe was already there.
type BuildImageResponse struct {
	Image ImageInfo `msgpack:"image" json:"image"`
	Built bool      `msgpack:"built" json:"built"`
	Node  string    `msgpack:"node" json:"node"`
}

// ListImagesRequest lists the runtimes and the images the cluster's alive
// nodes hold.
type ListImagesRequest struct{}

// RuntimeImages is one runtime and its images across the cluster (one per
// digest, with the nodes that hold it). Built is false for a managed
// runtime no node has built; NeedsBuild is false for `provided`.
type RuntimeImages struct {
	Runtime    string      `msgpack:"runtime" json:"runtime"`
	NeedsBuild bool        `msgpack:"needs_build" json:"needsBuild"`
	Images     []ImageInfo `msgpack:"images" json:"images"`
}

// ListImagesResponse holds every runtime in Runtimes order. Unreached
// names the nodes that did not answer.
type ListImagesResponse struct {
	Runtimes  []RuntimeImages `msgpack:"runtimes" json:"runtimes"`
	Unreached []string        `msgpack:"unreached,omitempty" json:"unreached,omitempty"`
}

// LocalImagesRequest asks a peer for the images it holds.
type LocalImagesRequest struct{}

// LocalImagesResponse is a node's own images.
type LocalImagesResponse struct {
	Node   string      `msgpack:"node"`
	Images []ImageInfo `msgpack:"images"`
}

// FetchImageRequest asks a peer for a chunk of the tar of its image of
// Runtime, which must have Digest (a peer method).
type FetchImageRequest struct {
	Runtime string `msgpack:"runtime"`
	Digest  string `msgpack:"digest"`
	Offset  int64  `msgpack:"offset"`
}

// FetchImageResponse is a chunk of at most ImageChunkBytes from Offset, the
// tar's whole size and the image's manifest.
type FetchImageResponse struct {
	Image ImageInfo `msgpack:"image"`
	Total int64     `msgpack:"total"`
	Data  []byte    `msgpack:"data"`
}

// ImageChunkBytes is the most an Image.Fetch answer carries.
const ImageChunkBytes = 8 << 20

// BuildImage builds a runtime's image on the node this client speaks to
// (MethodImageBuild). It can take minutes: give ctx a long deadline.
func (c *Client) BuildImage(ctx context.Context, req *BuildImageRequest) (*BuildImageResponse, error) {
	return callTyped[BuildImageResponse](ctx, c, MethodImageBuild, req)
}

// ListImages lists runtimes and images (MethodImageList).
func (c *Client) ListImages(ctx context.Context, req *ListImagesRequest) (*ListImagesResponse, error) {
	return callTyped[ListImagesResponse](ctx, c, MethodImageList, req)
}
