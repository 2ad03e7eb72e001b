package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// aws-lambda-go's lambda.WithEnableSIGTERM registers its internal
// extension and gets SIGTERM before its sandbox is destroyed; an extension
// in the runtime's process gets an INVOKE event for each invocation and
// SHUTDOWN at the end, and its registration is answered with the
// function's name. The sandboxes are frozen when idle: the shutdown thaws
// them.
func TestExtensionsInASandbox(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{})
	code := codeDir(t, gofnBin)

	sig := fnConfig("extsigterm", 1)
	sig.Env = map[string]string{"GOFN_EXTENSIONS": "sigterm"}
	invoke(t, m, sig, code, `{"do":"env"}`)

	evs := fnConfig("extevents", 1)
	evs.Env = map[string]string{"GOFN_EXTENSIONS": "events"}
	var ids []string
	for range 2 {
		ids = append(ids, invoke(t, m, evs, code, `{"do":"env"}`).RequestID)
	}

	m.Retire("extsigterm", 0)
	m.Retire("extevents", 0)
	waitFor(t, "aws-lambda-go's SIGTERM handler", func() bool {
		return strings.Contains(strings.Join(sink.lines("extsigterm"), "\n"), "aws-lambda-go SIGTERM handler ran")
	})
	waitFor(t, "the extension's SHUTDOWN", func() bool {
		return strings.Contains(strings.Join(sink.lines("extevents"), "\n"), "extension got SHUTDOWN spindown")
	})
	sigLines := strings.Join(sink.lines("extsigterm"), "\n")
	if strings.Contains(sigLines, "Failed to register internal extension") {
		t.Errorf("aws-lambda-go could not register its extension:\n%s", sigLines)
	}
	lines := strings.Join(sink.lines("extevents"), "\n")
	if !strings.Contains(lines, `extension registered: 200 {"functionName":"extevents","functionVersion":"$LATEST","handler":"bootstrap"}`) {
		t.Errorf("registration:\n%s", lines)
	}
	for _, id := range ids {
		if !strings.Contains(lines, "extension got INVOKE "+id) {
			t.Errorf("no INVOKE event for %s:\n%s", id, lines)
		}
	}
}

// extLogger is an external extension, as a layer ships one in
// /opt/extensions: it registers late (after the runtime is ready, so init
// must wait for it), then prints each event it gets.
const extLogger = `#!/bin/sh
sleep 0.5
API="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
H=$(mktemp)
code=$(curl -sS -D "$H" -o /dev/null -w '%{http_code}' -X POST "$API/register" -H "Lambda-Extension-Name: ext-logger" -d '{"events":["INVOKE","SHUTDOWN"]}')
ID=$(grep -i Lambda-Extension-Identifier "$H" | tr -d '[:space:]' | cut -d: -f2)
echo "ext-logger registered: $code"
while true; do
  EV=$(curl -sS -H "Lambda-Extension-Identifier: $ID" "$API/event/next")
  echo "ext-logger got $EV"
  case "$EV" in *SHUTDOWN*) exit 0;; esac
done
`

