package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nimbus/rpc"
)

// Behaviours of Lambda that real functions depend on (issue "Sandbox
// fidelity"), each on real containers.

// linesOf returns the lines attributed to reqID.
func (s *memSink) linesOf(fn, reqID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events[fn] {
		if e.RequestID == reqID {
			out = append(out, e.Line)
		}
	}
	return out
}

// An aws-lambda-go panic reaches the caller as aws-lambda-go wrote it
// (stackTrace frames and all), and the runtime's exit right after does not
// fail the next, unrelated request: a sandbox is idle only once its runtime
// waits in /next, and one that exits instead is replaced.
func TestGoPanicPassedThroughAndNextRequestServed(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{})
	fn := fnConfig("gopanic", 1)
	dir := codeDir(t, gofnBin)

	res := invoke(t, m, fn, dir, `{"do":"panic"}`)
	var p struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
		StackTrace   []struct {
			Path  string `json:"path"`
			Line  int    `json:"line"`
			Label string `json:"label"`
		} `json:"stackTrace"`
	}
	if err := json.Unmarshal(res.Payload, &p); err != nil {
		t.Fatalf("panic payload %s: %v", res.Payload, err)
	}
	if p.ErrorMessage != "boom" || p.ErrorType == "" || p.ErrorType == rpc.ErrTypeUnknown || len(p.StackTrace) == 0 || p.StackTrace[0].Label == "" {
		t.Fatalf("panic reached the caller as %s, want aws-lambda-go's body with its stack frames", res.Payload)
	}
	if res.ErrorType != p.ErrorType {
		t.Errorf("result error type %q, body says %q", res.ErrorType, p.ErrorType)
	}
	panicID := res.RequestID
	// The runtime exited after answering: the next request gets a new
	// sandbox, and succeeds.
	for i := 0; i < 3; i++ {
		next := invoke(t, m, fn, dir, `{"do":"hello"}`)
		if next.ErrorType != "" || !strings.Contains(string(next.Payload), next.RequestID) {
			t.Fatalf("request %d after the panic: %s (%s)", i, next.Payload, next.ErrorType)
		}
		for _, l := range sink.linesOf("gopanic", next.RequestID) {
			if strings.Contains(l, panicID) || strings.Contains(l, "panic") {
				t.Errorf("the panicking request's line %q is filed under %s", l, next.RequestID)
			}
		}
	}
	exitLine := false
	for _, l := range sink.linesOf("gopanic", panicID) {
		if strings.HasPrefix(l, "RequestId: "+panicID+" Error: Runtime exited with error:") {
			exitLine = true
		}
	}
	if !exitLine {
		t.Errorf("no exit line filed under the panicking request: %q", sink.linesOf("gopanic", panicID))
	}
}

// Lines a runtime writes after answering and before its next /next belong
// to the request that just answered, before its END line, and the sandbox
// is not frozen until then.
func TestLinesAfterResponseBelongToTheirRequest(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{FreezeAfter: time.Millisecond})
	fn := fnConfig("late", 1)
	dir := codeDir(t, script("late.sh"))
	for i := 0; i < 3; i++ {
		res := invoke(t, m, fn, dir, `{"n":1}`)
		if res.ErrorType != "" {
			t.Fatalf("invoke: %s", res.Payload)
		}
		lines := sink.linesOf("late", res.RequestID)
		late, end := -1, -1
		for j, l := range lines {
			switch l {
			case "late line of " + res.RequestID:
				late = j
			case "END RequestId: " + res.RequestID:
				end = j
			}
		}
		if late < 0 || end < 0 || late > end {
			t.Fatalf("invocation %d: the late line is not before END under its own request: %q", i, lines)
		}
		if !strings.Contains(res.LogTail, "late line of "+res.RequestID) || !strings.HasSuffix(res.LogTail, "\n") {
			t.Errorf("tail %q lacks the late line or its final newline", res.LogTail)
		}
	}
}

