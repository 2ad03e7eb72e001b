package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"nimbus/rpc"
)

// outcome is one invocation of the load.
type outcome struct {
	fn, node   string
	start, end time.Time
	err        error
	funcErr    string
	payload    []byte
}

func (o outcome) ok() bool { return o.err == nil && o.funcErr == "" }

// heldSpan is the [start, end] a held invocation reports, Unix ns.
type heldSpan struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// maxOverlap is the most spans that share an instant.
func maxOverlap(spans []heldSpan) (int, int64) {
	type edge struct {
		at    int64
		delta int
	}
	var edges []edge
	for _, s := range spans {
		edges = append(edges, edge{s.Start, +1}, edge{s.End, -1})
	}
	// At the same instant an end comes before a start: touching spans do
	// not overlap.
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta < edges[j].delta
	})
	cur, best := 0, 0
	var at int64
	for _, e := range edges {
		cur += e.delta
		if cur > best {
			best, at = cur, e.at
		}
	}
	return best, at
}

// load runs callers that invoke functions through random nodes until stop.
type load struct {
	c       *cluster
	mu      sync.Mutex
	results []outcome
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(c *cluster) *load {
	return &load{c: c, stop: make(chan struct{})}
}

// callers starts n callers of fn with payload.
func (l *load) callers(n int, fn, payload string) {
	for i := 0; i < n; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				node := l.c.nodes[rand.IntN(len(l.c.nodes))]
				o := outcome{fn: fn, node: node, start: time.Now()}
				resp, err := l.c.invoke(node, 20*time.Second, fn, payload)
				o.end, o.err = time.Now(), err
				if resp != nil {
					o.funcErr, o.payload = resp.FunctionError, resp.Payload
				}
				l.mu.Lock()
				l.results = append(l.results, o)
				l.mu.Unlock()
				if err != nil {
					// Throttled or refused: do not spin on a 2-core machine.
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
}

func (l *load) count(pred func(outcome) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, o := range l.results {
		if pred(o) {
			n++
		}
	}
	return n
}

func (l *load) finish() []outcome {
	close(l.stop)
	l.wg.Wait()
	return l.results
}

// errKind names an invocation error for the summaries.
func errKind(err error) string {
	var re *rpc.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &re):
		return re.Code
	case errors.Is(err, rpc.ErrConnClosed):
		return "connection"
	default:
		return "other"
	}
}

