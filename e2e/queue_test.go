package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"nimbus/rpc"
)

// TestQueueLeaderKilled: messages sent to a queue through every node while
// the Raft leader, which holds the queue, is SIGKILLed; consumers on the
// other two nodes receive and delete. Every send that was acknowledged is
// received (at least once: duplicates are counted and printed, as SQS's
// at-least-once delivery allows), and nothing is received that was not
// sent.
func TestQueueLeaderKilled(t *testing.T) {
	c := useCluster(t)
	leader := c.waitHealthy(t)
	survivors := c.others(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	clientOf := func(node string) *rpc.Client {
		cl, err := c.rpcClient(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	queue := fmt.Sprintf("e2eq%d", time.Now().UnixNano()%1_000_000)
	visibility := 5
	if _, err := clientOf(survivors[0]).CreateQueue(ctx, &rpc.CreateQueueRequest{Name: queue, VisibilitySec: &visibility}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cl, err := c.rpcClient(context.Background(), survivors[0]); err == nil {
			cl.DeleteQueue(context.Background(), queue)
		}
	})

	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		sentAny  = map[string]bool{} // every body a send was tried with
		received = map[string]int{}
		killed   = make(chan struct{})
		stopSend = make(chan struct{})
		wg       sync.WaitGroup
	)
	for _, node := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := clientOf(node)
			for i := 0; ; i++ {
				select {
				case <-stopSend:
					return
				case <-killed:
					if node == leader {
						return
					}
				default:
				}
				body := fmt.Sprintf("%s-%d", node, i)
				mu.Lock()
				sentAny[body] = true
				mu.Unlock()
				sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cl.SendMessage(sctx, &rpc.SendMessageRequest{Queue: queue, Body: body})
				scancel()
				if err != nil {
					time.Sleep(50 * time.Millisecond) // the failover: not acknowledged, not expected
					continue
				}
				mu.Lock()
				acked[body] = true
				mu.Unlock()
			}
		}()
	}
	consumers, stopConsume := sync.WaitGroup{}, make(chan struct{})
	for _, node := range survivors {
		consumers.Add(1)
		go func() {
			defer consumers.Done()
			cl := clientOf(node)
			for {
				select {
				case <-stopConsume:
					return
				default:
				}
				rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
				res, err := cl.ReceiveMessage(rctx, &rpc.ReceiveMessageRequest{Queue: queue, Max: 10, WaitSec: 1})
				rcancel()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				for _, m := range res.Messages {
					mu.Lock()
					received[m.Body]++
					mu.Unlock()
					// A delete lost in the failover: the message comes back
					// after its visibility timeout (a duplicate).
					dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
					cl.DeleteMessage(dctx, queue, m.ReceiptHandle)
					dcancel()
				}
			}
		}()
	}

	time.Sleep(3 * time.Second)
	c.do(t, "kill", leader)
	close(killed)
	t.Logf("killed the leader %s", leader)
	c.waitNewLeader(t, survivors, leader, 60*time.Second)
	time.Sleep(4 * time.Second)
	close(stopSend)
	wg.Wait()

	mu.Lock()
	nAcked := len(acked)
	mu.Unlock()
	if nAcked < 50 {
		t.Fatalf("only %d sends acknowledged: the test proves little", nAcked)
	}
	waitFor(t, "every acknowledged message received", 2*time.Minute, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		missing := 0
		for b := range acked {
			if received[b] == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d acknowledged messages not received yet", missing, len(acked))
	})
	close(stopConsume)
	consumers.Wait()

	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for b, n := range received {
		if !sentAny[b] {
			t.Errorf("received %q, which no one sent", b)
		}
		dups += n - 1
	}
	t.Logf("%d sends acknowledged, %d distinct messages received, %d duplicate deliveries", nAcked, len(received), dups)
}
