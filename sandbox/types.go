package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"nimbus/rpc"
)

// The sandbox package's portable surface: the types other packages use
// build on every platform (the CLI runs on macOS and Windows); only the
// Manager that runs containers is Linux's.

// Config configures a Manager. Zero values take the defaults noted.
type Config struct {
	// StateDir holds libcontainer's state; it belongs on a tmpfs (/run).
	// Sandboxes left there by an earlier agent are destroyed at start.
	StateDir string
	// ImageDir is where the default image is built once and cached.
	ImageDir string
	// RuntimeImageDir is the store of the managed runtimes' images (built
	// by `nimbus image build`; default DefaultImageDir, machine-wide).
	RuntimeImageDir string
	// CgroupParent is the cgroup path sandboxes go under (default /nimbus).
	CgroupParent string
	// IdleTimeout is how long an unused warm sandbox is kept (default 10m).
	IdleTimeout time.Duration
	// ShellPool is how many sandboxes without a function (shells) are kept
	// ready per runtime that has had a cold start, so that the next cold
	// start of that runtime only mounts the code and starts the runtime
	// (shell_linux.go). 0 keeps none: every cold start makes its own.
	ShellPool int
	// FreezeAfter is how long an idle sandbox stays thawed before it is
	// frozen (default 50ms; negative: never freeze).
	FreezeAfter time.Duration
	// InitTimeout caps a runtime's first initialisation (default 10s,
	// Lambda's); one over it is retried within the invocation, under the
	// function's timeout.
	InitTimeout time.Duration
	// SandboxUIDFirst and SandboxUIDCount are the range of host uids (and
	// gids of the same numbers) the manager runs its sandboxes as, one each,
	// so that per-user kernel limits are per sandbox; functions see uid 993
	// inside. The range must be this manager's alone (default 65,536 uids,
	// as many sandboxes at once, in one of 128 blocks from 0x60000000
	// picked by StateDir's path).
	SandboxUIDFirst, SandboxUIDCount int
	// ScratchDir holds the sandboxes' /tmp images (scratch_linux.go); it
	// belongs on a disk, not a tmpfs (default StateDir/scratch). What an
	// earlier agent left there is removed at start.
	ScratchDir string
	// ScratchMaxMB is the most disk all sandboxes' /tmp together may be
	// given (default: half the free space of ScratchDir's filesystem when
	// the manager starts). A cold start beyond it fails.
	ScratchMaxMB int
	// InitHelper is the nimbus-init binary every sandbox's container init
	// runs from (inithelper_linux.go): "" looks for it beside this
	// program, "off" makes this program its own container init.
	InitHelper string
	// ARNs is the region and account of function ARNs and AWS_REGION
	// (the zero value: the default scope).
	ARNs rpc.ARNScope
	// Logs receives every function's log lines. Required.
	Logs   LogSink
	Logger *slog.Logger
}

// Request is one invocation to run.
type Request struct {
	Function *rpc.FunctionConfig
	CodeDir  string // the function's extracted code, mounted at /var/task
	// OptDir is the function's layers merged in order, mounted read-only
	// at /opt ("" leaves the image's empty /opt).
	OptDir    string
	RequestID string // generated when empty
	Payload   []byte
	Tail      bool // return the last 4 KB of the invocation's log
	// Qualifier is what the caller invoked the function with ("" for
	// none, else a version or an alias): the invoked ARN carries it.
	Qualifier string
	// ClientContext is the caller's client context, one line of JSON
	// ("" for none): the runtime's /next carries it.
	ClientContext string
	// Stream, when set, is given the response as the runtime posts it,
	// up to 200 MB, instead of Result.Payload (Lambda's
	// InvokeWithResponseStream). An error the runtime reports, before or
	// midway, is still the Result's.
	Stream ResponseStream
}

// ResponseStream receives a streamed response. Start and Write are called
// on one goroutine, in order, and never after Invoke returns; Invoke waits
// for a Write under way, so Write must return once Abort is called (from
// another goroutine, when the invocation ended while the response was
// still streaming: a timeout, a crash).
type ResponseStream interface {
	// Start is called once, when the runtime starts posting its response,
	// with the Content-Type it gave ("" for none).
	Start(contentType string) error
	// Write is given the response's bytes in order; p is only valid
	// during the call. After an error it is given nothing more (the
	// runtime's response is still read to its end).
	Write(p []byte) error
	// Abort makes a Write under way, and later ones, fail at once.
	Abort()
}

// Result is an invocation's outcome. A function error (returned, crashed,
// out of memory, timed out) is a Result with ErrorType set, not an error.
type Result struct {
	RequestID    string
	Payload      []byte
	ErrorType    string // "" on success
	LogTail      string
	Cold         bool
	InitDuration time.Duration
	Duration     time.Duration
	MaxMemoryMB  int
	// Streamed says the response went to Request.Stream (Payload is then
	// empty, or the error when ErrorType is set).
	Streamed bool
}

// Stats counts the sandboxes a manager holds.
type Stats struct {
	Idle, Busy int // warm (frozen ones included) and all the others
	// By state: starting (cold), running an invocation (busy), warm and
	// running (idle), warm and frozen.
	Initializing, Running, Thawed, Frozen int
	// Ready is the shells in the pool: started, with no function yet.
	Ready int
	// RuntimeAPIConns is the Runtime API connections open in all the
	// sandboxes; RuntimeAPIRefused counts those closed at once at the
	// per-sandbox limit since the manager started.
	RuntimeAPIConns   int64
	RuntimeAPIRefused uint64
}

// ErrClosed is returned by Invoke after Close.
var ErrClosed = errors.New("sandbox manager closed")

// LogSink receives a function's log lines in order: what the function wrote
// on stdout and stderr, and the START, END and REPORT lines of each
// invocation. The node backs it with the log store.
type LogSink interface {
	Append(function string, events ...rpc.LogEvent) error
}

// RuntimeAPIAddr is where the Runtime API listens inside every sandbox: its
// own loopback, in its own network namespace.
const RuntimeAPIAddr = "127.0.0.1:9001"

func sandboxKey(fn *rpc.FunctionConfig) string {
	k := fn.Name + "@" + strconv.FormatUint(fn.Revision, 10) + "@" + fn.CodeSHA256
	if fn.Version != "" {
		k += "@" + fn.Version // a published version copies $LATEST's revision
	}
	return k
}

// Key is how warm sandboxes are keyed: function name, revision, code
// digest and version, so a sandbox only ever serves the code it was
// started with, as the version it was started as. The
// scheduler places invocations on workers with an idle sandbox of the key.
func Key(fn *rpc.FunctionConfig) string { return sandboxKey(fn) }

// defaultEnv are variables the platform sets unless the function sets its
// own: they are not reserved on Lambda, and the function's values win.
var defaultEnv = [...][2]string{
	{"TZ", ":UTC"},
	{"LANG", "en_US.UTF-8"},
	{"PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin"},
	{"LD_LIBRARY_PATH", "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"},
}

// environment is the runtime's environment: the function's own variables
// (reserved keys dropped: the platform sets those), the defaults it did not
// override, and the reserved ones.
// NewRequestID returns a random UUID (version 4), Lambda's request id form.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
