package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"nimbus/bundle"
	"nimbus/rpc"
)

// The cluster's settings: its own folder, names and network, so that it
// never collides with a developer's scripts/cluster (10.213.0, "nimbus").
const (
	clusterPrefix = "nbe2e"
	clusterNet    = "10.213.50"
	clusterSize   = 3
	agentFlags    = "--account-concurrency 20 --async-lease-margin 3s --async-retry-base 1s" // unreserved minimum: 2; async re-dispatch within seconds
)

// The functions the tests share.
const (
	helloFn = "hello"
	heldFn  = "held"
	// heldReserved is held's reserved concurrency, restored by the tests
	// that change it.
	heldReserved = 2
)

// cl is the cluster of this run, nil when the tests cannot run (skipReason
// or setupErr says why).
var (
	cl         *cluster
	skipReason string
	setupErr   error
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if reason := prerequisites(); reason != "" {
		skipReason = reason
		return m.Run()
	}
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	// One e2e run at a time on this machine: the cluster's folder, names
	// and network are fixed, so that a run that died (a panic, go test's
	// timeout) leaves nothing the next run cannot find and take down.
	unlock, err := lockRun(filepath.Join(os.TempDir(), "nimbus-e2e.lock"), 5*time.Minute)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer unlock()
	work, err := os.MkdirTemp("", "nimbus-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(work)

	c := &cluster{
		root:   root,
		dir:    filepath.Join(os.TempDir(), "nimbus-e2e"),
		bin:    filepath.Join(work, "nimbus"),
		work:   work,
		addrs:  map[string]string{},
		client: map[string]*rpc.Client{},
	}
	for i := 1; i <= clusterSize; i++ {
		c.nodes = append(c.nodes, fmt.Sprintf("n%d", i))
	}
	// Leftovers of a run that died: down is harmless when there are none.
	if out, err := c.script("down"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: scripts/cluster down (leftovers): %v\n%s", err, out)
	}
	setupErr = c.setup()
	if setupErr == nil {
		cl = c
	} else {
		fmt.Fprintln(os.Stderr, "e2e: cluster setup failed:", setupErr)
	}
	code := m.Run()
	c.closeClients()
	out, err := c.script("down")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: scripts/cluster down: %v\n%s", err, out)
		if code == 0 {
			code = 1
		}
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: the agents' logs: %s/n*/agent.log\n", c.dir)
	}
	return code
}

// prerequisites says why the tests cannot run here, or "".
func prerequisites() string {
	if os.Geteuid() != 0 {
		return "the e2e tests need root: network namespaces, and the agents run containers"
	}
	for _, tool := range []string{"ip", "nsenter", "flock", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("the e2e tests need %s (iproute2, util-linux, coreutils): %v", tool, err)
		}
	}
	return ""
}

// lockRun takes an exclusive flock on path, waiting up to wait.
func lockRun(path string, wait time.Duration) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s (another e2e run?): %w", path, err)
		}
		time.Sleep(time.Second)
	}
}

// cluster is the running cluster and the clients of its nodes.
type cluster struct {
	root  string // the repository
	dir   string // NIMBUS_CLUSTER_DIR
	bin   string // the nimbus binary built for this run
	work  string // this run's temporary folder: the binary and the functions
	nodes []string
	addrs map[string]string // node -> rpc address, from `scripts/cluster addr`

	helloZip, heldZip []byte

	mu     sync.Mutex
	client map[string]*rpc.Client
}

// setup builds the binary and the functions and starts the cluster.
func (c *cluster) setup() error {
	build := func(env []string, args ...string) error {
		cmd := exec.Command("go", args...)
		cmd.Dir = c.root
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	// nimbus and, beside it, the sandboxes' container init nimbus-init.
	if err := build(nil, "build", "-o", filepath.Dir(c.bin)+"/", "./cmd/..."); err != nil {
		return err
	}
	helloDir := filepath.Join(c.work, "hello")
	if err := build([]string{"CGO_ENABLED=0"}, "build", "-o", filepath.Join(helloDir, "bootstrap"), "./examples/hello"); err != nil {
		return err
	}
	heldDir := filepath.Join(c.work, "held")
	script, err := os.ReadFile("testdata/held.sh")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(heldDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(heldDir, "bootstrap"), script, 0o755); err != nil {
		return err
	}
	if c.helloZip, err = bundle.ZipDir(helloDir); err != nil {
		return err
	}
	if c.heldZip, err = bundle.ZipDir(heldDir); err != nil {
		return err
	}

	if out, err := c.script("up", fmt.Sprint(clusterSize)); err != nil {
		return fmt.Errorf("scripts/cluster up %d: %v\n%s", clusterSize, err, out)
	}
	for _, n := range c.nodes {
		out, err := c.script("addr", n)
		if err != nil {
			return fmt.Errorf("scripts/cluster addr %s: %v\n%s", n, err, out)
		}
		c.addrs[n] = strings.TrimSpace(out)
	}
	return nil
}

// script runs scripts/cluster with this run's environment.
func (c *cluster) script(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.root, "scripts", "cluster"), args...)
	cmd.Dir = c.root
	cmd.Env = append(os.Environ(),
		"NIMBUS_BIN="+c.bin,
		"NIMBUS_CLUSTER_DIR="+c.dir,
		"NIMBUS_CLUSTER_PREFIX="+clusterPrefix,
		"NIMBUS_CLUSTER_NET="+clusterNet,
		"NIMBUS_AGENT_FLAGS="+agentFlags,
		// A loaded machine (the other packages' tests run beside these)
		// can take half a minute to start three agents and their images.
		"NIMBUS_CLUSTER_WAIT=90",
	)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// do runs scripts/cluster and fails the test if it fails.