func TestLeaderKilledUnderLoad(t *testing.T) {
	c := useCluster(t)
	leader := c.waitHealthy(t)
	c.ensureFunctions(t, leader)
	survivors := c.others(leader)

	l := startLoad(c)
	l.callers(6, helloFn, `{"name":"load"}`)
	l.callers(6, heldFn, "0.2")
	stopped := false
	defer func() {
		if !stopped {
			l.finish()
		}
	}()

	// Some of both before the kill.
	waitFor(t, "successes of hello and held before the kill", 60*time.Second, func() (bool, string) {
		h := l.count(func(o outcome) bool { return o.fn == helloFn && o.ok() })
		d := l.count(func(o outcome) bool { return o.fn == heldFn && o.ok() })
		return h >= 20 && d >= 5, fmt.Sprintf("hello %d, held %d ok", h, d)
	})

	killStart := time.Now()
	c.do(t, "kill", leader)
	killed := time.Now()
	newLeader := c.waitNewLeader(t, survivors, leader, 30*time.Second)
	elected := time.Now()
	t.Logf("leader %s killed (SIGKILL) under load; survivors %v agree on the new leader %s after %v",
		leader, survivors, newLeader, elected.Sub(killed).Round(time.Millisecond))

	afterElection := func(fn string) func(o outcome) bool {
		return func(o outcome) bool { return o.fn == fn && o.ok() && o.node != leader && !o.start.Before(elected) }
	}
	var firstOK time.Time
	waitFor(t, "successes through the survivors after the election", 60*time.Second, func() (bool, string) {
		h := l.count(afterElection(helloFn))
		d := l.count(afterElection(heldFn))
		if firstOK.IsZero() && h+d > 0 {
			firstOK = time.Now()
		}
		return h >= 20 && d >= 5, fmt.Sprintf("hello %d, held %d ok since the election", h, d)
	})
	t.Logf("first success through a survivor about %v after the kill", firstOK.Sub(killed).Round(100*time.Millisecond))
	results := l.finish()
	stopped = true

	// Errors: none before the kill but held's throttling; after it only
	// ServiceException, TooManyRequests, or the killed node unreachable.
	summary := map[string]int{}
	var bad []string
	var spans []heldSpan
	for _, o := range results {
		phase := "before"
		if !o.end.Before(killStart) {
			phase = "after"
			if !o.start.Before(elected) {
				phase = "elected"
			}
		}
		kind := errKind(o.err)
		if o.err == nil && o.funcErr != "" {
			kind = "function error"
		}
		summary[fmt.Sprintf("%s/%s/%s", phase, o.fn, kind)]++
		allowed := false
		switch {
		case o.ok():
			allowed = true
			if o.fn == heldFn {
				var s heldSpan
				if err := json.Unmarshal(o.payload, &s); err != nil || s.Start == 0 || s.End < s.Start {
					bad = append(bad, fmt.Sprintf("held answered %q (%v)", o.payload, err))
				} else {
					spans = append(spans, s)
				}
			}
		case o.err == nil: // a function error
		case phase == "before":
			allowed = o.fn == heldFn && errors.Is(o.err, rpc.ErrTooManyRequests)
		default:
			allowed = errors.Is(o.err, rpc.ErrService) || errors.Is(o.err, rpc.ErrTooManyRequests) ||
				(errors.Is(o.err, rpc.ErrConnClosed) && o.node == leader)
		}
		if !allowed {
			bad = append(bad, fmt.Sprintf("%s via %s at kill%+v (%v long): err %v, function error %q %s",
				o.fn, o.node, o.start.Sub(killStart).Round(time.Millisecond), o.end.Sub(o.start).Round(time.Millisecond),
				o.err, o.funcErr, o.payload))
		}
	}
	keys := make([]string, 0, len(summary))
	for k := range summary {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lines []string
	for _, k := range keys {
		lines = append(lines, fmt.Sprintf("%s=%d", k, summary[k]))
	}
	t.Logf("outcomes (phase/function/result): %s", strings.Join(lines, " "))
	for i, b := range bad {
		if i == 10 {
			t.Errorf("... and %d more unexpected outcomes", len(bad)-10)
			break
		}
		t.Errorf("unexpected outcome: %s", b)
	}

	// The reserved limit of held held across the failover.
	most, at := maxOverlap(spans)
	t.Logf("held: %d invocations; at most %d at once", len(spans), most)
	if most > heldReserved {
		t.Errorf("%d held invocations ran at once at %s (kill at %s): over its reserved concurrency %d",
			most, time.Unix(0, at).Format("15:04:05.000"), killed.Format("15:04:05.000"), heldReserved)
	}

	// No slot leaked: the leader's view drains to 0 in flight.
	waitFor(t, "no invocation in flight in the new leader's view", 30*time.Second, func() (bool, string) {
		ms, err := c.members(newLeader)
		if err != nil {
			return false, err.Error()
		}
		total, per := inFlight(ms)
		return total == 0, per
	})
}

func TestPartitionedMinority(t *testing.T) {
	c := useCluster(t)
	leader := c.waitHealthy(t)
	c.ensureFunctions(t, leader)
	follower := c.others(leader)[0]
	other := c.others(leader, follower)[0]
	fAddr := c.addrs[follower]

	// 1. A follower cut off: it can neither invoke nor write, and says so
	// instead of hanging; the majority goes on meanwhile.
	c.do(t, "partition", follower)
	t.Logf("partitioned the follower %s (leader %s)", follower, leader)
	var inInvoke, inUpdate cliResult
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		inInvoke = c.cli(follower, "invoke", helloFn, "--payload", `{"name":"minority"}`, "--addr", fAddr)
	}()
	go func() {
		defer wg.Done()
		inUpdate = c.cli(follower, "fn", "update-config", helloFn, "--memory", "512", "--addr", fAddr)
	}()
	c.invokeEventually(t, other, helloFn, `{"name":"majority"}`, 30*time.Second)
	fn, err := c.updateMemory(other, helloFn, 256)
	if err != nil {
		t.Fatalf("update-config through the majority (%s): %v", other, err)
	}
	if fn.MemoryMB != 256 {
		t.Fatalf("update-config through %s answered memory %d", other, fn.MemoryMB)
	}
	wg.Wait()
	expectServiceException(t, "invoke inside the partitioned "+follower, inInvoke)
	expectServiceException(t, "update-config inside the partitioned "+follower, inUpdate)

	lv, err := c.raft(leader)
	if err != nil {
		t.Fatal(err)
	}
	commitAtHeal := lv.CommitIndex
	c.do(t, "heal", follower)
	c.waitCaughtUp(t, follower, leader, commitAtHeal)
	waitFor(t, follower+" alive again in the leader's members", 60*time.Second, func() (bool, string) {
		ms, err := c.members(leader)
		if err != nil {
			return false, err.Error()
		}
		m := findMember(ms, follower)
		return m != nil && m.Status == rpc.MemberAlive, fmt.Sprintf("%+v", m)
	})
	if mem := c.cliMemory(t, "", fAddr, helloFn); mem != 256 {
		t.Errorf("fn get through the healed %s: memory %d, want 256 (the majority's write)", follower, mem)
	}

	// 2. The leader cut off: the majority elects another and goes on; the
	// old leader cannot commit a write any more.
	c.waitHealthy(t)
	oldLeader := leader
	oAddr := c.addrs[oldLeader]
	c.do(t, "partition", oldLeader)
	cut := time.Now()
	majority := c.others(oldLeader)
	newLeader := c.waitNewLeader(t, majority, oldLeader, 30*time.Second)
	t.Logf("partitioned the leader %s; %v agree on the new leader %s after %v",
		oldLeader, majority, newLeader, time.Since(cut).Round(time.Millisecond))
	var inOld cliResult
	wg.Add(1)
	go func() {
		defer wg.Done()
		inOld = c.cli(oldLeader, "fn", "update-config", helloFn, "--memory", "320", "--addr", oAddr)
	}()
	c.invokeEventually(t, majority[0], helloFn, `{"name":"new majority"}`, 30*time.Second)
	c.invokeEventually(t, majority[1], helloFn, `{"name":"new majority"}`, 30*time.Second)
	if _, err := c.updateMemory(majority[1], helloFn, 384); err != nil {
		t.Fatalf("update-config through the new majority (%s): %v", majority[1], err)
	}
	wg.Wait()
	expectServiceException(t, "update-config inside the partitioned old leader "+oldLeader, inOld)
	if r := c.cli(oldLeader, "cluster", "raft", "-o", "json", "--addr", oAddr); r.code == 0 {
		var v rpc.RaftResponse
		if err := json.Unmarshal([]byte(r.stdout), &v); err == nil {
			t.Logf("the old leader's own view while cut off: %s, leader %q, term %d", v.State, v.Leader, v.Term)
		}
	}

	nv, err := c.raft(newLeader)
	if err != nil {
		t.Fatal(err)
	}
	c.do(t, "heal", oldLeader)
	c.waitCaughtUp(t, oldLeader, newLeader, nv.CommitIndex)
	if mem := c.cliMemory(t, "", oAddr, helloFn); mem != 384 {
		t.Errorf("fn get through the healed old leader %s: memory %d, want 384 (the new majority's write; 320 was the cut-off leader's)", oldLeader, mem)
	}
}

