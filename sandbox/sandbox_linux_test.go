package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"nimbus/internal/testutil"
	"nimbus/rpc"
)

// Built once per test binary in TestMain when root, never raced by parallel
// tests: examples/hello (a static Go binary using aws-lambda-go), and the
// default image, in this binary's own temporary folder.
var (
	helloBin string
	gofnBin  string // testdata/gofn: aws-lambda-go, does what the event says
	imageDir string
	// cmd/nimbus-init, the container init every test manager uses unless
	// its Config names another.
	initHelperBin string
)

func TestMain(m *testing.M) {
	if args := os.Getenv(sealSelfChild); args != "" {
		os.Exit(runSealChild(args))
	}
	if dir := os.Getenv(ensureImageChild); dir != "" {
		if _, err := EnsureImage(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "nimbus-hello-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			helloBin = filepath.Join(dir, "bootstrap")
			cmd := exec.Command("go", "build", "-o", helloBin, "../examples/hello")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build examples/hello: %v\n%s", err, out)
				return 1
			}
			gofnBin = filepath.Join(dir, "gofn")
			cmd = exec.Command("go", "build", "-o", gofnBin, "./testdata/gofn")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build testdata/gofn: %v\n%s", err, out)
				return 1
			}
			// The sandboxes' container init, as an agent finds it
			// installed beside itself.
			initHelperBin = filepath.Join(dir, InitHelperName)
			cmd = exec.Command("go", "build", "-o", initHelperBin, "../cmd/nimbus-init")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build cmd/nimbus-init: %v\n%s", err, out)
				return 1
			}
			imageDir = filepath.Join(dir, "images")
			if _, err := EnsureImage(imageDir); err != nil {
				fmt.Fprintf(os.Stderr, "build the sandbox image: %v\n", err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// requireRoot skips tests that need real containers when not root.
func requireRoot(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
}

// memSink is a LogSink that keeps lines in memory.
type memSink struct {
	mu     sync.Mutex
	events map[string][]rpc.LogEvent
}

func (s *memSink) Append(fn string, evs ...rpc.LogEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.events == nil {
		s.events = map[string][]rpc.LogEvent{}
	}
	s.events[fn] = append(s.events[fn], evs...)
	return nil
}

func (s *memSink) lines(fn string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events[fn] {
		out = append(out, e.Line)
	}
	return out
}

// testManagers numbers the test binary's managers.
var testManagers atomic.Int64

func newTestManager(t testing.TB, cfg Config) (*Manager, *memSink) {
	t.Helper()
	requireRoot(t)
	sink := &memSink{}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(t.TempDir(), "state")
	}
	if cfg.ImageDir == "" {
		cfg.ImageDir = imageDir // built once by TestMain
	}
	if cfg.InitHelper == "" {
		cfg.InitHelper = initHelperBin // built once by TestMain
	}
	if cfg.SandboxUIDFirst == 0 {
		// A range of its own, as each agent on a host has.
		cfg.SandboxUIDFirst = defaultSandboxUIDFirst + int(testManagers.Add(1))*1024
		cfg.SandboxUIDCount = 1024
	}
	cfg.Logs = sink
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, sink
}

// codeDir makes a function code folder whose bootstrap is the given file.
func codeDir(t testing.TB, bootstrap string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func script(name string) string { return filepath.Join("testdata", name) }

func fnConfig(name string, rev uint64) *rpc.FunctionConfig {
	return &rpc.FunctionConfig{Name: name, Runtime: "provided", Handler: "bootstrap", MemoryMB: 128, TimeoutSec: 10, Revision: rev}
}

func invoke(t *testing.T, m *Manager, fn *rpc.FunctionConfig, dir, payload string) *Result {
	t.Helper()
	res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: dir, Payload: []byte(payload), Tail: true})
	if err != nil {
		t.Fatalf("invoke %s: %v", fn.Name, err)
	}
	return res
}