// An init over the cap is retried within the first invocation under the
// function's timeout; a second overrun is Sandbox.Timedout.
func TestInitTimeoutRetriedWithinTheInvocation(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{InitTimeout: 500 * time.Millisecond})
	dir := codeDir(t, script("slowinit.sh"))

	ok := fnConfig("slowinit-ok", 1)
	ok.TimeoutSec = 30
	ok.Env = map[string]string{"INIT_SLEEP": "1"}
	res := invoke(t, m, ok, dir, `{"x":1}`)
	if res.ErrorType != "" || string(res.Payload) != `{"x":1}` || !res.Cold {
		t.Fatalf("retried init: %s (%s), cold %v", res.Payload, res.ErrorType, res.Cold)
	}
	all := strings.Join(sink.lines("slowinit-ok"), "\n")
	if !strings.Contains(all, "INIT_REPORT Init Duration: ") || !strings.Contains(all, "Status: timeout") || strings.Count(all, "init starts") != 2 {
		t.Errorf("the first init's timeout and both inits' lines should be logged: %s", all)
	}
	if again := invoke(t, m, ok, dir, `2`); again.Cold || again.ErrorType != "" {
		t.Errorf("after a retried init the sandbox should be warm: cold=%v %s", again.Cold, again.Payload)
	}

	never := fnConfig("slowinit-never", 1)
	never.TimeoutSec = 1
	never.Env = map[string]string{"INIT_SLEEP": "30"}
	res = invoke(t, m, never, dir, `{}`)
	if res.ErrorType != rpc.ErrTypeTimedout || !strings.Contains(string(res.Payload), "Task timed out after 1.00 seconds") {
		t.Fatalf("second init overrun: %s (%s), want Sandbox.Timedout", res.Payload, res.ErrorType)
	}
	// A normal invocation right after.
	if r := invoke(t, m, ok, dir, `3`); r.ErrorType != "" {
		t.Fatalf("normal invocation after init timeouts: %s", r.Payload)
	}
}

// An init error fails the invocation with that error at once (the runtime
// lingers; it is not waited for), with the init's lines in the tail and
// REPORT saying Status: error.
func TestInitErrorFailsTheInvocation(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{InitTimeout: time.Minute})
	fn := fnConfig("initerr", 1)
	res := invoke(t, m, fn, codeDir(t, script("initerror.sh")), `{}`)
	if res.ErrorType != "ConfigError" || !strings.Contains(string(res.Payload), "missing setting") {
		t.Fatalf("got %s (%s), want the init error", res.Payload, res.ErrorType)
	}
	if !strings.Contains(res.LogTail, "init fails") {
		t.Errorf("tail %q lacks the init's line", res.LogTail)
	}
	report := ""
	for _, l := range sink.lines("initerr") {
		if strings.HasPrefix(l, "REPORT ") {
			report = l
		}
	}
	if !strings.Contains(report, "Status: error\tError Type: ConfigError") {
		t.Errorf("REPORT %q lacks Status: error with the error type", report)
	}
	if r := invoke(t, m, fnConfig("echo-after-initerr", 1), codeDir(t, script("echo.sh")), `1`); r.ErrorType != "" {
		t.Fatalf("normal invocation after an init error: %s", r.Payload)
	}
}