// An executable in the layers' /opt/extensions is started with the
// runtime; init waits until it has registered and asked for its first
// event, and it gets INVOKE and SHUTDOWN like an extension in the
// runtime's process.
func TestExternalExtensions(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{})
	opt := extensionLayer(t, "ext-logger", extLogger)
	if err := os.WriteFile(filepath.Join(opt, "extensions", "notes.txt"), []byte("not executable"), 0o644); err != nil {
		t.Fatal(err)
	}
	fn := fnConfig("extexternal", 1)
	code := codeDir(t, script("echo.sh"))
	var ids []string
	for i := range 2 {
		res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: code, OptDir: opt, Payload: []byte(strconv.Itoa(i))})
		if err != nil || res.ErrorType != "" {
			t.Fatalf("invoke %d: %v %s", i, err, res.Payload)
		}
		ids = append(ids, res.RequestID)
	}
	m.Retire("extexternal", 0)
	defer func() { t.Logf("log:\n%s", strings.Join(sink.lines("extexternal"), "\n")) }()
	waitFor(t, "the external extension's SHUTDOWN", func() bool {
		return strings.Contains(strings.Join(sink.lines("extexternal"), "\n"), `"eventType":"SHUTDOWN"`)
	})
	lines := strings.Join(sink.lines("extexternal"), "\n")
	if !strings.Contains(lines, "ext-logger registered: 200") {
		t.Fatalf("the extension did not register during init:\n%s", lines)
	}
	if strings.Index(lines, "ext-logger registered") > strings.Index(lines, "START RequestId: "+ids[0]) {
		t.Errorf("the first invocation started before the extension was ready:\n%s", lines)
	}
	for _, id := range ids {
		if !strings.Contains(lines, `"requestId":"`+id+`"`) {
			t.Errorf("no INVOKE event for %s:\n%s", id, lines)
		}
	}
	if !strings.Contains(lines, `"shutdownReason":"spindown"`) {
		t.Errorf("a retired sandbox's SHUTDOWN is not spindown:\n%s", lines)
	}

	// A function that times out: its extension hears why.
	slow := fnConfig("extslow", 1)
	slow.TimeoutSec = 1
	res, err := m.Invoke(context.Background(), &Request{Function: slow, CodeDir: codeDir(t, script("sleep.sh")), OptDir: opt, Payload: []byte(`{}`)})
	if err != nil || res.ErrorType != "Sandbox.Timedout" {
		t.Fatalf("the slow function: %v %+v", err, res)
	}
	waitFor(t, "the timed-out sandbox's SHUTDOWN", func() bool {
		return strings.Contains(strings.Join(sink.lines("extslow"), "\n"), `"shutdownReason":"timeout"`)
	})
}

// slowEcho answers each event after half a second.
const slowEcho = `#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  H="$(mktemp)"
  curl -sS -o /dev/null -LD "$H" "$API/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:space:]' | cut -d: -f2)
  sleep 0.5
  curl -sS -o /dev/null -X POST "$API/invocation/$ID/response" -d '"ok"'
done
`

// registerExtension is the shell function the test extensions below
// register with: `register NAME EVENTS` sets API and the extension's ID.
const registerExtension = `API="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
register() {
  H=$(mktemp)
  curl -sS -D "$H" -o /dev/null -X POST "$API/register" -H "Lambda-Extension-Name: $1" -d "$2"
  ID=$(grep -i Lambda-Extension-Identifier "$H" | tr -d '[:space:]' | cut -d: -f2)
}
`

// crashOnInvoke registers, and exits when it gets its first INVOKE.
const crashOnInvoke = `#!/bin/sh
` + registerExtension + `register crasher '{"events":["INVOKE"]}'
curl -sS -o /dev/null -H "Lambda-Extension-Identifier: $ID" "$API/event/next"
exit 1
`