func TestShellRuntime(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{})
	fn := fnConfig("echo", 1)
	res := invoke(t, m, fn, codeDir(t, script("echo.sh")), `{"a":1}`)
	if res.ErrorType != "" || string(res.Payload) != `{"echo":{"a":1}}` {
		t.Fatalf("got %s (%s)", res.Payload, res.ErrorType)
	}
	if !res.Cold || res.InitDuration <= 0 {
		t.Errorf("first invoke: cold=%v init=%v, want a cold start with an Init Duration", res.Cold, res.InitDuration)
	}
	lines := sink.lines("echo")
	want := []string{"INIT_START Runtime Version: provided", "START RequestId: " + res.RequestID + " Version: $LATEST", `event: {"a":1}`, "END RequestId: " + res.RequestID}
	for i, w := range want {
		if i >= len(lines) || lines[i] != w {
			t.Fatalf("log line %d = %q, want %q (all: %q)", i, at(lines, i), w, lines)
		}
	}
	report := at(lines, 4)
	for _, part := range []string{"REPORT RequestId: " + res.RequestID, "\tDuration: ", "\tBilled Duration: ", "\tMemory Size: 128 MB", "\tMax Memory Used: ", "\tInit Duration: "} {
		if !strings.Contains(report, part) {
			t.Errorf("REPORT line %q lacks %q", report, part)
		}
	}
	if !strings.Contains(res.LogTail, "END RequestId: "+res.RequestID) {
		t.Errorf("tail %q lacks the END line", res.LogTail)
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

func TestGoRuntimeWarmReuse(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{FreezeAfter: 20 * time.Millisecond})
	fn := fnConfig("hello", 7)
	fn.Env = map[string]string{"GREETING": "hi"}
	dir := codeDir(t, helloBin)

	var first *Result
	for i := 0; i < 5; i++ {
		res := invoke(t, m, fn, dir, `{"name":"nimbus"}`)
		if res.ErrorType != "" {
			t.Fatalf("invoke %d failed: %s", i, res.Payload)
		}
		var out struct {
			Message, RequestID, FunctionName, FunctionARN string
			MemoryMB                                      int
			DeadlineInMs                                  int64
		}
		if err := json.Unmarshal(res.Payload, &out); err != nil {
			t.Fatal(err)
		}
		if out.Message != "Hello, nimbus!" || out.RequestID != res.RequestID || out.FunctionName != "hello" ||
			out.MemoryMB != 128 || !strings.HasSuffix(out.FunctionARN, ":function:hello") {
			t.Fatalf("context seen by aws-lambda-go is wrong: %+v (request %s)", out, res.RequestID)
		}
		if out.DeadlineInMs <= 0 || out.DeadlineInMs > int64(fn.TimeoutSec)*1000 {
			t.Errorf("deadline %d ms away, want within the %d s timeout", out.DeadlineInMs, fn.TimeoutSec)
		}
		if i == 0 {
			first = res
			if !res.Cold {
				t.Fatal("first invocation was not a cold start")
			}
			continue
		}
		if res.Cold || res.InitDuration != 0 {
			t.Fatalf("invocation %d: cold=%v init=%v, want warm reuse", i, res.Cold, res.InitDuration)
		}
		if i == 2 {
			// Idle long enough to be frozen; the next invoke thaws it.
			waitFor(t, "sandbox frozen", func() bool { return m.frozenCount() == 1 })
		}
	}
	if st := m.Stats(); st.Idle != 1 || st.Busy != 0 {
		t.Fatalf("stats %+v, want one idle sandbox reused throughout", st)
	}
	found := false
	for _, l := range sink.lines("hello") {
		if strings.Contains(l, "greeting nimbus") {
			found = true
		}
	}
	if !found || first == nil {
		t.Fatalf("the function's log line is missing: %q", sink.lines("hello"))
	}
}

// frozenCount counts the manager's frozen sandboxes.
func (m *Manager) frozenCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for sb := range m.all {
		sb.mu.Lock()
		if sb.state == stateFrozen && readFile(filepath.Join(sb.cgroups.freezer, "freezer.state")) != "THAWED" {
			n++
		}
		sb.mu.Unlock()
	}
	return n
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{})
	cases := []struct {
		name, script string
		timeout      int
		errType      string
		msg          string
		status       string
	}{
		{"fn-error", "error.sh", 10, "MyError", "something broke", ""},
		{"fn-crash", "crash.sh", 10, "Runtime.ExitError", "Runtime exited with error: exit status 3", "error"},
		{"fn-oom", "oom.sh", 30, "Runtime.OutOfMemory", "Runtime exited with error: signal: killed", "error"},
		{"fn-timeout", "sleep.sh", 1, "Sandbox.Timedout", "Task timed out after 1.00 seconds", "timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fn := fnConfig(c.name, 1)
			fn.TimeoutSec = c.timeout
			dir := codeDir(t, script(c.script))
			res := invoke(t, m, fn, dir, `{}`)
			var p rpc.FunctionErrorPayload
			if err := json.Unmarshal(res.Payload, &p); err != nil {
				t.Fatalf("error payload %q: %v", res.Payload, err)
			}
			if res.ErrorType != c.errType || p.ErrorType != c.errType || !strings.Contains(p.ErrorMessage, c.msg) {
				t.Fatalf("got %s (type %q), want type %q and message containing %q", res.Payload, res.ErrorType, c.errType, c.msg)
			}
			if c.status != "" {
				report := ""
				for _, l := range sink.lines(c.name) {
					if strings.HasPrefix(l, "REPORT ") {
						report = l
					}
				}
				if !strings.Contains(report, "Status: "+c.status) {
					t.Errorf("REPORT %q lacks Status: %s", report, c.status)
				}
				// The broken sandbox is gone and the next invocation gets a
				// fresh one (which fails the same way, but runs).
				waitFor(t, "broken sandbox destroyed", func() bool { return !m.HasWarm(fn) })
				res2 := invoke(t, m, fn, dir, `{}`)
				if !res2.Cold {
					t.Errorf("after a %s the next invocation reused the broken sandbox", c.status)
				}
			} else {
				res2 := invoke(t, m, fn, dir, `{}`)
				if res2.Cold || res2.ErrorType != c.errType {
					t.Errorf("a handled error should keep the sandbox warm: cold=%v type=%q", res2.Cold, res2.ErrorType)
				}
			}
		})
	}
	if !strings.Contains(strings.Join(sink.lines("fn-crash"), "\n"), "about to crash") {
		t.Errorf("the crashing function's last line was lost: %q", sink.lines("fn-crash"))
	}
}

