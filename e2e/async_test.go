package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"nimbus/rpc"
)

// TestAsyncLeaderKilledTwice sends 10,000 Event invocations through the
// nodes while the leader is killed (SIGKILL) twice, each time restarted
// once a new leader is elected. Every event answered 202 must run at least
// once. A run shows as a START line under its request id in hello's log,
// read from every node, or as the Success record hello's on-success queue
// destination gets (committed with the event's finish): a worker SIGKILLed
// right after a run loses the lines it had not shipped yet, never the
// record. Duplicates are counted and printed, and so are the events whose
// accept was committed but answered with an error (the leader killed in
// between), which the caller then sent again.
func TestAsyncLeaderKilledTwice(t *testing.T) {
	c := useCluster(t)
	leader := c.waitHealthy(t)
	c.ensureFunctions(t, leader)
	okQueue := fmt.Sprintf("asyncok%d", time.Now().UnixNano()%1_000_000)
	if err := c.call(leader, 30*time.Second, rpc.MethodQueueCreate, &rpc.CreateQueueRequest{Name: okQueue}, &rpc.QueueResponse{}); err != nil {
		t.Fatal(err)
	}
	if err := c.call(leader, 30*time.Second, rpc.MethodEventConfigPut, &rpc.PutEventConfigRequest{FunctionName: helloFn, OnSuccess: "queue:" + okQueue}, &rpc.EventConfigResponse{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.call(c.nodes[0], 30*time.Second, rpc.MethodEventConfigDelete, &rpc.GetEventConfigRequest{FunctionName: helloFn}, &rpc.DeleteEventConfigResponse{})
		c.call(c.nodes[0], 30*time.Second, rpc.MethodQueueDelete, &rpc.QueueRequest{Name: okQueue}, &rpc.DeleteQueueResponse{})
	})

	const total = 10_000
	var (
		mu       sync.Mutex
		ids      = make(map[string]bool, total)
		accepted atomic.Int64
		refused  atomic.Int64
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	begin := time.Now()
	for s := 0; s < 24; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for next.Add(1) <= total {
				for attempt := 0; ; attempt++ {
					node := c.nodes[(s+attempt)%len(c.nodes)]
					var resp rpc.InvokeResponse
					err := c.call(node, 10*time.Second, rpc.MethodInvoke, &rpc.InvokeRequest{
						FunctionName: helloFn, InvocationType: rpc.InvocationEvent, Payload: []byte(`{"name":"async"}`),
					}, &resp)
					if err == nil {
						mu.Lock()
						ids[resp.RequestID] = true
						mu.Unlock()
						accepted.Add(1)
						break
					}
					var re *rpc.Error
					if errors.As(err, &re) && !errors.Is(err, rpc.ErrService) {
						t.Errorf("accept refused with %v", err)
						return
					}
					// No leader, no quorum, or a killed node: never a 202;
					// try again (through another node).
					refused.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(s)
	}

	// The first kill early, the second once the first victim is back and
	// caught up (a second kill with it down would leave no quorum).
	for kill, at := range []int64{total / 10, total / 2} {
		waitFor(t, fmt.Sprintf("%d accepts before kill %d", at, kill+1), 2*time.Minute, func() (bool, string) {
			return accepted.Load() >= at, fmt.Sprintf("%d accepted", accepted.Load())
		})
		old := leader
		if kill > 0 {
			old = c.waitHealthy(t)
		}
		c.do(t, "kill", old)
		newLeader := c.waitNewLeader(t, c.others(old), old, 30*time.Second)
		t.Logf("kill %d: leader %s killed (SIGKILL) at %d accepts; %s leads", kill+1, old, accepted.Load(), newLeader)
		c.do(t, "restart", old)
	}
	wg.Wait()
	acceptTook := time.Since(begin)
	if t.Failed() {
		return
	}
	c.waitHealthy(t)

	var runs map[string]int
	succeeded := map[string]int{} // request id -> Success records
	missing, linesLost := 0, 0
	waitFor(t, "every accepted event to have run", 3*time.Minute, func() (bool, string) {
		if err := c.drainRecords(okQueue, succeeded); err != nil {
			return false, err.Error()
		}
		var err error
		runs, err = c.starts(helloFn, ids)
		if err != nil {
			return false, err.Error()
		}
		missing, linesLost = 0, 0
		for id := range ids {
			switch {
			case runs[id] == 0 && succeeded[id] == 0:
				missing++
			case runs[id] == 0:
				linesLost++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d accepted events have not run yet", missing, len(ids))
	})
	dups := 0
	for id := range ids {
		dups += max(runs[id], succeeded[id]) - 1
	}
	// An accept whose answer was lost (its leader killed after the commit)
	// reached the caller as an error and was tried again: that event ran
	// too, unknown to the test.
	unanswered := 0
	for id := range succeeded {
		if !ids[id] {
			unanswered++
		}
	}
	t.Logf("%d events accepted in %v (%d refused attempts, retried); all ran, %d duplicate runs, %d runs whose log lines died with a SIGKILLed worker (their Success records are there), %d events committed whose accept answer was lost in a kill; done %v after the first accept",
		len(ids), acceptTook.Round(time.Millisecond), refused.Load(), dups, linesLost, unanswered, time.Since(begin).Round(time.Second))
}

// drainRecords receives (and deletes) every destination record in queue,
// counting Success records by their event's request id into seen.
func (c *cluster) drainRecords(queue string, seen map[string]int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := c.rpcClient(ctx, c.nodes[0])
	if err != nil {
		return err
	}
	for {
		res, err := cl.ReceiveMessage(ctx, &rpc.ReceiveMessageRequest{Queue: queue, Max: 10})
		if err != nil {
			return err
		}
		if len(res.Messages) == 0 {
			return nil
		}
		for _, m := range res.Messages {
			var rec struct {
				RequestContext struct {
					RequestID string `json:"requestId"`
					Condition string `json:"condition"`
				} `json:"requestContext"`
			}
			if err := json.Unmarshal([]byte(m.Body), &rec); err != nil || rec.RequestContext.Condition != "Success" {
				return fmt.Errorf("a destination record that is not a Success record: %q (%v)", m.Body, err)
			}
			seen[rec.RequestContext.RequestID]++
			if _, err := cl.DeleteMessage(ctx, queue, m.ReceiptHandle); err != nil {
				return err
			}
		}
	}
}

// starts counts the START lines of the given request ids in fn's log,
// gathered from every node.
func (c *cluster) starts(fn string, ids map[string]bool) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := c.rpcClient(ctx, c.nodes[0])
	if err != nil {
		return nil, err
	}
	runs := map[string]int{}
	req := &rpc.ReadLogsRequest{FunctionName: fn, Limit: 10000}
	for {
		res, err := cl.ReadLogs(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, e := range res.Events {
			if ids[e.RequestID] && strings.HasPrefix(e.Line, "START RequestId: ") {
				runs[e.RequestID]++
			}
		}
		if len(res.Events) == 0 {
			return runs, nil
		}
		req.After = res.Next
	}
}