func (c *cluster) do(t testing.TB, args ...string) {
	t.Helper()
	if out, err := c.script(args...); err != nil {
		t.Fatalf("scripts/cluster %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// useCluster returns the cluster, or skips (not root) or fails (setup
// failed) the test; then waits until the cluster is healthy and arranges
// that the test leaves it so.
func useCluster(t *testing.T) *cluster {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if cl == nil {
		t.Fatalf("no cluster: %v", setupErr)
	}
	t.Cleanup(func() { cl.restore(t) })
	cl.waitHealthy(t)
	return cl
}

// nodeStatus is a line of `scripts/cluster status`.
type nodeStatus struct {
	running     bool
	partitioned bool
}

func (c *cluster) status(t testing.TB) map[string]nodeStatus {
	t.Helper()
	out, err := c.script("status")
	if err != nil {
		t.Fatalf("scripts/cluster status: %v\n%s", err, out)
	}
	st := map[string]nodeStatus{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			t.Fatalf("scripts/cluster status: unexpected line %q", line)
		}
		st[f[0]] = nodeStatus{running: f[2] != "stopped", partitioned: f[3] == "partitioned"}
	}
	return st
}

// restore heals every partitioned node, restarts every stopped one and
// waits until the cluster is healthy: what each test leaves behind.
func (c *cluster) restore(t testing.TB) {
	t.Helper()
	st := c.status(t)
	for _, n := range c.nodes {
		if st[n].partitioned {
			t.Logf("cleanup: healing %s", n)
			c.do(t, "heal", n)
		}
		if !st[n].running {
			t.Logf("cleanup: restarting %s", n)
			c.do(t, "restart", n)
		}
	}
	c.waitHealthy(t)
}

// waitHealthy waits until every node runs and is connected, all agree on
// one leader, every node is a voter and has applied what the leader had
// committed, and the leader sees every member alive. It returns the leader.
func (c *cluster) waitHealthy(t testing.TB) string {
	t.Helper()
	st := c.status(t)
	for _, n := range c.nodes {
		if !st[n].running || st[n].partitioned {
			t.Fatalf("cluster not whole: %s %+v", n, st[n])
		}
	}
	var leader string
	waitFor(t, "a healthy cluster (one leader, 3 voters caught up, all members alive)", 90*time.Second, func() (bool, string) {
		var ok bool
		var why string
		leader, ok, why = c.healthy()
		return ok, why
	})
	return leader
}

func (c *cluster) healthy() (string, bool, string) {
	views := map[string]*rpc.RaftResponse{}
	for _, n := range c.nodes {
		v, err := c.raft(n)
		if err != nil {
			return "", false, fmt.Sprintf("%s: cluster raft: %v", n, err)
		}
		views[n] = v
	}
	leader := views[c.nodes[0]].Leader
	lv := views[leader]
	if lv == nil || lv.State != "Leader" {
		return "", false, fmt.Sprintf("%s reports leader %q, which does not lead", c.nodes[0], leader)
	}
	for _, n := range c.nodes {
		v := views[n]
		if v.Leader != leader {
			return "", false, fmt.Sprintf("%s follows %q, %s follows %q", n, v.Leader, c.nodes[0], leader)
		}
		if n != leader && v.State != "Follower" {
			return "", false, fmt.Sprintf("%s is %s", n, v.State)
		}
		if !isVoter(lv, n) || !isVoter(v, n) {
			return "", false, fmt.Sprintf("%s is not a voter in the leader's configuration %+v or its own %+v", n, lv.Servers, v.Servers)
		}
		if v.AppliedIndex < lv.CommitIndex {
			return "", false, fmt.Sprintf("%s applied %d < leader's commit %d", n, v.AppliedIndex, lv.CommitIndex)
		}
	}
	ms, err := c.members(leader)
	if err != nil {
		return "", false, fmt.Sprintf("cluster members via %s: %v", leader, err)
	}
	for _, n := range c.nodes {
		m := findMember(ms, n)
		if m == nil || m.Status != rpc.MemberAlive {
			return "", false, fmt.Sprintf("members: %s is %+v", n, m)
		}
	}
	return leader, true, ""
}

func isVoter(v *rpc.RaftResponse, node string) bool {
	for _, s := range v.Servers {
		if s.ID == node && s.Suffrage == "Voter" {
			return true
		}
	}
	return false
}

func findMember(ms *rpc.MembersResponse, node string) *rpc.Member {
	for i := range ms.Members {
		if ms.Members[i].Name == node {
			return &ms.Members[i]
		}
	}
	return nil
}

// others returns the nodes but the ones given.
func (c *cluster) others(except ...string) []string {
	var out []string
	for _, n := range c.nodes {
		skip := false
		for _, e := range except {
			skip = skip || n == e
		}
		if !skip {
			out = append(out, n)
		}
	}
	return out
}

// rpcClient returns the (shared, multiplexed) client of a node. A client
// redials on its own after its connection broke.
func (c *cluster) rpcClient(ctx context.Context, node string) (*rpc.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.client[node]; ok {
		return cl, nil
	}
	addr, ok := c.addrs[node]
	if !ok {
		return nil, fmt.Errorf("no node %q", node)
	}
	cl, err := rpc.Dial(ctx, addr, rpc.ClientOptions{DialTimeout: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	c.client[node] = cl
	return cl, nil
}

func (c *cluster) closeClients() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.client {
		cl.Close()
	}
	c.client = map[string]*rpc.Client{}
}

// call calls method on node within timeout.
func (c *cluster) call(node string, timeout time.Duration, method string, req, resp any) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cl, err := c.rpcClient(ctx, node)
	if err != nil {
		return err
	}
	return cl.Call(ctx, method, req, resp)
}

// raft is the node's own view of Raft.
func (c *cluster) raft(node string) (*rpc.RaftResponse, error) {
	var v rpc.RaftResponse
	if err := c.call(node, 2*time.Second, rpc.MethodClusterRaft, &rpc.RaftRequest{}, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// members is `cluster members` through node (the leader's view when node
// reaches one).
func (c *cluster) members(node string) (*rpc.MembersResponse, error) {
	var v rpc.MembersResponse
	if err := c.call(node, 7*time.Second, rpc.MethodClusterMembers, &rpc.MembersRequest{}, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

func (c *cluster) invoke(node string, timeout time.Duration, fn, payload string) (*rpc.InvokeResponse, error) {
	var resp rpc.InvokeResponse
	if err := c.call(node, timeout, rpc.MethodInvoke, &rpc.InvokeRequest{FunctionName: fn, Payload: []byte(payload)}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func (c *cluster) getFunction(node, fn string) (*rpc.FunctionConfig, error) {
	var resp rpc.FunctionResponse
	if err := c.call(node, 10*time.Second, rpc.MethodFunctionGet, &rpc.GetFunctionRequest{Name: fn}, &resp); err != nil {
		return nil, err
	}
	return resp.Function, nil
}

func (c *cluster) updateMemory(node, fn string, mb int) (*rpc.FunctionConfig, error) {
	var resp rpc.FunctionResponse
	if err := c.call(node, 15*time.Second, rpc.MethodFunctionUpdateConfig, &rpc.UpdateConfigRequest{Name: fn, MemoryMB: &mb}, &resp); err != nil {
		return nil, err
	}
	return resp.Function, nil
}

func (c *cluster) putConcurrency(node, fn string, reserved int) error {
	var resp rpc.ConcurrencyResponse
	return c.call(node, 15*time.Second, rpc.MethodConcurrencyPut, &rpc.PutConcurrencyRequest{Name: fn, Reserved: reserved}, &resp)
}

// ensureFunctions deploys hello and held (timeout 60 s, reserved
// concurrency heldReserved) unless they are there already.
func (c *cluster) ensureFunctions(t testing.TB, via string) {
	t.Helper()
	for _, f := range []struct {
		name    string
		zip     []byte
		timeout int
	}{{helloFn, c.helloZip, 10}, {heldFn, c.heldZip, 60}} {
		_, err := c.getFunction(via, f.name)
		if err == nil {
			continue
		}
		if !errors.Is(err, rpc.ErrResourceNotFound) {
			t.Fatalf("get %s: %v", f.name, err)
		}
		// A leader change between waitHealthy and the create answers
		// ServiceException (nothing was written): send it again, through
		// any node, as a client would.
		deadline := time.Now().Add(30 * time.Second)
		for attempt := 0; ; attempt++ {
			node := via
			if attempt > 0 {
				node = c.nodes[attempt%len(c.nodes)]
			}
			var resp rpc.FunctionResponse
			err = c.call(node, 30*time.Second, rpc.MethodFunctionCreate, &rpc.CreateFunctionRequest{
				Name: f.name, Runtime: "provided", Handler: "bootstrap", TimeoutSec: f.timeout, ZipFile: f.zip,
			}, &resp)
			if err == nil || errors.Is(err, rpc.ErrResourceConflict) && attempt > 0 {
				break
			}
			if !errors.Is(err, rpc.ErrService) || time.Now().After(deadline) {
				t.Fatalf("create %s: %v", f.name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var cr rpc.ConcurrencyResponse
	if err := c.call(via, 10*time.Second, rpc.MethodConcurrencyGet, &rpc.GetFunctionRequest{Name: heldFn}, &cr); err != nil {
		t.Fatalf("get-concurrency %s: %v", heldFn, err)
	}
	if cr.Reserved == nil || *cr.Reserved != heldReserved {
		if err := c.putConcurrency(via, heldFn, heldReserved); err != nil {
			t.Fatalf("put-concurrency %s %d: %v", heldFn, heldReserved, err)
		}
	}
}

// cliResult is what a run of bin/nimbus gave.
type cliResult struct {
	stdout, stderr string
	code           int // 124: killed by `timeout 60`
	took           time.Duration
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d after %v; stdout %q; stderr %q", r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// cli runs bin/nimbus ARGS under `timeout 60`, from the host when inNode is
// "", else inside inNode's network namespace (where its own address stays
// reachable while it is partitioned).
func (c *cluster) cli(inNode string, args ...string) cliResult {
	argv := []string{"60"}
	if inNode != "" {
		argv = append(argv, "nsenter", "--net=/run/netns/"+clusterPrefix+"-"+inNode, "--")
	}
	argv = append(argv, c.bin)
	argv = append(argv, args...)
	cmd := exec.Command("timeout", argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := cliResult{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		r.code = -1
		r.stderr += err.Error()
	}
	return r
}

// expectServiceException checks that a CLI run failed as a platform error
// (exit 2) naming ServiceException, on its own (not killed by `timeout`).
func expectServiceException(t testing.TB, what string, r cliResult) {
	t.Helper()
	if r.code != 2 || !strings.Contains(r.stderr, rpc.CodeService) {
		t.Errorf("%s: %v; want exit 2 with a ServiceException", what, r)
		return
	}
	t.Logf("%s: %s (after %v)", what, strings.TrimSpace(r.stderr), r.took.Round(time.Millisecond))
}

// waitFor polls cond every 100 ms until it holds, failing the test after
// timeout with what cond last said.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitNewLeader waits until every node of among reports the same leader,
// one of among and not old, that says it leads. It returns the leader.
func (c *cluster) waitNewLeader(t testing.TB, among []string, old string, timeout time.Duration) string {
	t.Helper()
	var leader string
	waitFor(t, fmt.Sprintf("a leader other than %s among %v", old, among), timeout, func() (bool, string) {
		leader = ""
		for _, n := range among {
			v, err := c.raftShort(n)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", n, err)
			}
			if v.Leader == "" || v.Leader == old || (leader != "" && v.Leader != leader) {
				return false, fmt.Sprintf("%s reports leader %q (%s)", n, v.Leader, v.State)
			}
			leader = v.Leader
		}
		for _, n := range among {
			if n == leader {
				if v, err := c.raftShort(n); err != nil || v.State != "Leader" {
					return false, fmt.Sprintf("%s is reported leader but says %v %v", n, v, err)
				}
				return true, ""
			}
		}
		return false, fmt.Sprintf("leader %q is not one of %v", leader, among)
	})
	return leader
}

// raftShort is raft with a short timeout, for tight polling.
func (c *cluster) raftShort(node string) (*rpc.RaftResponse, error) {
	var v rpc.RaftResponse
	if err := c.call(node, 500*time.Millisecond, rpc.MethodClusterRaft, &rpc.RaftRequest{}, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// inFlight sums the in-flight slots of members, and lists them by node.
func inFlight(ms *rpc.MembersResponse) (int, string) {
	total := 0
	var parts []string
	for _, m := range ms.Members {
		total += m.InFlight
		parts = append(parts, fmt.Sprintf("%s:%s/%d", m.Name, m.Status, m.InFlight))
	}
	sort.Strings(parts)
	return total, strings.Join(parts, " ")
}