func TestQuotasApplied(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{FreezeAfter: -1})
	for _, mem := range []int{128, 1792, 3008} {
		fn := fnConfig("quota"+strconv.Itoa(mem), 1)
		fn.MemoryMB = mem
		res := invoke(t, m, fn, codeDir(t, script("echo.sh")), `1`)
		if res.ErrorType != "" {
			t.Fatalf("invoke: %s", res.Payload)
		}
		sb := m.idle[sandboxKey(fn)][0]
		if got := readFile(filepath.Join(sb.cgroups.memory, "memory.limit_in_bytes")); got != strconv.Itoa(mem<<20) {
			t.Errorf("%d MB: memory.limit_in_bytes = %s", mem, got)
		}
		wantQuota := strconv.FormatInt(int64(mem)*100000/1792, 10)
		if got := readFile(filepath.Join(sb.cgroups.cpu, "cpu.cfs_quota_us")); got != wantQuota {
			t.Errorf("%d MB: cpu.cfs_quota_us = %s, want %s", mem, got, wantQuota)
		}
		if got := readFile(filepath.Join(sb.cgroups.cpu, "cpu.cfs_period_us")); got != "100000" {
			t.Errorf("cpu.cfs_period_us = %s", got)
		}
		st, _ := sb.ctr.State()
		if got := readFile(filepath.Join(st.CgroupPaths["pids"], "pids.max")); got != "1024" {
			t.Errorf("pids.max = %s", got)
		}
	}
}

func TestIsolation(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{})
	// A server on the host's loopback that the sandbox must not reach.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.0 200 OK\r\n\r\nreached"))
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	fn := fnConfig("probe", 1)
	fn.TimeoutSec = 20 // a dozen programs in a row, on a loaded machine
	res := invoke(t, m, fn, codeDir(t, script("probe.sh")), strconv.Itoa(port))
	if res.ErrorType != "" {
		t.Fatalf("probe failed: %s", res.Payload)
	}
	var p struct {
		UID           int    `json:"uid"`
		RootWritable  bool   `json:"root_writable"`
		TaskWritable  bool   `json:"task_writable"`
		TmpWritable   bool   `json:"tmp_writable"`
		Pids          int    `json:"pids"`
		Ifaces        string `json:"ifaces"`
		Routes        int    `json:"routes"`
		HostReachable bool   `json:"host_reachable"`
		CapEff        string `json:"cap_eff"`
		NoNewPrivs    int    `json:"no_new_privs"`
		TmpKB         int    `json:"tmp_kb"`
		MemKB         int    `json:"mem_kb"`
		CPUs          int    `json:"cpus"`
		Uptime        int    `json:"uptime"`
	}
	if err := json.Unmarshal(res.Payload, &p); err != nil {
		t.Fatalf("probe answered %q: %v", res.Payload, err)
	}
	if p.UID != sandboxUID {
		t.Errorf("runs as uid %d, want %d", p.UID, sandboxUID)
	}
	if p.RootWritable || p.TaskWritable || !p.TmpWritable {
		t.Errorf("writable: root=%v /var/task=%v /tmp=%v, want false false true", p.RootWritable, p.TaskWritable, p.TmpWritable)
	}
	if p.Pids > 10 {
		t.Errorf("sees %d processes: the host's are visible", p.Pids)
	}
	if p.Ifaces != "lo," || p.Routes != 0 || p.HostReachable {
		t.Errorf("network: ifaces %q routes %d host reachable %v, want loopback only", p.Ifaces, p.Routes, p.HostReachable)
	}
	if p.CapEff != "0000000000000000" || p.NoNewPrivs != 1 {
		t.Errorf("CapEff %s NoNewPrivs %d, want none and 1", p.CapEff, p.NoNewPrivs)
	}
	if p.TmpKB < 512*1024 || p.TmpKB > (512+tmpExtraMB(512))*1024 {
		t.Errorf("/tmp is %d KB, want 512 MB (up to %d MB more for the filesystem)", p.TmpKB, tmpExtraMB(512))
	}
	// /proc's views of memory, CPUs and uptime are the sandbox's (lxcfs),
	// where the machine has it; CI's must.
	if m.procViews == nil {
		if _, err := os.Stat("/dev/fuse"); err == nil && os.Getenv("CI") != "" {
			t.Error("no lxcfs for the sandboxes' /proc views on a machine with /dev/fuse (scripts/install-deps.sh installs it)")
		}
		t.Logf("no lxcfs: /proc/meminfo shows %d kB", p.MemKB)
		return
	}
	t.Logf("/proc shows %d kB, %d CPUs, %d s up", p.MemKB, p.CPUs, p.Uptime)
	hostUp, _ := os.ReadFile("/proc/uptime")
	var hostUptime float64
	fmt.Sscanf(string(hostUp), "%f", &hostUptime)
	if p.MemKB != fn.MemoryMB*1024 || p.CPUs != 1 || (hostUptime > 120 && float64(p.Uptime) > hostUptime-60) {
		t.Errorf("/proc shows %d kB of memory, %d CPUs and %d s of uptime (host: %.0f s); want %d kB, 1 CPU and the sandbox's own",
			p.MemKB, p.CPUs, p.Uptime, hostUptime, fn.MemoryMB*1024)
	}
}