// TZ, PATH, LD_LIBRARY_PATH and LANG are defaults a function may override;
// the reserved variables are the platform's whatever the function says.
func TestUserEnvironmentWins(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{})
	fn := fnConfig("envwins", 1)
	fn.Env = map[string]string{
		"TZ": "Europe/Paris", "PATH": "/var/task/bin:/usr/bin:/bin", "LD_LIBRARY_PATH": "/var/task/lib",
		"LANG": "C.UTF-8", "AWS_LAMBDA_FUNCTION_NAME": "spoofed", "MY_KEY": "mine",
	}
	keys := []string{"TZ", "PATH", "LD_LIBRARY_PATH", "LANG", "AWS_LAMBDA_FUNCTION_NAME", "MY_KEY", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API"}
	payload, _ := json.Marshal(map[string]any{"do": "env", "env": keys})
	res := invoke(t, m, fn, codeDir(t, gofnBin), string(payload))
	var got map[string]string
	if err := json.Unmarshal(res.Payload, &got); err != nil || res.ErrorType != "" {
		t.Fatalf("env: %s (%v)", res.Payload, err)
	}
	for _, k := range []string{"TZ", "PATH", "LD_LIBRARY_PATH", "LANG", "MY_KEY"} {
		if got[k] != fn.Env[k] {
			t.Errorf("%s = %q, want the function's %q", k, got[k], fn.Env[k])
		}
	}
	if got["AWS_LAMBDA_FUNCTION_NAME"] != "envwins" || got["AWS_LAMBDA_RUNTIME_API"] != RuntimeAPIAddr {
		t.Errorf("reserved variables overridden: %v", got)
	}
	if !regexp.MustCompile(`^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}$`).MatchString(got["AWS_LAMBDA_LOG_STREAM_NAME"]) {
		t.Errorf("log stream name %q is not Lambda's form", got["AWS_LAMBDA_LOG_STREAM_NAME"])
	}
	// Without overrides, the defaults.
	plain := fnConfig("envdefaults", 1)
	res = invoke(t, m, plain, codeDir(t, gofnBin), string(payload))
	got = nil
	_ = json.Unmarshal(res.Payload, &got)
	if got["TZ"] != ":UTC" || got["LANG"] != "en_US.UTF-8" || !strings.Contains(got["PATH"], "/usr/bin") {
		t.Errorf("defaults: %v", got)
	}
}

// PID 1 is our init: it reaps orphans (no zombies pile up), forwards
// SIGTERM to a runtime that traps it, and the runtime's own exit status
// still reaches the caller.
func TestPID1ReapsAndForwardsSignals(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{FreezeAfter: -1})
	fn := fnConfig("orphans", 1)
	fn.MemoryMB = 512
	dir := codeDir(t, script("orphans.sh"))
	var p struct{ Zombies, Ppid int }
	// Every invocation leaves ten orphans; with a reaping PID 1 the count
	// of zombies seen falls back to zero instead of growing by ten.
	zeroSeen := false
	for i := 0; i < 8 && !zeroSeen; i++ {
		res := invoke(t, m, fn, dir, `{}`)
		if err := json.Unmarshal(res.Payload, &p); err != nil || res.ErrorType != "" {
			t.Fatalf("orphans: %s", res.Payload)
		}
		if p.Ppid != 1 {
			t.Fatalf("the runtime's parent is pid %d, want our init as 1", p.Ppid)
		}
		if p.Zombies > 10 {
			t.Fatalf("invocation %d sees %d zombies: orphans are not reaped", i, p.Zombies)
		}
		zeroSeen = p.Zombies == 0
	}
	if !zeroSeen {
		t.Errorf("zombies never went back to zero (last %d)", p.Zombies)
	}
	// aws-lambda-go sees our init as its parent; SIGTERM sent to the
	// sandbox reaches it, and its own exit status is the sandbox's.
	gofn := fnConfig("ppid", 1)
	res := invoke(t, m, gofn, codeDir(t, gofnBin), `{"do":"ppid"}`)
	var q struct {
		Ppid int
		Init string
	}
	if err := json.Unmarshal(res.Payload, &q); err != nil || q.Ppid != 1 || !strings.Contains(q.Init, initArg) {
		t.Fatalf("ppid: %s", res.Payload)
	}
	m.mu.Lock()
	sb := m.idle[sandboxKey(gofn)][0]
	m.mu.Unlock()
	if err := sb.ctr.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGTERM forwarded to the runtime", func() bool {
		return strings.Contains(strings.Join(sink.lines("ppid"), "\n"), "runtime got SIGTERM")
	})
	<-sb.exited
	if d := sb.exitDescription(); d != "exit status 0" {
		t.Errorf("exit described as %q, want the runtime's own exit status 0", d)
	}

	// A signal death is reported as the runtime's.
	crash := invoke(t, m, fnConfig("segv", 1), codeDir(t, script("segv.sh")), `{}`)
	if crash.ErrorType != rpc.ErrTypeExit || !strings.Contains(string(crash.Payload), "Runtime exited with error: signal: segmentation fault") {
		t.Errorf("a runtime killed by SIGSEGV: %s", crash.Payload)
	}
}

