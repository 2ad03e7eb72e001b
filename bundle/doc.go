// Package bundle owns function code bundles: the zips users upload, as
// Lambda takes them.
//
// It owns:
//   - validating an uploaded zip (Check): Lambda's size limits (MaxZipSize,
//     MaxUnzippedSize, counted on the bytes actually inflated, not on what
//     headers claim), at most MaxEntries entries, safe names, symlinks that
//     stay inside the bundle, no special files, and for the provided runtime
//     an executable bootstrap at the root;
//   - extracting a zip (Extract) without ever writing outside the target or
//     through a symlink;
//   - zipping a folder deterministically (ZipDir), so the same tree has the
//     same sha256;
//   - a content-addressed Store of zips by sha256 in a data dir, with a cache
//     of extracted trees.
//
// Errors about a bundle are *Error values: errors.Is matches both their Kind
// (ErrNotZip, ErrUnsafePath, ...) and the rpc error of their wire code
// (rpc.ErrInvalidParameterValue, rpc.ErrRequestTooLarge), and their message
// starts with Lambda's text for the same fault.
//
// It must never:
//   - write, create or chmod anything outside the destination it was given,
//     or follow a symlink while writing;
//   - trust sizes, names or modes from zip headers without checking them, or
//     inflate more than MaxUnzippedSize bytes of one zip;
//   - build a path from a sha that is not 64 lowercase hex digits;
//   - make a zip or a tree visible before it is whole (temp, then rename),
//     or change one in place once it is;
//   - hold package-level mutable state, run code, or mount, chown or exec
//     anything: sandboxes use the trees, this package only makes them.
package bundle