// invokeEventually invokes fn through node until it succeeds, within
// timeout, logging the failures on the way.
func (c *cluster) invokeEventually(t testing.TB, node, fn, payload string, timeout time.Duration) {
	t.Helper()
	fails := map[string]int{}
	var last error
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.invoke(node, 15*time.Second, fn, payload)
		if err == nil && resp.FunctionError == "" {
			if len(fails) > 0 {
				t.Logf("invoke %s through %s succeeded after failures %v (last: %v)", fn, node, fails, last)
			}
			return
		}
		if err == nil {
			err = fmt.Errorf("function error %s", resp.Payload)
		}
		fails[errKind(err)]++
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("invoke %s through %s: no success within %v; failures %v, last: %v", fn, node, timeout, fails, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitCaughtUp waits until node follows leader as a voter and has applied
// index at least.
func (c *cluster) waitCaughtUp(t testing.TB, node, leader string, index uint64) {
	t.Helper()
	start := time.Now()
	// Leadership may move meanwhile on a loaded machine: following any
	// other server with the entries applied is caught up.
	var now string
	waitFor(t, fmt.Sprintf("%s following %s (or a later leader) with applied index >= %d", node, leader, index), 60*time.Second, func() (bool, string) {
		v, err := c.raft(node)
		if err != nil {
			return false, err.Error()
		}
		now = v.Leader
		ok := v.State == "Follower" && v.Leader != "" && v.Leader != node && v.AppliedIndex >= index && isVoter(v, node)
		return ok, fmt.Sprintf("%s leader %q applied %d servers %+v", v.State, v.Leader, v.AppliedIndex, v.Servers)
	})
	t.Logf("%s follows %s again (%s led before), applied >= %d, %v after it came back", node, now, leader, index, time.Since(start).Round(time.Millisecond))
}

// cliMemory is the memory `fn get NAME -o json` shows through addr.
func (c *cluster) cliMemory(t testing.TB, inNode, addr, fn string) int {
	t.Helper()
	r := c.cli(inNode, "fn", "get", fn, "-o", "json", "--addr", addr)
	if r.code != 0 {
		t.Fatalf("fn get %s --addr %s: %v", fn, addr, r)
	}
	var f rpc.FunctionConfig
	if err := json.Unmarshal([]byte(r.stdout), &f); err != nil {
		t.Fatalf("fn get %s -o json: %v: %q", fn, err, r.stdout)
	}
	return f.MemoryMB
}

func TestWorkerKilledMidInvocation(t *testing.T) {
	c := useCluster(t)
	leader := c.waitHealthy(t)
	c.ensureFunctions(t, leader)
	const hold = 20 * time.Second

	// An attempt whose worker is its own frontend (or the leader) is left to
	// run its 20 s: room for a few at once.
	const attempts = 5
	c.restoreHeldReserved(t)
	if err := c.putConcurrency(leader, heldFn, attempts); err != nil {
		t.Fatal(err)
	}
	type result struct {
		err error
		end time.Time
	}
	type attempt struct {
		frontend string
		started  time.Time
		done     chan result
	}
	var leftovers []*attempt
	t.Cleanup(func() {
		for _, a := range leftovers {
			select {
			case <-a.done:
			case <-time.After(time.Until(a.started.Add(hold + 15*time.Second))):
				t.Errorf("an invocation through %s started at %s never ended", a.frontend, a.started.Format("15:04:05"))
			}
		}
	})

	// A new revision of held has no warm sandbox anywhere, so placement
	// is by free memory alone (the first by name among equals): the test
	// can foresee the worker and call through another node.
	heldNow := c.newHeldRevision(t, leader)
	inFlightBy := func() (map[string]int, map[string]int, error) {
		ms, err := c.members(leader)
		if err != nil {
			return nil, nil, err
		}
		n, free := map[string]int{}, map[string]int{}
		for _, m := range ms.Members {
			n[m.Name] = m.InFlight
			free[m.Name] = m.MemoryMB - m.InFlight*heldNow.MemoryMB
		}
		return n, free, nil
	}
	followers := c.others(leader)
	var target *attempt
	var worker string
	for i := 0; i < attempts && target == nil; i++ {
		before, free, err := inFlightBy()
		if err != nil {
			t.Fatal(err)
		}
		// The likely worker: the most free memory, the first by name among
		// equals. Call through a follower other than it.
		likely := ""
		for _, n := range c.nodes {
			if likely == "" || free[n] > free[likely] {
				likely = n
			}
		}
		frontend := followers[0]
		if frontend == likely {
			frontend = followers[1]
		}
		a := &attempt{frontend: frontend, started: time.Now(), done: make(chan result, 1)}
		go func() {
			_, err := c.invoke(a.frontend, hold+30*time.Second, heldFn, fmt.Sprint(hold.Seconds()))
			a.done <- result{err, time.Now()}
		}()
		w := ""
		waitFor(t, "the held invocation's slot on a worker", 15*time.Second, func() (bool, string) {
			now, _, err := inFlightBy()
			if err != nil {
				return false, err.Error()
			}
			for n, k := range now {
				if k > before[n] {
					w = n
					return true, ""
				}
			}
			return false, fmt.Sprintf("in flight %v (before %v)", now, before)
		})
		if w != a.frontend && w != leader {
			target, worker = a, w
			t.Logf("attempt %d: frontend %s, worker %s (leader %s, foreseen worker %s)", i+1, a.frontend, w, leader, likely)
			break
		}
		t.Logf("attempt %d: frontend %s runs it on %s (leader %s, foreseen worker %s): left to run, trying again", i+1, a.frontend, w, leader, likely)
		leftovers = append(leftovers, a)
	}
	if target == nil {
		t.Fatalf("no attempt ran on a worker other than its frontend and the leader %s", leader)
	}

	killed := time.Now() // just before the SIGKILL
	c.do(t, "kill", worker)
	select {
	case r := <-target.done:
		if !errors.Is(r.err, rpc.ErrService) {
			t.Errorf("the caller through %s got %v, want a ServiceException", target.frontend, r.err)
		} else {
			t.Logf("the caller got: %v (%v after the kill)", r.err, r.end.Sub(killed).Round(time.Millisecond))
		}
		if !r.end.Before(target.started.Add(hold)) {
			t.Errorf("the call ended at %s, when its %v hold would have (started %s): it did not end because the worker died",
				r.end.Format("15:04:05.000"), hold, target.started.Format("15:04:05.000"))
		}
	case <-time.After(time.Until(target.started.Add(hold + 20*time.Second))):
		t.Fatalf("the caller through %s still waits, %v after %s was killed", target.frontend, time.Since(killed).Round(time.Second), worker)
	}

	waitFor(t, "the killed worker's slot freed in the leader's view", 30*time.Second, func() (bool, string) {
		ms, err := c.members(leader)
		if err != nil {
			return false, err.Error()
		}
		total, per := inFlight(ms)
		m := findMember(ms, worker)
		return m != nil && m.InFlight == 0 && (len(leftovers) > 0 || total == 0), per
	})
	t.Logf("%s's slot freed %v after the kill", worker, time.Since(killed).Round(100*time.Millisecond))

	resp, err := c.invoke(target.frontend, 30*time.Second, heldFn, "0")
	if err != nil || resp.FunctionError != "" {
		t.Fatalf("the next invocation through %s: %v %+v", target.frontend, err, resp)
	}
}

// newHeldRevision changes held's environment: the new revision has no warm
// sandbox anywhere, so placement goes by free memory alone.
func (c *cluster) newHeldRevision(t testing.TB, via string) *rpc.FunctionConfig {
	t.Helper()
	var fr rpc.FunctionResponse
	if err := c.call(via, 15*time.Second, rpc.MethodFunctionUpdateConfig, &rpc.UpdateConfigRequest{
		Name: heldFn, Env: map[string]string{"E2E_REVISION": fmt.Sprint(time.Now().UnixNano())},
	}, &fr); err != nil {
		t.Fatalf("update-config %s: %v", heldFn, err)
	}
	return fr.Function
}

// restoreHeldReserved puts held's reservation back (through any node that
// answers) in t's cleanup.
func (c *cluster) restoreHeldReserved(t testing.TB) {
	t.Cleanup(func() {
		var last error
		for _, n := range c.nodes {
			if last = c.putConcurrency(n, heldFn, heldReserved); last == nil {
				return
			}
		}
		t.Errorf("could not restore %s's reserved concurrency: %v", heldFn, last)
	})
}

func TestRestartDestroysKilledWorkersSandboxes(t *testing.T) {
	c := useCluster(t)
	leader := c.waitHealthy(t)
	c.ensureFunctions(t, leader)
	const hold = 10 * time.Second

	// Held invocations, one at a time, on a revision without warm
	// sandboxes, until one runs on a node other than the leader: that node
	// is the victim, with a busy sandbox when it is killed. Placement is by
	// free memory, which earlier tests' warm sandboxes change, so the test
	// does not foresee it.
	const attempts = 4
	c.restoreHeldReserved(t)
	if err := c.putConcurrency(leader, heldFn, attempts); err != nil {
		t.Fatal(err)
	}
	c.newHeldRevision(t, leader)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	busy := func() (map[string]int, int, string, error) {
		ms, err := c.members(leader)
		if err != nil {
			return nil, 0, err.Error(), err
		}
		by := map[string]int{}
		for _, m := range ms.Members {
			by[m.Name] = m.InFlight
		}
		total, per := inFlight(ms)
		return by, total, per, nil
	}
	victim := ""
	for i := 0; i < attempts && victim == ""; i++ {
		_, before, _, err := busy()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The outcome is not the point (the victim's dies with it),
			// but an early failure explains a wait below that times out.
			// A throttle is tried again: the previous test's held
			// invocations may still hold the function's reserved slots
			// for the rest of their hold.
			start := time.Now()
			for {
				res, err := c.invoke(leader, hold+20*time.Second, heldFn, fmt.Sprint(hold.Seconds()))
				took := time.Since(start)
				if err != nil && strings.Contains(err.Error(), rpc.CodeTooManyRequests) && took < 2*hold {
					time.Sleep(200 * time.Millisecond)
					continue
				}
				if took < hold || err != nil {
					t.Logf("a held invocation ended after %v: %+v %v", took, res, err)
				}
				return
			}
		}()
		waitFor(t, "one more held invocation in flight", 25*time.Second, func() (bool, string) {
			by, total, per, err := busy()
			if err != nil || total <= before {
				return false, per
			}
			for _, n := range c.others(leader) {
				if by[n] > 0 {
					victim = n
				}
			}
			t.Logf("attempt %d: in flight %s", i+1, per)
			return true, ""
		})
	}
	if victim == "" {
		t.Fatalf("%d held invocations, none on a node other than the leader %s", attempts, leader)
	}
	// The leader counts the slot as soon as it grants it; the worker creates
	// the sandbox a moment later.
	var stale []string
	waitFor(t, "a sandbox in "+victim+"'s state dir", 15*time.Second, func() (bool, string) {
		stale = c.containers(t, victim)
		return len(stale) > 0, ""
	})
	c.do(t, "kill", victim)
	t.Logf("killed %s with its sandboxes %v", victim, stale)

	// Restarted, the agent destroys the sandboxes its killed predecessor
	// left (docs/ARCHITECTURE.md, Sandboxes: "Restart"): state and cgroups.
	c.do(t, "restart", victim)
	c.waitHealthy(t)
	waitFor(t, fmt.Sprintf("the sandboxes %v of the killed %s destroyed by its restart", stale, victim), 15*time.Second, func() (bool, string) {
		var left []string
		for _, id := range stale {
			if w := c.containerTraces(victim, id); len(w) > 0 {
				left = append(left, id+": "+strings.Join(w, ", "))
			}
		}
		return len(left) == 0, strings.Join(left, "; ")
	})
}

// containers lists the sandboxes (container ids) in node's state dir.
func (c *cluster) containers(t testing.TB, node string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(c.dir, node, "data", "containers"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		// Sandboxes are folders; files there are the manager's own records,
		// the folder mnt holds its overlays (sandbox/overlays_linux.go) and
		// procviews its lxcfs (sandbox/procviews_linux.go).
		if e.IsDir() && e.Name() != "mnt" && e.Name() != "procviews" {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// containerTraces lists what is left of a sandbox: its state dir, its
// cgroups (v1 hierarchies, or v2), and the processes in them.
func (c *cluster) containerTraces(node, id string) []string {
	var left []string
	if _, err := os.Stat(filepath.Join(c.dir, node, "data", "containers", id)); err == nil {
		left = append(left, "state dir")
	}
	v1, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*/nimbus", id))
	v2, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/nimbus", id))
	for _, cg := range append(v1, v2...) {
		procs, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
		if n := len(strings.Fields(string(procs))); n > 0 {
			left = append(left, fmt.Sprintf("cgroup %s with %d processes", cg, n))
		} else {
			left = append(left, "cgroup "+cg)
		}
	}
	return left
}

func TestRestartedServerCatchesUp(t *testing.T) {
	c := useCluster(t)
	leader := c.waitHealthy(t)
	c.ensureFunctions(t, leader)
	down := c.others(leader)[0]
	up := c.others(leader, down)[0]

	c.do(t, "kill", down)
	t.Logf("killed the follower %s", down)
	fresh := fmt.Sprintf("fresh%d", time.Now().UnixNano()%1_000_000)
	var created rpc.FunctionResponse
	if err := c.call(up, 30*time.Second, rpc.MethodFunctionCreate, &rpc.CreateFunctionRequest{
		Name: fresh, Runtime: "provided", Handler: "bootstrap", TimeoutSec: 10, ZipFile: c.helloZip,
	}, &created); err != nil {
		t.Fatalf("create %s through %s while %s is down: %v", fresh, up, down, err)
	}
	t.Cleanup(func() {
		var resp rpc.DeleteFunctionResponse
		if err := c.call(leader, 10*time.Second, rpc.MethodFunctionDelete, &rpc.GetFunctionRequest{Name: fresh}, &resp); err != nil {
			t.Logf("delete %s: %v", fresh, err)
		}
	})
	cur, err := c.getFunction(up, helloFn)
	if err != nil {
		t.Fatal(err)
	}
	helloMem := 192
	if cur.MemoryMB == helloMem {
		helloMem = 224
	}
	if _, err := c.updateMemory(up, helloFn, helloMem); err != nil {
		t.Fatalf("update %s through %s while %s is down: %v", helloFn, up, down, err)
	}
	lv, err := c.raft(leader)
	if err != nil {
		t.Fatal(err)
	}

	c.do(t, "restart", down)
	c.waitCaughtUp(t, down, leader, lv.CommitIndex)

	resp, err := c.invoke(down, 30*time.Second, fresh, `{"name":"restarted"}`)
	if err != nil || resp.FunctionError != "" {
		t.Fatalf("invoke %s through the restarted %s: %v %+v", fresh, down, err, resp)
	}
	var got struct {
		Message  string `json:"message"`
		Function string `json:"functionName"`
	}
	if err := json.Unmarshal(resp.Payload, &got); err != nil || got.Function != fresh || got.Message != "Hello, restarted!" {
		t.Errorf("invoke %s through %s answered %s (%v)", fresh, down, resp.Payload, err)
	}
	fn, err := c.updateMemory(down, fresh, 256)
	if err != nil {
		t.Fatalf("update-config %s through the restarted %s: %v", fresh, down, err)
	}
	if fn.MemoryMB != 256 || fn.Revision <= created.Function.Revision {
		t.Errorf("update-config %s through %s answered %+v", fresh, down, fn)
	}
	if mem := c.cliMemory(t, "", c.addrs[down], helloFn); mem != helloMem {
		t.Errorf("fn get %s through the restarted %s: memory %d, want %d (updated while it was down)", helloFn, down, mem, helloMem)
	}
}
