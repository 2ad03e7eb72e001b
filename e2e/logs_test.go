package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"nimbus/bundle"
	"nimbus/rpc"
)

// logLine is a line of `nimbus logs tail --format json`.
type logLine struct {
	RequestID string `json:"requestId"`
	Stream    string `json:"stream"`
	Message   string `json:"message"`
	Node      string `json:"node"`
}

// loggerLine is one "logger K I" line: invocation K's I-th line.
type loggerLine struct{ k, i int }

func parseLogger(l logLine) (loggerLine, bool) {
	var ll loggerLine
	if l.Stream != "stdout" {
		return ll, false
	}
	_, err := fmt.Sscanf(strings.TrimSpace(l.Message), "logger %d %d", &ll.k, &ll.i)
	return ll, err == nil
}

// readLog is `nimbus logs tail FN --since 1h --format json` through node:
// the function's whole log.
func (c *cluster) readLog(t testing.TB, node, fn string) ([]logLine, error) {
	t.Helper()
	r := c.cli("", "logs", "tail", fn, "--since", "1h", "--format", "json", "--no-color", "--addr", c.addrs[node])
	if r.code != 0 {
		return nil, fmt.Errorf("logs tail through %s: %v", node, r)
	}
	var out []logLine
	for _, s := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if s == "" {
			continue
		}
		var l logLine
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			return nil, fmt.Errorf("logs tail through %s printed %q: %v", node, s, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// TestLogsSurviveNodeKill: a function logs from every worker while the node
// a `logs tail --follow` talks to, one of the three log store servers and
// a worker, is SIGKILLed. Afterwards both survivors answer the same log;
// it has every line of every invocation that ran on a survivor, each
// invocation's lines in order, and every line the follower printed before
// the kill; the follower moved on and printed exactly that log, with no gap
// and no repeat; the killed node, restarted, catches up and answers it too.
func TestLogsSurviveNodeKill(t *testing.T) {
	c := useCluster(t)
	leader := c.waitHealthy(t)
	victim := c.others(leader)[0]
	survivors := c.others(victim)

	dir := t.TempDir()
	script, err := os.ReadFile("testdata/logger.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	zip, err := bundle.ZipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fn := fmt.Sprintf("logger%d", time.Now().UnixNano()%1_000_000)
	var created rpc.FunctionResponse
	if err := c.call(leader, 30*time.Second, rpc.MethodFunctionCreate, &rpc.CreateFunctionRequest{
		Name: fn, Runtime: "provided", Handler: "bootstrap", TimeoutSec: 10, ZipFile: zip,
	}, &created); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var resp rpc.DeleteFunctionResponse
		if err := c.call(leader, 10*time.Second, rpc.MethodFunctionDelete, &rpc.GetFunctionRequest{Name: fn}, &resp); err != nil {
			t.Logf("delete %s: %v", fn, err)
		}
	})

	// The follower, through the victim only: it must find the others.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow := exec.CommandContext(ctx, c.bin, "logs", "tail", fn, "--follow", "--since", "1h", "--format", "json", "--no-color", "--addr", c.addrs[victim])
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	follow.Stderr = &stderr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		followed []logLine
		killedAt = -1 // len(followed) when the victim was killed
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l logLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("the follower printed %q: %v", sc.Text(), err)
				continue
			}
			mu.Lock()
			followed = append(followed, l)
			mu.Unlock()
		}
	}()
	defer func() {
		cancel()
		follow.Wait()
		<-done
	}()

	// Invocations through every node, the victim's until it dies.
	var (
		okMu      sync.Mutex
		succeeded = map[int]bool{}
		afterKill = map[int]bool{} // invoked once the victim was dead
		killed    = make(chan struct{})
		wg        sync.WaitGroup
	)
	stop := make(chan struct{})
	for ni, node := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				dead := false
				select {
				case <-killed:
					dead = true
				default:
				}
				if dead && node == victim {
					return
				}
				k := (ni+1)*100_000 + i
				res, err := c.invoke(node, 15*time.Second, fn, fmt.Sprint(k))
				if err != nil || res.FunctionError != "" {
					continue // the victim's, around the kill
				}
				okMu.Lock()
				succeeded[k] = true
				if dead {
					afterKill[k] = true
				}
				okMu.Unlock()
			}
		}()
	}
	// Kill once the follower is well under way.
	waitFor(t, "the follower to print 200 lines", 60*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		okMu.Lock()
		defer okMu.Unlock()
		return len(followed) >= 200, fmt.Sprintf("%d lines followed, %d invocations succeeded; follower's stderr: %q", len(followed), len(succeeded), stderr.String())
	})
	mu.Lock()
	killedAt = len(followed)
	mu.Unlock()
	c.do(t, "kill", victim)
	close(killed)
	t.Logf("killed %s (the follower's node; %d lines followed so far)", victim, killedAt)
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()

	// The survivors' log, once it has every line of the invocations made
	// after the kill, and is the same through both.
	var final []logLine
	waitFor(t, "both survivors to answer the same complete log", 90*time.Second, func() (bool, string) {
		a, err := c.readLog(t, survivors[0], fn)
		if err != nil {
			return false, err.Error()
		}
		b, err := c.readLog(t, survivors[1], fn)
		if err != nil {
			return false, err.Error()
		}
		if !slices.Equal(a, b) {
			return false, fmt.Sprintf("%s has %d lines, %s %d, or they differ", survivors[0], len(a), survivors[1], len(b))
		}
		seen := map[int]int{}
		for _, l := range a {
			if ll, ok := parseLogger(l); ok {
				seen[ll.k]++
			}
		}
		okMu.Lock()
		defer okMu.Unlock()
		for k := range afterKill {
			if seen[k] != 10 {
				return false, fmt.Sprintf("invocation %d (after the kill) has %d lines of 10", k, seen[k])
			}
		}
		final = a
		return true, ""
	})

	// Each invocation's lines in order, none twice; an invocation that
	// ran on a survivor has all ten; none that did not succeed... may have
	// logged (a failed invoke can have run), but every line is one of ours.
	lines := map[int][]int{}
	ranOn := map[int]string{}
	for _, l := range final {
		ll, ok := parseLogger(l)
		if !ok {
			continue
		}
		lines[ll.k] = append(lines[ll.k], ll.i)
		ranOn[ll.k] = l.Node
	}
	okMu.Lock()
	total := len(succeeded)
	okMu.Unlock()
	lost := 0
	for k, is := range lines {
		for j, i := range is {
			if i != j+1 {
				t.Fatalf("invocation %d's lines are %v: out of order, repeated or with a gap", k, is)
			}
		}
		if ranOn[k] != victim && len(is) != 10 {
			t.Errorf("invocation %d ran on the survivor %s but has %d lines of 10", k, ranOn[k], len(is))
		}
		if len(is) < 10 {
			lost += 10 - len(is)
		}
	}
	for k := range succeeded {
		if _, ok := lines[k]; !ok {
			lost += 10
		}
	}
	t.Logf("%d invocations succeeded, %d have lines; %d lines of the victim's last invocations were never acknowledged", total, len(lines), lost)

	// The follower printed exactly the final log: no gap, no repeat, and
	// everything it had printed before the kill is still there.
	waitFor(t, "the follower to print the whole log", 60*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		if len(followed) < len(final) {
			return false, fmt.Sprintf("%d of %d lines followed (stderr: %s)", len(followed), len(final), stderr.String())
		}
		return true, ""
	})
	mu.Lock()
	if !slices.Equal(followed[:len(final)], final) || len(followed) != len(final) {
		for i := range min(len(followed), len(final)) {
			if followed[i] != final[i] {
				t.Errorf("the follower's line %d is %+v, the log's %+v", i, followed[i], final[i])
				break
			}
		}
		t.Errorf("the follower printed %d lines, the log has %d", len(followed), len(final))
	}
	mu.Unlock()

	// The victim, restarted, answers the same log.
	c.do(t, "restart", victim)
	waitFor(t, fmt.Sprintf("the restarted %s to answer the survivors' log", victim), 90*time.Second, func() (bool, string) {
		got, err := c.readLog(t, victim, fn)
		if err != nil {
			return false, err.Error()
		}
		if !slices.Equal(got, final) {
			return false, fmt.Sprintf("%s answers %d lines, the survivors %d", victim, len(got), len(final))
		}
		return true, ""
	})
}