// A payload that is not JSON is refused before any sandbox starts, with
// Lambda's exception; a JSON one runs right after.
func TestNonJSONPayloadRefused(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{})
	fn := fnConfig("nonjson", 1)
	dir := codeDir(t, script("echo.sh"))
	for _, p := range []string{"not json", `{"a":`, "\xff"} {
		_, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: dir, Payload: []byte(p)})
		if !errors.Is(err, rpc.ErrInvalidRequestContent) {
			t.Errorf("payload %q: %v, want InvalidRequestContentException", p, err)
		}
	}
	if st := m.Stats(); st != (Stats{}) {
		t.Errorf("a refused payload started a sandbox: %+v", st)
	}
	if res := invoke(t, m, fn, dir, `"json"`); res.ErrorType != "" || string(res.Payload) != `{"echo":"json"}` {
		t.Fatalf("a JSON payload after: %s", res.Payload)
	}
}

// The sandbox sees its own cgroups, read-only, through a cgroup namespace:
// a 256 MB function reads a 256 MB memory limit where the JVM and Node
// look, and its cgroup paths are its own root, not the host's.
func TestOwnCgroupsVisible(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{})
	fn := fnConfig("cgroupview", 1)
	fn.MemoryMB = 256
	res := invoke(t, m, fn, codeDir(t, gofnBin), `{"do":"cgroup"}`)
	var p struct {
		MemoryLimit string `json:"memory_limit"`
		CPUQuota    string `json:"cpu_quota"`
		Self        string `json:"self"`
	}
	if err := json.Unmarshal(res.Payload, &p); err != nil || res.ErrorType != "" {
		t.Fatalf("cgroup: %s", res.Payload)
	}
	if p.MemoryLimit != strconv.Itoa(256<<20) {
		t.Errorf("memory.limit_in_bytes inside = %q, want %d", p.MemoryLimit, 256<<20)
	}
	if p.CPUQuota != strconv.FormatInt(cpuQuotaUs(256), 10) {
		t.Errorf("cpu.cfs_quota_us inside = %q, want %d", p.CPUQuota, cpuQuotaUs(256))
	}
	if strings.Contains(p.Self, m.cfg.CgroupParent) {
		t.Errorf("/proc/self/cgroup shows host paths: %q", p.Self)
	}
}

// Max Memory Used counts the runtime's resident memory, file-backed pages
// (its binary) included, not only what the memory cgroup was charged: a Go
// function's binary is in the page cache of whoever read it first.
func TestMaxMemoryUsedCountsResidentPages(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{})
	fn := fnConfig("hwm", 1)
	res := invoke(t, m, fn, codeDir(t, gofnBin), `{"do":"hwm"}`)
	var p struct {
		HWM int `json:"hwm_kb"`
	}
	if err := json.Unmarshal(res.Payload, &p); err != nil || p.HWM == 0 {
		t.Fatalf("payload %s: %v", res.Payload, err)
	}
	if res.MaxMemoryMB*1024 < p.HWM {
		t.Fatalf("Max Memory Used %d MB, but the runtime alone had %d kB resident", res.MaxMemoryMB, p.HWM)
	}
	if res.MaxMemoryMB > fn.MemoryMB {
		t.Fatalf("Max Memory Used %d MB over the memory size %d MB", res.MaxMemoryMB, fn.MemoryMB)
	}
	if !strings.Contains(res.LogTail, "Max Memory Used: "+strconv.Itoa(res.MaxMemoryMB)+" MB") {
		t.Errorf("REPORT does not say %d MB: %s", res.MaxMemoryMB, res.LogTail)
	}
}
