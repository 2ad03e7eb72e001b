package main

import (
	"context"
	"sync"
	"time"

	"nimbus/rpc"
)

// outcome is how one call of a closed-loop benchmark ended.
type outcome int

const (
	callOK outcome = iota
	callThrottled
	callFailed
)

// dialClients dials n rpc clients, spread round-robin over addrs; close
// closes them all.
func dialClients(ctx context.Context, addrs []string, n int) (clients []*rpc.Client, close func(), err error) {
	close = func() {
		for _, cl := range clients {
			cl.Close()
		}
	}
	for i := 0; i < n; i++ {
		cl, err := rpc.Dial(ctx, addrs[i%len(addrs)], rpc.ClientOptions{DialTimeout: 5 * time.Second})
		if err != nil {
			close()
			return nil, nil, &dialError{err}
		}
		clients = append(clients, cl)
	}
	return clients, close, nil
}

// closedLoop runs callers goroutines that each call call(caller) back to
// back until duration has passed, and returns the latencies of the calls
// that succeeded, the time it took, and the counts of failed and throttled
// calls.
func closedLoop(callers int, duration time.Duration, call func(caller int) outcome) (all latencies, elapsed time.Duration, errs, throttled int64) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	deadline := time.Now().Add(duration)
	start := time.Now()
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine latencies
			var e, th int64
			for time.Now().Before(deadline) {
				t0 := time.Now()
				switch call(i) {
				case callOK:
					mine = append(mine, time.Since(t0))
				case callThrottled:
					th++
				default:
					e++
				}
			}
			mu.Lock()
			all = append(all, mine...)
			errs += e
			throttled += th
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, time.Since(start), errs, throttled
}
