package node

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"nimbus/rpc"
)

// TestQueueFIFOAcrossFailover: a FIFO queue on a 3-server cluster keeps
// each message group in order while its leader stops: a message is never
// received before the messages sent before it in its group were deleted,
// and every group is deleted in send order.
func TestQueueFIFOAcrossFailover(t *testing.T) {
	t.Parallel()
	tc := startCluster(t, 3, func(i int, c *Config) {
		c.FastTimings = false // the fast timings flap on a loaded machine
	})
	ctx := ctxT(t)
	lead := tc.waitLeader()
	other := (lead + 1) % 3
	cl := tc.clients[other]
	mustCreateQueue(t, cl, &rpc.CreateQueueRequest{Name: "order.fifo", VisibilitySec: intp(2)})
	const groups, perGroup = 3, 20
	for i := 0; i < perGroup; i++ {
		for g := 0; g < groups; g++ {
			body := fmt.Sprintf("g%d-%d", g, i)
			waitFor(t, "send "+body, func() bool {
				_, err := cl.SendMessage(ctx, &rpc.SendMessageRequest{Queue: "order.fifo", Body: body, GroupID: fmt.Sprint("g", g), DedupID: body})
				if err != nil && !errors.Is(err, rpc.ErrService) {
					t.Fatalf("send %s: %v", body, err)
				}
				return err == nil
			})
		}
	}
	deleted := make([][]int, groups)
	total, stopped := 0, false
	deadline := time.Now().Add(3 * time.Minute)
	for total < groups*perGroup {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d messages processed: %v", total, groups*perGroup, deleted)
		}
		r, err := cl.ReceiveMessage(ctx, &rpc.ReceiveMessageRequest{Queue: "order.fifo", Max: 10, WaitSec: 1})
		if err != nil {
			if !errors.Is(err, rpc.ErrService) {
				t.Fatalf("receive: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for _, m := range r.Messages {
			g, i := parseBody(t, m.Body)
			if want := len(deleted[g]); i != want {
				t.Fatalf("group %d: received message %d while %d is the first not deleted (deleted %v)", g, i, want, deleted[g])
			}
			if !stopped && total >= groups*perGroup/2 {
				// Stop the leader mid-way, with this batch in flight:
				// its receipts must hold on the next leader.
				lead = tc.waitLeader()
				tc.stop(lead)
				stopped = true
				for j := range tc.nodes {
					if j != lead {
						cl = tc.clients[j]
						break
					}
				}
				t.Logf("stopped leader n%d after %d deletes", lead+1, total)
			}
			// Delete until the answer is definite: success, or the
			// handle is gone (an earlier try committed).
			for {
				_, err := cl.DeleteMessage(ctx, "order.fifo", m.ReceiptHandle)
				if err == nil || errors.Is(err, rpc.ErrReceiptHandleIsInvalid) {
					break
				}
				if !errors.Is(err, rpc.ErrService) || time.Now().After(deadline) {
					t.Fatalf("delete %s: %v", m.Body, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			deleted[g] = append(deleted[g], i)
			total++
			// A later message of this batch may already be invalid if
			// this delete outlived the visibility timeout: the check
			// above catches a redelivery out of order.
		}
	}
	for g := range deleted {
		for i, v := range deleted[g] {
			if v != i {
				t.Fatalf("group %d deleted in the order %v", g, deleted[g])
			}
		}
	}
}

func parseBody(t testing.TB, body string) (group, index int) {
	t.Helper()
	gs, is, ok := strings.Cut(strings.TrimPrefix(body, "g"), "-")
	g, err1 := strconv.Atoi(gs)
	i, err2 := strconv.Atoi(is)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("body %q", body)
	}
	return g, i
}