func TestRetireAndIdleExpiry(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{IdleTimeout: 2 * time.Second})
	dir := codeDir(t, script("echo.sh"))
	v1 := fnConfig("rev", 1)
	invoke(t, m, v1, dir, `1`)
	if !m.HasWarm(v1) {
		t.Fatal("no warm sandbox after an invocation")
	}
	v2 := fnConfig("rev", 2)
	m.Retire("rev", 2)
	if m.HasWarm(v1) {
		t.Fatal("old revision still warm after Retire")
	}
	if res := invoke(t, m, v2, dir, `2`); !res.Cold {
		t.Fatal("new revision reused an old sandbox")
	}
	waitFor(t, "idle sandbox expired", func() bool { return m.Stats() == Stats{} })
}

func TestConcurrentInvocations(t *testing.T) {
	t.Parallel()
	m, _ := newTestManager(t, Config{})
	fn := fnConfig("conc", 1)
	dir := codeDir(t, helloBin)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				name := fmt.Sprintf("g%d-%d", g, i)
				res, err := m.Invoke(context.Background(), &Request{Function: fn, CodeDir: dir, Payload: []byte(`{"name":"` + name + `"}`)})
				if err != nil {
					errs <- err.Error()
					return
				}
				if !strings.Contains(string(res.Payload), "Hello, "+name+"!") {
					errs <- fmt.Sprintf("%s got %s", name, res.Payload)
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if st := m.Stats(); st.Busy != 0 || st.Idle < 1 || st.Idle > 4 {
		t.Errorf("stats %+v: want between 1 and 4 idle sandboxes", st)
	}
}

// TestPreadInt reads the number of an open file whole, again after it
// changed (as a cgroup's counters do), and 0 for what is not a number or no
// file.
func TestPreadInt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "counter")
	if err := os.WriteFile(path, []byte("123456789\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := preadInt(f); got != 123456789 {
		t.Fatalf("preadInt = %d, want 123456789", got)
	}
	if err := os.WriteFile(path, []byte("42\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := preadInt(f); got != 42 {
		t.Fatalf("after a change, preadInt = %d, want 42", got)
	}
	if err := os.WriteFile(path, []byte("max\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := preadInt(f); got != 0 {
		t.Fatalf("preadInt of %q = %d, want 0", "max", got)
	}
	if got := preadInt(nil); got != 0 {
		t.Fatalf("preadInt(nil) = %d, want 0", got)
	}
}

// TestInitOneProc: libcontainer's init is started with one P unless the
// operator set GOMAXPROCS, which is then left as it is.
func TestInitOneProc(t *testing.T) {
	t.Setenv("GOMAXPROCS", "3")
	initOneProc()
	if got := os.Getenv("GOMAXPROCS"); got != "3" {
		t.Fatalf("GOMAXPROCS=%q after initOneProc, want the operator's 3", got)
	}
	os.Unsetenv("GOMAXPROCS") // t.Setenv restores it after
	initOneProc()
	if got := os.Getenv("GOMAXPROCS"); got != "1" {
		t.Fatalf("GOMAXPROCS=%q after initOneProc, want 1", got)
	}
}