// An external extension that cannot be started fails the init with
// Extension.LaunchError, one that exits during the init with
// Extension.Crash, and one that exits after it leaves the invocation in
// flight alone but its sandbox is not used again.
func TestExternalExtensionFailures(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{})
	code := codeDir(t, script("echo.sh"))
	for _, c := range []struct {
		name, script, errType, msg string
	}{
		{"badext", "#!/nonexistent/interpreter\n", "Extension.LaunchError", "Extension badext could not be started: no such file or directory"},
		{"quitter", "#!/bin/sh\nexit 3\n", "Extension.Crash", "Extension quitter exited: exit status 3"},
	} {
		fn := fnConfig("ext-"+c.name, 1)
		res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: code, OptDir: extensionLayer(t, c.name, c.script), Payload: []byte(`{}`), Tail: true})
		if err != nil {
			t.Fatal(err)
		}
		e := decodeError(t, res)
		if res.ErrorType != c.errType || e.ErrorType != c.errType || !strings.Contains(e.ErrorMessage, c.msg) {
			t.Errorf("%s: %s %s, want %s %q\n%s", c.name, res.ErrorType, res.Payload, c.errType, c.msg, res.LogTail)
		}
		if !strings.Contains(res.LogTail, "INIT_REPORT") || !strings.Contains(res.LogTail, "Error Type: "+c.errType) {
			t.Errorf("%s: the log tail has no INIT_REPORT with %s:\n%s", c.name, c.errType, res.LogTail)
		}
	}

	fn := fnConfig("ext-crasher", 1)
	opt := extensionLayer(t, "crasher", crashOnInvoke)
	slowCode := scriptCode(t, slowEcho)
	for i, wantCold := range []bool{true, true} {
		res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: slowCode, OptDir: opt, Payload: []byte(`{}`)})
		if err != nil || res.ErrorType != "" || string(res.Payload) != `"ok"` {
			t.Fatalf("invocation %d with an extension that crashes during it: %v %s %s", i, err, res.ErrorType, res.Payload)
		}
		if res.Cold != wantCold {
			t.Errorf("invocation %d: cold %v, want %v (a sandbox whose extension crashed is not used again)", i, res.Cold, wantCold)
		}
	}
	if lines := strings.Join(sink.lines("ext-crasher"), "\n"); !strings.Contains(lines, "EXTENSION\tName: crasher\tState: Crashed\tError Type: Extension.Crash\tError: Extension crasher exited: exit status 1") {
		t.Errorf("no EXTENSION line for the crash:\n%s", lines)
	}
}

// answerThenExit answers one event, asks for the next (so its sandbox goes
// idle), then exits while idle.
const answerThenExit = `#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
H="$(mktemp)"
curl -sS -o /dev/null -LD "$H" "$API/invocation/next"
ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:space:]' | cut -d: -f2)
curl -sS -o /dev/null -X POST "$API/invocation/$ID/response" -d '"ok"'
curl -sS -o /dev/null "$API/invocation/next" &
sleep 0.5
exit 0
`

// A sandbox whose runtime ends while it is idle is destroyed by the
// reaper, not kept (with its external extensions, which PID 1 waits for)
// until an invocation finds it dead.
func TestIdleSandboxWhoseRuntimeEndedIsReaped(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{FreezeAfter: -1, IdleTimeout: time.Hour})
	opt := extensionLayer(t, "ext-logger", extLogger)
	fn := fnConfig("exit-while-idle", 1)
	res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: scriptCode(t, answerThenExit), OptDir: opt, Payload: []byte(`{}`)})
	if err != nil || res.ErrorType != "" {
		t.Fatalf("invoke: %v %+v", err, res)
	}
	if st := m.Stats(); st.Idle != 1 {
		t.Fatalf("stats %+v after the invocation, want 1 idle", st)
	}
	deadline := time.Now().Add(15 * time.Second)
	for m.Stats().Idle != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox whose runtime exited is still idle: %+v\n%s", m.Stats(), strings.Join(sink.lines(fn.Name), "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lateRegistrar waits, leaves a mark in /tmp, then registers and waits
// for events.
const lateRegistrar = `#!/bin/sh
sleep 0.3
touch /tmp/ext-registering
` + registerExtension + `register late '{"events":["SHUTDOWN"]}'
while true; do
  curl -sS -o /dev/null -H "Lambda-Extension-Identifier: $ID" "$API/event/next" || exit 0
done
`

// whenStarted answers every event with whether the extension's mark was
// in /tmp when the runtime started.
const whenStarted = `#!/bin/sh
set -eu
if [ -e /tmp/ext-registering ]; then WHEN=after; else WHEN=before; fi
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  H="$(mktemp)"
  curl -sS -o /dev/null -LD "$H" "$API/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:space:]' | cut -d: -f2)
  curl -sS -o /dev/null -X POST "$API/invocation/$ID/response" -d "\"$WHEN\""
done
`

