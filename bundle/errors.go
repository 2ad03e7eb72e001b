package bundle

import (
	"errors"

	"nimbus/rpc"
)

// Sentinels for errors.Is. Every *Error of this package has one of them as
// its Kind. Never mutate them.
var (
	ErrZipTooLarge      = errors.New("bundle: zip too large")
	ErrUnzippedTooLarge = errors.New("bundle: unzipped size too large")
	ErrTooManyEntries   = errors.New("bundle: too many zip entries")
	ErrNotZip           = errors.New("bundle: not a readable zip")
	ErrUnsafePath       = errors.New("bundle: unsafe entry path")
	ErrUnsafeSymlink    = errors.New("bundle: unsafe symlink")
	ErrSpecialFile      = errors.New("bundle: special file")
	ErrNoBootstrap      = errors.New("bundle: no executable bootstrap")
	ErrBadDigest        = errors.New("bundle: malformed sha256")
	ErrCorrupt          = errors.New("bundle: stored zip does not match its sha256")
)

// Messages Lambda uses for the same faults, so callers moving from Lambda
// see familiar text.
const (
	msgUnzip         = "Could not unzip uploaded file. Please check your file, then try to upload again."
	msgUnzippedLimit = "Unzipped size must be smaller than 262144000 bytes"
	msgZippedLimit   = "Zipped size must be smaller than 52428800 bytes"
	msgBootstrap     = "Couldn't find valid bootstrap(s): [/var/task/bootstrap]"
	msgBadDigest     = "Invalid code sha256: must be 64 lowercase hex digits"
	msgCorrupt       = "Stored code does not match its sha256"
	msgSpecialFile   = "The code folder holds an entry that cannot be uploaded: only files, directories and symlinks can be"
)

// Error is a fault in a code bundle or in a request to the store.
//
// It matches two things under errors.Is: its Kind (one of the Err*
// sentinels above) and the rpc error for its wire code (for example
// rpc.ErrInvalidParameterValue), so handlers can return it as is and
// rpc.AsError finds the code. The wire message is Error(): Lambda's text
// first, then the detail.
type Error struct {
	Kind   error  // one of this package's Err* sentinels
	Msg    string // Lambda's message where Lambda has one
	Detail string // what exactly was wrong, such as the entry name; may be empty
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Msg
	}
	return e.Msg + " (" + e.Detail + ")"
}

// Unwrap returns the Kind and the rpc error carrying the wire code.
func (e *Error) Unwrap() []error {
	return []error{e.Kind, rpc.Errorf(e.code(), "%s", e.Error())}
}

// code maps the kind to a Lambda exception name.
func (e *Error) code() string {
	switch e.Kind {
	case ErrZipTooLarge:
		return rpc.CodeRequestTooLarge
	case ErrCorrupt:
		return rpc.CodeService
	default:
		return rpc.CodeInvalidParameterValue
	}
}

func unzipError(kind error, detail string) *Error {
	return &Error{Kind: kind, Msg: msgUnzip, Detail: detail}
}