// As on Lambda, the runtime starts once the external extensions have
// registered, not beside them.
func TestRuntimeStartsAfterExtensionsRegister(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{})
	opt := extensionLayer(t, "late", lateRegistrar)
	fn := fnConfig("ext-order", 1)
	res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: scriptCode(t, whenStarted), OptDir: opt, Payload: []byte(`{}`)})
	if err != nil || res.ErrorType != "" {
		t.Fatalf("invoke: %v %+v", err, res)
	}
	if string(res.Payload) != `"after"` {
		t.Errorf("the runtime started %s the extension began to register, want after\n%s", res.Payload, strings.Join(sink.lines(fn.Name), "\n"))
	}
}

// flusher takes a while after each INVOKE before it asks for the next
// event, as an extension that flushes telemetry does.
const flusher = `#!/bin/sh
` + registerExtension + `register flusher '{"events":["INVOKE"]}'
curl -sS -o /dev/null -H "Lambda-Extension-Identifier: $ID" "$API/event/next"
while true; do
  sleep 0.3
  echo "flusher flushed"
  curl -sS -o /dev/null -H "Lambda-Extension-Identifier: $ID" "$API/event/next"
done
`

// An idle sandbox is frozen only once its extensions are done with the
// last INVOKE: their work after the response is not put off to the next
// invocation.
func TestFreezeWaitsForExtensions(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{FreezeAfter: 20 * time.Millisecond})
	opt := extensionLayer(t, "flusher", flusher)
	fn := fnConfig("ext-flush", 1)
	res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: codeDir(t, script("echo.sh")), OptDir: opt, Payload: []byte(`{}`)})
	if err != nil || res.ErrorType != "" {
		t.Fatalf("invoke: %v %+v", err, res)
	}
	waitFor(t, "the extension's flush after the response, before the freeze", func() bool {
		return strings.Contains(strings.Join(sink.lines(fn.Name), "\n"), "flusher flushed")
	})
	waitFor(t, "the sandbox frozen once the extension is done", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		idle := m.idle[sandboxKey(fn)]
		if len(idle) != 1 {
			return false
		}
		idle[0].mu.Lock()
		defer idle[0].mu.Unlock()
		return idle[0].state == stateFrozen
	})
}

// The next invocation starts once the extensions are done with the last
// one, as on Lambda.
func TestNextInvocationWaitsForExtensions(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{FreezeAfter: -1})
	opt := extensionLayer(t, "flusher", flusher)
	fn := fnConfig("ext-next", 1)
	fn.MemoryMB = 1792 // a whole CPU: at 128 MB the runtime's own way back to /next is slower than the flush
	code := codeDir(t, script("echo.sh"))
	var ids []string
	for i := range 2 {
		res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: code, OptDir: opt, Payload: []byte(`{}`)})
		if err != nil || res.ErrorType != "" || res.Cold != (i == 0) {
			t.Fatalf("invoke %d: %v %+v", i, err, res)
		}
		ids = append(ids, res.RequestID)
	}
	lines := strings.Join(sink.lines(fn.Name), "\n")
	flushed, second := strings.Index(lines, "flusher flushed"), strings.Index(lines, "START RequestId: "+ids[1])
	if flushed < 0 || second < 0 || flushed > second {
		t.Errorf("the second invocation started before the extension was done with the first:\n%s", lines)
	}
}

// extensionLayer makes a layer folder whose /opt/extensions holds one
// executable, name, with content.
func extensionLayer(t *testing.T, name, content string) string {
	t.Helper()
	opt := t.TempDir()
	if err := os.Chmod(opt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(opt, "extensions"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(opt, "extensions", name), []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return opt
}

// scriptCode makes a code folder whose bootstrap is the script content.
func scriptCode(t *testing.T, content string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bootstrap")
	if err := os.WriteFile(bin, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return codeDir(t, bin)
}
